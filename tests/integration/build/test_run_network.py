"""RUN steps get a network of their own (issue 12): the session's private bridge with NAT, not the host's.

A step cannot reach what listens on the host's 127.0.0.1 and sees only ``lo`` and ``eth0``; it reaches the host
through the bridge's gateway address, as a Docker build step does; ``--network none`` leaves only ``lo``; the host's
network is an entitlement (``--allow network.host``). Nothing is left behind after a build: no veth, pinned
netns, iptables rule or IPAM lease. Traffic only goes to 127.0.0.1 and the test bridge's gateway.
"""
from __future__ import annotations

import re
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from ctk_shared.nethooks import resolv_text

from tests.support.net_fixtures import ipam_leases, leaked_rules, netns_mounts

from .conftest import build_killed_in_a_step, cached_steps, write

pytestmark = pytest.mark.integration


@contextmanager
def listener(addr: str) -> Iterator[tuple[int, str, list[str]]]:
    """A TCP server on ``addr``: answers each connection with a token; yields (port, token, peers seen)."""
    token = f"PONG-{secrets.token_hex(4)}"
    peers: list[str] = []
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = srv.accept()
            except OSError:
                continue
            peers.append(peer[0])
            with conn:
                conn.sendall(token.encode() + b"\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], token, peers
    finally:
        stop.set()
        t.join()
        srv.close()


def leaked(before: dict, after: dict, cni) -> set[str]:  # type: ignore[no-untyped-def]
    return leaked_rules(before["iptables"], after["iptables"], cni, [])


def probe(addr: str, port: int) -> str:
    """A RUN line printing the server's answer, or UNREACHABLE; then the step's interfaces."""
    return (f"RUN (nc -w 3 {addr} {port} </dev/null || echo UNREACHABLE) && "
            "echo IFACES $(awk -F: 'NR>2 {gsub(/ /, \"\", $1); print $1}' /proc/net/dev | sort)")


def ifaces(err: str) -> list[str]:
    m = re.search(r"^(?:#\d+ \d+\.\d+ )?IFACES (.*)$", err, re.M)  # a plain progress line: "#2 0.412 IFACES …"
    assert m, err
    return m.group(1).split()


@pytest.fixture
def gateway(run, bb, cni_env) -> str:
    """The test bridge's gateway address, on the host (a container run first makes the bridge exist)."""
    assert run("--rm", "-q", bb, "true").code == 0
    return cni_env.prefix + "1"


def test_step_cannot_reach_host_loopback_and_has_its_own_interfaces(build, bb, tmp_path):
    with listener("127.0.0.1") as (port, token, peers):
        ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\n{probe('127.0.0.1', port)}\n"})
        r = build("--no-cache", str(ctx))
    assert r.code == 0, r.err
    assert "UNREACHABLE" in r.err and token not in r.err and peers == []
    assert ifaces(r.err) == ["eth0", "lo"]


def test_step_reaches_the_host_through_the_gateway(build, bb, tmp_path, gateway, cni_env):
    with listener(gateway) as (port, token, peers):
        ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\n{probe(gateway, port)}\nRUN cat /etc/resolv.conf\n"})
        r = build("--no-cache", str(ctx))
    assert r.code == 0, r.err
    assert token in r.err and len(peers) == 1
    assert peers[0].startswith(cni_env.prefix) and peers[0] != gateway  # the step's own address on the bridge
    # the host's resolv.conf without loopback nameservers, so names resolve through the NAT
    expected = resolv_text((), (), (), networked=True)
    assert expected and expected in r.err.replace("\r", "")


def test_network_none_has_only_loopback(build, bb, tmp_path):
    with listener("127.0.0.1") as (port, token, peers):
        ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\n{probe('127.0.0.1', port)}\n"})
        r = build("--no-cache", "--network", "none", str(ctx))
    assert r.code == 0, r.err
    assert "UNREACHABLE" in r.err and peers == []
    assert ifaces(r.err) == ["lo"]


def test_host_network_is_an_entitlement(build, bb, tmp_path):
    with listener("127.0.0.1") as (port, token, peers):
        ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN true\n"
                                                     f"RUN --network=host nc -w 3 127.0.0.1 {port} </dev/null\n"})
        denied = build("--no-cache", str(ctx))
        flag_denied = build("--no-cache", "--network", "host", str(ctx))
        allowed = build("--no-cache", "--allow", "network.host", str(ctx))
        flag_allowed = build("--no-cache", "--network", "host", "--allow", "network.host", str(ctx))
    # in the Dockerfile: a build error naming the line, before any step ran (as BuildKit checks entitlements)
    assert denied.code == 1 and denied.out == ""
    assert "ctk-build: error: Dockerfile:3: RUN --network=host needs the network.host entitlement" in denied.err
    assert "--allow network.host" in denied.err and "Traceback" not in denied.err
    assert "RUN true" not in denied.err
    # on the command line: a usage error
    assert flag_denied.code == 2 and "--network host needs the network.host entitlement" in flag_denied.err
    assert "--allow network.host" in flag_denied.err
    assert allowed.code == 0, allowed.err
    assert flag_allowed.code == 0, flag_allowed.err
    assert allowed.err.count(token) == 1 and flag_allowed.err.count(token) == 1 and len(peers) == 2
    bad = build("--allow", "security.insecure", str(ctx))
    assert bad.code == 2 and "unknown entitlement" in bad.err


def test_nothing_leaks_after_steps_succeed_or_fail(build, bb, tmp_path, cni_env, net_snapshot, data_root):
    before = net_snapshot(data_root)
    leases = ipam_leases(cni_env.data_root)
    ok = write(tmp_path / "ok", {"Dockerfile": f"FROM {bb}\nRUN echo one > /a\nRUN echo two > /b\n"})
    assert build("--no-cache", str(ok)).code == 0
    failing = write(tmp_path / "bad", {"Dockerfile": f"FROM {bb}\nRUN ip addr show eth0 && exit 3\n"})
    r = build("--no-cache", str(failing))
    assert r.code == 1 and "exit code 3" in r.err
    assert "inet " + cni_env.prefix in r.err  # it was attached when it failed
    after = net_snapshot(data_root)
    assert after["veths"] == before["veths"]
    assert netns_mounts(data_root) == []
    assert leaked(before, after, cni_env) == set()
    assert ipam_leases(cni_env.data_root) == leases
    assert not list((data_root / "build" / "etc").iterdir())  # the steps' hosts and resolv.conf


def test_network_mode_is_part_of_the_cache_key(build, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo keyed > /k\n"})
    assert build(str(ctx)).code == 0
    again = build(str(ctx))
    assert again.code == 0 and [s.split("] ", 1)[1] for s in cached_steps(again.err)] == ["RUN echo keyed > /k"]
    none = build("--network", "none", str(ctx))
    assert none.code == 0 and cached_steps(none.err) == []


def test_attach_failure_is_one_clear_line(build, bb, tmp_path, data_root):
    empty = tmp_path / "no-plugins"
    empty.mkdir()
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo never\n"})
    r = build("--no-cache", "--cni-path", str(empty), str(ctx))
    assert r.code == 1 and "never" not in r.err.replace("RUN echo never", "")
    errors = [ln for ln in r.err.splitlines() if ln.startswith("ctk-build: error:")]
    assert len(errors) == 1, r.err
    assert errors[0] == ("ctk-build: error: Dockerfile:2: RUN: attaching the step to the bridge network: "
                         f"CNI plugin 'bridge' not found in CNI_PATH {empty}")
    assert "Traceback" not in r.err
    assert netns_mounts(data_root) == []


def test_killed_build_leaves_nothing_once_the_next_build_ran(build, bb, tmp_path, cni_env, net_snapshot, data_root,
                                                            containerd, ctd):

    before = net_snapshot(data_root)
    leases = ipam_leases(cni_env.data_root)
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo STARTED && sleep 300\n"})
    with build_killed_in_a_step(containerd.address, ctd.namespace, build.env, "--no-cache", str(ctx)):
        assert len(ipam_leases(cni_env.data_root)) == len(leases) + 1  # attached while it runs
    nxt = write(tmp_path / "next", {"Dockerfile": f"FROM {bb}\nRUN true\n"})
    assert build(str(nxt)).code == 0  # removes the killed build's step: its task, hook, files
    after = net_snapshot(data_root)
    assert after["veths"] == before["veths"]
    assert netns_mounts(data_root) == []
    assert leaked(before, after, cni_env) == set()
    assert ipam_leases(cni_env.data_root) == leases
    assert not list((data_root / "build" / "etc").iterdir())
