"""A private containerd for tests: Debian's ``containerd`` with root, state and sockets under one directory.

``start_containerd(base_dir)`` writes ``base_dir/config.toml`` (CRI disabled, restart monitor every 1 s,
its own ``opt`` dir), starts ``containerd --config`` logging to ``base_dir/containerd.log`` and waits
until the Version RPC answers. ``base_dir`` must be short (e.g. ``/tmp/ctk-XXXX``): unix socket paths
are limited to 108 bytes. A missing binary is an error, never a skip.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ctk_shared.containerd import Client
from ctk_shared.errors import CtkError

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; leave room for containerd's ".ttrpc" suffix and NUL


def find_binary() -> str:
    path = shutil.which("containerd") or ("/usr/bin/containerd" if os.path.exists("/usr/bin/containerd") else None)
    if not path:
        raise RuntimeError("containerd is not installed: apt-get install containerd runc")
    return path


def _toml_str(p: Path | str) -> str:
    return '"' + str(p).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(base_dir: Path, extra_config: str = "", cri: bool = False) -> Path:
    """``extra_config``: TOML appended verbatim (e.g. a ``[proxy_plugins.X]`` table). ``cri``: keep the CRI plugin
    (what a kubelet talks to), with its streaming server on a loopback port and an empty CNI config dir."""
    root, state = base_dir / "root", base_dir / "state"
    cfg = base_dir / "config.toml"
    if cri:
        (base_dir / "cni").mkdir(exist_ok=True)
        extra_config = f"""
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = {_toml_str(base_dir / "cni")}
""" + extra_config
    cfg.write_text(f"""\
version = 2
root = {_toml_str(root)}
state = {_toml_str(state)}
disabled_plugins = [{'' if cri else '"io.containerd.grpc.v1.cri"'}]

[grpc]
  address = {_toml_str(base_dir / "containerd.sock")}

[ttrpc]
  address = {_toml_str(base_dir / "containerd.sock.ttrpc")}

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_str(base_dir / "opt")}

[plugins."io.containerd.internal.v1.restart"]
  interval = "1s"
{_stream_processors()}{extra_config}""")
    return cfg


def _stream_processors() -> str:
    """ctk-crypt's decoder for encrypted layers, under imgcrypt's processor ids (replacing the defaults, which
    name ctd-decoder); found beside the interpreter because a pyenv shim would not be on containerd's PATH."""
    decoder = _toml_str(Path(sys.executable).parent / "ctk-crypt-decoder")
    oci, nd = "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.nondistributable.v1.tar"
    out = []
    for suffix, ext in (("", ""), (".gzip", "+gzip"), (".zstd", "+zstd")):
        accepts = ", ".join(f'"{t}{ext}+encrypted"' for t in (oci, nd))
        out.append(f"""
[stream_processors."io.containerd.ocicrypt.decoder.v1.tar{suffix}"]
  accepts = [{accepts}]
  returns = "{oci}{ext}"
  path = {decoder}
  args = []
""")
    return "".join(out)


@dataclass
class ContainerdDaemon:
    base_dir: Path
    binary: str
    proc: subprocess.Popen[bytes] | None = None
    _log: object = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return str(self.base_dir / "containerd.sock")

    @property
    def root(self) -> Path:
        return self.base_dir / "root"

    @property
    def state(self) -> Path:
        return self.base_dir / "state"

    @property
    def config(self) -> Path:
        return self.base_dir / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "containerd.log"

    def client(self, namespace: str = "default") -> Client:
        return Client(self.address, namespace)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- lifecycle --------------------------------------------------------------------------------
    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "--config", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        last: Exception | None = None
        try:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"containerd exited with {self.proc.returncode} during start-up; "
                                       f"log tail:\n{self.log_tail()}")
                if os.path.exists(self.address):
                    try:
                        client.version()
                        return
                    except CtkError as e:
                        last = e
                        client.close()
                time.sleep(0.05)
        finally:
            client.close()
        self._terminate()
        raise RuntimeError(f"containerd did not answer Version within {START_TIMEOUT:.0f}s ({last}); "
                           f"log tail:\n{self.log_tail()}")

    def start(self) -> None:
        self._spawn()
        self._wait_ready()

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop and start the daemon; shims and mounts survive, as with a real containerd restart."""
        self._terminate()
        self.start()

    def stop_daemon(self) -> None:
        """Stop the daemon only (shims, their containers and mounts go on): half a :meth:`restart`, for a test
        that acts while containerd is down; :meth:`start` brings it back."""
        self._terminate()

    def stop(self) -> None:
        """Stop the daemon, kill the shims it started and unmount whatever is still mounted under base_dir."""
        self._terminate()
        self._kill_shims()
        self._unmount_all()

    def _kill_shims(self) -> None:
        """Shims outlive containerd by design; ours are the ones whose command line names our socket."""
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and self.address.encode() in argv:
                try:
                    os.kill(int(pid_dir.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _unmount_all(self) -> None:
        base = str(self.base_dir.resolve())
        targets: list[str] = []
        try:
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                mnt = line.split()[4].encode().decode("unicode_escape")
                if mnt == base or mnt.startswith(base + "/"):
                    targets.append(mnt)
        except OSError:
            return
        for mnt in sorted(targets, key=len, reverse=True):
            subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)


def start_containerd(base_dir: Path, extra_config: str = "", cri: bool = False) -> ContainerdDaemon:
    """Write a config under ``base_dir`` and start containerd; raises (never skips) if it cannot start."""
    binary = find_binary()
    base_dir = Path(base_dir).resolve()
    sock = base_dir / "containerd.sock.ttrpc"
    if len(str(sock)) > _MAX_SOCKET_PATH:
        raise ValueError(f"{base_dir} is too long for a unix socket path; use a short dir like /tmp/ctk-XXXX")
    if os.geteuid() != 0:
        raise RuntimeError("containerd needs root: run the integration tests as root")
    base_dir.mkdir(parents=True, exist_ok=True)
    (base_dir / "opt").mkdir(exist_ok=True)
    write_config(base_dir, extra_config, cri=cri)
    daemon = ContainerdDaemon(base_dir, binary)
    daemon.start()
    return daemon
