"""-p with IPv6 host addresses and sctp: parsing as Docker writes them, the PORTS column, and ctk-net's
port bookkeeping (IPv4 and IPv6 host addresses are separate spaces; IPv6 goes to the userland proxy)."""
from __future__ import annotations

import socket

import pytest
from ctk_net import ports as net_ports
from ctk_run.ports import check_host_support, format_ports, host_address, parse_publish
from ctk_shared.errors import InvalidArgument, UsageError


def m(hip, hp, cp, proto="tcp"):
    return {"hostIP": hip, "hostPort": hp, "containerPort": cp, "protocol": proto}


@pytest.mark.parametrize("spec,want", [
    ("[::]:80:80", [m("::", 80, 80)]),
    ("[::1]:8080:80", [m("::1", 8080, 80)]),
    ("[::1]::80/udp", [m("::1", 0, 80, "udp")]),
    ("[fd00:0::2]:9000-9001:90-91", [m("fd00::2", 9000, 90), m("fd00::2", 9001, 91)]),  # normalised
    ("8080:80/sctp", [m("", 8080, 80, "sctp")]),
    ("127.0.0.1:5000:5000/SCTP", [m("127.0.0.1", 5000, 5000, "sctp")]),
])
def test_parse_ipv6_and_sctp(spec, want):
    assert parse_publish(spec) == want


@pytest.mark.parametrize("bad,why", [
    ("::1:8080:80", "in brackets"),
    ("[::1]:80", "invalid -p"),
    ("[::1:8080:80", "invalid -p"),
    ("[127.0.0.1]:8080:80", "brackets are for IPv6"),
    ("[nope]:8080:80", "invalid host IP"),
    ("[::1]:8080:80:90", "invalid -p"),
    ("80/dccp", "tcp, udp or sctp"),
])
def test_bad_ipv6_specs_are_refused(bad, why):
    with pytest.raises(UsageError) as ei:
        parse_publish(bad)
    assert why in f"{ei.value.message} (hint: {ei.value.hint})"


def test_ports_column_and_port_lines_bracket_ipv6():
    assert format_ports([m("::1", 8080, 80), m("0.0.0.0", 8080, 80)]) == "0.0.0.0:8080->80/tcp, [::1]:8080->80/tcp"
    assert format_ports([m("::", 9000, 90), m("::", 9001, 91)]) == "[::]:9000-9001->90-91/tcp"
    assert host_address("::1", 8080) == "[::1]:8080" and host_address("", 80) == "0.0.0.0:80"


def test_host_support_is_checked_before_anything_is_made():
    check_host_support([m("", 80, 80)])  # plain tcp always passes
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        has_sctp = True
    except OSError:
        has_sctp = False
    if has_sctp:
        check_host_support([m("", 80, 80, "sctp")])
    else:
        with pytest.raises(InvalidArgument, match="no SCTP support"):
            check_host_support([m("", 80, 80, "sctp")])


def test_ipv4_and_ipv6_host_ports_are_separate_spaces():
    taken = [{"hostIP": "0.0.0.0", "hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
    assert not net_ports._overlaps("::", "0.0.0.0") and net_ports._overlaps("::", "::1")
    assert net_ports._overlaps("", "127.0.0.1") and not net_ports._overlaps("::1", "")
    # the same host port on [::1] is not taken by the IPv4 mapping
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        free6 = probe.getsockname()[1]
    got = net_ports.assign([m("::1", free6, 80)], taken + [{**taken[0], "hostPort": free6}])
    assert got == [m("::1", free6, 80)]
    assert net_ports.cni_mappings(got + taken) == [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp",
                                                    "hostIP": ""}]
    assert net_ports.proxied_mappings(got + taken) == got
