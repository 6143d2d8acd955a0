"""Help a Docker user can navigate (issue 14): every flag of every command of the five tools says what it does,
no help text sends the user to a flag that `--help` hides, and `ctk-run --help` says where run's flags are.

The commands are found by walking the click groups, so a flag added tomorrow without help fails here."""
from __future__ import annotations

import importlib
import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

TOOLS = {"ctk-pull": "ctk_pull.cli", "ctk-run": "ctk_run.cli", "ctk-net": "ctk_net.cli",
         "ctk-build": "ctk_build.cli", "ctk-crypt": "ctk_crypt.cli"}


def _group(tool: str) -> click.Command:
    return importlib.import_module(TOOLS[tool]).cli  # type: ignore[no-any-return]


def commands(tool: str) -> Iterator[tuple[str, click.Command]]:
    """(``"ctk-run volume ls"``, command) for the tool and every sub-command, depth first."""
    def walk(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, cmd
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, f"{path} {name}")

    yield from walk(_group(tool), tool)


def _texts(cmd: click.Command) -> Iterator[str]:
    for t in (cmd.help, cmd.short_help, cmd.epilog):
        if t:
            yield t
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.hidden and p.help:
            yield p.help


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_flag_has_a_help_line(tool):
    missing = [f"{path} {'/'.join(p.opts)}" for path, cmd in commands(tool) for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not missing, "flags without a help line (add help=…):\n  " + "\n  ".join(missing)


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_command_says_what_it_does(tool):
    bare = [path for path, cmd in commands(tool) if not cmd.hidden and not (cmd.help or cmd.short_help or "").strip()]
    assert not bare, f"commands without a description: {bare}"


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_no_help_text_refers_to_a_hidden_flag(tool):
    hidden = {o for _, cmd in commands(tool) for p in cmd.params if isinstance(p, click.Option) and p.hidden
              for o in p.opts if o.startswith("--")}
    told = []
    for path, cmd in commands(tool):
        for text in _texts(cmd):
            for flag in hidden:
                if re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                    told.append(f"{path}: {flag}")
    assert not told, f"help refers to flags that --help does not show: {sorted(set(told))}"


def _help(tool: str, *args: str) -> str:
    r = CliRunner().invoke(_group(tool), [*args, "--help"], prog_name=tool, terminal_width=80)
    assert r.exit_code == 0, r.output
    return r.output


def test_ctk_run_help_says_where_runs_flags_are_and_lists_its_commands():
    text = _help("ctk-run")
    assert "ctk-run run --help" in text
    names = [n for n in _group("ctk-run").commands if not _group("ctk-run").commands[n].hidden]  # type: ignore[attr-defined]
    listed = text.split("Commands:", 1)[1]
    for name in names:
        assert re.search(rf"^\s+{re.escape(name)}\s", listed, re.M), f"{name} is not listed"
    assert "..." not in listed, "a command's description is cut short in the list"


@pytest.mark.parametrize("tool", ["ctk-pull", "ctk-run", "ctk-build"])
def test_a_tool_with_a_default_command_says_where_its_flags_are(tool):
    default = _group(tool).default_command  # type: ignore[attr-defined]
    assert f"{tool} {default} --help" in " ".join(_help(tool).split())


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_command_lists_are_not_cut_short(tool):
    for path, cmd in commands(tool):
        if isinstance(cmd, click.Group):
            text = _help(tool, *path.split()[1:])
            assert "..." not in text.split("Commands:", 1)[-1], f"{path} --help cuts a description short"
