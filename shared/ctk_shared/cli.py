"""The click side of the conventions: global options, stdin refs, and the one error/exit handler.

Every tool's ``main`` is ``run(group, "ctk-x")``; no other module in ctk_shared imports click.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click

from . import config
from .errors import CtkError, ExitStatus, UsageError

F = TypeVar("F", bound=Callable[..., Any])

_FLAGS_KEY = "ctk_global_flags"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value != () and value is not False:
        ctx.find_root().meta.setdefault(_FLAGS_KEY, {})[param.name] = value
        if param.name == "debug":
            os.environ["CTK_DEBUG"] = "1"
    return value


def global_options(f: F) -> F:
    """The options every tool takes (DESIGN §3); accepted before or after the sub-command."""
    opts = [
        click.option("--address", metavar="SOCKET", default=None, expose_value=False, callback=_remember,
                     help="containerd socket [$CONTAINERD_ADDRESS; default /run/containerd/containerd.sock]"),
        click.option("-n", "--namespace", default=None, expose_value=False, callback=_remember,
                     help="containerd namespace [$CONTAINERD_NAMESPACE; default 'default']"),
        click.option("--snapshotter", default=None, expose_value=False, callback=_remember,
                     help="snapshotter [$CONTAINERD_SNAPSHOTTER; default overlayfs]"),
        click.option("--data-root", default=None, expose_value=False, callback=_remember,
                     help="ctk state directory [default /var/lib/ctk]"),
        click.option("--cni-path", default=None, expose_value=False, callback=_remember, hidden=True),
        click.option("--cni-netconfpath", default=None, expose_value=False, callback=_remember, hidden=True),
        click.option("--hosts-dir", multiple=True, expose_value=False, callback=_remember,
                     help="certs.d-style directory with per-registry CA/client certs (repeatable)"),
        click.option("--insecure-registry", is_flag=True, default=None, expose_value=False, callback=_remember,
                     help="skip TLS verification and allow plain HTTP"),
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


def refs_from_args(args: Iterable[str], stdin: Iterable[str] | None = None) -> Iterator[str]:
    """Expand ``-`` into refs read from stdin: a bare ref per line, or a JSON record carrying one.

    A ``-`` that reads no ref is a usage error, never an empty success: in ``ctk-build -q … | ctk-pull push -``
    a failed build leaves stdin empty, and the pipeline's last stage must not report a push that never
    happened."""
    for arg in args:
        if arg != "-":
            yield arg
            continue
        found = False
        for line in stdin if stdin is not None else sys.stdin:
            ref = ref_from_line(line)
            if ref:
                found = True
                yield ref
        if not found:
            raise UsageError("no image reference on stdin (an argument '-' reads them from stdin)",
                             hint="did the command before the pipe fail?")


def ref_from_line(line: str) -> str:
    line = line.strip()
    if not line:
        return ""
    if not line.startswith("{"):
        return line
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise CtkError(f"stdin: not a ref and not valid JSON: {line[:80]!r}") from e
    for key in ("ref", "Ref", "Name", "name"):
        if isinstance(rec.get(key), str) and rec[key]:
            return str(rec[key])
    repo, tag = rec.get("Repository"), rec.get("Tag")
    if isinstance(repo, str) and repo and repo != "<none>":
        return f"{repo}:{tag}" if isinstance(tag, str) and tag and tag != "<none>" else repo
    raise CtkError(f"stdin: JSON record has no ref/Name/Repository field: {line[:80]!r}")


def labels_from_args(items: Iterable[str], flag: str = "--label") -> dict[str, str]:
    """Repeated ``--label KEY=VALUE`` values as a dict (a later KEY wins; ``KEY`` alone is an empty value)."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _debug() -> bool:
    return os.environ.get("CTK_DEBUG", "").lower() in ("1", "true", "yes", "on")


def _error(prog: str, message: str, hint: str | None = None) -> None:
    sys.stderr.write(f"{prog}: error: {message}\n")
    if hint:
        sys.stderr.write(f"{prog}: hint: {hint}\n")
    sys.stderr.flush()


def run(cli: click.Command, prog: str, args: list[str] | None = None) -> int:
    """Run a click command with ctk's error contract; returns the exit code."""
    try:
        rv = cli.main(args=args, prog_name=prog, standalone_mode=False)
        return int(rv) if isinstance(rv, int) else ExitStatus.OK
    except CtkError as e:
        if _debug():
            traceback.print_exc()
        _error(prog, e.message, e.hint)
        return int(e.exit_code)
    except click.exceptions.Abort:
        _error(prog, "interrupted")
        return ExitStatus.INTERRUPTED
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return int(e.exit_code)
    except KeyboardInterrupt:
        _error(prog, "interrupted")
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
            traceback.print_exc()
        _error(prog, f"unexpected {type(e).__name__}: {e}", "rerun with --debug for a traceback")
        return ExitStatus.FAILURE


class DefaultCommandGroup(click.Group):
    """A group whose unknown first word runs a default command: ``ctk-pull REF`` means ``ctk-pull pull REF``."""

    def __init__(self, *a: Any, default_command: str, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.default_command = default_command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # find the first word that is not a group option; if it is no sub-command, insert the default
        i = 0
        while i < len(args):
            a = args[i]
            if a == "--":
                break
            if a.startswith("-") and a != "-":
                opt = self._find_option(a.split("=", 1)[0])
                if opt is None:
                    if a in ("--help", "-h"):
                        break
                    # an option of the default command (``ctk-pull --platform x REF``)
                    args = args[:i] + [self.default_command] + args[i:]
                    break
                i += 1
                if not opt.is_flag and "=" not in a and not opt.count:
                    i += 1
                continue
            if a not in self.commands:
                args = args[:i] + [self.default_command] + args[i:]
            break
        else:
            if args and not any(a in ("--help", "-h") for a in args):
                args = args + [self.default_command]
        return super().parse_args(ctx, args)

    def _find_option(self, name: str) -> click.Option | None:
        for p in self.params:
            if isinstance(p, click.Option) and name in p.opts + p.secondary_opts:
                return p
        return None
