"""ctk-net's userland proxy on the host's loopback (no container needed): it forwards TCP and UDP from an IPv6
address to an IPv4 one, ends when its watched namespace path goes, and stop() never signals a recycled PID."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from ctk_net import proxy
from ctk_shared.errors import Conflict

from tests.support.sockets import has_ipv6_loopback

pytestmark = pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")


if not has_ipv6_loopback():
    pytest.skip("this host has no IPv6 loopback", allow_module_level=True)


def _tcp_upper_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    def echo(c: socket.socket) -> None:
        with c:
            while data := c.recv(1024):
                c.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _udp_upper_server() -> tuple[socket.socket, int]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                data, peer = srv.recvfrom(1024)
                srv.sendto(data.upper(), peer)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.waitpid(pid, os.WNOHANG)  # our child here: reap it, as the shim would
        except ChildProcessError:
            pass
        if proxy._state(pid) in ("", "Z"):
            return True
        time.sleep(0.05)
    return False


def test_proxy_forwards_ipv6_to_ipv4_and_ends_with_its_namespace(tmp_path):
    tcp_srv, tcp_port = _tcp_upper_server()
    udp_srv, udp_port = _udp_upper_server()
    watch = tmp_path / "netns"
    watch.write_text("")
    listeners = proxy.bind_listeners([
        {"hostIP": "::1", "hostPort": 0, "containerPort": tcp_port, "protocol": "tcp"},
        {"hostIP": "::1", "hostPort": 0, "containerPort": udp_port, "protocol": "udp"}])
    tcp_host = listeners[0][0].getsockname()[1]
    udp_host = listeners[1][0].getsockname()[1]
    rec = proxy.spawn(listeners, "127.0.0.1", str(watch))
    try:
        with socket.create_connection(("::1", tcp_host), timeout=10) as c:
            c.sendall(b"hello")
            assert c.recv(1024) == b"HELLO"
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
            u.settimeout(10)
            u.sendto(b"ping", ("::1", udp_host))
            assert u.recvfrom(1024)[0] == b"PING"
        # a stop() with another start time (a recycled PID) signals nothing
        proxy.stop({"pid": rec["pid"], "start": "1"})
        assert proxy._state(rec["pid"]) not in ("", "Z")
        # the watched path is replaced (a new namespace pinned there): the proxy ends by itself
        (tmp_path / "new").write_text("")
        os.replace(tmp_path / "new", watch)
        assert _wait_gone(rec["pid"])
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # our own connection's TIME_WAIT stays
            s.bind(("::1", tcp_host))  # its port is free again
    finally:
        proxy.stop(rec)
        tcp_srv.close()
        udp_srv.close()


def test_stop_ends_the_proxy_and_frees_its_port_even_with_a_client_connected(tmp_path):
    srv, srv_port = _tcp_upper_server()
    watch = tmp_path / "netns"
    watch.write_text("")
    listeners = proxy.bind_listeners([{"hostIP": "::1", "hostPort": 0, "containerPort": srv_port,
                                       "protocol": "tcp"}])
    port = listeners[0][0].getsockname()[1]
    rec = proxy.spawn(listeners, "127.0.0.1", str(watch))
    client = socket.create_connection(("::1", port), timeout=10)  # left open across the stop
    try:
        client.sendall(b"x")
        assert client.recv(16) == b"X"  # accepted and spliced: the proxy runs its handlers
        proxy.stop(rec)
        assert proxy._state(rec["pid"]) in ("", "Z")
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the hook binds
            s.bind(("::1", port))  # no closing socket of the proxy holds it
        proxy.stop(rec)  # twice is harmless
    finally:
        client.close()
        srv.close()
        _wait_gone(rec["pid"])


def test_taken_port_is_a_conflict_and_nothing_stays_bound():
    with socket.socket(socket.AF_INET6) as held:
        held.bind(("::1", 0))
        held.listen()
        port = held.getsockname()[1]
        free = socket.socket(socket.AF_INET6)
        free.bind(("::1", 0))
        other = free.getsockname()[1]
        free.close()
        with pytest.raises(Conflict, match=rf"port \[::1\]:{port}/tcp is already allocated"):
            proxy.bind_listeners([
                {"hostIP": "::1", "hostPort": other, "containerPort": 80, "protocol": "tcp"},
                {"hostIP": "::1", "hostPort": port, "containerPort": 80, "protocol": "tcp"}])
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", other))  # the first socket was closed on the failure
