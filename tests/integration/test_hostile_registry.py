"""A registry (and an image tar) that lies about sizes: ctk-pull must stop reading, not buffer the lie.

The real registry never misbehaves like this, so these tests serve the protocol from a tiny threaded
``http.server`` on 127.0.0.1 that declares small documents and then streams without end, declares documents
over the caps of ``ctk_shared.limits``, sends more layer bytes than declared, or answers a token request or an
error with an endless body. Each case runs the installed ``ctk-pull`` against the test's containerd and checks
the one-line error, that the process ended quickly, and (with ``wait4``'s rusage) that its memory stayed small.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ctk_shared import limits, oci
from ctk_shared.errors import CtkError

from tests.support.polling import wait_for
from tests.support.sockets import silent_server

pytestmark = pytest.mark.integration

REPO = "hostile/img"
DEADLINE = 30.0  # seconds: far more than any case needs, far less than buffering an endless body would take
MAX_RSS_KIB = 400 << 10  # ctk-pull with grpc and requests loaded is ~100 MiB; the old code reached GiBs
CHUNK = b"\0" * (64 << 10)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Route:
    """One answer: a status, headers, and a body that is bytes or endless (``endless`` bytes after ``body``).

    With ``stall`` the body stops after its first ``body`` bytes and the connection stays open, silent."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    endless: bool = False
    stall: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: dict[tuple[str, str], Route] = {}
    stop = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        route = self.routes.get(("HEAD" if head else "GET", path)) or self.routes.get(("*", path)) \
            or Route(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no such thing"}]}')
        self.send_response(route.status)
        for k, v in route.headers.items():
            self.send_header(k, v)
        if route.endless:
            self.send_header("Transfer-Encoding", "chunked")
        elif "Content-Length" not in route.headers:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if head:
            return
        try:
            if route.stall:
                self.wfile.write(route.body)
                self.wfile.flush()
                self.stop.wait(DEADLINE)
                return
            if not route.endless:
                self.wfile.write(route.body)
                return
            if route.body:
                self.wfile.write(f"{len(route.body):x}\r\n".encode() + route.body + b"\r\n")
            while not self.stop.is_set():  # until the client hangs up
                self.wfile.write(f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)


@pytest.fixture
def hostile() -> Iterator[tuple[str, dict[tuple[str, str], Route]]]:
    """``(host, routes)``: a registry answering only the routes the test sets (``/v2/`` answers 200)."""
    routes: dict[tuple[str, str], Route] = {("*", "/v2/"): Route(200, b"{}", {"Content-Type": "application/json"})}
    handler = type("Handler", (_Handler,), {"routes": routes, "stop": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", routes
    handler.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A registry that accepts connections and never answers (nor reads): the host, as ``127.0.0.1:PORT``."""
    with silent_server() as host:
        yield host


def _serve_manifest(routes: dict[tuple[str, str], Route], tag: str, doc: dict[str, object],
                    media_type: str = oci.OCI_MANIFEST) -> str:
    data = json.dumps(doc).encode()
    d = _digest(data)
    headers = {"Content-Type": media_type, "Docker-Content-Digest": d}
    for ref in (tag, d):
        routes[("*", f"/v2/{REPO}/manifests/{ref}")] = Route(200, data, headers)
    return d


def _manifest(config: dict[str, object], layers: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": config, "layers": layers or []}


@dataclass
class Run:
    code: int
    err: str
    seconds: float
    max_rss_kib: int

    @property
    def error(self) -> str:
        lines = [ln for ln in self.err.splitlines() if ln.startswith("ctk-pull: error:")]
        assert lines, self.err
        return lines[0]


def _ctk_pull(containerd, ctd, *args: str) -> Run:  # type: ignore[no-untyped-def]
    """Run ctk-pull, killing it at DEADLINE; ``wait4`` gives this one child's peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    t0 = time.monotonic()
    p = subprocess.Popen(["ctk-pull", "--address", containerd.address, "--namespace", ctd.namespace, *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = bytearray()

    def drain() -> None:
        assert p.stderr is not None
        while chunk := p.stderr.read(4096):
            err.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    timer = threading.Timer(DEADLINE, p.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    reader.join(5)
    return Run(p.returncode, err.decode(errors="replace"), seconds, usage.ru_maxrss)


def _assert_quick_and_small(r: Run) -> None:
    assert r.seconds < DEADLINE - 1, f"ctk-pull was still reading after {r.seconds:.0f}s (killed): {r.err[-300:]}"
    assert r.max_rss_kib < MAX_RSS_KIB, f"ctk-pull grew to {r.max_rss_kib >> 10} MiB"


def _assert_nothing_left(ctd) -> None:  # type: ignore[no-untyped-def]
    assert ctd.images.list() == []
    assert ctd.content.statuses() == []
    assert ctd.leases.list() == []


# --- registry ------------------------------------------------------------------------------------------------
def test_config_declared_small_then_endless_is_an_integrity_error(containerd, ctd, hostile) -> None:
    host, routes = hostile
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'.ljust(213)
    cd = _digest(config)
    _serve_manifest(routes, "v1", _manifest({"mediaType": oci.OCI_CONFIG, "digest": cd, "size": 213}))
    routes[("*", f"/v2/{REPO}/blobs/{cd}")] = Route(200, config, {"Content-Type": "application/octet-stream"},
                                                     endless=True)
    r = _ctk_pull(containerd, ctd, f"{host}/{REPO}:v1")
    _assert_quick_and_small(r)
    assert r.code == 5  # integrity failure
    assert cd in r.error and "more bytes than the 213 declared" in r.error
    _assert_nothing_left(ctd)


@pytest.mark.parametrize("what", ["config", "manifest-in-index", "index-by-head"])
def test_documents_declared_over_their_cap_are_refused_unread(containerd, ctd, hostile, what) -> None:
    host, routes = hostile
    if what == "config":
        size = limits.MAX_CONFIG_SIZE + 1
        d = _digest(b"big config")
        _serve_manifest(routes, "v1", _manifest({"mediaType": oci.OCI_CONFIG, "digest": d, "size": size}))
        routes[("*", f"/v2/{REPO}/blobs/{d}")] = Route(200, b"", endless=True)
        cap = "8 MiB cap for a config"
    elif what == "manifest-in-index":
        size = limits.MAX_MANIFEST_SIZE + 1
        d = _digest(b"big manifest")
        plat = {"os": "linux", "architecture": oci.host_platform().architecture}
        _serve_manifest(routes, "v1", {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
            {"mediaType": oci.OCI_MANIFEST, "digest": d, "size": size, "platform": plat}]}, oci.OCI_INDEX)
        routes[("*", f"/v2/{REPO}/manifests/{d}")] = Route(200, b"", {"Content-Type": oci.OCI_MANIFEST},
                                                           endless=True)
        cap = "4 MiB cap for a manifest"
    else:  # the tag's HEAD declares an index over the cap; its GET would never end
        size = limits.MAX_INDEX_SIZE + 1
        d = _digest(b"big index")
        routes[("HEAD", f"/v2/{REPO}/manifests/v1")] = Route(200, b"", {
            "Content-Type": oci.OCI_INDEX, "Docker-Content-Digest": d, "Content-Length": str(size)})
        routes[("GET", f"/v2/{REPO}/manifests/v1")] = Route(200, b"", {"Content-Type": oci.OCI_INDEX},
                                                            endless=True)
        cap = "4 MiB cap for an index"
    r = _ctk_pull(containerd, ctd, f"{host}/{REPO}:v1")
    _assert_quick_and_small(r)
    assert r.code == 1
    assert f"declared as {size} bytes" in r.error and cap in r.error, r.error


def test_layer_longer_than_declared_is_an_integrity_error(containerd, ctd, hostile) -> None:
    host, routes = hostile
    layer = b"not really a tar, but the pull stops before it is unpacked" * 100
    ld = _digest(layer)
    config = json.dumps({"architecture": oci.host_platform().architecture, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
    cd = _digest(config)
    routes[("*", f"/v2/{REPO}/blobs/{cd}")] = Route(200, config, {"Content-Type": "application/octet-stream"})
    routes[("*", f"/v2/{REPO}/blobs/{ld}")] = Route(200, layer, {"Content-Type": "application/octet-stream"},
                                                     endless=True)
    _serve_manifest(routes, "v1", _manifest({"mediaType": oci.OCI_CONFIG, "digest": cd, "size": len(config)},
                                            [{"mediaType": oci.OCI_LAYER, "digest": ld, "size": len(layer)}]))
    r = _ctk_pull(containerd, ctd, f"{host}/{REPO}:v1")
    _assert_quick_and_small(r)
    assert r.code == 5
    assert ld in r.error and f"more than the {len(layer)} bytes" in r.error, r.error
    _assert_nothing_left(ctd)


def test_endless_token_response_is_capped(containerd, ctd, hostile) -> None:
    host, routes = hostile
    routes[("*", "/v2/")] = Route(401, b"", {"WWW-Authenticate": f'Bearer realm="http://{host}/token",service="x"'})
    routes[("*", "/token")] = Route(200, b'{"token":"', {"Content-Type": "application/json"}, endless=True)
    r = _ctk_pull(containerd, ctd, f"{host}/{REPO}:v1")
    _assert_quick_and_small(r)
    assert r.code == 1
    assert "token response is over the 1 MiB cap" in r.error, r.error


def test_endless_error_body_is_read_only_in_part(containerd, ctd, hostile) -> None:
    host, routes = hostile
    routes[("HEAD", f"/v2/{REPO}/manifests/v1")] = Route(405, b"")  # so the GET is made
    routes[("GET", f"/v2/{REPO}/manifests/v1")] = Route(
        404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}' + b" " * 100,
        {"Content-Type": "application/json"}, endless=True)
    r = _ctk_pull(containerd, ctd, f"{host}/{REPO}:v1")
    _assert_quick_and_small(r)
    assert r.code == 3  # not found
    assert "not found" in r.error or "unknown" in r.error, r.error


# --- waits that end ------------------------------------------------------------------------------------------
# the limits come from --registry-timeout, so each case takes seconds; the old code waited 300 s per read (twice)
def test_silent_registry_is_a_response_timeout_on_pull(containerd, ctd, silent) -> None:
    r = _ctk_pull(containerd, ctd, "--registry-timeout", "2,1,1", f"{silent}/{REPO}:v1")
    assert r.seconds < 8, r.err
    assert r.code == 1
    assert f"registry {silent} accepted the connection but sent no response in 1 s" in r.error, r.error
    assert "ConnectionError" not in r.err
    _assert_nothing_left(ctd)


def test_silent_registry_is_a_response_timeout_on_login(containerd, ctd, silent) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    env["CTK_REGISTRY_TIMEOUT"] = "1"  # the environment variable is the same setting as the flag
    t0 = time.monotonic()
    p = subprocess.run(["ctk-pull", "login", silent, "-u", "u", "-p", "p"], capture_output=True, text=True,
                       env=env, timeout=DEADLINE)
    assert time.monotonic() - t0 < 8, p.stderr
    assert p.returncode == 1
    assert f"registry {silent} accepted the connection but sent no response in 1 s" in p.stderr, p.stderr


def _stalled_image(routes: dict[tuple[str, str], Route], cut: int) -> str:
    """Tag v1: one 3 MiB layer whose blob stops after ``cut`` bytes, the connection left open and silent; the
    layer's digest."""
    layer = os.urandom(3 << 20)
    ld = _digest(layer)
    config = json.dumps({"architecture": oci.host_platform().architecture, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
    cd = _digest(config)
    routes[("*", f"/v2/{REPO}/blobs/{cd}")] = Route(200, config, {"Content-Type": "application/octet-stream"})
    routes[("*", f"/v2/{REPO}/blobs/{ld}")] = Route(200, layer[:cut], {"Content-Length": str(len(layer))},
                                                     stall=True)
    _serve_manifest(routes, "v1", _manifest({"mediaType": oci.OCI_CONFIG, "digest": cd, "size": len(config)},
                                            [{"mediaType": oci.OCI_LAYER, "digest": ld, "size": len(layer)}]))
    return ld


def test_blob_stalled_mid_body_names_the_offset_and_resumes(containerd, ctd, hostile) -> None:
    host, routes = hostile
    ld = _stalled_image(routes, (1 << 20) + (1 << 18))  # 1.25 MiB, then silence
    r = _ctk_pull(containerd, ctd, "--registry-timeout", "5,5,1", f"{host}/{REPO}:v1")
    assert r.seconds < 10, r.err
    assert r.code == 1
    # whole 1 MiB chunks reach the store; the message names what is kept, which is where a retry resumes
    assert f"blob {ld}" in r.error and "stalled at 1 MiB of 3 MiB for 1 s" in r.error, r.error
    assert "resumes" in r.error and "ConnectionError" not in r.err
    assert any(st.offset == 1 << 20 for st in ctd.content.statuses()), ctd.content.statuses()


def _sigint_a_worker_thread(pid: int) -> int:
    """SIGINT to one of ``pid``'s threads other than its main one (kill(2) with a thread's id hands the signal
    to that thread when it does not block it): the thread a process-directed Ctrl-C may land on."""
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        blocked = int(status.split("SigBlk:")[1].split()[0], 16)
        if not blocked & (1 << (signal.SIGINT - 1)):
            os.kill(tid, signal.SIGINT)
            return tid
    raise AssertionError("no thread of the pull takes SIGINT")


def test_ctrl_c_ends_a_pull_whose_download_is_stalled(containerd, ctd, hostile) -> None:
    """Ctrl-C during a stalled download exits at once (130), even when the kernel hands the signal to another
    thread than the main one, and keeps what was downloaded for the rerun."""
    host, routes = hostile
    _stalled_image(routes, 1 << 20)
    p = subprocess.Popen(["ctk-pull", "--address", containerd.address, "--namespace", ctd.namespace,
                          "--registry-timeout", "5,60,60", "--unpack", "false", f"{host}/{REPO}:v1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None:
            if any(st.offset >= 1 << 20 for st in ctd.content.statuses()):
                break
            time.sleep(0.02)
        assert p.poll() is None, p.communicate()
        time.sleep(0.3)  # the main thread is waiting for the download by now
        t0 = time.monotonic()
        _sigint_a_worker_thread(p.pid)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert time.monotonic() - t0 < 5, err
    assert p.returncode == 130 and out == "", err
    assert "interrupted" in err and "Traceback" not in err
    assert any(st.offset == 1 << 20 for st in ctd.content.statuses()), "the partial download is kept"
    # containerd lets go of the ingest once it has seen the killed stream end: until then an abort can race
    # with its writer ("directory not empty")
    def aborted() -> bool:
        try:
            for st in ctd.content.statuses():
                ctd.content.abort(st.ref)
        except CtkError:
            return False
        return True

    assert wait_for(aborted, timeout=10)


def test_redirect_loop_says_so(containerd, ctd, hostile) -> None:
    host, routes = hostile
    routes[("*", f"/v2/{REPO}/manifests/v1")] = Route(307, b"", {"Location": f"/v2/{REPO}/manifests/v1"})
    r = _ctk_pull(containerd, ctd, f"{host}/{REPO}:v1")
    _assert_quick_and_small(r)
    assert r.code == 1
    assert f"redirect loop at http://{host}/v2/{REPO}/manifests/v1" in r.error, r.error
    assert "TooManyRedirects" not in r.err
    _assert_nothing_left(ctd)


# --- archives --------------------------------------------------------------------------------------------------
def _tar(path: Path, members: list[tuple[str, bytes | str]], truncate_to: int | None = None) -> Path:
    """A tar of regular members (bytes) and symlinks (str: the target); optionally cut short."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    data = buf.getvalue()
    path.write_bytes(data[:truncate_to] if truncate_to is not None else data)
    return path


@pytest.mark.parametrize("shape", ["member", "symlink"])
def test_load_refuses_an_oversized_manifest_json(containerd, ctd, tmp_path, shape) -> None:
    big = b"[" + b" " * (limits.MAX_ARCHIVE_INDEX_SIZE + 16) + b"]"
    if shape == "member":
        members: list[tuple[str, bytes | str]] = [("manifest.json", big)]
    else:  # the tar header of a symlink says 0 bytes: the cap must apply to what it points at
        members = [("big", big), ("manifest.json", "big")]
    r = _ctk_pull(containerd, ctd, "load", "-i", str(_tar(tmp_path / "a.tar", members)))
    _assert_quick_and_small(r)
    assert r.code == 1
    assert f"archive member manifest.json: the archive index is declared as {len(big)} bytes" in r.error \
        and "over the 4 MiB cap" in r.error, r.error


def test_load_of_a_member_cut_short_is_an_integrity_error(containerd, ctd, tmp_path) -> None:
    doc = json.dumps([{"Config": "c.json", "RepoTags": ["x:y"], "Layers": []}]).encode().ljust(100_000)
    path = _tar(tmp_path / "a.tar", [("manifest.json", doc)], truncate_to=20_000)  # header says 100 000 bytes
    r = _ctk_pull(containerd, ctd, "load", "-i", str(path))
    _assert_quick_and_small(r)
    assert r.code == 5
    assert "archive member manifest.json" in r.error and "header declares 100000 bytes" in r.error, r.error


def test_load_of_a_blob_longer_than_its_descriptor_is_an_integrity_error(containerd, ctd, tmp_path) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd = _digest(config)
    manifest = json.dumps(_manifest({"mediaType": oci.OCI_CONFIG, "digest": cd, "size": len(config) - 10})).encode()
    md = _digest(manifest)
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": oci.OCI_MANIFEST, "digest": md, "size": len(manifest),
         "annotations": {"io.containerd.image.name": "example.test/hostile:v1"}}]}).encode()
    path = _tar(tmp_path / "a.tar", [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
                                     (f"blobs/sha256/{md[7:]}", manifest), (f"blobs/sha256/{cd[7:]}", config)])
    r = _ctk_pull(containerd, ctd, "load", "-i", str(path))
    _assert_quick_and_small(r)
    assert r.code == 5
    assert cd in r.error and f"declares {len(config) - 10}" in r.error, r.error
    _assert_nothing_left(ctd)

