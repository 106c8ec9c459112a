"""Sensors: rebuild metric days whose inputs changed, and evaluate freshness checks."""

import datetime as dt
import hashlib
import json
import warnings

import dagster as dg

from connectors.warehouse import reading
from dora_assets import changed_days
from dora_assets.freshness import METRIC_KEYS, freshness_checks
from dora_assets.metrics.rebuild import STALE_DAYS_TAG
from dora_assets.partitions import daily_partitions
from dora_assets.resources import WarehouseResource
from dora_assets.schedules import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

LATE_DATA_INTERVAL_SECONDS = 300

late_data_job = dg.define_asset_job(
    "rebuild_stale_metric_days",
    selection=dg.AssetSelection.assets(*METRIC_KEYS),
    description="Rebuild the metric days whose inputs changed after they were built.",
)


def _built_days(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> set[dt.date]:
    return {dt.date.fromisoformat(key) for key in instance.get_materialized_partitions(asset_key)}


def _latest_build_storage_id(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> int:
    records = instance.fetch_materializations(asset_key, limit=1).records
    return records[0].storage_id if records else 0


def find_stale_days(instance: dg.DagsterInstance, warehouse: WarehouseResource) -> set[dt.date]:
    """Built metric days that the changed-days record lists (read from a small table, so
    the cost follows what changed, not the history)."""
    first_day = daily_partitions.start.date()
    end_day = dt.date.fromisoformat(daily_partitions.get_last_partition_key()) + dt.timedelta(
        days=1
    )
    with reading(warehouse.engine) as connection:
        pending = changed_days.pending(
            connection, [key.path[-1] for key in METRIC_KEYS], first_day, end_day
        )
    stale: set[dt.date] = set()
    for asset_key in METRIC_KEYS:
        recorded = pending[asset_key.path[-1]]
        if recorded:
            stale |= recorded & _built_days(instance, asset_key)
    return stale


def _request_key(instance: dg.DagsterInstance, days: list[dt.date]) -> str:
    """Identifies "these days are stale after these builds".

    While the requested run is in flight nothing it depends on changes, so the key
    repeats and no second run is requested. Once any metric build lands, the key
    changes: days still stale then (data that arrived mid-run, or a failed run
    followed by another build) are requested again.
    """
    state = {
        "days": [day.isoformat() for day in days],
        "builds": [_latest_build_storage_id(instance, key) for key in METRIC_KEYS],
    }
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:16]


@dg.sensor(
    name="late_data_sensor",
    job=late_data_job,
    minimum_interval_seconds=LATE_DATA_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reads the changed-days record that every change to dora_deployments and"
        " dora_incidents writes (late, backfilled, resolved or retracted events) and"
        " rebuilds those built metric days in one run; the run clears what it rebuilt."
    ),
)
def late_data_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.RunRequest | dg.SkipReason:
    days = sorted(find_stale_days(context.instance, warehouse))
    if not days:
        return dg.SkipReason("no built metric day has changed inputs")
    run_key = _request_key(context.instance, days)
    listed = ", ".join(day.isoformat() for day in days)
    if run_key == context.cursor:
        return dg.SkipReason(f"a rebuild of {listed} was already requested; waiting for it")
    context.update_cursor(run_key)
    context.log.info(f"rebuilding {len(days)} stale metric day(s): {listed}")
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=list(METRIC_KEYS),
        tags={
            PARTITION_RANGE_START_TAG: days[0].isoformat(),
            PARTITION_RANGE_END_TAG: days[-1].isoformat(),
            STALE_DAYS_TAG: ",".join(day.isoformat() for day in days),
        },
    )


# Superseded by FreshnessPolicy in Dagster's eyes; we keep the checks (see freshness.py)
# and this sensor is what evaluates them.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )

sensors = [late_data_sensor, freshness_checks_sensor]
