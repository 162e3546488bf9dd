"""The OpenAPI 3.1 description of the HTTP API, served at ``/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from roomsvc import __version__
from roomsvc.domain.llm.grant import ENDPOINTS

_ERROR = {"$ref": "#/components/schemas/Error"}
_SECRET_META = {
    "type": "object",
    "properties": {
        "id": {"type": "string"}, "type": {"type": "string"}, "name": {"type": "string"},
        "owner": {"type": "string"}, "delegated_to": {"type": ["string", "null"]},
        "kind": {"type": "string", "enum": ["plain", "oauth"]}, "version": {"type": "integer"},
        "created_at": {"type": "number"}, "updated_at": {"type": "number"},
    },
}
_ADDRESS_QUERY = [
    {"name": "delegated_to", "in": "query", "schema": {"type": "string"}},
    {"name": "for_identity", "in": "query", "schema": {"type": "string"}, "description": "needs the admin API grant"},
]
_ROOM = {"name": "room", "in": "path", "required": True, "schema": {"type": "string"}}
_SID = {"name": "secret_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _op(summary: str, ok: dict[str, Any], *, params: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        tag: str = "room secrets") -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "parameters": params or [],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
            "default": {"description": "an error (see docs/protocol.md)", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _llm_paths() -> dict[str, Any]:
    """The LLM proxy's forwarded endpoints (provider bodies and answers, unchanged) and the usage report."""
    paths: dict[str, Any] = {}
    for provider, endpoints in ENDPOINTS.items():
        key = "'x-api-key'" if provider == "anthropic" else "'Authorization: Bearer'"
        for e in endpoints:
            paths.setdefault(f"/v1/llm/{provider}/{e.path}", {})[e.method.lower()] = {
                "summary": f"forwarded to {provider} with the provider key (participant token in {key}; "
                           "api grant 'llm'); body and answer in the provider's shapes, errors too (docs/llm.md)",
                "tags": ["llm"], "parameters": [],
                "responses": {"200": {"description": "the provider's answer, streamed as it arrives"},
                              "default": {"description": "a refusal or an upstream error, in the provider's error shape"}},
            }
    query = [{"name": n, "in": "query", "schema": {"type": t}} for n, t in (("room", "string"), ("identity", "string"),
                                                                            ("since", "number"))]
    paths["/v1/admin/llm/usage"] = {"get": {
        "summary": "LLM calls and tokens per room, identity, provider and model (operator token)", "tags": ["admin"],
        "parameters": query,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"usage": {"type": "array", "items": {"type": "object"}}}}}}},
            "default": {"description": "an error (see docs/protocol.md)", "content": {"application/json": {"schema": _ERROR}}}},
    }}
    return paths


def openapi_document(server_url: str) -> dict[str, Any]:
    obj = lambda **props: {"type": "object", "properties": props}  # noqa: E731
    secret_body = obj(
        value_base64={"type": "string", "contentEncoding": "base64"}, text={"type": "string"},
        type={"type": "string"}, name={"type": "string"}, delegated_to={"type": "string"},
        for_identity={"type": "string"}, expected_version={"type": "integer", "minimum": 0},
    )
    admin = "admin"
    return {
        "openapi": "3.1.0",
        "info": {"title": "roomsvc", "version": __version__,
                 "description": "Rooms for people and agents, with a credential vault. Websocket protocols: docs/protocol.md."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {**_op("liveness", obj(status={"type": "string"}), tag="operations"), "security": []}},
            "/readyz": {"get": {**_op("readiness", obj(status={"type": "string"}), tag="operations"), "security": []}},
            "/v1/rooms/{room}/secrets": {
                "get": _op("list the caller's secrets (metadata only)", obj(secrets={"type": "array", "items": _SECRET_META}),
                           params=[_ROOM, _ADDRESS_QUERY[1]]),
            },
            "/v1/rooms/{room}/secrets/{secret_id}": {
                "put": _op("set a secret (upsert; new version)", obj(secret=_SECRET_META), params=[_ROOM, _SID], body=secret_body),
                "get": _op("read a secret", obj(secret=_SECRET_META, value_base64={"type": "string"}), params=[_ROOM, _SID, *_ADDRESS_QUERY]),
                "delete": _op("delete a secret and all its versions", obj(deleted={"type": "string"}), params=[_ROOM, _SID, *_ADDRESS_QUERY]),
            },
            "/v1/rooms/{room}/secrets/{secret_id}/exists": {
                "get": _op("does the secret exist", obj(exists={"type": "boolean"}), params=[_ROOM, _SID, *_ADDRESS_QUERY]),
            },
            "/v1/rooms/{room}/secrets/{secret_id}/versions": {
                "get": _op("list kept versions", obj(versions={"type": "array"}), params=[_ROOM, _SID, *_ADDRESS_QUERY]),
            },
            "/v1/rooms/{room}/headers": {
                "post": _op("resolve HEADER:FORMAT specs from the caller's secrets (Cache-Control: no-store)",
                            obj(headers={"type": "array", "items": obj(
                                name={"type": "string"}, value={"type": "string"},
                                expires_at={"type": ["number", "null"]},
                                allowed_hosts={"type": ["array", "null"], "items": {"type": "string"}})}),
                            params=[_ROOM], tag="headers",
                            body=obj(header_secrets={"type": "array", "items": {"type": "string"}},
                                     destination={"type": "string", "format": "uri", "description": (
                                         "the URL the headers will be sent to; required for credentials with "
                                         "allowed_hosts and for use-only tokens")},
                                     for_identity={"type": "string"}, toolkit={"type": "string"})),
            },
            "/oauth/start": {
                "get": {**_op("show what a consent link is for (who asks, who will own the credential, who may use "
                              "it) without using it (HTML page)", obj(),
                              params=[{"name": "t", "in": "query", "required": True, "schema": {"type": "string"}}],
                              tag="oauth"), "security": []},
                "post": {**_op("use the single-use consent link (form field t): 302 to the provider", obj(),
                               tag="oauth"), "security": []},
            },
            "/oauth/callback": {"get": {**_op("the provider's redirect back to roomsvc (HTML page)", obj(), tag="oauth",
                                              params=[{"name": n, "in": "query", "schema": {"type": "string"}}
                                                      for n in ("code", "state", "iss", "error")]), "security": []}},
            # -- the room console (issue 16) --
            "/ui/rooms/{room}": {"get": {**_op("the room console, a person's page (HTML; token in the URL fragment)", obj(),
                                               params=[_ROOM], tag="console"), "security": []}},
            "/ui/static/{name}": {"get": {**_op("the console's stylesheet and script", obj(), tag="console",
                                                params=[{"name": "name", "in": "path", "required": True,
                                                         "schema": {"type": "string"}}]), "security": []}},
            "/v1/rooms/{room}/oauth/credentials": {
                "get": _op("the caller's OAuth credentials: metadata, status, connected account (never a token)",
                           obj(credentials={"type": "array", "items": {**_SECRET_META, "properties": {
                               **_SECRET_META["properties"],  # type: ignore[dict-item]
                               "status": {"type": "string", "enum": ["active", "reauth_required", "unreadable"]},
                               "connector": {"type": "string"}, "issuer": {"type": "string"},
                               "subject": {"type": "string"}, "scopes": {"type": "array"},
                               "covers": {"type": "array"}, "expires_at": {"type": "number"}}}}),
                           params=[_ROOM], tag="console"),
            },
            "/v1/rooms/{room}/audit": {
                "get": _op("the caller's own recent audit lines in its room (what it did, what was done with its secrets)",
                           obj(audit={"type": "array"}), tag="console",
                           params=[_ROOM, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}]),
            },
            "/v1/admin/rooms": {
                "get": _op("list rooms", obj(rooms={"type": "array"}), tag=admin),
                "post": _op("create a room", obj(room={"type": "object"}), body=obj(name={"type": "string"}), tag=admin),
            },
            "/v1/admin/secrets": {
                "get": _op("list project secrets (metadata only)", obj(secrets={"type": "array"}),
                           params=[{"name": "type", "in": "query", "schema": {"enum": ["keys", "pull"]}}], tag=admin),
            },
            "/v1/admin/secrets/keys/{secret_id}": {
                "put": _op("set a keys secret", obj(secret={"type": "object"}), params=[_SID],
                           body=obj(name={"type": "string"}, data={"type": "object", "additionalProperties": {"type": "string"}}), tag=admin),
                "delete": _op("delete a keys secret", obj(deleted={"type": "string"}), params=[_SID], tag=admin),
            },
            "/v1/admin/secrets/pull/{secret_id}": {
                "put": _op("set an image pull secret", obj(secret={"type": "object"}), params=[_SID],
                           body=obj(server={"type": "string"}, username={"type": "string"}, password={"type": "string"},
                                    email={"type": "string"}, name={"type": "string"}), tag=admin),
                "delete": _op("delete an image pull secret", obj(deleted={"type": "string"}), params=[_SID], tag=admin),
            },
            "/v1/admin/keys": {"get": _op("key-encryption keys and their use", obj(keys={"type": "array"}), tag=admin)},
            "/v1/admin/keys/rotate": {"post": {**_op("add a key and re-wrap every data key (NDJSON progress)", obj(), tag=admin)}},
            "/v1/admin/keys/{key_id}": {
                "delete": _op("retire a key nothing uses", obj(retired={"type": "string"}),
                              params=[{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}], tag=admin),
            },
            "/v1/admin/audit": {
                "get": _op("audit log", obj(audit={"type": "array"}), tag=admin, params=[
                    {"name": "room", "in": "query", "schema": {"type": "string"}},
                    {"name": "identity", "in": "query", "schema": {"type": "string"}},
                    {"name": "since", "in": "query", "schema": {"type": "number"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                ]),
            },
            "/v1/admin/audit/prune": {
                "post": _op("delete audit lines older than the retention (secrets.audit_retention); never younger ones",
                            obj(prune={"type": "object"}), tag=admin,
                            body=obj(older_than={"type": "number"}, dry_run={"type": "boolean"})),
            },
            "/v1/admin/tokens/revoke": {"post": _op(
                "revoke one token (jti) or an identity's tokens issued before now (open sockets close with 4001)",
                obj(revoked=obj(kind={"enum": ["jti", "identity"]}, value={"type": "string"}, room={"type": ["string", "null"]},
                                revoked_before={"type": "number"}, actor={"type": "string"}, created_at={"type": "number"})),
                body={"type": "object", "properties": {"jti": {"type": "string", "minLength": 1},
                                                       "identity": {"type": "string"}, "room": {"type": "string"}},
                      "oneOf": [{"required": ["jti"]}, {"required": ["identity"]}]},
                tag=admin)},
            "/v1/admin/backup": {"post": _op("consistent database copy, written as 'name' inside server.backup_dir "
                                             "(never elsewhere, never over a file); answers the path written",
                                             obj(backup={"type": "string"}), body=obj(name={"type": "string"}), tag=admin)},
            **_service_paths(obj),
            # LLM proxy (issue 14)
            **_llm_paths(),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Error": obj(error=obj(code={"type": "integer"}, name={"type": "string"}, message={"type": "string"},
                                                 retry_after={"type": "number"}))},
        },
    }


def _service_paths(obj: Any) -> dict[str, Any]:
    """Room services (issue 13; docs/services.md), operator token only."""
    tag = "services"
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    base = "/v1/admin/rooms/{room}/services"
    status = obj(status=obj(state={"type": "string"}, runner={"type": "string"}, restarts={"type": "integer"},
                            last_error={"type": ["object", "null"]}))
    return {
        base: {
            "get": _op("the room's service specs", obj(services={"type": "array"}), params=[_ROOM], tag=tag),
            "post": {**_op("store a service spec (YAML text or JSON); 'replace' overwrites", obj(service={"type": "object"}),
                           params=[_ROOM], body=obj(yaml={"type": "string"}, spec={"type": "object"},
                                                    replace={"type": "boolean"}), tag=tag)},
        },
        "/v1/admin/rooms/{room}/service-templates": {"post": _op(
            "install a ServiceTemplate: secret variables become room secrets, the rest is rendered into the spec",
            obj(service={"type": "object"}), params=[_ROOM], tag=tag,
            body=obj(template={"type": "string"}, values={"type": "object", "additionalProperties": {"type": "string"}},
                     replace={"type": "boolean"}))},
        base + "/{name}": {
            "get": _op("one service spec", obj(service={"type": "object"}), params=[_ROOM, name], tag=tag),
            "delete": _op("stop and delete a service", obj(deleted={"type": "string"}), params=[_ROOM, name], tag=tag),
        },
        base + "/{name}/start": {"post": _op("start a service (reports why it could not)", status, params=[_ROOM, name], tag=tag)},
        base + "/{name}/stop": {"post": _op("stop a service", status, params=[_ROOM, name], tag=tag)},
        base + "/{name}/status": {"get": _op("a service's state", status, params=[_ROOM, name], tag=tag)},
        base + "/{name}/logs": {"get": _op("a service's recent output (secret values masked)", obj(logs={"type": "array"}),
                                           params=[_ROOM, name, {"name": "tail", "in": "query", "schema": {"type": "integer"}}],
                                           tag=tag)},
    }
