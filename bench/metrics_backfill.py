"""A year's single-run backfill of both metric assets, against DuckDB doing the same work.

Builds a warehouse with one year, 200 services, 1,000,000 deployments and 100,000
incidents written straight into `dora_deployments`/`dora_incidents` (bulk load, not
timed), then times, in one process:

- the Dagster backfill: `dg.materialize` of both metric assets and their
  reconciliation checks over all 365 daily partitions as ONE run (partition range
  tags), on SQLite and on PostgreSQL. The Dagster instance is ephemeral (in memory)
  by default; `--dagster-instance temp` uses an on-disk SQLite DAGSTER_HOME in a
  temporary folder, which adds Dagster's own per-event bookkeeping;
  `--dagster-instance postgres` keeps the instance in its own fresh database on the
  PostgreSQL server below (dagster-postgres, the production set-up). Dagster reads
  DAGSTER_EVENT_BATCH_SIZE and DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS from
  the environment, so set them around this script to measure event batching;
- DuckDB computing the same two tables from the same rows read out of the warehouse
  with SQLAlchemy and pandas (what a notebook user would do), per database;
- DuckDB on rows already in memory (the floor);
- the same Dagster backfill over an empty warehouse, per database: Dagster's own
  bookkeeping, about as long as DuckDB's whole path. The target is on what the data
  adds: the backfill minus that run (`data_work_s`) at most 0.6x DuckDB reading the
  same warehouse.

Every timed path runs `--repeat` times (2 by default, 1 with `--quick`) and its fastest
run counts, every run's time printed and kept in the JSON line (`*_runs_s`): on these
machines the same run varies by a third from one try to the next, and the first
Dagster run of a process also pays for warming up. The paths compared with each other
(the empty and full backfills and DuckDB, per database) run in turn, one run of each per
round, so a slow minute of the machine does not fall on one path only. Every path's
tables are compared value by value. It repeats the SQLite backfill at half the rows to
show how cost grows, reads peak RSS (the kernel's high-water mark) and ends with one
JSON line.

PostgreSQL: `--postgres-url` or DORA_TEST_POSTGRES_URL names a server; the bench
creates and drops its own database there.
"""

import argparse
import datetime as dt
import io
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import sqlalchemy as sa

from connectors.warehouse import open_warehouse
from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_deployments,
    dora_incidents,
    dora_time_to_restore_daily,
)
from dora_assets.metrics.change_failure_rate import (
    dora_change_failure_rate_daily_asset,
    dora_change_failure_rate_daily_reconciliation,
)
from dora_assets.metrics.time_to_restore import (
    dora_time_to_restore_daily_asset,
    dora_time_to_restore_daily_reconciliation,
)
from dora_assets.resources import WarehouseResource

YEAR_START = dt.date(2025, 1, 1)
DAYS = 365
YEAR_END = YEAR_START + dt.timedelta(days=DAYS)
SERVICES = 200
TEAMS = 20
LOAD_CHUNK = 100_000
KEY = ["day", "service", "team", "env"]
METRIC_RUN = [
    dora_change_failure_rate_daily_asset,
    dora_time_to_restore_daily_asset,
    dora_change_failure_rate_daily_reconciliation,
    dora_time_to_restore_daily_reconciliation,
]
# The restated target: the backfill's work on the data (the run minus the same run over
# an empty warehouse) at most this fraction of DuckDB reading the warehouse. Dagster's
# per-partition bookkeeping alone costs about as much as DuckDB's whole path, so the
# original "no slower than DuckDB" could not be met by any warehouse work.
DATA_WORK_TARGET = 0.6
RANGE_TAGS = {
    "dagster/asset_partition_range_start": YEAR_START.isoformat(),
    "dagster/asset_partition_range_end": (YEAR_END - dt.timedelta(days=1)).isoformat(),
}


# --- data -------------------------------------------------------------------------------


@dataclass
class Dataset:
    deployments: pd.DataFrame  # service, team, env, started_at, finished_at, finished_day
    incidents: pd.DataFrame  # + status, started_day; finished_* NaT when open


def _keys(rng: np.random.Generator, count: int) -> dict[str, pd.Categorical]:
    service = rng.integers(0, SERVICES, count)
    names = np.array([f"svc-{n:03d}" for n in range(SERVICES)])
    teams = np.array([f"team-{n % TEAMS:02d}" for n in range(SERVICES)])
    env = np.where(rng.random(count) < 0.85, "prod", "staging")
    return {
        "service": pd.Categorical(names[service]),
        "team": pd.Categorical(teams[service]),
        "env": pd.Categorical(env),
    }


def _moments(rng: np.random.Generator, count: int) -> np.ndarray:
    seconds = rng.integers(0, DAYS * 86_400, count)
    return np.datetime64(YEAR_START.isoformat(), "s") + seconds.astype("timedelta64[s]")


def generate(deployments: int, incidents: int, seed: int = 7) -> Dataset:
    """Whole-second timestamps, so every database measures durations identically."""
    rng = np.random.default_rng(seed)
    finished = _moments(rng, deployments)
    deployed = pd.DataFrame(
        {
            **_keys(rng, deployments),
            "started_at": finished - rng.integers(60, 1_800, deployments).astype("timedelta64[s]"),
            "finished_at": finished,
        }
    )
    started = _moments(rng, incidents)
    resolved = rng.random(incidents) < 0.9
    duration = np.clip(rng.lognormal(8.0, 1.5, incidents), 60, 14 * 86_400).astype("int64")
    restored = np.where(resolved, started + duration.astype("timedelta64[s]"), np.datetime64("NaT"))
    incident_frame = pd.DataFrame(
        {
            **_keys(rng, incidents),
            "status": np.where(resolved, "resolved", "open"),
            "started_at": started,
            "finished_at": restored,
        }
    )
    for frame, column in (
        (deployed, "finished"),
        (incident_frame, "started"),
        (incident_frame, "finished"),
    ):
        frame[f"{column}_day"] = frame[f"{column}_at"].dt.floor("D")
    return Dataset(deployed, incident_frame)


def _text(moments: pd.Series) -> np.ndarray:
    """SQLAlchemy's SQLite DateTime text: `YYYY-MM-DD HH:MM:SS.ffffff`."""
    text = np.datetime_as_string(moments.to_numpy("datetime64[us]"), unit="us")
    text = np.char.replace(text, "T", " ")
    return np.where(moments.isna().to_numpy(), None, text)


def _day_text(days: pd.Series) -> np.ndarray:
    text = np.datetime_as_string(days.to_numpy("datetime64[D]"), unit="D")
    return np.where(days.isna().to_numpy(), None, text)


def _chunks(frame: pd.DataFrame) -> Iterator[tuple[int, pd.DataFrame]]:
    for start in range(0, len(frame), LOAD_CHUNK):
        yield start, frame.iloc[start : start + LOAD_CHUNK]


def _ids(prefix: str, start: int, part: pd.DataFrame) -> list[str]:
    return [f"{prefix}{n}" for n in range(start, start + len(part))]


def _event_columns(part: pd.DataFrame) -> dict[str, Any]:
    """The columns deployments and incidents share."""
    return {
        "service": part["service"].astype(str).to_numpy(),
        "team": part["team"].astype(str).to_numpy(),
        "env": part["env"].astype(str).to_numpy(),
        "started_at": _text(part["started_at"]),
        "finished_at": _text(part["finished_at"]),
        "source": "api",
        "ingested_at": "2026-01-01 00:00:00.000000",
    }


def warehouse_chunks(data: Dataset) -> Iterator[tuple[sa.Table, pd.DataFrame]]:
    """The rows as the warehouse stores them, a chunk at a time (memory stays flat)."""
    for start, part in _chunks(data.deployments):
        columns = {
            "deployment_id": _ids("d", start, part),
            **_event_columns(part),
            "finished_day": _day_text(part["finished_day"]),
        }
        yield dora_deployments, pd.DataFrame(columns)
    for start, part in _chunks(data.incidents):
        columns = {
            "incident_id": _ids("i", start, part),
            **_event_columns(part),
            "status": part["status"].to_numpy(),
            "started_day": _day_text(part["started_day"]),
            "finished_day": _day_text(part["finished_day"]),
        }
        yield dora_incidents, pd.DataFrame(columns)


def load_sqlite(path: Path, data: Dataset) -> None:
    connection = sqlite3.connect(path)
    with connection:
        for table, chunk in warehouse_chunks(data):
            columns = ", ".join(chunk.columns)
            marks = ", ".join("?" * len(chunk.columns))
            connection.executemany(
                f"INSERT INTO {table.name} ({columns}) VALUES ({marks})",
                chunk.itertuples(index=False, name=None),
            )
    connection.execute("ANALYZE")
    connection.close()


def load_postgres(engine: sa.Engine, data: Dataset) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, chunk in warehouse_chunks(data):
            buffer = io.StringIO()
            chunk.to_csv(buffer, index=False, header=False)
            columns = ", ".join(chunk.columns)
            with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(buffer.getvalue())
        raw.commit()
    finally:
        raw.close()
    # A live warehouse is vacuumed by autovacuum; a freshly bulk-loaded one is not, and
    # its index-only scans would visit every heap page.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE dora_deployments")
        connection.exec_driver_sql("VACUUM ANALYZE dora_incidents")


# --- the three ways to compute the metrics ------------------------------------------------


@contextmanager
def dagster_instance(kind: str, postgres_admin_url: str | None) -> Iterator[dg.DagsterInstance]:
    if kind == "ephemeral":
        yield dg.DagsterInstance.ephemeral()
        return
    with tempfile.TemporaryDirectory(prefix="dagster_home_") as home:
        if kind == "temp":
            with dg.DagsterInstance.local_temp(home) as instance:
                yield instance
            return
        if not postgres_admin_url:
            raise SystemExit(
                "--dagster-instance postgres needs a server: pass --postgres-url"
                " or set DORA_TEST_POSTGRES_URL"
            )
        with postgres_database(postgres_admin_url) as storage_url:
            # dagster-postgres speaks psycopg2, whose URLs carry no driver suffix.
            psycopg2_url = (
                sa.make_url(storage_url)
                .set(drivername="postgresql")
                .render_as_string(hide_password=False)
            )
            overrides = {"storage": {"postgres": {"postgres_url": psycopg2_url}}}
            with dg.DagsterInstance.local_temp(home, overrides=overrides) as instance:
                yield instance


def dagster_backfill(
    url: str, instance_kind: str, postgres_admin_url: str | None
) -> tuple[float, dict[str, float]]:
    """Seconds for the whole single run, and the seconds each step took inside it."""
    with dagster_instance(instance_kind, postgres_admin_url) as instance:
        started = time.perf_counter()
        result = dg.materialize(
            METRIC_RUN,
            resources={"warehouse": WarehouseResource(url=url)},
            instance=instance,
            tags=RANGE_TAGS,
        )
        elapsed = time.perf_counter() - started
    if not result.success:
        raise SystemExit("the Dagster backfill failed")
    checks = result.get_asset_check_evaluations()
    if not all(check.passed for check in checks):
        raise SystemExit("a reconciliation check failed")
    step_seconds = {}
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS":
            step_seconds[event.step_key] = event.event_specific_data.duration_ms / 1000
    return elapsed, step_seconds


def empty_warehouse_backfill(
    url: str, instance_kind: str, postgres_admin_url: str | None
) -> tuple[float, dict[str, float]]:
    """The same backfill over the schema with no rows: Dagster's own bookkeeping plus the
    run's fixed round trips to that database; the data work is what a full run adds."""
    open_warehouse(url).dispose()
    return dagster_backfill(url, instance_kind, postgres_admin_url)


Result = TypeVar("Result")


def fastest(
    repeat: int, label: str, run: Callable[[], tuple[float, Result]]
) -> tuple[float, Result, list[float]]:
    """The fastest of `repeat` runs of the same work (its seconds and result), and every
    run's seconds: the run least disturbed by the rest of the machine."""
    return fastest_in_turn(repeat, {label: run})[label]


def fastest_in_turn(
    repeat: int, runs: Mapping[str, Callable[[], tuple[float, Any]]]
) -> dict[str, tuple[float, Any, list[float]]]:
    """`fastest` for several paths run in turn (A, B, A, B): a machine slowed for a minute
    slows one run of each, not every run of whichever path came then, so a ratio of two
    paths (or a difference) compares runs made under the same conditions."""
    measured: dict[str, list[tuple[float, Any]]] = {label: [] for label in runs}
    for _ in range(repeat):
        for label, run in runs.items():
            measured[label].append(run())
    fastest_runs = {}
    for label, done in measured.items():
        seconds = [elapsed for elapsed, _ in done]
        say(f"  {label}: {', '.join(f'{elapsed:.2f} s' for elapsed in seconds)}")
        best = min(done, key=lambda outcome: outcome[0])
        fastest_runs[label] = (best[0], best[1], seconds)
    return fastest_runs


def data_work_verdict(seconds: float, duckdb_seconds: float) -> str:
    """`3.40 s = 0.79x (target <= 0.6: not met)`, the ratio rounded as in the JSON line."""
    ratio = round(seconds / duckdb_seconds, 2)
    if seconds < 0:
        # The empty run took longer than the full one: noise, not a met target.
        met = "not measured, the two runs' noise exceeds the data work"
    else:
        met = "met" if ratio <= DATA_WORK_TARGET else "not met"
    return f"{seconds:.2f} s = {ratio}x (target <= {DATA_WORK_TARGET}: {met})"


CHANGE_FAILURE_RATE_SQL = """
WITH tallies AS (
    SELECT finished_day AS day, service, team, env, count(*) AS deployments, 0 AS failures
    FROM deployments WHERE finished_day >= $first AND finished_day < $end GROUP BY ALL
    UNION ALL
    SELECT started_day, service, team, env, 0, count(*)
    FROM incidents WHERE started_day >= $first AND started_day < $end GROUP BY ALL
)
SELECT day, service, team, env, sum(deployments) AS deployments, sum(failures) AS failures,
       CASE WHEN sum(deployments) > 0 THEN sum(failures) / sum(deployments) END
           AS change_failure_rate
FROM tallies GROUP BY ALL
"""

TIME_TO_RESTORE_SQL = """
WITH restores AS (
    SELECT finished_day AS day, service, team, env,
           round((epoch(finished_at) - epoch(started_at)) * 1000) / 1000 AS seconds
    FROM incidents
    WHERE status = 'resolved' AND finished_day >= $first AND finished_day < $end
)
SELECT day, service, team, env, count(*) AS resolved_incidents, sum(seconds) AS total_seconds,
       avg(seconds) AS mean_seconds, quantile_cont(seconds, 0.5) AS median_seconds,
       quantile_cont(seconds, 0.9) AS p90_seconds, max(seconds) AS max_seconds
FROM restores GROUP BY ALL
"""


def duckdb_metrics(deployments: pd.DataFrame, incidents: pd.DataFrame) -> dict[str, pd.DataFrame]:
    connection = duckdb.connect()
    connection.register("deployments", deployments)
    connection.register("incidents", incidents)
    window = {"first": YEAR_START, "end": YEAR_END}
    tables = {
        dora_change_failure_rate_daily.name: connection.execute(
            CHANGE_FAILURE_RATE_SQL, window
        ).df(),
        dora_time_to_restore_daily.name: connection.execute(TIME_TO_RESTORE_SQL, window).df(),
    }
    connection.close()
    return tables


def duckdb_from_warehouse(url: str) -> tuple[float, dict[str, pd.DataFrame]]:
    """Read the needed columns out of the warehouse, then let DuckDB compute; all timed."""
    engine = open_warehouse(url)
    d, i = dora_deployments.c, dora_incidents.c
    started = time.perf_counter()
    with engine.connect() as connection:
        deployments = pd.read_sql(sa.select(d.finished_day, d.service, d.team, d.env), connection)
        incidents = pd.read_sql(
            sa.select(
                i.started_day,
                i.finished_day,
                i.service,
                i.team,
                i.env,
                i.status,
                i.started_at,
                i.finished_at,
            ),
            connection,
        )
    for frame in (deployments, incidents):
        for column in ("finished_day", "started_day"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column])
    tables = duckdb_metrics(deployments, incidents)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, tables


def warehouse_tables(url: str) -> dict[str, pd.DataFrame]:
    engine = open_warehouse(url)
    with engine.connect() as connection:
        tables = {
            table.name: pd.read_sql(sa.select(table), connection)
            for table in (dora_change_failure_rate_daily, dora_time_to_restore_daily)
        }
    engine.dispose()
    return tables


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["day"] = pd.to_datetime(frame["day"]).dt.strftime("%Y-%m-%d")
    for column in ("service", "team", "env"):
        frame[column] = frame[column].astype(str)
    return frame.sort_values(KEY).reset_index(drop=True)


def tables_agree(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> bool:
    for name, table in left.items():
        a, b = _canonical(table), _canonical(right[name])
        if len(a) != len(b) or not (a[KEY] == b[KEY][KEY]).all().all():
            return False
        for column in a.columns.difference(KEY):
            x = a[column].astype("float64").to_numpy()
            y = b[column].astype("float64").to_numpy()
            if not np.allclose(x, y, rtol=1e-9, atol=1e-6, equal_nan=True):
                return False
    return True


# --- harness -------------------------------------------------------------------------------


class PeakMemory:
    """Peak resident memory of this process, read from the kernel's high-water mark.

    Everything measured runs in this process (Dagster's in-process executor, DuckDB,
    pandas), so its VmHWM is the peak. A sampling thread would compete for the GIL
    with the work it watches: one polling every 20 ms slowed the Dagster run by ~1.8 s.
    `section()` resets the mark to read one step's own peak; `peak` covers them all.
    """

    def __init__(self) -> None:
        self.peak = 0

    @staticmethod
    def _high_water_mark() -> int:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024

    def read(self) -> int:
        self.peak = max(self.peak, self._high_water_mark())
        return self.peak

    @contextmanager
    def section(self) -> Iterator[Callable[[], int]]:
        """Yields a function returning the section's own peak once it has ended."""
        self.read()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        section_peak = 0

        def peak() -> int:
            return section_peak

        yield peak
        section_peak = self._high_water_mark()
        self.read()


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    admin = sa.create_engine(
        sa.make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    name = f"dora_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def sqlite_warehouse(folder: Path, name: str, data: Dataset) -> str:
    path = folder / f"{name}.db"
    url = f"sqlite:///{path}"
    open_warehouse(url).dispose()
    load_sqlite(path, data)
    return url


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(label: str, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    say(f"  {label}: {elapsed:.1f} s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 deployments, 5,000 incidents")
    parser.add_argument("--deployments", type=int, default=1_000_000)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=os.environ.get("DORA_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--dagster-instance", choices=["ephemeral", "temp", "postgres"], default="ephemeral"
    )
    parser.add_argument(
        "--repeat", type=int, help="runs of each timed path, the fastest counts (default 2)"
    )
    args = parser.parse_args()
    deployments, incidents = (50_000, 5_000) if args.quick else (args.deployments, args.incidents)
    repeat = args.repeat or (1 if args.quick else 2)
    figures: dict[str, object] = {
        "deployments": deployments,
        "incidents": incidents,
        "partitions": DAYS,
        "services": SERVICES,
        "dagster_instance": args.dagster_instance,
        "dagster_event_batch_size": os.environ.get("DAGSTER_EVENT_BATCH_SIZE"),
        "dagster_emit_partition_subset_in_planned_events": os.environ.get(
            "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
        ),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "repeat": repeat,
    }

    memory = PeakMemory()
    with tempfile.TemporaryDirectory(prefix="dora_bench_") as scratch:
        folder = Path(scratch)
        say(f"generating {deployments:,} deployments and {incidents:,} incidents over {DAYS} days")
        data = generate(deployments, incidents)

        say("bulk load (not timed)")
        sqlite_url = sqlite_warehouse(folder, "full", data)
        empty_url = f"sqlite:///{folder / 'empty.db'}"
        backfill_peaks: list[int] = []

        def sqlite_backfill() -> tuple[float, dict[str, float]]:
            with memory.section() as peak:
                outcome = dagster_backfill(sqlite_url, args.dagster_instance, args.postgres_url)
            backfill_peaks.append(peak())
            return outcome

        say(
            "SQLite warehouse, in turn: the backfill over an empty one (Dagster's own cost),"
            " over the full one, and DuckDB reading the full one"
        )
        sqlite_paths = fastest_in_turn(
            repeat,
            {
                "over an empty warehouse": lambda: empty_warehouse_backfill(
                    empty_url, args.dagster_instance, args.postgres_url
                ),
                "Dagster single-run backfill, 365 partitions x 2 assets": sqlite_backfill,
                "DuckDB from the SQLite warehouse": lambda: duckdb_from_warehouse(sqlite_url),
            },
        )
        dagster_overhead_s, _, empty_runs = sqlite_paths["over an empty warehouse"]
        sqlite_s, sqlite_steps, sqlite_runs = sqlite_paths[
            "Dagster single-run backfill, 365 partitions x 2 assets"
        ]
        duckdb_sqlite_s, duckdb_sqlite, duckdb_sqlite_runs = sqlite_paths[
            "DuckDB from the SQLite warehouse"
        ]
        say(f"  the fastest backfill's steps: {sqlite_steps}")
        results = {"sqlite": warehouse_tables(sqlite_url), "duckdb_from_sqlite": duckdb_sqlite}

        started = time.perf_counter()
        results["duckdb_in_memory"] = duckdb_metrics(data.deployments, data.incidents)
        duckdb_in_memory_s = time.perf_counter() - started
        say(f"DuckDB on rows in memory: {duckdb_in_memory_s:.2f} s")

        postgres_s = duckdb_postgres_s = postgres_overhead_s = None
        if args.postgres_url:
            say("PostgreSQL warehouse")
            # Its own empty run, as "the same run" is: the SQLite one would leave
            # PostgreSQL's per-run connections and empty-table queries in its data work.
            with (
                postgres_database(args.postgres_url) as empty_postgres_url,
                postgres_database(args.postgres_url) as postgres_url,
            ):
                engine = open_warehouse(postgres_url)
                load_postgres(engine, data)
                engine.dispose()
                postgres_paths = fastest_in_turn(
                    repeat,
                    {
                        "over an empty PostgreSQL warehouse": lambda: empty_warehouse_backfill(
                            empty_postgres_url, args.dagster_instance, args.postgres_url
                        ),
                        "Dagster single-run backfill": lambda: dagster_backfill(
                            postgres_url, args.dagster_instance, args.postgres_url
                        ),
                        "DuckDB from the PostgreSQL warehouse": lambda: duckdb_from_warehouse(
                            postgres_url
                        ),
                    },
                )
                postgres_overhead_s = postgres_paths["over an empty PostgreSQL warehouse"][0]
                postgres_s, postgres_steps, _ = postgres_paths["Dagster single-run backfill"]
                duckdb_postgres_s, results["duckdb_from_postgres"], _ = postgres_paths[
                    "DuckDB from the PostgreSQL warehouse"
                ]
                say(f"  the fastest backfill's steps: {postgres_steps}")
                results["postgres"] = warehouse_tables(postgres_url)
        else:
            say("no --postgres-url / DORA_TEST_POSTGRES_URL: PostgreSQL skipped")

        say("half the rows, SQLite")
        del data
        half = generate(deployments // 2, incidents // 2)
        half_url = sqlite_warehouse(folder, "half", half)
        half_rows_sqlite_s, _, _ = fastest(
            repeat,
            "Dagster single-run backfill",
            lambda: dagster_backfill(half_url, args.dagster_instance, args.postgres_url),
        )

        reference = results["duckdb_in_memory"]
        agreement = {name: tables_agree(reference, tables) for name, tables in results.items()}

    # Not clamped at zero: a negative figure says the run-to-run noise of the two
    # backfills exceeds the data work (likely under --quick).
    data_work_s = sqlite_s - dagster_overhead_s
    postgres_data_work_s = postgres_s - postgres_overhead_s if postgres_s is not None else None
    figures.update(
        {
            "sqlite_s": round(sqlite_s, 3),
            "postgres_s": round(postgres_s, 3) if postgres_s is not None else None,
            "duckdb_from_warehouse_s": round(duckdb_sqlite_s, 3),
            "duckdb_from_postgres_s": (
                round(duckdb_postgres_s, 3) if duckdb_postgres_s is not None else None
            ),
            "duckdb_in_memory_s": round(duckdb_in_memory_s, 3),
            "dagster_empty_backfill_s": round(dagster_overhead_s, 3),
            "sqlite_runs_s": [round(seconds, 3) for seconds in sqlite_runs],
            "dagster_empty_backfill_runs_s": [round(seconds, 3) for seconds in empty_runs],
            "duckdb_from_warehouse_runs_s": [round(seconds, 3) for seconds in duckdb_sqlite_runs],
            "half_rows_sqlite_s": round(half_rows_sqlite_s, 3),
            "full_over_half_sqlite": round(sqlite_s / half_rows_sqlite_s, 2),
            "sqlite_over_duckdb_from_warehouse": round(sqlite_s / duckdb_sqlite_s, 2),
            "postgres_over_duckdb_from_postgres": (
                round(postgres_s / duckdb_postgres_s, 2)
                if postgres_s and duckdb_postgres_s
                else None
            ),
            "sqlite_over_duckdb_in_memory": round(sqlite_s / duckdb_in_memory_s, 1),
            # Dagster's bookkeeping alone against each DuckDB path: at or above 1.0, no
            # warehouse work, however fast, can bring the backfill under that path.
            "dagster_floor_over_duckdb_from_warehouse": round(
                dagster_overhead_s / duckdb_sqlite_s, 2
            ),
            "dagster_floor_over_duckdb_from_postgres": (
                round(dagster_overhead_s / duckdb_postgres_s, 2) if duckdb_postgres_s else None
            ),
            "postgres_dagster_empty_backfill_s": (
                round(postgres_overhead_s, 3) if postgres_overhead_s is not None else None
            ),
            "data_work_s": round(data_work_s, 3),
            "data_work_over_duckdb_from_warehouse": round(data_work_s / duckdb_sqlite_s, 2),
            "postgres_data_work_s": (
                round(postgres_data_work_s, 3) if postgres_data_work_s is not None else None
            ),
            "postgres_data_work_over_duckdb_from_warehouse": (
                round(postgres_data_work_s / duckdb_postgres_s, 2)
                if postgres_data_work_s is not None and duckdb_postgres_s
                else None
            ),
            "peak_rss_mb": round(memory.read() / 2**20, 1),
            # The first run's: later ones start with what DuckDB's run left in the process.
            "sqlite_backfill_peak_rss_mb": round(backfill_peaks[0] / 2**20, 1),
            "values_agree": all(agreement.values()),
            "agreement": agreement,
        }
    )
    say("")
    say(
        f"SQLite: {sqlite_s:.2f} s ="
        f" {figures['sqlite_over_duckdb_from_warehouse']}x DuckDB from the warehouse"
    )
    if postgres_s is not None:
        say(
            f"PostgreSQL: {postgres_s:.2f} s ="
            f" {figures['postgres_over_duckdb_from_postgres']}x DuckDB from PostgreSQL"
        )
    say(
        "of which Dagster's own bookkeeping (the same run on an empty warehouse):"
        f" {dagster_overhead_s:.2f} s ="
        f" {figures['dagster_floor_over_duckdb_from_warehouse']}x DuckDB from SQLite"
        + (
            f", {figures['dagster_floor_over_duckdb_from_postgres']}x DuckDB from PostgreSQL"
            if duckdb_postgres_s
            else ""
        )
    )
    say(
        "data work (the backfill minus the same run over an empty warehouse), against"
        " DuckDB reading the same warehouse:"
    )
    say(f"  SQLite: {data_work_verdict(data_work_s, duckdb_sqlite_s)}")
    if postgres_data_work_s is not None and duckdb_postgres_s:
        say(f"  PostgreSQL: {data_work_verdict(postgres_data_work_s, duckdb_postgres_s)}")
    say(f"full / half rows on SQLite: {figures['full_over_half_sqlite']} (2.0 would be linear)")
    say(
        f"peak RSS: {figures['peak_rss_mb']} MiB;"
        f" values agree: {figures['values_agree']} {agreement}"
    )
    print(json.dumps(figures))
    if not figures["values_agree"]:
        raise SystemExit("the paths disagree on some value: see `agreement` above")


if __name__ == "__main__":
    main()
