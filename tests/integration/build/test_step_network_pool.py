"""RUN steps on the bridge network share the build's attached network namespace, one step at a time (issue
18's performance work: BuildKit pools namespaces too). Steps that run at the same time still get namespaces
of their own, and nothing is left attached after the build (test_run_network.py covers the leaks)."""
from __future__ import annotations

import re

import pytest

from tests.support.net_fixtures import netns_mounts

from .conftest import write

pytestmark = pytest.mark.integration

SHOW = "RUN echo NETNS $(readlink /proc/self/ns/net) $(ip -4 -o addr show eth0 | awk '{print $4}')"


def seen(err: str) -> list[tuple[str, str]]:
    """(namespace, eth0 address) of each step that printed them."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"NETNS (net:\[\d+\]) (\S+)", err)]


def test_steps_of_one_build_reuse_one_attached_namespace(build, bb, tmp_path, data_root, cni_env):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\n{SHOW} one\nRUN true\n{SHOW} two\n{SHOW} three\n"})
    r = build("--progress=plain", "--no-cache", str(ctx))
    assert r.code == 0, r.err
    steps = seen(r.err)
    assert len(steps) == 3, r.err
    assert len(set(steps)) == 1, steps  # one namespace, one address, attached once
    assert steps[0][1].startswith(cni_env.prefix)
    assert netns_mounts(data_root) == []  # detached when the build ended


def test_steps_running_at_the_same_time_get_namespaces_of_their_own(build, bb, tmp_path, data_root):
    ctx = write(tmp_path / "ctx", {"Dockerfile": (
        f"FROM {bb} AS a\n{SHOW} && sleep 4\n"
        f"FROM {bb} AS b\n{SHOW} && sleep 4\n"
        f"FROM {bb}\nCOPY --from=a /bin/sh /a\nCOPY --from=b /bin/sh /b\n")})
    r = build("--progress=plain", "--no-cache", str(ctx))
    assert r.code == 0, r.err
    steps = seen(r.err)
    assert len(steps) == 2, r.err
    assert steps[0][0] != steps[1][0] and steps[0][1] != steps[1][1], steps
    assert netns_mounts(data_root) == []


def test_namespace_is_released_even_when_its_record_was_removed_during_the_build(build, bb, tmp_path, data_root,
                                                                                  cni_env, containerd, ctd):
    """A container prune (or ``ctr c rm``) during the build takes the namespace's record; the build still
    detaches the namespace it attached (its address goes back, nothing stays pinned)."""
    import os
    import subprocess
    import time

    from tests.support.net_fixtures import ipam_leases

    leases = ipam_leases(cni_env.data_root)
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN sleep 3\nRUN true\n"})
    env = {**os.environ, **build.env}
    p = subprocess.Popen(["ctk-build", "--address", containerd.address, "-n", ctd.namespace, "-q", "--no-cache",
                          str(ctx)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    removed = False
    deadline = time.monotonic() + 60
    while not removed and time.monotonic() < deadline and p.poll() is None:
        for c in ctd.containers.list():
            if c.labels.get("ctk/build.netns"):
                ctd.containers.delete(c.id)
                removed = True
        time.sleep(0.05)
    _out, err = p.communicate(timeout=120)
    assert removed and p.returncode == 0, err
    assert netns_mounts(data_root) == []
    assert ipam_leases(cni_env.data_root) == leases
