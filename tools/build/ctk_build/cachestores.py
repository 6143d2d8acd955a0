"""Where a build cache lives: a registry repository (``type=registry``) or an OCI layout directory
(``type=local``). Readers hand out the manifest (bounded) and blob streams (the caller bounds and verifies
them); writers put the blobs, then the manifest, from containerd's content store.

A layout directory is hostile input too: its ``index.json`` is read under the archive-index cap, blob paths are
built from validated digests only, and writes go through temp files (O_EXCL, O_NOFOLLOW) renamed into
``blobs/sha256`` and never follow a link planted in the directory.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, Protocol

from ctk_shared import limits, oci, outputs
from ctk_shared import reference as refs
from ctk_shared.errors import CtkError, InvalidArgument, NotFound

from .cachespecs import CacheFrom, CacheTo

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client

REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20


class CacheReader(Protocol):
    name: str

    def manifest(self) -> tuple[bytes, str]: ...

    def blob(self, desc: oci.Descriptor) -> contextlib.AbstractContextManager[Iterator[bytes]]: ...

    def close(self) -> None: ...


def open_reader(spec: CacheFrom, gopts: GlobalOptions) -> CacheReader:
    if spec.type == "registry":
        return RegistryReader(spec.source, gopts)
    return LayoutReader(spec.source, spec.tag, spec.digest)


class RegistryReader:
    def __init__(self, ref_text: str, gopts: GlobalOptions) -> None:
        from ctk_shared import connect

        self.name = ref_text
        self.ref = refs.parse(ref_text)
        self.registry = connect.registry(self.ref.domain, gopts)

    def manifest(self) -> tuple[bytes, str]:
        return self.registry.get_manifest(self.ref.path, self.ref.digest or self.ref.tag or "latest")

    @contextlib.contextmanager
    def blob(self, desc: oci.Descriptor) -> Iterator[Iterator[bytes]]:
        stream = self.registry.open_blob(self.ref.path, desc.digest)
        try:
            yield iter(stream)
        finally:
            stream.close()

    def close(self) -> None:
        self.registry.close()


def _blob_path(root: str, digest: str) -> str:
    algo, _, hexpart = oci.validate_digest(digest).partition(":")
    return os.path.join(root, "blobs", algo, hexpart)


def _open_regular(path: str) -> BinaryIO:
    """A file of the directory for reading, only when it is a regular file: a FIFO or a device planted there
    would block the read or never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InvalidArgument(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _read_file(path: str, kind: str, what: str) -> bytes:
    with _open_regular(path) as f:
        return limits.read_capped(iter(lambda: f.read(_CHUNK), b""), kind, what)


class LayoutReader:
    def __init__(self, root: str, tag: str, digest: str) -> None:
        self.name = root
        self.root = root
        self.tag = tag
        self.digest = digest

    def manifest(self) -> tuple[bytes, str]:
        index_path = os.path.join(self.root, "index.json")
        try:
            data = _read_file(index_path, "archive index", index_path)
        except FileNotFoundError:
            raise NotFound(f"{index_path}: no such file (not an OCI layout)") from None
        except OSError as e:
            raise CtkError(f"{index_path}: {e.strerror}") from None
        index = oci.Index.parse(data, oci.OCI_INDEX)
        if self.digest:
            found = [m for m in index.manifests if m.digest == self.digest]
        else:
            found = [m for m in index.manifests if m.annotations.get(REF_NAME) == self.tag]
        if not found:
            raise NotFound(f"no manifest {self.digest or 'tagged ' + repr(self.tag)} in {index_path}")
        desc = found[0]
        limits.check_declared("manifest", desc.size, f"{self.root}: manifest {desc.digest}")
        with self.blob(desc) as chunks:
            return b"".join(limits.exact(chunks, desc.size, f"{self.root}: manifest", digest=desc.digest)), \
                desc.media_type

    @contextlib.contextmanager
    def blob(self, desc: oci.Descriptor) -> Iterator[Iterator[bytes]]:
        path = _blob_path(self.root, desc.digest)
        try:
            f = _open_regular(path)
        except FileNotFoundError:
            raise NotFound(f"{path}: blob missing from the cache directory") from None
        except OSError as e:
            raise CtkError(f"{path}: {e.strerror}") from None
        with f:
            yield iter(lambda: f.read(_CHUNK), b"")

    def close(self) -> None:
        pass


# -- writers -------------------------------------------------------------------------------------------------
def push_registry(client: Client, gopts: GlobalOptions, spec: CacheTo, manifest: oci.Descriptor) -> None:
    """Push the cache manifest (already in the content store, with its config and layers) under its tag;
    blobs the registry has are skipped, as a push of an image does."""
    from ctk_shared import connect
    from ctk_shared.containerd import Image
    from ctk_shared.progress import NullProgress
    from ctk_shared.push import push

    ref = refs.parse(spec.target)
    registry = connect.registry(ref.domain, gopts)
    try:
        push(client, registry, Image(name=spec.target, target=manifest), ref, None, NullProgress())
    finally:
        registry.close()


def _real_dir(path: str) -> None:
    """``path`` exists as a directory of its own (made when missing), never a link to one elsewhere."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, 0o755)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{path} is not a directory (a link or a file); the cache is not written through it",
                              hint="remove it, or choose another dest=")


def _has_blob(path: str, desc: oci.Descriptor) -> bool:
    """A regular file of the right size whose bytes hash to the digest (a reused dest= directory)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return False
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size != desc.size:
            return False  # replaced by the rename that follows (a FIFO there is never opened for reading)
        os.set_blocking(fd, True)
        try:
            for _ in limits.exact(iter(lambda: f.read(_CHUNK), b""), desc.size, path, digest=desc.digest):
                pass
        except CtkError:
            return False
    return True


def write_layout(client: Client, spec: CacheTo, manifest: oci.Descriptor, blobs: list[oci.Descriptor]) -> None:
    """Write the blobs and the manifest into the layout at ``spec.target``, then point ``spec.tag`` in its
    ``index.json`` at the manifest (other entries stay). Blobs only the replaced manifest used are removed."""
    root = spec.target
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
    for d in (root, os.path.join(root, "blobs"), os.path.join(root, "blobs", "sha256")):
        _real_dir(d)
    for desc in [*blobs, manifest]:
        path = _blob_path(root, desc.digest)
        if not _has_blob(path, desc):
            outputs.stream_owned(path, limits.exact(client.content.read(desc.digest), desc.size,
                                                    f"blob {desc.digest}", digest=desc.digest))
    outputs.write_owned(os.path.join(root, "oci-layout"), b'{"imageLayoutVersion":"1.0.0"}')
    index_path = os.path.join(root, "index.json")
    entries: list[dict[str, object]] = []
    replaced: list[oci.Descriptor] = []
    try:
        old = oci.Index.parse(_read_file(index_path, "archive index", index_path), oci.OCI_INDEX)
        for m in old.manifests:
            if m.annotations.get(REF_NAME) == spec.tag:
                replaced.append(m)
            else:
                entries.append(m.to_json())
    except FileNotFoundError:
        pass
    except (CtkError, OSError):
        pass  # an unreadable index is replaced by ours
    entry = oci.Descriptor(manifest.media_type, manifest.digest, manifest.size, {REF_NAME: spec.tag})
    entries.append(entry.to_json())
    outputs.write_owned(index_path, json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                                                "manifests": entries}, separators=(",", ":")).encode())
    _remove_orphans(root, replaced, entries, manifest)


def _remove_orphans(root: str, replaced: list[oci.Descriptor], kept: list[dict[str, object]],
                    current: oci.Descriptor) -> None:
    """Drop the blobs of manifests this export replaced that no remaining entry uses (the directory would
    otherwise grow by a cache per build). Entries we cannot read keep everything."""
    def blobs_of(desc: oci.Descriptor) -> set[str] | None:
        try:
            with LayoutReader(root, "", desc.digest).blob(desc) as chunks:
                data = limits.read_document(chunks, "manifest", desc.size, desc.digest, f"{root}: {desc.digest}")
            m = oci.Manifest.parse(data)
        except (CtkError, OSError):
            return None
        return {desc.digest, m.config.digest, *(layer.digest for layer in m.layers)}

    keep: set[str] = set()
    for raw in kept:
        try:
            got = blobs_of(oci.Descriptor.from_json(raw))
        except CtkError:
            return
        if got is None:
            return
        keep |= got
    for old in replaced:
        if old.digest == current.digest:
            continue
        for digest in (blobs_of(old) or set()) - keep:
            with contextlib.suppress(OSError, CtkError):
                os.unlink(_blob_path(root, digest))
