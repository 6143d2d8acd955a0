"""Networked containers end to end: ctk-run with ctk-net's hook, the real CNI plugins and iptables.

Everything runs on a private bridge, subnet and conflist directory (``cni_env``); traffic only goes to
127.0.0.1 and to container addresses on that bridge.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.support.net_fixtures import ipam_leases, leaked_rules, netns_mounts
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

WEB = "mkdir -p /w && echo hello from $(hostname) > /w/index.html && exec httpd -f -p 80 -h /w"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, timeout: float = 20.0) -> str:
    """GET http://127.0.0.1:PORT/ until it answers (the container may still be starting)."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://127.0.0.1:{port}/", timeout=2) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port}: {last}")


def test_published_port_answers_and_is_shown(run, bb, cni_env):
    port = free_port()
    r = run("-d", "-q", "-p", f"{port}:80", "--name", "web", bb, "sh", "-c", WEB)
    assert r.code == 0, r.err
    cid = r.out.strip()
    assert fetch(port) == f"hello from {cid[:12]}\n"
    ps = json.loads(run("ps").lines[0])
    assert ps["Ports"] == f"0.0.0.0:{port}->80/tcp"
    assert run("port", "web").lines == [f"80/tcp -> 0.0.0.0:{port}"]
    assert run("port", "web", "80").lines == [f"0.0.0.0:{port}"]
    doc = json.loads(run("inspect", "web").out)[0]
    ns = doc["NetworkSettings"]
    assert ipaddress.ip_address(ns["IPAddress"]) in ipaddress.ip_network(cni_env.subnet)
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert list(ns["Networks"]) == ["bridge"] and ns["Gateway"] == cni_env.prefix + "1"
    # the host reaches the container's address directly too
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{ns['IPAddress']}/", timeout=5) as resp:
        assert resp.read().decode().startswith("hello from")


def test_auto_port_and_publish_all(run, bb):
    r = run("-d", "-q", "-p", "80", "--name", "auto", bb, "sh", "-c", WEB)
    assert r.code == 0, r.err
    line = run("port", "auto", "80/tcp").lines[0]
    host_port = int(line.rsplit(":", 1)[1])
    assert 49153 <= host_port <= 60999
    assert fetch(host_port).startswith("hello from")


def test_taken_host_port_is_refused_and_nothing_leaks(run, bb, net_snapshot, cni_env):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        before = net_snapshot(run.data_root)
        r = run("-d", "-q", "-p", f"{port}:80", bb, "sh", "-c", WEB)
        assert r.code == 125
        assert "already allocated" in r.err and r.err.count("\n") <= 2, r.err
        after = net_snapshot(run.data_root)
        assert after["veths"] == before["veths"] and after["netns"] == []
        assert leaked_rules(before["iptables"], after["iptables"], cni_env, [port]) == set()


def test_names_resolve_on_a_user_network(run, bb, tmp_path):
    net = f"app{tmp_path.name[-6:].replace('_', '')}"
    r = run("create", "--subnet", "10.251.77.0/24", net, tool="ctk-net")
    assert r.code == 0, r.err
    try:
        assert run("-d", "-q", "--network", net, "--name", "db", bb, "sh", "-c", WEB).code == 0
        out = ""
        for _ in range(50):
            c = run("--rm", "-q", "--network", net, bb, "wget", "-qO-", "http://db/")
            out = c.out
            if c.code == 0:
                break
            time.sleep(0.2)
        assert out.startswith("hello from")
        hosts = run("exec", "db", "cat", "/etc/hosts").out
        assert "db" in hosts and "10.251.77." in hosts
        rm = run("rm", net, tool="ctk-net")
        assert rm.code != 0 and "in use" in rm.err  # db still uses it
    finally:
        run("rm", "-f", "db")
        assert run("rm", net, tool="ctk-net").code == 0


def test_unknown_network_is_a_clear_error(run, bb):
    r = run("--rm", "-q", "--network", "nosuchnet", bb, "true")
    assert r.code == 125
    assert "no such network: 'nosuchnet'" in r.err and "Traceback" not in r.err
    assert run("ps", "-a", "-q").lines == []


def test_restart_always_comes_back_on_its_port(run, bb):
    """The server exits by itself after a few seconds; the policy brings it back, attached again."""
    port = free_port()
    brief = "mkdir -p /w && echo hello from $(hostname) > /w/index.html && httpd -p 80 -h /w && sleep 3"
    r = run("-d", "-q", "-p", f"{port}:80", "--restart=always", "--name", "web", bb, "sh", "-c", brief)
    assert r.code == 0, r.err
    assert fetch(port).startswith("hello from")
    assert wait_for(lambda: json.loads(run("inspect", "web").out)[0]["RestartCount"] >= 1, timeout=30)
    assert fetch(port, timeout=30).startswith("hello from")


def test_kill_containerd_restart_and_rm_leave_nothing(run, bb, containerd, net_snapshot, cni_env):
    before = net_snapshot(run.data_root)
    leases_before = ipam_leases(cni_env.data_root)
    ports = [free_port() for _ in range(3)]
    for i, port in enumerate(ports):
        assert run("-d", "-q", "-p", f"{port}:80", "--name", f"w{i}", bb, "sh", "-c", WEB).code == 0
    for port in ports:
        assert fetch(port).startswith("hello from")
    assert len(ipam_leases(cni_env.data_root)) == len(leases_before) + 3
    run("kill", "w0")  # SIGKILL
    containerd.restart()
    assert run("ps", "-a", "-q").code == 0
    run("rm", "-f", "w0", "w1", "w2")
    # the kernel destroys a network namespace (and its veth) a moment after its last user is gone
    assert wait_for(lambda: net_snapshot(run.data_root)["veths"] == before["veths"], timeout=10)
    after = net_snapshot(run.data_root)
    assert after["netns"] == [] and netns_mounts(run.data_root) == []
    assert ipam_leases(cni_env.data_root) == leases_before
    assert leaked_rules(before["iptables"], after["iptables"], cni_env, ports) == set()


def test_concurrent_runs_with_distinct_ports(run, bb, containerd, ctd, cni_env):
    import os

    ports = [free_port() for _ in range(20)]
    env = {**os.environ, "CTK_DATA_ROOT": str(run.data_root), **cni_env.env}
    procs = [subprocess.Popen(["ctk-run", "--address", containerd.address, "-n", ctd.namespace, "-d", "-q",
                               "-p", f"{p}:80", bb, "sh", "-c", WEB], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for p in ports]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    for port in ports:
        assert fetch(port).startswith("hello from")
    ips = {json.loads(x)["NetworkSettings"]["IPAddress"] for x in
           [json.dumps(d) for d in json.loads(run("inspect", *run("ps", "-q").lines).out)]}
    assert len(ips) == len(ports)


def test_dns_add_host_and_hostname(run, bb, cni_env):
    r = run("--rm", "-q", "--dns", "192.0.2.53", "--dns-search", "corp.example", "--add-host", "db.local:192.0.2.7",
            "--add-host", "gw:host-gateway", "--hostname", "box", bb, "sh", "-c",
            "cat /etc/resolv.conf /etc/hosts; hostname")
    assert r.code == 0, r.err
    assert "nameserver 192.0.2.53\nsearch corp.example\n" in r.out
    assert "192.0.2.7\tdb.local" in r.out and f"{cni_env.prefix}1\tgw" in r.out
    assert r.out.rstrip().endswith("box")
    mine = [ln for ln in r.out.splitlines() if ln.endswith("\tbox") or "\tbox " in ln]
    assert mine and mine[0].startswith(cni_env.prefix)  # its own name on its bridge address


def test_cli_killed_during_run_with_port_leaks_nothing(containerd, ctd, run, bb, cni_env, net_snapshot):
    import os
    import signal

    assert run("--rm", "-q", bb, "true").code == 0
    before = net_snapshot(run.data_root)
    leases_before = ipam_leases(cni_env.data_root)
    port = free_port()
    env = {**os.environ, "CTK_DATA_ROOT": str(run.data_root), **cni_env.env}
    for delay in (0.1, 0.25, 0.4, 0.6):
        p = subprocess.Popen(["ctk-run", "--address", containerd.address, "-n", ctd.namespace, "-d", "-q",
                              "-p", f"{port}:80", "--name", "victim", bb, "sh", "-c", WEB],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        run("rm", "-f", "victim")
    assert run("ps", "-a", "-q").lines == []
    assert wait_for(lambda: net_snapshot(run.data_root)["veths"] == before["veths"], timeout=10)
    after = net_snapshot(run.data_root)
    assert after["netns"] == [] and ipam_leases(cni_env.data_root) == leases_before
    assert leaked_rules(before["iptables"], after["iptables"], cni_env, [port]) == set()
    # and the port is free again
    assert run("-d", "-q", "-p", f"{port}:80", bb, "sh", "-c", WEB).code == 0
    assert fetch(port).startswith("hello from")


def test_stopped_container_frees_its_port(run, bb):
    port = free_port()
    first = run("-d", "-q", "-p", f"{port}:80", "--name", "first", bb, "sh", "-c", "sleep 1").out.strip()
    # it exits by itself after 1 s: its task is deleted (the hook's endpoint record goes) and the port freed
    endpoints = run.data_root / "net" / "endpoints"
    assert wait_for(lambda: not any(first in p.name for p in endpoints.glob("*.json")), timeout=20)
    r = run("-d", "-q", "-p", f"{port}:80", "--name", "second", bb, "sh", "-c", WEB)
    assert r.code == 0, r.err
    assert fetch(port).startswith("hello from")
    assert json.loads(run("inspect", "first").out)[0]["State"]["ExitCode"] == 0


def test_stop_and_rm_f_of_a_networked_container_are_prompt(run, bb):
    """The logger's restart decision must not hold up the shim while the task is deleted (it used to wait on a
    Wait the shim answers only after the logger exits: every rm -f of a networked container took 5 s)."""
    port = free_port()
    trap = "trap 'exit 3' TERM; sleep 300 & wait"
    cid = run("-d", "-q", "-p", f"{port}:80", bb, "sh", "-c", trap).out.strip()
    time.sleep(0.3)  # the trap is set
    t = time.monotonic()
    assert run("stop", cid).code == 0
    assert time.monotonic() - t < 3
    assert json.loads(run("inspect", cid).out)[0]["State"]["ExitCode"] == 3
    cid = run("-d", "-q", "-p", f"{port}:80", bb, "sleep", "300").out.strip()
    t = time.monotonic()
    r = run("rm", "-f", cid)
    assert r.code == 0 and time.monotonic() - t < 3, r.err


def test_loopback_is_up_without_a_plugin_run(run, bb):
    """The hook brings ``lo`` up itself in the container's namespace (issue 20: no loopback plugin process on
    the way to the start): localhost serves inside a networked container, and no loopback attachment is
    cached for a DEL at its stop."""
    cid = run("-d", "-q", bb, "sh", "-c", "httpd -p 127.0.0.1:8080 -h /etc; sleep 300").out.strip()
    assert len(cid) == 64
    assert int(run("exec", cid, "cat", "/sys/class/net/lo/flags").out.strip(), 16) & 1
    r = run("exec", cid, "wget", "-q", "-O-", "http://127.0.0.1:8080/passwd")
    assert r.code == 0 and r.out.startswith("root:"), r.err
    cached = [p.name for p in (run.data_root / "net" / "cache").iterdir()]
    assert cached and not [n for n in cached if "ctk-loopback" in n], cached
    assert run("rm", "-f", cid).code == 0
    assert list((run.data_root / "net" / "cache").iterdir()) == []
