"""Rebuilding a run's days of a daily metric table: the step every metric asset shares."""

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import dagster as dg
import sqlalchemy as sa

from dora_assets.metadata import table_metadata
from dora_assets.partition_metadata import DailyFigures, attach_partition_metadata
from dora_assets.partitions import day_range
from dora_assets.resources import WarehouseResource
from dora_assets.sql import insert_from_select

DayRows = Callable[[dt.date, dt.date], sa.Select]
DayFigures = Callable[[sa.Connection, dt.date, dt.date], DailyFigures]


def rebuild_days(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    table: sa.Table,
    rows: DayRows,
    org_figures: DayFigures,
    preview_largest: sa.Column[Any],
) -> dg.MaterializeResult:
    """Replace the run's days `[first, end)` of `table` with `rows(first, end)`.

    One `INSERT ... SELECT` in the transaction that deleted those days; each partition
    then carries `org_figures` of its day, and the range's last one the table's metadata
    with a preview of the newest days, rows with the largest `preview_largest` first.
    """
    first_day, end_day = day_range(context.partition_key_range)
    days = (end_day - first_day).days
    last_day = end_day - dt.timedelta(days=1)
    context.log.info(f"rebuilding {days} day(s) of {table.name}: {first_day}...{last_day}")
    started = time.perf_counter()
    with warehouse.replacing_days(table, first_day, end_day) as connection:
        inserted = insert_from_select(connection, table, rows(first_day, end_day))
        figures = org_figures(connection, first_day, end_day)
        metadata = table_metadata(
            connection,
            table,
            inserted,
            sa.select(table)
            .where(table.c.day >= first_day, table.c.day < end_day)
            .order_by(table.c.day.desc(), preview_largest.desc()),
        )
    context.log.info(
        f"replaced {days} day(s) of {table.name} with {inserted:,} rows"
        f" in {time.perf_counter() - started:.1f} s; recording one materialization per day"
    )
    return attach_partition_metadata(
        context, figures, {**metadata, "range_row_count": dg.MetadataValue.int(inserted)}
    )
