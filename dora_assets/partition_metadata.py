"""Per-partition metadata for ranged runs, so the asset page can plot a day's figures.

A single-run backfill returns once for the whole range; Dagster then emits one
materialization event per partition, merging the result's metadata with whatever was
attached with `context.add_asset_metadata(..., partition_key=...)` for that
partition (attaching costs about 0.15 ms a partition, measured over 365). Storing
each event is Dagster's own cost and grows with its metadata, so the bulky
range-wide metadata (column schema, preview) rides on the range's last partition
only (the one the asset page shows as latest) instead of being copied into every
day's event.
"""

import datetime as dt
from collections.abc import Mapping
from typing import Any

import dagster as dg

DailyFigures = Mapping[dt.date, Mapping[str, float | int | None]]


def attach_partition_metadata(
    context: dg.AssetExecutionContext, figures_by_day: DailyFigures, range_wide: Mapping[str, Any]
) -> dg.MaterializeResult:
    """Attach each day's figures to its partition (None figures, undefined, are left out)
    and `range_wide` to the last one, where the day's own figures (its row count) win.
    The returned result, which every partition shares, names the range."""
    keys = context.partition_keys
    for key in keys:
        figures = figures_by_day.get(dt.date.fromisoformat(key), {})
        metadata = {name: value for name, value in figures.items() if value is not None}
        metadata.setdefault("dagster/row_count", 0)
        if key == keys[-1]:
            metadata = {**range_wide, **metadata}
        context.add_asset_metadata(metadata, partition_key=key)
    return dg.MaterializeResult(
        metadata={"partition_range": dg.MetadataValue.text(f"{keys[0]}...{keys[-1]}")}
    )
