"""Stream processor stub."""


def main() -> None:
    raise SystemExit(1)
