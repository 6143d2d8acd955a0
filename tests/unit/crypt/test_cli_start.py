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
