"""What a normalized refresh tells the Dagster UI: the table, and what this run changed."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse import reading
from dora_assets.metadata import column_schema, markdown_table
from dora_assets.normalized.changes import Applied

PREVIEW_COLUMNS = 8


def refresh_result(
    engine: sa.Engine,
    table: sa.Table,
    applied: Applied,
    extra: Mapping[str, Any] | None = None,
    check_results: list[dg.AssetCheckResult] | None = None,
) -> dg.MaterializeResult:
    """Row count, schema, the run's inserts/updates/deletes and the metric days they
    touched, and a preview of the rows it wrote (the table itself may be very large)."""
    with reading(engine) as connection:
        row_count = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    columns = [column.name for column in table.columns][:PREVIEW_COLUMNS]
    preview = (
        markdown_table(columns, [[row[name] for name in columns] for row in applied.preview])
        if applied.preview
        else "_No row changed in this run._"
    )
    days = sorted({day for _, day in applied.metric_days})
    return dg.MaterializeResult(
        asset_key=table.name,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(row_count),
            "dagster/column_schema": column_schema(table),
            "landing_rows_read": dg.MetadataValue.int(applied.keys_read),
            "rows_inserted": dg.MetadataValue.int(applied.inserted),
            "rows_updated": dg.MetadataValue.int(applied.updated),
            "rows_deleted": dg.MetadataValue.int(applied.deleted),
            "metric_days_marked_changed": dg.MetadataValue.int(len(applied.metric_days)),
            "changed_days": dg.MetadataValue.text(
                f"{days[0]}...{days[-1]} ({len(days)} days)" if days else "none"
            ),
            "preview": dg.MetadataValue.md(f"Rows written by this run:\n\n{preview}"),
            **(extra or {}),
        },
        check_results=check_results or [],
    )
