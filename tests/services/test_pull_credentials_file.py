"""The pull's credential file, seen from inside the pull: mode 0600 while podman runs, gone
right after, whether the pull succeeded or not; and podman's refusals classified.

The "podman" here is a small script in the runner's executable setting that records what
it was handed (the real podman and registry are in test_podman_runner.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from roomsvc.domain.project_secrets import PullCredentials
from roomsvc.errors import PullRefused
from roomsvc.integrations.podman_runner import PodmanRunner, PodmanSettings

PASSWORD = "file-PASSWORD-CANARY-2d"


def runner(tmp_path: Path, exit_code: int, message: str) -> tuple[PodmanRunner, Path]:
    record = tmp_path / "seen.json"
    script = tmp_path / "podman"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "path = args[args.index('--authfile') + 1]\n"
        "seen = {'mode': oct(os.stat(path).st_mode & 0o777), 'auths': sorted(json.load(open(path))['auths']),\n"
        "        'env': sorted(os.environ), 'args': args}\n"
        f"json.dump(seen, open({str(record)!r}, 'w'))\n"
        f"sys.stderr.write({message!r})\n"
        f"sys.exit({exit_code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    settings = PodmanSettings(executable=str(script), runtime="runc", cgroup_manager="cgroupfs", env_loader="/bin/busybox",
                              insecure_registries=("127.0.0.1:5000",), state_dir=tmp_path / "state", pull_timeout=30)
    return PodmanRunner(settings), record


CREDS = PullCredentials("127.0.0.1:5000", "puller", PASSWORD)


async def test_the_file_is_0600_during_the_pull_and_gone_after(tmp_path: Path) -> None:
    pod, record = runner(tmp_path, 0, "")
    await pod.pull("127.0.0.1:5000/probe:1", CREDS, secret_id="registry")
    seen = json.loads(record.read_text())
    assert seen["mode"] == "0o600" and seen["auths"] == ["127.0.0.1:5000"]
    assert PASSWORD not in " ".join(seen["args"])  # never on podman's command line
    # podman's own environment: its configuration, nothing of the test process's
    # (LC_CTYPE is set by the Python the stand-in runs on, not by roomsvc)
    assert set(seen["env"]) - {"LC_CTYPE"} == {"PATH", "HOME", "CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF"}
    assert sorted(p.name for p in (tmp_path / "state" / "podman").iterdir()) == ["containers.conf", "registries.conf"]
    conf = (tmp_path / "state" / "podman" / "containers.conf").read_text()
    assert 'cgroup_manager = "cgroupfs"' in conf and "default_ulimits = []" in conf


@pytest.mark.parametrize(("creds", "message", "expected"), [
    (CREDS, "Error: reading manifest 1 in x: unauthorized: authentication required", "bad username or password"),
    (None, "Error: reading manifest 1 in x: unauthorized: authentication required", "requires credentials"),
    (CREDS, "Error: reading manifest 1 in x: manifest unknown", "has no image"),
])
async def test_refusals_are_named_and_the_file_is_gone_anyway(tmp_path: Path, creds: PullCredentials | None, message: str,
                                                              expected: str) -> None:
    pod, record = runner(tmp_path, 125, message + f" (echoing {PASSWORD})")
    with pytest.raises(PullRefused) as info:
        await pod.pull("127.0.0.1:5000/probe:1", creds, secret_id="registry")
    assert expected in info.value.message and PASSWORD not in info.value.message
    assert json.loads(record.read_text())["auths"] == (["127.0.0.1:5000"] if creds else [])
    assert not list((tmp_path / "state" / "podman").glob("auth-*"))
