"""Run the installed ctk executables as a user would, with stdout, stderr and exit code kept apart."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass


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
