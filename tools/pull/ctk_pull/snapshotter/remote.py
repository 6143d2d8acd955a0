"""Lazy layer mounts: each eStargz layer is served by its own ``lazyfs`` process, mounted where the layer's
snapshot keeps its files, so overlay mounts stack on it exactly as on an unpacked layer.

A process per layer, not threads in the daemon: libfuse's loop takes over SIGINT/SIGTERM/SIGHUP of the process
that runs it, so two loops (or a loop and the gRPC server) cannot share one. They are forked by a "zygote"
(``lazyfs --zygote``) that has imported everything once, so a mount costs a fork, not an interpreter start.
The processes run in sessions of their own and outlive the daemon, so restarting ``lazy-serve`` (or containerd) leaves the layers of running
containers readable; on start the daemon mounts again any layer whose process is gone (:meth:`LazyMounter.alive`).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ctk_shared import estargz
from ctk_shared import labels as L
from ctk_shared import reference as refs
from ctk_shared.errors import CtkError, UsageError

log = logging.getLogger("ctk.snapshotter")

MODULE = "ctk_pull.snapshotter.lazyfs"
FSTYPE = "fuse.ctk-estargz"
MOUNT_TIMEOUT = 60.0  # footer + TOC of a big layer over a slow link, plus the interpreter's start


class MountError(CtkError):
    """The layer cannot be served lazily (not eStargz, TOC digest mismatch, registry unreachable…)."""


@dataclass(frozen=True)
class RemoteLayer:
    """Where a layer's blob lives, and the TOC digest its annotation promises; ``size``: the blob's size when a
    manifest said it (0: unknown, the layer process asks the registry)."""

    host: str
    repo: str
    digest: str
    toc_digest: str
    size: int = 0

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> RemoteLayer | None:
        """The layer the Prepare labels describe, if they say enough to serve it lazily (stargz's or CRI's set)."""
        toc = labels.get(estargz.TOC_DIGEST_ANNOTATION, "")
        ref = labels.get(L.STARGZ_REFERENCE) or labels.get(L.CRI_IMAGE_REF, "")
        digest = labels.get(L.STARGZ_DIGEST) or labels.get(L.CRI_LAYER_DIGEST, "")
        if not (toc and ref and digest and labels.get(L.SNAPSHOT_REF)):
            return None
        try:
            parsed = refs.parse(ref)
        except UsageError:
            log.warning("label %s=%r is not an image reference; not lazy", L.STARGZ_REFERENCE, ref)
            return None
        return cls(parsed.domain, parsed.path, digest, toc)

    def record(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> RemoteLayer:
        return cls(str(rec["host"]), str(rec["repo"]), str(rec["digest"]), str(rec["toc_digest"]),
                   int(rec.get("size") or 0))


def mounted_fstype(path: Path) -> str | None:
    """The filesystem type mounted exactly at ``path`` (from mountinfo; works when a dead FUSE mount makes
    ``stat`` fail with ENOTCONN), or None."""
    want = os.fsencode(str(path))
    try:
        lines = Path("/proc/self/mountinfo").read_bytes().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        fields = line.split()
        if len(fields) < 5 or fields[4].replace(b"\\040", b" ") != want:
            continue
        try:
            found = fields[fields.index(b"-") + 1].decode()
        except (ValueError, IndexError):
            continue
    return found


class LazyMounter:
    """Starts, checks and stops the lazyfs process of each lazily served layer."""

    def __init__(self, cache_dir: Path, *, insecure: bool = False, hosts_dirs: Sequence[str] = (),
                 timeout: float = MOUNT_TIMEOUT, registry_timeout: Sequence[float] | None = None) -> None:
        self.cache_dir = cache_dir
        self.insecure = insecure
        self.hosts_dirs = tuple(hosts_dirs)
        # --registry-timeout (CONNECT,RESPONSE,STALL) of lazy-serve, handed to every layer process
        self.registry_timeout = tuple(registry_timeout) if registry_timeout else None
        self.timeout = timeout
        self._zygote: subprocess.Popen[str] | None = None
        self._zygote_lock = threading.Lock()

    def start_zygote(self) -> None:
        """Start the process that forks layer processes (``lazyfs --zygote``) ahead of the first mount."""
        with self._zygote_lock:
            self._ensure_zygote()

    def _ensure_zygote(self) -> subprocess.Popen[str]:
        if self._zygote is None or self._zygote.poll() is not None:
            self._zygote = subprocess.Popen([sys.executable, "-m", MODULE, "--zygote"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True, close_fds=True)
        return self._zygote

    def _fork(self, argv: list[str], log_path: Path) -> int:
        """Start a layer process through the zygote; its pid."""
        with self._zygote_lock:
            for attempt in (1, 2):
                z = self._ensure_zygote()
                try:
                    assert z.stdin is not None and z.stdout is not None
                    z.stdin.write(json.dumps({"argv": argv, "log": str(log_path)}) + "\n")
                    z.stdin.flush()
                    answer = z.stdout.readline()
                    pid = int(json.loads(answer)["pid"])
                    break
                except (OSError, ValueError, KeyError) as e:
                    z.kill()
                    z.wait()
                    if attempt == 2:
                        raise MountError(f"cannot start a layer process: {e}") from None
        return pid

    def stop_zygote(self) -> None:
        with self._zygote_lock:
            z, self._zygote = self._zygote, None
        if z is not None and z.poll() is None:
            assert z.stdin is not None
            z.stdin.close()
            try:
                z.wait(5)
            except subprocess.TimeoutExpired:
                z.kill()
                z.wait()

    def alive(self, mountpoint: Path) -> bool:
        if mounted_fstype(mountpoint) != FSTYPE:
            return False
        try:  # statfs always reaches the process; stat may be answered from the kernel's attribute cache
            os.statvfs(mountpoint)
            return True
        except OSError:  # ENOTCONN: the process serving it is gone
            return False

    def mount(self, layer: RemoteLayer, mountpoint: Path, log_path: Path, tail: Path | None = None,
              scheme: str = "") -> None:
        """Serve ``layer`` at ``mountpoint``; returns once it is mounted. MountError (with lazyfs's own reason)
        when it cannot be, with nothing left mounted or running. ``tail``: a file with the blob's bytes from its TOC
        on, fetched already (the layer process reads, checks and removes it; it needs ``layer.size``); ``scheme``:
        the one the registry answered on just now (the layer process tries it alone, if its settings allow it)."""
        argv = ["--ref", f"{layer.host}/{layer.repo}", "--digest", layer.digest, "--toc-digest", layer.toc_digest,
                "--cache", str(self.cache_dir)]
        if layer.size:
            argv += ["--size", str(layer.size)]
            if tail is not None:
                argv += ["--tail", str(tail)]
        if scheme in ("https", "http"):
            argv += ["--scheme", scheme]
        if self.insecure:
            argv.append("--insecure")
        for d in self.hosts_dirs:
            argv += ["--hosts-dir", d]
        if self.registry_timeout:
            argv += ["--registry-timeout", ",".join(f"{t:g}" for t in self.registry_timeout)]
        argv.append(str(mountpoint))
        start = log_path.stat().st_size if log_path.exists() else 0
        t0 = time.monotonic()
        pid = self._fork(argv, log_path)
        while mounted_fstype(mountpoint) != FSTYPE:
            if not os.path.exists(f"/proc/{pid}"):  # reaped by the kernel: it exited
                raise MountError(self._reason(log_path, start) or "lazyfs exited")
            if time.monotonic() - t0 > self.timeout:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.unmount(mountpoint)
                raise MountError(f"not mounted after {self.timeout:.0f}s")
            time.sleep(0.01)
        log.info("layer %s mounted lazily at %s in %.2fs", layer.digest, mountpoint, time.monotonic() - t0)

    @staticmethod
    def _reason(log_path: Path, start: int) -> str:
        try:
            with open(log_path, "rb") as f:
                f.seek(start)
                lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1].removeprefix("lazyfs: ").strip() if lines else ""

    def unmount(self, mountpoint: Path) -> None:
        """Unmount (the lazyfs process then exits); a busy mount raises OSError(EBUSY)."""
        if mounted_fstype(mountpoint) is None:
            return
        r = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True)
        if r.returncode != 0 and mounted_fstype(mountpoint) is not None:
            if self.alive(mountpoint):
                raise OSError(errno.EBUSY, f"cannot unmount {mountpoint}: {r.stderr.strip()}")
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)  # a dead FUSE mount
