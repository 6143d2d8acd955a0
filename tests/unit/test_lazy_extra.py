"""The lazy snapshotter is ctk-pull's optional part (``ctk-pull[lazy]``): its FUSE binding is imported only on the
lazy path, and nothing else in ctk reaches the snapshotter package at import time."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTTER = ROOT / "tools" / "pull" / "ctk_pull" / "snapshotter"


def _module_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside a function): what importing ``path`` costs."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_no_module_imports_the_fuse_binding_at_import_time():
    for f in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "tools").rglob("*.py")]:
        assert "mfusepy" not in _module_level_imports(f), f"{f.relative_to(ROOT)} imports mfusepy at import time"


def test_only_the_snapshotter_reaches_the_snapshotter_at_import_time():
    for f in (ROOT / "tools" / "pull" / "ctk_pull").rglob("*.py"):
        if SNAPSHOTTER in f.parents:
            continue
        bad = {m for m in _module_level_imports(f) if "snapshotter" in m}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad} at import time"


def test_lazyfs_without_the_binding_is_one_line_with_the_install_hint(tmp_path):
    code = ("import sys; sys.modules['mfusepy'] = None\n"
            "from ctk_pull.snapshotter import lazyfs\n"
            "sys.exit(lazyfs._main(['--blob', '/nonexistent', str(sys.argv[1])]))")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "the lazy snapshotter needs the FUSE binding mfusepy" in p.stderr, p.stderr
    assert "(hint: pip install 'ctk-pull[lazy]')" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
