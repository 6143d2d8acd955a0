"""The hash object that checks a digest, without loading OpenSSL for a few kilobytes.

``hashlib`` loads OpenSSL's libcrypto (~2.5 ms at every command's start) for its fast sha256. A command that
only verifies documents (``ctk-run run`` reads a manifest and a config of a few KiB) hashes far too little
for that to pay: CPython's own built-in sha256/sha512 imports in ~0.05 ms and hashes ~300 MB/s. So a small
input whose size is known gets the built-in one, unless hashlib is loaded already; a blob gets hashlib.
Both give the same digest.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument

if TYPE_CHECKING:
    import hashlib

ALGORITHMS = ("sha256", "sha512")
SMALL = 512 << 10  # up to here the built-in hash (~300 MB/s) costs less than loading OpenSSL (~2.5 ms)


def algorithm(digest: str) -> str:
    """The algorithm part of ``digest``, refused unless it is one OCI names."""
    algo = digest.split(":", 1)[0]
    if algo not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm in {digest!r}")
    return algo


def hasher(digest: str, size: int | None = None) -> hashlib._Hash:
    """A fresh hash object for the algorithm of ``digest``; ``size``, when known, is how much it will hash."""
    algo = algorithm(digest)
    if size is not None and size <= SMALL and "hashlib" not in sys.modules:
        builtin = _builtin(algo)
        if builtin is not None:
            return builtin()  # type: ignore[no-any-return]
    import hashlib

    return hashlib.new(algo)


def _builtin(algo: str) -> Any:
    """CPython's own implementation: ``_sha2`` from 3.12, ``_sha256``/``_sha512`` before; None if absent."""
    for module in ("_sha2", f"_{algo}"):
        try:
            return getattr(__import__(module), algo)
        except (ImportError, AttributeError):
            continue
    return None
