"""``ctk-run update``: values checked as Docker checks them, and limits merged into the stored resources."""
from __future__ import annotations

import pytest
from ctk_run.update import _resources, parse_update
from ctk_shared.errors import UsageError


def _parse(**kw):  # type: ignore[no-untyped-def]
    base = {"memory": None, "memory_swap": None, "cpus": None, "pids_limit": None, "restart": None}
    return parse_update(**{**base, **kw})


@pytest.mark.parametrize(("kw", "message"), [
    ({}, "one or more flags"),
    ({"memory": "1m"}, "Minimum memory limit"),
    ({"memory": "lots"}, "invalid size"),
    ({"memory": "64m", "memory_swap": "32m"}, "memoryswap limit should be larger"),
    ({"pids_limit": "many"}, "--pids-limit"),
    ({"cpus": "x"}, "--cpus"),
    ({"restart": "sometimes"}, "restart policy"),
])
def test_bad_values(kw, message):
    with pytest.raises(UsageError, match=message):
        _parse(**kw)


def test_merge_keeps_what_is_not_changed():
    current = {"devices": [{"allow": False, "access": "rwm"}], "memory": {"limit": 64 << 20},
               "pids": {"limit": 10}}
    res, task = _resources(current, _parse(cpus="0.5"))
    assert res["devices"] == current["devices"] and res["memory"] == {"limit": 64 << 20}
    assert res["cpu"] == {"period": 100000, "quota": 50000} and task == {"cpu": {"period": 100000, "quota": 50000}}
    res, task = _resources(current, _parse(memory="0", pids_limit="-1"))
    assert "limit" not in res["memory"] and task["memory"] == {"limit": -1}  # 0: no limit any more
    assert res["pids"] == {"limit": -1} and task["pids"] == {"limit": -1}


def test_swap_rules():
    with pytest.raises(UsageError, match="always set the Memory limit"):
        _resources({}, _parse(memory_swap="1g"))
    with pytest.raises(UsageError, match="smaller than already set memoryswap"):
        _resources({"memory": {"limit": 64 << 20, "swap": 128 << 20}}, _parse(memory="256m"))
    res, task = _resources({"memory": {"limit": 64 << 20}}, _parse(memory_swap="-1"))
    assert res["memory"] == {"limit": 64 << 20, "swap": -1} and task["memory"] == {"limit": 64 << 20, "swap": -1}
