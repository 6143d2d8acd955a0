"""ctk_shared.hashers: a document is verified with CPython's own sha256/sha512 when OpenSSL is not loaded,
a blob with hashlib; both give the same digests, and only OCI's algorithms are accepted."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from ctk_shared import hashers
from ctk_shared.errors import InvalidArgument

DATA = b"{\"schemaVersion\": 2}" * 300


@pytest.mark.parametrize("algo", hashers.ALGORITHMS)
def test_the_builtin_hash_gives_hashlibs_digest(algo: str) -> None:
    builtin = hashers._builtin(algo)
    assert builtin is not None, "CPython without its own sha2"
    h = builtin()
    h.update(DATA[:100])
    h.update(DATA[100:])
    assert h.hexdigest() == hashlib.new(algo, DATA).hexdigest()


@pytest.mark.parametrize("digest", ["md5:abc", "sha1:" + "0" * 40, "SHA256:" + "0" * 64, "nocolon"])
def test_other_algorithms_are_refused(digest: str) -> None:
    with pytest.raises(InvalidArgument, match="unsupported digest algorithm"):
        hashers.hasher(digest, 10)


def test_a_document_in_a_fresh_process_is_hashed_without_openssl_and_a_blob_with_it() -> None:
    from ctk_shared.launchers import import_path

    code = (f"import sys\nsys.path.extend({list(import_path())!r})\n"
            "from ctk_shared import oci, limits\n"
            f"d = oci.sha256_digest({DATA[:64]!r})\n"
            f"oci.verify_bytes({DATA!r}, 'sha256:{hashlib.sha256(DATA).hexdigest()}')\n"
            "assert 'hashlib' not in sys.modules and '_hashlib' not in sys.modules\n"
            "h = oci.hasher('sha512:x')  # a stream of unknown size\n"
            "assert '_hashlib' in sys.modules\n"
            "print(d)\n")
    p = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "sha256:" + hashlib.sha256(DATA[:64]).hexdigest() + "\n"


def test_a_mismatch_is_still_caught_by_the_builtin_hash() -> None:
    from ctk_shared import limits
    from ctk_shared.errors import IntegrityError

    wrong = "sha256:" + "0" * 64
    with pytest.raises(IntegrityError, match="does not match its digest"):
        limits.read_document([DATA], "image config", len(DATA), wrong, "config")
