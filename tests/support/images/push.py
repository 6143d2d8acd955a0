"""Pushing a layout to a registry with skopeo, checking the pushed digest is the layout's."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .layouts import layout_refs, read_blob
from .media import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, host_platform, platform_string, sha256_digest


# --- pushing ---------------------------------------------------------------------------------------------
class PushError(RuntimeError):
    pass


def _skopeo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    skopeo = shutil.which("skopeo")
    if not skopeo:
        raise PushError("skopeo is not installed (apt-get install skopeo)")
    # --insecure-policy: no dependence on /etc/containers/policy.json; stdin closed: never prompts
    p = subprocess.run([skopeo, "--insecure-policy", *args], check=False, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    if p.returncode != 0:
        raise PushError(f"skopeo {' '.join(args)} failed ({p.returncode}): {p.stderr.decode(errors='replace').strip()}")
    return p


def _registry_opts(prefix: str, tls_verify: bool, creds: str | tuple[str, str] | None,
                   cert_dir: str | os.PathLike[str] | None) -> list[str]:
    opts = [f"--{prefix}tls-verify={'true' if tls_verify else 'false'}"]
    if creds is None:
        opts.append(f"--{prefix}no-creds")  # hermetic: never read ~/.docker/config.json or auth.json
    else:
        opts.append(f"--{prefix}creds={creds if isinstance(creds, str) else ':'.join(creds)}")
    if cert_dir is not None:
        opts.append(f"--{prefix}cert-dir={cert_dir}")
    return opts


def remote_manifest(dest: str, *, tls_verify: bool = False, creds: str | tuple[str, str] | None = None,
                    cert_dir: str | os.PathLike[str] | None = None) -> bytes:
    """The raw manifest (or index) a registry serves for ``dest`` (``host/repo:tag``), via skopeo."""
    # inspect's flag is --tls-verify (no src- prefix), but --creds/--cert-dir/--no-creds follow the same shape
    return _skopeo("inspect", "--raw", *_registry_opts("", tls_verify, creds, cert_dir), f"docker://{dest}").stdout


def _has_docker_types(layout: Path, desc: Mapping[str, Any]) -> bool:
    if desc["mediaType"] in (DOCKER_MANIFEST, DOCKER_LIST):
        return True
    if desc["mediaType"] == OCI_INDEX:
        return any(m["mediaType"] in (DOCKER_MANIFEST, DOCKER_LIST)
                   for m in json.loads(read_blob(layout, desc["digest"])).get("manifests", []))
    return False


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _stage_dir_transport(layout: Path, desc: Mapping[str, Any], target: Path) -> None:
    """Lay out the image ``desc`` points at in containers/image's ``dir:`` format (version 1.1):
    ``manifest.json`` (the top document), ``<hex>.manifest.json`` per list entry, ``<hex>`` per blob."""
    blobs = layout / "blobs" / "sha256"
    (target / "version").write_text("Directory Transport Version: 1.1\n")
    _link_or_copy(blobs / desc["digest"][7:], target / "manifest.json")
    top = json.loads(read_blob(layout, desc["digest"]))
    manifests = [top]
    for entry in top.get("manifests", []):
        _link_or_copy(blobs / entry["digest"][7:], target / f"{entry['digest'][7:]}.manifest.json")
        manifests.append(json.loads(read_blob(layout, entry["digest"])))
    for m in manifests:
        for blob in ([m["config"]] if "config" in m else []) + m.get("layers", []):
            dst = target / blob["digest"][7:]
            if not dst.exists():
                _link_or_copy(blobs / blob["digest"][7:], dst)


def push_layout(layout_dir: str | os.PathLike[str], ref_name: str, dest: str, *, tls_verify: bool = False,
                creds: str | tuple[str, str] | None = None, cert_dir: str | os.PathLike[str] | None = None,
                all_platforms: bool = True) -> str:
    """``skopeo copy --preserve-digests oci:<layout>:<ref_name> docker://<dest>`` and check the registry now
    serves the layout's exact manifest bytes for ``dest``. Returns the digest.

    ``dest`` is ``host[:port]/repo:tag``. ``all_platforms`` copies every image of an index (``--all``); without
    it skopeo copies only the host platform's image, so the pushed digest is that manifest's, not the index's.
    """
    layout = Path(layout_dir)
    desc = layout_refs(layout).get(ref_name)
    if desc is None:
        raise PushError(f"{ref_name!r} is not tagged in {layout}/index.json")
    expected = desc["digest"]
    if desc["mediaType"] in (OCI_INDEX, DOCKER_LIST) and not all_platforms:
        idx = json.loads(read_blob(layout, expected))
        host = host_platform()
        match = [m for m in idx["manifests"] if (m["platform"]["os"], m["platform"]["architecture"]) == host]
        if not match:
            raise PushError(f"{ref_name!r} has no {platform_string(host)} image")
        expected = match[0]["digest"]
    opts = ["copy", "-q", "--preserve-digests", *(["--all"] if all_platforms else []),
            *_registry_opts("dest-", tls_verify, creds, cert_dir)]
    if not _has_docker_types(layout, desc):
        _skopeo(*opts, f"oci:{layout}:{ref_name}", f"docker://{dest}")
    else:
        # skopeo 1.9's oci: transport ignores index.json entries that are not OCI types ("no descriptor found
        # for reference"): hand it the same bytes through its dir: transport, which sniffs the media type
        with tempfile.TemporaryDirectory(prefix=".skopeo-dir-", dir=layout) as tmp:
            _stage_dir_transport(layout, desc, Path(tmp))
            _skopeo(*opts, f"dir:{tmp}", f"docker://{dest}")
    pushed = sha256_digest(remote_manifest(dest, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir))
    if pushed != expected:
        raise PushError(f"{dest}: registry serves {pushed}, the layout has {expected} (skopeo rewrote the image)")
    return pushed
