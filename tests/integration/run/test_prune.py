"""``ctk-run prune``: stopped containers go with what they own; data directories of vanished namespaces go on
request; ``--rm`` containers leave no anonymous volume behind."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration


def _ids(run, *args: str) -> set[str]:
    return set(run("ps", "-a", "-q", "--no-trunc", *args).lines)


def test_prune_removes_stopped_containers_only(run, bb):
    assert run("run", "-d", "--name", "up", bb, "sleep", "60").code == 0
    assert run("run", "--name", "done", bb, "sh", "-c", "echo hello; exit 3").code == 3
    assert run("run", "--name", "done2", "--label", "keep=1", bb, "true").code == 0
    assert run("create", "--name", "fresh", bb, "true").code == 0
    done = run("inspect", "--format", "{{.Id}}", "done").out.strip()
    done2 = run("inspect", "--format", "{{.Id}}", "done2").out.strip()
    fresh = run("inspect", "--format", "{{.Id}}", "fresh").out.strip()
    ns_dir = next(p for p in run.data_root.iterdir() if (p / "containers").is_dir())
    assert (ns_dir / "containers" / done).is_dir()

    r = run("prune", "-f", "--filter", "label!=keep=1")
    assert r.code == 0, r.err
    assert r.out.splitlines()[:3] == ["Deleted Containers:", done, ""]
    assert r.out.splitlines()[-1].startswith("Total reclaimed space: ")
    assert not (ns_dir / "containers" / done).exists()  # logs and /etc files went with it
    assert done2 in _ids(run) and fresh in _ids(run)

    r = run("prune", "-f")
    assert r.code == 0, r.err
    assert done2 in r.out.splitlines()
    left = _ids(run)
    assert fresh in left, "a container created a moment ago may be about to start: kept"
    assert len(left) == 2  # up and fresh
    assert run("ps", "-q", "--filter", "name=up").lines  # still running

    r = run("prune", "-f", "--filter", "until=1h")
    assert r.code == 0 and r.out == "Total reclaimed space: 0B\n"


def test_prune_asks_and_reads_the_answer_from_stdin(run, bb):
    assert run("run", "--name", "done", bb, "true").code == 0
    r = run("prune", input="")  # not a terminal and no answer at all: refused, with the hint
    assert r.code == 2 and "-f" in r.err
    assert "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] " in r.err
    r = run("prune", input="n\n")
    assert r.code == 0 and r.out == ""
    assert len(_ids(run)) == 1
    r = run("prune", "-f", "--filter", "status=exited")
    assert r.code == 2 and "invalid filter" in r.err
    assert len(_ids(run)) == 1
    r = run("prune", input="y\n")  # as Docker: `echo y | … prune` confirms
    assert r.code == 0 and r.out.startswith("Deleted Containers:\n")
    assert _ids(run) == set()


def test_namespace_dirs_of_vanished_namespaces(run, bb, ctd):
    assert run("run", "--name", "done", bb, "true").code == 0
    root = run.data_root
    gone = root / "ctk-test-gone-ns"
    (gone / "containers" / "abc").mkdir(parents=True)
    (gone / "containers" / "abc" / "abc-json.log").write_text("x" * 10_000)
    (gone / "volumes" / "v1").mkdir(parents=True)
    (gone / "names.lock").write_text("")
    foreign = root / "not-ctks"
    (foreign / "precious").mkdir(parents=True)
    live = next(p for p in root.iterdir() if p.name == ctd.namespace)

    r = run("prune", "-f")
    assert r.code == 0, r.err
    assert "ctk-test-gone-ns" in r.err and "--namespace-dirs" in r.err
    assert gone.is_dir()

    r = run("prune", "-f", "--namespace-dirs")
    assert r.code == 0, r.err
    assert "Deleted Namespace Directories:" in r.out and str(gone) in r.out
    assert not gone.exists()
    assert foreign.is_dir() and live.is_dir()


def _volume_dirs(run) -> list[str]:
    return [str(p) for p in run.data_root.glob("*/volumes/*") if not p.name.startswith(".")]


def test_rm_containers_leave_no_anonymous_volume(run, bb):
    r = run("run", "--rm", "-v", "/data", bb, "sh", "-c", "echo x > /data/f")
    assert r.code == 0, r.err
    assert _volume_dirs(run) == []
    r = run("run", "-d", "--rm", "-v", "/data", bb, "sh", "-c", "echo x > /data/f; sleep 1")
    assert r.code == 0, r.err
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_ids(run) or _volume_dirs(run)):
        time.sleep(0.2)
    assert _ids(run) == set()
    assert _volume_dirs(run) == []
