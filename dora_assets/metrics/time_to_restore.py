"""`dora_time_to_restore_daily`: how long resolved incidents took, per UTC day of resolution."""

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse.items import incident, resolved_in, restore_seconds, restores
from connectors.warehouse.schema import dora_time_to_restore_daily
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata
from dora_assets.metrics.durations import duration_rows, org_median_per_day
from dora_assets.metrics.rebuild import rebuild_days
from dora_assets.metrics.reconcile import reconciliation_check
from dora_assets.partitions import daily_partitions
from dora_assets.resources import WarehouseResource

table = dora_time_to_restore_daily


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
        .where(resolved_in(first_day, end_day))
        .group_by(incident.finished_day, incident.service, incident.team, incident.env)
    )


def time_to_restore_rows(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """The metric rows of `[first_day, end_day)`, computed entirely in the database."""
    return duration_rows(restores(first_day, end_day))


def org_figures_per_day(
    connection: sa.Connection, first_day: dt.date, end_day: dt.date
) -> dict[dt.date, dict[str, float | int | None]]:
    """Per day: rows written, incidents resolved org-wide (each once, whatever the number
    of services it affected) and their median time to restore."""
    return org_median_per_day(
        connection,
        table,
        restores(first_day, end_day),
        first_day,
        end_day,
        count_name="resolved_incidents",
        median_name="org_median_time_to_restore_seconds",
    )


@dg.asset(
    key="dora_time_to_restore_daily",
    group_name="metrics",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["dora_incidents"],
    kinds={"sql", WAREHOUSE_KIND},
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

A run computes its whole partition range with one `INSERT ... SELECT` (percentiles
from window-function ranks, so no row leaves the database) and replaces those days in
one transaction. Each partition's materialization carries the org-wide median time to
restore of its day.
""",
)
def dora_time_to_restore_daily_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return rebuild_days(
        context,
        warehouse,
        table,
        rows=time_to_restore_rows,
        org_figures=org_figures_per_day,
        preview_largest=table.c.resolved_incidents,
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
