"""The summary's levels as a plain-text table, for terminals (`dora report`, `dora demo`)."""

from __future__ import annotations

import pandas as pd

from connectors.report.html import NO_DATA, SUMMARY_METRICS

HEADER = ("scope", "name", "deployments", *(metric.title for metric in SUMMARY_METRICS))


def _figure(row: dict, column: str, show, level: str | None) -> str:
    value = row[column]
    if value is None or pd.isna(value):
        return NO_DATA
    shown = show(float(value))
    return f"{shown} {row[level]}" if level and row[level] else shown


def levels_table(summary: pd.DataFrame) -> str:
    lines = [
        (
            row["scope"],
            row["name"] or "all",
            str(row["deployments"]),
            *(_figure(row, m.column, m.show, m.level) for m in SUMMARY_METRICS),
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
