"""The layering rules of docs/CONVENTIONS.md §1, checked on the source: a broken rule fails here, not in review."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = sorted(p for p in (ROOT / "tools").iterdir() if p.is_dir())


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _py_files(base: Path) -> list[Path]:
    return [p for p in base.rglob("*.py") if "_proto" not in p.parts]


def test_tools_never_import_each_other():
    for tool in TOOLS:
        pkg = f"ctk_{tool.name}"
        others = {f"ctk_{t.name}" for t in TOOLS} - {pkg}
        for f in _py_files(tool):
            bad = {m for m in _imports(f) if m.split(".")[0] in others}
            assert not bad, f"{f.relative_to(ROOT)} imports another tool: {bad}"


def test_shared_library_is_click_free_and_tool_free():
    shared = ROOT / "shared" / "ctk_shared"
    for f in _py_files(shared):
        mods = {m.split(".")[0] for m in _imports(f)}
        assert not any(m.startswith("ctk_") and m != "ctk_shared" for m in mods), f
        if f.name != "cli.py":
            assert "click" not in mods, f"{f.relative_to(ROOT)} imports click; only ctk_shared.cli may"


def test_grpc_stays_inside_the_containerd_package():
    shared = ROOT / "shared" / "ctk_shared"
    for f in _py_files(ROOT / "shared") + [p for t in TOOLS for p in _py_files(t)]:
        if (shared / "containerd") in f.parents:
            continue
        mods = _imports(f)
        assert not any(m == "grpc" or m.startswith("grpc.") or "_proto" in m for m in mods), \
            f"{f.relative_to(ROOT)} imports grpc or generated stubs directly"


def test_cli_start_imports_nothing_heavy():
    """`ctk-pull --help` must start fast: no grpc, requests, rich or cryptography at import."""
    code = ("import sys, ctk_pull.cli; heavy = [m for m in ('grpc', 'requests', 'rich', 'cryptography', "
            "'google.protobuf') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported at start-up: {out}"


def test_only_ctk_shared_outputs_renames_files():
    """A rename over a path is safe only for a regular file ctk looked at first: `save -o /dev/null` once
    renamed a tar over the machine's /dev/null. ctk_shared.outputs decides (devices and FIFOs are streamed
    into, links are resolved or refused); everything else writes through it."""
    home = ROOT / "shared" / "ctk_shared" / "outputs.py"
    for f in _py_files(ROOT / "shared") + [p for t in TOOLS for p in _py_files(t)]:
        if f == home:
            continue
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            by_os = node.func.attr in ("replace", "rename", "renames", "move") and \
                isinstance(node.func.value, ast.Name) and node.func.value.id in ("os", "shutil")
            by_path = node.func.attr in ("replace", "rename") and len(node.args) == 1 and not node.keywords
            if by_os or by_path:  # Path.replace(target) / Path.rename(target); str.replace takes two arguments
                raise AssertionError(f"{f.relative_to(ROOT)}:{node.lineno} renames a file; use ctk_shared.outputs")
