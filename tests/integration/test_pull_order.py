"""The order of a pull's downloads: the first layer downloads alone, so its unpack starts as early as it can.

The unpack is one Diff.Apply after another in chain order, so on a fast link it is the longer part of a pull;
three downloads at once used to land the first layer later (they share the link, and containerd's commits slow
the first Apply). Served from a tiny threaded ``http.server`` that records when each blob's GET begins and when
its body was sent; the first layer dribbles for longer than ``ctk_shared.pull.HEAD_START``, so the test also
sees the others start while it is still on its way (a slow first layer does not hold the rest back for good).
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ctk_shared import oci
from ctk_shared.pull import HEAD_START

pytestmark = pytest.mark.integration

REPO = "order/img"
DRIBBLE = HEAD_START + 1.5  # seconds the first layer's body takes


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(name: str, size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        tf.addfile(info, io.BytesIO(bytes([len(name)]) * size))
    return buf.getvalue()


class _Registry(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    blobs: dict[str, bytes] = {}
    manifest = b""
    slow = ""  # the digest whose body dribbles for DRIBBLE seconds
    seen: dict[str, list[float]] = {}  # digest -> [GET began, body sent]
    t0 = 0.0

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/v2/":
            return self._send(200, b"{}", "application/json", head=head)
        if path.startswith(f"/v2/{REPO}/manifests/"):
            return self._send(200, self.manifest, oci.OCI_MANIFEST, {"Docker-Content-Digest": _digest(self.manifest)},
                              head)
        digest = path.rsplit("/", 1)[-1]
        body = self.blobs.get(digest)
        if body is None or not path.startswith(f"/v2/{REPO}/blobs/"):
            return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}', "application/json",
                              head=head)
        began = time.monotonic() - self.t0
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        # the times are recorded before the last byte goes out: once it has, the pull may finish (and the test
        # read ``seen``) before this thread runs again
        times = self.seen[digest] = [began, began]
        if digest == self.slow:
            pieces = 30
            step = -(-len(body) // pieces)
            for i in range(0, len(body), step):
                time.sleep(DRIBBLE / pieces)
                if i + step >= len(body):
                    times[1] = time.monotonic() - self.t0
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
        else:
            self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)


@pytest.fixture
def ordered_registry() -> Iterator[tuple[str, type[_Registry], list[str]]]:
    """``(host, handler class, layer digests)``: a 3-layer image whose first layer dribbles."""
    layers = [_tar(f"layer{i}", 300 << 10) for i in range(3)]
    digests = [_digest(x) for x in layers]
    config = json.dumps({"architecture": oci.host_platform().architecture, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": digests}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": [{"mediaType": oci.OCI_LAYER, "digest": d, "size": len(x)} for d, x in zip(digests, layers)],
    }).encode()
    handler = type("Handler", (_Registry,), {
        "blobs": {**dict(zip(digests, layers)), _digest(config): config}, "manifest": manifest,
        "slow": digests[0], "seen": {}, "t0": time.monotonic()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", handler, digests
    server.shutdown()
    server.server_close()


def test_first_layer_downloads_alone_then_the_rest_join(containerd, ctd, ordered_registry) -> None:
    host, handler, digests = ordered_registry
    handler.t0 = time.monotonic()
    r = subprocess.run(["ctk-pull", "--address", containerd.address, "--namespace", ctd.namespace, "-q",
                        f"{host}/{REPO}:v1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    seen = handler.seen
    first_began, first_sent = seen[digests[0]]
    for d in digests[1:]:
        began = seen[d][0]
        # not at once (the old order: three downloads from the start) ...
        assert began >= first_began + HEAD_START - 1.0, seen
        # ... and not after the slow first layer either: past HEAD_START it gets company
        assert began < first_sent - 0.5, seen
    assert len(ctd.images.list()) == 1  # and the image unpacked
    assert ctd.snapshots("overlayfs").stat(oci.chain_ids(digests)[-1]) is not None

