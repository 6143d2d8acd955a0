"""RUN: the command as Docker forms it (exec form, SHELL + text, heredocs), the process environment, and the
task on the step's snapshot (:mod:`runner`)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

from ctk_shared.errors import CtkError

from . import stepnet
from .cache import chain_key
from .dockerfile.instructions import Command
from .dockerfile.parser import DockerfileError, as_written, parse_heredoc

if TYPE_CHECKING:
    from collections.abc import Callable

    from ctk_shared.containerd import Mount

    from . import runmounts
    from .builder import Builder
    from .stage import StageContext

# What only a step that runs needs (mounting, the runtime spec, RUN --mount) is imported when one runs: a
# fully cached rebuild computes keys only, and its start-up time is most of what it costs.

PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
# what runc creates in the rootfs when missing, to mount on: not part of the step's changes
_MOUNT_POINTS = ("proc", "dev", "sys", "etc/hosts", "etc/resolv.conf", "etc")


def _run_args(sc: StageContext, ins: Command) -> tuple[list[str], dict[str, str]]:
    """The process args, and files (name → content) to bind under /dev/pipes for a #! heredoc."""
    if ins.exec_form is not None:
        return list(ins.exec_form), {}
    if not ins.heredocs:
        return [*sc.shell, ins.shell_form], {}
    if parse_heredoc(ins.shell_form.strip()) is not None:  # the whole command is one marker (``<< EOF`` too)
        doc = ins.heredocs[0]
        if doc.body.startswith("#!"):
            return [f"/dev/pipes/{doc.name}"], {doc.name: doc.body}
        return [*sc.shell, doc.body], {}
    full = ins.shell_form + "".join(f"\n{d.body}{d.name}" for d in ins.heredocs)
    return [*sc.shell, full], {}


def network_of(b: Builder, ins: Command) -> str:
    """The step's network mode (``bridge``, ``host``, ``none``); a Dockerfile error naming the line when the
    mode is unknown or needs an entitlement the build was not given. The builder calls it for every RUN
    before the build starts (as BuildKit checks entitlements before solving), so a late step cannot fail on
    it; a bridge step is announced to the build's namespace pool then (:meth:`stepnet.StepNetwork.expect`)."""
    mode = _network(b, ins)
    if mode == stepnet.BRIDGE:
        b.stepnet.expect(b.client, warm=b.opts.no_cache)
    return mode


def _network(b: Builder, ins: Command) -> str:
    flag = ins.flags.get("network")
    try:
        return stepnet.step_mode(str(flag) if flag else None, b.opts.network, b.opts.allow)
    except ValueError as e:
        err: DockerfileError = b.df.error(ins.node, str(e))
        if flag == stepnet.HOST:
            err.hint = stepnet.ALLOW_HINT
        raise err from None


def run(sc: StageContext, ins: Command) -> None:
    """RUN as one layer step of the stage ``sc``."""
    if "security" in ins.flags:
        raise sc.b.df.error(ins.node, "RUN --security is not supported by ctk-build yet")
    network = _network(sc.b, ins)
    done = False

    def network_done() -> None:
        """Once per step: its namespace is free (after the task, before the layer is written, so the last
        bridge step's detach runs beside its diff and the image write rather than after them)."""
        nonlocal done
        if network == stepnet.BRIDGE and not done:
            done = True
            sc.b.stepnet.step_done()

    try:
        _run(sc, ins, network, network_done)
    finally:
        network_done()


def _run(sc: StageContext, ins: Command, network: str, network_done: Callable[[], None]) -> None:
    mounts: list[runmounts.RunMount] = []
    if ins.flags.get("mount"):
        from . import runmounts as rm

        mounts = rm.check(sc, ins)
    args, pipes = _run_args(sc, ins)
    env_list = sc.state.env_list()
    env_keys = {e.partition("=")[0] for e in env_list}
    build_env = [f"{n}={sc.args[n]}" for n in sc.arg_names if n in sc.args and n not in env_keys]
    proxies = [f"{k}={v}" for k, v in sc.b.opts.build_args.items() if k in PROXY_ARGS and k not in sc.args]
    process_env = env_list + build_env + proxies
    user = str(sc.state.config.get("User") or "")
    cwd = str(sc.state.config.get("WorkingDir") or "/")
    shown = (ins.shell_form + "".join(f"\n{d.content}{d.name}" for d in ins.heredocs)) \
        if ins.exec_form is None else ins.node.rest.strip()
    prefix = f"|{len(build_env)} {' '.join(build_env)} " if build_env else ""
    created_by = f"{prefix}{' '.join(sc.shell)} {shown}"
    key = chain_key(sc.key, "run", args, env_list + build_env, user, cwd, network, pipes)
    if mounts:  # (a step without mounts keeps the key it always had)
        key = chain_key(key, "mounts", rm.key_parts(sc, ins, mounts))
    sc.layer_step(ins, key, created_by, lambda snap, skey: _run_in(
        sc, ins, snap, skey, args, process_env, user, cwd, network, pipes, mounts, network_done))


def _run_in(sc: StageContext, ins: Command, mounts: list[Mount], skey: str, args: list[str], env: list[str],
            user: str, cwd: str, network: str, pipes: dict[str, str],
            run_mounts: list[runmounts.RunMount], network_done: Callable[[], None]) -> None:
    from ctk_shared.nethooks import hook_error
    from ctk_shared.snapshotfs import exists_layered, layered_dirs

    from . import mounting, runmounts, users
    from .runner import StepFailed, run_step, step_container_id, step_files_dir
    from .stepspec import STEP_HOSTNAME, StepProcess

    dirs = layered_dirs(mounts)
    try:
        uid, gid, groups = users.resolve(user, dirs) if user else (0, 0, ())
    except CtkError as e:
        raise sc.b.df.error(ins.node, e.message) from None
    missing = [p for p in _MOUNT_POINTS if not exists_layered(dirs, p)]
    for m in run_mounts:  # what runc makes for a --mount target (deepest first) goes after the step
        parts = m.target.strip("/").split("/") if m.target else []
        made = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
        missing.extend(p for p in made if p and not exists_layered(dirs, p))
    b = sc.b
    with contextlib.ExitStack() as stack:
        cid = step_container_id(skey)
        extra = runmounts.prepare(sc, ins, run_mounts, cid, stack)
        etc_dir = ""
        if network == stepnet.BRIDGE:  # the step's generated hosts and resolv.conf, gone with the step
            etc_dir = step_files_dir(b.gopts.data_root, cid)
            os.makedirs(etc_dir, exist_ok=True)
            stack.callback(shutil.rmtree, etc_dir, True)
        binds = b.stepnet.etc_files(network, STEP_HOSTNAME, etc_dir)
        net = contextlib.ExitStack()  # the namespace goes back as soon as the process has exited
        stack.callback(net.close)
        netns = net.enter_context(b.stepnet.namespace(b.client)) if network == stepnet.BRIDGE else ""

        def exited() -> None:  # (the last bridge step's detach then overlaps the task's delete and the layer)
            net.close()
            network_done()

        if pipes:  # a "#!" heredoc: the script is bound read-only at /dev/pipes/NAME
            pipe_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="ctk-build-pipes-"))
            for name, body in pipes.items():
                path = os.path.join(pipe_dir, name)
                with open(path, "w") as fh:
                    fh.write(body)
                os.chmod(path, 0o755)
                binds.append((path, f"/dev/pipes/{name}"))
        proc = StepProcess(tuple(args), tuple(env) + tuple(extra.env), cwd, uid, gid, groups, network, tuple(binds),
                           mounts=tuple(extra.spec_mounts), netns=netns)
        try:
            vertex = sc.vertex
            run_step(b.client, b.sn_name, skey, mounts, proc, b.fifo_dir,
                     lambda data: b.progress.output(vertex, data), b.tasks,
                     stepnet.container_labels(network), exited, defer_delete=True)  # settled by make_layer
        except StepFailed as e:
            raise StepFailed(f"{b.df.filename}:{ins.line}: {as_written(ins.node)}: "
                             f"exit code {e.exit_status}", e.exit_status, e.tail) from None
        except CtkError as e:
            why = hook_error(e.message)
            if why is None:
                raise
            # the stage adds "Dockerfile:LINE: RUN: "
            raise CtkError(f"attaching the step to the {network} network: {why}", hint=e.hint) from None
    network_done()
    upper = mounting.upper_dir(mounts)
    if upper:
        _remove_mount_points(upper, missing)


def _remove_mount_points(upper: str, missing: list[str]) -> None:
    """Drop the empty mount points runc had to create (/proc, /etc/hosts …): they are not the step's work.
    No link in the upper directory is followed (the step may have made /etc a link to a host path)."""
    from . import rootfs

    for rel in missing:
        rootfs.remove_if_empty(upper, rel)
