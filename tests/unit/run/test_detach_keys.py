"""Docker's --detach-keys syntax and the scanner that spots the sequence in typed keys."""
from __future__ import annotations

import pytest
from ctk_run import detachkeys
from ctk_shared.errors import UsageError


@pytest.mark.parametrize(("text", "keys"), [
    (None, b"\x10\x11"), ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-a", b"\x01"), ("ctrl-@", b"\x00"),
    ("ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x1b\x1c\x1d\x1e\x1f"), ("a,b", b"ab"), ("CTRL-Z", b"\x1a"),
    ("ctrl-x,X", b"\x18X"),
])
def test_parse(text, keys):
    assert detachkeys.parse(text) == keys


@pytest.mark.parametrize("text", ["", "ctrl-pp", "ctrl-1", "ab", "ctrl-p,,ctrl-q", "shift-a"])
def test_parse_refuses(text):
    with pytest.raises(UsageError, match="detach keys"):
        detachkeys.parse(text)


def test_scanner_detaches_on_the_whole_sequence_only():
    s = detachkeys.Scanner(b"\x10\x11")
    assert s.feed(b"ls\r") == b"ls\r" and not s.detached
    assert s.feed(b"\x10") == b"" and not s.detached  # held back: it may be the start of the sequence
    assert s.feed(b"a") == b"\x10a" and not s.detached  # it was not: both keys go on
    assert s.feed(b"x\x10\x10") == b"x\x10"  # the second Ctrl-P may still start it
    assert s.feed(b"\x11tail") == b"" and s.detached  # nothing after the sequence is passed on


def test_scanner_across_reads_and_repeated_prefixes():
    s = detachkeys.Scanner(b"aab")
    assert s.feed(b"a") == b"" and s.feed(b"a") == b""
    assert s.feed(b"a") == b"a"  # "aaa": the first a was not part of it, "aa" may still be
    assert s.feed(b"b") == b"" and s.detached
