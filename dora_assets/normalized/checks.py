"""Integrity checks shared by the normalized tables, run beside the asset that builds each.

They are blocking: a metric built on duplicated, backwards or anonymous rows would be
wrong in a way no consumer could see, so a failure stops the metric assets downstream.
"""

import datetime as dt
from collections.abc import Iterable, Sequence

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse import reading
from dora_assets.metadata import markdown_table
from dora_assets.resources import WarehouseResource

# Senders' clocks drift; an event a few minutes ahead of ours is not an error.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
SAMPLE_ROWS = 5


def offenders_result(
    check_name: str,
    asset_key: dg.AssetKey,
    connection: sa.Connection,
    offenders: sa.Select,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    count = connection.execute(
        sa.select(sa.func.count()).select_from(offenders.subquery())
    ).scalar_one()
    metadata: dict[str, object] = {"offending_rows": dg.MetadataValue.int(count)}
    if count:
        sample = connection.execute(offenders.limit(SAMPLE_ROWS))
        metadata["sample"] = dg.MetadataValue.md(
            markdown_table(list(sample.keys()), sample.fetchall())
        )
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=count == 0,
        severity=severity,
        metadata=metadata,
    )


def integrity_checks(
    table: sa.Table, key_columns: Sequence[str], timestamp_columns: Iterable[str]
) -> dg.AssetChecksDefinition:
    """Unique keys, `finished_at >= started_at`, no future timestamps, and never both
    `service` and `team` empty."""
    asset_key = dg.AssetKey(table.name)
    keys = [table.c[name] for name in key_columns]
    timestamps = [table.c[name] for name in timestamp_columns]
    specs = [
        dg.AssetCheckSpec(
            "unique_keys",
            asset=asset_key,
            blocking=True,
            description=f"No two rows share ({', '.join(key_columns)}).",
        ),
        dg.AssetCheckSpec(
            "finished_not_before_started",
            asset=asset_key,
            blocking=True,
            description="`finished_at >= started_at` on every row that has a `finished_at`.",
        ),
        dg.AssetCheckSpec(
            "no_future_timestamps",
            asset=asset_key,
            blocking=False,
            description=(
                f"No {', '.join(timestamp_columns)} later than now"
                f" (plus {FUTURE_TOLERANCE.seconds // 60} minutes of clock skew). Warns."
            ),
        ),
        dg.AssetCheckSpec(
            "service_or_team_present",
            asset=asset_key,
            blocking=True,
            description="No row has both `service` and `team` empty: it could not be attributed.",
        ),
    ]

    @dg.multi_asset_check(specs=specs, name=f"{table.name}_integrity")
    def _checks(warehouse: WarehouseResource) -> Iterable[dg.AssetCheckResult]:
        latest_allowed = dt.datetime.now(dt.UTC).replace(tzinfo=None) + FUTURE_TOLERANCE
        with reading(warehouse.engine) as connection:
            yield offenders_result(
                "unique_keys",
                asset_key,
                connection,
                sa.select(*keys, sa.func.count().label("copies"))
                .group_by(*keys)
                .having(sa.func.count() > 1),
            )
            yield offenders_result(
                "finished_not_before_started",
                asset_key,
                connection,
                sa.select(*keys, table.c.started_at, table.c.finished_at).where(
                    table.c.finished_at < table.c.started_at
                ),
            )
            yield offenders_result(
                "no_future_timestamps",
                asset_key,
                connection,
                sa.select(*keys, *timestamps).where(
                    sa.or_(*(column > latest_allowed for column in timestamps))
                ),
                severity=dg.AssetCheckSeverity.WARN,
            )
            yield offenders_result(
                "service_or_team_present",
                asset_key,
                connection,
                sa.select(*keys, table.c.service, table.c.team).where(
                    table.c.service == "", table.c.team == ""
                ),
            )

    return _checks
