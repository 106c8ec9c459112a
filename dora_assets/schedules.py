"""Schedules: the 15-minute source refresh and the 01:00 UTC metrics run.

Both run by default. When `PAGERDUTY_API_TOKEN` is not set in the code location's
environment, they leave `pagerduty_incidents` out of their runs instead of failing
every run (and skipping everything downstream of it): the other sources still flow.
"""

import datetime as dt
import os

import dagster as dg

from dora_assets.freshness import INGEST_KEYS, METRIC_KEYS, NORMALIZED_KEYS, REPORT_KEYS
from dora_assets.partitions import daily_partitions
from dora_assets.resources import PAGERDUTY_TOKEN_VARIABLE

PAGERDUTY_KEY = dg.AssetKey("pagerduty_incidents")
REFRESH_INTERVAL = dt.timedelta(minutes=15)
# Yesterday plus this many days before it are rebuilt every night, folding in late data
# that the late-data sensor would otherwise pick up one day at a time.
TRAILING_RERUN_DAYS = 7
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

sources_job = dg.define_asset_job(
    "refresh_sources",
    selection=dg.AssetSelection.assets(*INGEST_KEYS, *NORMALIZED_KEYS),
    description="Pull PagerDuty, take up what the event API landed, rebuild the normalized tables.",
)
daily_job = dg.define_asset_job(
    "daily_metrics",
    selection=dg.AssetSelection.assets(*INGEST_KEYS, *NORMALIZED_KEYS, *METRIC_KEYS, *REPORT_KEYS),
    description=(
        "Refresh the sources, rebuild the metric partitions of the trailing days, then the"
        " DORA summary and report."
    ),
)


def pagerduty_configured() -> bool:
    return bool(os.environ.get(PAGERDUTY_TOKEN_VARIABLE))


def source_keys() -> list[dg.AssetKey]:
    """The ingest assets a scheduled run can refresh in this environment."""
    return [key for key in INGEST_KEYS if key != PAGERDUTY_KEY or pagerduty_configured()]


def _utc_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(dt.UTC).date()


def _first_partition_day() -> dt.date:
    return _utc_day(daily_partitions.start)


@dg.schedule(
    name="refresh_sources_every_15_minutes",
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    job=sources_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def refresh_sources_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Pull the PagerDuty partition of the day the last 15 minutes fell in.

    At 00:00 that is the day just ended, so incidents created in its last minutes are
    not left to the nightly run. The PagerDuty asset also re-reads incidents still open.
    """
    if not pagerduty_configured():
        context.log.info(f"{PAGERDUTY_TOKEN_VARIABLE} is not set: skipping the PagerDuty pull")
    day = _utc_day(context.scheduled_execution_time - REFRESH_INTERVAL)
    return dg.RunRequest(
        asset_selection=[*source_keys(), *NORMALIZED_KEYS],
        partition_key=max(day, _first_partition_day()).isoformat(),
    )


@dg.schedule(
    name="daily_metrics_at_0100_utc",
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    job=daily_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_metrics_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Yesterday's metrics plus a rebuild of the 7 days before it, as one partition-range run."""
    yesterday = _utc_day(context.scheduled_execution_time) - dt.timedelta(days=1)
    first_day = _first_partition_day()
    if yesterday < first_day:
        return dg.SkipReason(f"partitions start on {first_day}; nothing to build yet")
    start = max(yesterday - dt.timedelta(days=TRAILING_RERUN_DAYS), first_day)
    return dg.RunRequest(
        asset_selection=[*source_keys(), *NORMALIZED_KEYS, *METRIC_KEYS, *REPORT_KEYS],
        tags={
            PARTITION_RANGE_START_TAG: start.isoformat(),
            PARTITION_RANGE_END_TAG: yesterday.isoformat(),
        },
    )


schedules = [refresh_sources_schedule, daily_metrics_schedule]
