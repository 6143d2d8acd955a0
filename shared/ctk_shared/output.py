"""The only writer of stdout: results as a human table/ref on a TTY, JSON Lines otherwise (docs/CONVENTIONS.md).

Field names in records are the documented contract; a ``--format`` Go-style template picks fields.
"""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from .errors import CtkError, UsageError

# as text: compiled (and cached by re) by the first --format, not at every command's start
_ACTION = r"^(?:(json)\s+)?\.((?:[A-Za-z_][A-Za-z0-9_]*)(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?$"
_SUPPORTED = "ctk's --format takes 'table', 'json', or a template of {{.Field}}, {{.A.B}}, {{json .Field}}, " \
    "{{json .}}, with an optional 'table ' prefix"


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def wants_json(fmt: str | None) -> bool:
    """JSON when asked, or when nobody is reading a terminal (a pipe or a file)."""
    if fmt in ("json", "{{json .}}"):
        return True
    if fmt in ("table", "wide"):
        return False
    return fmt is None and not stdout_is_tty()


def is_template(fmt: str | None) -> bool:
    """Whether ``--format`` is a template (or ``table TEMPLATE``) rather than one of the named formats."""
    return bool(fmt) and fmt not in ("json", "table", "wide", "{{json .}}")


def _header_of(field: str) -> str:
    """Docker's column header for a field with no declared one: ``CreatedAt`` → ``CREATED AT``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", field).upper()


@dataclass(frozen=True)
class _Action:
    """One ``{{.A.B}}`` or ``{{json .A}}`` of a template: the path to look up, and whether to print it as JSON."""

    as_json: bool
    path: tuple[str, ...]  # () is ``.``, the whole record


@dataclass(frozen=True)
class Template:
    """A parsed ``--format`` template: enough of Go's text/template for what users write with Docker.

    Parsed once, before any output, so a typo is a usage error (exit 2) naming what exists instead of a
    column of empty lines and exit 0, as ``{{.Nope}}`` gave before."""

    text: str
    parts: tuple[str | _Action, ...]
    table: bool = False

    @classmethod
    def parse(cls, text: str, fields: Iterable[str] | None = None) -> Template:
        """Parse ``text``; with ``fields``, a first-level field outside them is an error."""
        table = text == "table" or text.startswith(("table ", "table\t"))
        body = text[len("table"):].lstrip(" \t") if table else text
        body = body.replace("\\t", "\t").replace("\\n", "\n")
        parts: list[str | _Action] = []
        pos = 0
        while True:
            start = body.find("{{", pos)
            if start < 0:
                if "}}" in body[pos:]:
                    raise UsageError(f"--format {text!r}: unexpected '}}}}'", hint=_SUPPORTED)
                parts.append(body[pos:])
                break
            parts.append(body[pos:start])
            end = body.find("}}", start + 2)
            if end < 0:
                raise UsageError(f"--format {text!r}: unclosed action '{{{{'", hint=_SUPPORTED)
            inner = body[start + 2:end].strip()
            m = re.match(_ACTION, inner)
            if not m:
                raise UsageError(f"--format {text!r}: unsupported action '{{{{{inner}}}}}'", hint=_SUPPORTED)
            path = tuple(m.group(2).split(".")) if m.group(2) else ()
            if fields is not None and path:
                known = list(fields)
                if path[0] not in known:
                    raise UsageError(f"--format: unknown field '.{path[0]}'",
                                     hint="fields: " + ", ".join(sorted(known)))
            parts.append(_Action(bool(m.group(1)), path))
            pos = end + 2
        return cls(text, tuple(p for p in parts if p != ""), table)

    def render(self, record: Mapping[str, Any]) -> str:
        """The template applied to one record. A first-level field the record lacks is a usage error (the
        record's fields are its type, as Go's struct fields are for Docker); a missing key deeper down is
        Docker's ``<no value>``, since nested objects such as ``.Config.Labels`` are maps there too; a field
        of something that has none (``.Names.X``) is an error."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = record
            for depth, key in enumerate(part.path):
                if isinstance(value, Mapping) and key in value:
                    value = value[key]
                    continue
                where = "." + ".".join(part.path[:depth + 1])
                if depth == 0:
                    raise UsageError(f"--format: unknown field '{where}'",
                                     hint="fields: " + ", ".join(sorted(value)))
                if not isinstance(value, Mapping):
                    raise UsageError(f"--format: unknown field '{where}'",
                                     hint=f"'.{'.'.join(part.path[:depth])}' has no fields")
                value = "<no value>"
                break
            if part.as_json or isinstance(value, (dict, list)):
                out.append(json.dumps(value, separators=(",", ":"), default=str))
            else:
                out.append("" if value is None else str(value))
        return "".join(out)

    def header(self, columns: Sequence[tuple[str, str]] = ()) -> str:
        """The ``table`` prefix's header row: each action's column header (the command's own name for a
        field it shows by default, else the field name in capitals), literal text kept as is."""
        names = {f: h for h, f in columns}
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif not part.path:
                out.append("")
            else:
                field = part.path[-1]
                out.append(names.get(field, _header_of(field)) if len(part.path) == 1 else _header_of(field))
        return "".join(out)


def parse_format(fmt: str | None, fields: Iterable[str] | None = None) -> Template | None:
    """The template of a ``--format`` value, or None for the named formats: a bad one fails before any work."""
    return Template.parse(fmt, fields) if fmt and is_template(fmt) else None


def render_template(template: str, record: Mapping[str, Any]) -> str:
    """Render ``template`` for one record (see :class:`Template`)."""
    return Template.parse(template).render(record)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Docker's tabwriter look: columns padded to the widest cell plus three spaces, the last one not."""
    width = max((len(r) for r in rows), default=0)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(width)]
    return ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]


def emit_line(text: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(text + "\n")
    out.flush()


def emit_json(record: Mapping[str, Any] | Sequence[Any], *, indent: int | None = None) -> None:
    emit_line(json.dumps(record, indent=indent, sort_keys=False, default=str))


def emit_image(fmt: str, name: str, digest: str, **extra: Any) -> None:
    """The result line of every command that produces an image (docs/CONVENTIONS.md): ``NAME@DIGEST``, or with
    ``fmt == "json"`` the record ``{"ref", "Name", "Digest", …extra}``."""
    ref = f"{name.split('@', 1)[0]}@{digest}"
    if fmt == "json":
        emit_json({"ref": ref, "Name": name, "Digest": digest, **extra})
    else:
        emit_line(ref)


def emit_records(records: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]],
                 fmt: str | None = None, quiet_field: str | None = None, quiet: bool = False,
                 fields: Iterable[str] | None = None) -> None:
    """Write list results: ``columns`` is (header, field) for the table view; ``fields`` are the names a
    ``--format`` template may use (checked before anything is written)."""
    template = parse_format(fmt, fields)
    if quiet and quiet_field:
        for r in records:
            emit_line(str(r.get(quiet_field, "")))
        return
    if template is not None and not template.table:
        for r in records:
            emit_line(template.render(r))
        return
    if template is not None:
        rows = [template.header(columns).split("\t")] + [template.render(r).split("\t") for r in records]
        for line in _aligned(rows):
            emit_line(line)
        return
    if wants_json(fmt):
        for r in records:
            emit_json(r)
        return
    rows = [[h for h, _ in columns]] + [[str(r.get(f, "")) for _, f in columns] for r in records]
    for line in _aligned(rows):
        emit_line(line)


def emit_inspect(docs: Sequence[Mapping[str, Any]], fmt: str | None = None) -> None:
    """Every ``inspect``: a JSON array (Docker's shape, also for ``--format json``), or a template per
    document."""
    template = parse_format(fmt)
    if template is None or fmt == "{{json .}}":
        if fmt == "{{json .}}":
            for d in docs:
                emit_json(d)
            return
        emit_line(json.dumps(list(docs), indent=4, default=str))
        return
    lines = [template.render(d) for d in docs]  # all checked before the first line is written
    for line in lines:
        emit_line(line)


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


# --- the reading side of the pipe contract: `-` takes refs from the stage before -------------------------
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
