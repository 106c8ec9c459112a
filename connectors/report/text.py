"""The summary's levels as a plain-text table, for terminals (`dora report`, `dora demo`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from connectors.report.html import NO_DATA, SUMMARY_METRICS, Metric

HEADER = ("scope", "name", "deployments", *(metric.short for metric in SUMMARY_METRICS))


def _figure(row: dict[str, Any], metric: Metric) -> str:
    """The value with its level, `12.5% medium`; `no data` when there is none."""
    value = row[metric.column]
    if value is None or pd.isna(value):
        return NO_DATA
    shown = metric.show(float(value))
    level = row[metric.level] if metric.level else None
    return f"{shown} {level}" if level else shown


def levels_table(summary: pd.DataFrame) -> str:
    lines = [
        (
            row["scope"],
            row["name"] or "all",
            str(row["deployments"]),
            *(_figure(row, metric) for metric in SUMMARY_METRICS),
        )
        for row in summary.to_dict("records")
    ]
    widths = [max(len(cells[i]) for cells in [HEADER, *lines]) for i in range(len(HEADER))]

    def line(cells: tuple[str, ...]) -> str:
        left = [cells[i].ljust(widths[i]) for i in range(2)]
        right = [cells[i].rjust(widths[i]) for i in range(2, len(cells))]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(HEADER), rule, *map(line, lines)])
