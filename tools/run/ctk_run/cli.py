"""The ctk-run command line: Docker's container commands over containerd.

`ctk-run [OPTIONS] IMAGE [COMMAND...]` runs a container (same as `ctk-run run …`). Heavy modules are imported
inside the commands that need them.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import ctk_shared  # noqa: F401 -- before click: importing it sets up the stdlib stand-ins (see its __init__)

# isort: split
import click
from ctk_shared import cli as shared_cli

if TYPE_CHECKING:
    from ctk_shared.containerd import Client

    from .ops import Outcome

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
# `run` and `exec` stop at the image/command (its flags are the container's), and keep -h for --hostname
RUN_CONTEXT = {**CONTEXT, "help_option_names": ["--help"], "allow_interspersed_args": False}


@click.group(cls=shared_cli.DefaultCommandGroup, default_command="run", context_settings=CONTEXT,
             no_args_is_help=True)
@shared_cli.global_options
def cli() -> None:
    """Containers on containerd, the Docker way.

    `ctk-run [RUN-FLAGS] IMAGE [COMMAND]` runs a container, the same as `ctk-run run …` (IMAGE may be `-`: the
    first ref on stdin). The flags of run (-d, -it, -p, -v, --name, --rm, …) are listed by `ctk-run run --help`;
    the flags of any command by `ctk-run COMMAND --help`. The options below go before or after the command.
    """


def _client() -> Client:
    from ctk_shared import connect

    return connect.containerd(shared_cli.options())


def _report(outcomes: Iterable[Outcome]) -> None:
    """A multi-target command's outcomes as they come: each done target's name on stdout (as Docker prints
    them), then every failure, one line each (docs/CONVENTIONS.md §4)."""
    from ctk_shared import output
    from ctk_shared.errors import CtkError, raise_failures

    failures: list[CtkError] = []
    for outcome in outcomes:
        if outcome.error is None:
            output.emit_line(outcome.target)
        else:
            failures.append(outcome.error)
    raise_failures(failures)


def _image_arg(text: str) -> str:
    """IMAGE of run/create; `-` is the first ref on stdin (none there: a usage error, 125 under run_errors)."""
    from ctk_shared.output import refs_from_args

    return next(refs_from_args([text]))


_decryption_key_opt = click.option("--decryption-key", "decryption_keys", multiple=True, metavar="KEY[:pass=…]",
                                   help="private key (or cert) for an encrypted image's layers (repeatable)")


_CONTAINER_OPTIONS = [
    click.argument("image"),
    click.argument("command", nargs=-1, type=click.UNPROCESSED),
    click.option("-i", "--interactive", is_flag=True, help="keep stdin open"),
    click.option("-t", "--tty", is_flag=True, help="allocate a pseudo-TTY"),
    click.option("--rm", "auto_remove", is_flag=True, help="remove the container when it exits"),
    click.option("--name", help="container name (unique in the namespace)"),
    click.option("-e", "--env", multiple=True, help="KEY=VALUE, or KEY to take it from this environment"),
    click.option("--env-file", multiple=True, help="read KEY=VALUE lines from a file (repeatable)"),
    click.option("-w", "--workdir", help="working directory inside the container"),
    click.option("-u", "--user", help="name|uid[:group|gid]"),
    click.option("--entrypoint", help="override the image's entrypoint ('' clears it)"),
    click.option("-h", "--hostname", help="the container's host name (default: its short ID)"),
    click.option("-v", "--volume", multiple=True, help="SRC:DST[:ro] bind mount, NAME:DST volume, or DST"),
    click.option("--mount", multiple=True, help="type=bind|volume|tmpfs,source=…,target=…[,readonly]"),
    click.option("--tmpfs", multiple=True, help="DST[:size=64m,mode=1777]"),
    click.option("--volumes-from", multiple=True, help="CONTAINER[:ro|:rw]: the volumes and binds of a container"),
    click.option("--read-only", is_flag=True, help="mount the root filesystem read-only"),
    click.option("--cap-add", multiple=True, help="add a Linux capability (e.g. NET_ADMIN, or ALL)"),
    click.option("--cap-drop", multiple=True, help="drop a Linux capability (e.g. CHOWN, or ALL)"),
    click.option("--privileged", is_flag=True, help="all capabilities and devices, no seccomp/masked paths"),
    click.option("--security-opt", multiple=True, help="seccomp=unconfined|PROFILE.json, no-new-privileges"),
    click.option("--cpus", help="number of CPUs (e.g. 1.5)"),
    click.option("-m", "--memory", help="memory limit (e.g. 512m)"),
    click.option("--pids-limit", type=int, help="maximum number of processes (-1: unlimited)"),
    click.option("--ulimit", multiple=True, help="TYPE=SOFT[:HARD], e.g. nofile=1024:2048"),
    click.option("--shm-size", help="size of /dev/shm (default 64m)"),
    click.option("-l", "--label", multiple=True, help="KEY=VALUE"),
    click.option("--stop-signal", help="signal that stops the container (default: the image's, else SIGTERM)"),
    click.option("--stop-timeout", type=int, help="seconds `stop` waits before SIGKILL (default 10)"),
    click.option("--init", is_flag=True, help="run an init process that reaps zombies and forwards signals"),
    click.option("--platform", help="os/arch[/variant] of the image"),
    click.option("--restart", default="no", show_default=True, help="no|always|unless-stopped|on-failure[:N]"),
    click.option("--health-cmd", metavar="COMMAND", help="command to run to check health (run by /bin/sh -c in the container)"),
    click.option("--health-interval", metavar="DURATION", help="time between running the check (ms|s|m|h) (default 30s)"),
    click.option("--health-timeout", metavar="DURATION", help="maximum time to allow one check to run (ms|s|m|h) (default 30s)"),
    click.option("--health-retries", metavar="INTEGER", help="consecutive failures needed to report unhealthy (default 3)"),
    click.option("--health-start-period", metavar="DURATION", help="start period in which failures do not count (ms|s|m|h) (default 0s)"),
    click.option("--health-start-interval", metavar="DURATION", help="time between checks during the start period (ms|s|m|h) "
                 "(default 5s)"),
    click.option("--no-healthcheck", is_flag=True, help="disable any container-specified HEALTHCHECK"),
    click.option("--pull", type=click.Choice(["missing", "always", "never"]), default="missing", show_default=True,
                 help="when to pull the image"),
    click.option("--network", "--net", "network", multiple=True,
                 help="bridge (default), host, none, container:NAME|ID, or a network made with ctk-net create; "
                      "name=NET,alias=A,ip=IP sets aliases and the address on it (repeatable)"),
    click.option("--network-alias", "--net-alias", "network_alias", multiple=True, metavar="ALIAS",
                 help="another name of the container on its (first, user-defined) network (repeatable)"),
    click.option("-p", "--publish", multiple=True,
                 help="[ip:][hostPort[-range]:]containerPort[-range][/tcp|udp|sctp]; an IPv6 ip in brackets"),
    click.option("-P", "--publish-all", is_flag=True, help="publish every EXPOSEd port to a free host port"),
    click.option("--ip", help="IPv4 address on the first network"),
    click.option("--dns", multiple=True, help="nameserver for resolv.conf"),
    click.option("--dns-search", multiple=True, help="search domain for resolv.conf"),
    click.option("--dns-option", "--dns-opt", "dns_option", multiple=True, help="resolv.conf option (e.g. ndots:2)"),
    click.option("--add-host", multiple=True, help="HOST:IP or HOST:host-gateway, added to /etc/hosts"),
    _decryption_key_opt,
    click.option("-q", "--quiet", is_flag=True, help="no pull progress"),
]


def _container_options(f: F) -> F:
    """The flags of ``run`` and ``create`` (Docker's ``create`` takes all of ``run``'s but -d)."""
    for opt in reversed(_CONTAINER_OPTIONS):
        f = opt(f)
    return f


@cli.command(context_settings=RUN_CONTEXT)
@_container_options
@click.option("-d", "--detach", is_flag=True, help="run in the background and print the container ID")
@click.option("--detach-keys", metavar="KEYS", help="keys that detach from a -it container, leaving it running "
              "(default ctrl-p,ctrl-q)")
@click.option("--sig-proxy/--no-sig-proxy", default=True, show_default=True,
              help="forward signals to the container (without a terminal)")
@shared_cli.global_options
def run(image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Run a command in a new container."""
    from ctk_shared import output

    from . import errors

    with errors.run_errors(lambda: shared_cli.options().data_root):
        client = _client()
        client.connect_soon()  # the handshake overlaps with the imports and checks below
        from . import ops
        from .options import RunOptions

        opts = RunOptions(image=_image_arg(image), command=command, **kw)
        result = ops.run(client, shared_cli.options(), opts)
    if opts.detach:
        output.emit_line(result.container_id)
    sys.stdout.flush()
    sys.exit(result.exit_code)


@cli.command(context_settings=RUN_CONTEXT)
@_container_options
@shared_cli.global_options
def create(image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create a container without starting it; print its ID (start it with `ctk-run start`)."""
    from ctk_shared import output

    from . import errors, ops
    from .options import ContainerOptions

    with errors.run_errors(lambda: shared_cli.options().data_root):
        opts = ContainerOptions(image=_image_arg(image), command=command, **kw)
        created = ops.create(_client(), shared_cli.options(), opts)
    output.emit_line(created.container_id)


@cli.command(context_settings=CONTEXT)
@click.option("-a", "--all", "all_", is_flag=True, help="also stopped containers")
@click.option("-q", "--quiet", is_flag=True, help="only IDs")
@click.option("-f", "--filter", "filters", multiple=True, help="name=…, status=…, id=…, label=…, volume=…, health=…")
@click.option("--format", "fmt", help="table, json, or a template like '{{.Names}}'")
@click.option("--no-trunc", is_flag=True, help="full IDs and commands")
@click.option("-n", "--last", type=int, help="only the N most recent (also stopped ones, as Docker)")
@shared_cli.global_options
def ps(all_: bool, quiet: bool, filters: tuple[str, ...], fmt: str | None, no_trunc: bool, last: int | None) -> None:
    """List containers (a table on a terminal, JSON lines otherwise)."""
    from ctk_shared import output

    from . import listing
    from .options import PsOptions

    found = listing.ps(_client(), shared_cli.options(), PsOptions(all_, quiet, filters, fmt, no_trunc, last))
    output.emit_records(found.records, listing.PS_COLUMNS, fmt, quiet_field="ID", quiet=quiet,
                        fields=listing.PS_FIELDS)


@cli.command(context_settings=CONTEXT)
@click.argument("container")
@click.option("-f", "--follow", is_flag=True, help="keep printing new output until the container stops")
@click.option("-n", "--tail", default="all", help="number of lines from the end, or all")
@click.option("--since", help="e.g. 10m, 2024-01-01T00:00:00Z")
@click.option("--until", help="only output before this time (e.g. 5m, 2024-01-01T00:00:00Z)")
@click.option("-t", "--timestamps", is_flag=True, help="prefix each line with its RFC 3339 time")
@shared_cli.global_options
def logs(container: str, follow: bool, tail: str, since: str | None, until: str | None, timestamps: bool) -> None:
    """Show a container's output (stdout to stdout, stderr to stderr)."""
    from . import ops
    from .options import LogsOptions

    opts = LogsOptions(container=container, follow=follow, tail=tail, since=since, until=until, timestamps=timestamps)
    for stream, data in ops.logs(_client(), shared_cli.options(), opts):
        target = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
        target.write(data)
        target.flush()


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=int, help="seconds to wait before SIGKILL (default 10)")
@click.option("-s", "--signal", "sig", help="signal to send first (default: the stop signal, SIGTERM)")
@shared_cli.global_options
def stop(containers: tuple[str, ...], timeout: int | None, sig: str | None) -> None:
    """Stop running containers; their restart policy will not start them again."""
    from . import ops
    from .options import StopOptions

    _report(ops.stop(_client(), shared_cli.options(), StopOptions(containers=containers, timeout=timeout, sig=sig)))


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@click.option("-a", "--attach", is_flag=True, help="attach to its output (and terminal) until it exits")
@click.option("-i", "--interactive", is_flag=True, help="attach its stdin too")
@click.option("--detach-keys", metavar="KEYS", help="keys that detach, leaving it running (default ctrl-p,ctrl-q)")
@_decryption_key_opt
@shared_cli.global_options
def start(containers: tuple[str, ...], attach: bool, interactive: bool, detach_keys: str | None,
          decryption_keys: tuple[str, ...]) -> None:
    """Start stopped containers (in the background; with -a/-i attached, exiting with its status).

    The first start of a container from an encrypted image that ctk-run did not create needs --decryption-key.
    """
    from . import ops
    from .options import StartOptions

    opts = StartOptions(containers=containers, attach=attach, interactive=interactive, detach_keys=detach_keys,
                        decryption_keys=decryption_keys)
    started = ops.start(_client(), shared_cli.options(), opts)
    if started.exit_code is not None:
        sys.stdout.flush()
        sys.exit(started.exit_code)
    _report(started.outcomes)


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=int, help="seconds to wait for the stop before SIGKILL (default 10)")
@shared_cli.global_options
def restart(containers: tuple[str, ...], timeout: int | None) -> None:
    """Stop, then start containers."""
    from . import ops
    from .options import RestartOptions

    _report(ops.restart(_client(), shared_cli.options(), RestartOptions(containers=containers, timeout=timeout)))


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="signal name or number")
@shared_cli.global_options
def kill(containers: tuple[str, ...], sig: str) -> None:
    """Send a signal to containers."""
    from . import ops
    from .options import KillOptions

    _report(ops.kill(_client(), shared_cli.options(), KillOptions(containers=containers, sig=sig)))


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="kill and remove running containers")
@click.option("-v", "--volumes", is_flag=True, help="also remove the container's anonymous volumes")
@shared_cli.global_options
def rm(containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove containers (with their snapshot and logs)."""
    from . import ops
    from .options import RmOptions

    _report(ops.rm(_client(), shared_cli.options(), RmOptions(containers=containers, force=force, volumes=volumes)))


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@click.option("--condition", type=click.Choice(["not-running", "removed", "healthy"]), default="not-running",
              show_default=True, help="wait until stopped (print the exit code), removed (likewise), or healthy "
              "(ctk: exit 1 if it is unhealthy or stops first)")
@shared_cli.global_options
def wait(containers: tuple[str, ...], condition: str) -> None:
    """Block until containers stop (or are removed, or healthy); print their exit codes."""
    from ctk_shared import output

    from . import ops
    from .options import WaitOptions

    for code in ops.wait(_client(), shared_cli.options(), WaitOptions(containers=containers, condition=condition)):
        if code is not None:
            output.emit_line(str(code))


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="json (the default: a JSON array), or a template like '{{.State.Status}}'")
@shared_cli.global_options
def inspect(containers: tuple[str, ...], fmt: str | None) -> None:
    """Show containers' configuration and state as JSON (Docker's field names)."""
    from ctk_shared import output

    from . import ops
    from .options import InspectOptions

    output.emit_inspect(ops.inspect(_client(), shared_cli.options(), InspectOptions(containers, fmt)).docs, fmt)


@cli.command(context_settings=CONTEXT)
@click.argument("container")
@click.argument("private_port", required=False, metavar="[PRIVATE_PORT[/PROTO]]")
@shared_cli.global_options
def port(container: str, private_port: str | None) -> None:
    """List a container's published ports (`80/tcp -> 0.0.0.0:8080`), or the host side of one of them."""
    from ctk_shared import output

    from . import ops
    from .options import PortOptions

    for line in ops.port(_client(), shared_cli.options(), PortOptions(container, private_port)).lines:
        output.emit_line(line)


@cli.command(context_settings=CONTEXT)
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DEST")
@click.option("-a", "--archive", is_flag=True, help="keep uid/gid of the source (else: root in the container, "
                                                     "your user on the host)")
@click.option("-L", "--follow-link", is_flag=True, help="copy what SRC's last symbolic link points at, not the link")
@click.option("-q", "--quiet", is_flag=True, help="no 'Successfully copied' line on a terminal")
@shared_cli.global_options
def cp(src: str, dst: str, archive: bool, follow_link: bool, quiet: bool) -> None:
    """Copy files between a container (running or stopped) and the host.

    \b
    ctk-run cp CONTAINER:SRC_PATH DEST_PATH|-
    ctk-run cp SRC_PATH|- CONTAINER:DEST_PATH
    SRC_PATH ending in /. copies a directory's contents; `-` is a tar on stdin or stdout.
    """
    from .cp import copy
    from .options import CpOptions

    streams = {"stdin": sys.stdin.buffer, "stdout": sys.stdout.buffer} if "-" in (src, dst) else {}
    done = copy(_client(), shared_cli.options(), CpOptions(src, dst, archive, follow_link, quiet, **streams))
    if not quiet and sys.stderr.isatty() and done.dest is not None:  # Docker's summary line
        sys.stderr.write(done.summary())


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1)
@click.option("-a", "--all", "all_", is_flag=True, help="all containers (default: the running ones)")
@click.option("--no-stream", is_flag=True, help="print one table and exit (also when stdout is not a terminal)")
@click.option("--no-trunc", is_flag=True, help="full container IDs")
@click.option("--format", "fmt", help="table, json, or a template like '{{.Name}} {{.CPUPerc}}'")
@shared_cli.global_options
def stats(containers: tuple[str, ...], all_: bool, no_stream: bool, no_trunc: bool, fmt: str | None) -> None:
    """Live resource use of containers: CPU %, memory, network and block I/O, PIDs (Ctrl-C ends it)."""
    import io
    from contextlib import redirect_stdout

    from ctk_shared import output

    from . import stats as st
    from .options import StatsOptions

    live = not no_stream and output.stdout_is_tty() and fmt != "json"
    tables = st.stats(_client(), shared_cli.options(), StatsOptions(containers, all_, not live, no_trunc, fmt))
    if not live:
        for rows in tables:
            output.emit_records(rows, st.COLUMNS, fmt, fields=st.FIELDS)
        return
    try:
        for rows in tables:  # the live view: each table redrawn in place
            buf = io.StringIO()
            with redirect_stdout(buf):
                output.emit_records(rows, st.COLUMNS, fmt or "table", fields=st.FIELDS)
            sys.stdout.write(st.CLEAR + buf.getvalue())
            sys.stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C is how the live view ends: no error line
        sys.stdout.write("\n")
        sys.stdout.flush()
        sys.exit(130)


@cli.command(context_settings={**CONTEXT, "allow_interspersed_args": False, "ignore_unknown_options": True})
@click.argument("container")
@click.argument("ps_options", nargs=-1, type=click.UNPROCESSED, metavar="[PS OPTIONS]")
@shared_cli.global_options
def top(container: str, ps_options: tuple[str, ...]) -> None:
    """The processes of a running container, as the host's `ps` shows them (options: ps's, default -ef)."""
    from ctk_shared import output

    from .options import TopOptions
    from .top import top as do_top

    found = do_top(_client(), shared_cli.options(), TopOptions(container=container, ps_options=ps_options))
    output.emit_records(found.records, found.columns, "json" if output.wants_json(None) else "table")


@cli.command(context_settings=CONTEXT)
@click.option("--since", help="also replay what container records still show from this time (10m, RFC 3339, "
                               "unix seconds): each container's create, last start and last die")
@click.option("--until", help="stop at this time (10m ago, RFC 3339, unix seconds); a past time ends at once")
@click.option("-f", "--filter", "filters", multiple=True,
              help="container=NAME|ID, event=start|die|…, type=container, image=…, label=KEY[=VALUE]")
@click.option("--format", "fmt", help="json, or a template like '{{.Action}} {{.Actor.Attributes.name}}'")
@shared_cli.global_options
def events(since: str | None, until: str | None, filters: tuple[str, ...], fmt: str | None) -> None:
    """Stream container events (create, start, die, pause, unpause, rename, destroy, exec_*, oom, health_status).

    Lines like Docker's on a terminal, JSON lines otherwise. containerd has no kill or stop event (their exit
    shows as die) and keeps no history. If containerd restarts the stream is reopened (up to 60 s).
    """
    from ctk_shared import output

    from . import events as ev
    from .options import EventsOptions

    stream = ev.events(_client(), shared_cli.options(), EventsOptions(since, until, filters, fmt))
    template = output.parse_format(fmt, ev.FIELDS)
    as_json = template is None and output.wants_json(fmt)
    try:
        for msg in stream:  # each as it comes: Docker's line on a terminal, JSON lines otherwise
            if template is not None:
                output.emit_line(template.render(msg.record()))
            elif as_json:
                output.emit_json(msg.record())
            else:
                output.emit_line(msg.line())
    except KeyboardInterrupt:  # Ctrl-C is how a stream ends: no error line
        sys.exit(130)


@cli.command(context_settings=CONTEXT)
@click.argument("container")
@click.option("--no-stdin", is_flag=True, help="do not attach stdin (output only)")
@click.option("--sig-proxy/--no-sig-proxy", default=True, show_default=True,
              help="forward signals to the container (without a terminal)")
@click.option("--detach-keys", metavar="KEYS", help="keys that detach, leaving it running (default ctrl-p,ctrl-q)")
@shared_cli.global_options
def attach(container: str, no_stdin: bool, sig_proxy: bool, detach_keys: str | None) -> None:
    """Attach this terminal to a running container's terminal, input and output (Ctrl-P Ctrl-Q detaches);
    exit with its status when it ends."""
    from . import ops
    from .options import AttachOptions

    opts = AttachOptions(container=container, no_stdin=no_stdin, sig_proxy=sig_proxy, detach_keys=detach_keys)
    exited = ops.attach(_client(), shared_cli.options(), opts)
    sys.stdout.flush()
    sys.exit(exited.exit_code)


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@shared_cli.global_options
def pause(containers: tuple[str, ...]) -> None:
    """Suspend all processes of running containers (cgroup freezer)."""
    from . import ops
    from .options import PauseOptions

    _report(ops.pause(_client(), shared_cli.options(), PauseOptions(containers)))


@cli.command(context_settings=CONTEXT)
@click.option("-f", "--force", is_flag=True, help="do not prompt for confirmation (needed when stdin is not a TTY)")
@click.option("--filter", "filters", multiple=True, metavar="FILTER",
              help="until=TIME (timestamp, date or duration like 24h), label=KEY[=VALUE], label!=KEY[=VALUE]")
@click.option("--namespace-dirs", is_flag=True,
              help="also remove data-root directories of namespaces that no longer exist in containerd")
@shared_cli.global_options
def prune(force: bool, filters: tuple[str, ...], namespace_dirs: bool) -> None:
    """Remove all stopped containers (with their snapshots and logs)."""
    from ctk_shared import output
    from ctk_shared.prune import parse_filters, reclaimed_line

    from . import prune as pruning
    from .options import PruneOptions

    flt = parse_filters(filters)  # a bad filter is refused before the prompt
    gopts = shared_cli.options()
    client = _client()
    orphans = pruning.orphan_namespace_dirs(client, gopts.data_root)
    warning = pruning.orphan_warning(orphans) if namespace_dirs and orphans else pruning.WARNING
    if not shared_cli.confirm_prune(warning, force):
        return
    done = pruning.prune(client, gopts, PruneOptions(flt, namespace_dirs, tuple(orphans)))
    if done.removed:  # Docker's report, plus the namespace directories removed
        output.emit_line("Deleted Containers:")
        for cid in done.removed:
            output.emit_line(cid)
        output.emit_line("")
    if done.dirs:
        output.emit_line("Deleted Namespace Directories:")
        for d in done.dirs:
            output.emit_line(str(d.path))
        output.emit_line("")
    output.emit_line(reclaimed_line(done.reclaimed))
    if not namespace_dirs:
        pruning.mention_orphans(orphans)


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@shared_cli.global_options
def unpause(containers: tuple[str, ...]) -> None:
    """Resume all processes of paused containers."""
    from . import ops
    from .options import UnpauseOptions

    _report(ops.unpause(_client(), shared_cli.options(), UnpauseOptions(containers)))


@cli.command(context_settings=CONTEXT)
@click.argument("container")
@click.argument("new_name")
@shared_cli.global_options
def rename(container: str, new_name: str) -> None:
    """Rename a container (a name taken by another container is refused)."""
    from . import ops
    from .options import RenameOptions

    ops.rename(_client(), shared_cli.options(), RenameOptions(container=container, new_name=new_name))


@cli.command(context_settings=CONTEXT)
@click.argument("containers", nargs=-1, required=True)
@click.option("-m", "--memory", help="memory limit (e.g. 256m)")
@click.option("--memory-swap", help="memory plus swap limit (e.g. 1g; -1 = unlimited swap)")
@click.option("--cpus", help="number of CPUs (e.g. 1.5)")
@click.option("--pids-limit", help="maximum number of processes (-1 = unlimited)")
@click.option("--restart", help="no|always|unless-stopped|on-failure[:N]")
@shared_cli.global_options
def update(containers: tuple[str, ...], memory: str | None, memory_swap: str | None, cpus: str | None,
           pids_limit: str | None, restart: str | None) -> None:
    """Change the resource limits and restart policy of containers, running or not (all values are checked
    before anything changes)."""
    from . import ops
    from .options import UpdateOptions

    opts = UpdateOptions(containers=containers, memory=memory, memory_swap=memory_swap, cpus=cpus,
                         pids_limit=pids_limit, restart=restart)
    _report(ops.update(_client(), shared_cli.options(), opts))


@cli.command(name="exec", context_settings=RUN_CONTEXT)
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-d", "--detach", is_flag=True, help="run the command in the background")
@click.option("-i", "--interactive", is_flag=True, help="keep stdin open")
@click.option("-t", "--tty", is_flag=True, help="allocate a pseudo-TTY")
@click.option("-e", "--env", multiple=True, help="KEY=VALUE, or KEY to take it from this environment")
@click.option("--env-file", multiple=True, help="read KEY=VALUE lines from a file (repeatable)")
@click.option("-w", "--workdir", help="working directory for the command (default: the container's)")
@click.option("-u", "--user", help="name|uid[:group|gid] (default: the container's user)")
@click.option("--privileged", is_flag=True, help="all capabilities for the command")
@shared_cli.global_options
def exec_(container: str, command: tuple[str, ...], detach: bool, interactive: bool, tty: bool, env: tuple[str, ...],
          env_file: tuple[str, ...], workdir: str | None, user: str | None, privileged: bool) -> None:
    """Run a command in a running container."""
    from . import errors, ops
    from .options import ExecOptions

    opts = ExecOptions(container=container, command=command, detach=detach, interactive=interactive, tty=tty,
                       env=env, env_file=env_file, workdir=workdir, user=user, privileged=privileged)
    with errors.run_errors(lambda: shared_cli.options().data_root):
        exited = ops.exec_(_client(), shared_cli.options(), opts)
    sys.stdout.flush()
    sys.exit(exited.exit_code)


@cli.group(context_settings=CONTEXT, no_args_is_help=True)
def volume() -> None:
    """Manage volumes (Docker's local driver: directories under the data root)."""


@volume.command(name="create", context_settings=CONTEXT)
@click.argument("name", required=False)
@click.option("--label", multiple=True, help="KEY=VALUE")
@click.option("-d", "--driver", default="local", show_default=True, help="only local")
@click.option("-o", "--opt", multiple=True, help="driver option: type=tmpfs|none, device=…, o=size=…|bind")
@shared_cli.global_options
def volume_create(name: str | None, label: tuple[str, ...], driver: str, opt: tuple[str, ...]) -> None:
    """Create a volume (a random name when NAME is not given); print its name."""
    from ctk_shared import output

    from . import ops
    from .options import VolumeCreateOptions

    opts = VolumeCreateOptions(name=name, label=label, driver=driver, opt=opt)
    for made in ops.volume_create(None, shared_cli.options(), opts).names:
        output.emit_line(made)


@volume.command(name="ls", context_settings=CONTEXT)
@click.option("-q", "--quiet", is_flag=True, help="only names")
@click.option("-f", "--filter", "filters", multiple=True, help="dangling=true|false, name=…, label=KEY[=VALUE], driver=local")
@click.option("--format", "fmt", help="table, json, or a template like '{{.Name}}'")
@shared_cli.global_options
def volume_ls(quiet: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List volumes (a table on a terminal, JSON lines otherwise)."""
    from ctk_shared import output

    from . import volumes
    from .options import VolumeLsOptions

    # the client is the factory: grpc loads only for dangling= (volumes.volume_ls)
    found = volumes.volume_ls(_client, shared_cli.options(), VolumeLsOptions(quiet, filters, fmt))
    output.emit_records(found.records, volumes.LS_COLUMNS, fmt, quiet_field="Name", quiet=quiet,
                        fields=volumes.LS_FIELDS)


@volume.command(name="inspect", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt", help="json (a JSON array), or a template like '{{.Mountpoint}}'")
@shared_cli.global_options
def volume_inspect(names: tuple[str, ...], fmt: str | None) -> None:
    """Show volumes' details as JSON (Docker's field names)."""
    from ctk_shared import output

    from . import ops
    from .options import VolumeInspectOptions

    output.emit_inspect(ops.volume_inspect(None, shared_cli.options(), VolumeInspectOptions(names, fmt)).docs, fmt)


@volume.command(name="rm", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="no error for a missing volume; remove one in use too")
@shared_cli.global_options
def volume_rm(names: tuple[str, ...], force: bool) -> None:
    """Remove volumes that no container uses."""
    from ctk_shared import output
    from ctk_shared.errors import raise_failures

    from . import ops
    from .options import VolumeRmOptions

    result = ops.volume_rm(_client(), shared_cli.options(), VolumeRmOptions(names=names, force=force))
    for n in result.names:
        output.emit_line(n)
    raise_failures(result.failures)


@volume.command(name="prune", context_settings=CONTEXT)
@click.option("-a", "--all", "all_", is_flag=True, help="all unused volumes, not only anonymous ones")
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@shared_cli.global_options
def volume_prune(all_: bool, force: bool) -> None:
    """Remove unused anonymous volumes (with -a: every unused volume); print their names."""
    from ctk_shared import output

    from . import ops
    from .options import VolumePruneOptions

    what = "all local volumes" if all_ else "anonymous local volumes"
    if not shared_cli.confirm_prune(f"This will remove {what} not used by at least one container.", force):
        return
    for n in ops.volume_prune(_client(), shared_cli.options(), VolumePruneOptions(all_=all_, force=force)).names:
        output.emit_line(n)


def main() -> None:
    shared_cli.main(cli, "ctk-run")
