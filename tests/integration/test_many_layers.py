"""An image with more layers than a container can stack: pulled without unpacking, refused by run with a clear
message (it used to unpack thousands of snapshots, then fail `run` with a bare gRPC RST_STREAM).

The image repeats one tiny layer, so the registry stores (and the pull fetches) a single blob: the test stays fast.
"""
from __future__ import annotations

import pytest
from ctk_shared.images import MAX_STACKED_LAYERS

from tests.support import images as im
from tests.support.cli import tool_runner

pytestmark = pytest.mark.integration


@pytest.fixture
def too_many(registry, tmp_path) -> str:
    tiny = im.extra_layer_tar({"/t": b"t"})
    layers = [im.busybox_layer_tar()] + [tiny] * MAX_STACKED_LAYERS
    im.build_image(tmp_path / "layout", "v1", layers, config={"Env": [im.DEFAULT_PATH], "Cmd": ["sh"]})
    ref = f"{registry.host}/many/layers:v1"
    im.push_layout(tmp_path / "layout", "v1", ref)
    return ref


def test_pull_stores_but_does_not_unpack_and_run_refuses(containerd, ctd, ctk, too_many, tmp_path):
    r = ctk(too_many)
    assert r.code == 0, r.err
    assert f"has {MAX_STACKED_LAYERS + 1} layers, more than the {MAX_STACKED_LAYERS}" in r.err
    assert ctd.images.get(too_many)
    assert ctd.snapshots("overlayfs").list() == []  # nothing unpacked
    assert ctd.leases.list() == []

    run = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace, data_root=tmp_path / "data")
    for cmd in (("run", "--rm", "--network", "none", too_many, "true"), ("create", too_many, "true")):
        r = run(*cmd)
        assert r.code == 125, r.err
        first = r.err.splitlines()[0]
        assert first == (f"ctk-run: error: image {too_many} has {MAX_STACKED_LAYERS + 1} layers; a container's root "
                         f"filesystem can stack at most {MAX_STACKED_LAYERS} (the overlayfs limit), so it cannot be "
                         "unpacked or run"), r.err
        assert "RST_STREAM" not in r.err
    assert run("ps", "-a", "-q").out == ""  # nothing half-made
    assert ctd.snapshots("overlayfs").list() == []


def test_a_huge_containerd_error_arrives_as_its_class_not_rst_stream(ctd):
    """containerd sends its error text in a trailer; one longer than grpcio's default metadata limit (a failed
    mount of a many-layer overlay lists every layer) used to surface as 'Stream removed (RST_STREAM …)'."""
    from ctk_shared.errors import NotFound

    with pytest.raises(NotFound) as e:
        ctd.snapshots("overlayfs").stat("k" * 300_000)
    assert "RST_STREAM" not in str(e.value)
    assert len(str(e.value)) < 3000 and "characters cut" in str(e.value)
