"""The front door of every tool (issue 14): words are never silently images, --version, Docker's `-n` inside
sub-commands, and --format templates (`table` prefix, unknown fields, syntax errors, inspect arrays).

Every test runs the real tool groups in process with containerd pointed at a socket that does not exist: a
word taken for an image would get as far as dialling containerd and fail with *that* error instead.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import click
import pytest
from ctk_build.cli import cli as build_cli
from ctk_crypt.cli import cli as crypt_cli
from ctk_net.cli import cli as net_cli
from ctk_pull.cli import cli as pull_cli
from ctk_run.cli import cli as run_cli
from ctk_shared import cli, output
from ctk_shared.errors import UsageError

TOOLS = {"ctk-run": run_cli, "ctk-pull": pull_cli, "ctk-net": net_cli, "ctk-build": build_cli,
         "ctk-crypt": crypt_cli}
NO_CONTAINERD = "/nonexistent/containerd.sock"


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith(("CONTAINERD_", "CTK_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("CONTAINERD_ADDRESS", NO_CONTAINERD)
    (tmp_path / "ctk.toml").write_text("")
    monkeypatch.setenv("CTK_CONFIG", str(tmp_path / "ctk.toml"))
    monkeypatch.chdir(tmp_path)


def _run(prog, *argv):
    return cli.run(TOOLS[prog], prog, list(argv))


# --- words are never silently images ------------------------------------------------------------------------
@pytest.mark.parametrize("prog,argv", [
    ("ctk-run", ["commit", "web", "img:1"]),  # (cp, stats, top, pause, events are ctk-run commands now)
    *[("ctk-run", [w]) for w in ("system", "images", "build", "diff", "export", "checkpoint")],
    ("ctk-run", ["--rm", "-p", "80:80", "commit"]),  # also after the default command's options
    *[("ctk-pull", [w]) for w in ("history", "rmi", "search", "ps", "volume")],
    ("ctk-pull", ["--platform", "linux/amd64", "history"]),
    *[("ctk-build", [w]) for w in ("pull", "run", "buidl")],
])
def test_command_words_are_refused_before_any_containerd_or_registry_call(prog, argv, capsys):
    rc = _run(prog, *argv)
    err = capsys.readouterr().err
    word = next(a for a in argv if not a.startswith("-") and a not in ("80:80", "linux/amd64"))
    assert rc == 2, err
    assert err.splitlines()[0] == f"{prog}: error: unknown command '{word}'"
    assert f"{prog} {TOOLS[prog].default_command} {word}" in err  # how to mean the image (or directory)
    assert NO_CONTAINERD not in err


@pytest.mark.parametrize("prog,word,close", [
    ("ctk-run", "strat", "ctk-run start"), ("ctk-run", "crate", "ctk-run create"),
    ("ctk-run", "isnpect", "ctk-run inspect"), ("ctk-pull", "pul", "ctk-pull pull"),
    ("ctk-pull", "imgaes", "ctk-pull images"), ("ctk-net", "lss", "ctk-net ls"),
    ("ctk-crypt", "encyrpt", "ctk-crypt encrypt"), ("ctk-build", "biuld", "ctk-build build"),
])
def test_typos_say_did_you_mean(prog, word, close, capsys):
    assert _run(prog, word) == 2
    err = capsys.readouterr().err
    assert f"unknown command '{word}'" in err and f"did you mean '{close}'" in err


def test_a_command_of_another_tool_names_that_tool(capsys):
    assert _run("ctk-run", "images") == 2
    assert "ctk-pull images" in capsys.readouterr().err
    assert _run("ctk-pull", "rmi", "x") == 2
    assert "did you mean 'ctk-pull rm'" in capsys.readouterr().err


@pytest.mark.parametrize("word", [
    "busybox", "nginx", "alpine", "redis", "postgres", "python", "node", "rust", "ruby", "golang", "httpd",
    "mongo", "mysql", "ubuntu", "debian", "traefik", "registry", "caddy", "vault", "consul", "hello-world",
    "nats", "php", "ms", "pg", "nginx:alpine", "127.0.0.1:5000/x", "busybox@sha256:" + "0" * 64, "library/cp", "cp:1",
    ".", "-",
])
def test_real_refs_are_still_images(word):
    for prog, default in (("ctk-run", "run"), ("ctk-pull", "pull")):
        assert cli.unknown_command(prog, word, TOOLS[prog].commands, default) is None, (prog, word)


def test_explicit_sub_command_takes_any_word(capsys):
    """`ctk-run run cp` reaches the command (here: containerd, absent); `ctk-pull pull history` parses."""
    rc = _run("ctk-run", "run", "--pull", "never", "cp")
    assert rc not in (0, 2) and NO_CONTAINERD in capsys.readouterr().err
    pull_cli.make_context("ctk-pull", ["pull", "-q", "history"])  # no error: the word is pull's operand
    with pytest.raises(UsageError, match="unknown command 'history'"):
        pull_cli.make_context("ctk-pull", ["history"])


@pytest.mark.parametrize("prog", TOOLS)
def test_help_word_prints_help(prog, capsys):
    assert _run(prog, "help") == 0
    assert capsys.readouterr().out.startswith(f"Usage: {prog} [OPTIONS] COMMAND")
    sub = sorted(TOOLS[prog].commands)[0]
    assert _run(prog, "help", sub) == 0
    assert capsys.readouterr().out.startswith(f"Usage: {prog} {sub} ")


def test_volume_is_ctk_runs_own_command_now(capsys):
    """Issue 15: ctk-run has a `volume` group, so the word reaches it (not the front door's refusal, and not
    an image pull); ctk-pull still lacks it."""
    assert _run("ctk-run", "volume", "ls", "--help") == 0
    assert capsys.readouterr().out.startswith("Usage: ctk-run volume ls ")
    assert _run("ctk-run", "volume", "lss") == 2
    err = capsys.readouterr().err
    assert "lss" in err and "unknown command 'volume'" not in err


def test_unknown_word_in_a_group_without_default_is_one_line(capsys):
    assert _run("ctk-net", "volume") == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "ctk-net: error: unknown command 'volume'" and len(err) == 2


# --- --version ---------------------------------------------------------------------------------------------
def _installed_version(prog: str) -> str:
    for dist in (prog, "ctk"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise AssertionError("ctk is not installed")


@pytest.mark.parametrize("prog", TOOLS)
def test_version_on_every_tool(prog, capsys):
    assert _run(prog, "--version") == 0
    assert capsys.readouterr().out == f"{prog} version {_installed_version(prog)}\n"


@pytest.mark.parametrize("prog", TOOLS)
def test_version_json_asks_containerd_and_says_when_it_cannot(prog, capsys):
    rc = _run(prog, "--version", "--format", "json")
    cap = capsys.readouterr()
    rec = json.loads(cap.out)
    assert rec["Client"] == {"Name": prog, "Version": _installed_version(prog), "Python": rec["Client"]["Python"]}
    assert rec["Server"] is None and rc != 0 and NO_CONTAINERD in cap.err


def test_version_template_and_bad_template(capsys):
    assert _run("ctk-pull", "--version", "--format", "{{.Nope}}") == 2
    assert "unknown field '.Nope'" in capsys.readouterr().err


def test_version_does_not_load_grpc():
    """`--version` without --format json stays cheap: no gRPC stubs, no requests."""
    code = ("import sys; from ctk_shared import cli; from ctk_run.cli import cli as g; "
            "rc = cli.run(g, 'ctk-run', ['--version']); "
            "print(rc, sorted(m for m in ('grpc', 'requests', 'rich') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.splitlines()[-1] == "0 []", p.stdout + p.stderr


# --- -n inside sub-commands means what Docker means --------------------------------------------------------
def _params(group, name, argv):
    ctx = click.Context(group, info_name="ctk")
    cmd = group.commands[name]
    return cmd.make_context(name, argv, parent=ctx).params


def test_logs_n_is_tail_and_ps_n_is_last():
    assert _params(run_cli, "logs", ["-n", "2", "web"])["tail"] == "2"
    assert _params(run_cli, "ps", ["-n", "1"])["last"] == 1


@pytest.mark.parametrize("prog", TOOLS)
def test_no_sub_command_takes_n_as_the_namespace(prog):
    group = TOOLS[prog]
    assert "-n" in next(p for p in group.params if p.name == "namespace").opts  # before the sub-command
    for name, cmd in group.commands.items():
        ns = [p for p in cmd.params if p.name == "namespace"]
        assert all("-n" not in p.opts for p in ns), f"{prog} {name}"


# --- formats -----------------------------------------------------------------------------------------------
RECS = [{"ID": "abc", "Names": "web", "Image": "nginx:alpine", "CreatedAt": "now", "Labels": {"a": "b"}},
        {"ID": "defdef", "Names": "a-longer-name", "Image": "busybox", "CreatedAt": "then", "Labels": {}}]
COLS = [("CONTAINER ID", "ID"), ("IMAGE", "Image"), ("NAMES", "Names")]
FIELDS = ("ID", "Names", "Image", "CreatedAt", "Labels")


def test_table_prefix_prints_a_header_and_aligned_columns(capsys):
    output.emit_records(RECS, COLS, "table {{.Names}}\\t{{.ID}}\\t{{.CreatedAt}}", fields=FIELDS)
    assert capsys.readouterr().out.splitlines() == [
        "NAMES           CONTAINER ID   CREATED AT",
        "web             abc            now",
        "a-longer-name   defdef         then",
    ]
    output.emit_records(RECS, COLS, "table {{.Names}}", fields=FIELDS)
    assert capsys.readouterr().out.splitlines() == ["NAMES", "web", "a-longer-name"]


def test_plain_table_and_template(capsys):
    output.emit_records(RECS, COLS, "table", fields=FIELDS)
    assert capsys.readouterr().out.splitlines()[0] == "CONTAINER ID   IMAGE          NAMES"
    output.emit_records(RECS, COLS, "{{.Names}}={{json .Labels}}", fields=FIELDS)
    assert capsys.readouterr().out.splitlines() == ['web={"a":"b"}', "a-longer-name={}"]


@pytest.mark.parametrize("fmt,words", [
    ("{{.Nope}}", ["unknown field '.Nope'", "Names"]),
    ("table {{.Names}} {{.Nope}}", ["'.Nope'"]),
    ("{{", ["unclosed action"]),
    ("{{.Names", ["unclosed action"]),
    ("x }}", ["unexpected '}}'"]),
    ("{{upper .Names}}", ["unsupported action"]),
])
def test_bad_templates_are_usage_errors_before_any_output(fmt, words, capsys):
    with pytest.raises(UsageError) as e:
        output.emit_records(RECS, COLS, fmt, fields=FIELDS)
    assert e.value.exit_code == 2
    text = e.value.message + " " + (e.value.hint or "")
    assert all(w in text for w in words), text
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("prog,argv", [
    ("ctk-run", ["ps", "--format", "{{.Nope}}"]),
    ("ctk-pull", ["images", "--format", "{{"]),
    ("ctk-pull", ["images", "--format", "{{.Nope}}"]),
    ("ctk-net", ["ls", "--format", "{{.Nope}}"]),
])
def test_tools_check_templates_before_touching_containerd(prog, argv, capsys):
    assert _run(prog, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: --format") and NO_CONTAINERD not in err


def test_inspect_is_a_json_array_also_with_format_json(capsys):
    docs = [{"Id": "1", "State": {"Status": "running"}}, {"Id": "2", "State": {"Status": "exited"}}]
    output.emit_inspect(docs, None)
    assert json.loads(capsys.readouterr().out) == docs
    output.emit_inspect(docs, "json")
    assert json.loads(capsys.readouterr().out) == docs
    output.emit_inspect(docs, "{{.Id}} {{.State.Status}}")
    assert capsys.readouterr().out.splitlines() == ["1 running", "2 exited"]
    with pytest.raises(UsageError, match="'.Nope'"):
        output.emit_inspect(docs, "{{.Nope}}")
    assert capsys.readouterr().out == ""


def test_n_after_a_sub_command_that_has_none_says_where_it_goes(capsys):
    assert _run("ctk-pull", "images", "-n", "k8s.io") == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "ctk-pull: error: No such option '-n'."
    assert err[1].startswith("ctk-pull: hint: -n is the namespace only before the sub-command") and len(err) == 2
