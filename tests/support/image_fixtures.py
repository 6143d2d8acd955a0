"""Pytest plugin: the standard test images, pushed once per session to the plain ``registry``."""
from __future__ import annotations

import pytest

from .image_catalog import TestImage, push_catalog


@pytest.fixture(scope="session")
def test_images(registry) -> dict[str, TestImage]:
    return push_catalog(registry.url, registry.host)
