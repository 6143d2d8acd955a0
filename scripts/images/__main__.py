"""``python3 -m scripts.images``: make real Debian images (see ``--help`` and the README)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .recipes import RECIPES
from .sources import ImageMakerError, copy_sources, find_sources

USAGE = """\
python3 -m scripts.images [OPTIONS] IMAGE OUT      write IMAGE's build context into directory OUT
python3 -m scripts.images [OPTIONS] IMAGE OUT --build REF [--push] [--address A] [--namespace N]
                                                  ... and build it with ctk-build as REF (prints REF@DIGEST)
python3 -m scripts.images rootfs IMAGE            print the path of IMAGE's cached root filesystem tar
python3 -m scripts.images sources DIR             copy the machine's apt sources into DIR (for a Dockerfile
                                                  that installs packages: COPY DIR/ /etc/apt/sources.list.d/)
python3 -m scripts.images list                    the images, one per line"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m scripts.images", usage=USAGE,
                                description="Real images from Debian packages (mmdebstrap + ctk-build). Root "
                                            "filesystems are cached under $CTK_IMAGE_CACHE (default "
                                            ".cache/images in the checkout), keyed by recipe, packages and "
                                            "apt sources.")
    p.add_argument("what", metavar="IMAGE|rootfs|sources|list")
    p.add_argument("args", nargs="*")
    p.add_argument("--build", metavar="REF", help="build the image with ctk-build and tag it REF")
    p.add_argument("--push", action="store_true", help="with --build: push REF (ctk-build --push)")
    p.add_argument("--address", help="containerd socket for ctk-build (default: ctk's own default)")
    p.add_argument("--namespace", help="containerd namespace for ctk-build")
    p.add_argument("-q", "--quiet", action="store_true", help="no ctk-build step lines")
    p.add_argument("--sources", type=Path, metavar="FILE",
                   help="apt sources file (.sources or .list) instead of the machine's apt configuration")
    p.add_argument("--suite", help="Debian suite (default: read from the apt sources, e.g. bookworm)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .make import build_image, make_context, rootfs_tar

    opts = _parser().parse_args(argv)
    want = {"list": 0, "rootfs": 1, "sources": 1}.get(opts.what, 1)
    if len(opts.args) != want:
        _parser().error(f"{opts.what}: expected {want} argument(s) after it")
    try:
        if opts.what == "list":
            for rec in RECIPES.values():
                print(f"{rec.name}\t{rec.summary}")
            return 0
        sources = find_sources(opts.sources, opts.suite)
        if opts.what == "sources":
            for path in copy_sources(sources, Path(opts.args[0])):
                print(path)
        elif opts.what == "rootfs":
            print(rootfs_tar(opts.args[0], sources))
        elif opts.build:
            print(build_image(opts.what, opts.build, Path(opts.args[0]), address=opts.address,
                              namespace=opts.namespace, push=opts.push, quiet=opts.quiet, sources=sources))
        else:
            print(make_context(opts.what, Path(opts.args[0]), sources))
    except ImageMakerError as e:
        print(f"images: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
