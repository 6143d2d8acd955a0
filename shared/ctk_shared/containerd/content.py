"""containerd's content store: blobs by digest, their labels, and resumable writes (ingests).

The write protocol (``Content.Write``, a bidirectional stream) is wrapped by :class:`ContentWriter`:
STAT first (resume point, or ALREADY_EXISTS), pipelined WRITEs of at most 1 MiB, then COMMIT, which
containerd checks against the expected size and digest. See notes/containerd.md §1.1.
"""
from __future__ import annotations

import builtins
import collections
import logging
import queue
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from google.protobuf import empty_pb2

from .._proto.containerd.api.services.content.v1 import content_pb2 as pb
from ..errors import AlreadyExists, Conflict, CtkError, IntegrityError, NotFound
from .channel import Service
from .convert import label_mask, to_datetime
from .errors import rpc_errors
from .models import ContentInfo, IngestStatus

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20  # per WRITE message, as containerd's Go client (content/helpers.go)
WINDOW = 16  # WRITE messages in flight before we wait for an acknowledgement (bounds memory)
_END = None  # request-queue sentinel: half-closes the stream


def _info(pb_info: pb.Info) -> ContentInfo:
    return ContentInfo(pb_info.digest, pb_info.size, to_datetime(pb_info, "created_at"),
                       to_datetime(pb_info, "updated_at"), dict(pb_info.labels))


def _status(s: pb.Status) -> IngestStatus:
    return IngestStatus(s.ref, s.offset, s.total, s.expected, to_datetime(s, "started_at"),
                        to_datetime(s, "updated_at"))


class ContentStore(Service):
    SERVICE = "containerd.services.content.v1.Content"

    def info(self, digest: str) -> ContentInfo:
        return _info(self._call("Info", pb.InfoRequest(digest=digest), pb.InfoResponse).info)

    def exists(self, digest: str) -> bool:
        try:
            self.info(digest)
            return True
        except NotFound:
            return False

    def list(self, filters: Sequence[str] = ()) -> list[ContentInfo]:
        return [_info(i) for resp in self._stream("List", pb.ListContentRequest(filters=list(filters)),
                                                  pb.ListContentResponse) for i in resp.info]

    def update_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        """Set (or, with value "", remove) only the given label keys; other labels are untouched."""
        if not labels:
            return self.info(digest)  # an empty mask would replace the whole label map
        values, mask = label_mask(labels)
        req = pb.UpdateRequest(info=pb.Info(digest=digest, labels=values), update_mask=mask)
        return _info(self._call("Update", req, pb.UpdateResponse).info)

    def delete(self, digest: str) -> None:
        self._call("Delete", pb.DeleteContentRequest(digest=digest), empty_pb2.Empty)

    def read(self, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        """Stream ``size`` bytes (0 = to the end) from ``offset``, in containerd's ≤1 MiB chunks."""
        for resp in self._stream("Read", pb.ReadContentRequest(digest=digest, offset=offset, size=size),
                                 pb.ReadContentResponse):
            yield resp.data

    def read_all(self, digest: str) -> bytes:
        return b"".join(self.read(digest))

    def writer(self, ref: str, total: int, expected: str) -> ContentWriter:
        """Open (or resume) the ingest ``ref``; use the result as a context manager."""
        return ContentWriter(self, ref, total, expected)

    def write_blob(self, ref: str, data: bytes, expected: str, labels: Mapping[str, str] | None = None) -> None:
        """Store ``data`` as ``expected`` in one go; succeeds at once if the blob is already there.

        A partial ingest left under ``ref`` is overwritten rather than trusted (the bytes are at hand), and a
        commit that fails verification drops the ingest before raising IntegrityError.
        """
        for _ in range(2):
            with self.writer(ref, len(data), expected) as w:
                if w.exists:
                    return
                wrote = w.offset != len(data)  # == len: shared from another namespace, or a complete ingest
                if wrote:
                    w.truncate()
                    w.write(data)
                try:
                    w.commit(labels)
                    return
                except IntegrityError:
                    w.abort()
                    if wrote:
                        raise
                    # a stale complete ingest held other bytes: it is gone now, write ours

    def status(self, ref: str) -> IngestStatus:
        return _status(self._call("Status", pb.StatusRequest(ref=ref), pb.StatusResponse).status)

    def statuses(self, filters: Sequence[str] = ()) -> builtins.list[IngestStatus]:
        resp = self._call("ListStatuses", pb.ListStatusesRequest(filters=list(filters)), pb.ListStatusesResponse)
        return [_status(s) for s in resp.statuses]

    def abort(self, ref: str) -> None:
        """Drop the unfinished ingest ``ref`` (NotFound if there is none)."""
        self._call("Abort", pb.AbortRequest(ref=ref), empty_pb2.Empty)


def _requests(q: queue.SimpleQueue[Any]) -> Iterator[Any]:
    while (item := q.get()) is not _END:
        if isinstance(item, _Feed):
            yield from item.messages()
        else:
            yield item


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Encoded:
    """A request already in its wire form: grpc's serializer (``SerializeToString``) returns it as it is."""

    __slots__ = ("wire",)

    def __init__(self, wire: bytes) -> None:
        self.wire = wire

    def SerializeToString(self) -> bytes:  # noqa: N802 -- the protobuf method name grpc's serializer calls
        return self.wire


def _write_request(offset: int, data: bytes) -> _Encoded:
    """A WRITE WriteContentRequest (action=1: field 1, offset: field 5, data: field 6) built with one copy of
    ``data``; protobuf's message and its SerializeToString would copy the chunk twice."""
    return _Encoded(b"".join((b"\x08\x01\x28", _varint(offset), b"\x32", _varint(len(data)), data)))


class _Feed:
    """Chunks sent as WRITE messages straight from grpc's request thread, then one STAT as an end marker.

    grpc reads a stream's requests on a thread of its own, and waits for each message to be sent before it asks
    for the next: the source's bytes go from the registry's socket to containerd's without a queue and a thread
    hand-off per chunk in between (a fifth less client CPU per pull than :meth:`ContentWriter.write`), and the
    memory in flight stays one message. An error of the source is kept for the writer to raise: an exception
    raised into grpc would only cancel the stream.
    """

    def __init__(self, ref: str, chunks: Iterable[bytes], offset: int, total: int) -> None:
        self.ref = ref
        self.chunks = chunks
        self.offset = offset
        self.total = total
        self.error: BaseException | None = None
        self.acks: collections.deque[int] = collections.deque()  # offsets the WRITEs sent so far will report

    def messages(self) -> Iterator[Any]:
        try:
            for data in self.chunks:
                if self.total > 0 and self.offset + len(data) > self.total:
                    raise IntegrityError(f"writing {self.ref}: {self.offset + len(data)} bytes exceed the expected "
                                         f"{self.total}")
                for start in range(0, len(data), CHUNK_SIZE):
                    chunk = data if len(data) <= CHUNK_SIZE else bytes(memoryview(data)[start:start + CHUNK_SIZE])
                    self.offset += len(chunk)
                    self.acks.append(self.offset)
                    yield _write_request(self.offset - len(chunk), chunk)
        except Exception as e:  # noqa: BLE001 -- handed to the writer's thread, which raises it
            self.error = e
        yield pb.WriteContentRequest(action=pb.STAT, ref=self.ref)


class ContentWriter:
    """One ``Content.Write`` stream: resume point, pipelined writes, verified commit.

    Leaving the ``with`` block without :meth:`commit` half-closes the stream and keeps the ingest, so a
    later writer on the same ``ref`` resumes at :attr:`offset`. containerd locks a ref while a stream
    holds it (a second writer gets ``Unavailable`` "… locked …").
    """

    def __init__(self, store: ContentStore, ref: str, total: int, expected: str) -> None:
        self.ref = ref
        self.total = total
        self.expected = expected
        self.exists = False  # already committed in this namespace: commit() is a no-op
        self.digest = ""  # digest of what was ingested, as containerd reports it
        self._store = store
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._acks: collections.deque[int] = collections.deque()  # offsets the in-flight WRITEs will report
        self._finished = False
        self._committed = False
        self._q.put(pb.WriteContentRequest(action=pb.STAT, ref=ref, total=total, expected=expected))
        self._call = store._bidi("Write", _requests(self._q), pb.WriteContentResponse)
        try:
            first = self._next()
        except AlreadyExists:
            self.exists = True
            self._offset = total
            self._finish()
        except BaseException:
            self._finish()
            raise
        else:
            self._offset = first.offset
            self.digest = first.digest

    # -- public -----------------------------------------------------------------------------------
    @property
    def offset(self) -> int:
        """Where the next write goes: the resume point at first (== total for a blob shared from
        another namespace), then advanced by every write."""
        return self._offset

    def write(self, data: bytes) -> None:
        """Queue ``data`` in ≤1 MiB messages without waiting for each round trip; raises the first error."""
        if self.exists:
            raise Conflict(f"content {self.expected} already exists; nothing to write")
        self._check_open()
        if self.total > 0 and self._offset + len(data) > self.total:
            raise IntegrityError(f"writing {self.ref}: {self._offset + len(data)} bytes exceed the expected "
                                 f"{self.total}")
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_SIZE):
            chunk = data if len(data) <= CHUNK_SIZE and isinstance(data, bytes) else \
                bytes(view[start:start + CHUNK_SIZE])
            self._q.put(pb.WriteContentRequest(action=pb.WRITE, offset=self._offset, data=chunk))
            self._offset += len(chunk)
            self._acks.append(self._offset)
            while len(self._acks) > WINDOW:
                self._ack()
        if self._call.done():  # the server ended the stream: surface its error now
            while self._acks:
                self._ack()

    def write_all(self, chunks: Iterable[bytes]) -> int:
        """Write everything ``chunks`` yields, read on grpc's request thread (see :class:`_Feed`); returns the new
        offset. An exception ``chunks`` raises is raised here, after what it yielded before has been written (the
        ingest keeps it, to resume from); ``chunks`` must not block forever (a registry body has a stall limit)."""
        if self.exists:
            raise Conflict(f"content {self.expected} already exists; nothing to write")
        self._check_open()
        while self._acks:
            self._ack()
        feed = _Feed(self.ref, chunks, self._offset, self.total)
        self._q.put(feed)
        while True:
            resp = self._next()
            if resp.action == pb.STAT:  # the end marker: every WRITE before it has been answered
                break
            want = feed.acks.popleft()
            if resp.offset != want:
                raise IntegrityError(f"writing {self.ref}: containerd is at offset {resp.offset}, expected {want}")
        self._offset = feed.offset
        if feed.error is not None:
            raise feed.error
        return self._offset

    def truncate(self) -> None:
        """Start over: the next write goes to offset 0, and containerd truncates the ingest."""
        self._offset = 0

    def commit(self, labels: Mapping[str, str] | None = None) -> str:
        """Commit with the expected size and digest; returns the digest. ALREADY_EXISTS counts as success;
        a size or digest mismatch raises IntegrityError (the ingest is kept: :meth:`abort` drops it)."""
        if self.exists or self._committed:
            return self.expected
        self._check_open()
        try:
            while self._acks:
                self._ack()
            self._q.put(pb.WriteContentRequest(action=pb.COMMIT, offset=self._offset, total=self.total,
                                               expected=self.expected, labels=dict(labels or {})))
            try:
                resp = self._next()
                self.digest = resp.digest or self.expected
            except AlreadyExists:
                self.digest = self.expected
            self._committed = True
        finally:
            self._finish()  # containerd sends the final COMMIT reply twice: drain it
        return self.digest

    def abort(self) -> None:
        """Close the stream and drop the ingest (a missing ingest is fine)."""
        self._finish()
        try:
            self._store.abort(self.ref)
        except NotFound:
            pass

    def close(self) -> None:
        """Half-close the stream and wait for containerd to release the ref; keeps the ingest."""
        self._finish()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._finished:
            raise CtkError(f"content writer {self.ref} is closed")

    def _next(self) -> Any:
        with rpc_errors(self._store.address):
            try:
                return next(self._call)
            except StopIteration:
                raise CtkError(f"writing {self.ref}: containerd ended the stream early") from None

    def _ack(self) -> None:
        want = self._acks.popleft()
        resp = self._next()
        if resp.offset != want:
            raise IntegrityError(f"writing {self.ref}: containerd is at offset {resp.offset}, expected {want}")

    def _finish(self) -> None:
        """Half-close and drain: when the server has answered everything it has also released the ref lock.
        Errors here are not raised (they were, or will be, reported by write/commit)."""
        if self._finished:
            return
        self._finished = True
        self._q.put(_END)
        try:
            for _ in self._call:
                pass
        except KeyboardInterrupt:
            self._call.cancel()
            raise
        except Exception as e:  # noqa: BLE001 -- grpc.RpcError after a failed write/commit, already reported
            log.debug("content writer %s closed with %s", self.ref, e)
        self._acks.clear()
