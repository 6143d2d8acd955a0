"""ctk_shared.outputs and ctk_shared.dataroot: what a named output path is decides how it is written.

Every device node here is a private one under tmp_path (a null-like char device 1:3): no test may rename
anything onto the machine's real /dev/null (see notes/machine.md).
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ctk_shared import dataroot, outputs
from ctk_shared.errors import AlreadyExists, CtkError, InvalidArgument, NotFound, UsageError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")


def null_device(path: Path) -> Path:
    """A private node with /dev/null's numbers: writes vanish, and we can check it is still a device."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def assert_still_null_device(path: Path) -> None:
    st = os.lstat(path)
    assert stat.S_ISCHR(st.st_mode), f"{path} was replaced by a {stat.filemode(st.st_mode)} file"
    assert st.st_rdev == os.makedev(1, 3)


def no_temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if "tmp" in p.name]


# -- regular files and missing names ----------------------------------------------------------------


def test_missing_file_is_created_with_the_umask_mode(tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    old = os.umask(0o022)
    try:
        outputs.write_output(str(dest), b"data")
    finally:
        os.umask(old)
    assert dest.read_bytes() == b"data"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert no_temp_files(tmp_path) == []


def test_existing_regular_file_is_replaced_whole_and_keeps_its_mode(tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    dest.write_bytes(b"old content, longer than the new one")
    dest.chmod(0o640)
    ino = dest.stat().st_ino
    outputs.write_output(str(dest), b"new")
    assert dest.read_bytes() == b"new"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert dest.stat().st_ino != ino  # a rename, not a truncate: readers of the old file keep the old bytes


def test_a_fixed_mode_wins_over_the_old_one(tmp_path: Path) -> None:
    dest = tmp_path / "config.json"
    dest.write_text("{}")
    dest.chmod(0o644)
    outputs.write_output(str(dest), b"{}", mode=0o600)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600


def test_a_failure_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    dest = tmp_path / "out.tar"
    dest.write_bytes(b"complete old tar")
    with pytest.raises(RuntimeError):
        with outputs.open_output(str(dest)) as f:
            f.write(b"half a ")
            raise RuntimeError("the save failed")
    assert dest.read_bytes() == b"complete old tar"
    assert no_temp_files(tmp_path) == []


def test_a_failed_rename_is_a_ctk_error_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out"
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(CtkError, match="No space left"):
        outputs.write_output(str(dest), b"x")
    assert list(tmp_path.iterdir()) == []


def test_exclusive_refuses_an_existing_file(tmp_path: Path) -> None:
    dest = tmp_path / "key.pem"
    dest.write_bytes(b"precious")
    with pytest.raises(AlreadyExists):
        outputs.write_output(str(dest), b"other", exclusive=True)
    assert dest.read_bytes() == b"precious"


def test_missing_directory_and_directory_destinations_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        outputs.write_output(str(tmp_path / "nope" / "out"), b"x")
    with pytest.raises(InvalidArgument, match="is a directory"):
        outputs.write_output(str(tmp_path), b"x")


# -- symbolic links -------------------------------------------------------------------------------


def test_symlink_to_a_regular_file_replaces_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.tar"
    real.write_bytes(b"old")
    link = tmp_path / "link.tar"
    link.symlink_to(real)
    outputs.write_output(str(link), b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"


def test_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "link.tar"
    link.symlink_to(tmp_path / "target.tar")
    outputs.write_output(str(link), b"new")
    assert link.is_symlink() and (tmp_path / "target.tar").read_bytes() == b"new"


@needs_root
def test_symlink_to_a_device_streams_into_the_device(tmp_path: Path) -> None:
    dev = null_device(tmp_path / "null")
    link = tmp_path / "out.tar"
    link.symlink_to(dev)
    outputs.write_output(str(link), b"x" * 100_000)
    assert link.is_symlink()
    assert_still_null_device(dev)
    assert no_temp_files(tmp_path) == []


# -- devices, FIFOs, sockets, stdout --------------------------------------------------------------


@needs_root
def test_char_device_is_written_into_never_replaced(tmp_path: Path) -> None:
    dev = null_device(tmp_path / "null")
    with outputs.open_output(str(dev)) as f:
        f.write(b"a tar nobody keeps")
    assert_still_null_device(dev)
    assert no_temp_files(tmp_path) == []
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # and the machine's own is untouched


@needs_root
def test_a_device_ignores_exclusive_and_mode(tmp_path: Path) -> None:
    dev = null_device(tmp_path / "null")
    before = os.lstat(dev).st_mode
    outputs.write_output(str(dev), b"key", mode=0o600, exclusive=True)
    assert_still_null_device(dev)
    assert os.lstat(dev).st_mode == before


def test_fifo_is_streamed_into(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    payload = os.urandom(300_000)  # more than a pipe buffer: the writer must really stream
    with outputs.open_output(str(fifo)) as f:
        f.write(payload)
    reader.join(10)
    assert got == [payload]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert no_temp_files(tmp_path) == []


def test_socket_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(InvalidArgument, match="socket"):
            outputs.write_output(str(path), b"x")
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_dash_is_stdout_where_allowed(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    with pytest.raises(UsageError):
        outputs.write_output("-", b"x", allow_stdout=False)


def test_the_file_of_fd_1_is_streamed_into_whatever_it_is(tmp_path: Path) -> None:
    """/dev/stdout is /proc/self/fd/1: a pipe is written into, and a file stdout is appended to as the shell
    opened it (here with >>), not replaced. Run in a child so that its fd 1 is the one under test. Never
    /dev/stdout by name: if this code regressed, a rename would replace that link in the machine's /dev."""
    code = ("import sys; from ctk_shared import outputs; "
            "outputs.write_output(sys.argv[1], b'through fd 1\\n'); outputs.write_output('/proc/self/fd/1', b'two\\n')")
    piped = subprocess.run([sys.executable, "-c", code, "/proc/self/fd/1"], capture_output=True, check=True)
    assert piped.stdout == b"through fd 1\ntwo\n"
    log = tmp_path / "stdout.log"
    log.write_bytes(b"earlier\n")
    with open(log, "ab") as out:
        subprocess.run([sys.executable, "-c", code, str(log)], stdout=out, check=True)
    assert log.read_bytes() == b"earlier\nthrough fd 1\ntwo\n"


def test_a_name_that_turns_into_a_device_while_writing_is_not_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(InvalidArgument, match="became a FIFO"):
        with outputs.open_output(str(dest)) as f:
            f.write(b"x")
            os.mkfifo(dest)  # someone made a special file at the name meanwhile
    assert stat.S_ISFIFO(os.lstat(dest).st_mode)
    assert no_temp_files(tmp_path) == []


# -- files ctk owns ---------------------------------------------------------------------------------


def test_open_owned_refuses_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "x.log"
    link.symlink_to(victim)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        outputs.open_owned(link, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    assert victim.read_bytes() == b"keep"


def test_open_owned_refuses_a_planted_fifo_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.log")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        outputs.open_owned(tmp_path / "x.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with pytest.raises(InvalidArgument, match="FIFO"):
        outputs.open_owned(tmp_path / "x.log", os.O_RDWR | os.O_CREAT)


def test_open_owned_creates_a_regular_file_with_a_blocking_fd(tmp_path: Path) -> None:
    fd = outputs.open_owned(tmp_path / "names.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert os.get_blocking(fd)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    finally:
        os.close(fd)


def test_write_owned_replaces_a_planted_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    state = tmp_path / "state.json"
    state.symlink_to(victim)
    outputs.write_owned(state, b"{}", mode=0o644)
    assert victim.read_bytes() == b"keep"
    assert not state.is_symlink() and state.read_bytes() == b"{}"
    assert stat.S_IMODE(state.stat().st_mode) == 0o644
    assert no_temp_files(tmp_path) == []


def test_write_owned_onto_a_directory_fails_and_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        outputs.write_owned(tmp_path / "d", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# -- the data root ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _forget_ensured_roots() -> None:
    dataroot._ensured.clear()


def test_data_root_is_created_0710_whatever_the_umask(tmp_path: Path) -> None:
    root = tmp_path / "var" / "lib" / "ctk"
    old = os.umask(0o077)
    try:
        dataroot.makedirs(root, root / "default" / "containers")
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o710
    assert (root / "default" / "containers").is_dir()


def test_a_too_open_root_that_ctk_made_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "ctk"
    (root / "default" / "containers").mkdir(parents=True)
    (root / "net").mkdir()
    root.chmod(0o755)
    dataroot.ensure(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o710


def test_a_root_holding_other_things_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "srv"
    (root / "default" / "containers").mkdir(parents=True)
    (root / "website").mkdir()
    (root / "website" / "index.html").write_text("hi")
    root.chmod(0o755)
    dataroot.ensure(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert "ctk did not make it" in caplog.text


def test_a_data_root_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(InvalidArgument, match="not a directory"):
        dataroot.ensure(tmp_path / "f")
