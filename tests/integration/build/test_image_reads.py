"""ctk-build and ctk-run read the image's own files only (issue 12): /etc/passwd and /etc/group are looked
up through links resolved inside the image, never on the host, with a size cap and regular files only;
``ADD <url>`` is bounded in size and in how long a server may stall.

The host side is the sentinel tree of test_confinement: a host ``etc/passwd`` there names ``someuser`` with
uid 4242, and the image's own copy (at the same path inside the image) names it 1234, so the uid a step or
container gets tells which file was read.
"""
from __future__ import annotations

import http.server
import os
import threading
import time

import pytest

from tests.support.trees import tree_hash

from .conftest import write
from .test_confinement import check_in_image, sentinel  # noqa: F401  (sentinel: a fixture used here)

pytestmark = pytest.mark.integration


@pytest.fixture
def host_etc(sentinel):  # noqa: F811
    etc = sentinel / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\nsomeuser:x:4242:4242::/:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nsomegroup:x:4242:\n")
    return etc


def _link_base(host_etc, how: str) -> str:
    """A RUN that gives the image its own files at the host sentinel's path, then makes /etc a link there."""
    target = str(host_etc) if how == "absolute" else "../" * 12 + str(host_etc).lstrip("/")
    return (f"RUN --network=none mkdir -p {host_etc} && "
            f"echo 'someuser:x:1234:1234::/:/bin/sh' > {host_etc}/passwd && "
            f"echo 'somegroup:x:1234:' > {host_etc}/group && rm -rf /etc && ln -s {target} /etc\n")


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_user_and_chown_read_the_image_files_through_an_image_link(build, run, bb, tmp_path, host_etc, how):
    """USER and COPY --chown follow /etc -> <sentinel>/etc inside the image: uid 1234, not the host's 4242.
    ctk-run resolves the image's User and ``-u someuser`` the same way."""
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": f"FROM {bb}\n{_link_base(host_etc, how)}"
                      "COPY --chown=someuser:somegroup f.txt /f.txt\n"
                      "USER someuser\nRUN --network=none id -u > /tmp/uid\n",
        "f.txt": "x\n",
    })
    before = tree_hash(host_etc.parent)
    r = build("-q", "-t", "users", str(ctx))
    assert tree_hash(host_etc.parent) == before
    assert r.code == 0, r.err
    assert check_in_image(run, "users", "cat /tmp/uid; stat -c %u:%g /f.txt; id -u") == "1234\n1234:1234\n1234\n"
    out = run("--rm", "-q", "--network", "none", "-u", "someuser:somegroup", "users", "sh", "-c", "id -u; id -g")
    assert out.code == 0, out.err
    assert out.out.split() == ["1234", "1234"]


def test_user_unknown_when_the_link_leads_nowhere_in_the_image(build, run, bb, tmp_path, host_etc):
    """The host file a link names is never read: without the image's own copy the user is unknown."""
    ctx = write(tmp_path / "ctx", {
        "Dockerfile": f"FROM {bb}\nRUN --network=none rm -rf /etc && ln -s {host_etc} /etc\n"
                      "USER someuser\nRUN --network=none true\n",
    })
    r = build("-q", "-t", "nouser", str(ctx))
    assert r.code != 0
    assert "unable to find user someuser" in r.err, r.err
    assert "4242" not in r.err
    ctx2 = write(tmp_path / "ctx2", {
        "Dockerfile": f"FROM {bb}\nRUN --network=none rm -rf /etc && ln -s {host_etc} /etc\n"})
    assert build("-q", "-t", "nouser2", str(ctx2)).code == 0
    out = run("--rm", "-q", "--network", "none", "-u", "someuser", "nouser2", "true")
    assert out.code != 0 and "unable to find user someuser" in out.err, (out.code, out.err)


@pytest.mark.parametrize("kind", ["fifo", "big", "fifo-on-host"])
def test_passwd_that_is_not_a_small_regular_file(build, bb, tmp_path, host_etc, kind):
    """A FIFO at /etc/passwd does not hang the build, a 5 MiB one is not read whole, and a FIFO on the host
    behind an image link is never opened."""
    if kind == "fifo":
        make = "rm /etc/passwd && mkfifo /etc/passwd"
        expected = "/etc/passwd in the image is a FIFO, not a regular file"
    elif kind == "big":
        make = "head -c 5242880 /dev/zero | tr '\\0' a > /etc/passwd"
        expected = "/etc/passwd in the image is over the 4 MiB cap"
    else:
        (host_etc / "passwd").unlink()
        os.mkfifo(host_etc / "passwd")
        make = f"rm -rf /etc && ln -s {host_etc} /etc"
        expected = "unable to find user someuser"
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN --network=none {make}\n"
                                                 "USER someuser\nRUN --network=none true\n"})
    started = time.monotonic()
    r = build("-q", "-t", "badpasswd", str(ctx), timeout=60)
    assert r.code != 0 and expected in r.err, r.err
    assert time.monotonic() - started < 60


class _Forever(http.server.BaseHTTPRequestHandler):
    """``/stream``: bytes without end; ``/stall``: headers and a few bytes, then silence."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        try:
            if self.path.startswith("/stream"):
                chunk = b"a" * 65536
                while True:
                    self.wfile.write(chunk)
            else:
                self.wfile.write(b"partial")
                self.wfile.flush()
                time.sleep(30)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def forever_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forever)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("path,env,expected", [
    ("/stream/big.bin", {"CTK_BUILD_ADD_MAX_SIZE": str(4 << 20)}, "over the 4 MiB cap for ADD"),
    ("/stall/slow.bin", {"CTK_BUILD_ADD_TIMEOUT": "2"}, "the server sent nothing for 2 s"),
])
def test_add_url_is_bounded(build, bb, tmp_path, forever_server, path, env, expected):
    """A server that streams without end is cut at the size cap; one that stalls, at the read timeout."""
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nADD {forever_server}{path} /x\n"})
    started = time.monotonic()
    r = build("-q", "-t", "addurl", str(ctx), env=env, timeout=40)
    assert r.code != 0 and expected in r.err, r.err
    assert time.monotonic() - started < 30
