"""`dora report`: the DORA summary with levels and weekly trends, as one HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from connectors import settings
from connectors.config import ConfigError, load_config
from connectors.report.html import DEFAULT_REPORT_FILE, write_report
from connectors.report.levels import benchmark, benchmarks
from connectors.report.summary import Window, build_report
from connectors.report.text import levels_table
from connectors.warehouse import open_warehouse, reading


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="write the DORA summary, levels and weekly trends as one self-contained HTML file",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_REPORT_FILE,
        help=f"where to write (default {DEFAULT_REPORT_FILE})",
    )
    parser.add_argument(
        "--window-days",
        type=int,
        help="days of the trailing window ending yesterday (default: DORA_CONFIG"
        " summary.window_days, else 90)",
    )
    parser.add_argument(
        "--benchmark",
        choices=sorted(benchmarks()),
        help="levels to rate against (default: DORA_CONFIG summary.benchmark, else dora-2023)",
    )
    parser.set_defaults(run=run)


def run(arguments: argparse.Namespace) -> int:
    try:
        configured = load_config().summary
    except ConfigError as error:
        print(f"dora report: {error}")
        return 2
    days = arguments.window_days or configured.window_days
    if days < 1:
        print("dora report: --window-days must be at least 1")
        return 2
    engine = open_warehouse(settings.warehouse_url())
    try:
        with reading(engine) as connection:
            report = build_report(
                connection,
                Window.ending_yesterday(days),
                benchmark(arguments.benchmark or configured.benchmark),
            )
    finally:
        engine.dispose()
    path = write_report(report, arguments.out)
    print(levels_table(report.summary))
    print(f"\nreport: {path}")
    return 0
