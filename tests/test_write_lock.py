"""Waiting for SQLite's one write lock: taken soon after it is released, given up after
the busy timeout with the error the event API answers 503 to, and nothing half-written."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from api_support import count_rows, deployment, live_api

from connectors.warehouse import engine as warehouse_engine
from connectors.warehouse import open_warehouse
from connectors.warehouse.schema import api_deployments

DEPLOYMENT = "/api/v2/dora/deployment"


@contextmanager
def lock_held(path: Path, release_after_s: float | None = None) -> Iterator[None]:
    """Another connection holds the write lock: until the block ends, or for
    `release_after_s` in a thread."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(release_after_s, holder.rollback) if release_after_s else None
    if release:
        release.start()
    try:
        yield
    finally:
        if release:
            release.join()
        else:
            holder.rollback()
        holder.close()


@pytest.fixture
def warehouse_file(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.db"
    open_warehouse(f"sqlite:///{path}").dispose()
    return path


@pytest.fixture
def engine(warehouse_file: Path) -> Iterator[sa.Engine]:
    engine = open_warehouse(f"sqlite:///{warehouse_file}")
    yield engine
    engine.dispose()


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """Seconds a writer now waits for the lock before giving up."""
    monkeypatch.setattr(warehouse_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    return 0.3


def test_a_writer_takes_the_lock_once_it_is_released(
    warehouse_file: Path, engine: sa.Engine
) -> None:
    with lock_held(warehouse_file, release_after_s=0.3):
        started = time.monotonic()
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE waited (n INTEGER)")
        waited = time.monotonic() - started
    assert waited >= 0.25  # it did wait for the holder
    with engine.connect() as connection:
        # The connection's busy timeout is back for the statements of later transactions.
        busy_timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert busy_timeout == warehouse_engine.SQLITE_BUSY_TIMEOUT_MS


def test_a_writer_gives_up_after_the_busy_timeout(
    warehouse_file: Path, short_busy_timeout: float, engine: sa.Engine
) -> None:
    with lock_held(warehouse_file):
        started = time.monotonic()
        with (
            pytest.raises(sa.exc.OperationalError, match="locked"),
            engine.begin() as connection,
        ):
            connection.exec_driver_sql("CREATE TABLE never (n INTEGER)")
        assert time.monotonic() - started >= short_busy_timeout
    assert "never" not in sa.inspect(engine).get_table_names()


def test_the_api_answers_503_when_the_warehouse_stays_locked_and_202_once_free(
    warehouse_file: Path, short_busy_timeout: float, engine: sa.Engine
) -> None:
    with live_api(engine) as client:
        with lock_held(warehouse_file):
            refused = client.post(DEPLOYMENT, json=deployment(id="while-locked"))
        accepted = client.post(DEPLOYMENT, json=deployment(id="once-free"))
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert accepted.status_code == 202
    assert count_rows(engine, api_deployments) == 1
