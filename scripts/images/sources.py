"""The machine's apt sources: which files, which suite, which mirrors.

They are read at run time so that no mirror address is ever written into the repository: whatever apt on
this machine uses, mmdebstrap uses too (it is the only way to reach packages on a machine without internet).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

APT_DIR = Path("/etc/apt")


class ImageMakerError(Exception):
    """A failure the CLI prints as one line (no traceback): the user must be able to act on it."""


@dataclass(frozen=True)
class AptSources:
    """The apt sources files to hand to mmdebstrap, their text (part of the cache key), and the suite."""

    files: tuple[Path, ...]
    texts: tuple[str, ...]
    suite: str
    uris: tuple[str, ...]

    def describe(self) -> str:
        """``FILE (URI, URI)`` for error lines: what was tried, so the reader knows where to look."""
        files = ", ".join(str(f) for f in self.files)
        return f"{files} ({', '.join(self.uris) or 'no URIs'})"


def _active_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _parse(text: str, deb822: bool) -> tuple[list[str], list[str]]:
    """(suites, uris) of the enabled binary (``deb``) entries of one sources file."""
    suites: list[str] = []
    uris: list[str] = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            key = ""
            for line in stanza.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if line[0].isspace() and key:  # a continuation line
                    fields[key] += " " + line.strip()
                    continue
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            suites += fields.get("suites", "").split()
            uris += fields.get("uris", "").split()
    else:
        for line in _active_lines(text):
            words = re.sub(r"\[[^]]*\]", " ", line).split()  # drop [ options ]
            if len(words) >= 3 and words[0] == "deb":
                uris.append(words[1])
                suites.append(words[2])
    return suites, uris


def find_sources(explicit: Path | None = None, suite: str | None = None, apt_dir: Path = APT_DIR) -> AptSources:
    """The sources mmdebstrap should use: ``explicit`` if given, else every enabled file apt itself reads
    (``sources.list`` and ``sources.list.d/*.list|*.sources``)."""
    if explicit is not None:
        if not explicit.is_file():
            raise ImageMakerError(f"apt sources file {explicit} does not exist")
        candidates = [explicit]
    else:
        candidates = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*.list")) \
            + sorted((apt_dir / "sources.list.d").glob("*.sources"))
    files: list[Path] = []
    texts: list[str] = []
    suites: list[str] = []
    uris: list[str] = []
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        s, u = _parse(text, deb822=path.suffix == ".sources")
        if not s:
            continue
        files.append(path)
        texts.append(text)
        suites += s
        uris += u
    if not files:
        tried = str(explicit) if explicit else f"{apt_dir}/sources.list, {apt_dir}/sources.list.d/*.list|*.sources"
        raise ImageMakerError(f"no enabled 'deb' apt sources in {tried}")
    if suite is None:
        # the release itself (bookworm), not its bookworm-updates/-security companions
        suite = next((s for s in suites if not re.search(r"[-/]", s)), suites[0])
    return AptSources(tuple(files), tuple(texts), suite, tuple(dict.fromkeys(uris)))


def copy_sources(sources: AptSources, dest: Path) -> list[Path]:
    """Write the sources files into ``dest`` under names apt reads from ``sources.list.d`` (a Dockerfile
    that installs packages COPYs them in: an image does not know this machine's mirror otherwise)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for path, text in zip(sources.files, sources.texts):
        name = path.name
        if path.suffix not in (".list", ".sources") or name == "sources.list":
            name = "machine.list" if path.suffix != ".sources" else name
        target = dest / name
        target.write_text(text)
        out.append(target)
    return out
