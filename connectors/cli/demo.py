"""`dora demo`: the main job on the embedded SQLite default."""

from __future__ import annotations

import argparse

DEFAULT_DAYS = 90


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="land a synthetic history, materialize every asset, print the metric summary",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"days of history ending yesterday (default {DEFAULT_DAYS})",
    )
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    if arguments.days < 1:
        print("dora demo: --days must be at least 1")
        return 2
    # The demo drives the Dagster code location; connectors/ imports Dagster only here,
    # when the command actually runs.
    from dora_assets.demo import run_demo

    return run_demo(days=arguments.days)
