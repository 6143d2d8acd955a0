"""Docker-style generated names (``adjective_surname``) for containers run without ``--name``."""
from __future__ import annotations

import secrets

_LEFT = ("admiring", "brave", "clever", "dazzling", "eager", "festive", "gallant", "happy", "inspiring", "jolly",
         "keen", "lucid", "modest", "nifty", "optimistic", "peaceful", "quirky", "relaxed", "sharp", "trusting",
         "upbeat", "vibrant", "wizardly", "xenodochial", "youthful", "zealous")
_RIGHT = ("agnesi", "babbage", "curie", "dijkstra", "euler", "feynman", "goldberg", "hopper", "hypatia", "jackson",
          "knuth", "lamport", "lovelace", "meitner", "noether", "ritchie", "shannon", "thompson", "turing", "wozniak")


def random_name() -> str:
    return f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
