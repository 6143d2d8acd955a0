"""Registry mirrors from hosts.toml, against a real pull-through cache: Debian's docker-registry in proxy mode in
front of the session's test registry. The mirror's access log is the witness of what went through it."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.support.registry_daemon import RegistryDaemon, free_port, start_registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mirror(registry: RegistryDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryDaemon]:
    daemon = start_registry(tmp_path_factory.mktemp("mirror"), proxy_remote=registry.url)
    yield daemon
    daemon.stop()


def _hosts_dir(tmp_path: Path, upstream: str, toml: str) -> str:
    d = tmp_path / "certs.d" / upstream
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(toml)
    return str(tmp_path / "certs.d")


def _mirror_toml(upstream: str, *mirrors: str, caps: str = '["pull", "resolve"]') -> str:
    text = f'server = "http://{upstream}"\n'
    for m in mirrors:
        text += f'\n[host."http://{m}"]\n  capabilities = {caps}\n'
    return text


def _log(daemon: RegistryDaemon) -> str:
    assert daemon.log_path is not None
    return daemon.log_path.read_text(errors="replace")


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a mirror that hangs."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


@pytest.fixture
def lying_mirror(registry: RegistryDaemon) -> Iterator[str]:
    """Proxies to the registry but flips one byte of every blob it serves (same length, wrong digest)."""
    upstream = registry.url

    class Handler(BaseHTTPRequestHandler):
        def _relay(self, body: bool) -> None:
            r = requests.request(self.command, upstream + self.path, headers={"Accept": self.headers.get("Accept", "")},
                                 timeout=30)
            data = r.content
            if body and "/blobs/" in self.path and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(r.status_code)
            for k in ("Content-Type", "Docker-Content-Digest"):
                if k in r.headers:
                    self.send_header(k, r.headers[k])
            self.send_header("Content-Length", str(len(data) if body else r.headers.get("Content-Length", 0)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._relay(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._relay(False)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_mirror_sending_wrong_bytes_is_dropped_for_upstream(ctk, ctd, test_images, registry, lying_mirror,
                                                              tmp_path):
    img = test_images["multilayer"]
    hosts = _hosts_dir(tmp_path, registry.host, _mirror_toml(registry.host, lying_mirror))
    r = ctk("--hosts-dir", hosts, img.ref, "--format", "json")
    assert r.code == 0, r.err
    assert set(json.loads(r.out)["Sources"].values()) == {registry.host}
    assert ctd.images.get(img.ref).target.digest == img.digest


def test_pull_goes_through_the_mirror_and_says_so(ctk, ctd, test_images, registry, mirror, tmp_path):
    img = test_images["multilayer"]
    hosts = _hosts_dir(tmp_path, registry.host, _mirror_toml(registry.host, mirror.host))
    r = ctk("--hosts-dir", hosts, img.ref, "--format", "json")
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert rec["Digest"] == img.digest
    # every layer came from the mirror, and the mirror's log has each blob's GET
    assert rec["Sources"] and set(rec["Sources"].values()) == {mirror.host}
    log = _log(mirror)
    for digest in rec["Sources"]:
        assert f"/blobs/{digest}" in log
    assert "ns=" in log  # as containerd: the mirror is told which registry the repository is from
    assert ctd.images.get(img.ref).target.digest == img.digest


def test_plain_progress_names_the_mirror(ctk, test_images, registry, mirror, tmp_path):
    img = test_images["zstd"]
    hosts = _hosts_dir(tmp_path, registry.host, _mirror_toml(registry.host, mirror.host))
    r = ctk("--hosts-dir", hosts, img.ref)
    assert r.code == 0, r.err
    assert f"downloading from {mirror.host}" in r.err


def test_a_mirror_without_pull_capability_is_not_used(ctk, test_images, registry, mirror, tmp_path):
    img = test_images["plain"]
    hosts = _hosts_dir(tmp_path, registry.host, _mirror_toml(registry.host, mirror.host, caps='["push"]'))
    r = ctk("--hosts-dir", hosts, img.ref, "--format", "json")
    assert r.code == 0, r.err
    assert set(json.loads(r.out)["Sources"].values()) <= {registry.host}
    repo = img.ref.split("/", 1)[1].rsplit(":", 1)[0]
    assert f"/v2/{repo}/" not in _log(mirror)


def test_a_mirror_that_is_down_falls_back_to_upstream_at_once(ctk, test_images, registry, tmp_path):
    img = test_images["busybox"]
    dead = f"127.0.0.1:{free_port()}"
    hosts = _hosts_dir(tmp_path, registry.host, _mirror_toml(registry.host, dead))
    t0 = time.monotonic()
    r = ctk("--hosts-dir", hosts, img.ref, "--format", "json")
    assert r.code == 0, r.err
    assert time.monotonic() - t0 < 10
    assert set(json.loads(r.out)["Sources"].values()) <= {registry.host}


def test_a_mirror_that_hangs_costs_one_bounded_wait(ctk, test_images, registry, silent_server, tmp_path):
    img = test_images["multilayer"]
    hosts = _hosts_dir(tmp_path, registry.host, _mirror_toml(registry.host, silent_server))
    t0 = time.monotonic()
    r = ctk("--hosts-dir", hosts, "--registry-timeout", "2,2,2", img.ref, "--format", "json")
    took = time.monotonic() - t0
    assert r.code == 0, r.err
    assert set(json.loads(r.out)["Sources"].values()) <= {registry.host}
    # the hanging mirror is given up after the response limit once, not once per blob
    assert took < 12, took


def test_when_mirror_and_upstream_both_fail_the_error_names_both(ctk, tmp_path):
    upstream, dead_mirror = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    hosts = _hosts_dir(tmp_path, upstream, _mirror_toml(upstream, dead_mirror))
    r = ctk("--hosts-dir", hosts, f"{upstream}/library/nothing:1")
    assert r.code != 0
    assert upstream in r.err and dead_mirror in r.err and "Traceback" not in r.err
    assert len([line for line in r.err.splitlines() if "error:" in line]) == 1


def test_push_skips_a_pull_only_mirror(ctk, test_images, registry, mirror, tmp_path):
    img = test_images["busybox"]
    assert ctk(img.ref, "-q").code == 0
    target = f"{registry.host}/mirrortest/pushed:1"
    assert ctk("tag", img.ref, target).code == 0
    hosts = _hosts_dir(tmp_path, registry.host, _mirror_toml(registry.host, mirror.host))
    r = ctk("--hosts-dir", hosts, "push", target, "-q")
    assert r.code == 0, r.err
    assert "mirrortest/pushed" not in _log(mirror)
    assert registry.url  # the push landed upstream: pull it back directly
    back = ctk(target, "-q")
    assert back.code == 0, back.err
