"""The ctk-net command line (under construction)."""
from __future__ import annotations

import sys

import click

from ctk_shared import cli as shared_cli

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(context_settings=CONTEXT, no_args_is_help=True)
@shared_cli.global_options
def cli() -> None:
    """ctk-net."""


def main() -> None:
    sys.exit(shared_cli.run(cli, "ctk-net"))
