"""imgcrypt's authorization check: do the given keys open every encrypted layer's wrapped key?

``envelope.authorize`` decides; ``ctk-crypt check-key --request -`` is how ctk-run asks (keys on stdin, in the
``ctk_shared.decryption_keys.check_request`` document); ctk-run's keycheck starts nothing for a plain image."""
from __future__ import annotations

import subprocess
import sys

import pytest
from ctk_crypt import envelope
from ctk_crypt.cipher import PrivateOptions
from ctk_crypt.keys import Keyring
from ctk_shared import decryption_keys as dk
from ctk_shared.decryption_keys import KeySource
from ctk_shared.errors import InvalidArgument
from ctk_shared.oci import Descriptor

from .conftest import pem_private

PLAIN = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + "0" * 64, 10)


def _encrypted(n: int, *keys) -> Descriptor:  # type: ignore[no-untyped-def]
    private = PrivateOptions(bytes([n]) * 32, "sha256:" + str(n) * 64, b"\x02" * 16)
    ann = envelope.wrap_annotations(private, envelope.Recipients(jwe=[k.public_key() for k in keys]))
    return Descriptor("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", "sha256:" + "f" * 63 + str(n), 10,
                      ann)


def test_authorize_needs_a_key_for_every_encrypted_layer(rsa_key, rsa_key2, ec_key):
    both, only_rsa = _encrypted(1, rsa_key, ec_key), _encrypted(2, rsa_key)
    assert envelope.authorize([PLAIN], Keyring()) == 0
    assert envelope.authorize([PLAIN, both, only_rsa], Keyring([rsa_key])) == 2
    with pytest.raises(envelope.NoMatchingKey, match="no private key"):
        envelope.authorize([both], Keyring())
    with pytest.raises(envelope.NoMatchingKey, match=only_rsa.digest):  # ec opens the first layer only
        envelope.authorize([both, only_rsa], Keyring([ec_key]))
    with pytest.raises(envelope.NoMatchingKey, match="no matching key"):
        envelope.authorize([both], Keyring([rsa_key2]))


def test_check_request_round_trip_keeps_passwords_and_origins():
    keys = [KeySource(b"k1", None, "/keys/a.pem"), KeySource(b"k2", b"pw", "/keys/b.pem"),
            KeySource(b"k3", b"", "/keys/c.pem")]
    got_keys, got_layers = dk.parse_check_request(dk.check_request(keys, [PLAIN]))
    assert got_keys == keys and got_layers == [PLAIN]
    for bad in (b"[]", b'{"keys":{}}', b'{"keys":[{"key":"!!"}]}', b'{"keys":[{"nokey":1}]}'):
        with pytest.raises(InvalidArgument):
            dk.parse_check_request(bad)


def _check(keys: list[KeySource], layers: list[Descriptor]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctk-crypt", "check-key", "--request", "-"], input=dk.check_request(keys, layers).decode(),
                          capture_output=True, text=True)


def test_ctk_crypt_check_key_reads_the_request_on_stdin(rsa_key, rsa_key2):
    layer = _encrypted(3, rsa_key)
    ok = _check([KeySource(pem_private(rsa_key), None, "right.pem")], [layer])
    assert ok.returncode == 0, ok.stderr
    wrong = _check([KeySource(pem_private(rsa_key2), None, "other.pem")], [layer])
    assert wrong.returncode == 1 and "no matching key" in wrong.stderr.splitlines()[0], wrong.stderr
    locked = KeySource(pem_private(rsa_key, password=b"right"), b"wrong", "locked.pem")
    bad_pw = _check([locked], [layer])
    assert bad_pw.returncode == 2 and bad_pw.stderr.startswith("ctk-crypt: error: private key locked.pem: wrong"), \
        bad_pw.stderr
    assert _check([KeySource(locked.data, b"right", "locked.pem")], [layer]).returncode == 0


def test_ctk_run_checks_a_plain_image_without_starting_or_importing_anything(monkeypatch):
    from ctk_run import keycheck

    code = ("import sys; from ctk_run import keycheck; from ctk_shared.oci import Descriptor; "
            "d = Descriptor('application/vnd.oci.image.layer.v1.tar+gzip', 'sha256:' + '0' * 64, 1); "
            "keycheck.authorize('plain', [d], ()); print('ctk_shared.decryption_keys' in sys.modules)")
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "False"

    def no_process(*a, **kw):  # type: ignore[no-untyped-def]
        raise AssertionError("a plain image must not start ctk-crypt")

    monkeypatch.setattr(subprocess, "run", no_process)
    assert keycheck.authorize("plain", [PLAIN], ()) == keycheck.CHECKED_PLAIN
