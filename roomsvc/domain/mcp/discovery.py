"""MCP authorization discovery as pure rules: what a 401 says, which documents to fetch,
and whether what they say may be believed.

The chain (MCP authorization, revision 2026-07-28; RFC 9728, RFC 8414, OpenID Discovery):

1. the MCP server answers 401 with ``WWW-Authenticate: Bearer resource_metadata="…",
   scope="…"`` (:func:`parse_challenge`), or the client tries the well-known locations
   (:func:`resource_metadata_urls`);
2. the protected resource metadata names the resource and its authorization servers
   (:func:`parse_resource_metadata`): its ``resource`` must be the MCP server the bridge
   was pointed at (same origin, and the server's path lies under it), else it is refused;
3. the authorization server's metadata (:func:`authorization_server_metadata_urls`,
   :func:`parse_authorization_server_metadata`) must name exactly the issuer it was
   fetched for, offer PKCE S256 and the code flow, and every endpoint must pass the URL
   rules.

URL rules (:func:`check_url`): https with a public host; http and loopback/private hosts
only with ``server.allow_insecure_loopback``. Every URL learnt from a document or a header
is checked before anything is fetched from it, so a hostile document cannot point roomsvc
at an internal address. The MCP URL passes the same rules, unless the operator lists it in
``mcp.trusted_servers`` (then it and metadata on its own origin may be http / private).

Root issuer slash: ``https://as.example`` and ``https://as.example/`` name the same
issuer (RFC 3986 6.2.3: an empty path and ``/`` are equivalent for http(s)); any other
difference (case of the path, a further trailing slash, another port) is a mismatch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit

from roomsvc.domain.oauth.connectors import check_endpoint, parse_scopes
from roomsvc.errors import InvalidRequest, OAuthError

PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
MAX_AUTHORIZATION_SERVERS = 16
MAX_HEADER = 8192

_TOKEN68_OR_PARAM = re.compile(
    r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9!#$%&\'*+.^_`|~/:-]+)\s*(?:,|$)'
)
_SCHEME = re.compile(r"\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s+|$)")


class DiscoveryRefused(OAuthError):
    """A discovery document or header that fails the checks. The message says which check,
    never the document's body."""

    def __init__(self, message: str) -> None:
        super().__init__(f"MCP authorization discovery refused: {message}", error="discovery_refused")


@dataclass(frozen=True)
class Challenge:
    """The parts of a ``Bearer`` challenge (RFC 6750 3, RFC 9728 5.1) the client uses."""

    resource_metadata: str = ""
    scopes: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class ResourceMetadata:
    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthorizationServer:
    """RFC 8414 metadata, checked. ``registration_endpoint`` empty: no dynamic registration."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str = ""
    revocation_endpoint: str = ""
    userinfo_endpoint: str = ""
    iss_parameter_supported: bool = False
    client_id_metadata_document_supported: bool = False
    scopes_supported: tuple[str, ...] = ()


# -- URLs -------------------------------------------------------------------------------------


def check_url(url: object, what: str, *, insecure_ok: bool) -> str:
    """The connectors' endpoint rules, as a discovery refusal (see the module docstring)."""
    try:
        return check_endpoint(url, what, insecure_ok=insecure_ok)
    except InvalidRequest as exc:
        raise DiscoveryRefused(exc.message) from None


def check_mcp_url(url: object) -> str:
    """The operator's MCP server URL: absolute http(s), no user info, no fragment."""
    try:
        return check_endpoint(url, "the MCP server URL", insecure_ok=True)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message) from None


def canonical_resource(url: str) -> str:
    """RFC 8707 / MCP canonical URI: lower-case scheme and host, no default port, no
    fragment, no query; an empty path stays empty, a trailing ``/`` is kept otherwise."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    path = "" if parts.path == "/" else parts.path
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))


def _origin(url: str) -> str:
    c = canonical_resource(url)
    parts = urlsplit(c)
    return f"{parts.scheme}://{parts.netloc}"


def same_origin(a: str, b: str) -> bool:
    try:
        return _origin(a) == _origin(b)
    except ValueError:
        return False


def resource_covers(resource: str, mcp_url: str) -> bool:
    """``resource`` names the MCP server: same origin, and the server's path equals the
    resource's path or lies below it (path segments, not string prefixes)."""
    if _origin(resource) != _origin(mcp_url):
        return False
    want = urlsplit(canonical_resource(resource)).path.rstrip("/")
    have = urlsplit(canonical_resource(mcp_url)).path.rstrip("/")
    return have == want or have.startswith(want + "/")


def resource_metadata_urls(mcp_url: str, challenge: Challenge | None) -> list[str]:
    """Where to look for the protected resource metadata, in the specification's order:
    the challenge's ``resource_metadata``, then the path-aware well-known URL, then the
    root one (RFC 9728 3.1)."""
    urls = []
    if challenge is not None and challenge.resource_metadata:
        urls.append(challenge.resource_metadata)
    parts = urlsplit(mcp_url)
    path = parts.path.rstrip("/")
    if path:
        urls.append(urlunsplit((parts.scheme, parts.netloc, PRM_WELL_KNOWN + path, "", "")))
    urls.append(urlunsplit((parts.scheme, parts.netloc, PRM_WELL_KNOWN, "", "")))
    return list(dict.fromkeys(urls))


def authorization_server_metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 3.1 (path inserted after the host) then OpenID Discovery, for an issuer
    with a path; the two root documents for one without (MCP authorization, 4.3)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    base = (parts.scheme, parts.netloc)
    urls = [
        urlunsplit((*base, "/.well-known/oauth-authorization-server" + path, "", "")),
        urlunsplit((*base, "/.well-known/openid-configuration" + path, "", "")),
    ]
    if path:
        urls.append(urlunsplit((*base, path + "/.well-known/openid-configuration", "", "")))
    return urls


def same_issuer(expected: str, received: object) -> bool:
    """Exact comparison, but for the root path (see the module docstring)."""
    if not isinstance(received, str):
        return False
    if received == expected:
        return True
    a, b = urlsplit(expected), urlsplit(received)
    return (a.scheme, a.netloc, a.query, a.fragment) == (b.scheme, b.netloc, b.query, b.fragment) and {a.path, b.path} <= {"", "/"}


# -- the 401 challenge -----------------------------------------------------------------------------


def parse_challenge(header: str | None) -> Challenge | None:
    """The ``Bearer`` challenge of a ``WWW-Authenticate`` value, or None when there is none.

    Tolerant of other schemes before it and of unknown parameters; a ``scope`` that is
    not a list of scope tokens is ignored (the metadata's ``scopes_supported`` then
    applies), never fatal."""
    if not header or len(header) > MAX_HEADER:
        return None
    pos = 0
    while pos < len(header):
        m = _SCHEME.match(header, pos)
        if not m:
            return None
        scheme = m.group(1)
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _TOKEN68_OR_PARAM.match(header, pos)
            if not p:
                break
            key, value = p.group(1).lower(), p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params.setdefault(key, value)
            pos = p.end()
        if scheme.lower() == "bearer":
            try:
                scopes = parse_scopes(params.get("scope"), "scope")
            except InvalidRequest:
                scopes = ()
            return Challenge(params.get("resource_metadata", ""), scopes, params.get("error", "")[:64])
        if not params:  # a token68 or an unparseable scheme: stop rather than guess
            return None
    return None


# -- documents -------------------------------------------------------------------------------------


def parse_resource_metadata(doc: object, *, mcp_url: str, insecure_ok: bool) -> ResourceMetadata:
    """RFC 9728 metadata for ``mcp_url``.

    Raises:
        DiscoveryRefused: not an object, no or a mismatched ``resource`` (RFC 9728 3.3),
            no authorization server, or one that fails the URL rules.
    """
    if not isinstance(doc, Mapping):
        raise DiscoveryRefused("the protected resource metadata is not a JSON object")
    resource = doc.get("resource")
    if not isinstance(resource, str) or not resource:
        raise DiscoveryRefused("the protected resource metadata has no 'resource'")
    check_url(resource, "the protected resource's 'resource'", insecure_ok=True)
    if not resource_covers(resource, mcp_url):
        raise DiscoveryRefused("the protected resource metadata names another resource than the MCP server (RFC 9728 3.3)")
    servers = doc.get("authorization_servers")
    if not isinstance(servers, list) or not servers or len(servers) > MAX_AUTHORIZATION_SERVERS:
        raise DiscoveryRefused("the protected resource metadata lists no authorization server")
    checked = tuple(check_url(s, "an authorization server of the MCP server", insecure_ok=insecure_ok) for s in servers)
    scopes: tuple[str, ...] = ()
    try:
        scopes = parse_scopes(doc.get("scopes_supported"), "scopes_supported")
    except InvalidRequest:
        scopes = ()
    return ResourceMetadata(resource=resource, authorization_servers=checked, scopes_supported=scopes)


def parse_authorization_server_metadata(doc: object, *, issuer: str, insecure_ok: bool) -> AuthorizationServer:
    """RFC 8414 / OpenID discovery metadata fetched for ``issuer``.

    Raises:
        DiscoveryRefused: another issuer (RFC 8414 3.3), no code flow, no PKCE S256 (the
            MCP specification: refuse when ``code_challenge_methods_supported`` is absent),
            or an endpoint that fails the URL rules.
    """
    if not isinstance(doc, Mapping):
        raise DiscoveryRefused("the authorization server metadata is not a JSON object")
    if not same_issuer(issuer, doc.get("issuer")):
        raise DiscoveryRefused("the authorization server metadata names another issuer than the one it was fetched for (RFC 8414 3.3)")
    methods = doc.get("code_challenge_methods_supported")
    if not isinstance(methods, list) or "S256" not in methods:
        raise DiscoveryRefused("the authorization server does not advertise PKCE S256")
    types = doc.get("response_types_supported")
    if isinstance(types, list) and "code" not in types:
        raise DiscoveryRefused("the authorization server does not offer the authorization code flow")

    def endpoint(key: str, required: bool = False) -> str:
        value = doc.get(key)
        if value is None and not required:
            return ""
        return check_url(value, f"the authorization server's {key}", insecure_ok=insecure_ok)

    try:
        scopes = parse_scopes(doc.get("scopes_supported"), "scopes_supported")
    except InvalidRequest:
        scopes = ()
    return AuthorizationServer(
        issuer=issuer,
        authorization_endpoint=endpoint("authorization_endpoint", True),
        token_endpoint=endpoint("token_endpoint", True),
        registration_endpoint=endpoint("registration_endpoint"),
        revocation_endpoint=endpoint("revocation_endpoint"),
        userinfo_endpoint=endpoint("userinfo_endpoint"),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
        client_id_metadata_document_supported=doc.get("client_id_metadata_document_supported") is True,
        scopes_supported=scopes,
    )


def wanted_scopes(challenge: Challenge | None, metadata: ResourceMetadata, *, held: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The scopes to ask for (MCP scope selection): the challenge's ``scope`` when it has
    one, else the metadata's ``scopes_supported``; on a step-up, united with what the
    person already granted so nothing is lost."""
    base = challenge.scopes if challenge is not None and challenge.scopes else metadata.scopes_supported
    return tuple(dict.fromkeys((*held, *base)))

