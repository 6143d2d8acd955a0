"""Every ``-`` that takes image refs refuses an empty stdin with exit 2 (125 for ``ctk-run run``), in every
tool.

A failed first stage leaves the next stage's stdin empty; ``push -`` reporting success then makes a Makefile
"push" nothing. The executables are run for real; containerd's address points nowhere, so a command that
reached containerd before reading stdin would exit 1, not 2.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)
NOWHERE = ["--address", "/nonexistent/ctk-test/containerd.sock"]

CASES = [
    ["ctk-pull", *NOWHERE, "pull", "-"],
    ["ctk-pull", *NOWHERE, "-"],
    ["ctk-pull", *NOWHERE, "push", "-"],
    ["ctk-pull", *NOWHERE, "rm", "-"],
    ["ctk-pull", *NOWHERE, "inspect", "-"],
    ["ctk-pull", *NOWHERE, "save", "-o", "-", "-"],
    ["ctk-pull", *NOWHERE, "tag", "-", "x:1"],
    ["ctk-pull", *NOWHERE, "convert", "--zstd", "-", "x:zstd"],
    ["ctk-crypt", *NOWHERE, "encrypt", "--recipient", "jwe:/nonexistent.pem", "-", "x:enc"],
    ["ctk-crypt", *NOWHERE, "decrypt", "--key", "/nonexistent.pem", "-", "x:dec"],
    ["ctk-run", *NOWHERE, "run", "--rm", "-", "true"],
]


def _empty_config(tmp_path) -> str:
    path = tmp_path / "ctk.toml"
    path.write_text("")
    return str(path)


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(x for x in a if x not in NOWHERE))
@pytest.mark.parametrize("stdin", ["", "\n \n"], ids=["empty", "blank-lines"])
def test_dash_with_no_ref_on_stdin_exits_2(argv, stdin, tmp_path):
    exe = os.path.join(BIN, argv[0])
    if not os.path.exists(exe):
        pytest.fail(f"{argv[0]} is not installed beside {sys.executable}: run scripts/setup")
    p = subprocess.run([exe, *argv[1:]], input=stdin, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "CTK_CONFIG": _empty_config(tmp_path)}, cwd=tmp_path)
    # ctk-run's run reports every failure before the container as Docker does: 125
    assert p.returncode == (125 if argv[0] == "ctk-run" else 2), (p.returncode, p.stderr)
    assert p.stdout == ""
    last = p.stderr.strip().splitlines()[0]
    assert last.startswith(f"{argv[0]}: error:") and "stdin" in last, p.stderr
