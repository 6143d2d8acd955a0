"""ctk_shared.launchers: the ctk-* commands, the logger and the network hook started without ``site`` (issue 20).

Launchers are generated into a temporary directory and run: they must behave as pip's console scripts do
(output, PYTHONPATH first), never import ``site``, be rewritten only when the installation changes, and be
refused (so the caller falls back) when they could not work.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ctk_shared import launchers
from ctk_shared.launchers import Entry

CONSOLE_BIN = Path(sys.executable).parent


def _run(cmd: list[str], env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CTK_"))}
    return subprocess.run(cmd, capture_output=True, text=True, env={**base, **(env or {})}, input=stdin,
                          timeout=120, check=False)


def _imported(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines."""
    return {ln.rsplit("|", 1)[1].strip() for ln in stderr.splitlines() if ln.startswith("import time:")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("bin")
    results = launchers.install(str(dest))
    assert results and all(s == "written" for s in results.values()), results
    return dest


def test_every_console_script_becomes_a_launcher(installed: Path) -> None:
    names = {p.name for p in installed.iterdir()}
    assert {"ctk-pull", "ctk-run", "ctk-net", "ctk-build", "ctk-crypt", "ctk-run-logger"} <= names
    lines = (installed / "ctk-run").read_bytes().split(b"\n")
    python = lines[0][2:].split(b" ")[0].decode()
    assert lines[0] == f"#!{python} -SP".encode()
    if python != sys.executable:  # a faster build of this Python (choose_python): children keep the install's
        assert f"sys.executable = {sys.executable!r}".encode() in lines


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_the_launchers_python_is_the_installs_unless_another_build_is_clearly_cheaper(tmp_path: Path) -> None:
    """A candidate that fails the probe, costs more CPU, or is this very interpreter under another name is
    never picked; a cheaper one that passes is."""
    probe = f"import sys\nsys.path.extend({list(launchers.import_path())!r})\nimport click\n"
    failing = _script(tmp_path / "failing", "exit 3")
    burning = _script(tmp_path / "burning", f'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec {sys.executable} "$@"')
    alias = tmp_path / "alias"
    alias.symlink_to(sys.executable)
    assert launchers.choose_python(probe, candidates=[failing, burning, str(alias)]) == sys.executable
    # the other way round: from an expensive "home", the plain interpreter is the cheaper build
    assert launchers.choose_python(probe, home=burning, candidates=[sys.executable]) == sys.executable
    # the one the launchers name now stays unless another is clearly cheaper than it too: no flip on noise
    assert launchers.choose_python(probe, candidates=[str(alias)], current=sys.executable) == sys.executable
    assert launchers.choose_python(probe, home=burning, candidates=[sys.executable], current=burning) == sys.executable


def test_a_command_run_by_another_build_starts_its_children_with_the_installs_python(tmp_path: Path) -> None:
    """What the launched process sees: the install's interpreter as sys.executable (for ``python -m`` children
    and the scripts beside it), the running one for the launchers it writes itself (logger, hook)."""
    other = tmp_path / "other-python"
    other.symlink_to(sys.executable)  # same binary, another path: stands in for /usr/bin/pythonX.Y
    text = launchers.render(Entry("ctk_shared.launchers", "running_interpreter"), launchers.import_path(),
                            flags=launchers.COMMAND, python=str(other), home=sys.executable)
    body = launchers._probe_of(text).decode() + (
        "\nimport os\nprint(sys.executable, os.path.realpath(running_interpreter()) == os.path.realpath(os.readlink('/proc/self/exe')))")
    r = _run([str(other), "-SP", "-c", body])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [sys.executable, "True"]


@pytest.mark.parametrize("name", ["ctk-pull", "ctk-run", "ctk-net", "ctk-build", "ctk-crypt"])
def test_version_as_the_console_script(installed: Path, name: str) -> None:
    """Same ``--version`` (an importlib.metadata lookup, which needs site-packages' dist-info on the path)."""
    ours, pips = _run([str(installed / name), "--version"]), _run([str(CONSOLE_BIN / name), "--version"])
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == pips.stdout and "unknown" not in ours.stdout


def test_a_launched_command_never_imports_site(installed: Path) -> None:
    """PYTHONPROFILEIMPORTTIME works under -SP (the launchers keep PYTHON* variables): the import log of a real
    command names ctk_run's modules, grpc's and protobuf's (the ``google`` namespace package) and no ``site``."""
    r = _run([str(installed / "ctk-run"), "--address", "/nonexistent.sock", "ps"], env={"PYTHONPROFILEIMPORTTIME": "1"})
    mods = _imported(r.stderr)
    assert "ctk_run.cli" in mods, r.stderr[-2000:]
    assert "site" not in mods and not any(m.startswith("__editable__") for m in mods)
    assert {"grpc", "google.protobuf"} <= mods, sorted(m for m in mods if m.startswith(("grpc", "google")))
    assert "ctk-run:" in r.stderr and r.returncode != 0  # no containerd there: one error line, not a traceback
    assert "Traceback" not in r.stderr


def test_completion_as_the_console_script(installed: Path) -> None:
    env = {"COMP_WORDS": "ctk-run ps --fo", "COMP_CWORD": "2", "_CTK_RUN_COMPLETE": "bash_complete"}
    ours, pips = _run([str(installed / "ctk-run")], env), _run([str(CONSOLE_BIN / "ctk-run")], env)
    assert ours.stdout == pips.stdout and "--format" in ours.stdout


def test_pythonpath_still_comes_first(installed: Path, tmp_path: Path) -> None:
    """The A/B benchmarks put another tree first on PYTHONPATH: the baked path is appended after it."""
    pkg = tmp_path / "ctk_crypt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "decoder.py").write_text("def main():\n    print('from PYTHONPATH')\n    return 0\n")
    r = _run([str(installed / "ctk-crypt-decoder")], {"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0 and r.stdout == "from PYTHONPATH\n", r.stderr


def test_install_is_idempotent_and_leaves_foreign_files(installed: Path, tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in installed.iterdir()}
    # the interpreter named as the first install chose it (which one wins is a timing: choose_python's test)
    again = launchers.install(str(installed), python=launchers.interpreter_of(installed / "ctk-run"))
    assert set(again.values()) == {"unchanged"}
    assert {p.name: p.stat().st_mtime_ns for p in installed.iterdir()} == before

    (tmp_path / "ctk-run").write_text("#!/bin/sh\necho mine\n")
    (tmp_path / "ctk-pull").symlink_to(CONSOLE_BIN / "ctk-pull")  # what setup linked before
    out = launchers.install(str(tmp_path), ["ctk-run", "ctk-pull"], python=sys.executable)
    assert out == {"ctk-run": "kept", "ctk-pull": "written"}
    assert (tmp_path / "ctk-run").read_text() == "#!/bin/sh\necho mine\n"
    assert not (tmp_path / "ctk-pull").is_symlink() and launchers.is_launcher(tmp_path / "ctk-pull")


def test_a_launcher_that_could_not_work_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(launchers.LauncherError, match="longer than the kernel reads"):
        launchers.render(Entry("ctk_run.cli", "main"), [], python="/" + "p" * 130)
    assert launchers.ensure(tmp_path / "x", Entry("ctk_no_such_module", "main")) is None
    assert launchers.ensure(tmp_path / "y", Entry("ctk_run.cli", "main"), needs=("no_such_dependency",)) is None
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_ensure_rewrites_only_a_stale_launcher(tmp_path: Path) -> None:
    target = tmp_path / "bin" / "t"
    entry = Entry("ctk_run.logger", "main")
    assert launchers.ensure(target, entry) == str(target)
    mtime = target.stat().st_mtime_ns
    assert launchers.ensure(target, entry) == str(target) and target.stat().st_mtime_ns == mtime
    target.write_bytes(target.read_bytes().replace(b"site-packages", b"elsewhere"))  # the install moved
    assert launchers.ensure(target, entry) == str(target)
    assert b"elsewhere" not in target.read_bytes() and os.access(target, os.X_OK)


def test_the_network_hook_starts_without_site(tmp_path: Path) -> None:
    """nethooks puts ``<data root>/bin/ctk-net-hook`` (python -I -S) in the spec; it runs ctk_net.hook's entry
    with the same arguments and error contract as ``python -I -m ctk_net.hook``."""
    from ctk_shared import config, nethooks

    data_root = tmp_path / "data"
    gopts = config.resolve({"data_root": str(data_root)})
    spec = nethooks.hooks(gopts)
    hook = spec["createRuntime"][0]
    launcher = data_root / "bin" / "ctk-net-hook"
    assert hook["path"] == str(launcher) and hook["args"][0] == str(launcher)
    assert hook["args"][-1] == "createRuntime" and spec["poststop"][0]["args"][-1] == "postStop"
    assert launcher.read_bytes().startswith(f"#!{sys.executable} -IS\n".encode())

    r = _run([*hook["args"][:-1], "noSuchPhase"], stdin="{}")
    old = _run([sys.executable, "-I", "-m", "ctk_net.hook", *hook["args"][1:-1], "noSuchPhase"], stdin="{}")
    assert (r.returncode, r.stderr) == (old.returncode, old.stderr) and "unknown phase" in r.stderr
    timed = _run([sys.executable, "-X", "importtime", "-I", "-S", str(launcher), "noSuchPhase"], stdin="{}")
    mods = _imported(timed.stderr)
    assert "ctk_net.hook" in mods and "site" not in mods


def test_the_hook_falls_back_when_ctk_net_has_another_interpreter(tmp_path: Path) -> None:
    from ctk_shared import nethooks

    assert nethooks.hook_launcher(str(tmp_path), "/usr/bin/python3-of-another-install") is None
    assert not (tmp_path / "bin").exists()
