"""The changed-days record: which metric days a normalized change touched.

Every change to `dora_deployments` or `dora_incidents` records, in the same
transaction, the metric days its rows counted under before and after (a deployment
moved from one day to another touches both). The late-data sensor reads this small
table instead of recomputing history, and a metric run deletes the entries of the days
it rebuilt as the first statement of its transaction, so an entry recorded while the
rebuild runs survives it and is picked up by the next one.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from connectors.timestamps import utcnow
from connectors.warehouse.bulk import executemany
from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_change_failures_daily,
    dora_deployments,
    dora_failed_deployment_recovery_daily,
    dora_incidents,
    dora_time_to_restore_daily,
    metric_changed_days,
)
from connectors.warehouse.upsert import insert

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Tally:
    """How a metric table counts a normalized row: under the day of `day_column`
    (NULL counts nowhere: an open incident has no resolution day), per service, team and
    env, with `measures` read from the row."""

    metric: str
    day_column: str
    measures: tuple[str, ...] = ()

    @cached_property
    def counted_as(self) -> Callable[[Row], tuple[Any, ...]]:
        """What of a row (with a day) the metric counts: its day, service, team, env and
        `measures`. Two rows it counts alike leave the metric's figures as they were."""
        return operator.itemgetter(self.day_column, "service", "team", "env", *self.measures)


TALLIES: dict[str, tuple[Tally, ...]] = {
    dora_deployments.name: (
        Tally(dora_change_failure_rate_daily.name, "finished_day"),
        Tally(
            dora_change_failures_daily.name,
            "finished_day",
            ("change_failure", "is_rollback", "is_rollforward"),
        ),
        Tally(
            dora_failed_deployment_recovery_daily.name,
            "recovered_day",
            ("finished_at", "recovered_at"),
        ),
    ),
    dora_incidents.name: (
        Tally(dora_change_failure_rate_daily.name, "started_day"),
        Tally(dora_time_to_restore_daily.name, "finished_day", ("started_at", "finished_at")),
    ),
}

MetricDay = tuple[str, dt.date]


def days_touched(
    table: sa.Table, changes: Iterable[tuple[Row | None, Row | None]]
) -> set[MetricDay]:
    """The (metric table, day) pairs whose figures the `(before, after)` row changes of a
    normalized `table` can alter: both days of a row a metric counts differently after
    the change (a late resolution touches its resolution day, not its start day)."""
    touched: set[MetricDay] = set()
    changes = list(changes)
    # Tally by tally, no call but `counted_as`: a first classification passes ~200,000.
    for tally in TALLIES[table.name]:
        metric, day, counted_as = tally.metric, tally.day_column, tally.counted_as
        for before, after in changes:
            day_before = None if before is None else before[day]
            day_after = None if after is None else after[day]
            counted_before = None if day_before is None else counted_as(before)
            if counted_before == (None if day_after is None else counted_as(after)):
                continue
            if day_before is not None:
                touched.add((metric, day_before))
            if day_after is not None:
                touched.add((metric, day_after))
    return touched


def record(connection: sa.Connection, touched: Iterable[MetricDay]) -> int:
    """Add `touched` to the record (an entry already there stays as it is)."""
    now = utcnow()
    entries = [{"metric": metric, "day": day, "changed_at": now} for metric, day in touched]
    # In bulk: a first classification records ~20,000 entries.
    executemany(
        connection,
        insert(metric_changed_days, connection.dialect).on_conflict_do_nothing(
            index_elements=list(metric_changed_days.primary_key.columns)
        ),
        entries,
    )
    return len(entries)


def clear(connection: sa.Connection, metric: str, days: Iterable[dt.date]) -> None:
    """Forget the entries of `days` of `metric`: call it first in the transaction that
    rebuilds them, so that what commits after this statement is recorded again."""
    day_list = sorted(set(days))
    for start in range(0, len(day_list), 500):
        connection.execute(
            sa.delete(metric_changed_days).where(
                metric_changed_days.c.metric == metric,
                metric_changed_days.c.day.in_(day_list[start : start + 500]),
            )
        )


def pending(
    connection: sa.Connection, metrics: Iterable[str], first_day: dt.date, end_day: dt.date
) -> dict[str, set[dt.date]]:
    """The recorded days of each of `metrics` within `[first_day, end_day)`."""
    names = list(metrics)
    found: dict[str, set[dt.date]] = {name: set() for name in names}
    rows = connection.execute(
        sa.select(metric_changed_days.c.metric, metric_changed_days.c.day).where(
            metric_changed_days.c.metric.in_(names),
            metric_changed_days.c.day >= first_day,
            metric_changed_days.c.day < end_day,
        )
    )
    for metric, day in rows:
        found[metric].add(day)
    return found
