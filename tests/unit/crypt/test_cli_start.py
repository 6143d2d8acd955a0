"""ctk-crypt starts fast: cryptography and grpc load only inside the command that needs them."""
from __future__ import annotations

import subprocess
import sys


def test_cli_import_is_light():
    code = ("import sys, ctk_crypt.cli, ctk_crypt.decoder; heavy = [m for m in ('grpc', 'cryptography', "
            "'google.protobuf', 'requests', 'rich') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported at start-up: {out}"


def test_keygen_writes_a_private_key_only_the_owner_reads(tmp_path):
    p = subprocess.run(["ctk-crypt", "keygen", "-t", "ec", "-o", str(tmp_path / "k")], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [str(tmp_path / "k.pem"), str(tmp_path / "k.pub.pem")]
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    again = subprocess.run(["ctk-crypt", "keygen", "-o", str(tmp_path / "k")], capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr


def _keygen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctk-crypt", "keygen", *args], capture_output=True, text=True, timeout=60)


def test_keygen_onto_a_device_writes_into_it_and_keeps_it_a_device(tmp_path):
    """The private key goes into a (private, /dev/null-like) device node named k.pem; the node is never
    replaced, and the public key is still a new 0644 file."""
    import os
    import stat

    import pytest

    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    dev = tmp_path / "k.pem"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    p = _keygen("-t", "ec", "-o", str(tmp_path / "k"))
    assert p.returncode == 0, p.stderr
    st = os.lstat(dev)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert (tmp_path / "k.pub.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (tmp_path / "k.pub.pem").stat().st_mode & 0o777 == 0o644
    assert sorted(x.name for x in tmp_path.iterdir()) == ["k.pem", "k.pub.pem"]


def test_keygen_onto_a_fifo_streams_the_private_key(tmp_path):
    import os
    import stat
    import threading

    fifo = tmp_path / "k.pem"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    p = _keygen("-t", "ec", "-o", str(tmp_path / "k"))
    reader.join(30)
    assert p.returncode == 0, p.stderr
    assert got and got[0].startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_keygen_through_links_never_overwrites_a_key(tmp_path):
    real = tmp_path / "vault" / "k.pem"
    real.parent.mkdir()
    (tmp_path / "k.pem").symlink_to(real)  # dangling: the key is created at the link's target, 0600
    assert _keygen("-t", "ec", "-o", str(tmp_path / "k")).returncode == 0
    assert (tmp_path / "k.pem").is_symlink() and real.stat().st_mode & 0o777 == 0o600
    key = real.read_bytes()
    (tmp_path / "k.pub.pem").unlink()
    again = _keygen("-t", "ec", "-o", str(tmp_path / "k"))  # now the link leads to a key: refused
    assert again.returncode == 1 and "exists" in again.stderr and real.read_bytes() == key
    (tmp_path / "d.pem").mkdir()
    bad = _keygen("-t", "ec", "-o", str(tmp_path / "d"))
    assert bad.returncode != 0 and bad.stderr.startswith("ctk-crypt: error:") and "directory" in bad.stderr
