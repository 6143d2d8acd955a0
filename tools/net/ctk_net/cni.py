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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctk_shared.errors import CtkError, NotFound

from . import jsonfiles

PLUGIN_TIMEOUT = 60.0
# Plugins that only add to what the plugin before them made (their own iptables chains and rules named after the
# container, sysctls) and whose ADD hands the previous result on unchanged: consecutive ones after the first
# plugin run side by side, for ADD and for DEL. Their DELs were most of a container's teardown, one after the
# other (portmap ~110 ms: 20 iptables/ip6tables runs; firewall ~50 ms). The interface plugin (bridge) still
# runs alone, before them on ADD and after them on DEL, as the chain's order says.
_SIDE_PLUGINS = frozenset({"portmap", "firewall", "tuning"})
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
        self.timings: list[tuple[str, float]] = []  # ("ADD bridge", seconds) per plugin run, for --debug

    # ------------------------------------------------------------------------------------------- public

    def add(self, conflist: dict[str, Any], att: Attachment, netns: str, runtime_config: dict[str, Any],
            cni_args: str = "") -> dict[str, Any]:
        """Attach; on a failing plugin the plugins that already ran are undone and the error re-raised."""
        prev: dict[str, Any] | None = None
        done: list[dict[str, Any]] = []
        for group in _groups(conflist.get("plugins", [])):
            outcomes = self._run_side_by_side(
                "ADD", [self._plugin_conf(conflist, plugin, prev, runtime_config) for plugin in group], att, netns,
                cni_args)
            done.extend(p for p, o in zip(group, outcomes) if not isinstance(o, BaseException))
            failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
            if failed is not None:
                for undo in reversed(done):
                    try:
                        self._exec("DEL", self._plugin_conf(conflist, undo, prev, runtime_config), att, netns, cni_args)
                    except CtkError:
                        pass
                raise failed
            if len(group) == 1:  # a side group hands on the result it was given
                prev = outcomes[0]  # type: ignore[assignment]  # not an exception: checked above
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
        for group in reversed(_groups(conflist.get("plugins", []))):
            confs = [self._plugin_conf(conflist, plugin, result, cached.get("runtimeConfig") or {}) for plugin in group]
            for plugin, outcome in zip(group, self._run_side_by_side("DEL", confs, att, netns,
                                                                      cached.get("cniArgs", ""))):
                if isinstance(outcome, CtkError):
                    errors.append(f"{plugin.get('type')}: {outcome}")
                elif isinstance(outcome, BaseException):
                    raise outcome
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

    def _run_side_by_side(self, command: str, confs: list[dict[str, Any]], att: Attachment, netns: str,
                          cni_args: str) -> list[dict[str, Any] | None | BaseException]:
        """Each plugin's result or the exception it raised, in order; with more than one, each in a thread of
        its own (the work is in the plugin processes; threads add no import to the hook)."""
        outcomes: list[dict[str, Any] | None | BaseException] = [None] * len(confs)

        def one(i: int) -> None:
            try:
                outcomes[i] = self._exec(command, confs[i], att, netns, cni_args)
            except BaseException as e:  # noqa: BLE001 -- handed to the caller, which decides
                outcomes[i] = e

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(1, len(confs))]
        for t in threads:
            t.start()
        if confs:
            one(0)
        for t in threads:
            t.join()
        return outcomes

    def _exec(self, command: str, conf: dict[str, Any], att: Attachment, netns: str, cni_args: str
              ) -> dict[str, Any] | None:
        binary = self._find(str(conf.get("type", "")))
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id, "CNI_NETNS": netns,
               "CNI_IFNAME": att.ifname, "CNI_PATH": self.cni_path, "PATH": os.environ.get("PATH") or _PATH}
        if cni_args:
            env["CNI_ARGS"] = cni_args
        started = time.monotonic()
        try:
            p = subprocess.run([binary], input=json.dumps(conf).encode(), capture_output=True, env=env,
                               timeout=PLUGIN_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise PluginError(f"CNI plugin {conf.get('type')} {command} timed out") from None
        finally:
            self.timings.append((f"{command} {conf.get('type')}", time.monotonic() - started))
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


def _groups(plugins: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The chain in the order it runs, as groups that may run side by side: every plugin alone, except that
    consecutive side plugins (:data:`_SIDE_PLUGINS`) after the first plugin make one group. A tuning plugin that
    sets a MAC address changes the result, so it runs alone."""
    groups: list[list[dict[str, Any]]] = []
    side_run = False
    for i, plugin in enumerate(plugins):
        side = i > 0 and plugin.get("type") in _SIDE_PLUGINS and not (plugin.get("type") == "tuning" and "mac" in plugin)
        if side and side_run:
            groups[-1].append(plugin)
        else:
            groups.append([plugin])
        side_run = side
    return groups
