"""The layer cache: reused across invocations, keyed on content (not mtimes), safe from GC, prunable."""
from __future__ import annotations

import os

import pytest

from .conftest import cached_steps, write

pytestmark = pytest.mark.integration

DOCKERFILE = """\
FROM {base}
RUN echo step1 > /one
COPY a.txt /a.txt
RUN cat /a.txt > /copy-of-a
COPY b.txt /b.txt
ENV X=1
CMD ["cat", "/a.txt"]
"""


def _cached(err):
    return len(cached_steps(err))


@pytest.fixture
def ctx(tmp_path, bb):
    return write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE.format(base=bb), "a.txt": "A\n", "b.txt": "B\n"})


def test_rebuild_is_fully_cached_with_the_same_digest(build, ctx):
    first = build("-t", "app", str(ctx))
    assert first.code == 0, first.err
    assert _cached(first.err) == 0
    second = build("-t", "app", str(ctx))
    assert second.code == 0, second.err
    assert _cached(second.err) == 4
    assert second.out == first.out  # same config (times come from the cache) -> same digest


def test_mtime_change_keeps_cache_content_change_rebuilds_from_that_step(build, ctx):
    assert build("-t", "app", str(ctx)).code == 0
    os.utime(ctx / "a.txt", (1, 1))
    r = build("-t", "app", str(ctx))
    assert _cached(r.err) == 4
    (ctx / "a.txt").write_text("changed\n")
    r = build("-t", "app", str(ctx))
    assert r.code == 0, r.err
    cached = cached_steps(r.err)
    assert len(cached) == 1 and "RUN echo step1" in cached[0]  # everything from COPY a.txt on ran again
    (ctx / "a.txt").chmod(0o600)
    r = build("-t", "app", str(ctx))
    assert _cached(r.err) == 1  # the mode is part of the key


def test_no_cache_and_prune(build, ctx):
    assert build("-t", "app", str(ctx)).code == 0
    r = build("--no-cache", "-t", "app", str(ctx))
    assert r.code == 0 and _cached(r.err) == 0
    p = build("prune")
    assert p.code == 0 and "removed" in p.err and p.out == ""
    r = build("-t", "app", str(ctx))
    assert r.code == 0 and _cached(r.err) == 0


def test_cache_survives_image_removal_and_gc(build, ctd, ctx):
    assert build("-t", "app", str(ctx)).code == 0
    for img in ctd.images.list():
        ctd.images.delete(img.name, sync=True)  # a synchronous GC: only the cache roots the layers now
    r = build("-t", "app", str(ctx))
    assert r.code == 0, r.err
    assert _cached(r.err) == 4


def test_build_arg_change_invalidates_run(build, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nARG V=1\nRUN echo $V > /v\nRUN echo after\n"})
    assert build("-t", "a", str(ctx)).code == 0
    assert _cached(build("-t", "a", str(ctx)).err) == 2
    r = build("-t", "a", "--build-arg", "V=2", str(ctx))
    assert r.code == 0 and _cached(r.err) == 0
