"""ADD <url>: the file name a download gets, and the size cap and timeouts with their overrides."""
from __future__ import annotations

import pytest
from ctk_build.copysteps import ADD_MAX_SIZE, ADD_TIMEOUT, download_limits, url_filename
from ctk_shared.errors import CtkError


@pytest.mark.parametrize("url,name", [
    ("http://h/a/b.tgz?x=1#f", "b.tgz"), ("http://h", "download"), ("http://h/", "download"),
    ("http://h/..", "download"), ("http://h/a/.", "download"), ("http://h/a%2F..", "a%2F.."),
    ("https://h/x/..?q=/etc/passwd", "download"),
])
def test_url_filename_stays_one_plain_name(url, name):
    assert url_filename(url) == name


def test_download_limits(monkeypatch):
    monkeypatch.delenv("CTK_BUILD_ADD_MAX_SIZE", raising=False)
    monkeypatch.delenv("CTK_BUILD_ADD_TIMEOUT", raising=False)
    assert download_limits() == (ADD_MAX_SIZE, ADD_TIMEOUT)
    monkeypatch.setenv("CTK_BUILD_ADD_MAX_SIZE", "1024")
    monkeypatch.setenv("CTK_BUILD_ADD_TIMEOUT", "5,7.5")
    assert download_limits() == (1024, (5.0, 7.5))
    monkeypatch.setenv("CTK_BUILD_ADD_TIMEOUT", "0")
    with pytest.raises(CtkError, match="CTK_BUILD_ADD_TIMEOUT"):
        download_limits()
    monkeypatch.setenv("CTK_BUILD_ADD_MAX_SIZE", "-1")
    with pytest.raises(CtkError, match="CTK_BUILD_ADD_MAX_SIZE"):
        download_limits()
