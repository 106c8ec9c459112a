"""`dora deployment` and `dora failure`: send one event to the event API."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Placeholder until the sending commands land."""
