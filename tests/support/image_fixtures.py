"""Pytest plugin: the standard test images (see ``tests.support.images.standard_images``), built once per
session and pushed to the session's plain-HTTP ``registry``.

* ``test_images`` (session) — name -> :class:`~tests.support.images.CatalogImage` for ``busybox``,
  ``multilayer``, ``zstd``, ``plain``, ``docker``, ``multiarch``, ``dockerlist``; ``.ref`` is the full ref in
  the registry (``127.0.0.1:PORT/library/busybox:latest``), ``.digest`` what its tag points at.
* ``test_image_layouts`` (session) — the same images as local OCI layouts only (no registry needed).
"""
from __future__ import annotations

from typing import Any

import pytest

from .images import CatalogImage, build_standard_layouts, standard_images


@pytest.fixture(scope="session")
def test_images(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CatalogImage]:
    return standard_images(tmp_path_factory.mktemp("test-images"), registry.host)


@pytest.fixture(scope="session")
def test_image_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return build_standard_layouts(tmp_path_factory.mktemp("test-image-layouts"))
