"""Every bad value is refused when it is given (issue 17): the real executables exit 125 for run/create and 2 for
other usage errors, with one error line (Docker's wording where Docker has one), and nothing is created."""
from __future__ import annotations

import os
import time

import pytest

pytestmark = pytest.mark.integration

NCPU = len(os.sched_getaffinity(0))


def _one_error(err: str, tool: str = "ctk-run") -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{tool}: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (("--stop-signal", "SIGFOO"), "ctk-run: error: invalid signal: SIGFOO"),
    (("--stop-signal", "999", "--restart=always"), "ctk-run: error: invalid signal: 999"),
    (("--cpus", "999"), f"ctk-run: error: range of CPUs is from 0.01 to {NCPU}.00, as there are only {NCPU} CPUs "
                        "available"),
    (("--cpus", "0.001"), "range of CPUs is from 0.01"),
    (("--dns", "notanip"), 'invalid argument "notanip" for "--dns" flag: IP address is not correctly formatted: '
                           "notanip"),
    (("--platform", "windows/amd64"), 'unsupported platform "windows/amd64": image operating system "windows" '
                                      "cannot be used on this platform"),
    (("-u", ":"), "invalid user ':'"),
    (("--security-opt", "apparmor=docker-default"), "ctk has no AppArmor support"),
])
@pytest.mark.parametrize("verb", ["run", "create"])
def test_run_and_create_refuse_bad_values_and_create_nothing(run, bb, verb, args, message) -> None:
    extra = ("-d",) if verb == "run" else ()
    r = run(verb, *extra, "--name", "refused", *args, bb, "true")
    assert r.code == 125, r.err
    assert message in _one_error(r.err), r.err
    assert run("ps", "-a", "-q").lines == []


def test_apparmor_unconfined_is_what_ctk_gives_and_is_accepted(run, bb) -> None:
    r = run("run", "--rm", "--security-opt", "apparmor=unconfined", bb, "true")
    assert r.code == 0, r.err


def test_stop_with_a_bad_signal_changes_nothing(run, bb, ctd) -> None:
    from ctk_run import labels as L

    cid = run("run", "-d", "--restart=always", bb, "sleep", "600").out.strip()
    r = run("stop", "-s", "SIGFOO", cid)
    assert r.code != 0 and "invalid signal: SIGFOO" in _one_error(r.err), r.err
    # still running, and its restart policy still on (the old code recorded the stop before the signal failed)
    assert run("inspect", "--format", "{{.State.Status}}", cid).out.strip() == "running"
    assert ctd.containers.get(cid).labels.get(L.EXPLICITLY_STOPPED) != "true"
    assert run("stop", "-t", "1", cid).code == 0
    assert run("inspect", "--format", "{{.State.Status}}", cid).out.strip() == "exited"


def test_stop_of_a_container_with_an_unknown_stored_signal_still_stops_it(run, bb, ctd) -> None:
    cid = run("run", "-d", "--restart=always", bb, "sleep", "600").out.strip()
    ctd.containers.update_labels(cid, {"ctk/stop-signal": "SIGFOO"})  # as written before the value was checked
    t0 = time.monotonic()
    r = run("stop", "-t", "2", cid)
    assert r.code == 0, r.err
    assert "invalid stop signal 'SIGFOO'; sending SIGTERM" in r.err
    assert time.monotonic() - t0 < 10
    assert run("inspect", "--format", "{{.State.Status}}", cid).out.strip() == "exited"


def test_pull_refuses_a_windows_platform_to_unpack(run, bb) -> None:
    r = run("pull", "--platform", "windows/amd64", bb, tool="ctk-pull")
    assert r.code == 2
    assert 'unsupported platform "windows/amd64"' in _one_error(r.err, "ctk-pull"), r.err


def test_tag_refuses_a_digest_target(run, bb) -> None:
    assert run("pull", "-q", bb, tool="ctk-pull").code == 0
    for target in ("x@md5:" + "0" * 32, "x@sha256:" + "0" * 64):
        r = run("tag", bb, target, tool="ctk-pull")
        assert r.code == 2, r.err
        line = _one_error(r.err, "ctk-pull")
        assert "unsupported digest algorithm 'md5'" in line or "refusing to create a tag with a digest" in line
    assert all("@" not in ln for ln in run("images", "--format", "{{.Repository}}", tool="ctk-pull").lines)


def test_macvlan_with_a_missing_parent_is_refused(run) -> None:
    r = run("create", "-d", "macvlan", "-o", "parent=nosuchif", "lan", tool="ctk-net")
    assert r.code == 2, r.err
    assert "-o parent interface was not found on the host: nosuchif" in _one_error(r.err, "ctk-net"), r.err
    assert "lan" not in run("ls", "--format", "{{.Name}}", tool="ctk-net").out.split()


def test_a_toml_value_of_the_wrong_type_names_key_and_file(run, tmp_path) -> None:
    cfg = tmp_path / "ctk.toml"
    cfg.write_text("address = 5\n")
    r = run("ps", env={"CTK_CONFIG": str(cfg)})
    assert r.code == 2, r.err
    assert f"config file {cfg}: address must be a string, not int 5" in _one_error(r.err), r.err


def test_a_bad_registry_timeout_is_refused_when_given(run) -> None:
    r = run("pull", "--registry-timeout", "soon", "busybox", tool="ctk-pull")
    assert r.code == 2
    assert "invalid registry timeout 'soon'" in _one_error(r.err, "ctk-pull"), r.err
