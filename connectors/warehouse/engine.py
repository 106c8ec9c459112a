"""Engines that behave the same on the embedded SQLite default and on PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from connectors import settings

# Marks a connection whose transactions only read (see `reading`).
_READ_ONLY = "dora_read_only"
# Seconds a connection's write transactions wait for the lock (see `begin_if_free`).
_LOCK_WAIT_S = "dora_lock_wait_s"
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
        if is_read_only(connection):
            connection.exec_driver_sql("BEGIN")
        else:
            wait_s = connection.get_execution_options().get(
                _LOCK_WAIT_S, SQLITE_BUSY_TIMEOUT_MS / 1000
            )
            _begin_immediate(connection, wait_s)


# SQLite's own busy handler sleeps longer the longer a writer has waited (see
# `WRITERS_PAUSE_MIN_S`): a writer that waited 20 ms for a batch job's write can sleep on
# 15 ms after the lock is free. Polling every millisecond takes the lock about a
# millisecond after its release (an API write waiting out 20 ms job writes: p99 35 ms ->
# 23 ms in a two-process experiment; in `bench/steady_state.py --quick` the API's p99
# during the refresh went from ~1.3-1.8x the refresh's longest write to ~0.9-1.3x).
LOCK_POLL_S = 0.001


def _begin_immediate(connection: sa.Connection, wait_s: float) -> None:
    """BEGIN IMMEDIATE, polling for the write lock up to `wait_s` (0: one try)."""
    driver = connection.connection.driver_connection
    deadline = time.monotonic() + wait_s
    _pragma(connection, "busy_timeout=0")
    try:
        while time.monotonic() < deadline:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    break
            time.sleep(LOCK_POLL_S)
        # Out of time, or another error: SQLAlchemy raises it as for any statement (the
        # event API answers a busy warehouse with 503).
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        _pragma(connection, f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


class LockHeld(Exception):
    """Another connection holds SQLite's write lock (see `begin_if_free`)."""


@contextmanager
def begin_if_free(engine: sa.Engine) -> Iterator[sa.Connection]:
    """`engine.begin()`, except that on SQLite it raises `LockHeld` at once, without
    waiting, when another connection holds the write lock."""
    if not is_sqlite(engine):
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect() as connection:
        try:
            transaction = connection.execution_options(**{_LOCK_WAIT_S: 0}).begin()
        except sa.exc.OperationalError as error:
            if getattr(error.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise LockHeld from error
            raise
        with transaction:
            yield connection


def is_read_only(connection: sa.Connection) -> bool:
    """Whether `connection` came from `reading` (on SQLite: takes no write lock)."""
    return bool(connection.get_execution_options().get(_READ_ONLY, False))


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


# SQLite admits one writer at a time: a batch job that commits and takes the lock again
# at once can keep a waiting writer (an API request) out for as long as the job runs. So
# after a write of t seconds a job pauses t/2, at least 25 ms and at most 100 ms. Our own
# writers poll the lock every millisecond (`_begin_immediate`) and take it early in the
# pause; a writer in another program waits in SQLite's busy handler, which polls with
# growing sleeps (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, then 100 ms, each at most
# about half the time waited so far), and the 25 ms minimum leaves it a chance too.
WRITERS_PAUSE_MIN_S = 0.025
WRITERS_PAUSE_MAX_S = 0.1


class WriteTurns:
    """The write transactions of a long job. On SQLite each one begins only once a pause
    (see `WRITERS_PAUSE_MIN_S`) has passed since the previous one committed, so writers
    waiting for the lock get it in between; what the job does meanwhile without the lock
    (reading, classifying, checkpointing) counts toward the pause.

    On SQLite they also commit with `synchronous=NORMAL`: no fsync of the write-ahead
    log per commit (the API keeps FULL, so an acknowledged event is on disk). A job's
    commit lost to a power cut leaves the database consistent and its work undone, with
    its watermark or record entries, so the next run does it again."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.last_write_s = 0.0
        self._lock_free_until = 0.0

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        sqlite = is_sqlite(self.engine)
        if sqlite:
            time.sleep(max(0.0, self._lock_free_until - time.perf_counter()))
        started = time.perf_counter()
        with self.engine.connect() as connection:
            if not sqlite:
                with connection.begin():
                    yield connection
            else:
                with unsynced(connection):
                    with connection.begin():
                        yield connection
                    # Copy the job's pages into the database file now, outside the lock,
                    # so the checkpoint SQLite runs every 1,000 log pages never falls to
                    # an API commit.
                    _pragma(connection, "wal_checkpoint(PASSIVE)")
        committed = time.perf_counter()
        self.last_write_s = committed - started
        pause = min(max(self.last_write_s / 2, WRITERS_PAUSE_MIN_S), WRITERS_PAUSE_MAX_S)
        self._lock_free_until = committed + pause


@contextmanager
def unsynced(connection: sa.Connection) -> Iterator[None]:
    """`synchronous=NORMAL` inside (commits not fsynced); FULL again before the connection
    returns to the pool."""
    _pragma(connection, "synchronous=NORMAL")
    try:
        yield
    finally:
        _pragma(connection, "synchronous=FULL")


def _pragma(connection: sa.Connection, pragma: str) -> None:
    # On the driver's connection: outside a transaction (SQLAlchemy would begin one).
    connection.connection.driver_connection.execute(f"PRAGMA {pragma}")
