"""The click side of the conventions: global options, stdin refs, and the one error/exit handler.

Every tool's ``main`` is ``run(group, "ctk-x")``; no other module in ctk_shared imports click.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import click

from . import config
from .errors import CtkError, ExitStatus, Failures, UsageError
from .exiting import exit_now
from .keyvalues import key_values as key_values  # its home is click-free; re-exported for the clis

F = TypeVar("F", bound=Callable[..., Any])

_FLAGS_KEY = "ctk_global_flags"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value != () and value is not False:
        ctx.find_root().meta.setdefault(_FLAGS_KEY, {})[param.name] = value
        if param.name == "debug":
            os.environ["CTK_DEBUG"] = "1"
        if param.name == "registry_timeout":
            config.parse_registry_timeout(value)  # refused when given, not at the first registry request
    return value


def global_options(f: F) -> F:
    """The options every tool takes (docs/CONVENTIONS.md); accepted before or after the sub-command."""
    opts = [
        click.option("--address", metavar="SOCKET", default=None, expose_value=False, callback=_remember,
                     help="containerd socket [$CONTAINERD_ADDRESS; default /run/containerd/containerd.sock]"),
        click.option("-n", "--namespace", default=None, expose_value=False, callback=_remember,
                     help="containerd namespace [$CONTAINERD_NAMESPACE; default 'default']"),
        click.option("--snapshotter", default=None, expose_value=False, callback=_remember,
                     help="snapshotter [$CONTAINERD_SNAPSHOTTER; default overlayfs]"),
        click.option("--data-root", default=None, expose_value=False, callback=_remember,
                     help="ctk state directory [default /var/lib/ctk]"),
        click.option("--cni-path", metavar="DIR", default=None, expose_value=False, callback=_remember,
                     help="CNI plugin directory [$CNI_PATH; default /usr/lib/cni]"),
        click.option("--cni-netconfpath", metavar="DIR", default=None, expose_value=False, callback=_remember,
                     help="CNI network config directory [$NETCONFPATH; default /etc/cni/net.d]"),
        click.option("--hosts-dir", multiple=True, expose_value=False, callback=_remember,
                     help="certs.d-style directory with per-registry CA/client certs (repeatable)"),
        click.option("--insecure-registry", is_flag=True, default=None, expose_value=False, callback=_remember,
                     help="skip TLS verification and allow plain HTTP"),
        click.option("--registry-timeout", metavar="SECONDS", default=None, expose_value=False, callback=_remember,
                     help="registry waits: CONNECT,RESPONSE,STALL seconds, or one number for all "
                          "[$CTK_REGISTRY_TIMEOUT; default 10,30,60]"),
        click.option("--debug", is_flag=True, default=None, expose_value=False, callback=_remember,
                     help="show tracebacks and debug logs"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def options(ctx: click.Context | None = None) -> config.GlobalOptions:
    """The merged global options for this invocation (flags > env > TOML > defaults)."""
    ctx = ctx or click.get_current_context()
    return config.resolve(dict(ctx.find_root().meta.get(_FLAGS_KEY, {})))


def confirm_prune(warning: str, force: bool) -> bool:
    """Docker's prune prompt (``WARNING! …`` then ``Are you sure you want to continue? [y/N]``); True to go on.

    As Docker, the answer is read from stdin even when it is not a terminal (``echo y | ctk-run prune`` works),
    and anything but y/yes keeps everything. Unlike Docker, the prompt goes to stderr (stdout carries results
    only), and a stdin that is not a terminal and gives no answer at all (``</dev/null``, a cron job) is a usage
    error with a hint to ``-f``: a script that forgot ``-f`` fails loudly instead of silently pruning nothing.
    """
    if force:
        return True
    sys.stderr.write(f"WARNING! {warning}\nAre you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline(64)
    if not answer and not sys.stdin.isatty():
        sys.stderr.write("\n")
        raise UsageError("no answer to the confirmation on stdin (not a terminal)",
                         hint="add -f (--force) to prune without a prompt")
    return answer.strip().lower() in ("y", "yes")


def _debug() -> bool:
    return os.environ.get("CTK_DEBUG", "").lower() in ("1", "true", "yes", "on")


def _error(prog: str, message: str, hint: str | None = None) -> None:
    sys.stderr.write(f"{prog}: error: {message}\n")
    if hint:
        sys.stderr.write(f"{prog}: hint: {hint}\n")
    sys.stderr.flush()


def _print_traceback() -> None:
    import traceback  # only for --debug: with textwrap, ~2 ms of every command's start otherwise

    traceback.print_exc()


def main(cli: click.Command, prog: str) -> NoReturn:
    """A tool's entry point: :func:`run`, then :func:`exit_now` when it can, else the ordinary exit. A command
    that ends with ``sys.exit(N)`` itself (``ctk-run run`` exits with the container's code) gets the same."""
    try:
        code = run(cli, prog)
    except SystemExit as e:
        if e.code is not None and not isinstance(e.code, int):
            raise  # sys.exit("message"): the interpreter prints it
        code = e.code or 0
    exit_now(code)
    sys.exit(code)


def run(cli: click.Command, prog: str, args: list[str] | None = None) -> int:
    """Run a click command with ctk's error contract; returns the exit code."""
    from .collector import startup

    startup()  # until the first containerd channel: see ctk_shared.collector
    try:
        rv = cli.main(args=args, prog_name=prog, standalone_mode=False)
        return int(rv) if isinstance(rv, int) else ExitStatus.OK
    except CtkError as e:
        if _debug():
            _print_traceback()
        for one in e.failures if isinstance(e, Failures) else [e]:
            _error(prog, one.message, one.hint)
        if e.exit_code == ExitStatus.INTERRUPTED:
            exit_now(e.exit_code, abandon_threads=True)
        return int(e.exit_code)
    except click.exceptions.Abort:
        _error(prog, "interrupted")
        exit_now(ExitStatus.INTERRUPTED, abandon_threads=True)
        return ExitStatus.INTERRUPTED
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.UsageError as e:
        if isinstance(e, _NO_ARGS_IS_HELP):
            e.show()  # the help text itself, for a bare `ctk-run`
            return int(e.exit_code)
        _error(prog, e.format_message(), _usage_hint(e, prog))
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return int(e.exit_code)
    except KeyboardInterrupt:
        _error(prog, "interrupted")
        exit_now(ExitStatus.INTERRUPTED, abandon_threads=True)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`| head`): not an error of ours; silence the flush at exit
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return ExitStatus.OK
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, traceback only with --debug
        if _debug():
            _print_traceback()
        _error(prog, f"unexpected {type(e).__name__}: {e}", "rerun with --debug for a traceback")
        return ExitStatus.FAILURE


# Sub-command words of Docker's and nerdctl's CLIs (top level, plus the management nouns). A first word in
# this list is never taken for an image or a build context: ``ctk-run cp …`` must not pull docker.io/library/cp.
# Swarm's ``node`` is left out on purpose: ``ctk-run node`` means the official Node.js image far more often.
DOCKER_COMMANDS: frozenset[str] = frozenset({
    "attach", "build", "builder", "buildx", "checkpoint", "commit", "completion", "compose", "config", "container",
    "context", "cp", "create", "diff", "events", "exec", "export", "help", "history", "image", "images", "import",
    "info", "init", "inspect", "kill", "load", "login", "logout", "logs", "manifest", "network", "pause", "plugin",
    "port", "prune", "ps", "pull", "push", "rename", "restart", "rm", "rmi", "run", "save", "scout", "search",
    "secret", "service", "stack", "start", "stats", "stop", "swarm", "system", "tag", "top", "trust", "unpause",
    "update", "version", "volume", "wait", "apparmor", "decrypt", "encrypt", "ipfs", "namespace", "ns", "convert",
    "ls"
})

# Where a Docker word lives in ctk, for the hint when it was typed to the wrong tool.
CTK_HOMES: dict[str, str] = {
    **{w: f"ctk-pull {w}" for w in ("pull", "push", "images", "tag", "login", "logout", "save", "load", "convert")},
    "rmi": "ctk-pull rm", "image": "ctk-pull",
    **{w: f"ctk-run {w}" for w in ("run", "create", "ps", "logs", "exec", "stop", "start", "restart", "kill",
                                    "wait", "port")},
    "container": "ctk-run", "network": "ctk-net", "build": "ctk-build", "builder": "ctk-build",
    "encrypt": "ctk-crypt encrypt", "decrypt": "ctk-crypt decrypt",
}

_IMAGE_CHARS = frozenset(":/@.")


def _edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment): a swapped pair of letters is one typo, as ``pul`` is."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def close_commands(word: str, commands: Iterable[str]) -> list[str]:
    """The sub-commands ``word`` is one typo away from (two for long words), or that difflib finds close.

    Tight on purpose: a real image name (``nginx``, ``redis``, ``rust``) must stay far from every command, and a
    two-letter word is never a typo (``ms`` is as likely an image as a mistyped ``ps``)."""
    import difflib

    names = [c for c in commands if not c.startswith("_")]
    limit = 2 if len(word) >= 6 else 1
    near = sorted((d, c) for c in names if (d := _edit_distance(word, c)) <= limit and len(word) >= 3)
    found = [c for _, c in near]
    for c in difflib.get_close_matches(word, names, n=2, cutoff=0.8):
        if c not in found:
            found.append(c)
    return found


def unknown_command(prog: str, word: str, commands: Iterable[str], default_command: str | None,
                    operand: str = "an image") -> UsageError | None:
    """The usage error for a first word that is a mistyped or missing sub-command, or None when it may be an
    operand of the default command (an image, a build context).

    A word with ``:``, ``/``, ``@`` or ``.`` is always an operand (``busybox:1``, ``127.0.0.1:5000/x``, ``.``).
    Otherwise a Docker/nerdctl command word the tool lacks, or a word close to one of its sub-commands, is an
    error: with internet access a typo would otherwise pull and run somebody's image."""
    commands = list(commands)
    if word in commands or _IMAGE_CHARS & set(word):
        return None
    close = close_commands(word, commands)
    if default_command is not None and word not in DOCKER_COMMANDS and not close:
        return None
    hints: list[str] = []
    if word == "version":
        hints.append(f"did you mean '{prog} --version'?")
    elif close:
        hints.append("did you mean " + " or ".join(f"'{prog} {c}'" for c in close) + "?")
    elif (home := CTK_HOMES.get(word)) and home.split()[0] != prog:
        hints.append(f"'{word}' is done by {home}")
    elif home and home != prog:
        hints.append(f"did you mean '{home}'?")  # Docker's alias of one of our own commands (rmi)
    else:
        hints.append(f"see '{prog} --help'")
    if default_command is not None:
        hints.append(f"({operand} named '{word}': {prog} {default_command} {word})")
    return UsageError(f"unknown command '{word}'", hint=" ".join(hints))


def tool_version(prog: str) -> str:
    """The tool's version from its installed distribution (``ctk-run``, or the umbrella ``ctk``): no import of
    the tool, so ``--version`` costs one metadata read."""
    from importlib import metadata

    for dist in (prog, "ctk"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def version_record(prog: str, with_server: bool) -> tuple[dict[str, Any], CtkError | None]:
    """``{"Client": {...}, "Server": {"Containerd": {...}}}``; the server part only when asked (it dials
    containerd), and None with the error when containerd cannot be reached, as ``docker version`` does."""
    rec: dict[str, Any] = {"Client": {"Name": prog, "Version": tool_version(prog),
                                      "Python": sys.version.split()[0]}}
    if not with_server:
        return rec, None
    from . import connect

    try:
        version, revision = connect.containerd(options()).version()
    except CtkError as e:
        rec["Server"] = None
        return rec, e
    rec["Server"] = {"Containerd": {"Version": version, "Revision": revision}}
    return rec, None


class HelpGroup(click.Group):
    """A group whose command list shows each sub-command's whole first sentence, wrapped: click cuts it at the
    terminal's width with ``...``, which hides what half the commands do. Sub-groups (``ctk-run volume``) are
    made with this class too."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1 << 20)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


HelpGroup.group_class = HelpGroup


class CtkGroup(HelpGroup):
    """Every tool's top-level group: ``--version``, ``help [COMMAND]``, and one error for unknown words.

    ``-n`` means the namespace only before a sub-command (docs/CONVENTIONS.md): sub-commands get ``--namespace`` without
    the short form, so their own ``-n`` can mean what Docker means (``logs -n`` = ``--tail``, ``ps -n`` =
    ``--last``)."""

    default_command: str | None = None

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.params.append(click.Option(["--version"], is_flag=True, expose_value=False,
                                        help="print the version and exit (with --format json: containerd's too)"))

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        for p in cmd.params:
            if isinstance(p, click.Option) and "--namespace" in p.opts and "-n" in p.opts:
                p.opts.remove("-n")
        super().add_command(cmd, name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                             list[str]]:
        name = args[0] if args else ""
        if name and self.get_command(ctx, name) is None and not name.startswith("-"):
            raise unknown_command(ctx.command_path, name, self.list_commands(ctx), None) or \
                UsageError(f"unknown command '{name}'", hint=f"see '{ctx.command_path} --help'")
        return super().resolve_command(ctx, args)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first, version, fmt = self._leading(args)
        if version:
            # parse the group's own options (--address, --namespace …) so the server part dials the right one
            rest = [a for i, a in enumerate(args[:first]) if not self._is_version_token(args, i)]
            if rest:  # (an empty list would be no_args_is_help's cue)
                click.Command.parse_args(self, ctx, rest)
            self._print_version(ctx, fmt)
        if first < len(args) and args[first] == "help" and "help" not in self.commands:
            self._print_help(ctx, args[first + 1:])
        return super().parse_args(ctx, self.insert_default(ctx, args, first))

    def insert_default(self, ctx: click.Context, args: list[str], first: int) -> list[str]:
        """Hook of :class:`DefaultCommandGroup`; a plain group leaves the words alone."""
        return args

    # --- the leading group options -------------------------------------------------------------------------
    def _leading(self, args: list[str]) -> tuple[int, bool, str | None]:
        """(index of the first token that is not a group option, whether --version is among them, its
        --format); ``--format`` counts as a group option only next to --version."""
        has_version = "--version" in args
        i, version, fmt = 0, False, None
        while i < len(args):
            a = args[i]
            if a == "--" or not a.startswith("-") or a == "-":
                break
            if a == "--version":
                version, i = True, i + 1
                continue
            if has_version and (a == "--format" or a.startswith("--format=")):
                if "=" in a:
                    fmt, i = a.split("=", 1)[1], i + 1
                else:
                    fmt, i = (args[i + 1] if i + 1 < len(args) else None), i + 2
                continue
            opt = self._find_option(a.split("=", 1)[0])
            if opt is None:
                break
            i += 1
            if not opt.is_flag and "=" not in a and not opt.count:
                i += 1
        return i, version, fmt

    def _is_version_token(self, args: list[str], i: int) -> bool:
        a = args[i]
        return a == "--version" or a == "--format" or a.startswith("--format=") or \
            (i > 0 and args[i - 1] == "--format")

    def _find_option(self, name: str) -> click.Option | None:
        for p in self.params:
            if isinstance(p, click.Option) and name in p.opts + p.secondary_opts:
                return p
        return None

    def _print_version(self, ctx: click.Context, fmt: str | None) -> None:
        from . import output

        prog = ctx.command_path
        if fmt is not None and fmt != "json":
            template = output.Template.parse(fmt, ["Client", "Server"])
        rec, err = version_record(prog, fmt is not None)
        if fmt is None:
            output.emit_line(f"{prog} version {rec['Client']['Version']}")
        elif fmt == "json":
            output.emit_json(rec)
        else:
            output.emit_line(template.render(rec))
        if err is not None:
            raise err
        ctx.exit(0)

    def _print_help(self, ctx: click.Context, rest: list[str]) -> None:
        """``help`` and ``help COMMAND``, as Docker's ``docker help run``."""
        if rest and self.get_command(ctx, rest[0]) is not None:
            cmd = self.get_command(ctx, rest[0])
            assert cmd is not None
            cmd.make_context(rest[0], ["--help"], parent=ctx)  # prints the help and exits
        if rest:
            raise unknown_command(ctx.command_path, rest[0], self.list_commands(ctx), None) or \
                UsageError(f"unknown command '{rest[0]}'", hint=f"see '{ctx.command_path} --help'")
        click.echo(ctx.get_help())
        ctx.exit(0)


_NO_ARGS_IS_HELP: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if t is not None)


def _usage_hint(e: click.UsageError, prog: str) -> str:
    """The hint under a click usage error: where the flags are listed, and why ``-n`` may be unknown."""
    where = e.ctx.command_path if e.ctx is not None else prog
    if isinstance(e, click.NoSuchOption) and e.option_name == "-n":
        return f"-n is the namespace only before the sub-command ({prog} -n NS COMMAND …); --namespace works anywhere"
    return f"see '{where} --help'"


class DefaultCommandGroup(CtkGroup):
    """A group whose first word, when it is no sub-command, runs a default command: ``ctk-pull REF`` means
    ``ctk-pull pull REF``. A word that is a mistyped or missing sub-command is refused instead (see
    :func:`unknown_command`); ``operand_is_path`` says the default command's operand is a path (ctk-build's
    CONTEXT), so an existing file or directory of that name is taken as it."""

    def __init__(self, *a: Any, default_command: str, operand_is_path: bool = False, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.default_command = default_command
        self.operand_is_path = operand_is_path

    def insert_default(self, ctx: click.Context, args: list[str], first: int) -> list[str]:
        default = self.default_command
        assert default is not None
        if first >= len(args):
            if args and not any(a in ("--help", "-h") for a in args):
                return args + [default]
            return args
        a = args[first]
        if a == "--" or a in self.commands:
            return args
        if a in ("--help", "-h"):
            return args
        args = args[:first] + [default] + args[first:]
        self._check_operand(ctx, args[first + 1:])
        return args

    def _check_operand(self, ctx: click.Context, rest: list[str]) -> None:
        """Refuse the implicit default command when its first operand is a command word (``ctk-run cp``,
        also after options: ``ctk-run --rm cp``). The default command's own parser finds the operand."""
        cmd = self.commands[self.default_command or ""]
        try:
            sub = click.Context(cmd, parent=ctx, info_name=self.default_command,
                                **{**cmd.context_settings, "resilient_parsing": True})
            values, _, _ = cmd.make_parser(sub).parse_args(list(rest))
        except click.ClickException:
            return  # the real parse reports it
        operand = next((p for p in cmd.params if isinstance(p, click.Argument)), None)
        value = values.get(operand.name) if operand is not None and operand.name else None
        if isinstance(value, (tuple, list)):
            value = value[0] if value else None
        if not isinstance(value, str) or value == "-":
            return
        word = value
        if self.operand_is_path and os.path.exists(word):
            return
        err = unknown_command(ctx.command_path, word, self.list_commands(ctx), self.default_command,
                              "a directory" if self.operand_is_path else "an image")
        if err is not None:
            raise err
