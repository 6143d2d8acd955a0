"""ContentWriter.write_all: a blob streamed into containerd from grpc's request thread (what a pull does with a
registry body), against a live containerd 1.6: the bytes arrive whole, a failing source keeps what it sent for
a resume, a source that sends more than declared is stopped before the excess, and a wrong digest is refused
at commit (the client no longer hashes: containerd's commit check is the one that counts)."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from ctk_shared import oci
from ctk_shared.containerd import Client
from ctk_shared.errors import IntegrityError, Interrupted

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.containerd_fixtures"]

MiB = 1 << 20


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_write_all_stores_the_blob(ctd: Client) -> None:
    data = os.urandom(5 * MiB + 123)
    digest = oci.sha256_digest(data)
    with ctd.lease_scope() as c:
        # chunk sizes around the 1 MiB message size: smaller, larger (split), and an odd tail
        with c.content.writer("all", len(data), digest) as w:
            assert w.write_all(chunks(data[:3 * MiB], 300_000)) == 3 * MiB
            assert w.write_all(chunks(data[3 * MiB:], 3 * MiB)) == len(data)
            assert w.commit() == digest
        assert c.content.read_all(digest) == data
        assert c.content.statuses() == []


def test_failing_source_keeps_what_it_sent_for_a_resume(ctd: Client) -> None:
    data = os.urandom(4 * MiB)
    digest = oci.sha256_digest(data)

    def dies_after(n: int) -> Iterator[bytes]:
        yield from chunks(data[:n], MiB)
        raise Interrupted("pull interrupted")

    with ctd.lease_scope() as c:
        with c.content.writer("resume", len(data), digest) as w:
            with pytest.raises(Interrupted):
                w.write_all(dies_after(2 * MiB + 7))
            assert w.offset == 2 * MiB + 7
        assert c.content.status("resume").offset == 2 * MiB + 7
        with c.content.writer("resume", len(data), digest) as w:
            assert w.offset == 2 * MiB + 7
            w.write_all(chunks(data[w.offset:], MiB))
            w.commit()
        assert c.content.read_all(digest) == data


def test_source_past_the_declared_size_is_cut_off(ctd: Client) -> None:
    data = os.urandom(2 * MiB)
    digest = oci.sha256_digest(data)
    with ctd.lease_scope() as c:
        with c.content.writer("too-long", len(data), digest) as w:
            with pytest.raises(IntegrityError, match="exceed the expected"):
                w.write_all(chunks(data + b"extra", MiB))
            assert w.offset == 2 * MiB  # the excess chunk was never sent
            w.abort()
        assert c.content.statuses() == []


def test_wrong_bytes_are_refused_at_commit(ctd: Client) -> None:
    data = os.urandom(MiB + 9)
    digest = oci.sha256_digest(data)
    bad = bytearray(data)
    bad[MiB // 2] ^= 0xFF
    with ctd.lease_scope() as c:
        with c.content.writer("flipped", len(data), digest) as w:
            w.write_all(chunks(bytes(bad), MiB))
            with pytest.raises(IntegrityError, match="unexpected commit digest"):
                w.commit()
            w.abort()
        assert not c.content.exists(digest)
