"""Run the installed ctk executables as a user would, with stdout, stderr and exit code kept apart."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line]


def run_tool(tool: str, *args: str, address: str, namespace: str, input: str | bytes | None = None,
             env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    full_env.update(env or {})
    cmd = [tool, "--address", address, "--namespace", namespace, *args]
    text = not isinstance(input, bytes)
    p = subprocess.run(cmd, input=input, capture_output=True, text=text, env=full_env, timeout=timeout)
    out = p.stdout if text else p.stdout.decode(errors="replace")
    err = p.stderr if text else p.stderr.decode(errors="replace")
    return Result(p.returncode, out, err)


def tool_runner(tool: str, *, address: str, namespace: str, data_root: Path,
                env: Mapping[str, str] | None = None) -> Callable[..., Result]:
    """``go(*args, tool=tool, env={...}, **kw) -> Result``: a ctk tool with the test's containerd, namespace and
    data root (``CTK_DATA_ROOT``) plus ``env``. ``go.env`` and ``go.data_root`` are for tests that start the
    tool themselves."""
    base = {"CTK_DATA_ROOT": str(data_root), **(env or {})}

    def go(*args: str, tool: str = tool, **kw: Any) -> Result:
        return run_tool(tool, *args, address=address, namespace=namespace, env={**base, **kw.pop("env", {})}, **kw)

    go.env = base  # type: ignore[attr-defined]
    go.data_root = data_root  # type: ignore[attr-defined]
    return go


def remove_containers(run: Callable[..., Result]) -> None:
    """``ctk-run rm -f`` every container of the namespace (a fixture's teardown)."""
    ids = run("ps", "-a", "-q", "--no-trunc").lines
    if ids:
        run("rm", "-f", *ids)


def inspect_record(run: Callable[..., Result], name: str) -> dict[str, Any]:
    """``ctk-run inspect NAME``'s record (the command must succeed)."""
    import json

    r = run("inspect", name)
    assert r.code == 0, r.err
    record: dict[str, Any] = json.loads(r.out)[0]
    return record


def health_record(run: Callable[..., Result], name: str) -> dict[str, Any]:
    """``State.Health`` of a container's inspect record ({} without a health check)."""
    health: dict[str, Any] = inspect_record(run, name)["State"].get("Health") or {}
    return health
