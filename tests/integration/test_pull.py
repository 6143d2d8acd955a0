"""ctk-pull against a real containerd and a real registry: what a user sees, and what is left in the store."""
from __future__ import annotations

import json

import pytest
from ctk_shared import oci

from tests.support.cli import run_tool
from tests.support.rootfs import mounted_image

pytestmark = pytest.mark.integration



def _ref(test_images, name):
    return test_images[name].ref


def test_pull_prints_ref_at_digest_and_unpacks(ctk, ctd, test_images):
    img = test_images["busybox"]
    r = ctk(img.ref)
    assert r.code == 0, r.err
    assert r.lines == [f"{img.ref}@{img.digest}"]  # stdout: only the result
    record = ctd.images.get(img.ref)
    assert record.target.digest == img.digest
    with mounted_image(ctd, img.ref) as root:
        assert (root / "bin" / "busybox").stat().st_size > 100_000
        assert (root / "bin" / "sh").is_symlink()
    # nothing of the pull is left pinned by a lease
    assert ctd.leases.list() == []


def test_plain_progress_on_stderr_when_not_a_tty(ctk, test_images):
    r = ctk(test_images["multilayer"].ref)
    assert r.code == 0, r.err
    assert "downloading" in r.err and "done" in r.err
    q = ctk(test_images["zstd"].ref, "-q")
    assert q.code == 0 and q.err == ""


@pytest.mark.parametrize("name", ["multilayer", "zstd", "plain", "docker"])
def test_layer_formats_and_whiteouts(ctk, ctd, test_images, name):
    img = test_images[name]
    r = ctk(img.ref, "-q")
    assert r.code == 0, r.err
    with mounted_image(ctd, img.ref) as root:
        for path, content in img.expect_files.items():
            if content is None:
                assert not (root / path.lstrip("/")).exists(), f"{path} should be deleted by a whiteout"
            else:
                assert (root / path.lstrip("/")).read_bytes() == content


@pytest.mark.parametrize("name", ["multiarch", "dockerlist"])
def test_platform_selection_from_index(ctk, ctd, test_images, name):
    img = test_images[name]
    r = ctk("--platform", "linux/arm64", img.ref, "--format", "json")
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert rec["Digest"] == img.digest and rec["Platforms"] == ["linux/arm64"]
    with mounted_image(ctd, img.ref, platform=oci.Platform.parse("linux/arm64")) as root:
        assert (root / "platform").read_text().strip() == "arm64"
    # the host platform was not fetched: asking for it tells the user what to do
    r = ctk("inspect", img.ref)
    assert r.code == 3 and "--platform" in r.err  # not found: that platform's content


def test_repull_fetches_nothing(containerd, ctd, registry, test_images):
    from ctk_shared import connect, reference
    from ctk_shared.config import GlobalOptions
    from ctk_shared.pull import pull

    img = test_images["multilayer"]
    ref = reference.parse(img.ref)
    reg = connect.registry(ref.domain, GlobalOptions())
    first = pull(ctd, reg, ref)
    assert first.fetched_bytes > 0
    again = pull(ctd, reg, ref)
    assert again.fetched_bytes == 0 and again.digest == first.digest


def test_images_lists_json_lines_when_piped(ctk, test_images):
    img = test_images["busybox"]
    assert ctk(img.ref, "-q").code == 0
    r = ctk("images")
    assert r.code == 0, r.err
    recs = [json.loads(line) for line in r.lines]
    mine = [x for x in recs if x["Name"] == img.ref]
    assert len(mine) == 1
    rec = mine[0]
    assert rec["Tag"] == "latest" and rec["Digest"] == img.digest and rec["ID"] == img.digest[7:19]
    assert rec["Platform"] == "linux/amd64" and rec["Size"] > rec["BlobSize"] > 0
    t = ctk("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert f"{img.ref}" in t.lines
    q = ctk("images", "-q")
    assert img.digest[7:19] in q.lines


def test_inspect_shows_manifest_and_config(ctk, test_images):
    img = test_images["busybox"]
    assert ctk(img.ref, "-q").code == 0
    r = ctk("inspect", img.ref)
    assert r.code == 0, r.err
    (doc,) = json.loads(r.out)  # a JSON array, as docker image inspect and every ctk inspect
    assert doc["Digest"] == img.digest
    assert doc["Manifest"]["layers"] and doc["RootFS"]["type"] == "layers"
    assert doc["Config"]["Cmd"] == ["sh"]
    assert ctk("inspect", "--format", "{{.Digest}}", img.ref).lines == [img.digest]
    assert json.loads(ctk("inspect", "--format", "json", img.ref).out) == [doc]
    bad = ctk("inspect", "--format", "{{.Nope}}", img.ref)
    assert bad.code == 2 and "'.Nope'" in bad.err and "RepoTags" in bad.err and not bad.out
    raw = ctk("inspect", "--raw", img.ref)
    assert oci.sha256_digest(raw.out.rstrip("\n").encode()) == img.digest or raw.out.encode()


def test_tag_and_rm(ctk, ctd, test_images):
    img = test_images["busybox"]
    assert ctk(img.ref, "-q").code == 0
    r = ctk("tag", img.ref, "example.com/me/bb:v1")
    assert r.code == 0 and r.lines == [f"example.com/me/bb:v1@{img.digest}"]
    assert ctd.images.get("example.com/me/bb:v1").target.digest == img.digest
    r = ctk("rm", "example.com/me/bb:v1")
    assert r.code == 0 and r.lines == ["Untagged: example.com/me/bb:v1"]
    r = ctk("rm", "example.com/me/bb:v1")
    assert r.code == 3 and "not found" in r.err


def test_refs_from_stdin(ctk, test_images):
    a, b = test_images["busybox"], test_images["zstd"]
    r = ctk("-q", "-", input=f'{a.ref}\n{{"ref": "{b.ref}"}}\n')
    assert r.code == 0, r.err
    assert r.lines == [f"{a.ref}@{a.digest}", f"{b.ref}@{b.digest}"]


def test_malformed_ref_is_a_usage_error(ctk):
    r = ctk("Not/Valid:Ref!")
    assert r.code == 2
    assert r.err.startswith("ctk-pull: error: invalid reference format") and "Traceback" not in r.err


def test_unknown_host(ctk):
    r = ctk("nonexistent.invalid/foo/bar:1")
    errors = [line for line in r.err.splitlines() if line.startswith("ctk-pull:")]
    assert r.code == 1 and "nonexistent.invalid" in errors[0] and "Traceback" not in r.err
    assert len(errors) <= 2  # the error and its hint


def test_containerd_not_running_names_the_address(tmp_path):
    sock = str(tmp_path / "nothing.sock")
    r = run_tool("ctk-pull", "images", address=sock, namespace="x")
    assert r.code == 1
    assert sock in r.err and "hint" in r.err and "Traceback" not in r.err


def test_unknown_media_type_refused(ctk, ctd, registry):
    from ctk_shared import connect
    from ctk_shared.config import GlobalOptions

    reg = connect.registry(registry.host, GlobalOptions())
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"not a tar"
    reg.upload_blob("test/weird", oci.sha256_digest(cfg), len(cfg), [cfg])
    reg.upload_blob("test/weird", oci.sha256_digest(layer), len(layer), [layer])
    manifest = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                           "config": {"mediaType": oci.OCI_CONFIG, "digest": oci.sha256_digest(cfg), "size": len(cfg)},
                           "layers": [{"mediaType": "application/x-mystery", "digest": oci.sha256_digest(layer),
                                       "size": len(layer)}]}).encode()
    reg.put_manifest("test/weird", "v1", manifest, oci.OCI_MANIFEST)
    r = ctk(f"{registry.host}/test/weird:v1")
    assert r.code == 1 and "application/x-mystery" in r.err
    assert ctd.images.list() == []


def test_rm_refuses_an_image_used_by_a_container(ctk, ctd, test_images):
    from ctk_shared.containerd import Container

    img = test_images["busybox"]
    assert ctk(img.ref, "-q").code == 0
    ctd.containers.create(Container(id="user1", image=img.ref, spec=b"{}"))
    try:
        r = ctk("rm", img.ref)
        assert r.code == 1 and "used by container user1" in r.err and "-f" in r.err
        assert ctd.images.get(img.ref)
        r = ctk("rm", "-f", img.ref)
        assert r.code == 0
    finally:
        ctd.containers.delete("user1")
