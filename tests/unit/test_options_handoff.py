"""The cli→logic handoff of docs/CONVENTIONS.md §7, checked on every tool: each command's options are a frozen
dataclass (a function cannot change what the user asked for), and its function takes ``(client, gopts, opts)``.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

# tool -> (options module, logic module, {command: (options class, function or module:function)})
HANDOFF: dict[str, tuple[str, str, dict[str, tuple[str, str]]]] = {
    "ctk-run": ("ctk_run.options", "ctk_run.ops", {
        "run": ("RunOptions", "run"), "create": ("ContainerOptions", "create"), "start": ("StartOptions", "start"),
        "stop": ("StopOptions", "stop"), "restart": ("RestartOptions", "restart"), "kill": ("KillOptions", "kill"),
        "rm": ("RmOptions", "rm"), "pause": ("PauseOptions", "pause"), "unpause": ("UnpauseOptions", "unpause"),
        "update": ("UpdateOptions", "update"), "wait": ("WaitOptions", "wait"),
        "inspect": ("InspectOptions", "inspect"), "port": ("PortOptions", "port"), "logs": ("LogsOptions", "logs"),
        "exec": ("ExecOptions", "exec_"), "attach": ("AttachOptions", "attach"), "rename": ("RenameOptions", "rename"),
        "volume create": ("VolumeCreateOptions", "volume_create"),
        "volume inspect": ("VolumeInspectOptions", "volume_inspect"), "volume rm": ("VolumeRmOptions", "volume_rm"),
        "volume prune": ("VolumePruneOptions", "volume_prune"), "top": ("TopOptions", "ctk_run.top:top"),
        "ps": ("PsOptions", "ctk_run.listing:ps"), "cp": ("CpOptions", "ctk_run.cp:copy"),
        "stats": ("StatsOptions", "ctk_run.stats:stats"), "events": ("EventsOptions", "ctk_run.events:events"),
        "prune": ("PruneOptions", "ctk_run.prune:prune"),
        "volume ls": ("VolumeLsOptions", "ctk_run.volumes:volume_ls"),  # client: a factory (grpc only if needed)
    }),
    "ctk-net": ("ctk_net.options", "ctk_net.ops", {
        "ls": ("LsOptions", "ls"), "inspect": ("InspectOptions", "inspect"), "create": ("CreateOptions", "create"),
        "rm": ("RmOptions", "rm"), "prune": ("PruneOptions", "prune"), "ensure": ("EnsureOptions", "ensure"),
    }),
    "ctk-pull": ("ctk_pull.options", "ctk_pull.ops", {
        "pull": ("PullOptions", "pull"), "push": ("PushOptions", "push"), "tag": ("TagOptions", "tag"),
        "rm": ("RmOptions", "remove"), "login": ("LoginOptions", "login"), "logout": ("LogoutOptions", "logout"),
        "convert": ("ConvertOptions", "ctk_pull.convert_cmds:convert"), "images": ("ImagesOptions", "ctk_pull.listing:images"),
        "inspect": ("InspectOptions", "ctk_pull.listing:inspect"),
        "save": ("SaveOptions", "ctk_pull.archive_cmds:save"), "load": ("LoadOptions", "ctk_pull.archive_cmds:load"),
        "prune": ("PruneOptions", "ctk_pull.prune:prune"),
        "lazy-serve": ("LazyServeOptions", "ctk_pull.snapshotter.daemon:lazy_serve"),
    }),
    "ctk-build": ("ctk_build.ops", "ctk_build.ops", {
        "build": ("BuildRequest", "build"), "prune": ("PruneOptions", "prune"),
    }),
    "ctk-crypt": ("ctk_crypt.options", "ctk_crypt.ops", {
        "encrypt": ("EncryptOptions", "encrypt"), "decrypt": ("DecryptOptions", "decrypt"),
        "inspect": ("InspectOptions", "inspect"), "check-key": ("CheckKeyOptions", "check_key"),
        "keygen": ("KeygenOptions", "keygen"),
    }),
}

CASES = [(tool, cmd, *HANDOFF[tool][:2], *names) for tool in HANDOFF for cmd, names in HANDOFF[tool][2].items()]


def _instance(cls: type) -> object:
    """An instance with every required field filled by a value of a plausible type."""
    required = {f.name: ("x" if "str" in str(f.type) and "tuple" not in str(f.type) else ("x",))
                for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return cls(**required)


@pytest.mark.parametrize(("tool", "command", "options_mod", "logic_mod", "cls_name", "fn_name"), CASES,
                         ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_each_command_has_frozen_options_and_one_function(tool, command, options_mod, logic_mod, cls_name,
                                                          fn_name):
    cls = getattr(importlib.import_module(options_mod), cls_name)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, f"{tool} {command}: not frozen"
    opts = _instance(cls)
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(opts, first, "changed")
    if ":" in fn_name:  # the command's function lives in a module of its own
        logic_mod, fn_name = fn_name.split(":")
    fn = getattr(importlib.import_module(logic_mod), fn_name)
    params = list(inspect.signature(fn).parameters.values())
    assert len(params) == 3 and params[0].name in ("client", "store") and params[1].name == "gopts", \
        f"{tool} {command}: {fn.__name__}{inspect.signature(fn)}"
    assert params[2].annotation in (cls_name, cls), f"{tool} {command}: takes {params[2].annotation}"


def test_run_options_take_the_click_parameter_names():
    """``RunOptions(image=…, command=…, **flags)`` in the cli: every flag of `run` is a field, nothing else."""
    import click
    from ctk_run import cli
    from ctk_run.options import ContainerOptions, RunOptions

    for command, cls in ((cli.run, RunOptions), (cli.create, ContainerOptions)):
        params = {p.name for p in command.params if p.expose_value}
        assert params == {f.name for f in dataclasses.fields(cls)}, (command.name, params ^
                                                                      {f.name for f in dataclasses.fields(cls)})
        assert isinstance(command, click.Command)
