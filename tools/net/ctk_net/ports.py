"""Host ports for ``-p``: refuse one that is taken, pick a free one when none was given.

ctk-run passes the mappings it parsed from ``-p`` (one per port, ``hostPort`` 0 = pick one). A port counts
as taken when another attached container publishes it (the endpoint registry) or when a socket on the host
is bound to it (a test bind). Docker picks from the ephemeral range; ctk uses nerdctl's 49153-60999.
"""
from __future__ import annotations

import errno
import random
import socket
from collections.abc import Iterable
from typing import Any

from ctk_shared.errors import Conflict, InvalidArgument

AUTO_RANGE = (49153, 60999)


def _key(m: dict[str, Any]) -> tuple[str, int]:
    return (str(m.get("protocol") or "tcp"), int(m.get("hostPort") or 0))


def _overlaps(ip_a: str, ip_b: str) -> bool:
    wild = ("", "0.0.0.0")
    return ip_a in wild or ip_b in wild or ip_a == ip_b


def host_port_free(host_ip: str, port: int, protocol: str) -> bool:
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind((host_ip or "0.0.0.0", port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"host IP {host_ip} of a published port is not an address of this host",
                                      hint="use 0.0.0.0, 127.0.0.1 or an address the host has") from None
            raise
    return True


def assign(wanted: list[dict[str, Any]], taken: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mappings with every host port decided; Conflict when a requested one is in use."""
    taken = list(taken)
    out: list[dict[str, Any]] = []

    def in_use(ip: str, port: int, proto: str) -> bool:
        return any(_key(m) == (proto, port) and _overlaps(str(m.get("hostIP") or ""), ip) for m in taken + out)

    for m in wanted:
        proto = str(m.get("protocol") or "tcp")
        ip = str(m.get("hostIP") or "")
        port = int(m.get("hostPort") or 0)
        if port:
            if in_use(ip, port, proto) or not host_port_free(ip, port, proto):
                raise Conflict(f"port {ip or '0.0.0.0'}:{port}/{proto} is already allocated",
                               hint="choose another host port, or -p CONTAINERPORT to get a free one")
        else:
            port = _pick(ip, proto, in_use)
        out.append({**m, "hostPort": port, "protocol": proto, "hostIP": ip or "0.0.0.0"})
    return out


def _pick(ip: str, proto: str, in_use) -> int:  # type: ignore[no-untyped-def]
    lo, hi = AUTO_RANGE
    start = random.randint(lo, hi)
    for i in range(hi - lo + 1):
        port = lo + (start - lo + i) % (hi - lo + 1)
        if not in_use(ip, port, proto) and host_port_free(ip, port, proto):
            return port
    raise Conflict(f"no free host port left in {lo}-{hi}/{proto}")


def cni_mappings(mappings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The portmap plugin's ``runtimeConfig.portMappings`` entries."""
    return [{"hostPort": m["hostPort"], "containerPort": m["containerPort"], "protocol": m["protocol"],
             "hostIP": "" if m["hostIP"] == "0.0.0.0" else m["hostIP"]} for m in mappings]
