"""INSERT ... ON CONFLICT, which both warehouse dialects speak (each in its own SQLAlchemy form)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

_DIALECT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def supports_upsert(dialect: sa.Dialect) -> bool:
    return dialect.name in _DIALECT_INSERTS


def insert(table: sa.Table, dialect: sa.Dialect) -> sqlite.Insert | postgresql.Insert:
    """An INSERT into `table` that takes `on_conflict_do_update` / `on_conflict_do_nothing`."""
    dialect_insert = _DIALECT_INSERTS.get(dialect.name)
    if dialect_insert is None:
        raise ValueError(
            f"the warehouse database {dialect.name!r} has no INSERT ... ON CONFLICT here; "
            "point DORA_WAREHOUSE_URL at SQLite or PostgreSQL"
        )
    return dialect_insert(table)


def upsert(
    table: sa.Table,
    dialect: sa.Dialect,
    update: Iterable[str] | None = None,
    rows: sa.Select[Any] | None = None,
) -> sa.Executable:
    """Insert a row or, when its primary key exists, replace its `update` columns (by
    default every column outside the key). Applied row by row in order, so with many rows
    the last one of a key wins, as if they came one by one. With `rows`, the rows are
    those of that SELECT (its columns named as the table's), not parameters, and their
    keys must differ: PostgreSQL updates a row at most once per statement."""
    statement = insert(table, dialect)
    if rows is not None:
        # WHERE: SQLite would read the ON of ON CONFLICT as a join constraint of the
        # SELECT's FROM.
        rows = rows.where(sa.true())
        statement = statement.from_select([column.name for column in rows.selected_columns], rows)
    if update is None:
        update = (column.name for column in table.columns if not column.primary_key)
    return statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={name: statement.excluded[name] for name in update},
    )
