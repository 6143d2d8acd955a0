"""The conflist directory: lookup by name / ID prefix, foreign and broken files, create and the default network.

The host's addresses and routes are injected (``subnets.host_networks`` patched), so nothing here reads or
changes the host's network; the CNI plugins are empty executables in a temporary CNI_PATH.
"""
from __future__ import annotations

import json
import threading
from ipaddress import IPv4Network

import pytest
from ctk_net import netconf, subnets
from ctk_net.store import NetworkStore
from ctk_shared.config import GlobalOptions
from ctk_shared.errors import AlreadyExists, Conflict, NotFound, UsageError

PLUGINS = ("bridge", "host-local", "portmap", "firewall", "tuning", "macvlan", "ipvlan")


@pytest.fixture
def host(monkeypatch):
    routes: list[subnets.Used] = []
    monkeypatch.setattr(subnets, "host_networks", lambda: list(routes))
    return routes


@pytest.fixture
def store(tmp_path, host):
    cni = tmp_path / "cni"
    cni.mkdir()
    for p in PLUGINS:
        (cni / p).write_text("#!/bin/sh\nexit 1\n")
        (cni / p).chmod(0o755)
    gopts = GlobalOptions(cni_path=str(cni), cni_netconfpath=str(tmp_path / "net.d"), data_root=str(tmp_path / "d"),
                          bridge_subnet="10.213.0.0/24", bridge_name="ctkt0")
    warnings: list[str] = []
    s = NetworkStore(gopts, warn=warnings.append)
    s.warnings = warnings  # type: ignore[attr-defined]
    return s


def test_empty_and_missing_directory(store):
    assert store.list() == []
    with pytest.raises(NotFound, match="no such network: 'x'") as e:
        store.get("x")
    assert "ctk-net ls" in e.value.hint and "ctk-net create NAME" in e.value.hint


def test_create_get_by_name_id_and_prefix(store):
    a = store.create("app")
    b = store.create("web", subnet="10.7.0.0/24", labels={"tier": "front"})
    assert a.file.endswith("net.d/ctk-app.conflist") and a.managed
    assert a.subnets == ["10.213.1.0/24"] and a.gateway == "10.213.1.1"  # first /24 after the default's
    assert b.subnets == ["10.7.0.0/24"] and b.labels == {"tier": "front"}
    assert store.get("app") == a and store.get(a.id) == a and store.get(a.id[:12]) == a and store.get(b.id[:3]) == b
    assert json.loads(open(a.file).read()) == a.conflist


def test_ambiguous_prefix_and_name_before_id(store):
    store.dir.mkdir(parents=True)
    for name, nid in (("one", "abc1" + "0" * 60), ("two", "abc2" + "0" * 60), ("abc1", "f" * 64)):
        (store.dir / f"10-{name}.conflist").write_text(json.dumps({"name": name, "nerdctlID": nid, "plugins": []}))
    with pytest.raises(UsageError, match="ambiguous: one, two"):
        store.get("abc")
    assert store.get("abc2").name == "two"
    assert store.get("abc1").name == "abc1"  # a name wins over an ID prefix, as in Docker


def test_duplicate_and_reserved_names(store):
    store.create("app")
    with pytest.raises(AlreadyExists, match="network with name app already exists"):
        store.create("app")
    for name in ("bridge", "host", "none"):
        with pytest.raises(Conflict, match="pre-defined"):
            store.create(name)
    with pytest.raises(UsageError, match="reserved"):
        store.create("x", labels={"ctk/default-network": "true"})


def test_auto_allocation_skips_conflists_host_and_default(store, host):
    host.append(subnets.Used(IPv4Network("10.213.2.0/24"), "host interface eth9", "eth9"))
    store.create("a", subnet="10.213.1.0/24")
    assert store.create("b").subnets == ["10.213.3.0/24"]
    assert store.create("c").subnets == ["10.213.4.0/24"]


def test_explicit_overlap_refused(store, host):
    store.create("a", subnet="10.7.0.0/16")
    with pytest.raises(Conflict, match=r"10.7.5.0/24 overlaps 10.7.0.0/16 of network a"):
        store.create("b", subnet="10.7.5.0/24")
    with pytest.raises(Conflict, match="default network bridge"):
        store.create("b", subnet="10.213.0.0/25")  # reserved even before `bridge` exists
    host.append(subnets.Used(IPv4Network("192.0.2.0/24"), "host interface eth0", "eth0"))
    with pytest.raises(Conflict, match="host interface eth0"):
        store.create("b", subnet="192.0.2.0/24")
    # macvlan shares the parent's LAN on purpose: the host's own subnet is fine there
    assert store.create("lan", driver="macvlan", subnet="192.0.2.0/24", options={"parent": "eth0"}).subnets == [
        "192.0.2.0/24"]
    assert not any(f.name.startswith(".ctk-b") for f in (store.dir).iterdir())


def test_gateway_and_range_validation(store):
    n = store.create("a", subnet="10.8.0.0/24", gateway="10.8.0.254", ip_range="10.8.0.128/25")
    assert n.gateway == "10.8.0.254"
    with pytest.raises(UsageError, match="not a host address"):
        store.create("b", subnet="10.9.0.0/24", gateway="10.10.0.1")
    with pytest.raises(UsageError, match="need --subnet"):
        store.create("b", gateway="10.10.0.1")
    assert store.list() == [n]


def test_missing_plugin_writes_nothing(store):
    (store.dir.parent / "cni" / "firewall").unlink()
    with pytest.raises(NotFound, match="'firewall' not found in CNI_PATH"):
        store.create("app")
    with pytest.raises(NotFound, match="'firewall'"):
        store.ensure("bridge")
    assert store.list() == []


def test_ensure_writes_the_default_network_once(store):
    with pytest.raises(NotFound):
        store.get("bridge")
    n = store.ensure("bridge")
    assert n.file.endswith("ctk-bridge.conflist") and n.labels == {"ctk/default-network": "true"}
    assert (n.subnets, n.gateway, n.bridge) == (["10.213.0.0/24"], "10.213.0.1", "ctkt0")
    assert n.id == netconf.network_id("bridge")
    assert store.ensure("bridge") == n and store.get("bridge") == n
    with pytest.raises(NotFound):
        store.ensure("other")


def test_default_subnet_with_gateway_address(store):
    store.gopts = store.gopts.__class__(**{**store.gopts.__dict__, "bridge_subnet": "10.214.0.254/24"})
    n = store.ensure("bridge")
    assert (n.subnets, n.gateway) == (["10.214.0.0/24"], "10.214.0.254")


def test_concurrent_ensure_and_create(store):
    errors: list[BaseException] = []

    def go(i):
        try:
            store.ensure("bridge")
            store.create(f"n{i}")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    nets = store.list()
    assert len(nets) == 9
    allocated = [s for n in nets for s in n.subnets]
    assert len(set(allocated)) == 9


def test_foreign_and_broken_files(store):
    store.dir.mkdir(parents=True)
    (store.dir / "10-legacy.conf").write_text(json.dumps(
        {"cniVersion": "0.4.0", "name": "legacy", "type": "bridge", "ipam": {"type": "host-local",
                                                                             "subnet": "10.213.1.0/24"}}))
    (store.dir / "20-broken.conflist").write_text("{not json")
    (store.dir / "30-array.json").write_text("[]")
    (store.dir / "40-noname.conflist").write_text('{"plugins": []}')
    (store.dir / "README").write_text("not a config")
    (store.dir / ".ctk-x.conflist.1.tmp").write_text("{")
    nets = store.list()
    assert [n.name for n in nets] == ["legacy"] and not nets[0].managed
    assert len(store.warnings) == 3 and all(w.startswith("skipping ") for w in store.warnings)
    assert "20-broken.conflist: not valid JSON" in store.warnings[0]
    store.list()
    assert len(store.warnings) == 3  # once per file
    assert store.get("legacy").subnets == ["10.213.1.0/24"]
    assert store.create("app").subnets == ["10.213.2.0/24"]  # foreign subnets count as used


def test_remove_refuses_predefined_and_foreign(store):
    store.ensure("bridge")
    (store.dir / "10-legacy.conf").write_text(json.dumps({"name": "legacy", "type": "bridge"}))
    with pytest.raises(Conflict, match="pre-defined"):
        store.remove("bridge", users={"bridge": []})
    with pytest.raises(Conflict, match="not created by ctk"):
        store.remove("legacy", users={"legacy": []})


def test_remove_uses_the_given_users(store, tmp_path):
    n = store.create("app")
    ipam = tmp_path / "d" / "cni" / "ipam" / "app"
    ipam.mkdir(parents=True)
    (ipam / "10.213.1.2").write_text("x")
    with pytest.raises(Conflict, match="in use by container.*ns1/web"):
        store.remove("app", users={"app": ["ns1/web"]})
    assert store.get("app") == n
    assert store.remove(n.id[:12], users={"app": []}) == n
    assert store.list() == [] and not ipam.exists()
    assert sorted(p.name for p in store.dir.iterdir()) == [".ctk-net.lock"]


SAVE = """\
*filter
:CNI-ISOLATION-STAGE-1 - [0:0]
:CNI-ISOLATION-STAGE-2 - [0:0]
-A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-1
-A CNI-ISOLATION-STAGE-1 -i br-aaa ! -o br-aaa -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-2
-A CNI-ISOLATION-STAGE-1 -i br-aaab ! -o br-aaab -m comment --comment "x" -j CNI-ISOLATION-STAGE-2
-A CNI-ISOLATION-STAGE-2 -o br-aaa -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j DROP
-A CNI-ISOLATION-STAGE-2 -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j RETURN
COMMIT
"""


def test_isolation_rules_of_one_bridge():
    from ctk_net.store import isolation_rules

    c = "CNI firewall plugin rules (ingressPolicy: same-bridge)"
    assert isolation_rules(SAVE, "br-aaa") == [
        ["-D", "CNI-ISOLATION-STAGE-1", "-i", "br-aaa", "!", "-o", "br-aaa", "-m", "comment", "--comment", c,
         "-j", "CNI-ISOLATION-STAGE-2"],
        ["-D", "CNI-ISOLATION-STAGE-2", "-o", "br-aaa", "-m", "comment", "--comment", c, "-j", "DROP"]]
    assert isolation_rules(SAVE, "br-zzz") == []
