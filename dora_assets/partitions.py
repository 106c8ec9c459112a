"""The one partitioning of the code location: UTC days from `DORA_START_DATE`.

`end_offset=1` makes today's partition exist, so the 15-minute PagerDuty pull can
land incidents created today. The start date is read once, when the code location
loads, so the partition set is static for the life of a deployment.
"""

import datetime as dt

import dagster as dg

from connectors import settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=settings.start_date(), timezone="UTC", end_offset=1
)


def day_range(keys: dg.PartitionKeyRange) -> tuple[dt.date, dt.date]:
    """The UTC days `[first, end)` that a range of daily partition keys covers."""
    return dt.date.fromisoformat(keys.start), dt.date.fromisoformat(keys.end) + dt.timedelta(days=1)


def days_between(first: dt.date, end: dt.date) -> list[dt.date]:
    """The days `[first, end)`."""
    return [first + dt.timedelta(days=n) for n in range((end - first).days)]
