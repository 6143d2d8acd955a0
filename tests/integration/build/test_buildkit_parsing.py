"""The BuildKit parsing rules end to end: what lands in the image, and the errors a user gets."""
from __future__ import annotations

import pytest

from .conftest import write

pytestmark = pytest.mark.integration


def test_escapes_heredocs_and_patterns_in_a_real_build(build, run, bb, tmp_path):
    df = (f"FROM {bb}\n"
          "ENV C trailing\\\\backslash\\\\\n"
          "RUN << EOF\necho spaced-heredoc > /h1\nEOF\n"
          "RUN <<- EOF\n\techo chomped > /h2\n\tEOF\n"
          "COPY << EOF /h3\ncopied $C\nEOF\n"
          "ARG P=/usr/local/bin/tool.tar.gz NEEDLE=/\n"
          "ENV R=${P//$NEEDLE/_} S=${P%%\\**} T=${P##*.}\n")
    r = build("-q", "-t", "parsed-app", str(write(tmp_path / "ctx", {"Dockerfile": df})))
    assert r.code == 0, r.err
    out = run("--rm", "-q", "--network", "none", "parsed-app", "sh", "-c",
              "cat /h1 /h2 /h3; echo \"$C|$R|$S|$T\"")
    assert out.code == 0, out.err
    assert out.out == ("spaced-heredoc\nchomped\ncopied trailing\\backslash\\\n"
                       "trailing\\backslash\\|_usr_local_bin_tool.tar.gz|/usr/local/bin/tool.tar.gz|gz\n")


@pytest.mark.parametrize("files,message", [
    ({"Dockerfile": "FROM {bb}\nCMD [\"a\", 42]\n"},
     "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
    ({"Dockerfile": "FROM {bb}\nCOPY . /\n", ".dockerignore": "ok\n# c\na[\n"},
     ".dockerignore:3: syntax error in pattern 'a['"),
    ({"Dockerfile": "FROM {bb}\nCOPY . /\n", ".dockerignore": "!\n"},
     '.dockerignore:1: illegal exclusion pattern: "!"'),
    ({"Dockerfile": "FROM {bb}\nENV A=x\nENV B=${A%\\q}\n"}, "Dockerfile:3:"),
])
def test_malformed_input_is_one_clear_error_before_any_step(build, bb, tmp_path, files, message):
    ctx = write(tmp_path / "ctx", {k: v.replace("{bb}", bb) for k, v in files.items()})
    r = build("--progress=plain", str(ctx))
    assert r.code == 1 and message in r.err and "Traceback" not in r.err, r.err
    errors = [ln for ln in r.err.splitlines() if ln.startswith("ctk-build: error:")]
    assert len(errors) == 1, r.err
