"""Conflist generation and the network model read from any CNI config file."""
from __future__ import annotations

import hashlib
import json
from ipaddress import IPv4Address, IPv4Network

import pytest
from ctk_net import netconf
from ctk_net.netconf import Network, NetworkSpec
from ctk_shared.errors import InvalidArgument, NotFound, UsageError


def _spec(**kw):
    base = {"name": "app", "driver": "bridge", "subnet": IPv4Network("10.5.0.0/24"),
            "gateway": IPv4Address("10.5.0.1")}
    return NetworkSpec(**{**base, **kw})


def test_id_is_sha256_of_the_name():
    assert netconf.network_id("bridge") == hashlib.sha256(b"bridge").hexdigest()
    assert netconf.network_id("bridge").startswith("17f29b073143")  # the ID nerdctl shows for its `bridge`


def test_bridge_conflist_layout():
    c = netconf.generate(_spec(labels={"a": "b"}), data_root="/d", bridge_name="br-x")
    assert list(c) == ["cniVersion", "name", "ctkID", "ctkLabels", "plugins"]
    assert c["cniVersion"] == "1.0.0" and c["name"] == "app" and c["ctkID"] == netconf.network_id("app")
    assert c["ctkLabels"] == {"a": "b"}
    assert [p["type"] for p in c["plugins"]] == ["bridge", "portmap", "firewall", "tuning"]
    br = c["plugins"][0]
    assert br == {"type": "bridge", "bridge": "br-x", "isGateway": True, "ipMasq": True, "hairpinMode": True,
                  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.5.0.0/24", "gateway": "10.5.0.1"}]],
                           "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/d/cni/ipam"}}
    assert c["plugins"][1] == {"type": "portmap", "capabilities": {"portMappings": True}}
    assert c["plugins"][2] == {"type": "firewall", "ingressPolicy": "same-bridge"}
    assert c["plugins"][3] == {"type": "tuning"}


def test_internal_network_has_no_gateway_masquerade_or_portmap():
    c = netconf.generate(_spec(internal=True), data_root="/d", bridge_name="br-x")
    assert [p["type"] for p in c["plugins"]] == ["bridge", "firewall", "tuning"]
    br = c["plugins"][0]
    assert br["isGateway"] is False and br["ipMasq"] is False and "routes" not in br["ipam"]
    assert Network.from_dict(c, "/x/ctk-app.conflist").internal


def test_ip_range_becomes_host_local_range_bounds():
    c = netconf.generate(_spec(ip_range=IPv4Network("10.5.0.0/25")), data_root="/d", bridge_name="b")
    r = c["plugins"][0]["ipam"]["ranges"][0][0]
    assert (r["rangeStart"], r["rangeEnd"], r["ipRange"]) == ("10.5.0.1", "10.5.0.127", "10.5.0.0/25")
    assert netconf.dockercompat(Network.from_dict(c, "f"))["IPAM"]["Config"] == [
        {"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1", "IPRange": "10.5.0.0/25"}]


def test_bridge_options():
    opts = netconf.normalize_options("bridge", {"com.docker.network.driver.mtu": "1400", "ip-masq": "false"})
    c = netconf.generate(_spec(options=opts), data_root="/d", bridge_name="b")
    assert c["plugins"][0]["mtu"] == 1400 and c["plugins"][0]["ipMasq"] is False
    with pytest.raises(UsageError, match="unsupported option"):
        netconf.normalize_options("bridge", {"parent": "eth0"})
    with pytest.raises(UsageError, match="mtu"):
        netconf.normalize_options("bridge", {"mtu": "x"})


def test_device_names():
    assert netconf.bridge_device("bridge", "ctk0") == "ctk0"
    assert netconf.bridge_device("app", "ctk0") == "br-" + netconf.network_id("app")[:12]
    assert netconf.bridge_device("app", "ctk0", {"bridge-name": "mybr"}) == "mybr"


@pytest.mark.parametrize("driver,mode", [("macvlan", "bridge"), ("ipvlan", "l2")])
def test_macvlan_ipvlan_single_plugin(driver, mode):
    c = netconf.generate(_spec(driver=driver), data_root="/d", parent="eth9")
    assert len(c["plugins"]) == 1
    p = c["plugins"][0]
    assert (p["type"], p["master"], p["mode"], p["ipam"]["type"]) == (driver, "eth9", mode, "host-local")
    other_mode = "l3" if driver == "ipvlan" else "vepa"
    opts = netconf.normalize_options(driver, {"parent": "eth1", f"{driver}_mode": other_mode})
    p = netconf.generate(_spec(driver=driver, options=opts), data_root="/d", parent="eth9")["plugins"][0]
    assert p["master"] == "eth1" and p["mode"] in ("l3", "vepa")
    with pytest.raises(UsageError, match="parent"):
        netconf.generate(_spec(driver=driver), data_root="/d", parent="")


def test_check_plugins_names_the_missing_one(tmp_path):
    c = netconf.generate(_spec(), data_root="/d", bridge_name="b")
    assert netconf.required_plugins(c) == ["bridge", "host-local", "portmap", "firewall", "tuning"]
    for name in ("bridge", "host-local", "portmap", "tuning"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    with pytest.raises(NotFound, match=r"'firewall' not found in CNI_PATH /nope:" + str(tmp_path)) as e:
        netconf.check_plugins(c, f"/nope:{tmp_path}")
    assert "containernetworking-plugins" in e.value.hint and "--cni-path" in e.value.hint
    (tmp_path / "firewall").write_text("")
    (tmp_path / "firewall").chmod(0o755)
    netconf.check_plugins(c, f"/nope:{tmp_path}")


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 201])
def test_bad_names(name):
    with pytest.raises(UsageError):
        netconf.check_name(name)


def test_model_of_ctk_file():
    c = netconf.generate(_spec(labels={"k": "v"}), data_root="/d", bridge_name="br-1")
    n = Network.from_dict(json.loads(json.dumps(c)), "/etc/cni/net.d/ctk-app.conflist")
    assert n.managed and n.id == netconf.network_id("app") and n.labels == {"k": "v"}
    assert (n.subnets, n.gateway, n.bridge) == (["10.5.0.0/24"], "10.5.0.1", "br-1")
    assert n.plugin_types == ["bridge", "portmap", "firewall", "tuning"] and n.driver == "bridge"
    assert n.conflist == c
    # the same content under another file name is not ctk's to remove
    assert not Network.from_dict(c, "/etc/cni/net.d/10-app.conflist").managed


def test_model_of_foreign_files():
    conf = {"cniVersion": "0.4.0", "name": "legacy", "type": "bridge", "bridge": "cni0",
            "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}}
    n = Network.from_dict(conf, "/x/10-legacy.conf")
    assert not n.managed and n.id == netconf.network_id("legacy") and n.labels == {}
    assert (n.subnets, n.gateway, n.bridge, n.plugin_types) == (["10.22.0.0/16"], "10.22.0.1", "cni0", ["bridge"])
    nerd = {"cniVersion": "1.0.0", "name": "n", "nerdctlID": "abc", "nerdctlLabels": {"x": "y"},
            "plugins": [{"type": "ptp", "ipam": {"type": "static"}}]}
    n = Network.from_dict(nerd, "/x/nerdctl-n.conflist")
    assert (n.id, n.labels, n.subnets, n.gateway, n.bridge) == ("abc", {"x": "y"}, [], None, None)
    assert netconf.dockercompat(n)["IPAM"] == {"Driver": "static", "Config": []}


@pytest.mark.parametrize("doc,msg", [
    ([], "not a JSON object"), ({"plugins": []}, "no network name"), ({"name": "x"}, "neither"),
    ({"name": "x", "plugins": {}}, "not a list"),
])
def test_model_refuses_non_configs(doc, msg):
    with pytest.raises(InvalidArgument, match=msg):
        Network.from_dict(doc, "f")


def test_inspect_shapes():
    c = netconf.generate(_spec(), data_root="/d", bridge_name="b")
    n = Network.from_dict(c, "/x/ctk-app.conflist")
    d = netconf.dockercompat(n)
    assert d == {"Name": "app", "Id": n.id, "Driver": "bridge",
                 "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1"}]},
                 "Internal": False, "Labels": {}, "Containers": {}}
    assert netconf.native(n) == {"CNI": c, "ID": n.id, "Labels": {}, "File": "/x/ctk-app.conflist"}
