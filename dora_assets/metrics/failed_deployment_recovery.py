"""`dora_failed_deployment_recovery_daily`: how long failed deployments took to recover."""

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse.items import recoveries, recovery_seconds
from connectors.warehouse.schema import dora_deployments, dora_failed_deployment_recovery_daily
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata
from dora_assets.metrics.durations import duration_rows, org_median_per_day
from dora_assets.metrics.rebuild import rebuild_days
from dora_assets.metrics.reconcile import reconciliation_check
from dora_assets.partitions import daily_partitions
from dora_assets.resources import WarehouseResource

table = dora_failed_deployment_recovery_daily
d = dora_deployments.c


def recovery_rows(first_day: dt.date, end_day: dt.date) -> sa.Select:
    return duration_rows(recoveries(first_day, end_day))


def org_figures_per_day(
    connection: sa.Connection, first_day: dt.date, end_day: dt.date
) -> dict[dt.date, dict[str, float | int | None]]:
    return org_median_per_day(
        connection,
        table,
        recoveries(first_day, end_day),
        first_day,
        end_day,
        count_name="recovered_failures",
        median_name="org_median_recovery_seconds",
    )


@dg.asset(
    key="dora_failed_deployment_recovery_daily",
    group_name="metrics",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["dora_deployments"],
    kinds={"sql", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(table),
    description="""
**Failed deployment recovery time per UTC day of recovery, service, team and env** (key
`day`, `service`, `team`, `env`). One failure's recovery time is `recovered_at -
finished_at` of the failed deployment (`recovered_at`: when its rollback or rollforward
finished, when the PATCH-named remediation finished, or when the last of its attributed
incidents resolved). Failures not yet recovered are not counted.

`recovered_failures`, `total_seconds` (additive), `mean_seconds`, `median_seconds`,
`p90_seconds` (linear interpolation, as PostgreSQL's `percentile_cont`), `max_seconds`.
Each partition's materialization carries the org-wide median recovery time.
""",
)
def dora_failed_deployment_recovery_daily_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return rebuild_days(
        context,
        warehouse,
        table,
        rows=recovery_rows,
        org_figures=org_figures_per_day,
        preview_largest=table.c.recovered_failures,
    )


dora_failed_deployment_recovery_daily_reconciliation = reconciliation_check(
    table,
    measures={
        "recovered_failures": (d.recovered_day, sa.func.count(d.recovered_at)),
        "total_seconds": (d.recovered_day, sa.func.sum(recovery_seconds)),
    },
)
