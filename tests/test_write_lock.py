"""SQLite's one write lock: a writer takes it soon after it is released, gives up after
the busy timeout with the error the event API answers 503 to, and leaves nothing
half-written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from api_support import deployment, landed, live_api
from lock_support import lock_held

from connectors.warehouse import engine as warehouse_engine

DEPLOYMENT = "/api/v2/dora/deployment"


def test_a_writer_takes_the_lock_once_it_is_released(
    warehouse_file: Path, sqlite_warehouse: sa.Engine
) -> None:
    with lock_held(warehouse_file, release_after_s=0.3):
        started = time.monotonic()
        with sqlite_warehouse.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE waited (n INTEGER)")
        waited = time.monotonic() - started
    assert waited >= 0.25  # it did wait for the holder
    with sqlite_warehouse.connect() as connection:
        # The connection's busy timeout is back for the statements of later transactions.
        busy_timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert busy_timeout == warehouse_engine.SQLITE_BUSY_TIMEOUT_MS


def test_a_writer_gives_up_after_the_busy_timeout(
    warehouse_file: Path, short_busy_timeout: float, sqlite_warehouse: sa.Engine
) -> None:
    with lock_held(warehouse_file):
        started = time.monotonic()
        with (
            pytest.raises(sa.exc.OperationalError, match="locked"),
            sqlite_warehouse.begin() as connection,
        ):
            connection.exec_driver_sql("CREATE TABLE never (n INTEGER)")
        assert time.monotonic() - started >= short_busy_timeout
    assert "never" not in sa.inspect(sqlite_warehouse).get_table_names()


def test_the_api_answers_503_to_a_retraction_while_the_warehouse_stays_locked(
    warehouse_file: Path, short_busy_timeout: float, sqlite_warehouse: sa.Engine
) -> None:
    with live_api(sqlite_warehouse) as client:
        assert client.post(DEPLOYMENT, json=deployment(id="kept")).status_code == 202
        with lock_held(warehouse_file):
            # A retraction answers from what is stored (404 when unknown): it waits.
            refused = client.delete(f"{DEPLOYMENT}/kept")
        accepted = client.delete(f"{DEPLOYMENT}/kept")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert accepted.status_code == 202
    assert landed(sqlite_warehouse) == {"kept": "deleted"}
