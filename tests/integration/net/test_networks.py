"""ctk-net's network management against a real containerd and the real CNI plugins.

Every test gets a private conflist dir (NETCONFPATH), data root, default subnet (10.213.0.0/24) and default
bridge name (ctkt<random>), so nothing here touches /etc/cni/net.d or the host's bridges; every bridge
device a test makes (by running the plugin chain, or by hand) is deleted on teardown.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ctk_shared import labels as L
from ctk_shared.containerd import Container

from tests.support.cli import run_tool

pytestmark = pytest.mark.integration

CNI_PATH = "/usr/lib/cni"
DEFAULT_SUBNET = "10.213.0.0/24"


def _bridges(prefixes: tuple[str, ...]) -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {str(lk.get_attr("IFLA_IFNAME")) for lk in ipr.get_links()
                if str(lk.get_attr("IFLA_IFNAME")).startswith(prefixes)}


def _isolation_rules(dev: str) -> list[str]:
    """The firewall plugin's per-bridge isolation rules still in iptables for ``dev``."""
    out = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "ISOLATION" in line and (f" {dev} " in line)]


def _delete_link(name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            ipr.link("del", index=idx[0])


class NetEnv:
    def __init__(self, containerd, ctd, tmp_path: Path) -> None:
        self.address = containerd.address
        self.ctd = ctd
        self.netconf = tmp_path / "net.d"
        self.data_root = tmp_path / "data"
        self.bridge = f"ctkt{secrets.token_hex(2)}"
        self.tag = secrets.token_hex(3)  # network names unique to this test (containerd is shared)
        self.env = {"NETCONFPATH": str(self.netconf), "CTK_DATA_ROOT": str(self.data_root),
                    "CTK_BRIDGE_SUBNET": DEFAULT_SUBNET, "CTK_BRIDGE_NAME": self.bridge, "CNI_PATH": CNI_PATH}
        self.devices: set[str] = {self.bridge}

    def __call__(self, *args: str, env: dict[str, str] | None = None, **kw):
        return run_tool("ctk-net", *args, address=self.address, namespace=self.ctd.namespace,
                        env={**self.env, **(env or {})}, **kw)

    def name(self, base: str) -> str:
        return f"{base}-{self.tag}"

    def conflist(self, name: str) -> dict:
        return json.loads((self.netconf / f"ctk-{name}.conflist").read_text())

    def files(self) -> list[str]:
        return sorted(p.name for p in self.netconf.iterdir()) if self.netconf.exists() else []

    def cleanup(self) -> None:
        for f in self.netconf.glob("*.conflist") if self.netconf.exists() else []:
            try:
                dev = json.loads(f.read_text())["plugins"][0].get("bridge")
            except (ValueError, KeyError, IndexError):
                continue
            if dev:
                self.devices.add(dev)
        from ctk_net.store import delete_isolation_rules

        for dev in self.devices:
            _delete_link(dev)
            delete_isolation_rules(dev)


@pytest.fixture
def net(containerd, ctd, tmp_path):
    env = NetEnv(containerd, ctd, tmp_path)
    yield env
    env.cleanup()


# -- a tiny CNI runtime, to prove the generated conflists work with the real plugins -----------------------


class Sandbox:
    """A network namespace of the test's own, attached to and detached from a conflist with the plugins."""

    def __init__(self) -> None:
        from pyroute2 import netns

        self.name = f"ctkt-{uuid.uuid4().hex[:8]}"
        netns.create(self.name)
        self.path = f"/var/run/netns/{self.name}"
        self.results: list[tuple[dict, dict | None]] = []

    def _exec(self, command: str, conflist: dict, plugin: dict, prev: dict | None) -> dict | None:
        conf = {**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
        if prev is not None:
            conf["prevResult"] = prev
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": self.name, "CNI_NETNS": self.path, "CNI_IFNAME": "eth0",
               "CNI_PATH": CNI_PATH, "PATH": os.environ["PATH"]}
        p = subprocess.run([f"{CNI_PATH}/{plugin['type']}"], input=json.dumps(conf).encode(), env=env,
                           capture_output=True, timeout=60)
        assert p.returncode == 0, f"{plugin['type']} {command}: {p.stdout.decode()} {p.stderr.decode()}"
        return json.loads(p.stdout) if command == "ADD" else None

    def add(self, conflist: dict) -> dict:
        prev = None
        for plugin in conflist["plugins"]:
            prev = self._exec("ADD", conflist, plugin, prev)
        self.results.append((conflist, prev))
        assert prev is not None
        return prev

    def delete(self) -> None:
        for conflist, result in reversed(self.results):
            for plugin in reversed(conflist["plugins"]):
                self._exec("DEL", conflist, plugin, result)
        self.results.clear()

    def close(self) -> None:
        from pyroute2 import netns

        try:
            if self.results:
                self.delete()
        finally:
            netns.remove(self.name)


@pytest.fixture
def sandbox():
    boxes: list[Sandbox] = []

    def make() -> Sandbox:
        boxes.append(Sandbox())
        return boxes[-1]

    yield make
    for b in boxes:
        b.close()


# -- tests ---------------------------------------------------------------------------------------------------


def test_create_ls_inspect_rm(net):
    app = net.name("app")
    assert net("ls", "-q").lines == []
    r = net("create", "--subnet", "10.214.7.0/24", "--label", "team=web", app)
    assert r.code == 0, r.err
    nid = r.out.strip()
    assert len(nid) == 64 and net.files() == [".ctk-net.lock", f"ctk-{app}.conflist"]
    c = net.conflist(app)
    assert c["ctkID"] == nid and c["ctkLabels"] == {"team": "web"}
    assert [p["type"] for p in c["plugins"]] == ["bridge", "portmap", "firewall", "tuning"]
    assert c["plugins"][0]["bridge"] == f"br-{nid[:12]}"
    assert c["plugins"][0]["ipam"]["dataDir"] == str(net.data_root / "cni" / "ipam")

    rows = [json.loads(x) for x in net("ls").lines]  # not a TTY: JSON lines
    assert [(x["Name"], x["ID"][:12], x["File"]) for x in rows] == [
        (app, nid[:12], str(net.netconf / f"ctk-{app}.conflist")), ("host", "", ""), ("none", "", "")]
    assert net("ls", "-q").lines == [nid[:12]]
    assert net("ls", "--format", "{{.Name}}\\t{{.ShortID}}").lines[0] == f"{app}\t{nid[:12]}"
    table = net("ls", "--format", "table").lines
    assert table[0].split() == ["NETWORK", "ID", "NAME", "FILE"] and table[1].split()[:2] == [nid[:12], app]

    for ref in (app, nid, nid[:12]):
        r = net("inspect", ref)
        assert r.code == 0, r.err
        (doc,) = json.loads(r.out)
        assert doc == {"Name": app, "Id": nid, "Driver": "bridge",
                       "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.214.7.0/24", "Gateway": "10.214.7.1"}]},
                       "Internal": False, "Labels": {"team": "web"}, "Containers": {}}
    (native,) = json.loads(net("inspect", "--mode", "native", app).out)
    assert native == {"CNI": c, "ID": nid, "Labels": {"team": "web"},
                      "File": str(net.netconf / f"ctk-{app}.conflist")}
    assert net("inspect", "-f", "{{.Id}}", app).lines == [nid]

    r = net("rm", app)
    assert (r.code, r.out) == (0, f"{app}\n"), r.err
    assert net.files() == [".ctk-net.lock"] and net("ls", "-q").lines == []


def test_default_network_on_first_use(net):
    assert all(json.loads(x)["Name"] != "bridge" for x in net("ls").lines)
    r = net("ensure", "bridge")
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert rec == {"Name": "bridge", "ID": "17f29b073143d8cd97b5bbe492bdeffec1c5fee55cc1fe2112c8b9335f8b6121",
                   "File": str(net.netconf / "ctk-bridge.conflist"), "Subnets": [DEFAULT_SUBNET],
                   "Gateway": "10.213.0.1"}
    c = net.conflist("bridge")
    assert c["plugins"][0]["bridge"] == net.bridge and c["ctkLabels"] == {"ctk/default-network": "true"}
    (doc,) = json.loads(net("inspect", "bridge").out)
    assert doc["Labels"] == {"ctk/default-network": "true"} and doc["IPAM"]["Config"][0]["Subnet"] == DEFAULT_SUBNET
    assert "bridge" in [json.loads(x)["Name"] for x in net("ls").lines]
    r = net("rm", "bridge")
    assert r.code == 1 and "pre-defined" in r.err
    # concurrent first uses write one file, all agreeing
    shutil.rmtree(net.netconf)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: net("ensure", "bridge"), range(6)))
    assert all(r.code == 0 for r in results), [r.err for r in results]
    assert len({r.out for r in results}) == 1 and net.files() == [".ctk-net.lock", "ctk-bridge.conflist"]


def test_inspect_bridge_writes_the_default_network(net):
    (doc,) = json.loads(net("inspect", "bridge").out)
    assert doc["Name"] == "bridge" and doc["Driver"] == "bridge"


def test_auto_subnets_skip_used_ones(net):
    a, b, c = net.name("a"), net.name("b"), net.name("c")
    net.netconf.mkdir()
    ipam = {"type": "host-local", "ranges": [[{"subnet": "10.213.2.0/24"}]]}
    (net.netconf / "10-other.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "other-tool", "plugins": [{"type": "bridge", "bridge": "othbr0", "ipam": ipam}]}))
    assert net("create", "--subnet", "10.213.1.0/24", a).code == 0
    assert net("create", b).code == 0
    assert net("create", c).code == 0
    got = {n: net.conflist(n)["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] for n in (b, c)}
    assert got == {b: "10.213.3.0/24", c: "10.213.4.0/24"}
    names = [json.loads(x)["Name"] for x in net("ls").lines]
    assert "other-tool" in names  # other tools' conflists are listed
    r = net("rm", "other-tool")
    assert r.code == 1 and "not created by ctk" in r.err


def test_auto_subnet_skips_host_routes(net):
    """A subnet on a host interface (a bridge the test adds) is never handed out."""
    from pyroute2 import IPRoute

    dummy = f"ctkd{secrets.token_hex(2)}"
    net.devices.add(dummy)
    with IPRoute() as ipr:
        ipr.link("add", ifname=dummy, kind="bridge")
        idx = ipr.link_lookup(ifname=dummy)[0]
        ipr.addr("add", index=idx, address="10.213.1.1", prefixlen=24)
        ipr.link("set", index=idx, state="up")
    r = net("create", net.name("a"))
    assert r.code == 0, r.err
    assert net.conflist(net.name("a"))["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "10.213.2.0/24"
    r = net("create", "--subnet", "10.213.1.0/25", net.name("b"))
    assert r.code == 1 and f"host interface {dummy}" in r.err


def test_overlapping_subnet_refused(net):
    a = net.name("a")
    assert net("create", "--subnet", "10.214.0.0/16", a).code == 0
    r = net("create", "--subnet", "10.214.9.0/24", net.name("b"))
    assert r.code == 1 and r.out == ""
    assert r.err.splitlines() == [
        f"ctk-net: error: subnet 10.214.9.0/24 overlaps 10.214.0.0/16 of network {a} "
        f"({net.netconf / f'ctk-{a}.conflist'})",
        "ctk-net: hint: choose another --subnet, or leave it out to get a free one"]
    r = net("create", "--subnet", "10.213.0.128/25", net.name("c"))
    assert r.code == 1 and "the default network bridge" in r.err
    r = net("create", a)
    assert r.code == 1 and f"network with name {a} already exists" in r.err
    r = net("create", "--subnet", "10.215.0.1/24", net.name("d"))
    assert r.code == 2 and "host bits set" in r.err
    assert net.files() == [".ctk-net.lock", f"ctk-{a}.conflist"]


def test_unknown_network(net):
    hint = "ctk-net ls lists the networks; ctk-net create NAME makes one"
    for args in (["inspect", "nope"], ["rm", "nope"]):
        r = net(*args)
        assert r.code == 3 and r.out == "", args  # not found
        assert r.err.splitlines() == ["ctk-net: error: no such network: 'nope'", f"ctk-net: hint: {hint}"]
    # ensure answers ctk-run and ctk-build: the error is a JSON record on stdout, its class kept
    r = net("ensure", "nope")
    assert r.code == 3 and r.err == ""
    assert json.loads(r.out) == {"Error": {"kind": "NotFound", "message": "no such network: 'nope'", "hint": hint}}


def test_missing_cni_plugin(net, tmp_path):
    partial = tmp_path / "cni"
    partial.mkdir()
    for p in ("bridge", "host-local", "portmap", "tuning"):
        os.symlink(f"{CNI_PATH}/{p}", partial / p)
    for how in ({"env": {"CNI_PATH": str(partial)}}, {"flag": ["--cni-path", str(partial)]}):
        args = [*how.get("flag", []), "create", net.name("a")]
        r = net(*args, env=how.get("env"))
        assert r.code == 3 and r.out == ""  # not found (a plugin)
        assert r.err.splitlines() == [
            f"ctk-net: error: CNI plugin 'firewall' not found in CNI_PATH {partial}",
            "ctk-net: hint: apt-get install containernetworking-plugins, or point --cni-path (CNI_PATH) at the plugins"]
    r = net("ensure", "bridge", env={"CNI_PATH": str(partial)})
    assert r.code == 3 and "'firewall' not found" in json.loads(r.out)["Error"]["message"]
    assert net.files() == [".ctk-net.lock"]


def test_rm_refused_while_a_container_uses_it(net):
    app, other = net.name("app"), net.name("other")
    assert net("create", app).code == 0 and net("create", other).code == 0
    # the user is in another namespace than the CLI's: every namespace counts
    ns2 = net.ctd.with_namespace(f"{net.ctd.namespace}-2")
    ns2.namespaces.create(ns2.namespace)
    try:
        ns2.containers.create(Container(id="user1", image="busybox", spec=b"{}",
                                        labels={L.NETWORKS: json.dumps(["bridge", app]), "ctk/name": "web"}))
        net.ctd.containers.create(Container(id="junk", image="x", spec=b"{}", labels={L.NETWORKS: "not json"}))
        try:
            r = net("rm", app, other)
            assert r.code == 1 and r.out == f"{other}\n"
            assert f"ctk-net: error: network {app} is in use by container(s) {ns2.namespace}/web" in r.err
            assert f"ctk-{app}.conflist" in net.files()
            r = net("prune", "-f")
            assert r.code == 0 and r.out == ""
            assert f"ctk-{app}.conflist" in net.files()
        finally:
            ns2.containers.delete("user1")
            net.ctd.containers.delete("junk")
    finally:
        ns2.namespaces.delete(ns2.namespace)
    assert net("rm", app).code == 0


def test_rm_fails_without_containerd(net):
    app = net.name("app")
    assert net("create", app).code == 0
    r = run_tool("ctk-net", "rm", app, address="/tmp/nonexistent.sock", namespace="x", env=net.env)
    assert r.code != 0 and "containerd is not running at /tmp/nonexistent.sock" in r.err
    assert f"ctk-{app}.conflist" in net.files()


def test_prune(net):
    a, b = net.name("a"), net.name("b")
    assert net("ensure", "bridge").code == 0
    assert net("create", a).code == 0 and net("create", b).code == 0
    r = net("prune", input="n\n")  # as every ctk prune (and Docker's): "no" keeps everything and is no error
    assert r.code == 0 and r.out == "" and "Are you sure you want to continue? [y/N]" in r.err
    assert len(net.files()) == 4
    r = net("prune", input="")  # no answer at all (a script without -f): a usage error with the fix
    assert r.code == 2 and "add -f (--force)" in r.err and len(net.files()) == 4
    r = net("prune", input="y\n")
    assert r.code == 0 and sorted(r.lines) == sorted([a, b])
    assert net.files() == [".ctk-net.lock", "ctk-bridge.conflist"]
    assert net("prune", "-f").out == ""


def test_macvlan_and_internal(net):
    mv, iv, internal = net.name("mv"), net.name("iv"), net.name("int")
    assert net("create", "-d", "macvlan", "--subnet", "192.0.2.0/24", mv).code == 0
    p = net.conflist(mv)["plugins"]
    assert len(p) == 1 and (p[0]["type"], p[0]["master"], p[0]["mode"]) == ("macvlan", _default_iface(), "bridge")
    assert net("create", "-d", "ipvlan", "-o", "parent=lo", "-o", "mode=l3", "--subnet", "10.216.0.0/24", iv).code == 0
    p = net.conflist(iv)["plugins"]
    assert (p[0]["type"], p[0]["master"], p[0]["mode"]) == ("ipvlan", "lo", "l3")
    r = net("create", "-o", "bogus=1", net.name("x"))
    assert r.code == 2 and "unsupported option 'bogus'" in r.err
    assert net("create", "--internal", internal).code == 0
    (doc,) = json.loads(net("inspect", internal).out)
    assert doc["Internal"] is True
    assert [x["type"] for x in net.conflist(internal)["plugins"]] == ["bridge", "firewall", "tuning"]


def _default_iface() -> str:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        oif = ipr.get_default_routes(family=2)[0].get_attr("RTA_OIF")
        return ipr.get_links(oif)[0].get_attr("IFLA_IFNAME")


def test_generated_chain_runs_with_the_real_plugins(net, sandbox):
    """The whole chain, firewall's ingressPolicy included, is accepted by the installed plugins (1.1.1);
    rm then deletes the bridge device the plugin made and the IPAM state."""
    app = net.name("app")
    nid = net("create", "--subnet", "10.217.0.0/24", app).out.strip()
    dev = f"br-{nid[:12]}"
    box = sandbox()
    result = box.add(net.conflist(app))
    assert result["ips"][0]["address"].startswith("10.217.0.")
    assert dev in _bridges(("br-",))
    assert (net.data_root / "cni" / "ipam" / app).is_dir()
    box.delete()
    assert dev in _bridges(("br-",))  # the bridge plugin leaves its device behind on DEL
    r = net("rm", app)
    assert r.code == 0, r.err
    assert dev not in _bridges(("br-",)) and not (net.data_root / "cni" / "ipam" / app).exists()
    assert _isolation_rules(dev) == []  # the firewall plugin leaves these on DEL; rm takes them away


def test_rm_deletes_an_idle_bridge_device(net):
    from pyroute2 import IPRoute

    app = net.name("app")
    nid = net("create", app).out.strip()
    dev = f"br-{nid[:12]}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=dev, kind="bridge")
    ipam = net.data_root / "cni" / "ipam" / app
    ipam.mkdir(parents=True)
    (ipam / "last_reserved_ip.0").write_text("10.213.1.2")
    assert net("rm", app).code == 0
    assert dev not in _bridges(("br-",)) and not ipam.exists()


def test_200_create_rm_cycles_leave_nothing(net, sandbox):
    names = [net.name(f"c{i}") for i in range(200)]
    before = _bridges(("br-",))

    attached: list[str] = []

    def cycle(i: int) -> str:
        n = names[i]
        r = net("create", n)
        if r.code != 0:
            return f"create {n}: {r.err}"
        if i % 40 == 0:  # now and then, really attach and detach a namespace (makes the bridge and a lease)
            box = Sandbox()
            attached.append(json.loads((net.netconf / f"ctk-{n}.conflist").read_text())["plugins"][0]["bridge"])
            try:
                box.add(json.loads((net.netconf / f"ctk-{n}.conflist").read_text()))
                box.delete()
            finally:
                box.close()
        r = net("rm", n)
        return "" if r.code == 0 and r.out == f"{n}\n" else f"rm {n}: {r.err}"

    with ThreadPoolExecutor(4) as pool:
        errors = [e for e in pool.map(cycle, range(200)) if e]
    assert errors == []
    assert net.files() == [".ctk-net.lock"]
    assert _bridges(("br-",)) - before == set()
    assert attached and [r for dev in attached for r in _isolation_rules(dev)] == []
    ipam = net.data_root / "cni" / "ipam"
    assert not ipam.exists() or list(ipam.iterdir()) == []
