"""What every benchmark here shares: timing one command silently, the real executables, and a private
containerd + registry that are torn down (with whatever a peer left mounted) at the end."""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def timed(cmd: list[str] | str, env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of ``cmd`` (a string runs through the shell), its output discarded. It must succeed:
    a failure ends the bench with the command's own error output."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, shell=isinstance(cmd, str), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, env=env)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        raise SystemExit(f"{shown}: exit {r.returncode}: {r.stderr.strip()}")
    return took


def tool(name: str) -> str:
    """The command as scripts/setup installs it: the launcher in ``$CTK_BIN_DIR`` (/usr/local/bin; no ``site``
    at start-up, see ctk_shared.launchers; PYTHONPATH still comes first, for the A/B benches), else pip's
    script beside this interpreter. Never a pyenv shim from PATH: it adds ~60 ms to every call, which a user's
    real install does not have."""
    import os
    import shutil
    import sys

    installed = os.path.join(os.environ.get("CTK_BIN_DIR") or "/usr/local/bin", name)
    try:
        with open(installed, "rb") as f:
            f.readline(200)
            if f.readline(200).startswith(b"# ctk launcher"):
                return installed
    except OSError:
        pass
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else (shutil.which(name) or name)


def unmount_under(base: str) -> None:
    """Lazily unmount whatever a peer (podman's overlay storage) left mounted below ``base``."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(str(base))]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True, check=False)


@contextmanager
def bench_stack(name: str, parent: str = "/tmp", *, extra_config: str = "",
                registry: bool = True) -> Iterator[tuple[Path, Any, Any]]:
    """(base dir, containerd, registry): a private containerd and registry under a fresh temp dir.

    ``extra_config``: TOML appended to containerd's config (e.g. a ``[proxy_plugins.X]`` table).
    ``registry=False``: no registry (the caller serves its own), None in its place."""
    import shutil
    import tempfile

    from tests.support.containerd_daemon import start_containerd
    from tests.support.registry_daemon import start_registry

    base = Path(tempfile.mkdtemp(prefix=f"ctk-bench-{name}-", dir=parent))
    try:
        daemon = start_containerd(base / "ctd", extra_config=extra_config)
        try:
            reg = start_registry(base / "reg") if registry else None
            try:
                yield base, daemon, reg
            finally:
                if reg is not None:
                    reg.stop()
        finally:
            daemon.stop()
    finally:
        unmount_under(str(base))
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def bridged_env(base: Path, subnet_prefix: str = "10.197") -> Iterator[dict[str, str]]:
    """The environment that points ctk at a private bridge, conflist directory and data root under ``base``
    (so a bench never touches the machine's ctk0), with ctk run from its compiled bytecode as an installed
    copy is (a session's PYTHONDONTWRITEBYTECODE would recompile every changed module on each call). The
    bridge and its isolation rules go at the end."""
    import os
    import random
    import secrets

    bridge = f"ctkb{secrets.token_hex(2)}"
    netconf = base / "net.d"
    netconf.mkdir()
    env = {**os.environ, "CTK_DATA_ROOT": str(base / "data"), "NETCONFPATH": str(netconf),
           "CTK_BRIDGE_NAME": bridge, "CTK_BRIDGE_SUBNET": f"{subnet_prefix}.{random.randint(1, 250)}.0/24"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        yield env
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        from ctk_net.store import delete_isolation_rules

        delete_isolation_rules(bridge)


def push_busybox(base: Path, reg: Any) -> str:
    """Build the test busybox image under ``base`` and push it to the bench registry; its reference."""
    from tests.support import images as im

    im.build_image(base / "layout", "latest", [im.busybox_layer_tar()])
    ref = f"{reg.host}/bench/busybox:latest"
    im.push_layout(base / "layout", "latest", ref)
    return ref


def drop_everything(client: Any) -> None:
    """Every image, container, lease and ingest in every namespace of ``client``'s containerd goes, then one
    synchronous GC pass: the next sample starts from a cold store (blobs and snapshots are collected)."""
    from ctk_shared.containerd import Client

    for ns in client.namespaces.list():
        c = Client(client.address, ns)
        for img in c.images.list():
            c.images.delete(img.name)
        for cont in c.containers.list():
            c.containers.delete(cont.id)
        for lease in c.leases.list():
            c.leases.delete(lease.id)
        for st in c.content.statuses():
            c.content.abort(st.ref)
    c = Client(client.address, "default")
    lid = c.leases.create()
    c.leases.delete(lid, sync=True)


_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of a live process, with its waited-for children's if ``children``; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / _TICK
