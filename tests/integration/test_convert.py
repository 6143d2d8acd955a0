"""ctk-pull convert: eStargz and recompression in a real containerd store, pushed to a real registry, pulled
back and run with ctk-run; and interop with Debian's ``ctr-remote`` (stargz-snapshotter 0.12) both ways."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess

import pytest
from ctk_shared import estargz, oci
from ctk_shared import images as store
from ctk_shared.errors import NotFound

from tests.support.cli import remove_containers, tool_runner
from tests.support.rootfs import mounted_image

pytestmark = pytest.mark.integration

CTR_REMOTE = shutil.which("ctr-remote")
needs_ctr_remote = pytest.mark.skipif(CTR_REMOTE is None, reason="ctr-remote (Debian stargz-snapshotter) not installed")


@pytest.fixture
def ctk_run(containerd, ctd, tmp_path, cni_env):
    go = tool_runner("ctk-run", address=containerd.address, namespace=ctd.namespace, data_root=tmp_path / "data",
                     env=cni_env.env)
    yield go
    remove_containers(go)


def _doc(ctd, desc):
    return json.loads(store.read_blob(ctd, desc))


def _image_docs(ctd, name):
    img = store.load_local(ctd, name)
    return img, _doc(ctd, img.manifest_desc)


def _check_estargz_layers(ctd, name):
    """Every layer of ``name``: a valid eStargz whose TOC matches the annotation, a plain tar.gz whose DiffID is
    the config's; returns the TOCs."""
    img, manifest = _image_docs(ctd, name)
    tocs = []
    for layer, diff_id in zip(img.manifest.layers, img.config.diff_ids):
        assert layer.media_type == oci.OCI_LAYER_GZIP
        blob = ctd.content.read_all(layer.digest)
        assert oci.sha256_digest(blob) == layer.digest
        tar = gzip.decompress(blob)
        assert oci.sha256_digest(tar) == diff_id
        assert layer.annotations[estargz.UNCOMPRESSED_SIZE_ANNOTATION] == str(len(tar))
        assert ctd.content.info(layer.digest).labels["containerd.io/uncompressed"] == diff_id
        r = estargz.Reader.from_bytes(blob, layer.annotations[estargz.TOC_DIGEST_ANNOTATION])
        r.verify()
        tocs.append(r)
    return img, tocs


def test_convert_estargz_push_pull_and_run(ctk, ctd, registry, test_images, ctk_run):
    src = test_images["multilayer"]
    assert ctk(src.ref, "-q").code == 0
    dst = f"{registry.host}/converted/multilayer:esgz"
    r = ctk("convert", "--estargz", "--oci", src.ref, dst)
    assert r.code == 0, r.err
    assert len(r.lines) == 1 and r.lines[0].startswith(f"{dst}@sha256:")
    digest = r.lines[0].split("@", 1)[1]
    assert ctd.images.get(dst).target.digest == digest
    assert ctd.leases.list() == []  # the conversion's lease is gone; GC labels keep the new content

    img, tocs = _check_estargz_layers(ctd, dst)
    assert img.config.diff_ids != store.load_local(ctd, src.ref).config.diff_ids  # TOC + landmark change the tar
    assert [t.landmark() for t in tocs] == [estargz.NO_PREFETCH_LANDMARK] * 3
    assert tocs[1].read_file("data/a.txt") == src.expect_files["/data/a.txt"]
    config = _doc(ctd, img.manifest.config)
    src_config = _doc(ctd, store.load_local(ctd, src.ref).manifest.config)
    assert {k: v for k, v in config.items() if k != "rootfs"} == {k: v for k, v in src_config.items() if k != "rootfs"}

    p = ctk("push", dst)
    assert p.code == 0, p.err
    assert p.lines == [f"{dst}@{digest}"]
    for name in (dst, src.ref):
        assert ctk("rm", name).code == 0
    pulled = ctk(dst, "-q")
    assert pulled.code == 0, pulled.err
    assert pulled.lines == [f"{dst}@{digest}"]
    _check_estargz_layers(ctd, dst)  # the registry round trip kept blobs and annotations
    with mounted_image(ctd, dst) as root:
        for path, content in src.expect_files.items():
            if content is None:
                assert not (root / path.lstrip("/")).exists()
            else:
                assert (root / path.lstrip("/")).read_bytes() == content
        # as with ctr-remote's images, a runtime without lazy pulling extracts the TOC and landmark as files
        assert (root / estargz.TOC_TAR_NAME).is_file() and (root / estargz.NO_PREFETCH_LANDMARK).is_file()
    run = ctk_run("run", "--rm", "--network", "none", dst, "cat", "/data/a.txt")
    assert run.code == 0, run.err
    assert run.out.encode() == src.expect_files["/data/a.txt"]


def test_convert_record_in_and_chunks(ctk, ctd, test_images, tmp_path):
    src = test_images["busybox"]
    assert ctk(src.ref, "-q").code == 0
    rec = tmp_path / "rec.json"
    rec.write_text('{"path":"bin/busybox","manifestDigest":"x","layerIndex":0}\n{"path":"etc/passwd"}\n'
                   '{"path":"no/such/file"}\n')
    dst = "example.test/conv/bb:prio"
    r = ctk("convert", "--estargz", "--estargz-record-in", str(rec), "--chunk-size", "262144", src.ref, dst)
    assert r.code == 0, r.err
    assert "no/such/file" in r.err
    _, (toc,) = _check_estargz_layers(ctd, dst)
    names = [e["name"] for e in toc.toc.entries if e["type"] != "chunk"]
    assert names[:5] == ["bin/", "bin/busybox", "etc/", "etc/passwd", estargz.PREFETCH_LANDMARK]
    assert toc.prefetch_range()[1] > 0
    bb = toc.lookup("bin/busybox")
    chunks = [e for e in toc.toc.entries if e["type"] == "chunk"]
    assert bb["chunkSize"] == 262144 and chunks and all(c["name"] == "bin/busybox" for c in chunks)
    assert toc.read_file("bin/busybox") == open("/bin/busybox", "rb").read()


@pytest.mark.parametrize("fmt,mt", [("--zstd", oci.OCI_LAYER_ZSTD), ("--uncompressed", oci.OCI_LAYER)])
def test_recompression_keeps_diff_ids(ctk, ctd, test_images, ctk_run, fmt, mt):
    src = test_images["docker"]  # Docker schema 2, gzip layers
    assert ctk(src.ref, "-q").code == 0
    dst = f"example.test/conv/docker:{fmt.strip('-')}"
    if fmt == "--zstd":
        bad = ctk("convert", fmt, src.ref, dst)
        assert bad.code == 2 and "--oci" in bad.err and "Traceback" not in bad.err
        with pytest.raises(NotFound):
            ctd.images.get(dst)
    r = ctk("convert", fmt, "--oci", src.ref, dst)
    assert r.code == 0, r.err
    img, manifest = _image_docs(ctd, dst)
    old = store.load_local(ctd, src.ref)
    assert manifest["mediaType"] == oci.OCI_MANIFEST and img.manifest.config.media_type == oci.OCI_CONFIG
    assert img.manifest.config.digest == old.manifest.config.digest  # same bytes, same diff_ids
    for layer, diff_id in zip(img.manifest.layers, img.config.diff_ids):
        assert layer.media_type == mt
        blob = ctd.content.read_all(layer.digest)
        if fmt == "--zstd":
            import zstandard

            blob = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob), read_across_frames=True).read()
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == diff_id
    run = ctk_run("run", "--rm", "--network", "none", dst, "cat", "/data/a.txt")
    assert run.code == 0, run.err
    assert run.out.encode() == src.expect_files["/data/a.txt"]


def test_convert_from_stdin_platforms_and_errors(ctk, ctd, test_images):
    multi = test_images["multiarch"]
    pulled = ctk(multi.ref)
    assert pulled.code == 0
    r = ctk("convert", "--estargz", "--format", "json", "-", "example.test/conv/multi:esgz", input=pulled.out)
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert rec["MediaType"] == oci.OCI_INDEX and rec["Platforms"] == [str(oci.host_platform())]
    index = json.loads(store.read_blob(ctd, ctd.images.get("example.test/conv/multi:esgz").target))
    assert len(index["manifests"]) == 1
    # the arm64 manifest was never pulled: --all-platforms refuses, and no image is created
    bad = ctk("convert", "--estargz", "--all-platforms", multi.ref, "example.test/conv/multi:all")
    assert bad.code == 3 and "--all-platforms" in bad.err and "Traceback" not in bad.err  # not found
    assert not [i for i in ctd.images.list() if i.name.endswith("multi:all")]
    missing = ctk("convert", "--estargz", "example.test/nope:1", "example.test/conv/x:1")
    assert missing.code == 3 and "not found" in missing.err
    usage = ctk("convert", multi.ref, "example.test/conv/x:1")
    assert usage.code == 2 and "--estargz" in usage.err


# --- interop with ctr-remote (stargz-snapshotter 0.12) -------------------------------------------------------
def _ctr_remote(containerd, ctd, *args):
    p = subprocess.run([CTR_REMOTE, "-a", containerd.address, "-n", ctd.namespace, *args], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _structure(reader):
    """What must agree between two converters for the same input: every TOC field but the compressed offsets
    and the user/group names (Go writes those once per uid per parallel part, so where depends on GOMAXPROCS)."""
    skip = {"offset", "userName", "groupName"}
    return [{k: v for k, v in e.items() if k not in skip} for e in estargz.public_entries(reader.toc.entries)]


@needs_ctr_remote
@pytest.mark.parametrize("extra", [[], ["record", "chunk"]], ids=["default", "record-chunk"])
def test_ctr_remote_and_ctk_agree(containerd, ctk, ctd, test_images, tmp_path, extra):
    src = test_images["multilayer"]
    assert ctk(src.ref, "-q").code == 0
    ctk_args, ctr_args = [], []
    if "record" in extra:
        rec = tmp_path / "rec.json"
        rec.write_text('{"path":"data/run.sh"}\n{"path":"bin/sh"}\n{"path":"bin/busybox"}\n')
        ctk_args += ["--estargz-record-in", str(rec)]
        ctr_args += ["--estargz-record-in", str(rec)]
    if "chunk" in extra:
        ctk_args += ["--chunk-size", "65536"]
        ctr_args += ["--estargz-chunk-size", "65536"]
    by_ctr, by_ctk = "example.test/interop/ctr:esgz", "example.test/interop/ctk:esgz"
    _ctr_remote(containerd, ctd, "image", "convert", "--oci", "--estargz", *ctr_args, src.ref, by_ctr)
    r = ctk("convert", "--estargz", "--oci", *ctk_args, src.ref, by_ctk)
    assert r.code == 0, r.err
    ctr_img, ctr_tocs = _check_estargz_layers(ctd, by_ctr)  # ctr-remote's output passes ctk's reader
    ctk_img, ctk_tocs = _check_estargz_layers(ctd, by_ctk)
    for a, b in zip(ctr_tocs, ctk_tocs):
        assert _structure(a) == _structure(b)
        assert a.landmark() == b.landmark()
    # same tar semantics: the same files with the same contents
    for a_desc, b_desc in zip(ctr_img.manifest.layers, ctk_img.manifest.layers):
        a = _tar_files(ctd.content.read_all(a_desc.digest))
        b = _tar_files(ctd.content.read_all(b_desc.digest))
        assert a == b
    # and ctr-remote reads ctk's TOC digest as ctk annotated it
    for layer in ctk_img.manifest.layers:
        out = _ctr_remote(containerd, ctd, "image", "get-toc-digest", layer.digest)
        assert out.strip() == layer.annotations[estargz.TOC_DIGEST_ANNOTATION]


def _tar_files(blob: bytes) -> dict[str, tuple]:
    import tarfile

    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        for m in tf:
            if m.name == estargz.TOC_TAR_NAME:
                continue
            data = tf.extractfile(m).read() if m.isfile() else None
            out[m.name.rstrip("/")] = (m.type, m.mode & 0o7777, m.uid, m.gid, int(m.mtime), m.linkname, data)
    return out
