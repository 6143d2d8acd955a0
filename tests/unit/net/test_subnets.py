"""Subnet parsing and allocation: pure functions over injected "in use" lists."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from ctk_net import subnets
from ctk_net.subnets import Used
from ctk_shared.errors import Conflict, UsageError

N = IPv4Network


def used(*cidrs):
    return [Used(N(c), f"holder of {c}") for c in cidrs]


def test_first_free_from_10_4_1():
    assert subnets.allocate([]) == N("10.4.1.0/24")
    assert subnets.allocate(used("10.4.1.0/24", "10.4.2.0/24")) == N("10.4.3.0/24")


def test_skips_partial_and_wide_overlaps():
    assert subnets.allocate(used("10.4.1.128/25", "10.4.2.7/32")) == N("10.4.3.0/24")
    assert subnets.allocate(used("10.4.0.0/16")) == N("10.5.0.0/24")


def test_exhausted_block_is_a_conflict():
    with pytest.raises(Conflict, match="no free /24"):
        subnets.allocate(used("10.0.0.0/8"))
    with pytest.raises(Conflict):
        subnets.allocate(used("192.168.0.0/16"), N("192.168.5.0/24"))


def test_start_follows_the_default_subnet():
    assert subnets.auto_start(N("10.4.0.0/24")) == N("10.4.1.0/24")
    assert subnets.auto_start(N("10.213.0.0/24")) == N("10.213.1.0/24")
    assert subnets.auto_start(N("10.4.0.0/25")) == N("10.4.1.0/24")
    assert subnets.auto_start(N("10.88.0.0/16")) == N("10.89.0.0/24")


def test_explicit_overlap_names_the_holder():
    subnets.check_free(N("10.5.0.0/24"), used("10.4.0.0/24"))
    with pytest.raises(Conflict, match=r"10.5.0.128/25 overlaps 10.5.0.0/24 of holder of 10.5.0.0/24"):
        subnets.check_free(N("10.5.0.128/25"), used("10.4.0.0/24", "10.5.0.0/24"))


@pytest.mark.parametrize("text", ["10.5.0.1/24", "10.5.0.0", "x", "fd00::/64", "10.5.0.0/31"])
def test_bad_subnets(text):
    with pytest.raises(UsageError):
        subnets.parse_subnet(text)


def test_gateway_and_range_checks():
    net = N("10.5.0.0/24")
    assert subnets.default_gateway(net) == IPv4Address("10.5.0.1")
    subnets.check_gateway(net, IPv4Address("10.5.0.254"))
    for bad in ("10.5.0.0", "10.5.0.255", "10.6.0.1"):
        with pytest.raises(UsageError):
            subnets.check_gateway(net, IPv4Address(bad))
    with pytest.raises(UsageError, match="not inside"):
        subnets.check_ip_range(net, N("10.5.1.0/25"))
    assert subnets.range_bounds(net, N("10.5.0.64/26")) == (IPv4Address("10.5.0.64"), IPv4Address("10.5.0.127"))
    assert subnets.range_bounds(net, net) == (IPv4Address("10.5.0.1"), IPv4Address("10.5.0.254"))


def test_host_networks_reads_this_host():
    found = subnets.host_networks()
    assert all(isinstance(u.network, IPv4Network) and not u.network.is_loopback for u in found)
