"""The network of RUN steps: which mode a step gets, the ``network.host`` entitlement, and the pooled network
namespaces and /etc files of ``bridge`` steps.

As in BuildKit, a step has a network namespace of its own with outbound access by default, so it cannot reach
services listening on the host's loopback (a local registry, a database) or see the host's sockets. The host's
network is an entitlement (``--allow network.host``, BuildKit's name); ``none`` leaves only ``lo``.

A ``bridge`` step joins a namespace from the build's pool (:class:`StepNetwork`), as BuildKit pools them:
attaching one to ctk's default ``bridge`` network costs two ``ctk-net hook`` processes and the CNI plugins
(0.3-0.8 s on a loaded 2-core machine), far more than the step's own task, so a build attaches a namespace
once, hands it to one step at a time, and detaches its namespaces in the background while the image is
written. The namespace is attached exactly as ctk-run attaches a container: ``ctk-net hook createRuntime``
with a container state on stdin, and ``postStop`` to release the address, veth and iptables rules. Each
pooled namespace has a container record (no task) labelled as a build step with the ``ctk/networks`` label,
so ``ctk-net rm bridge`` sees the network in use, and whose spec carries the ``poststop`` hook, so the next
ctk-build releases the namespace of a build that was killed (:func:`ctk_build.runner.remove_stale_steps`).
Steps never run side by side in one namespace; a step cannot reconfigure it (no ``CAP_NET_ADMIN``), and its
processes are gone when its task ends.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctk_shared import labels as SL
from ctk_shared.errors import CtkError, NotFound, UsageError

if TYPE_CHECKING:
    import subprocess

    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container

BRIDGE = "bridge"  # the step's own namespace on ctk's default network (BuildKit's "default")
HOST = "host"
NONE = "none"
NETWORK_HOST = "network.host"
ENTITLEMENTS = frozenset({NETWORK_HOST})
ALLOW_HINT = f"pass --allow {NETWORK_HOST} to ctk-build to let RUN steps use the host's network"
SANDBOX_LABEL = "ctk/build.netns"  # on the record of a pooled network namespace
_CLONE_NEWNET = 0x40000000


def build_mode(flag: str, allow: frozenset[str]) -> str:
    """The build's default mode from ``--network`` (``default`` and ``bridge`` are the same); a usage error
    for ``host`` without the entitlement."""
    unknown = sorted(set(allow) - ENTITLEMENTS)
    if unknown:
        raise UsageError(f"--allow {unknown[0]}: unknown entitlement", hint=f"ctk-build knows {NETWORK_HOST}")
    mode = BRIDGE if flag in ("default", BRIDGE) else flag
    if mode not in (BRIDGE, HOST, NONE):
        raise UsageError(f"--network {flag}: expected default, none or host")
    if mode == HOST and NETWORK_HOST not in allow:
        raise UsageError(f"--network host needs the {NETWORK_HOST} entitlement", hint=ALLOW_HINT)
    return mode


def step_mode(flag: str | None, build_default: str, allow: frozenset[str]) -> str:
    """The mode of one ``RUN [--network=X]``; ValueError (the caller adds file:line) when not allowed."""
    if not flag or flag == "default":
        return build_default
    if flag not in (HOST, NONE):
        raise ValueError(f"RUN --network={flag}: expected default, none or host")
    if flag == HOST and NETWORK_HOST not in allow:
        raise ValueError(f"RUN --network=host needs the {NETWORK_HOST} entitlement")
    return flag


@dataclass(frozen=True)
class Sandbox:
    """One attached network namespace of the pool: its record's id, the path steps join, and the record as
    made (its hook detaches the namespace even if someone removed the record meanwhile)."""

    id: str
    path: str
    record: Container


class StepNetwork:
    """What every ``bridge`` step of one build shares: the network made sure of once (``ctk-net ensure`` on
    first use, so a missing ctk-net or CNI plugin fails before the first step), resolv.conf, and the pool of
    attached namespaces. The builder announces its bridge RUN steps (:meth:`expect`); once the last one is
    over the pool is detached in the background while the build goes on."""

    def __init__(self, gopts: GlobalOptions) -> None:
        self.gopts = gopts
        self._lock = threading.Lock()
        self._hooks: dict[str, Any] | None = None
        self._resolv = ""
        self._free: list[Sandbox] = []
        self._all: list[Sandbox] = []
        self._client: Client | None = None
        self._expected = 0  # bridge RUN steps announced and not over yet
        self._warming: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        with _LIVE_LOCK:
            _LIVE.append(self)

    def _prepare(self) -> dict[str, Any]:
        from ctk_shared import nethooks  # (here: a build whose RUN steps are all cached never needs it)

        with self._lock:
            if self._hooks is None:
                hint = "pip install ./tools/net, or build with --network none"
                nethooks.ctk_net_executable(hint)
                nethooks.resolve(self.gopts, [nethooks.DEFAULT_NETWORK], need_gateway=False)
                # the host's nameservers minus loopback ones, which would point at the step itself
                self._resolv = nethooks.resolv_text((), (), (), networked=True)
                self._hooks = nethooks.hooks(self.gopts)
            return self._hooks

    def expect(self, client: Client, *, warm: bool) -> None:
        """One more bridge RUN step will come; ``warm``: it will run (no cache), so the first namespace is
        attached now, in the background, while the build reaches it."""
        with self._lock:
            self._expected += 1
            self._client = self._client or client
            start = warm and self._warming is None and not self._all
            if start:
                self._warming = threading.Thread(target=self._warm, args=(client,), name="ctk-build-netns-warm",
                                                 daemon=True)
        if start:
            assert self._warming is not None
            self._warming.start()

    def _warm(self, client: Client) -> None:
        try:
            box = attach(client, self.gopts, self._prepare())
        except (CtkError, OSError):
            return  # the step attaches one itself and reports the error
        with self._lock:
            self._all.append(box)
            self._free.append(box)

    def step_done(self) -> None:
        """An announced bridge RUN step is over (run, cached or failed): after the last one, detach."""
        with self._lock:
            self._expected -= 1
            last = self._expected <= 0
        if last:
            self.release()

    @contextlib.contextmanager
    def namespace(self, client: Client) -> Iterator[str]:
        """A free attached namespace for one step (a new one when every one is in use), back in the pool
        when the step is over."""
        hooks = self._prepare()
        warming = self._warming
        if warming is not None:
            warming.join()
        with self._lock:
            box = self._free.pop() if self._free else None
            self._client = self._client or client
        if box is None:
            box = attach(client, self.gopts, hooks)
            with self._lock:
                self._all.append(box)
        try:
            yield box.path
        finally:
            with self._lock:
                self._free.append(box)

    def release(self) -> None:
        """Detach the namespaces of the pool that no step uses, in the background; :meth:`wait` for it."""
        warming = self._warming
        if warming is not None:
            warming.join()
        with self._lock:
            boxes = list(self._free)
            self._free = []
            self._all = [b for b in self._all if b not in boxes]
            client = self._client
        if not boxes or client is None:
            return

        def run() -> None:
            for box in boxes:
                with contextlib.suppress(CtkError):
                    detach(client, box.id, box.record)

        t = threading.Thread(target=run, name="ctk-build-netns-release")
        t.start()
        with self._lock:
            self._threads.append(t)

    def wait(self) -> None:
        """Until every :meth:`release` is done."""
        with self._lock:
            threads, self._threads = self._threads, []
        for t in threads:
            t.join()

    def etc_files(self, mode: str, hostname: str, d: str) -> list[tuple[str, str]]:
        """(host path, container path) binds for /etc/hosts and /etc/resolv.conf of a step: the host's own
        files with the host's network, generated ones written into the directory ``d`` for a bridge step,
        none with ``none`` (only ``lo``: nothing to resolve)."""
        if mode == HOST:
            return [(p, p) for p in ("/etc/hosts", "/etc/resolv.conf") if os.path.exists(p)]
        if mode != BRIDGE:
            return []
        from ctk_shared import nethooks

        self._prepare()
        with open(os.path.join(d, "hosts"), "w") as f:
            # networked=False: the hook adds no names for a step, so its own hostname line is static
            f.write(nethooks.hosts_text(hostname, [], "", networked=False))
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write(self._resolv)
        return [(os.path.join(d, "hosts"), "/etc/hosts"), (os.path.join(d, "resolv.conf"), "/etc/resolv.conf")]


_LIVE: list[StepNetwork] = []  # every build's pool in this process, for release_all/wait_all
_LIVE_LOCK = threading.Lock()


def release_all() -> None:
    """Start detaching the namespaces of every pool in this process (the builds are over)."""
    with _LIVE_LOCK:
        pools = list(_LIVE)
    for pool in pools:
        pool.release()


def wait_all() -> None:
    """Until every pool is detached; the pools are forgotten."""
    with _LIVE_LOCK:
        pools, _LIVE[:] = list(_LIVE), []
    for pool in pools:
        pool.release()  # a pool nobody released (an error before release_all)
        pool.wait()


def _new_netns_thread() -> tuple[int, threading.Event, threading.Thread]:
    """A thread of this process moved into a new, empty network namespace (unshare(2) changes only the
    calling thread's): (its thread id, the event that lets it end, the thread). ``ctk-net hook`` pins the
    namespace through ``/proc/TID/ns/net``, as it pins a container's through its init's pid."""
    import ctypes

    from ctk_shared import nethooks

    libc = ctypes.CDLL(None, use_errno=True)
    ready = threading.Event()
    done = threading.Event()
    result: list[int | str] = []

    def hold() -> None:
        if libc.unshare(_CLONE_NEWNET) != 0:
            result.append(os.strerror(ctypes.get_errno()))
        else:
            result.append(threading.get_native_id())
        ready.set()
        done.wait(nethooks.HOOK_TIMEOUT + 10)

    t = threading.Thread(target=hold, name="ctk-build-netns", daemon=True)
    t.start()
    ready.wait()
    if not isinstance(result[0], int):
        done.set()
        raise CtkError(f"cannot make a network namespace for the RUN steps: {result[0]}")
    return result[0], done, t


def _run_hook(hook: dict[str, Any], state: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run one hook entry of a runtime spec as runc would: its path, args and env, the state on stdin."""
    import subprocess

    env = dict(e.split("=", 1) for e in hook.get("env") or [] if "=" in e)
    return subprocess.run(hook.get("args") or [hook["path"]], executable=hook["path"], input=json.dumps(state),
                          capture_output=True, text=True, env=env, timeout=hook.get("timeout") or None, check=False)


def attach(client: Client, gopts: GlobalOptions, hooks: dict[str, Any]) -> Sandbox:
    """A new namespace attached to the default network, with its record (see the module's docstring)."""
    import secrets
    import subprocess

    from ctk_shared import nethooks
    from ctk_shared.containerd import Container

    from .runner import PID_LABEL, RUNTIME, STEP_LABEL

    sid = f"ctk-build-netns-{os.getpid()}-{secrets.token_hex(4)}"
    annotations = nethooks.hook_annotations(client.namespace, [nethooks.DEFAULT_NETWORK], [], "", "", None, None)
    spec = {"ociVersion": "1.0.2", "hooks": {"poststop": hooks["poststop"]}, "annotations": annotations}
    record = Container(id=sid, runtime=RUNTIME, spec=json.dumps(spec).encode(), labels={
        STEP_LABEL: "true", PID_LABEL: str(os.getpid()), SANDBOX_LABEL: "true", **container_labels(BRIDGE)})
    client.containers.create(record)
    try:
        tid, done, holder = _new_netns_thread()
        try:
            try:
                p = _run_hook(hooks["createRuntime"][0], {"id": sid, "pid": tid, "annotations": annotations})
            except subprocess.TimeoutExpired:
                raise CtkError("attaching the RUN step to the bridge network: ctk-net hook timed out") from None
        finally:
            done.set()
            holder.join()
        if p.returncode != 0:
            why = nethooks.hook_error("error running hook: stderr: " + p.stderr) or p.stderr.strip()
            raise CtkError(f"attaching the step to the bridge network: {why}")
    except BaseException:
        with contextlib.suppress(CtkError):
            detach(client, sid, record)
        raise
    return Sandbox(sid, str(nethooks.pinned_netns(gopts.data_root, client.namespace, sid)), record)


def detach(client: Client, sid: str, record: Container | None = None) -> None:
    """Release a pooled namespace (CNI DEL, unpin) through the ``poststop`` hook its record carries, then drop
    the record. Also for a killed build's namespaces (``record`` as listed)."""
    if record is None:
        try:
            record = client.containers.get(sid)
        except NotFound:
            return
    try:
        spec = json.loads(record.spec or b"{}")
        hook = spec["hooks"]["poststop"][0]
        state = {"id": sid, "pid": 0, "annotations": spec.get("annotations") or {}}
    except (ValueError, KeyError, IndexError, TypeError):
        hook = None
    if hook is not None:
        import subprocess

        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            _run_hook(hook, state)
    with contextlib.suppress(NotFound):
        client.containers.delete(sid)


def container_labels(mode: str) -> dict[str, str]:
    """The step container's ``ctk/networks`` label, so ``ctk-net rm bridge`` sees the network in use."""
    from ctk_shared import nethooks

    return {SL.NETWORKS: f'["{nethooks.DEFAULT_NETWORK}"]'} if mode == BRIDGE else {}
