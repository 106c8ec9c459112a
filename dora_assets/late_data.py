"""Which metric days no longer match their inputs: the daily audit's comparison.

Each metric table stores additive tallies per (day, service, team, env). We recompute
those tallies with the metric assets' own queries (grouped in the database on the
indexed day columns of `dora_deployments` and `dora_incidents`) and compare them with
the stored rows, row for row, in one query. A day whose stored tallies differ from the
recomputed ones (a deployment landed for last month, an incident resolved a week late,
an event retracted) is stale. The comparison is exact and costs one grouped scan of
each input over the days looked at, too much for every sensor tick (the sensor reads
the changed-days record) and right for a daily audit.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from connectors.warehouse.items import lead_times, recoveries
from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_change_failures_daily,
    dora_change_lead_time_daily,
    dora_failed_deployment_recovery_daily,
    dora_time_to_restore_daily,
)
from dora_assets.metrics.change_failure_rate import change_failure_rate_rows
from dora_assets.metrics.change_failures import change_failures_rows
from dora_assets.metrics.time_to_restore import sums_per_key

# Per-incident durations are rounded to the millisecond; sums of them may differ in
# the last float bits depending on summation order, never by this much.
SECONDS_TOLERANCE = 0.01
KEY_COLUMNS = ("day", "service", "team", "env")


def _differing_days(
    stored: sa.Table,
    recomputed: sa.Subquery,
    first_day: dt.date,
    end_day: dt.date,
    measures_differ: sa.ColumnElement[bool],
) -> sa.CompoundSelect:
    """Days with a key on one side only, or on both with different measures."""
    same_key = sa.and_(*(stored.c[name] == recomputed.c[name] for name in KEY_COLUMNS))
    in_range = sa.and_(stored.c.day >= first_day, stored.c.day < end_day)
    missing_or_changed = (
        sa.select(recomputed.c.day)
        .select_from(recomputed.outerjoin(stored, same_key))
        .where(sa.or_(stored.c.day.is_(None), measures_differ))
    )
    no_longer_there = (
        sa.select(stored.c.day)
        .select_from(stored.outerjoin(recomputed, same_key))
        .where(in_range, recomputed.c.day.is_(None))
    )
    return sa.union(missing_or_changed, no_longer_there)


def stale_change_failure_rate_days(first_day: dt.date, end_day: dt.date) -> sa.CompoundSelect:
    table = dora_change_failure_rate_daily
    recomputed = change_failure_rate_rows(first_day, end_day).subquery("recomputed")
    # The metric query's columns are in table order; its aggregates are unnamed.
    deployments, failures = recomputed.c[4], recomputed.c[5]
    return _differing_days(
        table,
        recomputed,
        first_day,
        end_day,
        sa.or_(table.c.deployments != deployments, table.c.failures != failures),
    )


def stale_time_to_restore_days(first_day: dt.date, end_day: dt.date) -> sa.CompoundSelect:
    table = dora_time_to_restore_daily
    recomputed = sums_per_key(first_day, end_day).subquery("recomputed")
    return _differing_days(
        table,
        recomputed,
        first_day,
        end_day,
        sa.or_(
            table.c.resolved_incidents != recomputed.c.resolved_incidents,
            sa.func.abs(table.c.total_seconds - recomputed.c.total_seconds) > SECONDS_TOLERANCE,
        ),
    )


def stale_change_failures_days(first_day: dt.date, end_day: dt.date) -> sa.CompoundSelect:
    table = dora_change_failures_daily
    recomputed = change_failures_rows(first_day, end_day).subquery("recomputed")
    counts = ("deployments", "change_failures", "rollbacks", "rollforwards")
    return _differing_days(
        table,
        recomputed,
        first_day,
        end_day,
        sa.or_(*(table.c[name] != recomputed.c[name] for name in counts)),
    )


def _stale_duration_days(
    table: sa.Table, items: sa.Select, count_name: str, first_day: dt.date, end_day: dt.date
) -> sa.CompoundSelect:
    """Days whose per-key item count or total seconds differ from `items` (columns `day`,
    `service`, `team`, `env`, `seconds`)."""
    listed = items.subquery()
    key = [listed.c[name] for name in KEY_COLUMNS]
    recomputed = (
        sa.select(
            *key,
            sa.func.count().label(count_name),
            sa.func.sum(listed.c.seconds).label("total_seconds"),
        )
        .group_by(*key)
        .subquery("recomputed")
    )
    return _differing_days(
        table,
        recomputed,
        first_day,
        end_day,
        sa.or_(
            table.c[count_name] != recomputed.c[count_name],
            sa.func.abs(table.c.total_seconds - recomputed.c.total_seconds) > SECONDS_TOLERANCE,
        ),
    )


def stale_recovery_days(first_day: dt.date, end_day: dt.date) -> sa.CompoundSelect:
    return _stale_duration_days(
        dora_failed_deployment_recovery_daily,
        recoveries(first_day, end_day),
        "recovered_failures",
        first_day,
        end_day,
    )


def stale_lead_time_days(first_day: dt.date, end_day: dt.date) -> sa.CompoundSelect:
    return _stale_duration_days(
        dora_change_lead_time_daily, lead_times(first_day, end_day), "commits", first_day, end_day
    )


def _as_date(value: dt.date | str) -> dt.date:
    # SQLite hands back DATE values of a UNION as text.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def stale_days(
    connection: sa.Connection, query: sa.CompoundSelect, built_days: set[dt.date]
) -> set[dt.date]:
    """The days `query` finds stale, among those that were built (materialized) before."""
    found = {_as_date(day) for (day,) in connection.execute(query)}
    return found & built_days
