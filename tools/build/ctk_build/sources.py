"""Where COPY and ADD read from: the build context (with .dockerignore), or the root of a stage or image.

Paths are resolved inside their root. For the context a path that leaves it (``..``, or a symlink pointing
outside) is an error, as in ``docker build``; inside an image root, symlinks resolve against that root (an
absolute link ``/usr/lib/x`` means the image's /usr/lib/x, never the host's).

:func:`SourceTree.checksum` hashes what a COPY would copy (relative names, file types, permission bits,
contents, link targets; not mtimes or owners), which is what the build cache keys on.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ctk_shared.errors import InvalidArgument, NotFound

from .dockerignore import BadPattern, IgnoreMatcher, _translate

_MAX_LINKS = 40


@dataclass(frozen=True)
class Entry:
    """One thing to copy: ``rel`` is its name relative to the copied source (``""`` for the source itself)."""

    rel: str
    path: str  # absolute host path
    st: os.stat_result


class SourceTree:
    """A root directory to copy from. ``context=True``: paths escaping the root are errors, and
    ``ignore`` hides files."""

    def __init__(self, root: str, ignore: IgnoreMatcher | None = None, *, context: bool = True,
                 label: str = "build context", digests: DigestCache | None = None) -> None:
        self.root = os.path.realpath(root) if context else root
        self.ignore = ignore or IgnoreMatcher([])
        self.context = context
        self.label = label
        self.digests = digests or DigestCache(None)

    # -- resolution -----------------------------------------------------------------------------
    def clean(self, path: str) -> str:
        """A source path as a relative, normalised path; ``..`` that leaves the context is an error."""
        joined = posixpath.normpath("/" + path) if not self.context else posixpath.normpath(path.lstrip("/") or ".")
        if self.context and (joined == ".." or joined.startswith("../")):
            raise InvalidArgument(f"{path}: forbidden path outside the {self.label}")
        return joined.lstrip("/") or "."

    def resolve(self, rel: str, follow_last: bool = True) -> str:
        """The host path of ``rel`` with symlinks followed inside the root (the last one too unless told)."""
        parts = [p for p in rel.split("/") if p and p != "."]
        done: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not done and self.context:
                    raise InvalidArgument(f"{rel}: forbidden path outside the {self.label}")
                if done:
                    done.pop()
                continue
            host = os.path.join(self.root, *done, part)
            if (parts or follow_last) and os.path.islink(host):
                links += 1
                if links > _MAX_LINKS:
                    raise InvalidArgument(f"{rel}: too many levels of symbolic links")
                target = os.readlink(host)
                if target.startswith("/"):
                    if self.context:
                        raise InvalidArgument(f"{rel}: symlink to {target} points outside the {self.label}")
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(part)
        return os.path.join(self.root, *done)

    def _visible(self, rel: str) -> bool:
        return not (self.context and self.ignore.excluded(rel))

    def expand(self, pattern: str) -> list[str]:
        """The relative paths a source names: itself, or the matches of a wildcard (``*``, ``?``, ``[``)."""
        rel = self.clean(pattern)
        if not re.search(r"[*?\[]", rel):
            host = self.resolve(rel)
            if not os.path.lexists(host) or not self._visible(rel) and rel != ".":
                raise NotFound(f"{pattern}: not found in the {self.label}"
                               + (" (or excluded by .dockerignore)" if self.context else ""))
            return [rel]
        try:
            rx = re.compile(_translate(rel), re.S)
        except BadPattern:
            raise InvalidArgument(f"{pattern}: syntax error in pattern") from None
        static = rel.split("/")
        base_parts = []
        for p in static:
            if re.search(r"[*?\[]", p):
                break
            base_parts.append(p)
        base = "/".join(base_parts)
        depth = len(static)
        found = []
        for r in self._walk_names(base, depth):
            if rx.match(r) and self._visible(r):
                found.append(r)
        if not found:
            raise NotFound(f"{pattern}: no file matches in the {self.label}"
                           + (" (or all are excluded by .dockerignore)" if self.context else ""))
        return sorted(found)

    def _walk_names(self, base: str, depth: int) -> Iterator[str]:
        """Relative names under ``base`` down to ``depth`` path components (for wildcard matching)."""
        start = self.resolve(base) if base else self.root
        stack = [(base, start)]
        while stack:
            rel_dir, host_dir = stack.pop()
            try:
                names = os.listdir(host_dir)
            except OSError:
                continue
            for name in names:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                yield rel
                host = os.path.join(host_dir, name)
                if rel.count("/") + 1 < depth and os.path.isdir(host) and not os.path.islink(host):
                    stack.append((rel, host))

    # -- walking and hashing --------------------------------------------------------------------
    def entries(self, rel: str) -> Iterator[Entry]:
        """The source itself, then (for a directory) everything below it in sorted order, minus ignored files."""
        host = self.resolve(rel)
        st = os.lstat(host)
        yield Entry("", host, st)
        if not stat.S_ISDIR(st.st_mode):
            return
        yield from self._below(rel if rel != "." else "", host, "")

    def _below(self, ctx_rel: str, host_dir: str, rel_prefix: str) -> Iterator[Entry]:
        try:
            names = sorted(os.listdir(host_dir))
        except OSError as e:
            raise InvalidArgument(f"reading {host_dir}: {e.strerror}") from None
        for name in names:
            crel = f"{ctx_rel}/{name}" if ctx_rel else name
            rel = f"{rel_prefix}{name}"
            host = os.path.join(host_dir, name)
            st = os.lstat(host)
            visible = self._visible(crel)
            is_dir = stat.S_ISDIR(st.st_mode)
            if visible:
                yield Entry(rel, host, st)
            if is_dir and (visible or self.ignore.may_include_below(crel)):
                # (an excluded directory is entered only for files re-included below it)
                yield from self._below(crel, host, rel + "/")

    def checksum(self, rels: list[str]) -> str:
        """sha256 over names, types, permission bits, contents and link targets of everything copied."""
        h = hashlib.sha256()
        for rel in rels:
            h.update(f"src {rel}\0".encode())
            for e in self.entries(rel):
                mode = e.st.st_mode
                h.update(f"{e.rel}\0{stat.S_IFMT(mode):o}\0{stat.S_IMODE(mode):o}\0".encode())
                if stat.S_ISREG(mode):
                    h.update(self.digests.digest(e.path, e.st).encode())
                elif stat.S_ISLNK(mode):
                    h.update(os.readlink(e.path).encode())
                h.update(b"\0")
        return h.hexdigest()


class DigestCache:
    """sha256 of big context files, remembered by (size, mtime, ctime, inode) as BuildKit does: a rebuild does
    not read 50 MiB again when nothing touched the file (any write or chmod changes its ctime)."""

    MIN_SIZE = 1 << 20

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        if path:
            try:
                with open(path) as f:
                    self.entries = json.load(f)
            except (OSError, ValueError):
                self.entries = {}

    def digest(self, path: str, st: os.stat_result) -> str:
        if st.st_size < self.MIN_SIZE or not self.path:
            return file_digest(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        hit = self.entries.get(path)
        if hit and hit[:5] == stamp:
            return str(hit[5])
        value = file_digest(path)
        self.entries[path] = [*stamp, value]
        self.dirty = True
        return value

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        from ctk_shared.outputs import write_owned

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_owned(self.path, json.dumps(self.entries).encode())  # whole; never through a planted link
        self.dirty = False


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
