"""Who is calling: the verified claims of a participant token, as a value.

The claim shape follows MeshAgent participant tokens: ``name`` is the identity,
``grants`` a list of ``{"name": ..., "scope": ...}`` with ``room`` (room name),
``role`` (``user`` | ``agent`` | ``tool``) and ``api`` (a mapping of API sections such
as ``secrets`` and ``admin``). An absent section means the API is denied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from roomsvc.errors import InvalidRequest, PermissionDenied, Unauthenticated
from roomsvc.ids import Identity, RoomName, parse_identity, parse_room

ROLES = ("user", "agent", "tool")


@dataclass(frozen=True)
class Principal:
    identity: Identity
    room: RoomName | None
    role: str = "user"
    api: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    subject: str | None = None
    expires_at: float | None = None
    #: the token's ``jti`` (None for tokens minted elsewhere without one)
    token_id: str | None = None
    #: the token's ``iat`` (None when the token does not say)
    issued_at: float | None = None

    # -- checks ---------------------------------------------------------------------

    def has_api(self, section: str) -> bool:
        return section in self.api and self.api[section] is not None

    @property
    def is_admin(self) -> bool:
        return self.has_api("admin")

    @property
    def is_operator(self) -> bool:
        """A project-level token: the admin API and no room."""
        return self.room is None and self.is_admin

    @property
    def use_only(self) -> bool:
        """The ``secrets`` section is ``{"use_only": true}``: secrets may be resolved into
        headers (for a named destination) but their values are never handed out."""
        section = self.api.get("secrets")
        return isinstance(section, Mapping) and section.get("use_only") is True

    def require_room(self, room: str) -> None:
        if self.room is None:
            raise PermissionDenied("this token has no room grant")
        if self.room != room:
            raise PermissionDenied(f"this token is for another room, not {room!r}")

    def require_api(self, section: str) -> None:
        if not self.has_api(section):
            raise PermissionDenied(f"the token's api grant has no {section!r} section")

    def describe(self) -> dict[str, Any]:
        return {"identity": self.identity, "role": self.role, "room": self.room, "api": sorted(self.api)}


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Turn verified JWT claims into a :class:`Principal`.

    Raises:
        Unauthenticated: if the claims do not have the participant-token shape.
    """
    name = claims.get("name")
    grants = claims.get("grants")
    if not isinstance(name, str) or not name:
        raise Unauthenticated("token has no 'name' claim (the participant identity)")
    if not isinstance(grants, list):
        raise Unauthenticated("token has no 'grants' list")
    try:
        identity = parse_identity(name)
    except InvalidRequest as exc:
        raise Unauthenticated(f"token 'name' claim: {exc.message}") from None
    room: RoomName | None = None
    role = "user"
    api: dict[str, Any] | None = None
    for grant in grants:
        if not isinstance(grant, dict) or not isinstance(grant.get("name"), str):
            raise Unauthenticated("token grant entries must be objects with a 'name'")
        kind, scope = grant["name"], grant.get("scope")
        if kind == "room":
            if room is not None:
                raise Unauthenticated("token has more than one room grant")
            try:
                room = parse_room(scope)
            except InvalidRequest as exc:
                raise Unauthenticated(f"token room grant: {exc.message}") from None
        elif kind == "role":
            if scope not in ROLES:
                raise Unauthenticated(f"token role grant must be one of {', '.join(ROLES)}")
            role = scope
        elif kind == "api":
            if api is not None:
                raise Unauthenticated("token has more than one api grant")
            if isinstance(scope, str):  # some encoders nest the scope as a JSON string
                try:
                    scope = json.loads(scope)
                except ValueError:
                    raise Unauthenticated("token api grant scope is not an object") from None
            if not isinstance(scope, dict):
                raise Unauthenticated("token api grant scope must be an object")
            api = {k: v for k, v in scope.items() if v is not None}
            secrets = api.get("secrets")
            if isinstance(secrets, dict) and not isinstance(secrets.get("use_only", False), bool):
                # a misspelt grant must not silently become a full one
                raise Unauthenticated("token api.secrets.use_only must be true or false")
        # other grant kinds (agent, tunnel_ports, ...) are accepted and ignored
    return Principal(
        identity=identity,
        room=room,
        role=role,
        api=MappingProxyType(api or {}),
        subject=claims.get("sub") if isinstance(claims.get("sub"), str) else None,
        expires_at=_number(claims.get("exp")),
        token_id=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
        issued_at=_number(claims.get("iat")),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def build_claims(
    *,
    identity: str,
    room: str | None,
    role: str = "user",
    api: Mapping[str, Any] | None = None,
    issued_at: int,
    ttl: int | None,
    kid: str | None = None,
    subject: str | None = None,
    token_id: str | None = None,
) -> dict[str, Any]:
    """Claims for a participant token, in MeshAgent's shape (used by ``roomsvc token``)."""
    grants: list[dict[str, Any]] = []
    if room is not None:
        grants.append({"name": "room", "scope": parse_room(room)})
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
    grants.append({"name": "role", "scope": role})
    if api:
        grants.append({"name": "api", "scope": dict(api)})
    claims: dict[str, Any] = {"name": parse_identity(identity), "grants": grants, "iat": issued_at}
    if ttl is not None:
        claims["exp"] = issued_at + ttl
    if kid:
        claims["kid"] = kid
    if subject:
        claims["sub"] = subject
    if token_id:
        claims["jti"] = token_id
    return claims
