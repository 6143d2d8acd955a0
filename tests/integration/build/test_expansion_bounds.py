"""ARG/ENV expansion is bounded end to end (issue 12): a doubling Dockerfile fails in seconds with one line."""
from __future__ import annotations

import time

import pytest

from .conftest import write

pytestmark = pytest.mark.integration


def test_doubling_args_fail_fast_with_one_line(build, tmp_path):
    lines = ["FROM scratch", "ARG A0=xx"] + [f"ARG A{i}=${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, 31)]
    ctx = write(tmp_path / "ctx", {"Dockerfile": "\n".join(lines) + "\nENV B=$A30\n"})
    t0 = time.monotonic()
    r = build("--no-cache", str(ctx), timeout=60)
    assert time.monotonic() - t0 < 10
    assert r.code == 1 and r.out == ""
    errors = [ln for ln in r.err.splitlines() if ln.startswith("ctk-build: error:")]
    # A19 is 2**20 characters, exactly the cap; A20 (line 22) would be twice that
    assert errors == ["ctk-build: error: Dockerfile:22: variable substitution makes a word longer than 1048576 "
                      "characters (1 MiB), ctk-build's limit: ARG A20=${A19}${A19}"]
    assert "Traceback" not in r.err


def test_deep_nesting_fails_with_one_line(build, tmp_path):
    n = 3000
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nENV X=" + "${Y:-" * n + "x" + "}" * n + "\n"})
    r = build("--no-cache", str(ctx), timeout=60)
    assert r.code == 1
    errors = [ln for ln in r.err.splitlines() if ln.startswith("ctk-build: error:")]
    assert len(errors) == 1 and errors[0].startswith("ctk-build: error: Dockerfile:2: variable substitution "
                                                     "nested deeper than 64 levels")
    assert "Traceback" not in r.err and "RecursionError" not in r.err
