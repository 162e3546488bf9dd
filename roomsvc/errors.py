"""The one error tree of roomsvc.

Domain code raises these; only :mod:`roomsvc.transport.errors` knows how each one
looks on the wire (application code, HTTP status, websocket close code)::

    RoomsvcError
    ├── PermissionDenied            caller lacks a grant, or acts outside its room
    ├── Unauthenticated             token missing, malformed, badly signed, expired
    ├── InvalidRequest              the request itself is wrong (field, type, size)
    │   ├── TooLarge                a value or message above its configured cap
    │   │   └── MessageTooLarge     a MeshAgent message announcing more than the cap
    │   ├── FramingError            MeshAgent packets that do not form a message
    │   └── HeaderSpecError         a HEADER:FORMAT spec that cannot be used
    ├── NotFound                    nothing there (or nothing the caller may see)
    ├── AlreadyExists
    ├── Conflict                    compare-and-swap lost (expected version differs)
    ├── InvalidState                e.g. a credential needs re-authorization
    │   ├── Sealed                  the vault has no usable master key
    │   ├── ReauthRequired          an OAuth grant is dead; its owner must consent again
    │   └── InvalidTransition       an OAuth flow asked to make an illegal move
    ├── DependencyMissing           a peer or provider that is needed is not there
    │   └── PullRefused             a registry refused an image pull (credentials, missing image)
    ├── OperationFailed             something failed on the way; safe to report
    │   ├── InternalError           an unexpected failure in the server (an incident id)
    │   ├── StorageError            the database refused or is unavailable
    │   ├── DecryptionFailed        a stored ciphertext does not open (tamper, move)
    │   └── OAuthError              an OAuth provider refused a step or answered badly
    │       └── ProviderUnavailable transient: timeout, 5xx, 429, connection failure
    ├── Rejected                    the participant asked declined (reject, access_denied)
    ├── Timeout
    └── Overloaded                  a bounded resource is full; retry later
        ├── TooManyConnections      the per-identity connection cap is reached
        └── RateLimited             a per-identity rate limit is reached (retry_after)
            └── BudgetExceeded      an LLM token budget for today is used up (retry_after)
    ConfigError                     (separate: start-up only) bad setting, with key path

Messages never contain a secret value: they name fields, ids and placeholders only.
"""

from __future__ import annotations

from enum import Enum


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


class MessageTooLarge(TooLarge):
    """A MeshAgent start packet announces more payload than the connection accepts.

    Carries the message id and type so the connection can answer that request with an
    error instead of dropping it silently; the assembler skips its data packets.
    """

    def __init__(self, message: str, *, message_id: int, message_type: str) -> None:
        super().__init__(message)
        self.message_id = message_id
        self.message_type = message_type


class FramingError(InvalidRequest):
    """MeshAgent packets that do not form a message (out of order, interleaved, malformed)."""

    name = "framing_error"


class HeaderSpecError(InvalidRequest):
    name = "invalid_header_spec"


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


class InvalidTransition(InvalidState):
    """An OAuth flow asked to move from ``current`` to a status it may not reach from there."""

    name = "invalid_state"

    def __init__(self, flow_id: str, current: Enum, target: Enum) -> None:
        super().__init__(f"OAuth request {flow_id[:12]}... is {current.value}; it cannot become {target.value}")
        self.current = current
        self.target = target


class DependencyMissing(RoomsvcError):
    name = "dependency_missing"


class PullRefused(DependencyMissing):
    """A registry refused to hand out a service's image: bad or missing credentials, or no
    such image. Names the image and the pull secret id, never the password."""

    name = "pull_refused"


class OperationFailed(RoomsvcError):
    name = "operation_failed"


class InternalError(OperationFailed):
    """A failure nobody expected (a bug): the log has the traceback under the incident
    id the message carries; the client learns nothing more."""

    name = "internal_error"


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


class BudgetExceeded(RateLimited):
    """An identity or room has used its LLM tokens for the day (``llm.*_daily_tokens``);
    ``retry_after`` is the time until the budget renews (00:00 UTC)."""

    name = "budget_exceeded"


class ConfigError(Exception):
    """A setting is missing or invalid; start-up stops with the key path and reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
