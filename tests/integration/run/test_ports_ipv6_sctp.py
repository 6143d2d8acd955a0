"""-p on IPv6 host addresses (``[::1]:8080:80``, ``[::]:80:80``), served by ctk-net's userland proxy, and
``/sctp``, refused with a clear error on a host whose kernel has no SCTP.

Traffic goes to the host's loopback only (127.0.0.1 and ::1)."""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.request

import pytest

from tests.support.polling import wait_for
from tests.support.sockets import has_ipv6_loopback

from .test_network import WEB

pytestmark = pytest.mark.integration


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this host has no IPv6 loopback")


def free_port6() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 20.0) -> str:
    end = time.monotonic() + timeout
    last: Exception | None = None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < end:
        try:
            with opener.open(url, timeout=2) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise AssertionError(f"nothing answered at {url}: {last}")


def refused(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(2)
        try:
            s.connect((host, port))
        except OSError:
            return True
    return False


def proxies(data_root) -> list[int]:
    """PIDs of ctk-net proxies serving containers of this test's data root."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"ctk_net.proxy" in cmd and any(str(data_root).encode() in a for a in cmd):
            out.append(int(pid))
    return out


@needs_ipv6
def test_published_on_ipv6_loopback_answers_there_only(run, bb):
    port = free_port6()
    r = run("-d", "-q", "-p", f"[::1]:{port}:80", "--name", "web6", bb, "sh", "-c", WEB)
    assert r.code == 0, r.err
    cid = r.out.strip()
    assert get(f"http://[::1]:{port}/") == f"hello from {cid[:12]}\n"
    assert refused("127.0.0.1", port)  # published on ::1 only, as asked
    assert json.loads(run("ps").lines[0])["Ports"] == f"[::1]:{port}->80/tcp"
    assert run("port", "web6").lines == [f"80/tcp -> [::1]:{port}"]
    ns = json.loads(run("inspect", "web6").out)[0]["NetworkSettings"]
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "::1", "HostPort": str(port)}]}
    assert len(proxies(run.data_root)) == 1
    # stop frees the port and ends the proxy; start serves it again; rm leaves no proxy
    assert run("stop", "-t", "1", "web6").code == 0
    assert proxies(run.data_root) == [] and refused("::1", port)
    assert run("start", "web6").code == 0
    assert get(f"http://[::1]:{port}/").startswith("hello from")
    assert run("rm", "-f", "web6").code == 0
    assert proxies(run.data_root) == [] and refused("::1", port)


@needs_ipv6
def test_same_port_on_ipv4_and_ipv6_wildcards_and_an_auto_ipv6_port(run, bb):
    port = free_port6()
    r = run("-d", "-q", "-p", f"{port}:80", "-p", f"[::]:{port}:80", "-p", "[::1]::80", "--name", "both", bb,
            "sh", "-c", WEB)
    assert r.code == 0, r.err
    assert get(f"http://127.0.0.1:{port}/").startswith("hello from")
    assert get(f"http://[::1]:{port}/").startswith("hello from")
    lines = run("port", "both").lines
    assert f"80/tcp -> 0.0.0.0:{port}" in lines and f"80/tcp -> [::]:{port}" in lines
    auto = next(ln for ln in lines if "[::1]" in ln)
    auto_port = int(auto.rsplit(":", 1)[1])
    assert 49153 <= auto_port <= 60999
    assert get(f"http://[::1]:{auto_port}/").startswith("hello from")


@needs_ipv6
def test_taken_ipv6_port_is_a_clear_error_and_leaves_no_proxy(run, bb):
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("-d", "-q", "-p", f"[::1]:{port}:80", bb, "sleep", "300")
        assert r.code == 125 and f"port [::1]:{port}/tcp is already allocated" in r.err, r.err
        assert "Traceback" not in r.err
    assert proxies(run.data_root) == []
    # the IPv4 side of the same number is free: it is another address family
    r = run("-d", "-q", "-p", f"127.0.0.1:{port}:80", bb, "sh", "-c", WEB)
    assert r.code == 0, r.err
    assert wait_for(lambda: not refused("127.0.0.1", port), timeout=10)


def _has_sctp() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(_has_sctp(), reason="this host's kernel supports SCTP (the refusal cannot be seen)")
def test_sctp_without_kernel_support_is_refused_before_anything_is_made(run, bb):
    for spec in ("80/sctp", "127.0.0.1:5000:5000/sctp"):
        r = run("-d", "-q", "-p", spec, bb, "true")
        assert r.code == 125, r.err
        assert r.err.splitlines()[0] == "ctk-run: error: cannot publish an sctp port: this host's kernel has no " \
            "SCTP support", r.err
        assert "modprobe sctp" in r.err
    assert run("ps", "-a", "-q").lines == []
