"""Encrypted images from a registry: ctk-pull and ctk-run unpack them with --decryption-key, through
containerd's stream processor (ctk-crypt-decoder), and refuse clearly without a key.

Snapshots are per containerd namespace while content is shared, so each step runs in a fresh namespace:
there the layers must really be decrypted to be unpacked."""
from __future__ import annotations

import secrets

import pytest

from tests.support.cli import remove_containers, run_tool, tool_runner

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


# --- imgcrypt's authorization check: unpacked layers do not let anyone without a key run the image ----------
@pytest.fixture
def unpacked(ctk, encrypted_ref, keys):
    """The encrypted image, unpacked in the test's namespace by someone who had the key."""
    r = ctk("pull", "-q", "--decryption-key", str(keys.rsa), encrypted_ref)
    assert r.code == 0, r.err
    return encrypted_ref


@pytest.fixture
def run(containerd, ctd, tmp_path):
    go = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace, data_root=tmp_path / "data")
    yield go
    remove_containers(go)


def _left(run, ctd):
    """What a refused run must not leave: containers, snapshots, tasks."""
    return run("ps", "-a", "-q", "--no-trunc").lines, len(ctd.snapshots().list()), len(ctd.tasks.list())


def _spec(keys, key: str) -> str:
    """``rsa_pw:pass=x`` -> the fixture's file for ``rsa_pw``, with the password part kept."""
    name, sep, rest = key.partition(":")
    return str(getattr(keys, name)) + sep + rest


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("ctk-run: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("key,why", [
    (None, "no decryption key was given"),
    ("other", "no matching key"),
    ("rsa_pw:pass=wrong", "wrong password"),
])
def test_run_refuses_an_unpacked_encrypted_image_without_a_good_key(unpacked, run, ctd, keys, key, why):
    before = _left(run, ctd)
    args = [] if key is None else ["--decryption-key", _spec(keys, key)]
    r = run("--network", "none", "-q", *args, unpacked, "echo", "hi")
    assert r.code == 125, (r.code, r.err)
    assert why in _one_error_line(r.err) and "hi" not in r.out
    assert _left(run, ctd) == before


@pytest.mark.parametrize("key", ["rsa", "rsa_pw:pass=s3cret"])
def test_run_with_a_right_key_runs_the_unpacked_encrypted_image(unpacked, run, keys, key):
    r = run("--rm", "--network", "none", "-q", "--decryption-key", _spec(keys, key), unpacked, "echo", "hi")
    assert r.code == 0, r.err
    assert r.out == "hi\n"


def test_create_checks_the_key_and_start_runs_the_container_later(unpacked, run, ctd, keys):
    before = _left(run, ctd)
    r = run("create", "--network", "none", "-q", unpacked, "echo", "later")
    assert r.code == 125 and "no decryption key" in _one_error_line(r.err), r.err
    r = run("create", "--network", "none", "-q", "--decryption-key", str(keys.other), unpacked, "echo", "later")
    assert r.code == 125 and "no matching key" in _one_error_line(r.err), r.err
    assert _left(run, ctd) == before
    r = run("create", "--network", "none", "-q", "--decryption-key", str(keys.rsa), unpacked, "echo", "later")
    assert r.code == 0, r.err
    cid = r.out.strip()
    assert run("start", cid).code == 0
    assert run("wait", cid).out == "0\n"
    assert run("logs", cid).out == "later\n"


def test_first_start_of_a_container_ctk_run_did_not_check_needs_the_key(unpacked, run, ctd, keys):
    """A container made by another tool (or before the check existed) carries no key-check label: its first
    start is checked; later starts, like the restart monitor's, are not."""
    cid = run("create", "--network", "none", "-q", "--decryption-key", str(keys.rsa), unpacked, "echo", "x").out.strip()
    ctd.containers.update_labels(cid, {"ctk/key-check": ""})
    r = run("start", cid)
    assert r.code != 0 and "no decryption key" in _one_error_line(r.err), r.err
    r = run("start", "--decryption-key", str(keys.other), cid)
    assert r.code != 0 and "no matching key" in _one_error_line(r.err), r.err
    assert ctd.tasks.list() == []
    r = run("start", "--decryption-key", str(keys.rsa), cid)
    assert r.code == 0, r.err
    assert run("wait", cid).out == "0\n"
    ctd.containers.update_labels(cid, {"ctk/key-check": ""})
    assert run("start", cid).code == 0  # started before: not checked again
    assert run("wait", cid).out == "0\n"


def test_ctk_crypt_check_key_answers_for_an_image_in_the_store(crypt, encrypted_ref, keys, test_images):
    ok = crypt("check-key", "--key", keys.rsa, encrypted_ref)
    assert ok.code == 0 and "1 encrypted layer(s)" in ok.out, ok.err
    assert crypt("check-key", "--key", f"{keys.rsa_pw}:pass=s3cret", encrypted_ref).code == 0
    r = crypt("check-key", "--key", keys.other, encrypted_ref)
    assert r.code == 1 and "no matching key" in r.err, r.err
    r = crypt("check-key", encrypted_ref)
    assert r.code == 1 and "no private key" in r.err, r.err
    assert crypt("check-key", test_images["busybox"].ref).code == 0  # nothing encrypted: nothing to hold
