"""Running a CNI plugin chain (the part of libcni ctk needs): ADD in order, DEL in reverse.

Each plugin gets the conflist's ``name`` and ``cniVersion``, the previous plugin's result as ``prevResult``
and, for the capabilities it declares, the matching ``runtimeConfig`` entries (``portMappings`` for portmap).
The ADD result and the exact conflist used are cached per attachment, so DEL undoes what ADD did even when
the conflist changed or disappeared in between, and a DEL without a cache entry is a no-op.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctk_shared.errors import CtkError, NotFound

from . import jsonfiles

PLUGIN_TIMEOUT = 60.0
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PluginError(CtkError):
    """A plugin answered with a CNI error (code + msg) or crashed."""


@dataclass(frozen=True)
class Attachment:
    """One container interface on one network."""

    network: str
    container_id: str
    ifname: str

    @property
    def key(self) -> str:
        return f"{self.network}-{self.container_id}-{self.ifname}"


class Runtime:
    """Executes plugins found in ``cni_path`` (colon-separated) and keeps its cache in ``cache_dir``."""

    def __init__(self, cni_path: str, cache_dir: Path) -> None:
        self.cni_path = cni_path
        self.cache_dir = Path(cache_dir)

    # ------------------------------------------------------------------------------------------- public

    def add(self, conflist: dict[str, Any], att: Attachment, netns: str, runtime_config: dict[str, Any],
            cni_args: str = "") -> dict[str, Any]:
        """Attach; on a failing plugin the plugins that already ran are undone and the error re-raised."""
        prev: dict[str, Any] | None = None
        done: list[dict[str, Any]] = []
        for plugin in conflist.get("plugins", []):
            try:
                prev = self._exec("ADD", self._plugin_conf(conflist, plugin, prev, runtime_config), att, netns,
                                  cni_args)
            except BaseException:
                for undo in reversed(done):
                    try:
                        self._exec("DEL", self._plugin_conf(conflist, undo, prev, runtime_config), att, netns, cni_args)
                    except CtkError:
                        pass
                raise
            done.append(plugin)
        result = prev or {}
        self._save(att, {"conflist": conflist, "result": result, "runtimeConfig": runtime_config,
                         "cniArgs": cni_args})
        return result

    def delete(self, att: Attachment, netns: str = "") -> list[str]:
        """Detach what :meth:`add` attached; returns the errors of plugins that failed (DEL goes on past them)."""
        cached = self.cached(att)
        if cached is None:
            return []
        conflist, result = cached["conflist"], cached.get("result") or None
        errors: list[str] = []
        for plugin in reversed(conflist.get("plugins", [])):
            try:
                self._exec("DEL", self._plugin_conf(conflist, plugin, result, cached.get("runtimeConfig") or {}),
                           att, netns, cached.get("cniArgs", ""))
            except CtkError as e:
                errors.append(f"{plugin.get('type')}: {e}")
        self._cache_path(att).unlink(missing_ok=True)
        return errors

    def forget(self, att: Attachment) -> None:
        """Drop the record of an attachment whose DEL has nothing to undo (loopback)."""
        self._cache_path(att).unlink(missing_ok=True)

    def cached(self, att: Attachment) -> dict[str, Any] | None:
        return jsonfiles.read(self._cache_path(att))

    def attachments(self, container_id: str) -> list[Attachment]:
        """Every attachment of a container that is still cached (to clean up after a crash)."""
        out = []
        for rec in jsonfiles.read_dir(self.cache_dir, contains=f"-{container_id}-"):
            a = rec.get("attachment") or {}
            if a.get("container_id") == container_id:
                out.append(Attachment(a["network"], container_id, a["ifname"]))
        return out

    # ------------------------------------------------------------------------------------------ helpers

    @staticmethod
    def _plugin_conf(conflist: dict[str, Any], plugin: dict[str, Any], prev: dict[str, Any] | None,
                     runtime_config: dict[str, Any]) -> dict[str, Any]:
        conf = dict(plugin)
        conf["name"] = conflist.get("name", "")
        conf["cniVersion"] = conflist.get("cniVersion", "1.0.0")
        if prev is not None:
            conf["prevResult"] = prev
        caps = plugin.get("capabilities") or {}
        rc = {k: v for k, v in runtime_config.items() if caps.get(k)}
        if rc:
            conf["runtimeConfig"] = rc
        return conf

    def _find(self, plugin_type: str) -> str:
        for d in self.cni_path.split(":"):
            p = os.path.join(d, plugin_type)
            if d and os.access(p, os.X_OK):
                return p
        raise NotFound(f"CNI plugin {plugin_type!r} not found in CNI_PATH {self.cni_path}",
                       hint="apt-get install containernetworking-plugins, or point --cni-path at the plugins")

    def _exec(self, command: str, conf: dict[str, Any], att: Attachment, netns: str, cni_args: str
              ) -> dict[str, Any] | None:
        binary = self._find(str(conf.get("type", "")))
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id, "CNI_NETNS": netns,
               "CNI_IFNAME": att.ifname, "CNI_PATH": self.cni_path, "PATH": os.environ.get("PATH") or _PATH}
        if cni_args:
            env["CNI_ARGS"] = cni_args
        try:
            p = subprocess.run([binary], input=json.dumps(conf).encode(), capture_output=True, env=env,
                               timeout=PLUGIN_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise PluginError(f"CNI plugin {conf.get('type')} {command} timed out") from None
        if p.returncode != 0:
            raise PluginError(f"CNI plugin {conf.get('type')} {command}: {_error_text(p.stdout, p.stderr)}")
        if command != "ADD" or not p.stdout.strip():
            return None
        try:
            result = json.loads(p.stdout)
        except json.JSONDecodeError:
            raise PluginError(f"CNI plugin {conf.get('type')} ADD printed no JSON result") from None
        if not isinstance(result, dict):  # the CNI spec's result is an object
            raise PluginError(f"CNI plugin {conf.get('type')} ADD printed no JSON result")
        return result

    def _cache_path(self, att: Attachment) -> Path:
        return self.cache_dir / f"{att.key}.json"

    def _save(self, att: Attachment, record: dict[str, Any]) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        record["attachment"] = {"network": att.network, "container_id": att.container_id, "ifname": att.ifname}
        jsonfiles.write(self._cache_path(att), record)


def _error_text(stdout: bytes, stderr: bytes) -> str:
    """The ``msg`` (and ``details``) of a CNI error object, else whatever the plugin wrote."""
    try:
        err = json.loads(stdout)
        msg = str(err.get("msg") or "")
        details = str(err.get("details") or "")
        if msg:
            return f"{msg} ({details})" if details and details not in msg else msg
    except (json.JSONDecodeError, AttributeError):
        pass
    text = (stderr or stdout).decode(errors="replace").strip()
    return text.splitlines()[-1] if text else "failed without a message"


def first_ipv4(result: dict[str, Any], ifname: str) -> dict[str, str]:
    """IP (with prefix), gateway and MAC of the container-side interface from a CNI 1.0 result."""
    ifaces = result.get("interfaces") or []
    mac = ""
    for i, iface in enumerate(ifaces):
        if iface.get("name") == ifname and iface.get("sandbox"):
            mac = iface.get("mac", "")
            idx = i
            break
    else:
        idx = None
    for ip in result.get("ips") or []:
        addr = ip.get("address", "")
        if ":" in addr.split("/")[0]:
            continue
        if idx is not None and ip.get("interface") not in (None, idx):
            continue
        return {"address": addr, "gateway": ip.get("gateway", ""), "mac": mac}
    return {"address": "", "gateway": "", "mac": mac}
