"""`dora_time_to_restore_daily`: how long resolved incidents took, per UTC day of resolution."""

import datetime as dt

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from connectors.warehouse.schema import dora_incidents, dora_time_to_restore_daily
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata, table_metadata
from dora_assets.metrics.reconcile import reconciliation_check
from dora_assets.partition_metadata import attach_partition_metadata
from dora_assets.partitions import daily_partitions, day_range
from dora_assets.resources import WarehouseResource
from dora_assets.sql import insert_frame, seconds_between

table = dora_time_to_restore_daily
KEY = ["day", "service", "team", "env"]
incident = dora_incidents.c
restore_seconds = seconds_between(incident.finished_at, incident.started_at)


def _resolved_in(first_day: dt.date, end_day: dt.date) -> sa.ColumnElement[bool]:
    return sa.and_(
        incident.status == "resolved",
        incident.finished_day >= first_day,
        incident.finished_day < end_day,
    )


def sums_per_key(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """Count, total, mean and max per metric key, aggregated in the database."""
    return (
        sa.select(
            incident.finished_day.label("day"),
            incident.service,
            incident.team,
            incident.env,
            sa.func.count().label("resolved_incidents"),
            sa.func.sum(restore_seconds).label("total_seconds"),
            sa.func.avg(restore_seconds).label("mean_seconds"),
            sa.func.max(restore_seconds).label("max_seconds"),
        )
        .where(_resolved_in(first_day, end_day))
        .group_by(incident.finished_day, incident.service, incident.team, incident.env)
    )


def durations(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """The reduced rows percentiles need: incident, key, seconds."""
    return sa.select(
        incident.incident_id,
        incident.finished_day.label("day"),
        incident.service,
        incident.team,
        incident.env,
        restore_seconds.label("seconds"),
    ).where(_resolved_in(first_day, end_day))


def frame(result: sa.CursorResult) -> pd.DataFrame:
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def time_to_restore_rows(sums: pd.DataFrame, restores: pd.DataFrame) -> pd.DataFrame:
    """Join the database's sums with per-key percentiles (linear interpolation, as
    PostgreSQL's percentile_cont)."""
    percentiles = (
        restores.groupby(KEY, sort=False)["seconds"]
        .quantile([0.5, 0.9])
        .unstack()
        .rename(columns={0.5: "median_seconds", 0.9: "p90_seconds"})
        .reset_index()
    )
    return sums.merge(percentiles, on=KEY, how="left", validate="one_to_one")[
        [column.name for column in table.columns]
    ]


def org_figures_per_day(
    rows: pd.DataFrame, restores: pd.DataFrame
) -> dict[dt.date, dict[str, float | int | None]]:
    """Per day: rows written, incidents resolved org-wide and their median time to restore.

    An incident affecting several services has one row per service; org-wide it counts once.
    """
    incidents = restores.drop_duplicates(["day", "incident_id"])
    per_day = incidents.groupby("day")["seconds"].agg(["count", "median"])
    row_counts = rows.groupby("day").size()
    return {
        day: {
            "dagster/row_count": int(row_counts.get(day, 0)),
            "resolved_incidents": int(count),
            "org_median_time_to_restore_seconds": float(median),
        }
        for day, (count, median) in per_day.iterrows()
    }


@dg.asset(
    key="dora_time_to_restore_daily",
    group_name="metrics",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["dora_incidents"],
    kinds={"sql", "pandas", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(table),
    description="""
**Time to restore per UTC day of resolution, service, team and env** (key `day`,
`service`, `team`, `env`). An incident's time to restore is `finished_at - started_at`
(to the millisecond); open incidents are left out here (they count in the change
failure rate's `failures`).

`resolved_incidents`, `total_seconds` (additive, so window means are exact),
`mean_seconds`, `median_seconds`, `p90_seconds` (linear interpolation, as PostgreSQL's
`percentile_cont`), `max_seconds`.

A run covers its whole partition range: the database aggregates counts, totals, means
and maxima; pandas takes only the reduced (incident, key, seconds) rows for the
percentiles. The days are replaced in one transaction. Each partition's
materialization carries the org-wide median time to restore of its day.
""",
)
def dora_time_to_restore_daily_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    first_day, end_day = day_range(context.partition_key_range)
    with warehouse.replacing_days(table, first_day, end_day) as connection:
        sums = frame(connection.execute(sums_per_key(first_day, end_day)))
        restores = frame(connection.execute(durations(first_day, end_day)))
        rows = (
            time_to_restore_rows(sums, restores)
            if len(sums)
            else pd.DataFrame(columns=[column.name for column in table.columns])
        )
        insert_frame(connection, table, rows)
        metadata = table_metadata(
            connection,
            table,
            len(rows),
            sa.select(table)
            .where(table.c.day >= first_day, table.c.day < end_day)
            .order_by(table.c.day.desc(), table.c.resolved_incidents.desc()),
        )
    return attach_partition_metadata(
        context,
        org_figures_per_day(rows, restores) if len(rows) else {},
        {**metadata, "range_row_count": dg.MetadataValue.int(len(rows))},
    )


dora_time_to_restore_daily_reconciliation = reconciliation_check(
    table,
    measures={
        "resolved_incidents": (
            incident.finished_day,
            sa.func.count().filter(incident.status == "resolved"),
        ),
        "total_seconds": (
            incident.finished_day,
            sa.func.sum(restore_seconds).filter(incident.status == "resolved"),
        ),
    },
)
