"""Detach keys: the key sequence that leaves an attached container running (Docker's ``--detach-keys``).

Docker's syntax: comma-separated keys, each a single character (``a``) or ``ctrl-<x>`` for x in ``a``–``z``,
``@``, ``[``, ``\\``, ``]``, ``^``, ``_``; the default is ``ctrl-p,ctrl-q``. While the keys are being typed
they are held back; a key that breaks the sequence releases what was held, so a lone Ctrl-P still reaches
the container once the next key shows it was not a detach.
"""
from __future__ import annotations

from ctk_shared.errors import UsageError

DEFAULT = "ctrl-p,ctrl-q"
_CTRL_EXTRA = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse(text: str | None) -> bytes:
    """``ctrl-p,ctrl-q`` → ``b"\\x10\\x11"``; UsageError for anything Docker would refuse."""
    text = DEFAULT if text is None else text
    out = bytearray()
    for key in text.split(","):
        low = key.strip().lower() if len(key.strip()) > 1 else key.strip()
        if len(low) == 1:
            out.append(ord(low))
        elif low.startswith("ctrl-") and len(low) == 6 and ("a" <= low[5] <= "z" or low[5] in _CTRL_EXTRA):
            out.append(ord(low[5]) - ord("a") + 1 if "a" <= low[5] <= "z" else _CTRL_EXTRA[low[5]])
        else:
            raise UsageError(f"invalid detach keys {text!r}: unknown key {key!r}",
                             hint="keys are single characters or ctrl-<a-z, @, [, \\, ], ^, _>, separated by "
                                  "commas (default ctrl-p,ctrl-q)")
    if not out:
        raise UsageError(f"invalid detach keys {text!r}: no key given")
    return bytes(out)


class Scanner:
    """Watches a byte stream (keys typed at our terminal) for the detach sequence."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""  # a prefix of ``keys`` seen at the end of the stream so far
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        """The bytes to pass on to the container; sets :attr:`detached` (and passes nothing after the sequence)
        once the whole sequence was typed."""
        out = bytearray()
        for b in data:
            if self.detached:
                break
            held = self._held + bytes([b])
            while held and not self.keys.startswith(held):  # not the sequence after all: the oldest key is the
                out.append(held[0])                           # container's; the rest may still start it
                held = held[1:]
            if held == self.keys:
                self.detached = True
                held = b""
            self._held = held
        return bytes(out)
