"""Pulls that go wrong: corrupt or truncated blobs, Ctrl-C and kill mid-pull, bad credentials.

Each test gets its own registry so it can damage the stored blobs without touching other tests.
"""
from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from ctk_shared.errors import NotFound

from tests.support import images as im
from tests.support.registry_daemon import start_registry

pytestmark = pytest.mark.integration


@pytest.fixture
def own_registry(tmp_path):
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()



def _blob_file(reg, digest: str) -> Path:
    hexd = digest.split(":", 1)[1]
    return reg.base_dir / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


def _assert_nothing_left(ctd, digest: str) -> None:
    assert ctd.images.list() == []
    with pytest.raises(NotFound):
        ctd.content.info(digest)
    assert ctd.content.statuses() == []
    assert ctd.leases.list() == []


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_blob_fails_and_leaves_nothing(ctk, ctd, own_registry, damage, tmp_path):
    info = im.build_image(tmp_path / "layout", "v1", [im.busybox_layer_tar(), im.extra_layer_tar({"x": b"x" * 100_000})])
    im.push_layout(tmp_path / "layout", "v1", f"{own_registry.host}/test/damaged:v1")
    layer = info.layers[-1]
    f = _blob_file(own_registry, layer.digest)
    data = bytearray(f.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    f.write_bytes(bytes(data))
    r = ctk(f"{own_registry.host}/test/damaged:v1")
    assert r.code == 5  # integrity failure
    err = [line for line in r.err.splitlines() if line.startswith("ctk-pull: error:")]
    assert err and layer.digest in err[0]
    assert ("does not match" in err[0]) if damage == "flip" else ("truncated" in err[0] or "size" in err[0])
    _assert_nothing_left(ctd, layer.digest)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_pull_resumes(containerd, ctd, own_registry, sig, tmp_path):
    big = im.extra_layer_tar({"big.bin": im.random_bytes(7, 96 << 20)})
    info = im.build_image(tmp_path / "layout", "v1", [im.busybox_layer_tar(), big], compression="none")
    ref = f"{own_registry.host}/test/big:v1"
    im.push_layout(tmp_path / "layout", "v1", ref)
    size = info.layers[-1].size
    p = subprocess.Popen(["ctk-pull", "--address", containerd.address, "-n", ctd.namespace, ref],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    partial = 0
    while time.monotonic() < deadline and p.poll() is None:
        partial = max((s.offset for s in ctd.content.statuses() if s.total == size), default=0)
        if partial > 4 << 20:
            break
        time.sleep(0.005)
    assert p.poll() is None, "the pull finished before it could be interrupted"
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    if sig == signal.SIGINT:
        assert p.returncode == 130 and out == ""
        assert "interrupted" in err and "Traceback" not in err
    assert ctd.images.list() == []  # no image from a half pull
    left = max((s.offset for s in ctd.content.statuses() if s.total == size), default=0)
    assert left > 0, "the partial download should be kept for resuming"

    from ctk_shared import connect, reference
    from ctk_shared.config import GlobalOptions
    from ctk_shared.pull import pull

    r = reference.parse(ref)
    result = pull(ctd, connect.registry(r.domain, GlobalOptions()), r)
    assert result.digest == info.manifest_digest
    assert result.fetched_bytes <= size + info.layers[0].size - left  # resumed, not restarted
    assert ctd.images.get(ref).target.digest == info.manifest_digest


def test_login_pull_logout_with_tls_and_basic_auth(ctk, ctd, registry_tls_auth, tmp_path):
    reg = registry_tls_auth
    im.build_image(tmp_path / "layout", "v1", [im.busybox_layer_tar()])
    im.push_layout(tmp_path / "layout", "v1", f"{reg.host}/private/bb:v1", tls_verify=True, creds=("ctk", "s3cret"),
                   cert_dir=reg.certs_dir / reg.host)
    env = {"DOCKER_CONFIG": str(tmp_path / "docker")}
    tls = ["--hosts-dir", str(reg.certs_dir)]
    ref = f"{reg.host}/private/bb:v1"

    r = ctk(*tls, ref, env=env)
    assert r.code == 4 and "authentication required" in r.err  # unauthorized

    r = ctk("login", *tls, "-u", "ctk", "--password-stdin", reg.host, input="wrong-pass\n", env=env)
    assert r.code == 4 and "incorrect username or password" in r.err
    assert "wrong-pass" not in r.err + r.out
    assert not (tmp_path / "docker" / "config.json").exists()

    r = ctk("login", *tls, "-u", "ctk", "--password-stdin", reg.host, input="s3cret\n", env=env)
    assert r.code == 0, r.err
    cfg = tmp_path / "docker" / "config.json"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600 and reg.host in json.loads(cfg.read_text())["auths"]

    r = ctk(*tls, "-q", ref, env=env)
    assert r.code == 0, r.err

    r = ctk("logout", reg.host, env=env)
    assert r.code == 0 and reg.host not in json.loads(cfg.read_text()).get("auths", {})


def test_untrusted_tls_registry_gives_a_hint(ctk, registry_tls_auth):
    r = ctk(f"{registry_tls_auth.host}/private/bb:v1")
    assert r.code == 1
    assert "certificate" in r.err.lower() and "--insecure-registry" in r.err
