"""What the daily metric assets share: duration rows computed in the database (count,
total, mean, linear-interpolated median and p90, max per key) and the org-wide figures
each partition's materialization carries for the asset page to plot."""

import datetime as dt
import itertools
import operator
from collections.abc import Sequence

import sqlalchemy as sa

from connectors.warehouse.sql import percentile_cont, ranked
from dora_assets.partitions import days_between

KEY = ["day", "service", "team", "env"]


def duration_rows(items: sa.Select) -> sa.Select:
    """Metric rows from `items` (columns `item`, `day`, `service`, `team`, `env`,
    `seconds`), in the metric tables' column order."""
    durations = ranked(items, "seconds", KEY)
    seconds = durations.c.seconds
    key = [durations.c[name] for name in KEY]
    return sa.select(
        *key,
        sa.func.count(),
        sa.func.sum(seconds),
        sa.func.avg(seconds),
        percentile_cont(durations, "seconds", 50),
        percentile_cont(durations, "seconds", 90),
        sa.func.max(seconds),
    ).group_by(*key)


def org_median_per_day(
    connection: sa.Connection,
    table: sa.Table,
    items: sa.Select,
    first_day: dt.date,
    end_day: dt.date,
    count_name: str,
    median_name: str,
) -> dict[dt.date, dict[str, float | int | None]]:
    """Per day of `[first_day, end_day)`: rows of `table`, items org-wide and their
    median duration (a day without items: 0 of each, no median).

    An item on several rows (an incident affecting several services) counts once: its
    rows share their times, so `min` just picks that one duration. The rows come in day
    order (the day columns are indexed) and each day's median is taken here, as
    `percentile_cont` does: SQLite's window functions cost several times that.
    """
    row_counts = dict(
        connection.execute(
            sa.select(table.c.day, sa.func.count())
            .where(table.c.day >= first_day, table.c.day < end_day)
            .group_by(table.c.day)
        ).all()
    )
    listed = items.subquery()
    # Streamed: read after the row counts, not beside them.
    durations = connection.execute(
        sa.select(listed.c.day, listed.c.item, listed.c.seconds).order_by(listed.c.day)
    )
    figures: dict[dt.date, dict[str, float | int | None]] = {
        day: {"dagster/row_count": 0, count_name: 0, median_name: None}
        for day in days_between(first_day, end_day)
    }
    for day, rows in itertools.groupby(durations, key=operator.itemgetter(0)):
        per_item: dict[str, float] = {}
        for _, item, seconds in rows:
            per_item[item] = min(seconds, per_item.get(item, seconds))
        ordered = sorted(per_item.values())
        figures[day] = {
            "dagster/row_count": row_counts.get(day, 0),
            count_name: len(ordered),
            median_name: percentile(ordered, 50),
        }
    return figures


def percentile(ordered: Sequence[float], percent: int) -> float:
    """`percentile_cont` of `ordered` (ascending, not empty), in the same arithmetic."""
    scaled_rank = (len(ordered) - 1) * percent
    lower = scaled_rank // 100
    low, high = ordered[lower], ordered[min(lower + 1, len(ordered) - 1)]
    return low + (high - low) * (float(scaled_rank % 100) / 100.0)


def org_counts_per_day(
    connection: sa.Connection,
    table: sa.Table,
    first_day: dt.date,
    end_day: dt.date,
    counts: tuple[str, ...],
    rate_name: str,
) -> dict[dt.date, dict[str, float | int | None]]:
    """Per day of `[first_day, end_day)`: rows of `table`, the org-wide sum of each of
    `counts` (0 on a day without rows, so a plot of them shows the quiet days), and
    `rate_name` = the second count over the first (None without the first)."""
    c = table.c
    rows = connection.execute(
        sa.select(c.day, sa.func.count(), *(sa.func.sum(c[name]) for name in counts))
        .where(c.day >= first_day, c.day < end_day)
        .group_by(c.day)
    )
    figures: dict[dt.date, dict[str, float | int | None]] = {
        day: {"dagster/row_count": 0, **dict.fromkeys(counts, 0), rate_name: None}
        for day in days_between(first_day, end_day)
    }
    for day, row_count, *sums in rows:
        totals = dict(zip(counts, (int(total) for total in sums), strict=True))
        denominator, numerator = totals[counts[0]], totals[counts[1]]
        figures[day] = {
            "dagster/row_count": int(row_count),
            **totals,
            rate_name: numerator / denominator if denominator else None,
        }
    return figures
