"""What "up to date" means for each asset, and the checks that watch it.

- Ingest and normalized assets are refreshed every 15 minutes, so they warn after
  30 minutes and fail after an hour without a materialization (a `FreshnessPolicy`
  evaluated by the daemon, plus last-update checks run by the freshness sensor).
- Metric assets are rebuilt daily at 01:00 UTC: yesterday's partition must have been
  built from the complete day by 02:00 UTC. The daemon's `FreshnessPolicy` sees any
  metric materialization since midnight; the partition check below is stricter and
  looks at yesterday's partition itself.

Dagster's `build_time_partition_freshness_checks` expects the partitions definition's
last partition, which with `end_offset=1` is today's (still running) day; so the
metric check is our own, emitting the same metadata so the freshness sensor can
schedule it.
"""

import datetime as dt
import warnings
from collections.abc import Iterable, Sequence

import dagster as dg

# The clock that Dagster's own freshness checks read; tests freeze it with
# dagster._core.test_utils.freeze_time.
from dagster._time import get_current_datetime

from dora_assets.partitions import daily_partitions

INGEST_KEYS = (
    dg.AssetKey("pagerduty_incidents"),
    dg.AssetKey("event_api_events"),
    dg.AssetKey("git_commits"),
)
NORMALIZED_KEYS = (
    dg.AssetKey("dora_deployments"),
    dg.AssetKey("dora_incidents"),
    dg.AssetKey("dora_incident_deployments"),
    dg.AssetKey("dora_deployment_commits"),
)
METRIC_KEYS = (
    dg.AssetKey("dora_change_failure_rate_daily"),
    dg.AssetKey("dora_time_to_restore_daily"),
    dg.AssetKey("dora_change_failures_daily"),
    dg.AssetKey("dora_failed_deployment_recovery_daily"),
    dg.AssetKey("dora_change_lead_time_daily"),
)

REPORT_KEYS = (dg.AssetKey("dora_summary"),)

FREQUENT_UPDATE_FAIL = dt.timedelta(hours=1)
FREQUENT_UPDATE_WARN = dt.timedelta(minutes=30)
METRICS_DEADLINE_HOUR_UTC = 2
METRICS_DEADLINE_CRON = f"0 {METRICS_DEADLINE_HOUR_UTC} * * *"

# Read by dg.build_sensor_for_freshness_checks: the time before which a passing
# check cannot turn overdue, so the sensor need not run it again.
FRESH_UNTIL_METADATA_KEY = "dagster/fresh_until_timestamp"

FREQUENTLY_UPDATED = dg.FreshnessPolicy.time_window(
    fail_window=FREQUENT_UPDATE_FAIL, warn_window=FREQUENT_UPDATE_WARN
)
BUILT_DAILY_BY_DEADLINE = dg.FreshnessPolicy.cron(
    deadline_cron=METRICS_DEADLINE_CRON,
    lower_bound_delta=dt.timedelta(hours=METRICS_DEADLINE_HOUR_UTC),
    timezone="UTC",
)
POLICY_BY_GROUP: dict[str, dg.FreshnessPolicy] = {
    "ingest": FREQUENTLY_UPDATED,
    "normalized": FREQUENTLY_UPDATED,
    "metrics": BUILT_DAILY_BY_DEADLINE,
    "report": BUILT_DAILY_BY_DEADLINE,
}


def attach_freshness_policy(spec: dg.AssetSpec) -> dg.AssetSpec:
    """For `Definitions.map_asset_specs`: the freshness policy of the asset's group."""
    policy = POLICY_BY_GROUP.get(spec.group_name or "")
    if policy is None:
        raise ValueError(
            f"asset {spec.key.to_user_string()} is in group {spec.group_name!r}, which has no"
            f" freshness policy; add the group to POLICY_BY_GROUP in {__name__}"
        )
    return dg.apply_freshness_policy(spec, policy)


# Dagster marks the check factories as superseded by FreshnessPolicy; we attach both:
# the policy drives the daemon's freshness state, the checks give each asset a check
# history on its page and can alert like any other check.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    recently_updated_checks = dg.build_last_update_freshness_checks(
        assets=[*INGEST_KEYS, *NORMALIZED_KEYS], lower_bound_delta=FREQUENT_UPDATE_FAIL
    )


def metrics_deadline_passed_at(now: dt.datetime) -> dt.datetime:
    """The latest 02:00 UTC at or before `now`."""
    now = now.astimezone(dt.UTC)
    deadline = now.replace(hour=METRICS_DEADLINE_HOUR_UTC, minute=0, second=0, microsecond=0)
    return deadline if deadline <= now else deadline - dt.timedelta(days=1)


def partition_due_by(deadline: dt.datetime) -> str:
    """The partition that must be complete at `deadline`: the UTC day before it."""
    return (deadline.date() - dt.timedelta(days=1)).isoformat()


def _latest_materialization_timestamp(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str
) -> float | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    return records[0].timestamp if records else None


def _partition_freshness(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, now: dt.datetime
) -> dg.AssetCheckResult:
    deadline = metrics_deadline_passed_at(now)
    partition = partition_due_by(deadline)
    next_deadline = deadline + dt.timedelta(days=1)
    metadata: dict[str, dg.MetadataValue] = {
        "partition": dg.MetadataValue.text(partition),
        "deadline": dg.MetadataValue.timestamp(deadline),
    }
    if partition < daily_partitions.start.date().isoformat():
        metadata[FRESH_UNTIL_METADATA_KEY] = dg.MetadataValue.timestamp(next_deadline)
        return dg.AssetCheckResult(
            asset_key=asset_key,
            passed=True,
            description=f"No partition is due yet: partitions start after {partition}.",
            metadata=metadata,
        )
    day_ended = dt.datetime.fromisoformat(partition).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    built_at = _latest_materialization_timestamp(instance, asset_key, partition)
    if built_at is not None:
        metadata["last_built"] = dg.MetadataValue.timestamp(built_at)
    if built_at is None:
        description = (
            f"Partition {partition} was never materialized; it was due at"
            f" {deadline:%Y-%m-%d %H:%M} UTC. Check the daily schedule's run, or backfill it."
        )
    elif built_at < day_ended.timestamp():
        description = (
            f"Partition {partition} was last built before the day ended, from partial data;"
            f" a rebuild was due at {deadline:%Y-%m-%d %H:%M} UTC. Check the daily schedule's run."
        )
    else:
        metadata[FRESH_UNTIL_METADATA_KEY] = dg.MetadataValue.timestamp(next_deadline)
        return dg.AssetCheckResult(
            asset_key=asset_key,
            passed=True,
            description=f"Partition {partition} was built after its day ended.",
            metadata=metadata,
        )
    return dg.AssetCheckResult(
        asset_key=asset_key, passed=False, description=description, metadata=metadata
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "yesterday_built_by_deadline",
            asset=key,
            description=(
                "Yesterday's partition was built from the complete day by"
                f" {METRICS_DEADLINE_HOUR_UTC:02d}:00 UTC."
            ),
        )
        for key in METRIC_KEYS
    ],
    can_subset=True,
)
def yesterday_built_by_deadline(
    context: dg.AssetCheckExecutionContext,
) -> Iterable[dg.AssetCheckResult]:
    now = get_current_datetime()
    for check_key in sorted(context.selected_asset_check_keys, key=str):
        yield _partition_freshness(context.instance, check_key.asset_key, now)


freshness_checks: Sequence[dg.AssetChecksDefinition] = [
    *recently_updated_checks,
    yesterday_built_by_deadline,
]
