"""Subnets for new networks: parse and check the user's, or pick the first free /24.

A subnet counts as taken when it overlaps a network of another conflist, the default network's subnet
(reserved even before ``bridge`` is first used), or an address or route of the host. Allocation is a pure
function over those lists; :func:`host_networks` reads the host's side with pyroute2 (imported only there).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from ctk_shared.errors import Conflict, UsageError

AUTO_PREFIX = 24
_LAST = IPv4Network("255.255.255.0/24")
_PRIVATE = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))


@dataclass(frozen=True)
class Used:
    """A network that new subnets must not overlap, and who holds it (for the error message)."""

    network: IPv4Network
    owner: str
    device: str = ""  # the host interface it comes from, if any


def parse_subnet(text: str, what: str = "--subnet") -> IPv4Network:
    """An IPv4 CIDR; host bits are refused (``10.5.0.1/24`` is most likely a typo for a gateway)."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as e:
        raise UsageError(f"invalid {what} {text!r}: {e}", hint="give a CIDR like 10.5.0.0/24") from None
    if not isinstance(net, IPv4Network):
        raise UsageError(f"{what} {text}: only IPv4 subnets are supported")
    if net.prefixlen > 30:
        raise UsageError(f"{what} {text} is too small: a network needs at least a /30")
    return net


def parse_address(text: str, what: str) -> IPv4Address:
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        raise UsageError(f"invalid {what} {text!r}: not an IPv4 address") from None
    if not isinstance(addr, IPv4Address):
        raise UsageError(f"{what} {text}: only IPv4 is supported")
    return addr


def default_gateway(subnet: IPv4Network) -> IPv4Address:
    """The first host address (``.1`` of a /24), as Docker and nerdctl choose it."""
    return subnet.network_address + 1


def check_gateway(subnet: IPv4Network, gateway: IPv4Address) -> None:
    if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
        raise UsageError(f"gateway {gateway} is not a host address of subnet {subnet}")


def check_ip_range(subnet: IPv4Network, ip_range: IPv4Network) -> None:
    if not ip_range.subnet_of(subnet):
        raise UsageError(f"--ip-range {ip_range} is not inside subnet {subnet}")


def range_bounds(subnet: IPv4Network, ip_range: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    """host-local's ``rangeStart``/``rangeEnd`` for an ``--ip-range`` (never the subnet's network or broadcast)."""
    start, end = ip_range.network_address, ip_range.broadcast_address
    if start == subnet.network_address:
        start += 1
    if end == subnet.broadcast_address:
        end -= 1
    if start > end:
        raise UsageError(f"--ip-range {ip_range} leaves no usable address in subnet {subnet}")
    return start, end


def first_overlap(subnet: IPv4Network, used: Iterable[Used]) -> Used | None:
    for u in used:
        if subnet.overlaps(u.network):
            return u
    return None


def check_free(subnet: IPv4Network, used: Iterable[Used]) -> None:
    """Conflict naming the holder when an explicitly requested subnet overlaps one in use."""
    u = first_overlap(subnet, used)
    if u is not None:
        raise Conflict(f"subnet {subnet} overlaps {u.network} of {u.owner}",
                       hint="choose another --subnet, or leave it out to get a free one")


def auto_start(default_subnet: IPv4Network) -> IPv4Network:
    """Where the search begins: the /24 right after the default network's subnet (10.4.1.0/24 by default)."""
    step = 1 << (32 - AUTO_PREFIX)
    nxt = (int(default_subnet.broadcast_address) + 1 + step - 1) // step * step
    return IPv4Network((min(nxt, int(_LAST.network_address)), AUTO_PREFIX))


def _search_end(start: IPv4Network) -> int:
    """The last candidate: the end of the private block holding ``start`` (else of its /16)."""
    for block in _PRIVATE:
        if start.subnet_of(block):
            return int(block.broadcast_address) - (1 << (32 - AUTO_PREFIX)) + 1
    return int(start.supernet(new_prefix=16).broadcast_address) - (1 << (32 - AUTO_PREFIX)) + 1


def allocate(used: Iterable[Used], start: IPv4Network = IPv4Network("10.4.1.0/24")) -> IPv4Network:
    """The first /24 from ``start`` on (to the end of its private block) that overlaps nothing in ``used``."""
    taken = sorted({u.network for u in used}, key=lambda n: (int(n.network_address), n.prefixlen))
    step = 1 << (32 - AUTO_PREFIX)
    candidate = int(start.network_address) // step * step
    last = _search_end(start)
    while candidate <= last:
        net = IPv4Network((candidate, AUTO_PREFIX))
        blocker = next((t for t in taken if net.overlaps(t)), None)
        if blocker is None:
            return net
        # jump past the blocker in one step (a /16 route skips 256 candidates at once)
        candidate = max(candidate + step, (int(blocker.broadcast_address) + 1 + step - 1) // step * step)
    end = IPv4Network((last, AUTO_PREFIX))
    raise Conflict(f"no free /{AUTO_PREFIX} subnet left between {start} and {end}",
                   hint="remove unused networks (ctk-net prune), or give --subnet")


def host_networks() -> list[Used]:
    """The host's IPv4 interface subnets and routes (main table; the default route excluded)."""
    from pyroute2 import IPRoute

    out: list[Used] = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for msg in ipr.get_addr(family=2):
            addr = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
            if not addr:
                continue
            net = IPv4Network(f"{addr}/{msg['prefixlen']}", strict=False)
            if net.is_loopback:
                continue
            dev = str(names.get(msg["index"], msg["index"]))
            out.append(Used(net, f"host interface {dev}", dev))
        for msg in ipr.get_routes(family=2, table=254):
            dst_len = msg["dst_len"]
            dst = msg.get_attr("RTA_DST")
            if not dst or dst_len == 0:
                continue
            oif = msg.get_attr("RTA_OIF")
            dev = names.get(oif, "") if oif is not None else ""
            out.append(Used(IPv4Network(f"{dst}/{dst_len}", strict=False),
                            f"a host route{' via ' + dev if dev else ''}", dev))
    return out
