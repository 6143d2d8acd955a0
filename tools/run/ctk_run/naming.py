"""Docker-style generated names (``adjective_surname``) for containers run without ``--name``."""
from __future__ import annotations

import os

_LEFT = ("admiring", "brave", "clever", "dazzling", "eager", "festive", "gallant", "happy", "inspiring", "jolly",
         "keen", "lucid", "modest", "nifty", "optimistic", "peaceful", "quirky", "relaxed", "sharp", "trusting",
         "upbeat", "vibrant", "wizardly", "xenodochial", "youthful", "zealous")
_RIGHT = ("agnesi", "babbage", "curie", "dijkstra", "euler", "feynman", "goldberg", "hopper", "hypatia", "jackson",
          "knuth", "lamport", "lovelace", "meitner", "noether", "ritchie", "shannon", "thompson", "turing", "wozniak")


def random_name() -> str:
    return f"{_choice(_LEFT)}_{_choice(_RIGHT)}"


def _choice(words: tuple[str, ...] | list[str]) -> str:
    """``secrets.choice`` without importing secrets and random (a name is made on most runs): an unbiased index
    from the OS's random bytes, drawing again when the two bytes fall past the last whole multiple."""
    n = len(words)
    limit = 65536 - 65536 % n
    while True:
        r = int.from_bytes(os.urandom(2), "little")
        if r < limit:
            return words[r % n]
