"""``/v1/admin/rooms/{room}/services...``: room service specs and their runs (operator token).

The services check the operator grant themselves (so a refusal is audited), before any
body is read.
"""

from __future__ import annotations

from aiohttp import web

from roomsvc.errors import InvalidRequest
from roomsvc.transport.http.auth import caller, json_body
from roomsvc.transport.http.keys import SERVICES


def _names(request: web.Request) -> tuple[str, str]:
    return request.match_info["room"], request.match_info.get("name", "*")


async def create_service(request: web.Request) -> web.Response:
    """Body: ``{"yaml": "<spec text>"}`` or ``{"spec": {...}}``, and ``"replace": true`` to overwrite."""
    principal = caller(request)
    room, _ = _names(request)
    catalog = request.app[SERVICES].service_catalog
    await catalog.authorize(principal, room, "*", "service_create")
    body = await json_body(request, principal)
    replace = body.get("replace", False)
    if not isinstance(replace, bool):
        raise InvalidRequest("'replace' must be true or false")
    if ("yaml" in body) == ("spec" in body):
        raise InvalidRequest("send exactly one of 'yaml' (the spec as YAML text) or 'spec' (the spec as JSON)")
    document = body.get("yaml") if "yaml" in body else body.get("spec")
    if "yaml" in body and not isinstance(document, str):
        raise InvalidRequest("'yaml' must be the spec as text")
    record = await catalog.create(principal, room, document, replace=replace)
    return web.json_response({"service": record.as_dict()}, status=201)


async def list_services(request: web.Request) -> web.Response:
    room, _ = _names(request)
    records = await request.app[SERVICES].service_catalog.list(caller(request), room)
    return web.json_response({"services": [r.as_dict() for r in records]})


async def get_service(request: web.Request) -> web.Response:
    record = await request.app[SERVICES].service_catalog.get(caller(request), *_names(request))
    return web.json_response({"service": record.as_dict()})


async def delete_service(request: web.Request) -> web.Response:
    room, name = _names(request)
    await request.app[SERVICES].service_supervisor.delete(caller(request), room, name)
    return web.json_response({"deleted": name})


async def start_service(request: web.Request) -> web.Response:
    status = await request.app[SERVICES].service_supervisor.start(caller(request), *_names(request))
    return web.json_response({"status": status})


async def stop_service(request: web.Request) -> web.Response:
    status = await request.app[SERVICES].service_supervisor.stop(caller(request), *_names(request))
    return web.json_response({"status": status})


async def service_status(request: web.Request) -> web.Response:
    status = await request.app[SERVICES].service_supervisor.status(caller(request), *_names(request))
    return web.json_response({"status": status})


async def service_logs(request: web.Request) -> web.Response:
    try:
        tail = int(request.query.get("tail", "0"))
    except ValueError:
        raise InvalidRequest("'tail' is a number of lines") from None
    lines = await request.app[SERVICES].service_supervisor.logs(caller(request), *_names(request), tail=tail)
    return web.json_response({"logs": lines})


async def install_template(request: web.Request) -> web.Response:
    """Body: ``{"template": "<ServiceTemplate YAML>", "values": {name: value}, "replace": false}``."""
    principal = caller(request)
    room, _ = _names(request)
    installer = request.app[SERVICES].service_installer
    await request.app[SERVICES].service_catalog.authorize(principal, room, "*", "service_install")
    body = await json_body(request, principal)
    text, values, replace = body.get("template"), body.get("values", {}), body.get("replace", False)
    if not isinstance(text, str):
        raise InvalidRequest("'template' must be the ServiceTemplate as YAML text")
    if not isinstance(values, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
        raise InvalidRequest("'values' must map variable names to text")
    if not isinstance(replace, bool):
        raise InvalidRequest("'replace' must be true or false")
    record = await installer.install(principal, room, text, values, replace=replace)
    return web.json_response({"service": record.as_dict()}, status=201)
