"""The `dora` command: one subcommand module each (api, db, send, demo)."""

from __future__ import annotations

import argparse
import sys

from connectors.cli import api, db, demo, report, send


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dora", description="DORA metrics connectors: event API, event senders, demo."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (api, send, db, demo, report):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    return arguments.run(arguments)


if __name__ == "__main__":
    sys.exit(main())
