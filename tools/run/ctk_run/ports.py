"""``-p``/``--publish`` as Docker parses it, and the PORTS column as Docker prints it.

A spec is ``[ip:][hostPort[-range]:]containerPort[-range][/tcp|udp]``. Each port becomes one mapping
``{"hostIP", "hostPort", "containerPort", "protocol"}``; ``hostPort`` 0 means "any free port", which
ctk-net's hook picks when the container starts.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from ctk_shared.errors import UsageError

PROTOCOLS = ("tcp", "udp")


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


def parse_publish(spec: str) -> list[dict[str, Any]]:
    body, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise UsageError(f"invalid protocol {proto!r} in -p {spec!r} (tcp or udp)")
    if body.startswith("["):  # [ipv6]:host:container
        raise UsageError(f"-p {spec!r}: IPv6 host addresses are not supported")
    parts = body.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise UsageError(f"invalid -p {spec!r}", hint="use [ip:][hostPort:]containerPort[/tcp|udp]")
    ip = parts[0] if len(parts) == 3 else ""
    host = parts[-2] if len(parts) >= 2 else ""
    if ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise UsageError(f"invalid host IP {ip!r} in -p {spec!r}") from None
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
        out.append(f"{ip}:{hp}->{cp}/{proto}" if g[0][1] else f"{cp}/{proto}")
    return ", ".join(out)
