"""The one error tree of roomsvc.

Domain code raises these; only :mod:`roomsvc.transport.errors` knows how each one
looks on the wire (application code, HTTP status, websocket close code)::

    RoomsvcError
    ├── PermissionDenied            caller lacks a grant, or acts outside its room
    ├── Unauthenticated             token missing, malformed, badly signed, expired
    ├── InvalidRequest              the request itself is wrong (field, type, size)
    │   └── TooLarge                a value or message above its configured cap
    ├── NotFound                    nothing there (or nothing the caller may see)
    ├── AlreadyExists
    ├── Conflict                    compare-and-swap lost (expected version differs)
    ├── InvalidState                e.g. a credential needs re-authorization
    │   ├── Sealed                  the vault has no usable master key
    │   └── ReauthRequired          an OAuth grant is dead; its owner must consent again
    ├── DependencyMissing           a peer or provider that is needed is not there
    ├── OperationFailed             something failed on the way; safe to report
    │   ├── StorageError            the database refused or is unavailable
    │   ├── DecryptionFailed        a stored ciphertext does not open (tamper, move)
    │   └── OAuthError              an OAuth provider refused a step or answered badly
    │       └── ProviderUnavailable transient: timeout, 5xx, 429, connection failure
    ├── Rejected                    the participant asked declined (reject, access_denied)
    ├── Timeout
    └── Overloaded                  a bounded resource is full; retry later
        ├── TooManyConnections      the per-identity connection cap is reached
        └── RateLimited             a per-identity rate limit is reached (retry_after)
    ConfigError                     (separate: start-up only) bad setting, with key path

Messages never contain a secret value: they name fields, ids and placeholders only.
"""

from __future__ import annotations


class RoomsvcError(Exception):
    """Base class of every error roomsvc reports to a client."""

    #: stable machine-readable name, used on the wire next to the numeric code
    name = "error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.name.replace("_", " "))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.name


class PermissionDenied(RoomsvcError):
    name = "permission_denied"


class Unauthenticated(RoomsvcError):
    name = "unauthenticated"


class InvalidRequest(RoomsvcError):
    name = "invalid_request"


class TooLarge(InvalidRequest):
    name = "too_large"


class NotFound(RoomsvcError):
    name = "not_found"


class AlreadyExists(RoomsvcError):
    name = "already_exists"


class Conflict(RoomsvcError):
    name = "conflict"


class InvalidState(RoomsvcError):
    name = "invalid_state"


class Sealed(InvalidState):
    name = "sealed"


class DependencyMissing(RoomsvcError):
    name = "dependency_missing"


class OperationFailed(RoomsvcError):
    name = "operation_failed"


class StorageError(OperationFailed):
    name = "storage_error"


class DecryptionFailed(OperationFailed):
    name = "decryption_failed"


class ReauthRequired(InvalidState):
    name = "reauth_required"


class OAuthError(OperationFailed):
    """An OAuth step failed at the provider. ``error`` is the provider's RFC 6749 error
    code when it sent one (``invalid_grant``, ...); never a token or a response body."""

    name = "oauth_error"

    def __init__(self, message: str = "", *, error: str = "") -> None:
        super().__init__(message)
        self.error = error


class ProviderUnavailable(OAuthError):
    name = "provider_unavailable"


class Rejected(RoomsvcError):
    name = "rejected"


class Timeout(RoomsvcError):
    name = "timeout"


class Overloaded(RoomsvcError):
    name = "overloaded"


class TooManyConnections(Overloaded):
    name = "too_many_connections"


class RateLimited(Overloaded):
    """An identity went over one of its rate limits. ``retry_after`` is the number of
    seconds until the next operation of that kind will be let through."""

    name = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(Exception):
    """A setting is missing or invalid; start-up stops with the key path and reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
