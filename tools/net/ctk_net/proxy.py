"""The userland proxy for ports published on an IPv6 host address (``-p [::1]:8080:80``, ``-p [::]:80:80``).

ctk's networks are IPv4, and the kernel cannot NAT IPv6 to IPv4, so portmap cannot serve these mappings;
Docker's answer is its userland proxy (docker-proxy), and this is ctk's. The hook binds the listening
sockets itself, so a taken port or an address the host lacks fails the container's start with a clear
error, then hands them to one proxy process per container, started in a session of its own and never
waited for: it lives exactly as long as the container's attachment. It stops

* when the hook detaches the container (``postStop``): the hook kills it by PID, checked against the
  process's start time so that a recycled PID is never signalled;
* by itself when the container's pinned network namespace (ctk-net's bind mount) is gone or replaced, so
  a proxy whose hook never ran its ``postStop`` (containerd killed) does not outlive its container.

TCP connections are spliced both ways; UDP datagrams are forwarded per client address with an idle timeout
of 90 s (docker-proxy's). Both are bounded: at most :data:`MAX_CONNECTIONS` connections or flows at a time.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from ctk_shared.errors import Conflict

from .ports import bind_host_port, open_socket

MAX_CONNECTIONS = 1024
CONNECT_TIMEOUT = 10.0
UDP_IDLE = 90.0
WATCH_INTERVAL = 1.0
_BUF = 65536
_PIPE_CHUNK = 1 << 16  # a pipe's default capacity: a larger splice would only block on a full pipe
_SPLICE_F_MOVE = 1
_OPEN: set[socket.socket] = set()  # accepted connections, reset at exit so that no orphan holds a host port
_OPEN_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------ the hook's side


def bind_listeners(mappings: list[dict[str, Any]]) -> list[tuple[socket.socket, dict[str, Any]]]:
    """Bound (and, for TCP, listening) sockets for ``mappings``; Conflict when a port is taken. On any
    failure the sockets already made are closed."""
    out: list[tuple[socket.socket, dict[str, Any]]] = []
    try:
        for m in mappings:
            ip, port, proto = str(m["hostIP"]), int(m["hostPort"]), str(m["protocol"])
            if proto not in ("tcp", "udp"):
                raise Conflict(f"cannot publish {proto} on the IPv6 address {ip}: the userland proxy forwards "
                               "tcp and udp only")
            s = open_socket(ip, proto)
            out.append((s, m))
            if not bind_host_port(s, ip, port):
                raise Conflict(f"port [{ip}]:{port}/{proto} is already allocated",
                               hint="choose another host port, or -p [IP]::CONTAINERPORT to get a free one")
            if proto == "tcp":
                s.listen(128)
    except BaseException:
        for s, _ in out:
            s.close()
        raise
    return out


def spawn(listeners: list[tuple[socket.socket, dict[str, Any]]], target_ip: str, netns: str) -> dict[str, Any]:
    """Start the proxy process for ``listeners`` (closed here once handed over); its record for :func:`stop`."""
    fds = [s.fileno() for s, _ in listeners]
    args = [sys.executable, "-m", "ctk_net.proxy", "--target", target_ip, "--watch", netns]
    for s, m in listeners:
        args += ["--listen", f"{m['protocol']}:{s.fileno()}:{int(m['containerPort'])}"]
    try:
        p = subprocess.Popen(args, pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    finally:
        for s, _ in listeners:
            s.close()
    return {"pid": p.pid, "start": _start_time(p.pid)}


def stop(record: dict[str, Any] | None, timeout: float = 3.0) -> None:
    """End the proxy of ``record`` and wait until its sockets are closed (its ports free for a new start)."""
    if not isinstance(record, dict):
        return
    try:
        pid, start = int(record.get("pid") or 0), str(record.get("start") or "")
    except (TypeError, ValueError):
        return
    if pid <= 1 or not start or _start_time(pid) != start:
        return  # gone already, or the PID now belongs to another process
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if _start_time(pid) != start or _exited(pid):
                return
            time.sleep(0.02)


def _stat_fields(pid: int) -> list[str]:
    try:
        text = open(f"/proc/{pid}/stat").read()
    except OSError:
        return []
    return text[text.rfind(")") + 2:].split()  # the fields after the command name


def _start_time(pid: int) -> str:
    f = _stat_fields(pid)
    return f[19] if len(f) > 19 else ""  # field 22, starttime, in clock ticks since boot


def _state(pid: int) -> str:
    f = _stat_fields(pid)
    return f[0] if f else ""


def _exited(pid: int) -> bool:
    """The process and all its threads have exited, so its sockets are closed. A zombie main thread is not
    enough: it shows "Z" while the other threads (the proxy's pumps) are still exiting, and they hold the
    shared descriptor table, listening sockets included, until the last one is gone."""
    if _state(pid) != "Z":
        return False
    try:
        return len(os.listdir(f"/proc/{pid}/task")) <= 1
    except OSError:
        return True  # reaped meanwhile


# ------------------------------------------------------------------------------------ the proxy itself


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF, in the kernel (splice through a pipe) where it can."""
    try:
        if not _splice_pump(src, dst):
            while True:
                data = src.recv(_BUF)
                if not data:
                    break
                dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _splice_pump(src: socket.socket, dst: socket.socket) -> bool:
    """The zero-copy copy loop; False when splice is not available here (nothing was read then)."""
    splice = getattr(os, "splice", None)
    if splice is None:
        return False
    r, w = os.pipe()
    try:
        first = True
        while True:
            try:
                n = splice(src.fileno(), w, _PIPE_CHUNK, flags=_SPLICE_F_MOVE)
            except OSError:
                if first:
                    return False
                raise
            first = False
            if n == 0:
                return True
            while n:
                n -= splice(r, dst.fileno(), n, flags=_SPLICE_F_MOVE)
    finally:
        os.close(r)
        os.close(w)


def _serve_tcp(listener: socket.socket, target: tuple[str, int], slots: threading.BoundedSemaphore) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        if not slots.acquire(blocking=False):
            conn.close()  # bounded: one connection too many is refused, never queued without end
            continue
        threading.Thread(target=_splice, args=(conn, target, slots), daemon=True).start()


def _splice(conn: socket.socket, target: tuple[str, int], slots: threading.BoundedSemaphore) -> None:
    with _OPEN_LOCK:
        _OPEN.add(conn)
    try:
        with conn:
            try:
                upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
                back.start()
                _pump(conn, upstream)
                back.join()
    finally:
        with _OPEN_LOCK:
            _OPEN.discard(conn)
        slots.release()


def _reset_open_connections() -> None:
    """Close every client connection with a reset: a closing socket the process leaves behind (FIN_WAIT) would
    keep the host port taken for up to a minute after the container stopped."""
    with _OPEN_LOCK:
        conns = list(_OPEN)
    for c in conns:
        try:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        except OSError:
            pass


def _exit(*_: object) -> None:
    _reset_open_connections()
    os._exit(0)


def _serve_udp(listener: socket.socket, target: tuple[str, int], slots: threading.BoundedSemaphore) -> None:
    flows: dict[Any, socket.socket] = {}
    lock = threading.Lock()

    def replies(client: Any, up: socket.socket) -> None:
        try:
            while True:
                try:
                    data = up.recv(_BUF)
                except TimeoutError:
                    return  # idle: the flow ends
                listener.sendto(data, client)
        except OSError:
            return
        finally:
            with lock:
                flows.pop(client, None)
            up.close()
            slots.release()

    while True:
        try:
            data, client = listener.recvfrom(_BUF)
        except OSError:
            return
        with lock:
            up = flows.get(client)
        if up is None:
            if not slots.acquire(blocking=False):
                continue
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            up.settimeout(UDP_IDLE)
            try:
                up.connect(target)
            except OSError:
                up.close()
                slots.release()
                continue
            with lock:
                flows[client] = up
            threading.Thread(target=replies, args=(client, up), daemon=True).start()
        try:
            up.send(data)
        except OSError:
            pass


def _ns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ctk-net-proxy")
    ap.add_argument("--target", required=True)
    ap.add_argument("--watch", required=True)
    ap.add_argument("--listen", action="append", default=[])
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit)
    ns = _ns_id(a.watch)
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    for item in a.listen:
        proto, fd, port = item.split(":")
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        s = socket.socket(socket.AF_INET6, kind, 0, int(fd))
        serve = _serve_udp if proto == "udp" else _serve_tcp
        threading.Thread(target=serve, args=(s, (a.target, int(port)), slots), daemon=True).start()
    while ns is not None and _ns_id(a.watch) == ns:
        time.sleep(WATCH_INTERVAL)
    _exit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
