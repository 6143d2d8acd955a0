"""ctk-run's run path through its one function, without click (issue 16, docs/CONVENTIONS.md §7).

The options dataclass is built by hand and ``ops.run(client, gopts, opts)`` is called in this process, against
the session's real containerd: what a user would see (the container ran, its exit code, its output in the log,
nothing left behind after a refused value) must hold without the command line in between.
"""
from __future__ import annotations

import json

import pytest
from ctk_run import ops
from ctk_run.errors import RunError
from ctk_run.options import ContainerOptions, RunOptions
from ctk_shared import config

from tests.support.polling import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def gopts(containerd, ctd, tmp_path, cni_env, monkeypatch):
    """The global options the cli would resolve, with the environment the run fixture gives ctk-run (the
    ctk-net hook inherits it from runc)."""
    empty = tmp_path / "ctk.toml"
    empty.write_text("")
    monkeypatch.setenv("CTK_CONFIG", str(empty))
    for k, v in cni_env.env.items():
        monkeypatch.setenv(k, v)
    return config.resolve({"address": containerd.address, "namespace": ctd.namespace,
                           "data_root": str(tmp_path / "data")})


def test_run_in_the_foreground_returns_the_exit_code_and_streams_the_output(ctd, gopts, bb, run, capfd):
    opts = RunOptions(image=bb, command=("sh", "-c", "echo out; echo err >&2; exit 3"), name="handoff",
                      quiet=True)
    result = ops.run(ctd, gopts, opts)
    assert result.exit_code == 3 and not result.detached and len(result.container_id) == 64
    out, err = capfd.readouterr()
    assert out == "out\n" and err.endswith("err\n")
    # the container is kept (no --rm) with its exit and its log, as `ctk-run ps -a` and `logs` show them
    ps = [json.loads(x) for x in run("ps", "-a", "--no-trunc").lines]
    assert [(p["ID"], p["Names"], p["State"]) for p in ps] == [(result.container_id, "handoff", "exited")]
    logs = run("logs", "handoff")
    assert logs.out == "out\n" and logs.err == "err\n"


def test_run_detached_returns_the_id_and_the_container_runs(ctd, gopts, bb, run, capfd):
    result = ops.run(ctd, gopts, RunOptions(image=bb, command=("sh", "-c", "echo hello from handoff"),
                                            detach=True, quiet=True))
    assert result.detached and result.exit_code == 0
    assert capfd.readouterr().out == ""  # printing the ID is the cli's job
    assert wait_for(lambda: run("inspect", "-f", "{{.State.Status}}", result.container_id).out.strip() == "exited")
    assert run("logs", result.container_id).out == "hello from handoff\n"


def test_run_with_rm_leaves_nothing(ctd, gopts, bb, run):
    result = ops.run(ctd, gopts, RunOptions(image=bb, command=("true",), auto_remove=True, quiet=True))
    assert result.exit_code == 0
    assert run("ps", "-a", "-q").lines == []


def test_a_refused_value_is_a_run_error_before_anything_is_made(ctd, gopts, bb, run):
    with pytest.raises(RunError) as e:
        ops.run(ctd, gopts, RunOptions(image=bb, command=("true",), memory="lots", quiet=True))
    assert e.value.exit_code == 125
    with pytest.raises(RunError) as e:
        ops.create(ctd, gopts, ContainerOptions(image=bb, auto_remove=True, restart="always"))
    assert e.value.exit_code == 125 and "--restart and --rm" in e.value.message
    assert run("ps", "-a", "-q").lines == []


def test_create_returns_the_id_of_a_created_container(ctd, gopts, bb, run):
    created = ops.create(ctd, gopts, ContainerOptions(image=bb, command=("true",), name="made", quiet=True))
    doc = json.loads(run("inspect", "made").out)[0]
    assert doc["Id"] == created.container_id and doc["State"]["Status"] == "created"
