"""Alembic migrations, applied automatically when a connector or asset opens the warehouse."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def is_current(engine: sa.Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def upgrade(engine: sa.Engine) -> None:
    """Bring the warehouse schema to the newest revision (a no-op when it is current)."""
    if not is_current(engine):
        command.upgrade(alembic_config(engine), "head")
