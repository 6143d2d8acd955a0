"""Sockets for tests: a server that accepts and never answers, and whether this host has an IPv6 loopback."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never reads nor answers (a registry hung after the handshake);
    yields its address as ``127.0.0.1:PORT``. Every connection is closed at the end."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{srv.getsockname()[1]}"
    finally:
        done.set()
        srv.close()
        for c in held:
            c.close()


def has_ipv6_loopback() -> bool:
    """``::1`` can be bound here (IPv6 is compiled in and not disabled on lo)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
