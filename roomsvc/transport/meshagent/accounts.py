"""``POST /accounts/projects/{project_id}/rooms/{room}/connect``: a room token for an API key.

The ``meshagent`` CLI (``meshagent room secret set|get|list ...``) asks this for its room
token, sending the API key (``MESHAGENT_API_KEY``, as printed by ``roomsvc apikey``) as
the Bearer token, then connects to ``/rooms/{room}`` with the token it gets. Checking the
key and minting the token needs the signing keyring, which the transport never touches:
the composition root injects that as a :data:`RoomTokenIssuer`.
"""

from __future__ import annotations

from typing import Callable

from aiohttp import web

from roomsvc.errors import Unauthenticated
from roomsvc.ids import parse_room
from roomsvc.transport.fields import bearer
from roomsvc.transport.meshagent.session import room_ws_url

#: ``issue(api_key, project_id, room) -> participant token``; raises Unauthenticated for a
#: key that is not this server's, NotFound for another project
RoomTokenIssuer = Callable[[str, str, str], str]


class RoomConnectHandler:
    def __init__(self, issue: RoomTokenIssuer, public_url: Callable[[], str]) -> None:
        self._issue = issue
        self._public_url = public_url

    async def __call__(self, request: web.Request) -> web.Response:
        api_key = bearer(request.headers.get("Authorization", ""))
        if api_key is None:
            raise Unauthenticated("send the API key printed by `roomsvc apikey` as 'Authorization: Bearer ma-...'")
        project_id = request.match_info["project_id"]
        room = parse_room(request.match_info["room"])
        token = self._issue(api_key, project_id, room)
        return web.json_response(
            {"jwt": token, "room_name": room, "project_id": project_id, "room_url": room_ws_url(self._public_url(), room)},
            headers={"Cache-Control": "no-store"},
        )
