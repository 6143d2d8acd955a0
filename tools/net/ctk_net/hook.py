"""The OCI hook runc runs around a networked container: ``createRuntime`` attaches, ``postStop`` detaches.

runc (not ctk-run) runs it, so networking comes back whenever a task is created again, by ``ctk-run start``
or by containerd's restart monitor, and is released whenever a task is deleted. The container state arrives
on stdin; the spec's annotations (written by ctk-run, keys in ``ctk_shared.labels``) say which networks and
ports. The container's network namespace is bind-mounted under the data root while it is attached: the
bridge plugin can only remove its masquerade rules on DEL while the namespace still exists, and at
``postStop`` the container's processes (which held it) are gone.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ctk_shared import labels as L
from ctk_shared.errors import CtkError, InvalidArgument
from ctk_shared.outputs import open_owned

from . import jsonfiles
from .cni import Attachment, Runtime, first_ipv4
from .endpoints import Endpoints
from .hosts import entries_for, rewrite
from .ports import assign, cni_mappings, proxied_mappings

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions

_MS_BIND = 4096
_MNT_DETACH = 2
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH14x"  # struct ifreq: the name, then ifr_flags in the union
# the loopback plugin's conflist, which ctk's hook ran before it brought lo up itself: attachments cached then
# are still dropped at their postStop
LOOPBACK = {"cniVersion": "1.0.0", "name": "ctk-loopback", "plugins": [{"type": "loopback"}]}


def main(gopts: GlobalOptions, phase: str) -> int:
    """Entry point of ``ctk-net hook PHASE``; errors go to stderr, where runc passes them on to the user."""
    try:
        state = json.loads(sys.stdin.read() or "{}")
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"hook: the container state on stdin is not JSON: {e}") from None
    import time

    t0 = time.monotonic()
    hook = Hook(gopts, state)
    if phase in ("createRuntime", "prestart"):
        hook.attach()
    elif phase in ("postStop", "poststop"):
        hook.detach()
    else:
        raise InvalidArgument(f"hook: unknown phase {phase!r} (createRuntime, postStop)")
    if gopts.debug:  # runc drops a successful hook's output: --debug times go to a file instead
        with os.fdopen(open_owned(hook.net_root / "hook.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a") as log:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB: the bench reports the hook's memory
            plugins = " ".join(f"{name.replace(' ', ':')}={secs:.3f}" for name, secs in hook.runtime.timings)
            log.write(f"{phase} {hook.id[:12]} {time.monotonic() - t0:.3f}s maxrss={peak} {plugins}\n")
    return 0


_HOOK_FLAGS = {"--address": "address", "--data-root": "data_root", "--cni-path": "cni_path",
               "--cni-netconfpath": "cni_netconfpath", "--namespace": "namespace"}


def entry(argv: list[str]) -> int:
    """``python -I -m ctk_net.hook [--address A] [--data-root D] [--cni-path P] [--cni-netconfpath C]
    [--namespace N] PHASE``: the hook as ctk_shared.nethooks puts it in a spec, without click and the CLI's
    imports (runc runs it twice per networked task, and the task waits for the first). The same flags,
    environment and error contract as ``ctk-net hook PHASE``."""
    from ctk_shared import config
    from ctk_shared.errors import UsageError

    flags: dict[str, Any] = {}
    rest = list(argv)
    try:
        while len(rest) > 1 and rest[0] in _HOOK_FLAGS:
            flag, value = rest[0], rest[1]
            del rest[:2]
            flags[_HOOK_FLAGS[flag]] = value
        if len(rest) != 1:
            raise UsageError(f"hook: expected one PHASE after the flags, got {rest!r}")
        return main(config.resolve(flags), rest[0])
    except CtkError as e:
        sys.stderr.write(f"ctk-net: error: {e.message}\n" + (f"ctk-net: hint: {e.hint}\n" if e.hint else ""))
        return int(e.exit_code)
    except Exception as e:  # noqa: BLE001 - the last line of defence, as ctk_shared.cli.run's
        sys.stderr.write(f"ctk-net: error: unexpected {type(e).__name__}: {e}\n")
        return 1


class Hook:
    def __init__(self, gopts: GlobalOptions, state: dict[str, Any]) -> None:
        self.gopts = gopts
        self.id = str(state.get("id", ""))
        self.pid = int(state.get("pid") or 0)
        ann = state.get("annotations") or {}
        self.namespace = ann.get(L.ANN_NAMESPACE) or gopts.namespace
        self.networks: list[str] = json.loads(ann.get(L.ANN_NETWORKS) or "[]")
        self.ports: list[dict[str, Any]] = json.loads(ann.get(L.ANN_PORTS) or "[]")
        self.name = ann.get(L.ANN_NAME, "")
        self.hostname = ann.get(L.ANN_HOSTNAME, "")
        self.state_dir = ann.get(L.ANN_STATE_DIR, "")
        self.ip = ann.get(L.ANN_IP, "")
        self.endpoint_config = _json_object(ann.get(L.ANN_ENDPOINTS))
        from ctk_shared import dataroot

        self.net_root = dataroot.ensure(gopts.data_root) / "net"  # 0710 before CNI's IPAM or we make it 0755
        self.runtime = Runtime(gopts.cni_path, self.net_root / "cache")
        self.endpoints = Endpoints(gopts.data_root)

    @property
    def netns_path(self) -> Path:
        from ctk_shared.nethooks import pinned_netns

        return pinned_netns(self.gopts.data_root, self.namespace, self.id)

    def _endpoint(self, network: str) -> tuple[list[str], str]:
        """The aliases and the requested address of this container on ``network``."""
        ep = self.endpoint_config.get(network)
        ep = ep if isinstance(ep, dict) else {}
        aliases = [str(a) for a in ep.get("Aliases") or [] if isinstance(a, str) and a]
        return aliases, str(ep.get("IPAddress") or "")

    # ------------------------------------------------------------------------------------------- attach

    def attach(self) -> None:
        from .store import NetworkStore

        if not self.pid:
            raise InvalidArgument("hook createRuntime: the container state has no pid")
        store = NetworkStore(self.gopts)
        nets = [store.ensure(n) for n in self.networks]
        with self.endpoints.locked():
            self._detach_leftovers()  # a previous task that died without its postStop (containerd killed)
            others = [e for e in self.endpoints.all() if not (e["namespace"] == self.namespace and e["id"] == self.id)]
            mappings = assign(self.ports, [m for e in others for m in e.get("ports", [])])
            netns = self._pin_netns()
            attached: list[Attachment] = []
            record: dict[str, Any] = {"namespace": self.namespace, "id": self.id, "name": self.name,
                                      "hostname": self.hostname, "state_dir": self.state_dir,
                                      "networks": {}, "ports": mappings}
            try:
                _loopback_up(netns)
                for i, net in enumerate(nets):
                    att = Attachment(net.name, self.id, f"eth{i}")
                    rc: dict[str, Any] = {"portMappings": cni_mappings(mappings)} if i == 0 and mappings else {}
                    aliases, want_ip = self._endpoint(net.name)
                    want_ip = want_ip or (self.ip if i == 0 else "")
                    args = f"IgnoreUnknown=1;IP={want_ip}" if want_ip else ""
                    result = self.runtime.add(net.conflist, att, netns, rc, args)
                    attached.append(att)
                    record["networks"][net.name] = {**first_ipv4(result, att.ifname), "interface": att.ifname,
                                                    "network_id": net.id, "aliases": aliases}
                record["proxy"] = self._start_proxy(proxied_mappings(mappings), record, netns)
            except BaseException:
                for att in reversed(attached):
                    self.runtime.delete(att, netns)
                self._unpin_netns()
                raise
            self.endpoints.put(record)
            self._write_state(record)
            self._refresh_hosts(record)

    # ------------------------------------------------------------------------------------------- detach

    def detach(self) -> None:
        with self.endpoints.locked():
            record = self.endpoints.get(self.namespace, self.id)
            errors = self._detach_all()
            self.endpoints.remove(self.namespace, self.id)
            if self.state_dir:
                (Path(self.state_dir) / L.NETWORK_STATE_FILE).unlink(missing_ok=True)
            if record:
                self._refresh_hosts(record, leaving=True)
        if errors:
            sys.stderr.write("ctk-net: hook postStop: " + "; ".join(errors) + "\n")

    def _start_proxy(self, mappings: list[dict[str, Any]], record: dict[str, Any], netns: str
                     ) -> dict[str, Any] | None:
        """The userland proxy for the IPv6 host addresses among the published ports (:mod:`.proxy`)."""
        if not mappings:
            return None
        from ipaddress import ip_interface

        from . import proxy

        first: dict[str, Any] = next(iter(record["networks"].values()), {})
        try:
            target = str(ip_interface(first.get("address", "")).ip)
        except ValueError:
            raise CtkError("cannot publish on an IPv6 host address: the container got no IPv4 address on its "
                           "first network") from None
        return proxy.spawn(proxy.bind_listeners(mappings), target, netns)

    def _detach_all(self) -> list[str]:
        old = self.endpoints.get(self.namespace, self.id)
        if (old or {}).get("proxy"):  # only then the proxy module (its imports cost each postStop ~3 ms)
            from . import proxy

            proxy.stop((old or {}).get("proxy"))  # its sockets closed before the ports can be taken again
        netns = str(self.netns_path) if self.netns_path.exists() else ""
        errors: list[str] = []
        atts = self.runtime.attachments(self.id)
        for att in sorted(atts, key=lambda a: a.ifname == "lo"):  # eth* first, lo last
            if att.network == LOOPBACK["name"]:
                # the loopback plugin's DEL only sets lo down in a namespace that goes with the unpin below:
                # its record goes without running it (one plugin process less per postStop)
                self.runtime.forget(att)
                continue
            errors += self.runtime.delete(att, netns)
        self._unpin_netns()
        return errors

    def _detach_leftovers(self) -> None:
        if self.runtime.attachments(self.id) or self.netns_path.exists() or \
                self.endpoints.get(self.namespace, self.id):
            self._detach_all()

    # ------------------------------------------------------------------------------------------ helpers

    def _pin_netns(self) -> str:
        """Bind-mount the container's netns so it outlives the container's processes until DEL."""
        target = self.netns_path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.close(open_owned(target, os.O_RDONLY | os.O_CREAT))  # the mount point; never a planted link
        _mount(f"/proc/{self.pid}/ns/net", str(target))
        return str(target)

    def _unpin_netns(self) -> None:
        target = self.netns_path
        if not target.exists():
            return
        _umount(str(target))
        target.unlink(missing_ok=True)

    def _write_state(self, record: dict[str, Any]) -> None:
        if not self.state_dir:
            return
        nets = {}
        for name, att in record["networks"].items():
            addr, _, prefix = att.get("address", "").partition("/")
            nets[name] = {"IPAddress": addr, "IPPrefixLen": int(prefix or 0), "Gateway": att.get("gateway", ""),
                          "MacAddress": att.get("mac", ""), "Interface": att.get("interface", ""),
                          "NetworkID": att.get("network_id", ""), "Aliases": list(att.get("aliases") or [])}
        jsonfiles.write(Path(self.state_dir) / L.NETWORK_STATE_FILE, {"Networks": nets, "Ports": record["ports"]})

    def _refresh_hosts(self, changed: dict[str, Any], leaving: bool = False) -> None:
        everyone = self.endpoints.all()
        shared = set(changed.get("networks") or {})
        for ep in everyone:
            if ep.get("namespace") != changed.get("namespace") or not ep.get("state_dir"):
                continue
            if ep["id"] != changed["id"] and not shared & set(ep.get("networks") or {}):
                continue
            try:
                rewrite(str(Path(ep["state_dir"]) / "hosts"), entries_for(ep, everyone))
            except OSError as e:
                sys.stderr.write(f"ctk-net: hook: updating the hosts file of {ep['id'][:12]}: {e}\n")


def _json_object(text: str | None) -> dict[str, Any]:
    """An annotation holding a JSON object; anything else (absent, malformed) is empty."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _loopback_up(netns: str) -> None:
    """``lo`` up in the container's network namespace, as the CNI loopback plugin's ADD does (the kernel then
    gives it 127.0.0.1 and ::1), without its process: ~0.5 ms instead of a plugin run (~8 ms, more under load)
    on the container's way to its start (issue 20; podman does it in-process too). A thread enters the
    namespace, as setns acts on the calling thread only, and ends there."""
    import fcntl
    import socket
    import struct
    import threading

    failed: list[OSError] = []

    def up() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc().setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                flags = struct.unpack(_IFREQ, fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0)))[1]
                if not flags & _IFF_UP:
                    fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
        except OSError as e:
            failed.append(e)

    t = threading.Thread(target=up, name="ctk-lo")
    t.start()
    t.join()
    if failed:
        raise CtkError(f"hook: cannot bring up lo in the container's network namespace: "
                       f"{failed[0].strerror or failed[0]}")


def _mount(source: str, target: str) -> None:
    if _libc().mount(source.encode(), target.encode(), None, _MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise CtkError(f"hook: cannot bind-mount the network namespace {source} on {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    _libc().umount2(target.encode(), _MNT_DETACH)


def launched(argv: list[str]) -> NoReturn:
    """The entry of the data root's launcher and of ``python -m``: :func:`entry`, then out without the
    interpreter's teardown (ctk_shared.exiting): runc waits for this process's end before the task runs."""
    from ctk_shared.exiting import exit_now

    code = entry(argv)
    exit_now(code)
    sys.exit(code)


if __name__ == "__main__":
    launched(sys.argv[1:])
