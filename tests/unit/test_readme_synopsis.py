"""The READMEs' synopses say what the tools really take (issue 14): every command line in a synopsis block names
a command that exists, and every flag shown there is a flag of that command.

Synopsis blocks: in README.md the first fenced block of each `## ctk-…` section, in tools/*/README.md the block
under `## SYNOPSIS`. A line continues on the next when that one is indented; `;` and `|` separate commands;
`# …` and prose after a wide gap are comments. A command's words are found after its tool name; when the first
plain word is no sub-command, the tool's default command is meant (`ctk-run IMAGE` is `ctk-run run IMAGE`)."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"ctk-pull": "ctk_pull.cli", "ctk-run": "ctk_run.cli", "ctk-net": "ctk_net.cli",
         "ctk-build": "ctk_build.cli", "ctk-crypt": "ctk_crypt.cli"}
_FLAG = re.compile(r"(?:^|(?<=[\s|])|(?<=\s\[)|(?<=^\[))(--?[A-Za-z][\w-]*)")
_COMMENT = re.compile(r"\s+#\s.*$|\s{3,}(?![\[-]).*$")


def _blocks(path: Path) -> Iterator[tuple[int, str]]:
    """(line number of its first line, text) of each synopsis block."""
    lines = path.read_text().splitlines()
    wanted = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            title = line[3:].strip()
            wanted = title == "SYNOPSIS" or title in TOOLS
        elif wanted and line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            yield i + 2, "\n".join(lines[i + 1:j])
            wanted = False
            i = j
        i += 1


def _commands(block: str) -> Iterator[str]:
    """One string per command line: continuations joined, comments cut, split at ';' and '|'."""
    joined: list[str] = []
    for raw in block.splitlines():
        if raw[:1].isspace() and joined:
            joined[-1] += " " + raw.strip()
        elif raw.strip():
            joined.append(raw.strip())
    for line in joined:
        line = _COMMENT.sub("", line)
        for part in _split_outside_brackets(line):
            part = part.strip()
            if part.startswith("ctk-"):
                yield part


def _split_outside_brackets(line: str) -> Iterator[str]:
    """Split at `` ; `` and `` | `` that are not inside ``[…]`` (``[-p PASS | --password-stdin]`` stays)."""
    depth, start = 0, 0
    for i, ch in enumerate(line):
        depth += ch == "["
        depth -= ch == "]"
        if depth == 0 and ch in ";|" and line[i - 1:i] == " " and line[i + 1:i + 2] == " ":
            yield line[start:i]
            start = i + 1
    yield line[start:]


def _resolve(line: str) -> tuple[str, click.Command, str]:
    """(command path, click command, the rest of the line) for a synopsis line."""
    tool, _, rest = line.partition(" ")
    cmd: click.Command = importlib.import_module(TOOLS[tool]).cli
    path = tool
    while isinstance(cmd, click.Group):
        plain = re.sub(r"\[[^\[\]]*\]", " ", rest)
        while plain != (plain := re.sub(r"\[[^\[\]]*\]", " ", plain)):
            pass
        words = [w for w in plain.split() if not w.startswith("-")]
        word = words[0] if words else ""
        sub = cmd.commands.get(word) if word else None
        if sub is not None:
            path, cmd = f"{path} {word}", sub
            rest = rest.split(word, 1)[1]
            continue
        default = getattr(cmd, "default_command", None)
        if default is None:
            raise AssertionError(f"{line!r}: {path} has no sub-command {word!r}")
        path, cmd = f"{path} {default}", cmd.commands[default]
    return path, cmd, rest


def _flags(cmd: click.Command) -> set[str]:
    out = {"--help", "-h"}
    for p in cmd.params:
        if isinstance(p, click.Option):
            out.update(p.opts)
            out.update(p.secondary_opts)
    return out


def _synopsis_lines() -> list[tuple[str, str]]:
    found = []
    for readme in [ROOT / "README.md", *sorted((ROOT / "tools").glob("*/README.md"))]:
        for lineno, block in _blocks(readme):
            for line in _commands(block):
                found.append((f"{readme.relative_to(ROOT)}:{lineno}", line))
    return found


def test_the_readmes_have_synopses_for_every_tool():
    tools = {line.split()[0] for _, line in _synopsis_lines()}
    assert tools >= set(TOOLS), f"no synopsis for {set(TOOLS) - tools}"


def _argparse_flags(tool: str) -> str:
    """The --help text of a tool that is a plain argparse program (ctk-crypt-decoder)."""
    module = {"ctk-crypt-decoder": "ctk_crypt.decoder"}[tool]
    p = subprocess.run([sys.executable, "-c", f"from {module} import main; main(['--help'])"], capture_output=True,
                       text=True, check=False)
    return p.stdout


@pytest.mark.parametrize("where,line", _synopsis_lines())
def test_each_synopsis_line_names_a_command_and_its_flags(where, line):
    tool = line.split()[0]
    if tool not in TOOLS:
        text = _argparse_flags(tool)
        missing = [f for f in _FLAG.findall(line.partition(" ")[2]) if not re.search(rf"{re.escape(f)}\b", text)]
        assert not missing, f"{where}: {tool} has no flag {', '.join(missing)}"
        return
    path, cmd, rest = _resolve(line)
    known = _flags(cmd)
    unknown = []
    for flag in _FLAG.findall(rest):
        if flag in known:
            continue
        if not flag.startswith("--") and len(flag) > 2 and all(f"-{c}" in known for c in flag[1:]):
            continue  # -it: short flags together
        unknown.append(flag)
    assert not unknown, f"{where}: `{path}` has no flag {', '.join(unknown)} (synopsis: {line})"
