"""Named state of incremental readers (watermarks, applied settings) in `ingest_state`."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from connectors.timestamps import utcnow
from connectors.warehouse.schema import ingest_state
from connectors.warehouse.upsert import insert


def lock_state(connection: sa.Connection, name: str) -> str | None:
    """The state `name` (None before it was first saved), its row locked until the
    transaction ends.

    The row lock serializes concurrent readers on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already does), so an older snapshot never overwrites what a newer one wrote.
    """
    connection.execute(
        insert(ingest_state, connection.dialect)
        .values(name=name, value="", updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=[ingest_state.c.name])
    )
    value = connection.execute(
        sa.select(ingest_state.c.value).where(ingest_state.c.name == name).with_for_update()
    ).scalar_one()
    return value or None


def read_state(connection: sa.Connection, name: str) -> str | None:
    """The state `name` as last committed, without locking it."""
    value = connection.execute(
        sa.select(ingest_state.c.value).where(ingest_state.c.name == name)
    ).scalar_one_or_none()
    return value or None


def save_state(connection: sa.Connection, name: str, value: str) -> None:
    """Replace the state `name` (locked by `lock_state` in this transaction) with `value`."""
    connection.execute(
        ingest_state.update()
        .where(ingest_state.c.name == name)
        .values(value=value, updated_at=utcnow())
    )


def lock_watermark(connection: sa.Connection, name: str) -> datetime | None:
    """The watermark `name`, locked as `lock_state` locks state."""
    value = lock_state(connection, name)
    return datetime.fromisoformat(value) if value else None


def read_watermark(connection: sa.Connection, name: str) -> datetime | None:
    """The watermark `name` as last committed, without locking it."""
    value = read_state(connection, name)
    return datetime.fromisoformat(value) if value else None


def save_watermark(connection: sa.Connection, name: str, value: datetime) -> None:
    save_state(connection, name, value.isoformat())
