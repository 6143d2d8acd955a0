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


def _click_imports(path: Path) -> set[str]:
    """click, or ctk_shared.cli (the click side of the conventions), imported by ``path`` in any form."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "click" or a.name == "ctk_shared.cli")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "click" or node.module == "ctk_shared.cli":
                found.add(node.module)
            elif node.module == "ctk_shared" and any(a.name == "cli" for a in node.names):
                found.add("ctk_shared.cli")
    return found


def test_only_a_tools_cli_module_sees_click():
    """docs/CONVENTIONS.md §7: a command's logic takes ``(client, gopts, opts)`` and never sees click, so it
    can be called (and tested) without the command line; only ``cli.py`` of each tool reads flags."""
    for tool in TOOLS:
        for f in _py_files(tool):
            if f.name == "cli.py" and f.parent.name.startswith("ctk_"):
                continue
            bad = _click_imports(f)
            assert not bad, f"{f.relative_to(ROOT)} imports {bad}; only the tool's cli.py may"


def test_logic_modules_load_without_click():
    """The same at run time: importing each tool's options and logic modules loads no click, even indirectly."""
    mods = ["ctk_run.options", "ctk_run.ops", "ctk_net.options", "ctk_net.ops", "ctk_pull.options", "ctk_pull.ops",
            "ctk_crypt.options", "ctk_crypt.ops", "ctk_build.ops"]
    code = f"import sys, importlib; [importlib.import_module(m) for m in {mods!r}]; print('click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False", "a logic module imports click"


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
