"""`dora demo`: the main job on the embedded SQLite default."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help="build a synthetic history and materialize it")
    parser.set_defaults(run=run)


def run(_arguments: argparse.Namespace) -> int:
    print("dora demo: not yet implemented (lands with the Dagster asset graph)")
    return 1
