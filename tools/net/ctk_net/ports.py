"""Host ports for ``-p``: refuse one that is taken, pick a free one when none was given.

ctk-run passes the mappings it parsed from ``-p`` (one per port, ``hostPort`` 0 = pick one). A port counts
as taken when another attached container publishes it (the endpoint registry) or when a socket on the host
is bound to it (a test bind). Docker picks from the ephemeral range; ctk uses nerdctl's 49153-60999.

IPv4 and IPv6 host addresses are separate spaces (``0.0.0.0:80`` and ``[::]:80`` can both be published, as
Docker does). IPv4 mappings go to the portmap plugin; IPv6 ones to the userland proxy (:mod:`.proxy`).
"""
from __future__ import annotations

import errno
import random
import socket
from collections.abc import Callable, Iterable
from typing import Any

from ctk_shared.errors import Conflict, InvalidArgument

AUTO_RANGE = (49153, 60999)


def _key(m: dict[str, Any]) -> tuple[str, int]:
    return (str(m.get("protocol") or "tcp"), int(m.get("hostPort") or 0))


def is_ipv6(host_ip: str) -> bool:
    return ":" in (host_ip or "")


def _overlaps(ip_a: str, ip_b: str) -> bool:
    if is_ipv6(ip_a) != is_ipv6(ip_b):
        return False
    wild = ("", "0.0.0.0", "::")
    return ip_a in wild or ip_b in wild or ip_a == ip_b


def open_socket(host_ip: str, protocol: str) -> socket.socket:
    """An unbound socket of the family of ``host_ip`` for ``protocol``; IPv6 ones are IPv6-only, so that
    ``[::]:80`` never takes 0.0.0.0:80 too. A clear error when the host lacks the family or protocol."""
    family = socket.AF_INET6 if is_ipv6(host_ip) else socket.AF_INET
    kind, proto = {"udp": (socket.SOCK_DGRAM, 0), "sctp": (socket.SOCK_STREAM, socket.IPPROTO_SCTP)}.get(
        protocol, (socket.SOCK_STREAM, 0))
    try:
        s = socket.socket(family, kind, proto)
    except OSError as e:
        if protocol == "sctp":
            raise InvalidArgument("cannot publish an sctp port: this host's kernel has no SCTP support",
                                  hint="load it (modprobe sctp) on the host, or publish tcp/udp") from None
        if family == socket.AF_INET6:
            raise InvalidArgument(f"cannot publish on {host_ip}: this host has no IPv6 ({e.strerror})",
                                  hint="publish on an IPv4 address (0.0.0.0, 127.0.0.1) instead") from None
        raise
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if kind == socket.SOCK_STREAM:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
    return s


def bind_host_port(s: socket.socket, host_ip: str, port: int) -> bool:
    """Bind ``s`` to the host side of a mapping: False when the port is taken, a clear error when the
    address is not one of this host's."""
    wild = "::" if is_ipv6(host_ip) else "0.0.0.0"
    try:
        s.bind((host_ip or wild, port))
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"host IP {host_ip} of a published port is not an address of this host",
                                  hint="use 0.0.0.0, 127.0.0.1, ::1 or an address the host has") from None
        raise
    return True


def host_port_free(host_ip: str, port: int, protocol: str) -> bool:
    with open_socket(host_ip, protocol) as s:
        return bind_host_port(s, host_ip, port)


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
                shown = f"[{ip}]" if is_ipv6(ip) else ip or "0.0.0.0"
                raise Conflict(f"port {shown}:{port}/{proto} is already allocated",
                               hint="choose another host port, or -p CONTAINERPORT to get a free one")
        else:
            port = _pick(ip, proto, in_use)
        out.append({**m, "hostPort": port, "protocol": proto, "hostIP": ip or "0.0.0.0"})
    return out


def portmap_mappings(mappings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mappings the portmap plugin serves: IPv4 host addresses (the containers' networks are IPv4)."""
    return [m for m in mappings if not is_ipv6(str(m.get("hostIP") or ""))]


def proxied_mappings(mappings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mappings the userland proxy serves: IPv6 host addresses, forwarded to the container's IPv4 one."""
    return [m for m in mappings if is_ipv6(str(m.get("hostIP") or ""))]


def _pick(ip: str, proto: str, in_use: Callable[[str, int, str], bool]) -> int:
    lo, hi = AUTO_RANGE
    start = random.randint(lo, hi)
    for i in range(hi - lo + 1):
        port = lo + (start - lo + i) % (hi - lo + 1)
        if not in_use(ip, port, proto) and host_port_free(ip, port, proto):
            return port
    raise Conflict(f"no free host port left in {lo}-{hi}/{proto}")


def cni_mappings(mappings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The portmap plugin's ``runtimeConfig.portMappings`` entries (its IPv4 share of ``mappings``)."""
    return [{"hostPort": m["hostPort"], "containerPort": m["containerPort"], "protocol": m["protocol"],
             "hostIP": "" if m["hostIP"] == "0.0.0.0" else m["hostIP"]} for m in portmap_mappings(mappings)]
