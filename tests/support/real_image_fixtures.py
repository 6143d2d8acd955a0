"""Pytest plugin: real Debian images (``scripts/images``) built into the session's containerd by ctk-build and
pushed to the session's plain-HTTP ``registry``, for integration tests that need real trees and daemons.

* ``real_images`` (session) — ``real_images["nginx"]`` -> :class:`RealImage` (``.ref`` in the registry, e.g.
  ``127.0.0.1:PORT/real/nginx:latest``, and ``.digest``). Images are made on first use only (a test that
  needs nginx does not pay for postgres): names are those of ``python3 -m scripts.images list`` (``debian``,
  ``tools``, ``nginx``, ``redis``, ``postgres``). Root filesystems come from the maker's on-disk cache
  (``$CTK_IMAGE_CACHE``, default ``.cache/images``), so only the first session on a machine runs mmdebstrap.

When mmdebstrap is missing or no apt mirror answers, the test FAILS with the maker's one-line reason: a
suite that claims behaviour on real images must never go green by skipping them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REAL_IMAGES_NAMESPACE = "ctk-real-images"


@dataclass(frozen=True)
class RealImage:
    name: str
    ref: str  # REGISTRY/real/NAME:latest, pullable by any namespace of the session's containerd
    digest: str  # what the tag points at


class RealImages:
    """Builds each image once per session, when a test first asks for it."""

    def __init__(self, address: str, registry_host: str, workdir: Path) -> None:
        self._address = address
        self._registry = registry_host
        self._workdir = workdir
        self._built: dict[str, RealImage] = {}

    def __getitem__(self, name: str) -> RealImage:
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def _build(self, name: str) -> RealImage:
        from scripts.images.make import build_image
        from scripts.images.sources import ImageMakerError

        ref = f"{self._registry}/real/{name}:latest"
        log = io.StringIO()
        try:
            line = build_image(name, ref, self._workdir / name, address=self._address,
                               namespace=REAL_IMAGES_NAMESPACE, push=True, quiet=True, log=log)
        except ImageMakerError as e:
            pytest.fail(f"real image {name!r} could not be made: {e}", pytrace=False)
        built, _, digest = line.partition("@")
        assert built == ref and digest.startswith("sha256:"), f"unexpected ctk-build result {line!r}"
        return RealImage(name, ref, digest)


@pytest.fixture(scope="session")
def real_images(containerd: Any, registry: Any, tmp_path_factory: pytest.TempPathFactory) -> RealImages:
    return RealImages(containerd.address, registry.host, tmp_path_factory.mktemp("real-images"))
