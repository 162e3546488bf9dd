"""Room tokens for the holder of this server's API key (``roomsvc apikey``).

The MeshAgent CLI connects with an API key (``ma-...``) instead of a participant token:
it calls ``POST /accounts/projects/{project}/rooms/{room}/connect`` and gets a room
token back. Whoever holds the key can mint any token anyway, so the token names
identity ``operator`` with the ``secrets``, ``admin`` and ``messaging`` sections.
"""

from __future__ import annotations

import hmac

from roomsvc.crypto.keys import keyring_from_api_key
from roomsvc.crypto.tokens import SigningKeyring, mint
from roomsvc.domain.principal import build_claims
from roomsvc.errors import InvalidRequest, NotFound, Unauthenticated

#: the identity an API key's room token names
API_KEY_IDENTITY = "operator"


def api_key_room_token(
    signing: SigningKeyring, api_key: str, project_id: str, room: str, *, issued_at: int, ttl: int | None
) -> str:
    """A room token for ``room`` if ``api_key`` is a key of the ``signing`` keyring.

    Raises:
        Unauthenticated: not an API key of this server's signing keyring.
        NotFound: the path names another project.
    """
    try:
        presented = keyring_from_api_key(api_key)
    except InvalidRequest:
        raise Unauthenticated("the Bearer token is not an API key (ma-...) of this server") from None
    key = signing.find(presented.primary.kid)
    if key is None or presented.project_id != signing.project_id or not hmac.compare_digest(key.secret, presented.primary.secret):
        raise Unauthenticated("the Bearer token is not an API key (ma-...) of this server")
    if project_id != signing.project_id:
        # the caller holds the key, which encodes the project id anyway: name it
        raise NotFound(f"no project {project_id[:64]!r} here; this server's project id is {signing.project_id}")
    claims = build_claims(
        identity=API_KEY_IDENTITY, room=room, api={"secrets": {}, "admin": {}, "messaging": {}},
        issued_at=issued_at, ttl=ttl, subject=signing.project_id,
    )
    return mint(signing, claims, key=key)
