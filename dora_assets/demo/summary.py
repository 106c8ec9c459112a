"""The demo's closing table: both change failure rates, rework rate and the two medians.

The rates of a window are ratios of sums: incidents over deployments (the incident-based
rate of `dora_change_failure_rate_daily`) and change-failure deployments over
deployments (the deployment-based rate of `dora_change_failures_daily`). A median does
not add up across days, so the window's medians are taken over the items themselves:
resolved incidents from `dora_incidents`, recovered failed deployments from
`dora_deployments`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from connectors.warehouse import reading
from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_deployments,
    dora_incidents,
)
from connectors.warehouse.sql import seconds_between

TEAM_WIDE = "(team-wide)"
KEY = ["team", "service"]


@dataclass(frozen=True)
class Figures:
    team: str
    service: str
    deployments: int
    incidents: int
    change_failures: int
    reworks: int
    median_restore_seconds: float | None
    median_recovery_seconds: float | None

    def _share(self, count: int) -> float | None:
        return count / self.deployments if self.deployments else None

    @property
    def incident_change_failure_rate(self) -> float | None:
        return self._share(self.incidents)

    @property
    def change_failure_rate(self) -> float | None:
        return self._share(self.change_failures)

    @property
    def rework_rate(self) -> float | None:
        return self._share(self.reworks)


def _frame(connection: sa.Connection, query: sa.Select) -> pd.DataFrame:
    result = connection.execute(query)
    return pd.DataFrame(result.all(), columns=list(result.keys()))


def _counts(connection: sa.Connection, first_day: dt.date, end_day: dt.date) -> pd.DataFrame:
    c, d = dora_change_failure_rate_daily.c, dora_deployments.c
    incidents = _frame(
        connection,
        sa.select(
            c.team,
            c.service,
            sa.func.sum(c.deployments).label("deployments"),
            sa.func.sum(c.failures).label("incidents"),
        )
        .where(c.day >= first_day, c.day < end_day)
        .group_by(c.team, c.service),
    )
    flagged = sa.func.sum(sa.case((d.change_failure, 1), else_=0))
    rework = sa.func.sum(sa.case((sa.or_(d.is_rollback, d.is_rollforward), 1), else_=0))
    deployments = _frame(
        connection,
        sa.select(d.team, d.service, flagged.label("change_failures"), rework.label("reworks"))
        .where(d.finished_day >= first_day, d.finished_day < end_day)
        .group_by(d.team, d.service),
    )
    return incidents.merge(deployments, on=KEY, how="left").fillna(0)


def _durations(connection: sa.Connection, first_day: dt.date, end_day: dt.date) -> pd.DataFrame:
    """Seconds to restore each resolved incident and to recover each failed deployment."""
    i, d = dora_incidents.c, dora_deployments.c
    restores = _frame(
        connection,
        sa.select(
            i.incident_id.label("item"),
            i.team,
            i.service,
            seconds_between(i.finished_at, i.started_at).label("seconds"),
        ).where(i.status == "resolved", i.finished_day >= first_day, i.finished_day < end_day),
    )
    recoveries = _frame(
        connection,
        sa.select(
            d.deployment_id.label("item"),
            d.team,
            d.service,
            seconds_between(d.recovered_at, d.finished_at).label("seconds"),
        ).where(d.recovered_day >= first_day, d.recovered_day < end_day),
    )
    return pd.concat([restores.assign(kind="restore"), recoveries.assign(kind="recovery")])


def _median(durations: pd.DataFrame, kind: str, key: tuple[str, str] | None) -> float | None:
    chosen = durations[durations["kind"] == kind]
    if key is not None:
        chosen = chosen[(chosen["team"] == key[0]) & (chosen["service"] == key[1])]
    else:
        # An incident hitting several services is one incident org-wide.
        chosen = chosen.drop_duplicates("item")
    return float(chosen["seconds"].median()) if len(chosen) else None


def window_figures(
    engine: sa.Engine, first_day: dt.date, end_day: dt.date
) -> tuple[list[Figures], Figures]:
    """Per (team, service) over `[first_day, end_day)`, and org-wide."""
    with reading(engine) as connection:
        counts = _counts(connection, first_day, end_day).sort_values(KEY)
        durations = _durations(connection, first_day, end_day)

    def figures(key: tuple[str, str] | None, totals: dict[str, Any]) -> Figures:
        team, service = key or ("", "all services")
        return Figures(
            team,
            service,
            *(int(totals[name]) for name in ("deployments", "incidents", "change_failures")),
            int(totals["reworks"]),
            _median(durations, "restore", key),
            _median(durations, "recovery", key),
        )

    rows = [figures((row["team"], row["service"]), row) for row in counts.to_dict("records")]
    total = figures(None, counts.drop(columns=KEY).sum().to_dict())
    return rows, total


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


HEADER = (
    "team",
    "service",
    "deployments",
    "incidents",
    "incident CFR",
    "deployment CFR",
    "rework rate",
    "median TTR",
    "median recovery",
)


def render_table(rows: list[Figures], total: Figures) -> str:
    lines = [
        (
            row.team,
            row.service or TEAM_WIDE,
            str(row.deployments),
            str(row.incidents),
            _rate(row.incident_change_failure_rate),
            _rate(row.change_failure_rate),
            _rate(row.rework_rate),
            _duration(row.median_restore_seconds),
            _duration(row.median_recovery_seconds),
        )
        for row in [*rows, total]
    ]
    widths = [max(len(cells[i]) for cells in [HEADER, *lines]) for i in range(len(HEADER))]

    def line(cells: tuple[str, ...]) -> str:
        left = [cells[i].ljust(widths[i]) for i in range(2)]
        right = [cells[i].rjust(widths[i]) for i in range(2, len(cells))]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(HEADER), rule, *map(line, lines[:-1]), rule, line(lines[-1])])
