"""The warehouse: table metadata, engines and migrations."""

from __future__ import annotations

import sqlalchemy as sa

from connectors.warehouse.engine import WriteTurns, create_engine, is_sqlite, reading
from connectors.warehouse.migrate import upgrade


def open_warehouse(url: str | None = None, **engine_kwargs: object) -> sa.Engine:
    """An engine on the warehouse with its schema migrated to the newest revision."""
    engine = create_engine(url, **engine_kwargs)
    upgrade(engine)
    return engine


__all__ = ["WriteTurns", "create_engine", "is_sqlite", "open_warehouse", "reading", "upgrade"]
