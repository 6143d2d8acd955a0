"""Pytest plugin: ctk's snapshotter daemon (``ctk-pull lazy-serve``) and a containerd that uses it as a proxy plugin.

* ``lazy_snapshotter`` (session) — a :class:`LazyEnv`: the daemon's process, root and socket, and a second private
  containerd (separate from the session's ``containerd``) whose config registers it as snapshotter ``ctk-lazy``.
* ``lazy_ctd`` (function) — a Client on that containerd in a fresh namespace, cleaned up afterwards.
* ``lz`` (function) — ctk-run (or ``tool="ctk-pull"``) on that containerd and namespace, ``--snapshotter ctk-lazy``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ctk_shared.containerd import Client
from ctk_shared.errors import CtkError

from .cli import Result, remove_containers, tool_runner
from .containerd_daemon import ContainerdDaemon, _toml_str, start_containerd
from .containerd_fixtures import fresh_namespace

SNAPSHOTTER = "ctk-lazy"
PROBE_NAMESPACE = "ctk-lazy-probe"
START_TIMEOUT = 15.0


@dataclass
class LazyEnv:
    """The snapshotter daemon under ``base`` (also used by ``scripts/bench/lazy.py``); ``flags``: ctk-pull's
    global flags for it (e.g. ``--insecure-registry``)."""

    base: Path
    containerd: ContainerdDaemon | None = None
    proc: subprocess.Popen[bytes] | None = None
    flags: tuple[str, ...] = ("--debug",)
    _log: object = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        return self.base / "sn"

    @property
    def socket(self) -> Path:
        return self.base / "sn.sock"

    @property
    def log_path(self) -> Path:
        return self.base / "lazy-serve.log"

    @property
    def address(self) -> str:
        assert self.containerd is not None
        return self.containerd.address

    def proxy_config(self) -> str:
        """containerd's config table that makes the daemon its snapshotter ``ctk-lazy``."""
        return f'\n[proxy_plugins.{SNAPSHOTTER}]\n  type = "snapshot"\n  address = {_toml_str(self.socket)}\n'

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start_snapshotter(self) -> None:
        if self.socket.exists():
            self.socket.unlink()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["ctk-pull", *self.flags, "lazy-serve", "--root", str(self.root),
                                          "--socket", str(self.socket)], stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ctk-pull lazy-serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.socket.exists():
                return
            time.sleep(0.05)
        self.stop_snapshotter()
        raise RuntimeError(f"ctk-pull lazy-serve made no socket within {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def stop_snapshotter(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart_snapshotter(self, sig: int = signal.SIGTERM) -> None:
        """Stop and start the daemon, then wait until containerd has reconnected to it: containerd's proxy client
        fails calls with Unavailable while it redials (back-off up to 3 s)."""
        self.stop_snapshotter(sig)
        self.start_snapshotter()
        if self.containerd is not None:
            self.wait_reconnected()

    def _probe(self) -> Client:
        return Client(self.address, PROBE_NAMESPACE)

    def make_probe(self) -> None:
        """A leased snapshot in a namespace of its own, whose Stat goes through containerd to the daemon."""
        client = self._probe()
        try:
            client.namespaces.create(PROBE_NAMESPACE)
            lease = client.leases.create(PROBE_NAMESPACE, expire=None)
            client.with_lease(lease).snapshots(SNAPSHOTTER).prepare(PROBE_NAMESPACE)
        finally:
            client.close()

    def wait_reconnected(self, timeout: float = 20.0) -> None:
        client = self._probe()
        last: Exception | None = None
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    client.snapshots(SNAPSHOTTER).stat(PROBE_NAMESPACE)
                    return
                except CtkError as e:
                    last = e
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"containerd did not reach the restarted snapshotter within {timeout:.0f}s ({last}):\n"
                           f"{self.log_tail()}")

    def direct(self) -> Client:
        """A client straight to the snapshotter's socket (bypassing containerd's metadata)."""
        return Client(str(self.socket), "unused")

    def stop(self) -> None:
        if self.containerd is not None:
            self.containerd.stop()
        self.stop_snapshotter()
        base = str(self.base.resolve())
        try:
            mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        except OSError:
            mounts = []
        for mnt in sorted((m for m in mounts if m == base or m.startswith(base + "/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
        self.kill_layer_processes()

    def layer_processes(self) -> list[int]:
        """PIDs of the lazyfs processes serving this environment's layers (they outlive the daemon). Forked by the
        daemon's zygote, they keep its command line (``lazyfs --zygote``), so they are known by their output,
        ``<root>/snapshots/<id>/lazyfs.log``."""
        root = str(self.root.resolve())
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"ctk_pull.snapshotter.lazyfs" not in cmd:
                continue
            try:
                out = os.readlink(d / "fd" / "1")
            except OSError:
                out = ""
            if out.startswith(root + "/"):
                pids.append(int(d.name))
        return pids

    def kill_layer_processes(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.layer_processes():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def lazy_snapshotter() -> Iterator[LazyEnv]:
    if os.geteuid() != 0:
        raise RuntimeError("the snapshotter's overlay mounts need root: run the integration tests as root")
    env = LazyEnv(Path(tempfile.mkdtemp(prefix="ctk-lz-", dir="/tmp")))
    try:
        env.start_snapshotter()
        env.containerd = start_containerd(env.base / "ctd", extra_config=env.proxy_config())
        env.make_probe()
        yield env
    finally:
        env.stop()
        shutil.rmtree(env.base, ignore_errors=True)


@pytest.fixture
def lazy_ctd(lazy_snapshotter: LazyEnv, request: pytest.FixtureRequest) -> Iterator[Client]:
    with fresh_namespace(lazy_snapshotter.address, request.node.nodeid, (SNAPSHOTTER, "overlayfs")) as client:
        yield client


@pytest.fixture
def lz(lazy_snapshotter: LazyEnv, lazy_ctd: Client, tmp_path: Path) -> Iterator[Callable[..., Result]]:
    go = tool_runner("ctk-run", address=lazy_snapshotter.address, namespace=lazy_ctd.namespace,
                     data_root=tmp_path / "data", env={"CONTAINERD_SNAPSHOTTER": SNAPSHOTTER})
    yield go
    remove_containers(go)
