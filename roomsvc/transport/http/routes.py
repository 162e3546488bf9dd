"""The route table, nothing else."""

from __future__ import annotations

from aiohttp import web

from roomsvc.transport.http import (
    admin_api,
    console_api,  # the room console (issue 16)
    console_ui,  # the room console (issue 16)
    headers_api,
    llm_api,  # the LLM proxy (issue 14)
    oauth_api,
    ops_api,
    secrets_api,
    services_api,  # room services (issue 13)
)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", ops_api.healthz)
    app.router.add_get("/readyz", ops_api.readyz)
    app.router.add_get("/metrics", ops_api.metrics)
    app.router.add_get("/v1/openapi.json", ops_api.openapi)
    app.router.add_get("/oauth/start", oauth_api.start_page)
    app.router.add_post("/oauth/start", oauth_api.start)
    app.router.add_get("/oauth/callback", oauth_api.callback)

    room_secret = "/v1/rooms/{room}/secrets/{secret_id}"
    app.router.add_get("/v1/rooms/{room}/secrets", secrets_api.list_secrets)
    app.router.add_put(room_secret, secrets_api.put_secret)
    app.router.add_get(room_secret, secrets_api.get_secret)
    app.router.add_delete(room_secret, secrets_api.delete_secret)
    app.router.add_get(room_secret + "/exists", secrets_api.secret_exists)
    app.router.add_get(room_secret + "/versions", secrets_api.secret_versions)
    app.router.add_post("/v1/rooms/{room}/headers", headers_api.resolve_headers)

    app.router.add_get("/v1/admin/rooms", admin_api.list_rooms)
    app.router.add_post("/v1/admin/rooms", admin_api.create_room)
    app.router.add_get("/v1/admin/secrets", admin_api.list_project_secrets)
    app.router.add_put("/v1/admin/secrets/{kind}/{secret_id}", admin_api.put_project_secret)
    app.router.add_delete("/v1/admin/secrets/{kind}/{secret_id}", admin_api.delete_project_secret)
    app.router.add_get("/v1/admin/keys", admin_api.key_status)
    app.router.add_post("/v1/admin/keys/rotate", admin_api.rotate_keys)
    app.router.add_delete("/v1/admin/keys/{key_id}", admin_api.retire_key)
    app.router.add_get("/v1/admin/audit", admin_api.audit)
    app.router.add_post("/v1/admin/audit/prune", admin_api.prune_audit)
    app.router.add_post("/v1/admin/tokens/revoke", admin_api.revoke_tokens)
    app.router.add_post("/v1/admin/backup", admin_api.backup)

    # -- the room console (issue 16): a person's page, and what it reads ----------------------
    app.router.add_get("/ui/rooms/{room}", console_ui.console_page)
    app.router.add_get("/ui/static/{name}", console_ui.static_file)
    app.router.add_route("*", "/ui/{tail:.*}", console_ui.anything_else)  # after the two above
    app.router.add_get("/v1/rooms/{room}/oauth/credentials", console_api.list_credentials)
    app.router.add_get("/v1/rooms/{room}/audit", console_api.own_audit)

    # -- services (issue 13) --
    app.router.add_get("/v1/admin/rooms/{room}/services", services_api.list_services)
    app.router.add_post("/v1/admin/rooms/{room}/services", services_api.create_service)
    app.router.add_post("/v1/admin/rooms/{room}/service-templates", services_api.install_template)
    app.router.add_get("/v1/admin/rooms/{room}/services/{name}", services_api.get_service)
    app.router.add_delete("/v1/admin/rooms/{room}/services/{name}", services_api.delete_service)
    app.router.add_post("/v1/admin/rooms/{room}/services/{name}/start", services_api.start_service)
    app.router.add_post("/v1/admin/rooms/{room}/services/{name}/stop", services_api.stop_service)
    app.router.add_get("/v1/admin/rooms/{room}/services/{name}/status", services_api.service_status)
    app.router.add_get("/v1/admin/rooms/{room}/services/{name}/logs", services_api.service_logs)
    # -- LLM proxy (issue 14, docs/llm.md): every method reaches the handler, which forwards
    # only the endpoints it knows and refuses the rest in the provider's error shape
    app.router.add_route("*", "/v1/llm/openai/{tail:.*}", llm_api.openai)
    app.router.add_route("*", "/v1/llm/anthropic/{tail:.*}", llm_api.anthropic)
    app.router.add_get("/v1/admin/llm/usage", llm_api.usage)
