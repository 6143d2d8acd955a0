"""The size caps and the readers that hold to them (ctk_shared.limits): pure, no daemon."""
from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator

import pytest
from ctk_shared import limits
from ctk_shared.errors import IntegrityError


def _endless(first: bytes = b"") -> Iterator[bytes]:
    yield first
    yield from itertools.repeat(b"\0" * 65536)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_declared_size_over_the_cap_is_refused_with_kind_size_and_cap() -> None:
    limits.check_declared("config", limits.MAX_CONFIG_SIZE, "config x")
    with pytest.raises(limits.DocumentTooLarge) as e:
        limits.check_declared("config", limits.MAX_CONFIG_SIZE + 1, "config sha256:ab")
    assert str(e.value) == ("config sha256:ab: the config is declared as 8388609 bytes (8.0 MiB), "
                            "over the 8 MiB cap for a config")
    with pytest.raises(limits.DocumentTooLarge, match="over the 4 MiB cap for an index"):
        limits.check_declared("index", 5 << 20, "x")


def test_read_capped_stops_an_endless_source() -> None:
    with pytest.raises(limits.DocumentTooLarge, match="over the 1 MiB cap for a token response"):
        limits.read_capped(_endless(b'{"token":"'), "token response", "token")
    assert limits.read_capped([b"ab", b"c"], "document", "d") == b"abc"


def test_exact_stops_at_the_declared_size_and_checks_the_digest() -> None:
    data = b"x" * 213
    assert b"".join(limits.exact([data[:100], data[100:]], 213, "b", digest=_digest(data))) == data
    with pytest.raises(IntegrityError, match="more bytes than the 213 declared"):
        for _ in limits.exact(_endless(data), 213, "b", digest=_digest(data)):
            pass
    with pytest.raises(IntegrityError, match="truncated, 100 of the 213 bytes declared"):
        b"".join(limits.exact([data[:100]], 213, "b"))
    with pytest.raises(IntegrityError, match="does not match its digest"):
        b"".join(limits.exact([b"y" * 213], 213, "b", digest=_digest(data)))
    # a resumed read (offset > 0) counts from the offset and cannot check the digest
    assert b"".join(limits.exact([data[13:]], 213, "b", digest=_digest(b"other"), offset=13)) == data[13:]


def test_read_document_checks_cap_then_size_then_digest() -> None:
    data = b'{"a":1}'
    assert limits.read_document(iter([data]), "manifest", len(data), _digest(data), "m") == data
    with pytest.raises(limits.DocumentTooLarge):
        limits.read_document(_endless(), "manifest", limits.MAX_MANIFEST_SIZE + 1, _digest(data), "m")
    with pytest.raises(IntegrityError, match="more bytes"):
        limits.read_document(_endless(data), "config", len(data), _digest(data), "c")
