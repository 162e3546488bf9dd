"""One stand-in upstream and one roomsvc server pointed at it, per test module, with the
provider keys stored as a project keys secret through the CLI (as an operator would)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from roomsvc.crypto.tokens import mint
from roomsvc.domain.principal import build_claims
from tests.support.llm_upstream import StandIn
from tests.support.server import Server

#: the provider keys: random canaries that must never come back out of roomsvc
OPENAI_KEY = f"sk-canary-openai-{secrets.token_hex(16)}"
ANTHROPIC_KEY = f"sk-ant-canary-{secrets.token_hex(16)}"
#: small limits the refusal tests reach; every other test uses an identity of its own
IDENTITY_BUDGET = 30
REQUEST_BURST = 5
MAX_BODY = 65536


@pytest.fixture(scope="module")
async def standin() -> AsyncIterator[StandIn]:
    stand_in = await StandIn(OPENAI_KEY, ANTHROPIC_KEY).start()
    yield stand_in
    await stand_in.stop()


@pytest.fixture(scope="module")
def llm_server(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "ROOMSVC_LLM_OPENAI_BASE_URL": f"{standin.url}/v1",
        "ROOMSVC_LLM_ANTHROPIC_BASE_URL": standin.url,
        "ROOMSVC_LLM_OPENAI_MODELS": "gpt-4o*,bad-model,leaky-model",
        "ROOMSVC_LLM_IDENTITY_DAILY_TOKENS": str(IDENTITY_BUDGET),
        "ROOMSVC_LLM_REQUESTS_BURST": str(REQUEST_BURST),
        # a token every 100 s: nothing refills while a test runs
        "ROOMSVC_LLM_REQUESTS_RATE": "0.01",
        "ROOMSVC_LLM_MAX_BODY_SIZE": str(MAX_BODY),
        "ROOMSVC_LLM_DISCONNECT_CHECK_INTERVAL": "0.05",
        "ROOMSVC_LLM_READ_TIMEOUT": "30",
    }
    srv = Server(Path(tmp_path_factory.mktemp("llm")) / "data", env=env).start()
    done = srv.cli("secret", "keys", "create", "--id", "llm", "--data",
                   f"OPENAI_API_KEY={OPENAI_KEY} ANTHROPIC_API_KEY={ANTHROPIC_KEY}", token=srv.operator_token())
    assert done.returncode == 0, done.stderr
    yield srv
    srv.stop()


def llm_token(server: Server, identity: str, llm: dict[str, Any] | None = None, *, room: str | None = "room1",
              extra_api: dict[str, Any] | None = None, issued_at: int | None = None, ttl: int = 600) -> str:
    """A participant token whose api grant has ``llm`` as its llm section (None = no section)."""
    api = dict(extra_api or {})
    if llm is not None:
        api["llm"] = llm
    claims = build_claims(identity=identity, room=room, api=api or None, issued_at=issued_at or int(time.time()), ttl=ttl)
    return mint(server.keyring(), claims)
