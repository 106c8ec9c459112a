"""The demo's closing table: change failure rate and median time to restore per service.

The change failure rate of a window is `sum(failures) / sum(deployments)` over the
daily metric table (its counts are additive). A median does not add up across days,
so the window's median time to restore is taken over the resolved incidents
themselves, from `dora_incidents`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from connectors.warehouse import reading
from connectors.warehouse.schema import dora_change_failure_rate_daily, dora_incidents
from dora_assets.sql import seconds_between

TEAM_WIDE = "(team-wide)"


@dataclass(frozen=True)
class Figures:
    team: str
    service: str
    deployments: int
    failures: int
    median_restore_seconds: float | None

    @property
    def change_failure_rate(self) -> float | None:
        return self.failures / self.deployments if self.deployments else None


def _counts(connection: sa.Connection, first_day: dt.date, end_day: dt.date) -> pd.DataFrame:
    c = dora_change_failure_rate_daily.c
    query = (
        sa.select(
            c.team,
            c.service,
            sa.func.sum(c.deployments).label("deployments"),
            sa.func.sum(c.failures).label("failures"),
        )
        .where(c.day >= first_day, c.day < end_day)
        .group_by(c.team, c.service)
    )
    return pd.DataFrame(
        connection.execute(query).all(), columns=["team", "service", "deployments", "failures"]
    )


def _restores(connection: sa.Connection, first_day: dt.date, end_day: dt.date) -> pd.DataFrame:
    i = dora_incidents.c
    query = sa.select(
        i.incident_id, i.team, i.service, seconds_between(i.finished_at, i.started_at)
    ).where(i.status == "resolved", i.finished_day >= first_day, i.finished_day < end_day)
    return pd.DataFrame(
        connection.execute(query).all(), columns=["incident_id", "team", "service", "seconds"]
    )


def window_figures(
    engine: sa.Engine, first_day: dt.date, end_day: dt.date
) -> tuple[list[Figures], Figures]:
    """Per (team, service) over `[first_day, end_day)`, and org-wide."""
    with reading(engine) as connection:
        counts = _counts(connection, first_day, end_day)
        restores = _restores(connection, first_day, end_day)
    medians = restores.groupby(["team", "service"])["seconds"].median()
    rows = [
        Figures(
            team,
            service,
            int(deployments),
            int(failures),
            float(medians[(team, service)]) if (team, service) in medians.index else None,
        )
        for team, service, deployments, failures in counts.sort_values(
            ["team", "service"]
        ).itertuples(index=False)
    ]
    # An incident hitting several services is one incident org-wide.
    incidents = restores.drop_duplicates("incident_id")["seconds"]
    total = Figures(
        "",
        "all services",
        int(counts["deployments"].sum()),
        int(counts["failures"].sum()),
        float(incidents.median()) if len(incidents) else None,
    )
    return rows, total


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def render_table(rows: list[Figures], total: Figures) -> str:
    header = ("team", "service", "deployments", "failures", "change failure rate", "median TTR")
    lines = [
        (
            row.team,
            row.service or TEAM_WIDE,
            str(row.deployments),
            str(row.failures),
            _rate(row.change_failure_rate),
            _duration(row.median_restore_seconds),
        )
        for row in [*rows, total]
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        left = [cells[i].ljust(widths[i]) for i in range(2)]
        right = [cells[i].rjust(widths[i]) for i in range(2, len(cells))]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *map(line, lines[:-1]), rule, line(lines[-1])])
