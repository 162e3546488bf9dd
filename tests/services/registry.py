"""Real peers of the podman tests: Debian's docker-registry with htpasswd auth on a free
loopback port, and a tiny image (a busybox-static root filesystem) built and pushed to it."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "env", "cut", "sort", "tr", "sha256sum", "wget", "sleep", "cat", "echo")


def available() -> tuple[bool, str]:
    for path, package in ((REGISTRY, "docker-registry"), (BUSYBOX, "busybox-static"), ("/usr/bin/htpasswd", "apache2-utils"),
                          ("/usr/bin/podman", "podman"), ("/usr/sbin/runc", "runc")):
        if not os.path.exists(path):
            return False, f"{path} missing (Debian package {package}; scripts/debian-packages.d/services.txt)"
    return True, ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Podman:
    """podman as this machine runs it: runc, and a containers.conf of the tests' own."""

    conf: Path
    registries: Path

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.conf.parent),
                "CONTAINERS_CONF": str(self.conf), "CONTAINERS_REGISTRIES_CONF": str(self.registries)}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True, env=self.env(),
                                timeout=300)
        if check:
            assert result.returncode == 0, result.stderr
        return result


def make_podman(directory: Path, registry_host: str) -> Podman:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "containers.conf"
    conf.write_text('[engine]\ncgroup_manager = "cgroupfs"\n\n[containers]\ndefault_ulimits = []\n')
    registries = directory / "registries.conf"
    registries.write_text(f'[[registry]]\nlocation = "{registry_host}"\ninsecure = true\n')
    return Podman(conf, registries)


@dataclass
class Registry:
    host: str
    username: str
    password: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_registry(directory: Path, username: str, password: str) -> Registry:
    directory.mkdir(parents=True, exist_ok=True)
    htpasswd = subprocess.run(["htpasswd", "-Bbn", username, password], capture_output=True, text=True, check=True).stdout
    (directory / "htpasswd").write_text(htpasswd)
    port = free_port()
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        f"auth:\n  htpasswd:\n    realm: roomsvc-test\n    path: {directory / 'htpasswd'}\n"
    )
    log = open(directory / "registry.log", "wb")
    proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up, and asking for credentials
                break
        except OSError:
            pass
        assert proc.poll() is None, (directory / "registry.log").read_text()
        assert time.monotonic() < deadline, "docker-registry did not answer"
        time.sleep(0.05)
    return Registry(f"127.0.0.1:{port}", username, password, proc)


def build_and_push(podman: Podman, registry: Registry, directory: Path, repository: str) -> str:
    """Import a busybox root filesystem as an image, push it with the registry's
    credentials (through a 0600 auth file), and drop the local copies: the runner has to pull."""
    rootfs = directory / "rootfs"
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    archive = directory / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    local = f"localhost/roomsvc-test-{secrets.token_hex(4)}:1"
    remote = f"{registry.host}/{repository}:1"
    podman.run("import", str(archive), local)
    auth = directory / "push-auth.json"
    fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        pair = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
        json.dump({"auths": {registry.host: {"auth": pair}}}, fh)
    try:
        podman.run("push", "--authfile", str(auth), local, remote)
    finally:
        auth.unlink()
    podman.run("rmi", "--force", local)
    return remote
