"""`dora api`: serve the event API."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("api", help="serve the event API (needs DORA_API_KEYS)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    from connectors.api.server import serve

    return serve(arguments.host, arguments.port)
