"""Engines that behave the same on the embedded SQLite default and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from connectors import settings

# Marks a connection whose transactions only read (see `reading`).
_READ_ONLY = "dora_read_only"
# Long enough for an API write to wait out a Dagster partition rewrite.
SQLITE_BUSY_TIMEOUT_MS = 60_000


def normalize_url(url: str) -> sa.URL:
    """Parse a warehouse URL; plain `postgresql://` uses psycopg 3, SQLite folders are created."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return parsed


def _configure_sqlite(engine: sa.Engine) -> None:
    # pysqlite's own transaction handling starts transactions lazily (DEFERRED), so two
    # writers can deadlock upgrading their locks and fail at once with "database is
    # locked" regardless of the busy timeout. Owning BEGIN and making it IMMEDIATE turns
    # that into an orderly wait.
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # FULL: a commit is on disk (WAL fsynced) before we acknowledge an event.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        deferred = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


@contextmanager
def reading(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for reads only. On SQLite its transaction begins DEFERRED: in WAL mode
    it reads a snapshot without taking (or waiting for) the write lock, so a long query
    (an audit, a check over a large table) never holds up the API's writes."""
    with engine.connect() as connection:
        yield connection.execution_options(**{_READ_ONLY: True})


def create_engine(url: str | None = None, **kwargs: object) -> sa.Engine:
    """An engine for `url` (default: `DORA_WAREHOUSE_URL`, else the embedded SQLite file)."""
    parsed = normalize_url(url or settings.warehouse_url())
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kwargs)


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


# SQLite admits one writer at a time, and a writer waiting for the lock (an API request)
# polls it with growing sleeps, up to 100 ms: a batch job that commits and takes the lock
# again at once can keep it out for as long as the job runs, and a shorter pause than
# that sleep can pass unseen, so the writer waits out two transactions.
WRITERS_PAUSE_MAX_S = 0.1


class WriteTurns:
    """The write transactions of a long job. On SQLite each one begins only once a pause as
    long as the job's previous one took (at most 100 ms) has passed since that one
    committed, so writers waiting for the lock get it in between; what the job does
    meanwhile without the lock (reading, classifying) counts toward the pause."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.last_write_s = 0.0
        self._lock_free_until = 0.0

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        if is_sqlite(self.engine):
            time.sleep(max(0.0, self._lock_free_until - time.perf_counter()))
        started = time.perf_counter()
        with self.engine.begin() as connection:
            yield connection
        committed = time.perf_counter()
        self.last_write_s = committed - started
        self._lock_free_until = committed + min(self.last_write_s, WRITERS_PAUSE_MAX_S)
