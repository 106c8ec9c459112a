"""`dora_summary`: the DORA figures of a trailing window per org, team and service.

Rates are ratios of sums over the window, exactly what summing the daily tables gives
(`sum(change_failures) / sum(deployments)`); medians are over the window's individual
items (recovered failed deployments, resolved incidents, shipped commits), not
medians of daily medians. Items are filed under the day their daily table uses: a
deployment under the day it finished, an incident's failure under the day it started,
its restore under the day it was resolved, a recovery under the day it recovered.

The items are read once for a span of days (`read_items`) and then summarized for
any window inside it (`summarize`), so the report's weekly trends and the summary
count the same way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from connectors.report.levels import Benchmark
from connectors.warehouse import items as warehouse_items
from connectors.warehouse.schema import dora_deployments, dora_incidents

SCOPES = ("org", "team", "service")
ORG_NAME = ""
# Where each summary level comes from: (level column, benchmark metric, figure column).
RATED = (
    ("deployment_frequency_level", "deployment_days_per_week", "deployment_days_per_week"),
    ("lead_time_level", "lead_time_seconds", "median_lead_time_seconds"),
    ("change_failure_rate_level", "change_failure_rate", "change_failure_rate"),
    ("recovery_level", "recovery_seconds", "median_recovery_seconds"),
    ("time_to_restore_level", "recovery_seconds", "median_time_to_restore_seconds"),
)
FIGURES = (
    "deployments",
    "deployments_per_week",
    "deployment_days_per_week",
    "median_lead_time_seconds",
    "change_failure_rate",
    "incident_change_failure_rate",
    "rework_rate",
    "median_recovery_seconds",
    "median_time_to_restore_seconds",
)
LEVEL_COLUMNS = (*(level for level, _, _ in RATED), "rework_rate_level")
COLUMNS = ("scope", "name", "window_start", "window_end", "benchmark", *FIGURES, *LEVEL_COLUMNS)


@dataclass(frozen=True)
class Window:
    """The UTC days `start` .. `end`, both included."""

    start: dt.date
    end: dt.date

    @classmethod
    def ending_yesterday(cls, days: int, today: dt.date | None = None) -> Window:
        today = today or dt.datetime.now(dt.UTC).date()
        end = today - dt.timedelta(days=1)
        return cls(end - dt.timedelta(days=days - 1), end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def weeks(self) -> float:
        return self.days / 7


@dataclass(frozen=True)
class Items:
    """What the summary counts, one row per item, each with its `day`, `service`, `team`.

    - `deployments`: `change_failure`, `rework` (a rollback or a rollforward);
    - `failures`: one row per incident and service (as `dora_change_failure_rate_daily`
      counts them);
    - `restores`, `recoveries`, `lead_times`: `item` and `seconds`.
    """

    deployments: pd.DataFrame
    failures: pd.DataFrame
    restores: pd.DataFrame
    recoveries: pd.DataFrame
    lead_times: pd.DataFrame
    teams: tuple[str, ...]
    services: tuple[str, ...]

    def within(self, window: Window) -> Items:
        def days(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[(frame["day"] >= window.start) & (frame["day"] <= window.end)]

        return Items(
            days(self.deployments),
            days(self.failures),
            days(self.restores),
            days(self.recoveries),
            days(self.lead_times),
            self.teams,
            self.services,
        )


def _frame(connection: sa.Connection, query: sa.Select) -> pd.DataFrame:
    result = connection.execute(query)
    frame = pd.DataFrame(result.all(), columns=list(result.keys()))
    if "day" in frame:
        # SQLite hands back DATE columns as dates too; normalize whatever arrives.
        frame["day"] = pd.to_datetime(frame["day"]).dt.date
    return frame


def _names(connection: sa.Connection, column: str) -> tuple[str, ...]:
    """Every non-empty team or service the warehouse has seen, at any time: a scope that
    went quiet stays in the summary (with no data) rather than disappearing."""
    seen = sa.union(
        sa.select(dora_deployments.c[column]), sa.select(dora_incidents.c[column])
    ).subquery()
    return tuple(sorted(name for (name,) in connection.execute(sa.select(seen.c[column])) if name))


def read_items(connection: sa.Connection, window: Window) -> Items:
    first_day, end_day = window.start, window.end + dt.timedelta(days=1)
    d, i = dora_deployments.c, dora_incidents.c
    deployments = _frame(
        connection,
        sa.select(
            d.finished_day.label("day"),
            d.service,
            d.team,
            d.change_failure,
            sa.or_(d.is_rollback, d.is_rollforward).label("rework"),
        ).where(d.finished_day >= first_day, d.finished_day < end_day),
    )
    failures = _frame(
        connection,
        sa.select(i.started_day.label("day"), i.service, i.team).where(
            i.started_day >= first_day, i.started_day < end_day
        ),
    )
    restores = _frame(connection, warehouse_items.restores(first_day, end_day))
    recoveries = _frame(connection, warehouse_items.recoveries(first_day, end_day))
    lead_times = _frame(connection, warehouse_items.lead_times(first_day, end_day))
    return Items(
        deployments.astype({"change_failure": bool, "rework": bool}),
        failures,
        restores,
        recoveries,
        lead_times,
        _names(connection, "team"),
        _names(connection, "service"),
    )


def _keyed(frame: pd.DataFrame, scope: str) -> pd.DataFrame:
    """`frame` with `name`: the scope's name of each row ('' for the org)."""
    names = ORG_NAME if scope == "org" else frame[scope]
    return frame.assign(name=names)


def _median(frame: pd.DataFrame, scope: str) -> pd.Series:
    # An item on several rows (an incident naming several services) counts once per name.
    keyed = _keyed(frame, scope).drop_duplicates(["name", "item"])
    return keyed.groupby("name")["seconds"].median()


def _share(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator).where(denominator > 0)


def _scope_figures(items: Items, window: Window, scope: str) -> pd.DataFrame:
    names = {"org": (ORG_NAME,), "team": items.teams, "service": items.services}[scope]
    deployments = _keyed(items.deployments, scope).groupby("name")
    figures = pd.DataFrame(
        {
            "deployments": deployments.size(),
            "days": deployments["day"].nunique(),
            "change_failures": deployments["change_failure"].sum(),
            "reworks": deployments["rework"].sum(),
        }
    )
    figures = figures.reindex(list(names)).fillna(0)
    count = figures["deployments"]
    incidents = _keyed(items.failures, scope).groupby("name").size().reindex(figures.index)
    return pd.DataFrame(
        {
            "scope": scope,
            "name": figures.index,
            "deployments": count.astype(int),
            "deployments_per_week": count / window.weeks,
            "deployment_days_per_week": figures["days"] / window.weeks,
            "median_lead_time_seconds": _median(items.lead_times, scope),
            "change_failure_rate": _share(figures["change_failures"], count),
            "incident_change_failure_rate": _share(incidents.fillna(0), count),
            "rework_rate": _share(figures["reworks"], count),
            "median_recovery_seconds": _median(items.recoveries, scope),
            "median_time_to_restore_seconds": _median(items.restores, scope),
        },
        index=figures.index,
    )


def _rated(figures: pd.DataFrame, benchmark: Benchmark) -> pd.DataFrame:
    rated = figures.astype(object).where(figures.notna(), None)
    for level, metric, column in RATED:
        rated[level] = [benchmark.level(metric, value) for value in rated[column]]
    # No deployments is no data to rate, not "low".
    rated.loc[figures["deployments"] == 0, "deployment_frequency_level"] = None
    rated["rework_rate_level"] = None
    return rated


def summarize(items: Items, window: Window, benchmark: Benchmark) -> pd.DataFrame:
    """One row per scope (the org, each team, each service) in `dora_summary`'s columns;
    NULL (None) where the window has no data."""
    inside = items.within(window)
    figures = pd.concat(
        [_scope_figures(inside, window, scope) for scope in SCOPES], ignore_index=True
    )
    rated = _rated(figures, benchmark)
    rated["window_start"] = window.start
    rated["window_end"] = window.end
    rated["benchmark"] = benchmark.name
    rated["deployments"] = figures["deployments"].astype(int)
    return rated[list(COLUMNS)]


def trend_weeks(window: Window) -> list[Window]:
    """Seven-day buckets ending on the window's last day, oldest first, covering it."""
    count = -(-window.days // 7)
    return [
        Window(
            window.end - dt.timedelta(days=7 * back + 6), window.end - dt.timedelta(days=7 * back)
        )
        for back in reversed(range(count))
    ]


@dataclass(frozen=True)
class Report:
    """The summary of a window and its weekly trends (org and teams), same rules."""

    window: Window
    benchmark: Benchmark
    summary: pd.DataFrame
    trends: pd.DataFrame


def build_report(connection: sa.Connection, window: Window, benchmark: Benchmark) -> Report:
    weeks = trend_weeks(window)
    items = read_items(connection, Window(weeks[0].start, window.end))
    trends = pd.concat([summarize(items, week, benchmark) for week in weeks], ignore_index=True)
    return Report(
        window,
        benchmark,
        summarize(items, window, benchmark),
        trends[trends["scope"] != "service"].reset_index(drop=True),
    )
