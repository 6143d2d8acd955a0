"""Root filesystems with mmdebstrap (cached on disk), build contexts around them, images with ctk-build."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .recipes import COMMON_HOOKS, PATH, RECIPE_VERSION, RECIPES, Recipe
from .sources import AptSources, ImageMakerError, find_sources

REPO = Path(__file__).resolve().parents[2]

# Docs, manuals and translations are a third of a small image and nothing here reads them; the copyright
# files stay (they are the licences). These dpkg options also stay in the image, as in Docker's slim images.
DPKG_OPTS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
# apt's download sandbox user cannot run gpgv on these machines (notes/machine.md); retries only slow down
# the failure when no mirror answers (7 s instead of 0.4 s)
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
APT_OPTS = ('APT::Sandbox::User "root"', 'Acquire::Retries "0"')


def cache_dir() -> Path:
    """``$CTK_IMAGE_CACHE``, else the checkout's ``.cache/images`` (ignored by git)."""
    return Path(os.environ.get("CTK_IMAGE_CACHE") or REPO / ".cache" / "images")


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ImageMakerError(f"unknown image {name!r} (known: {', '.join(RECIPES)})") from None


def mmdebstrap_args(rec: Recipe, sources: AptSources, out: Path) -> list[str]:
    """The whole mmdebstrap command: everything that decides the tree is in it (the cache key hashes it)."""
    args = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar", "--skip=output/dev"]
    if rec.architecture:
        # the emulator is checked before (check_emulator), with the fix named; arch-test is not needed
        args += [f"--architectures={rec.architecture}", "--skip=check/qemu"]
    args += [f"--aptopt={o}" for o in APT_OPTS]
    args += [f"--dpkgopt={o}" for o in DPKG_OPTS]
    if MERGED_USR_HOOKS.is_dir():
        # init-system-helpers needs "usrmerge | usr-is-merged"; without this hook apt picks usrmerge, which
        # drags perl in (+45 MiB). The hook merges /usr itself and installs usr-is-merged, as Docker's
        # debian images have it.
        args.append(f"--hook-dir={MERGED_USR_HOOKS}")
    if rec.packages:
        args.append("--include=" + ",".join(rec.packages))
    args += [f"--essential-hook={h}" for h in rec.essential_hooks]
    args += [f"--customize-hook={h}" for h in (*rec.hooks, *COMMON_HOOKS)]
    return [*args, sources.suite, str(out), *(str(f) for f in sources.files)]


def cache_key(rec: Recipe, sources: AptSources) -> str:
    """Recipe version + mmdebstrap command (packages, hooks, options) + the apt sources' text + host arch."""
    argv = mmdebstrap_args(rec, sources, Path("OUT"))[: -len(sources.files)]
    material = {"version": RECIPE_VERSION, "argv": argv, "sources": list(sources.texts),
                "arch": os.uname().machine}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One maker at a time per cache entry (two test sessions, or a test and the demo)."""
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _first_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    errors = [ln[2:].strip() for ln in lines if ln.startswith("E:")]
    return (errors[0] if errors else (lines[-1] if lines else "no output"))[:300]


def rootfs_tar(name: str, sources: AptSources | None = None, cache: Path | None = None,
               log: TextIO = sys.stderr) -> Path:
    """The cached root filesystem tar of image ``name``, made with mmdebstrap when missing."""
    rec = recipe(name)
    sources = sources or find_sources()
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(rec, sources)
    tar = cache / f"{name}-{key[:16]}.tar"
    with _locked(cache / f"{name}.lock"):
        if tar.exists():
            return tar
        if shutil.which("mmdebstrap") is None:
            raise ImageMakerError("mmdebstrap is not installed (Debian package mmdebstrap; scripts/setup installs it)")
        if rec.platform:  # maintainer scripts of another CPU run under QEMU: the same check as ctk-build's
            from ctk_build.platforms import emulator_problem
            from ctk_shared.oci import Platform

            problem = emulator_problem(Platform.parse(rec.platform))
            if problem:
                raise ImageMakerError(f"{name}: {problem}")
        tmp = tar.with_suffix(".tmp")
        logfile = cache / f"{name}.log"
        log.write(f"images: making the {name} root filesystem with mmdebstrap from {sources.suite} "
                  f"(20-60 s; log: {logfile})\n")
        t0 = time.monotonic()
        with open(logfile, "w") as fh:
            rc = subprocess.run(mmdebstrap_args(rec, sources, tmp), stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tmp.unlink(missing_ok=True)
            raise ImageMakerError(f"mmdebstrap could not make the {name} root filesystem from the apt sources "
                                  f"{sources.describe()}, suite {sources.suite}: {_first_error(logfile)} "
                                  f"(log: {logfile})")
        os.replace(tmp, tar)
        for old in cache.glob(f"{name}-*.tar"):  # entries of older recipes or sources
            if old != tar:
                old.unlink(missing_ok=True)
        log.write(f"images: {name} root filesystem: {tar.stat().st_size / 2**20:.0f} MiB "
                  f"in {time.monotonic() - t0:.1f} s\n")
        return tar


def dockerfile(rec: Recipe, sources: AptSources) -> str:
    lines = [f"# made by `python3 -m scripts.images {rec.name}` (recipe version {RECIPE_VERSION}): {rec.summary}",
             f"# Debian {sources.suite}, packages: {' '.join(rec.packages) or '(minbase only)'}",
             "FROM scratch", "ADD rootfs.tar /", f"ENV PATH={PATH}", *rec.metadata]
    return "\n".join(lines) + "\n"


def make_context(name: str, out: Path, sources: AptSources | None = None, cache: Path | None = None,
                 log: TextIO = sys.stderr) -> Path:
    """Write the build context of image ``name`` into directory ``out``: Dockerfile, rootfs.tar (a hardlink
    to the cached tar where possible, so no copy of ~100 MiB) and the recipe's files."""
    rec = recipe(name)
    sources = sources or find_sources()
    tar = rootfs_tar(name, sources, cache, log)
    out.mkdir(parents=True, exist_ok=True)
    dest = out / "rootfs.tar"
    if not (dest.exists() and os.path.samefile(dest, tar)):
        dest.unlink(missing_ok=True)
        try:
            os.link(tar, dest)
        except OSError:
            shutil.copyfile(tar, dest)
    for fname, text in rec.files.items():
        (out / fname).write_text(text)
    (out / "Dockerfile").write_text(dockerfile(rec, sources))
    return out


def ctk_tool(tool: str) -> str:
    """The tool beside this interpreter first (a pyenv shim is slow and may be missing), then PATH."""
    beside = Path(sys.executable).parent / tool
    if beside.exists():
        return str(beside)
    found = shutil.which(tool)
    if found is None:
        raise ImageMakerError(f"{tool} is not installed (run scripts/setup)")
    return found


def build_image(name: str, ref: str, out: Path, *, address: str | None = None, namespace: str | None = None,
                push: bool = False, quiet: bool = False, sources: AptSources | None = None,
                cache: Path | None = None, env: dict[str, str] | None = None, log: TextIO = sys.stderr) -> str:
    """Make the context in ``out`` and build it with ctk-build as ``ref``; returns ctk-build's result line
    (``REF@sha256:…``)."""
    make_context(name, out, sources, cache, log)
    cmd = [ctk_tool("ctk-build")]
    if address:
        cmd += ["--address", address]
    if namespace:
        cmd += ["--namespace", namespace]
    rec = recipe(name)
    cmd += ["-t", ref, *(["--platform", rec.platform] if rec.platform else []),
            *(["--push"] if push else []), *(["-q"] if quiet else []), str(out)]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise ImageMakerError(f"ctk-build of the {name} image failed (exit {p.returncode}): {' '.join(cmd)}")
    return p.stdout.strip()
