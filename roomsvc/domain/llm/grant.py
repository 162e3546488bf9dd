"""May this participant call this provider's endpoint with this model? One pure answer.

A participant token opts in with an ``llm`` section in its ``api`` grant::

    {"name": "api", "scope": {"llm": {}}}                                  # every configured provider and model
    {"name": "api", "scope": {"llm": {"providers": ["openai"], "models": ["gpt-4o-mini", "claude-3-5-*"]}}}

``providers`` and ``models`` narrow what the settings allow (``llm.<provider>_models``);
they never widen it. A model pattern is a name, or a prefix ending in ``*``. Only the
endpoints of :data:`ENDPOINTS` are forwarded: anything else is refused, so a new upstream
API is not reachable until roomsvc knows how to account for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from roomsvc.domain.policy import Decision, Outcome
from roomsvc.domain.principal import Principal

OPENAI = "openai"
ANTHROPIC = "anthropic"
PROVIDERS = (OPENAI, ANTHROPIC)

#: the SSE dialect an endpoint streams in (and so how its usage is read)
CHAT = "chat"  # OpenAI chat/completions and completions: usage in the last chunk (include_usage)
RESPONSES = "responses"  # OpenAI responses: response.completed carries response.usage
MESSAGES = "messages"  # Anthropic messages: message_start and message_delta usage
PLAIN = "plain"  # JSON answers only (embeddings, token counting, model lists)


@dataclass(frozen=True)
class Endpoint:
    method: str
    #: the path after ``/v1/llm/<provider>/``, as the official client sends it
    path: str
    dialect: str
    #: the request body names a model (checked against the grant)
    has_model: bool = True


#: every forwarded endpoint; the path is what the official client appends to its base_url
ENDPOINTS: Mapping[str, tuple[Endpoint, ...]] = {
    OPENAI: (
        Endpoint("POST", "chat/completions", CHAT),
        Endpoint("POST", "completions", CHAT),
        Endpoint("POST", "responses", RESPONSES),
        Endpoint("POST", "embeddings", PLAIN),
        Endpoint("GET", "models", PLAIN, has_model=False),
    ),
    ANTHROPIC: (
        Endpoint("POST", "v1/messages", MESSAGES),
        Endpoint("POST", "v1/messages/count_tokens", PLAIN),
        Endpoint("GET", "v1/models", PLAIN, has_model=False),
    ),
}


def endpoint(provider: str, method: str, path: str) -> Endpoint | None:
    """The known endpoint for ``method path`` of ``provider``, or None (refused)."""
    for known in ENDPOINTS.get(provider, ()):
        if known.method == method and known.path == path.strip("/"):
            return known
    return None


def model_matches(model: str, patterns: tuple[str, ...] | list[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("*") and model.startswith(pattern[:-1]):
            return True
        if pattern == model:
            return True
    return False


def grant_section(who: Principal) -> Mapping[str, Any] | None:
    section = who.api.get("llm")
    return section if isinstance(section, Mapping) else None


def decide(
    who: Principal,
    provider: str,
    model: str | None,
    *,
    configured_models: tuple[str, ...],
    now: float,
    leeway: float = 0.0,
) -> Decision:
    """``ok``, or why not: ``unauthenticated`` (expired), ``denied`` (grant) or ``invalid``
    (the request names no model where one is needed).

    ``configured_models`` are the settings' patterns for ``provider`` (empty = any);
    ``model`` is None for endpoints without one (model lists).
    """
    if who.expires_at is not None and now >= who.expires_at + leeway:
        return Decision(Outcome.UNAUTHENTICATED, "token expired")
    if who.room is None:
        return Decision(Outcome.DENIED, "the LLM proxy needs a room token (usage is accounted per room and identity)")
    if "llm" not in who.api:
        return Decision(Outcome.DENIED, "the token's api grant has no 'llm' section")
    section = grant_section(who)
    if section is None:
        return Decision(Outcome.DENIED, "the token's api.llm grant must be an object")
    providers = section.get("providers")
    if providers is not None and (not _strings(providers) or provider not in providers):
        return Decision(Outcome.DENIED, f"the token's api.llm grant does not list provider {provider!r}")
    if model is None:
        return Decision(Outcome.OK)
    if not model or not model.isprintable() or len(model) > 256:
        return Decision(Outcome.INVALID, "the body's 'model' must be a model name")
    if configured_models and not model_matches(model, configured_models):
        return Decision(Outcome.DENIED, f"model {model!r} is not allowed on this server (llm.{provider}_models)")
    models = section.get("models")
    if models is not None and (not _strings(models) or not model_matches(model, models)):
        return Decision(Outcome.DENIED, f"the token's api.llm grant does not allow model {model!r}")
    return Decision(Outcome.OK)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
