"""Encrypted images run only for holders of a key: imgcrypt's authorization check, made by ``ctk-crypt``.

Unpacked layers are shared by everyone using a containerd namespace, so once someone with the key has unpacked
an encrypted image, the snapshots alone would let anyone run it. imgcrypt (nerdctl, the CRI) therefore checks,
at every container create, that the caller's private keys can unwrap each encrypted layer's symmetric key from
its ``org.opencontainers.image.enc.keys.*`` annotations; ctk-run does the same at ``run``/``create`` and at the
first start of a container it did not check (made before this check existed, or by another tool). Restarts,
by the user or by containerd's restart monitor, are not checked again: the check is about creating, as in
imgcrypt.

Where the unwrapping lives: in ctk-crypt, which ctk-run runs as an executable (``ctk-crypt check-key --request
-``), as it runs ctk-net. Moving JWE/PKCS#7 unwrapping into ctk_shared would give the key-wrapping code two
homes and make every tool depend on ``cryptography``, for an image kind that already needs ctk-crypt
installed (its decoder unpacks the layers). The keys go on stdin, already read (a ``:fd=N`` password can be
read once) and never on a command line. A plain image costs nothing: the manifest's media types are looked at
first, in memory, and nothing is started or imported.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ctk_shared.errors import CtkError, PermissionDenied, UsageError
from ctk_shared.oci import ENCRYPTED_SUFFIX

if TYPE_CHECKING:
    from ctk_shared.decryption_keys import KeySource
    from ctk_shared.oci import Descriptor

# the label ctk-run puts on a container it made: "passed" (encrypted, checked) or "not-encrypted"
CHECKED_PASSED = "passed"
CHECKED_PLAIN = "not-encrypted"


def ctk_crypt_executable() -> str:
    """``ctk-crypt`` beside this interpreter first (as for ctk-net), else on PATH."""
    here = Path(sys.executable).parent / "ctk-crypt"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    import shutil

    found = shutil.which("ctk-crypt")
    if not found:
        raise UsageError("the image is encrypted and ctk-crypt, which checks decryption keys, is not installed",
                         hint="pip install ./tools/crypt")
    return found


def authorize(image: str, layers: Iterable[Descriptor], keys: Iterable[KeySource]) -> str:
    """The label value to record: CHECKED_PLAIN, or CHECKED_PASSED once the keys opened every encrypted layer's
    wrapped key. PermissionDenied (a UsageError without keys) otherwise, with ctk-crypt's reason."""
    encrypted = [d for d in layers if d.media_type.endswith(ENCRYPTED_SUFFIX)]  # no import for plain images
    if not encrypted:
        return CHECKED_PLAIN
    keys = list(keys)
    if not keys:
        raise UsageError(f"image {image} has {len(encrypted)} encrypted layer(s) and no decryption key was given",
                         hint="pass --decryption-key KEY.pem[:pass=…] with a recipient's private key")
    import subprocess

    from ctk_shared.decryption_keys import check_request

    p = subprocess.run([ctk_crypt_executable(), "check-key", "--request", "-"], input=check_request(keys, encrypted),
                       capture_output=True, check=False)
    if p.returncode == 0:
        return CHECKED_PASSED
    err = p.stderr.decode(errors="replace")
    reason = next((ln.split("error: ", 1)[1] for ln in err.splitlines() if "error: " in ln),
                  err.strip() or f"ctk-crypt check-key failed (exit {p.returncode})")
    hint = "pass --decryption-key with the private key (and password) of one of the image's recipients " \
           f"(see them with `ctk-crypt inspect {image}`)"
    if p.returncode in (1, 2):  # the keys were refused, or unreadable: the user's to fix
        raise PermissionDenied(f"not allowed to run encrypted image {image}: {reason}", hint=hint)
    raise CtkError(f"checking the decryption keys of {image}: {reason}")
