"""The only writer of stdout: results as a human table/ref on a TTY, JSON Lines otherwise (DESIGN §3).

Field names in records are the documented contract; a ``--format`` Go-style template picks fields.
"""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

_TEMPLATE_FIELD = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z_][A-Za-z0-9_.]*)?\s*\}\}")


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def wants_json(fmt: str | None) -> bool:
    """JSON when asked, or when nobody is reading a terminal (a pipe or a file)."""
    if fmt in ("json", "{{json .}}"):
        return True
    if fmt in ("table", "wide"):
        return False
    return fmt is None and not stdout_is_tty()


def render_template(template: str, record: Mapping[str, Any]) -> str:
    """Enough of Go's text/template for ``{{.Field}}``, ``{{json .Field}}``, ``{{json .}}`` and ``\\t``."""

    def sub(m: re.Match[str]) -> str:
        as_json, path = m.group(1), m.group(2)
        value: Any = record
        if path:
            for part in path.split("."):
                value = value.get(part, "") if isinstance(value, Mapping) else ""
        if as_json:
            return json.dumps(value, separators=(",", ":"))
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"))
        return "" if value is None else str(value)

    return _TEMPLATE_FIELD.sub(sub, template.replace("\\t", "\t").replace("\\n", "\n"))


def emit_line(text: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(text + "\n")
    out.flush()


def emit_json(record: Mapping[str, Any] | Sequence[Any], *, indent: int | None = None) -> None:
    emit_line(json.dumps(record, indent=indent, sort_keys=False, default=str))


def emit_image(fmt: str, name: str, digest: str, **extra: Any) -> None:
    """The result line of every command that produces an image (DESIGN §3): ``NAME@DIGEST``, or with
    ``fmt == "json"`` the record ``{"ref", "Name", "Digest", …extra}``."""
    ref = f"{name.split('@', 1)[0]}@{digest}"
    if fmt == "json":
        emit_json({"ref": ref, "Name": name, "Digest": digest, **extra})
    else:
        emit_line(ref)


def emit_records(records: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]],
                 fmt: str | None = None, quiet_field: str | None = None, quiet: bool = False) -> None:
    """Write list results: ``columns`` is (header, field) for the table view."""
    if quiet and quiet_field:
        for r in records:
            emit_line(str(r.get(quiet_field, "")))
        return
    if fmt and fmt not in ("json", "table", "wide", "{{json .}}"):
        for r in records:
            emit_line(render_template(fmt, r))
        return
    if wants_json(fmt):
        for r in records:
            emit_json(r)
        return
    rows = [[str(r.get(f, "")) for _, f in columns] for r in records]
    headers = [h for h, _ in columns]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    fmt_row = "   ".join(f"{{:<{w}}}" for w in widths)
    emit_line(fmt_row.format(*headers).rstrip())
    for row in rows:
        emit_line(fmt_row.format(*row).rstrip())


def human_size(n: float) -> str:
    """Docker's units (powers of 1000, as `docker images` shows them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}PB"


def human_duration_ago(seconds: float) -> str:
    """Docker's ``2 hours ago`` wording."""
    s = int(max(seconds, 0))
    if s < 1:
        return "Less than a second ago"
    if s < 60:
        return f"{s} seconds ago" if s > 1 else "1 second ago"
    m = s // 60
    if m < 60:
        return f"{m} minutes ago" if m > 1 else "About a minute ago"
    h = m // 60
    if h < 48:
        return f"{h} hours ago" if h > 1 else "About an hour ago"
    d = h // 24
    if d < 14:
        return f"{d} days ago"
    if d < 60:
        return f"{d // 7} weeks ago"
    if d < 730:
        return f"{d // 30} months ago"
    return f"{d // 365} years ago"
