"""Reconciliation checks: a metric table's daily totals equal a direct count over its sources.

Inside a run the check reconciles exactly the run's partition range. Run on its own
(from the UI) it reconciles every partition the instance records as materialized.
Asset checks on a ranged (single-run backfill) run can't be partition-scoped in
Dagster 1.13, so this check is unpartitioned and states the days it covered.
"""

import datetime as dt
import math
from collections.abc import Mapping

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse import reading
from dora_assets.metadata import markdown_table
from dora_assets.partitions import day_range
from dora_assets.resources import WarehouseResource

# (a source table's day column, the aggregate over it that a metric column must sum to)
DayColumn = sa.ColumnElement[dt.date]
Measure = tuple[DayColumn, sa.ColumnElement[float]]
MISMATCH_SAMPLE = 10


def _days_to_reconcile(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey
) -> set[dt.date]:
    if context.has_partition_key or context.has_partition_key_range:
        first, end = day_range(context.partition_key_range)
        return {first + dt.timedelta(days=n) for n in range((end - first).days)}
    materialized = context.instance.get_materialized_partitions(asset_key)
    return {dt.date.fromisoformat(key) for key in materialized}


def _per_day(
    connection: sa.Connection,
    day: DayColumn,
    values: Mapping[str, sa.ColumnElement[float]],
    first: dt.date,
    last: dt.date,
) -> dict[tuple[dt.date, str], float]:
    """Per (day, name): the total of `values[name]` grouped by `day`, in one query."""
    names = list(values)
    rows = connection.execute(
        sa.select(day, *values.values()).where(day >= first, day <= last).group_by(day)
    )
    return {
        (row_day, name): float(total or 0)
        for row_day, *totals in rows
        for name, total in zip(names, totals, strict=True)
    }


def _totals(
    connection: sa.Connection,
    metric_table: sa.Table,
    measures: Mapping[str, Measure],
    first: dt.date,
    last: dt.date,
) -> tuple[dict[tuple[dt.date, str], float], dict[tuple[dt.date, str], float]]:
    """Per (day, measure): the metric table's total and the sources', each table read
    once (measures over the same source day column share a query)."""
    sums = {name: sa.func.sum(metric_table.c[name]) for name in measures}
    in_metric = _per_day(connection, metric_table.c.day, sums, first, last)
    in_sources: dict[tuple[dt.date, str], float] = {}
    for source_day in {id(day): day for day, _ in measures.values()}.values():
        shared = {name: value for name, (day, value) in measures.items() if day is source_day}
        in_sources |= _per_day(connection, source_day, shared, first, last)
    return in_metric, in_sources


def reconciliation_check(
    metric_table: sa.Table, measures: Mapping[str, Measure]
) -> dg.AssetChecksDefinition:
    asset_key = dg.AssetKey(metric_table.name)
    sources = ", ".join(sorted({day.table.name for day, _ in measures.values()}))

    @dg.asset_check(
        asset=asset_key,
        name="reconciles_with_sources",
        description=(
            f"For every day covered, the sum of {', '.join(measures)} in `{metric_table.name}`"
            f" equals a direct count over `{sources}`."
        ),
    )
    def _check(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        days = _days_to_reconcile(context, asset_key)
        if not days:
            return dg.AssetCheckResult(passed=True, description="No materialized partition yet.")
        first, last = min(days), max(days)
        mismatches: list[tuple[str, str, float, float]] = []
        with reading(warehouse.engine) as connection:
            in_metric, in_sources = _totals(connection, metric_table, measures, first, last)
        for name in measures:
            for day in sorted(days):
                metric_total = in_metric.get((day, name), 0.0)
                source_total = in_sources.get((day, name), 0.0)
                if not math.isclose(metric_total, source_total, rel_tol=1e-9, abs_tol=1e-6):
                    mismatches.append((day.isoformat(), name, metric_total, source_total))
        metadata: dict[str, object] = {
            "days_reconciled": dg.MetadataValue.int(len(days)),
            "range": dg.MetadataValue.text(f"{first.isoformat()}...{last.isoformat()}"),
            "mismatched_days": dg.MetadataValue.int(len({day for day, *_ in mismatches})),
        }
        if mismatches:
            metadata["mismatches"] = dg.MetadataValue.md(
                markdown_table(
                    ["day", "measure", "in metric", "in sources"], mismatches[:MISMATCH_SAMPLE]
                )
            )
        return dg.AssetCheckResult(
            passed=not mismatches,
            metadata=metadata,
            description=(
                "Re-materialize the mismatched partitions: their inputs changed after they"
                " were built."
                if mismatches
                else None
            ),
        )

    return _check
