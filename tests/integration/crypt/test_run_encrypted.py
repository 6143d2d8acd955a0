"""Encrypted images from a registry: ctk-pull and ctk-run unpack them with --decryption-key, through
containerd's stream processor (ctk-crypt-decoder), and refuse clearly without a key.

Snapshots are per containerd namespace while content is shared, so each step runs in a fresh namespace:
there the layers must really be decrypted to be unpacked."""
from __future__ import annotations

import secrets

import pytest

from tests.support.cli import run_tool

pytestmark = pytest.mark.integration


@pytest.fixture
def encrypted_ref(ctk, crypt, keys, test_images, registry):
    img = test_images["busybox"]
    assert ctk("-q", img.ref).code == 0
    ref = f"{registry.host}/enc/busybox-{secrets.token_hex(3)}:1"
    r = crypt("encrypt", "--recipient", f"jwe:{keys.rsa_pub}", img.ref, ref)
    assert r.code == 0, r.err
    assert ctk("push", "-q", ref).code == 0
    return ref


def _in_fresh_ns(containerd, ctd, tool, *args, **kw):
    ns = f"enc-{secrets.token_hex(6)}"
    return run_tool(tool, *[str(a) for a in args], address=containerd.address, namespace=ns, **kw)


def test_ctk_run_runs_an_encrypted_image_with_its_key(containerd, ctd, encrypted_ref, keys, tmp_path):
    env = {"CTK_DATA_ROOT": str(tmp_path / "data")}
    ns = f"enc-{secrets.token_hex(6)}"

    def run(*args):
        return run_tool("ctk-run", *[str(a) for a in args], address=containerd.address, namespace=ns, env=env)

    r = run("--rm", "-q", "--network", "none", encrypted_ref, "echo", "hi")
    assert r.code == 125 and "encrypted layer" in r.err and "--decryption-key" in r.err, r.err
    r = run("--rm", "-q", "--network", "none", "--decryption-key", keys.rsa, encrypted_ref, "echo", "decrypted")
    assert r.code == 0, r.err
    assert r.out == "decrypted\n"


def test_ctk_pull_unpacks_with_the_key_and_refuses_without(containerd, ctd, encrypted_ref, keys):
    r = _in_fresh_ns(containerd, ctd, "ctk-pull", "-q", encrypted_ref)
    assert r.code == 2 and "no decryption key" in r.err and "--unpack=false" in r.err, r.err
    assert _in_fresh_ns(containerd, ctd, "ctk-pull", "-q", "--unpack", "false", encrypted_ref).code == 0
    r = _in_fresh_ns(containerd, ctd, "ctk-pull", "-q", "--decryption-key", keys.other, encrypted_ref)
    assert r.code != 0 and "key" in r.err.lower()  # a key, but not one the layers were wrapped for
    r = _in_fresh_ns(containerd, ctd, "ctk-pull", "-q", "--decryption-key", keys.rsa, encrypted_ref)
    assert r.code == 0, r.err
