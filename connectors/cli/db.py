"""`dora db upgrade`: apply the warehouse migrations (start-up does this too)."""

from __future__ import annotations

import argparse

from connectors.warehouse import create_engine, upgrade


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("db", help="warehouse maintenance")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade_parser = actions.add_parser(
        "upgrade", help="migrate DORA_WAREHOUSE_URL to the newest schema"
    )
    upgrade_parser.set_defaults(run=run_upgrade)


def run_upgrade(_arguments: argparse.Namespace) -> int:
    engine = create_engine()
    upgrade(engine)
    print(f"warehouse {engine.url.render_as_string(hide_password=True)} is up to date")
    return 0
