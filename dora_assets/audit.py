"""The daily audit: every built metric day against a full recomputation.

The late-data sensor trusts the changed-days record. Once a day this run checks that
trust: it recomputes the tallies of every built day of every metric table from
`dora_deployments` and `dora_incidents` (`late_data`), rebuilds each day that differs,
and says which in its metadata, so a bug in change tracking cannot persist past a day.
"""

import datetime as dt
from collections.abc import Callable, Iterator

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse import reading
from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_change_failures_daily,
    dora_change_lead_time_daily,
    dora_failed_deployment_recovery_daily,
    dora_time_to_restore_daily,
)
from dora_assets import late_data
from dora_assets.freshness import METRIC_KEYS
from dora_assets.metrics.change_failure_rate import change_failure_rate_rows
from dora_assets.metrics.change_failures import change_failures_rows
from dora_assets.metrics.change_lead_time import change_lead_time_rows
from dora_assets.metrics.failed_deployment_recovery import recovery_rows
from dora_assets.metrics.rebuild import DayRows, replace_days
from dora_assets.metrics.time_to_restore import time_to_restore_rows
from dora_assets.resources import WarehouseResource

StaleQuery = Callable[[dt.date, dt.date], sa.CompoundSelect]
AUDITED: dict[str, tuple[sa.Table, StaleQuery, DayRows]] = {
    dora_change_failure_rate_daily.name: (
        dora_change_failure_rate_daily,
        late_data.stale_change_failure_rate_days,
        change_failure_rate_rows,
    ),
    dora_time_to_restore_daily.name: (
        dora_time_to_restore_daily,
        late_data.stale_time_to_restore_days,
        time_to_restore_rows,
    ),
    dora_change_failures_daily.name: (
        dora_change_failures_daily,
        late_data.stale_change_failures_days,
        change_failures_rows,
    ),
    dora_failed_deployment_recovery_daily.name: (
        dora_failed_deployment_recovery_daily,
        late_data.stale_recovery_days,
        recovery_rows,
    ),
    dora_change_lead_time_daily.name: (
        dora_change_lead_time_daily,
        late_data.stale_lead_time_days,
        change_lead_time_rows,
    ),
}


def audit(warehouse: WarehouseResource, table_name: str, built: set[dt.date]) -> list[dt.date]:
    """Rebuild the `built` days of a metric table that differ from a recomputation; which."""
    if not built:
        return []
    table, stale_query, rows = AUDITED[table_name]
    query = stale_query(min(built), max(built) + dt.timedelta(days=1))
    with reading(warehouse.engine) as connection:
        differing = sorted(late_data.stale_days(connection, query, built))
    replace_days(warehouse, table, rows, differing)
    return differing


@dg.op(
    description=(
        "Compares every built day of each metric table with a recomputation from the"
        " normalized tables and rebuilds the days that differ."
    ),
    out=dg.Out(dg.Nothing),
)
def compare_and_repair_metric_days(
    context: dg.OpExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.AssetMaterialization | dg.Output]:
    audited: dict[str, int] = {}
    rebuilt: dict[str, list[str]] = {}
    for asset_key in METRIC_KEYS:
        name = asset_key.path[-1]
        built = {
            dt.date.fromisoformat(key)
            for key in context.instance.get_materialized_partitions(asset_key)
        }
        differing = audit(warehouse, name, built)
        audited[name] = len(built)
        rebuilt[name] = [day.isoformat() for day in differing]
        if not differing:
            context.log.info(f"{name}: all {len(built)} built days match their inputs")
            continue
        context.log.warning(
            f"{name}: {len(differing)} built day(s) differed from a recomputation and were"
            f" rebuilt: {', '.join(rebuilt[name])}"
        )
        for day in differing:
            yield dg.AssetMaterialization(
                asset_key=asset_key,
                partition=day.isoformat(),
                description="Rebuilt by the daily audit: the stored day differed from its inputs.",
                metadata={"rebuilt_by": "audit"},
            )
    yield dg.Output(
        None,
        metadata={
            "days_audited": dg.MetadataValue.json(audited),
            "days_differing_and_rebuilt": dg.MetadataValue.json(rebuilt),
            "differing_days": dg.MetadataValue.int(sum(len(days) for days in rebuilt.values())),
        },
    )


@dg.job(
    name="audit_metric_days",
    description=(
        "Daily audit: recompute every built metric day from the normalized tables and"
        " rebuild any that differs (a safety net under the changed-days record)."
    ),
)
def audit_job() -> None:
    compare_and_repair_metric_days()


audit_schedule = dg.ScheduleDefinition(
    name="audit_metrics_daily_at_0300_utc",
    job=audit_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
