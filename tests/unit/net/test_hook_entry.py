"""The OCI hook as specs name it: ``python -I -m ctk_net.hook [flags] PHASE``, started by runc twice per networked
task (the task waits for the first), without click or ctk-net's CLI (issue 20)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ctk_shared import nethooks
from ctk_shared.config import GlobalOptions


def test_the_hook_module_loads_neither_click_nor_the_cli():
    code = "import sys, ctk_net.hook; print(sorted(m for m in ('click', 'ctk_net.cli', 'grpc') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_bad_phase_is_one_line_as_from_the_cli(tmp_path):
    p = subprocess.run([sys.executable, "-I", "-m", "ctk_net.hook", "--data-root", str(tmp_path), "--namespace",
                        "ns", "bogus"], input="{}", capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr  # InvalidArgument, as `ctk-net hook bogus`
    assert p.stderr.startswith("ctk-net: error: hook: unknown phase 'bogus'") and "Traceback" not in p.stderr


def test_no_phase_is_a_usage_error(tmp_path):
    p = subprocess.run([sys.executable, "-I", "-m", "ctk_net.hook", "--data-root", str(tmp_path)], input="{}",
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("ctk-net: error: hook: expected one PHASE"), p.stderr


def test_spec_hooks_run_the_hook_module_without_click(tmp_path):
    """The hook is the site-less launcher under the data root when ctk-net shares this interpreter, else ctk-net's
    own interpreter with ``-I -m``; either way the hook module, not the click CLI."""
    exe = nethooks.ctk_net_executable()
    python = Path(exe).read_bytes().split(b"\n", 1)[0][2:].decode().strip()
    root = str(tmp_path / "d")
    hooks = nethooks.hooks(GlobalOptions(data_root=root, namespace="ns"))
    launcher = tmp_path / "d" / "bin" / "ctk-net-hook"
    for phase, entries in (("createRuntime", hooks["createRuntime"]), ("postStop", hooks["poststop"])):
        (h,) = entries
        if os.path.realpath(python) == os.path.realpath(sys.executable):
            assert h["path"] == str(launcher) and h["args"][0] == str(launcher) and os.access(launcher, os.X_OK)
            assert launcher.read_text().splitlines()[0].endswith(" -IS")
        else:
            assert h["path"] == python and h["args"][:4] == [python, "-I", "-m", "ctk_net.hook"]
        assert "hook" not in h["args"][1:-1]  # the module's entry, not `ctk-net … hook PHASE`
        assert h["args"][-1] == phase and "--data-root" in h["args"] and root in h["args"]
        assert any(e.startswith("PATH=") for e in h["env"])


def test_a_script_that_is_not_a_plain_python_one_keeps_the_cli_form(tmp_path):
    wrapper = tmp_path / "ctk-net"
    wrapper.write_text("#!/bin/sh\nexec /somewhere/ctk-net \"$@\"\n")
    wrapper.chmod(0o755)
    assert nethooks._script_interpreter(str(wrapper)) is None
    args_py = tmp_path / "py-with-args"
    args_py.write_text(f"#!{sys.executable} -E\n")
    assert nethooks._script_interpreter(str(args_py)) is None
    plain = tmp_path / "plain"
    plain.write_text(f"#!{sys.executable}\nimport sys\n")
    assert nethooks._script_interpreter(str(plain)) == sys.executable
