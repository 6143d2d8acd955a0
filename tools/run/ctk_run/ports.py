"""``-p``/``--publish`` as Docker parses it, and the PORTS column as Docker prints it.

A spec is ``[ip:][hostPort[-range]:]containerPort[-range][/tcp|udp|sctp]``, where an IPv6 ``ip`` is written in
brackets (``[::1]:8080:80``). Each port becomes one mapping ``{"hostIP", "hostPort", "containerPort",
"protocol"}``; ``hostPort`` 0 means "any free port", which ctk-net's hook picks when the container starts.
IPv6 host addresses are served by ctk-net's userland proxy (the containers' networks are IPv4); SCTP needs
the kernel's sctp support, checked before anything is made (:func:`check_host_support`).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from ctk_shared.errors import InvalidArgument, UsageError

PROTOCOLS = ("tcp", "udp", "sctp")
_FORM = "[ip:][hostPort:]containerPort[/tcp|udp|sctp], an IPv6 ip in brackets: [::1]:8080:80"


def _range(text: str, what: str, spec: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise UsageError(f"invalid {what} {text!r} in -p {spec!r}") from None
    if not (0 < a <= b <= 65535):
        raise UsageError(f"invalid {what} {text!r} in -p {spec!r} (1-65535)")
    return a, b


def _split_ip(body: str, spec: str) -> tuple[str, list[str]]:
    """The host IP (IPv6 without its brackets) and the remaining ``host:container`` parts."""
    if body.startswith("["):
        ip, sep, rest = body[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"invalid -p {spec!r}", hint="use " + _FORM)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise UsageError(f"invalid host IP {ip!r} in -p {spec!r}") from None
        if addr.version != 6:
            raise UsageError(f"invalid -p {spec!r}: brackets are for IPv6 addresses", hint=f"write {ip} bare")
        parts = rest[1:].split(":")
        if len(parts) != 2:
            raise UsageError(f"invalid -p {spec!r}", hint="use " + _FORM)
        return str(addr), parts
    parts = body.split(":")
    if len(parts) > 3:
        raise UsageError(f"invalid -p {spec!r}", hint="an IPv6 host address goes in brackets: [::1]:8080:80")
    ip = parts[0] if len(parts) == 3 else ""
    if ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise UsageError(f"invalid host IP {ip!r} in -p {spec!r}") from None
    return ip, parts[-2:] if len(parts) >= 2 else parts


def parse_publish(spec: str) -> list[dict[str, Any]]:
    body, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise UsageError(f"invalid protocol {proto!r} in -p {spec!r} (tcp, udp or sctp)")
    ip, parts = _split_ip(body, spec)
    if not parts[-1]:
        raise UsageError(f"invalid -p {spec!r}", hint="use " + _FORM)
    host = parts[-2] if len(parts) >= 2 else ""
    c_lo, c_hi = _range(parts[-1], "container port", spec)
    if host:
        h_lo, h_hi = _range(host, "host port", spec)
        if h_hi - h_lo != c_hi - c_lo and not (h_hi > h_lo and c_lo == c_hi):
            raise UsageError(f"-p {spec!r}: host and container port ranges differ in size")
    else:
        h_lo = h_hi = 0
    out = []
    for i, cport in enumerate(range(c_lo, c_hi + 1)):
        hport = 0 if not host else (h_lo + i if h_hi - h_lo == c_hi - c_lo else h_lo)
        out.append({"hostIP": ip, "hostPort": hport, "containerPort": cport, "protocol": proto})
    return out


def is_ipv6(host_ip: str) -> bool:
    return ":" in (host_ip or "")


def check_host_support(mappings: Iterable[dict[str, Any]]) -> None:
    """Refuse, before anything is pulled or made, what this host cannot publish at all: SCTP without the
    kernel's sctp support, IPv6 host addresses on a host without IPv6."""
    mappings = list(mappings)
    if any(m.get("protocol") == "sctp" for m in mappings) and not _can_socket("sctp"):
        raise InvalidArgument("cannot publish an sctp port: this host's kernel has no SCTP support",
                              hint="load it (modprobe sctp) on the host, or publish tcp/udp")
    if any(is_ipv6(m.get("hostIP") or "") for m in mappings) and not _can_socket("ipv6"):
        raise InvalidArgument("cannot publish on an IPv6 host address: this host has no IPv6",
                              hint="publish on an IPv4 address (0.0.0.0, 127.0.0.1) instead")


def _can_socket(kind: str) -> bool:
    """This host can open an SCTP (``sctp``) or an IPv6 (``ipv6``) stream socket; socket is imported only then."""
    import socket

    family, proto = (socket.AF_INET, socket.IPPROTO_SCTP) if kind == "sctp" else (socket.AF_INET6, 0)
    try:
        socket.socket(family, socket.SOCK_STREAM, proto).close()
    except OSError:
        return False
    return True


def host_address(ip: str, port: int | str) -> str:
    """``0.0.0.0:8080`` or ``[::1]:8080``, as Docker prints a published port's host side."""
    ip = ip or "0.0.0.0"
    return f"[{ip}]:{port}" if is_ipv6(ip) else f"{ip}:{port}"


def parse_all(specs: Iterable[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in specs:
        out += parse_publish(s)
    return out


def exposed(image_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Mappings for ``-P``: every port the image EXPOSEs, each to a free host port."""
    ports = (image_config.get("ExposedPorts") or {}) if isinstance(image_config, dict) else {}
    out = []
    for key in sorted(ports):
        port, _, proto = key.partition("/")
        if port.isdigit():
            out.append({"hostIP": "", "hostPort": 0, "containerPort": int(port), "protocol": proto or "tcp"})
    return out


def format_ports(mappings: Iterable[dict[str, Any]]) -> str:
    """Docker's PORTS column: ``0.0.0.0:8080->80/tcp, 127.0.0.1:9000-9001->9000-9001/tcp``."""
    items = sorted(((m.get("hostIP") or "0.0.0.0", int(m.get("hostPort") or 0), int(m["containerPort"]),
                     m.get("protocol") or "tcp") for m in mappings), key=lambda t: (t[3], t[0], t[2], t[1]))
    groups: list[list[tuple[str, int, int, str]]] = []
    for it in items:
        last = groups[-1][-1] if groups else None
        if last and last[0] == it[0] and last[3] == it[3] and it[1] == last[1] + 1 and it[2] == last[2] + 1:
            groups[-1].append(it)
        else:
            groups.append([it])
    out = []
    for g in groups:
        ip, proto = g[0][0], g[0][3]
        hp = str(g[0][1]) if len(g) == 1 else f"{g[0][1]}-{g[-1][1]}"
        cp = str(g[0][2]) if len(g) == 1 else f"{g[0][2]}-{g[-1][2]}"
        out.append(f"{host_address(ip, hp)}->{cp}/{proto}" if g[0][1] else f"{cp}/{proto}")
    return ", ".join(out)
