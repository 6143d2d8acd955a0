"""ctk-net answers ctk-run with a structured error record, and ctk-run rebuilds the error class from it.

The executable is run for real (no containerd needed: ``ensure`` of a named network only reads the conflist
directory of the test)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from ctk_shared import nethooks
from ctk_shared.config import GlobalOptions
from ctk_shared.error_records import from_record, to_record
from ctk_shared.errors import Conflict, CtkError, NotFound, UsageError


def test_record_round_trip_keeps_class_message_and_hint():
    rec = to_record(NotFound("no such network: 'x'", hint="ctk-net ls"))
    assert rec == {"kind": "NotFound", "message": "no such network: 'x'", "hint": "ctk-net ls"}
    back = from_record(rec)
    assert type(back) is NotFound and back.message == "no such network: 'x'" and back.hint == "ctk-net ls"
    assert type(from_record(to_record(Conflict("busy")))) is Conflict


def test_subclass_is_sent_as_its_nearest_known_kind():
    class PluginError(CtkError):
        pass

    assert to_record(PluginError("boom"))["kind"] == "CtkError"


@pytest.mark.parametrize("bad", [None, "text", {"kind": "SystemExit", "message": "x"}, {"kind": 3}])
def test_malformed_or_unknown_record_is_a_plain_error(bad):
    err = from_record(bad, "fallback")
    assert type(err) is CtkError and err.message


def _gopts(tmp_path) -> GlobalOptions:
    (tmp_path / "net.d").mkdir(exist_ok=True)
    return GlobalOptions(data_root=str(tmp_path / "data"), cni_netconfpath=str(tmp_path / "net.d"))


def test_ctk_net_ensure_prints_an_error_record_for_an_unknown_network(tmp_path):
    g = _gopts(tmp_path)
    exe = nethooks.ctk_net_executable()
    p = subprocess.run([exe, "--data-root", g.data_root, "--cni-netconfpath", g.cni_netconfpath, "ensure",
                        "nosuchnet"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]},
                       check=False)
    assert p.returncode == int(NotFound.exit_code)  # the exit-code table's "not found"
    assert json.loads(p.stdout) == {"Error": {"kind": "NotFound", "message": "no such network: 'nosuchnet'",
                                              "hint": "ctk-net ls lists the networks; ctk-net create NAME makes one"}}


def test_resolve_raises_the_class_ctk_net_named(tmp_path):
    g = _gopts(tmp_path)
    # "no such network" has no "not found" in it: the old text guess made this a plain CtkError
    with pytest.raises(NotFound, match="no such network: 'nosuchnet'") as ei:
        nethooks.resolve(g, ["nosuchnet"], need_gateway=True)
    assert ei.value.hint and "ctk-net create" in ei.value.hint
    # an ambiguous ID prefix is the user's mistake (UsageError, exit 2), not an operation failure
    for name in ("aa1", "aa2"):
        (tmp_path / "net.d" / f"{name}.conf").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": name, "type": "bridge", "ctkID": "ab" + name}))
    with pytest.raises(UsageError, match="ambiguous"):
        nethooks.resolve(g, ["ab"], need_gateway=True)


def test_a_failure_without_a_record_is_not_classified():
    with pytest.raises(CtkError) as ei:
        nethooks.parse_ensure("", 2, "Usage: ctk-net ensure …\nctk-net: error: No such option: --bad\n")
    assert type(ei.value) is CtkError and "exit 2" in ei.value.message
    assert nethooks.parse_ensure('{"Name": "n", "Gateway": "10.0.0.1"}\n', 0) == [
        nethooks.NetworkInfo("n", "10.0.0.1")]
