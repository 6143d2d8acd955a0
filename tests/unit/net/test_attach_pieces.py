"""The pure parts of attaching: CNI plugin configs, host-port assignment, generated /etc/hosts blocks."""
from __future__ import annotations

import socket

import pytest
from ctk_net.cni import Runtime, _error_text, first_ipv4
from ctk_net.hosts import BEGIN, END, entries_for, rewrite
from ctk_net.ports import assign, cni_mappings
from ctk_shared.errors import Conflict


def test_plugin_conf_gets_name_version_prev_result_and_only_declared_capabilities():
    conflist = {"cniVersion": "1.0.0", "name": "n", "plugins": []}
    pm = {"type": "portmap", "capabilities": {"portMappings": True}}
    conf = Runtime._plugin_conf(conflist, pm, {"ips": []}, {"portMappings": [1], "bandwidth": {}})
    assert conf == {**pm, "name": "n", "cniVersion": "1.0.0", "prevResult": {"ips": []},
                    "runtimeConfig": {"portMappings": [1]}}
    plain = Runtime._plugin_conf(conflist, {"type": "tuning"}, None, {"portMappings": [1]})
    assert "runtimeConfig" not in plain and "prevResult" not in plain


def test_cni_error_text():
    assert _error_text(b'{"code":7,"msg":"bad","details":"why"}', b"") == "bad (why)"
    assert _error_text(b"", b"panic\nlast line") == "last line"


def test_first_ipv4_of_the_sandbox_interface():
    result = {"interfaces": [{"name": "ctk0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/x", "mac": "aa"}],
              "ips": [{"address": "fd00::2/64", "interface": 2}, {"address": "10.4.0.2/24", "gateway": "10.4.0.1",
                                                                    "interface": 2}]}
    assert first_ipv4(result, "eth0") == {"address": "10.4.0.2/24", "gateway": "10.4.0.1", "mac": "aa"}


def _m(hp, cp=80, ip="", proto="tcp"):
    return {"hostIP": ip, "hostPort": hp, "containerPort": cp, "protocol": proto}


def test_assign_refuses_ports_other_containers_hold():
    with pytest.raises(Conflict, match="already allocated"):
        assign([_m(40123)], [_m(40123, ip="0.0.0.0")])
    # another address or protocol does not clash
    got = assign([_m(40123, ip="127.0.0.1")], [_m(40123, ip="127.0.0.2")])
    assert got[0]["hostPort"] == 40123
    assert assign([_m(40123, proto="udp")], [_m(40123)])[0]["protocol"] == "udp"


def test_assign_refuses_a_port_a_host_socket_holds():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        with pytest.raises(Conflict):
            assign([_m(s.getsockname()[1])], [])


def test_assign_picks_distinct_free_ports():
    got = assign([_m(0, 80), _m(0, 81)], [])
    ports = [g["hostPort"] for g in got]
    assert len(set(ports)) == 2 and all(49153 <= p <= 60999 for p in ports)
    assert cni_mappings(got)[0] == {"hostPort": ports[0], "containerPort": 80, "protocol": "tcp", "hostIP": ""}


def test_hosts_entries_list_self_then_peers_on_shared_networks_only():
    me = {"namespace": "ns", "id": "a", "name": "web", "hostname": "h-a", "networks": {"app": {"address": "10.0.0.2/24"}}}
    db = {"namespace": "ns", "id": "b", "name": "db", "hostname": "h-b", "networks": {"app": {"address": "10.0.0.3/24"}}}
    other = {"namespace": "ns", "id": "c", "name": "x", "hostname": "h-c", "networks": {"o": {"address": "10.1.0.3/24"}}}
    foreign = {"namespace": "ns2", "id": "d", "name": "y", "hostname": "h-d", "networks": {"app": {"address": "10.0.0.9/24"}}}
    assert entries_for(me, [me, db, other, foreign]) == ["10.0.0.2\th-a web", "10.0.0.3\th-b db"]


def test_rewrite_keeps_user_lines_and_edits_in_place(tmp_path):
    p = tmp_path / "hosts"
    p.write_text("127.0.0.1\tlocalhost\n")
    inode = p.stat().st_ino
    rewrite(str(p), ["10.0.0.2\tweb"])
    with open(p, "a") as f:
        f.write("192.0.2.7\tmine\n")
    rewrite(str(p), ["10.0.0.3\tdb"])
    text = p.read_text()
    assert text == f"127.0.0.1\tlocalhost\n192.0.2.7\tmine\n{BEGIN}\n10.0.0.3\tdb\n{END}\n"
    assert p.stat().st_ino == inode
    rewrite(str(p), [])
    assert BEGIN not in p.read_text()
    rewrite(str(tmp_path / "gone"), ["x"])  # a removed container: nothing to do
