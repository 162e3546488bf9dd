"""How roomsvc becomes an OAuth client of an MCP server's authorization server, in the
MCP specification's priority order (client registration, revision 2026-07-28):

1. a pre-registered connector (``config/connectors``) whose ``issuer`` is that server;
2. a Client ID Metadata Document, when the server advertises
   ``client_id_metadata_document_supported`` and roomsvc has an https ``server.public_url``
   (roomsvc serves the document itself; its URL is the client id);
3. dynamic client registration (RFC 7591) when the server has a ``registration_endpoint``;
   the registration is kept encrypted as a project secret and reused for that server.

Pure: the choice, the documents sent, and the parsing of the registration answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from roomsvc.domain.mcp.discovery import AuthorizationServer, DiscoveryRefused, same_issuer
from roomsvc.domain.oauth.connectors import AUTH_METHODS, ConnectorSpec

CONNECTOR = "connector"
CLIENT_ID_METADATA_DOCUMENT = "cimd"
DYNAMIC = "dynamic"

CLIENT_NAME = "roomsvc"
#: the path under server.public_url where roomsvc serves its Client ID Metadata Document
CIMD_PATH = "/oauth/client-metadata.json"
#: project secret ids of dynamic registrations: "mcp-dcr-" + 24 hex of the issuer's hash
DCR_SECRET_PREFIX = "mcp-dcr-"


@dataclass(frozen=True)
class RegistrationChoice:
    kind: str
    #: the connector's name (connector), the document's URL (cimd), the endpoint (dynamic)
    detail: str


@dataclass(frozen=True)
class RegisteredClient:
    """What a dynamic registration returned (RFC 7591 3.2.1)."""

    issuer: str
    client_id: str
    token_endpoint_auth_method: str = "none"
    client_secret: str = field(default="", repr=False)
    client_secret_expires_at: float = 0.0
    registered_at: float = 0.0

    def __repr__(self) -> str:
        return (
            f"RegisteredClient(issuer={self.issuer!r}, client_id={self.client_id!r}, "
            f"method={self.token_endpoint_auth_method!r}, secret={'<hidden>' if self.client_secret else 'none'})"
        )

    def usable(self, now: float) -> bool:
        return not self.client_secret_expires_at or self.client_secret_expires_at > now

    def to_record(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer, "client_id": self.client_id,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "client_secret": self.client_secret, "client_secret_expires_at": self.client_secret_expires_at,
            "registered_at": self.registered_at,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> "RegisteredClient":
        return cls(
            issuer=str(data["issuer"]), client_id=str(data["client_id"]),
            token_endpoint_auth_method=str(data.get("token_endpoint_auth_method") or "none"),
            client_secret=str(data.get("client_secret") or ""),
            client_secret_expires_at=float(data.get("client_secret_expires_at") or 0),
            registered_at=float(data.get("registered_at") or 0),
        )


def matching_connector(server: AuthorizationServer, connectors: list[ConnectorSpec]) -> ConnectorSpec | None:
    for spec in sorted(connectors, key=lambda s: s.name):
        if spec.issuer and same_issuer(spec.issuer, server.issuer):
            return spec
    return None


def choose(server: AuthorizationServer, connectors: list[ConnectorSpec], *, cimd_url: str) -> RegistrationChoice:
    """The first mechanism of the priority order that applies.

    Raises:
        DiscoveryRefused: none applies (the fourth option, asking a person to type client
            details, is left to operators: they add a connector).
    """
    spec = matching_connector(server, connectors)
    if spec is not None:
        return RegistrationChoice(CONNECTOR, spec.name)
    if server.client_id_metadata_document_supported and cimd_url.startswith("https://"):
        return RegistrationChoice(CLIENT_ID_METADATA_DOCUMENT, cimd_url)
    if server.registration_endpoint:
        return RegistrationChoice(DYNAMIC, server.registration_endpoint)
    raise DiscoveryRefused(
        "the authorization server offers no way to register roomsvc (no matching connector, no Client ID "
        "Metadata Document support with an https server.public_url, no registration_endpoint): add a connector "
        "with its issuer in config/connectors"
    )


def client_metadata(*, redirect_uri: str, client_id: str = "") -> dict[str, Any]:
    """The client metadata roomsvc registers (RFC 7591 2) or serves as its Client ID
    Metadata Document (then with ``client_id``). No ``scope``: a registered scope becomes
    an allow-list at some servers, which would break a later step-up."""
    doc: dict[str, Any] = {
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
    }
    if client_id:
        doc = {"client_id": client_id, **doc}
    return doc


def parse_registration(doc: object, *, issuer: str, now: float) -> RegisteredClient:
    """An RFC 7591 registration answer.

    Raises:
        DiscoveryRefused: no client id, or an authentication method roomsvc does not speak.
    """
    if not isinstance(doc, Mapping):
        raise DiscoveryRefused("the registration answer is not a JSON object")
    client_id = doc.get("client_id")
    if not isinstance(client_id, str) or not client_id or len(client_id) > 512 or not client_id.isprintable():
        raise DiscoveryRefused("the registration answer has no usable client_id")
    secret = doc.get("client_secret")
    method = doc.get("token_endpoint_auth_method") or ("client_secret_basic" if secret else "none")
    if method not in AUTH_METHODS:
        raise DiscoveryRefused("the registration answer asks for a client authentication method roomsvc does not use")
    expires = doc.get("client_secret_expires_at")
    return RegisteredClient(
        issuer=issuer, client_id=client_id, token_endpoint_auth_method=str(method),
        client_secret=secret if isinstance(secret, str) else "",
        client_secret_expires_at=float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else 0.0,
        registered_at=now,
    )


def registration_secret_id(issuer: str) -> str:
    """The project secret that keeps the dynamic registration at ``issuer`` (root slash
    ignored, as in :func:`~roomsvc.domain.mcp.discovery.same_issuer`)."""
    key = issuer[:-1] if issuer.endswith("/") and issuer.count("/") == 3 else issuer
    return DCR_SECRET_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:24]
