"""-p parsing, the PORTS column, and the /etc files ctk-run writes for networked containers."""
from __future__ import annotations

import pytest
from ctk_run.network import parse_add_host
from ctk_run.ports import exposed, format_ports, parse_publish
from ctk_shared.errors import UsageError
from ctk_shared.nethooks import hook_error, hosts_text, resolv_text


def m(hip, hp, cp, proto="tcp"):
    return {"hostIP": hip, "hostPort": hp, "containerPort": cp, "protocol": proto}


@pytest.mark.parametrize("spec,want", [
    ("80", [m("", 0, 80)]),
    ("8080:80", [m("", 8080, 80)]),
    ("127.0.0.1:8080:80/udp", [m("127.0.0.1", 8080, 80, "udp")]),
    ("127.0.0.1::80", [m("127.0.0.1", 0, 80)]),
    ("9000-9001:90-91", [m("", 9000, 90), m("", 9001, 91)]),
    ("7000-7010:80", [m("", 7000, 80)]),
])
def test_parse_publish(spec, want):
    assert parse_publish(spec) == want


@pytest.mark.parametrize("bad", ["", "80/dccp", "x:80", "1.2.3:80:80", "70000", "9000-9002:90-91", "a:b:c:d",
                                 "0:80"])
def test_parse_publish_rejects(bad):
    with pytest.raises(UsageError):
        parse_publish(bad)


def test_format_ports_merges_ranges_like_docker():
    ports = [m("0.0.0.0", 9001, 91), m("0.0.0.0", 9000, 90), m("127.0.0.1", 8080, 80, "udp"), m("0.0.0.0", 8080, 80)]
    assert format_ports(ports) == "0.0.0.0:8080->80/tcp, 0.0.0.0:9000-9001->90-91/tcp, 127.0.0.1:8080->80/udp"
    assert format_ports([]) == ""


def test_exposed_ports_for_publish_all():
    assert exposed({"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}) == [m("", 0, 53, "udp"), m("", 0, 80)]
    assert exposed({}) == []


def test_hosts_text_and_host_gateway():
    text = hosts_text("abc", ["db:10.0.0.9", "gw:host-gateway"], "10.4.0.1", networked=True)
    assert "10.0.0.9\tdb" in text and "10.4.0.1\tgw" in text and "127.0.1.1" not in text
    assert "127.0.1.1\tabc" in hosts_text("abc", [], "", networked=False)
    with pytest.raises(UsageError):
        hosts_text("abc", ["gw:host-gateway"], "", networked=False)
    with pytest.raises(UsageError):
        parse_add_host("nohost")
    with pytest.raises(UsageError):
        parse_add_host("h:not-an-ip")


def test_resolv_drops_loopback_servers_only_in_own_netns(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example.org\noptions ndots:2\n")
    own = resolv_text((), (), (), networked=True, host_file=str(host))
    assert own == "nameserver 192.0.2.1\nsearch example.org\noptions ndots:2\n"
    shared = resolv_text((), (), (), networked=False, host_file=str(host))
    assert "127.0.0.53" in shared
    flags = resolv_text(("9.9.9.9",), ("a.b",), ("rotate",), networked=True, host_file=str(host))
    assert flags == "nameserver 9.9.9.9\nsearch a.b\noptions rotate\n"


def test_hook_error_is_extracted_from_runc_message():
    msg = ("failed to create shim task: OCI runtime create failed: runc create failed: unable to start container "
           "process: error during container init: error running hook #0: error running hook: exit status 1, "
           "stdout: , stderr: ctk-net: error: port 0.0.0.0:8080/tcp is already allocated\\nctk-net: hint: choose "
           "another host port: unknown")
    assert hook_error(msg) == "port 0.0.0.0:8080/tcp is already allocated"
    assert hook_error("exec: \"nope\": executable file not found in $PATH") is None


def test_bridge_without_ctk_net_installed_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    from ctk_shared.nethooks import ctk_net_executable

    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError) as e:
        ctk_net_executable()
    assert "ctk-net" in e.value.message and "--network none|host" in (e.value.hint or "")
