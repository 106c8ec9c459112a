"""Metadata the Dagster UI shows for a warehouse table: schema, row count, a preview."""

from collections.abc import Sequence
from typing import Any

import dagster as dg
import sqlalchemy as sa

from connectors import settings

PREVIEW_ROWS = 10


def column_schema(table: sa.Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=str(column.type).lower(),
                description=column.doc or column.comment,
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable),
                    unique=column.primary_key and len(table.primary_key) == 1,
                ),
            )
            for column in table.columns
        ]
    )


def table_definition_metadata(table: sa.Table) -> dict[str, Any]:
    """Shown on the asset page before the first materialization."""
    return {"dagster/table_name": table.name, "dagster/column_schema": column_schema(table)}


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def table_preview(connection: sa.Connection, query: sa.Select) -> dg.MetadataValue:
    result = connection.execute(query.limit(PREVIEW_ROWS))
    return dg.MetadataValue.md(markdown_table(list(result.keys()), result.fetchall()))


def table_metadata(
    connection: sa.Connection, table: sa.Table, row_count: int, preview: sa.Select
) -> dict[str, Any]:
    """What every materialization of a warehouse table carries."""
    return {
        "dagster/row_count": dg.MetadataValue.int(row_count),
        "dagster/column_schema": column_schema(table),
        "preview": table_preview(connection, preview),
    }


def _warehouse_kind(url: str) -> str:
    backend = sa.make_url(url).get_backend_name()
    return "postgres" if backend == "postgresql" else backend


# Kinds are static, so the warehouse kind is the one DORA_WAREHOUSE_URL names when the
# code location loads (the resource's default).
WAREHOUSE_KIND = _warehouse_kind(settings.warehouse_url())
OWNERS = ["team:platform"]
