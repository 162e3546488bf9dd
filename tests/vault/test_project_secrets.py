"""Project secrets (keys bags) and image pull secrets.

The resolvers are called directly against a real store and cipher (the service runner
that will call them does not exist yet); the admin API and the CLI are driven against a
real server, and no read API may return a pull secret's values."""

from __future__ import annotations

import json

import pytest

from roomsvc.domain.project_secrets import KeysBag, PullCredentials, parse_pairs
from roomsvc.errors import Conflict, DecryptionFailed, InvalidRequest, NotFound, PermissionDenied
from tests.support.server import Server
from tests.vault.conftest import OPERATOR, Http, Vault, audit_lines, execute, now, principal, query

PASSWORD = "pull-PASSWORD-7f3a9c"
KEY_VALUE = "keys-VALUE-51be0d"


# -- resolvers (unit level) ------------------------------------------------------------------


async def uses(vault: Vault, secret_id: str) -> list[tuple[str, str, str, str, str]]:
    return [(line.actor, line.action, line.channel, line.outcome, line.detail)
            for line in await vault.auditor.query() if line.secret_id == secret_id and line.action == "use"]


async def test_resolve_keys_returns_the_pairs_and_audits_each_use(vault: Vault) -> None:
    await vault.project.put_keys(OPERATOR, id="svc-env", data={"API_KEY": KEY_VALUE, "MODE": "prod"}, name="Service env")
    bag = await vault.project.resolve_keys("svc-env", service="mailer")
    assert bag == {"API_KEY": KEY_VALUE, "MODE": "prod"}
    assert isinstance(bag, KeysBag) and KEY_VALUE not in repr(bag) and KEY_VALUE not in str(bag)
    await vault.project.resolve_keys("svc-env", service="other")
    assert await uses(vault, "svc-env") == [
        ("service:mailer", "use", "resolver", "ok", "keys"),
        ("service:other", "use", "resolver", "ok", "keys"),
    ]
    # an update is a new version and the resolver sees it
    record = await vault.project.put_keys(OPERATOR, id="svc-env", data={"API_KEY": "v2"})
    assert record.version == 2 and record.name == "Service env"
    assert await vault.project.resolve_keys("svc-env", service="mailer") == {"API_KEY": "v2"}


async def test_resolve_pull_returns_credentials_and_audits(vault: Vault) -> None:
    await vault.project.put_pull(OPERATOR, id="registry", server="ghcr.io", username="bot", password=PASSWORD,
                                 email="bot@example.com")
    creds = await vault.project.resolve_pull("registry", service="runner")
    assert creds == PullCredentials("ghcr.io", "bot", PASSWORD, "bot@example.com")
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds)
    assert await uses(vault, "registry") == [("service:runner", "use", "resolver", "ok", "pull")]


async def test_resolvers_refuse_missing_wrong_kind_and_tampered_with_audit(vault: Vault) -> None:
    await vault.project.put_keys(OPERATOR, id="bag", data={"A": "1"})
    await vault.project.put_pull(OPERATOR, id="pull", server="s", username="u", password="p")
    with pytest.raises(NotFound):
        await vault.project.resolve_keys("absent", service="svc")
    with pytest.raises(NotFound):
        await vault.project.resolve_pull("bag", service="svc")  # a keys bag is not a pull secret
    with pytest.raises(NotFound):
        await vault.project.resolve_keys("pull", service="svc")
    with pytest.raises(InvalidRequest):
        await vault.project.resolve_keys("../bag", service="svc")

    execute(vault.path, "UPDATE project_secrets SET id = 'bag-moved' WHERE id = 'bag'")  # moved: AAD names the id
    [(blob,)] = query(vault.path, "SELECT ciphertext FROM project_secrets WHERE id = 'pull'")
    execute(vault.path, "UPDATE project_secrets SET ciphertext = ? WHERE id = 'pull'", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    with pytest.raises(DecryptionFailed):
        await vault.project.resolve_keys("bag-moved", service="svc")
    with pytest.raises(DecryptionFailed):
        await vault.project.resolve_pull("pull", service="svc")

    outcomes = {(line.secret_id, line.outcome) for line in await vault.auditor.query() if line.action == "use"}
    assert outcomes == {("absent", "not_found"), ("bag", "not_found"), ("pull", "not_found"),
                        ("bag-moved", "decrypt_failed"), ("pull", "decrypt_failed")}


async def test_only_operators_manage_project_secrets_and_denials_are_audited(vault: Vault) -> None:
    room_admin = principal("alice", "room1", "secrets", "admin")  # a room admin is not an operator
    with pytest.raises(PermissionDenied):
        await vault.project.put_keys(room_admin, id="bag", data={"A": "1"})
    with pytest.raises(PermissionDenied):
        await vault.project.put_pull(room_admin, id="p", server="s", username="u", password=PASSWORD)
    with pytest.raises(PermissionDenied):
        await vault.project.list(room_admin)
    with pytest.raises(PermissionDenied):
        await vault.project.delete(room_admin, id="bag")
    denied = [(line.actor, line.action, line.outcome) for line in await vault.auditor.query() if line.outcome == "denied"]
    assert denied == [("alice", "set", "denied"), ("alice", "set", "denied"), ("alice", "list", "denied"),
                      ("alice", "delete", "denied")]
    assert await vault.project.list(OPERATOR) == []


async def test_project_secret_input_checks(vault: Vault) -> None:
    for data in ({}, {"1BAD": "x"}, {"A": 1}, None):
        with pytest.raises(InvalidRequest):
            await vault.project.put_keys(OPERATOR, id="bag", data=data)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await vault.project.put_pull(OPERATOR, id="p", server="s", username="u", password="")
    await vault.project.put_keys(OPERATOR, id="same", data={"A": "1"})
    with pytest.raises(Conflict):
        await vault.project.put_pull(OPERATOR, id="same", server="s", username="u", password="p")


def test_parse_pairs_never_quotes_a_value_back() -> None:
    assert parse_pairs("A=1 B=x=y  C=") == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(InvalidRequest) as info:
        parse_pairs("A=1 secret-part-of-a-value")
    assert "secret-part" not in info.value.message and "item 2" in info.value.message


# -- admin API and CLI against a real server --------------------------------------------------------


def cli_ok(server: Server, *args: str, token: str, input: bytes | None = None) -> str:
    result = server.cli(*args, token=token, input=input)
    assert result.returncode == 0, result.stderr.decode()
    assert PASSWORD not in (result.stdout + result.stderr).decode()
    assert KEY_VALUE not in (result.stdout + result.stderr).decode()
    return result.stdout.decode()


async def test_cli_and_admin_api_round_trip_without_ever_returning_values(server: Server) -> None:
    op = server.operator_token()
    cli_ok(server, "secret", "keys", "create", "--id", "env1", "--name", "Env one", "--data", f"TOKEN={KEY_VALUE} LEVEL=3",
           token=op)
    cli_ok(server, "secret", "keys", "create", "--id", "env2", "--data", "-", token=op, input=b"A=1\nB=2\n")
    cli_ok(server, "secret", "pull", "create", "--id", "ghcr", "--server", "ghcr.io", "--username", "bot",
           token=op, input=f"{PASSWORD}\n".encode())

    keys = json.loads(cli_ok(server, "secret", "keys", "list", token=op))
    pulls = json.loads(cli_ok(server, "secret", "pull", "list", token=op))
    assert [(k["id"], k["name"], k["type"], k["version"]) for k in keys] == [("env1", "Env one", "keys", 1),
                                                                            ("env2", "env2", "keys", 1)]
    assert [(p["id"], p["type"]) for p in pulls] == [("ghcr", "pull")]
    assert all(set(entry) == {"id", "name", "type", "version", "created_at", "updated_at"} for entry in keys + pulls)

    # no read API returns the values: not the list, not a GET on the secret's path
    async with Http(server, op) as http:
        listing = await http.call("GET", "/v1/admin/secrets")
        assert listing.status == 200 and len(listing.body["secrets"]) == 3
        for path in ("/v1/admin/secrets/pull/ghcr", "/v1/admin/secrets/keys/env1", "/v1/admin/secrets/ghcr"):
            reply = await http.call("GET", path)
            assert reply.status in (404, 405), (path, reply.status)
        for reply in http.replies:
            assert PASSWORD not in reply.text and KEY_VALUE not in reply.text
        # an update keeps the id and bumps the version; a kind mismatch is refused
        again = await http.call("PUT", "/v1/admin/secrets/pull/ghcr",
                                json={"server": "ghcr.io", "username": "bot2", "password": PASSWORD})
        assert again.body["secret"]["version"] == 2
        clash = await http.call("PUT", "/v1/admin/secrets/keys/ghcr", json={"data": {"A": "1"}})
        assert clash.error == "conflict"
        assert (await http.call("PUT", "/v1/admin/secrets/other/x", json={})).error == "not_found"

    cli_ok(server, "secret", "pull", "delete", "ghcr", token=op)
    cli_ok(server, "secret", "keys", "delete", "env2", token=op)
    gone = server.cli("secret", "keys", "delete", "env2", token=op)
    assert gone.returncode == 1 and b"not found" in gone.stderr
    wrong_kind = server.cli("secret", "pull", "delete", "env1", token=op)
    assert wrong_kind.returncode == 1
    assert [k["id"] for k in json.loads(cli_ok(server, "secret", "keys", "list", token=op))] == ["env1"]
    assert json.loads(cli_ok(server, "secret", "pull", "list", token=op)) == []

    bad = server.cli("secret", "keys", "create", "--id", "env3", "--data", f"A=1 {KEY_VALUE}", token=op)
    assert bad.returncode == 2 and KEY_VALUE not in bad.stderr.decode() and b"no '='" in bad.stderr  # a usage error

    lines = [line for line in await audit_lines(server, identity="operator") if line["room"] is None]
    seen = {(line["secret_id"], line["action"], line["outcome"]) for line in lines}
    assert {("env1", "create", "ok"), ("ghcr", "create", "ok"), ("ghcr", "update", "ok"), ("ghcr", "delete", "ok"),
            ("env2", "delete", "ok"), ("env2", "delete", "not_found")} <= seen


async def test_room_tokens_are_refused_and_audited(server: Server) -> None:
    started = now() - 1
    room_admin = server.token("mallory", "room1", api=("secrets", "admin"))
    async with Http(server, room_admin) as http:
        assert (await http.call("GET", "/v1/admin/secrets")).error == "permission_denied"
        reply = await http.call("PUT", "/v1/admin/secrets/pull/evil",
                                json={"server": "s", "username": "u", "password": PASSWORD})
        assert reply.error == "permission_denied" and PASSWORD not in reply.text
        assert (await http.call("DELETE", "/v1/admin/secrets/keys/env1")).error == "permission_denied"
    denied = [(line["action"], line["secret_id"]) for line in await audit_lines(server, identity="mallory", since=started)
              if line["outcome"] == "denied"]
    assert denied == [("list", "*"), ("set", "evil"), ("delete", "env1")]
