"""ctk_net.cni runs a chain as libcni does (ADD in order with each plugin's result handed on, DEL in reverse),
except that the side plugins after the interface plugin (portmap, firewall, tuning) run side by side (issue 20:
their DELs were most of a stop). Fake plugins log when they run; the order the chain promises must hold."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from ctk_net.cni import Attachment, PluginError, Runtime, _groups

PLUGIN = textwrap.dedent("""\
    #!{python}
    import json, os, sys, time
    conf = json.load(sys.stdin)
    name, cmd = conf["type"], os.environ["CNI_COMMAND"]
    log = {log!r}
    with open(log, "a") as f:
        f.write(f"{{cmd}} {{name}} start {{time.monotonic()}}\\n")
    time.sleep(0.3)
    with open(log, "a") as f:
        f.write(f"{{cmd}} {{name}} end {{time.monotonic()}}\\n")
    if cmd == "ADD" and os.path.exists(log + ".fail-" + name):  # the plugins get only the CNI environment
        print(json.dumps({{"code": 11, "msg": "no"}}))
        sys.exit(1)
    if cmd == "ADD":
        print(json.dumps(conf.get("prevResult") or {{"cniVersion": "1.0.0", "ips": [{{"address": "10.9.0.2/24"}}],
                                                    "by": name}}))
""")


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Runtime, Path]:
    bindir, log = tmp_path / "bin", tmp_path / "log"
    bindir.mkdir()
    for name in ("bridge", "portmap", "firewall", "tuning", "other"):
        p = bindir / name
        p.write_text(PLUGIN.format(python=sys.executable, log=str(log)))
        p.chmod(0o755)
    return Runtime(str(bindir), tmp_path / "cache"), log


def _spans(log: Path) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        cmd, name, _, t = line.split()
        out.setdefault(f"{cmd} {name}", []).append(float(t))
    return {k: (v[0], v[1]) for k, v in out.items()}


def _conflist(*types: str) -> dict[str, object]:
    return {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": t} for t in types]}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_groups_keep_the_interface_plugin_and_unknown_plugins_alone() -> None:
    types = lambda gs: [[p["type"] for p in g] for g in gs]  # noqa: E731
    plugins = _conflist("bridge", "portmap", "firewall", "tuning")["plugins"]
    assert types(_groups(plugins)) == [["bridge"], ["portmap", "firewall", "tuning"]]  # type: ignore[arg-type]
    plugins = _conflist("bridge", "portmap", "other", "firewall", "tuning")["plugins"]
    assert types(_groups(plugins)) == [["bridge"], ["portmap"], ["other"], ["firewall", "tuning"]]  # type: ignore[arg-type]
    assert types(_groups([{"type": "portmap"}, {"type": "firewall"}])) == [["portmap"], ["firewall"]]
    assert types(_groups([{"type": "bridge"}, {"type": "tuning", "mac": "x"}, {"type": "firewall"}])) == \
        [["bridge"], ["tuning"], ["firewall"]]


def test_add_runs_the_bridge_first_then_the_side_plugins_together(chain: tuple[Runtime, Path]) -> None:
    rt, log = chain
    result = rt.add(_conflist("bridge", "portmap", "firewall", "tuning"), Attachment("n", "c1", "eth0"), "/ns", {})
    assert result["by"] == "bridge"  # what the side plugins hand on unchanged
    s = _spans(log)
    for side in ("ADD portmap", "ADD firewall", "ADD tuning"):
        assert s[side][0] >= s["ADD bridge"][1]  # only after the interface exists
    assert _overlap(s["ADD portmap"], s["ADD firewall"]) and _overlap(s["ADD firewall"], s["ADD tuning"])
    assert rt.cached(Attachment("n", "c1", "eth0")) is not None


def test_del_runs_the_side_plugins_together_then_the_bridge(chain: tuple[Runtime, Path]) -> None:
    rt, log = chain
    att = Attachment("n", "c2", "eth0")
    rt.add(_conflist("bridge", "portmap", "firewall", "tuning"), att, "/ns", {})
    log.unlink()
    assert rt.delete(att, "/ns") == []
    s = _spans(log)
    assert _overlap(s["DEL portmap"], s["DEL firewall"]) and _overlap(s["DEL tuning"], s["DEL portmap"])
    assert s["DEL bridge"][0] >= max(s[k][1] for k in ("DEL portmap", "DEL firewall", "DEL tuning"))
    assert rt.cached(att) is None


def test_a_failed_side_plugin_undoes_everything_that_was_added(chain: tuple[Runtime, Path]) -> None:
    rt, log = chain
    Path(f"{log}.fail-firewall").touch()
    with pytest.raises(PluginError, match="firewall"):
        rt.add(_conflist("bridge", "portmap", "firewall", "tuning"), Attachment("n", "c3", "eth0"), "/ns", {})
    dels = {k for k in _spans(log) if k.startswith("DEL")}
    assert dels == {"DEL bridge", "DEL portmap", "DEL tuning"}  # what did add; the failed one has nothing to undo
    s = _spans(log)
    assert s["DEL bridge"][0] >= max(s["DEL portmap"][1], s["DEL tuning"][1])  # still in reverse order
    assert rt.cached(Attachment("n", "c3", "eth0")) is None
    assert json.dumps(rt.timings)  # every run timed, for the hook's --debug line
