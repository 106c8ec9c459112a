"""Steady state: what one refresh, sensor tick and rebuild cost over a year of history.

Builds a warehouse holding 2025 as 1,000,000 deployments and 100,000 incidents (API
failures, some naming two services, and PagerDuty pull rows, some still open, over 200
services, 20 teams and two envs): the landing tables are bulk-loaded with `updated_at`
/ `observed_at` in 2025, the normalized tables are brought in line by the product's own
incremental `refresh` (the first build, timed), and one single-run backfill
materializes every metric asset for the 365 days. Then, in one process, it times what
every 15 minutes costs once a change batch (1,000 new deployments, 100 new failures, 50
late resolutions of open incidents, 10 retractions) has landed through the event
store (the API's write path) and PagerDuty's landing upsert:

- `refresh_s`: the two normalized `refresh` calls (warehouse work only); and
  `refresh_run_s`: the whole Dagster `refresh_sources` run (event_api_events and the
  normalized assets with their checks; no PagerDuty pull) over a second batch of the
  same shape;
- `sensor_s`: one evaluation of `late_data_sensor`; `rebuild_s`: the run it requests;
- `full_rebuild_s`: the old way, both normalized tables rebuilt from landing in one
  transaction (the pre-incremental SQL, copied below as the baseline);
- ingest latency: `dora api` on the same warehouse under a steady open-loop load from
  several client processes, a few seconds before and while a refresh runs. That
  refresh applies a service-catalog edit re-teaming 10 of the 200 services (and the
  events the load landed), so it lasts seconds rather than milliseconds. A control
  window before it, this process only spinning one core, shows what the machine's own
  CPU contention does to the latency (2 cores here); a window after it, how soon the
  API catches up. On SQLite, `ingest_events_spooled` counts the events the API kept in
  its spool rather than wait for a job's write (see `connectors.events.spool`).

The same cycle at half the history shows what grows with history (targets: refresh at
most 1.2x, the sensor flat); `--quick` (20,000 deployments) skips it.

Correctness (`values_agree`): after refresh, sensor and rebuild, the daily audit's full
comparison finds no differing day, and the normalized tables hold exactly what the old
full rebuild writes (an order-independent digest, before and after running it, of the
columns both write but `ingested_at`; what later steps derive, such as the change-failure
classification, is not the old rebuild's).

PostgreSQL: `--postgres-url` or DORA_TEST_POSTGRES_URL names a server; the bench
creates and drops its own database there and repeats the full-history cycle and the
latency phase (keys prefixed `postgres_`). Ends with peak RSS (the kernel's
high-water mark of this process; the API server and load clients are separate
processes) and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import sqlalchemy as sa
import yaml
from api_ingest import API_KEY, free_port, start_api
from metrics_backfill import postgres_database
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

from connectors.config import DoraConfig, load_config
from connectors.events.schemas import DeploymentEvent, FailureEvent
from connectors.events.spool import SPOOL_STATE
from connectors.events.store import EventStore
from connectors.pagerduty.normalize import pagerduty_incident_rows
from connectors.pagerduty.sync import landing_row
from connectors.timestamps import utcnow
from connectors.warehouse import is_sqlite, open_warehouse, reading
from connectors.warehouse.engine import is_read_only
from connectors.warehouse.schema import (
    api_deployments,
    api_failure_services,
    api_failures,
    dora_deployments,
    dora_incidents,
    pagerduty_incidents,
)
from connectors.warehouse.upsert import upsert
from connectors.warehouse.watermarks import read_state
from dora_assets import late_data
from dora_assets.audit import AUDITED
from dora_assets.definitions import defs
from dora_assets.freshness import INGEST_KEYS, METRIC_KEYS, NORMALIZED_KEYS
from dora_assets.metrics.rebuild import STALE_DAYS_TAG
from dora_assets.normalized.changes import BOOKKEEPING_COLUMNS, Applied
from dora_assets.normalized.deployments import deployment_sources
from dora_assets.normalized.incidents import incident_sources
from dora_assets.normalized.refresh import refresh
from dora_assets.resources import WarehouseResource
from dora_assets.schedules import (
    PAGERDUTY_KEY,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    sources_job,
)
from dora_assets.sensors import late_data_job, late_data_sensor

YEAR_START = dt.date(2025, 1, 1)
DAYS = 365
YEAR_END = YEAR_START + dt.timedelta(days=DAYS)
START = np.datetime64(YEAR_START.isoformat(), "s")
# Late resolutions and new events stay inside the built year, so the sensor has built
# days to find stale.
LAST_MOMENT = dt.datetime.combine(YEAR_END, dt.time()) - dt.timedelta(seconds=1)
NAT = np.datetime64("NaT", "s")
SERVICES = 200
TEAMS = 20
SERVICE_NAMES = [f"svc-{n:03d}" for n in range(SERVICES)]
SERVICE_TEAMS = [f"team-{n % TEAMS:02d}" for n in range(SERVICES)]
PAGERDUTY_SERVICES = 200
# The rest stay unmapped: recorded under their PagerDuty name, as in a real account.
PAGERDUTY_MAPPED = 180
PAGERDUTY_IDS = [f"PSVC{n:03d}" for n in range(PAGERDUTY_SERVICES)]
PAGERDUTY_NAMES = [f"PagerDuty service {n}" for n in range(PAGERDUTY_SERVICES)]
PAGERDUTY_TEAMS = [json.dumps([SERVICE_TEAMS[n % SERVICES]]) for n in range(PAGERDUTY_SERVICES)]
API_FAILURE_SHARE = 0.7  # of incidents; the rest are PagerDuty pull rows
CATALOG_TEAMED_SHARE = 0.2  # events that name no team and take the catalog's
RETRACTED_SHARE = 0.005
RETRACTION_DELAY = np.timedelta64(2, "D")
OPEN_FAILURE_SHARE = 0.1
TEAM_ONLY_SHARE = 0.05
TWO_SERVICES_SHARE = 0.1
LOAD_CHUNK = 50_000

# The change batch of the issue, and where its events fall: most in the last week of
# the year (today, in this bench's calendar), some backfilled for any day of it.
CHANGE_DEPLOYMENTS = 1_000
CHANGE_FAILURES = 100
CHANGE_LATE_RESOLUTIONS = 50  # half API failures, half PagerDuty incidents
CHANGE_RETRACTIONS = 10
RECENT_DAYS = 7
BACKFILLED_SHARE = 0.05

# Targets of the issue.
REFRESH_GROWTH_TARGET = 1.2  # refresh at full history / at half
SENSOR_GROWTH_TARGET = 1.2  # "flat"
REFRESH_SHARE_TARGET = 0.05  # refresh_s / full_rebuild_s
INGEST_MAX_TARGET_MS = 1_000.0
INGEST_P99_GROWTH_TARGET = 2.0  # p99 during the refresh / p99 before

DEPLOYMENT_PATH = "/api/v2/dora/deployment"
# The load's deployments finish on 30 December 2025: built days, so they are tracked too.
LOAD_FINISHED_AT = int(dt.datetime(2025, 12, 30, tzinfo=dt.UTC).timestamp())
LOAD_WARMUP_S = 1.0
LOAD_SETTLE_S = 1.0
LOAD_AFTER_S = 3.0
# Every Dagster event printed to the console would both slow the timed runs and bury
# the summary; warnings still show.
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
RANGE_TAGS = {
    PARTITION_RANGE_START_TAG: YEAR_START.isoformat(),
    PARTITION_RANGE_END_TAG: (YEAR_END - dt.timedelta(days=1)).isoformat(),
}

Columns = dict[str, np.ndarray]


# --- history ------------------------------------------------------------------------------


@dataclass
class History:
    """The landing tables' rows (warehouse values, column by column) and the ids the
    change batches draw on, each pool shuffled once so batches never share an id."""

    tables: list[tuple[sa.Table, Columns]]
    live_deployments: np.ndarray
    open_failures: np.ndarray
    open_pagerduty: np.ndarray

    @property
    def deployments(self) -> int:
        return len(self.tables[0][1]["deployment_id"])

    @property
    def incidents(self) -> int:
        return len(self.tables[1][1]["failure_id"]) + len(self.tables[3][1]["incident_id"])


def _moments(rng: np.random.Generator, count: int) -> np.ndarray:
    return START + rng.integers(0, DAYS * 86_400, count).astype("timedelta64[s]")


def _seconds(rng: np.random.Generator, count: int, low: int, high: int) -> np.ndarray:
    return rng.integers(low, high, count).astype("timedelta64[s]")


def _restore_seconds(rng: np.random.Generator, count: int) -> np.ndarray:
    """Minutes to two weeks, most within hours: whole seconds, as every database agrees."""
    seconds = np.clip(rng.lognormal(8.0, 1.5, count), 60, 14 * 86_400).astype("int64")
    return seconds.astype("timedelta64[s]")


def _text(moments: np.ndarray) -> np.ndarray:
    """SQLAlchemy's DateTime text on SQLite (`YYYY-MM-DD HH:MM:SS.ffffff`), which
    PostgreSQL's COPY reads as well; NaT is NULL."""
    text = np.char.replace(np.datetime_as_string(moments.astype("datetime64[us]")), "T", " ")
    return np.where(np.isnat(moments), None, text)


def _ids(prefix: str, count: int) -> np.ndarray:
    return np.char.add(prefix, np.arange(count).astype(str))


def _constant(value: object, count: int) -> np.ndarray:
    return np.full(count, value, dtype=object)


def deployment_rows(rng: np.random.Generator, count: int) -> tuple[Columns, np.ndarray]:
    """`api_deployments` rows, and the ids of those not retracted."""
    finished = _moments(rng, count)
    received = finished + _seconds(rng, count, 1, 600)
    retracted = rng.random(count) < RETRACTED_SHARE
    deleted = np.where(retracted, received + RETRACTION_DELAY, NAT)
    service = rng.integers(0, SERVICES, count)
    own_team = rng.random(count) >= CATALOG_TEAMED_SHARE
    ids = _ids("d", count)
    columns = {
        "deployment_id": ids,
        "service": np.array(SERVICE_NAMES)[service],
        "team": np.where(own_team, np.array(SERVICE_TEAMS)[service], ""),
        "env": np.where(rng.random(count) < 0.85, "prod", "staging"),
        "version": np.char.add("1.0.", np.arange(count).astype(str)),
        "commit_sha": _constant(None, count),
        "repository_url": _constant(None, count),
        "started_at": _text(finished - _seconds(rng, count, 60, 1_800)),
        "finished_at": _text(finished),
        "custom_tags": _constant("[]", count),
        # No change-failure PATCH in the history: detection is left to the product.
        "change_failure": np.zeros(count, dtype=bool),
        "remediation_type": _constant(None, count),
        "remediation_ref": _constant(None, count),
        "deleted_at": _text(deleted),
        "received_at": _text(received),
        "updated_at": _text(np.where(retracted, deleted, received)),
    }
    return columns, ids[~retracted]


def failure_rows(rng: np.random.Generator, count: int) -> tuple[Columns, Columns, np.ndarray]:
    """`api_failures` and `api_failure_services` rows, and the ids of live open failures:
    most name one service, some two, some only a team (service '')."""
    started = _moments(rng, count)
    resolved = rng.random(count) >= OPEN_FAILURE_SHARE
    finished = np.where(resolved, started + _restore_seconds(rng, count), NAT)
    # Sent once when it started and again when resolved: `updated_at` is the last send.
    received = np.where(resolved, finished, started) + _seconds(rng, count, 1, 600)
    retracted = rng.random(count) < RETRACTED_SHARE
    deleted = np.where(retracted, received + RETRACTION_DELAY, NAT)
    shape = rng.random(count)
    team_only = shape < TEAM_ONLY_SHARE
    two = (shape >= TEAM_ONLY_SHARE) & (shape < TEAM_ONLY_SHARE + TWO_SERVICES_SHARE)
    first = rng.integers(0, SERVICES, count)
    second = (first + rng.integers(1, SERVICES, count)) % SERVICES
    own_team = team_only | (rng.random(count) >= CATALOG_TEAMED_SHARE)
    names = np.array(SERVICE_NAMES)
    ids = _ids("f", count)
    failures = {
        "failure_id": ids,
        "team": np.where(own_team, np.array(SERVICE_TEAMS)[first], ""),
        "env": np.where(rng.random(count) < 0.85, "prod", "staging"),
        "name": np.char.add("incident ", ids),
        "severity": np.where(rng.random(count) < 0.2, "SEV-1", "SEV-2"),
        "version": _constant(None, count),
        "commit_sha": _constant(None, count),
        "repository_url": _constant(None, count),
        "started_at": _text(started),
        "finished_at": _text(finished),
        "custom_tags": _constant("[]", count),
        "deleted_at": _text(deleted),
        "received_at": _text(received),
        "updated_at": _text(np.where(retracted, deleted, received)),
    }
    services = {
        "failure_id": np.concatenate([ids, ids[two]]),
        "service": np.concatenate([np.where(team_only, "", names[first]), names[second[two]]]),
    }
    return failures, services, ids[~resolved & ~retracted]


def pagerduty_rows(rng: np.random.Generator, count: int) -> tuple[Columns, np.ndarray]:
    """`pagerduty_incidents` rows as a pull lands them, and the ids of open incidents."""
    created = _moments(rng, count)
    status = rng.choice(["resolved", "triggered", "acknowledged"], count, p=[0.85, 0.1, 0.05])
    resolved = status == "resolved"
    resolved_at = np.where(resolved, created + _restore_seconds(rng, count), NAT)
    observed = np.where(resolved, resolved_at, created) + _seconds(rng, count, 60, 900)
    service = rng.integers(0, PAGERDUTY_SERVICES, count)
    ids = _ids("P", count)
    columns = {
        "incident_id": ids,
        "incident_number": np.arange(1, count + 1),
        "title": np.char.add("PagerDuty incident ", ids),
        "status": status,
        "urgency": np.where(rng.random(count) < 0.7, "high", "low"),
        "priority": _constant(None, count),
        "service_id": np.array(PAGERDUTY_IDS)[service],
        "service_name": np.array(PAGERDUTY_NAMES)[service],
        "teams": np.array(PAGERDUTY_TEAMS)[service],
        "created_at": _text(created),
        "resolved_at": _text(resolved_at),
        "html_url": np.char.add("https://example.pagerduty.com/incidents/", ids),
        "observed_at": _text(observed),
        "created_day": np.datetime_as_string(created.astype("datetime64[D]")),
        "raw": _constant("{}", count),
    }
    return columns, ids[~resolved]


def generate(deployments: int, incidents: int, seed: int = 11) -> History:
    rng = np.random.default_rng(seed)
    failures = round(incidents * API_FAILURE_SHARE)
    deployed, live = deployment_rows(rng, deployments)
    failed, named, open_failures = failure_rows(rng, failures)
    pulled, open_pagerduty = pagerduty_rows(rng, incidents - failures)
    return History(
        tables=[
            (api_deployments, deployed),
            (api_failures, failed),
            (api_failure_services, named),
            (pagerduty_incidents, pulled),
        ],
        live_deployments=rng.permutation(live),
        open_failures=rng.permutation(open_failures),
        open_pagerduty=rng.permutation(open_pagerduty),
    )


def landing_chunks(history: History) -> Iterator[tuple[sa.Table, list[str], list[tuple]]]:
    """The rows a chunk at a time, parents before children (PostgreSQL checks the
    foreign key of `api_failure_services` while copying)."""
    for table, columns in history.tables:
        names = list(columns)
        count = len(columns[names[0]])
        for start in range(0, count, LOAD_CHUNK):
            values = [columns[name][start : start + LOAD_CHUNK].tolist() for name in names]
            yield table, names, list(zip(*values, strict=True))


def load_sqlite(url: str, history: History) -> None:
    open_warehouse(url).dispose()  # the schema first: the bulk load writes into it
    connection = sqlite3.connect(sa.make_url(url).database)
    with connection:
        for table, names, rows in landing_chunks(history):
            marks = ", ".join("?" * len(names))
            connection.executemany(
                f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", rows
            )
    connection.execute("ANALYZE")
    connection.close()


def load_postgres(url: str, history: History) -> None:
    engine = open_warehouse(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, names, rows in landing_chunks(history):
            # Text COPY rows from Python values: None is NULL and '' stays '', which a
            # CSV round trip would confuse.
            with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()
    vacuum_analyze(engine, [table for table, _ in history.tables])
    engine.dispose()


def vacuum_analyze(engine: sa.Engine, tables: Sequence[sa.Table]) -> None:
    """What autovacuum does for a live warehouse; a bulk-written one would otherwise plan
    with empty statistics and visit every heap page of an index-only scan."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in tables:
            connection.exec_driver_sql(f"VACUUM ANALYZE {table.name}")


# --- DORA_CONFIG ----------------------------------------------------------------------------


def catalog(reteamed: int = 0) -> dict[str, str]:
    """service -> team; the first `reteamed` services moved to another team."""
    return {
        service: f"moved-{team}" if number < reteamed else team
        for number, (service, team) in enumerate(zip(SERVICE_NAMES, SERVICE_TEAMS, strict=True))
    }


def write_config(path: Path, service_teams: dict[str, str]) -> DoraConfig:
    """Writes DORA_CONFIG (which the Dagster assets read) and returns it as they see it."""
    document = {
        "services": {service: {"team": team} for service, team in service_teams.items()},
        "pagerduty": {
            "services": {
                PAGERDUTY_IDS[n]: {"service": SERVICE_NAMES[n % SERVICES], "env": "prod"}
                for n in range(PAGERDUTY_MAPPED)
            }
        },
    }
    path.write_text(yaml.safe_dump(document))
    return load_config(path)


# --- change batches ---------------------------------------------------------------------------


@dataclass
class ChangeBatch:
    deployments: list[DeploymentEvent]
    failures: list[FailureEvent]
    resolved_failures: list[FailureEvent]  # open API failures sent again, now resolved
    resolved_pagerduty: list[dict[str, Any]]  # REST incidents, as the next pull reads them
    retractions: list[str]

    @property
    def events(self) -> int:
        return sum(
            len(part)
            for part in (
                self.deployments,
                self.failures,
                self.resolved_failures,
                self.resolved_pagerduty,
                self.retractions,
            )
        )


def _datetimes(moments: np.ndarray) -> list[dt.datetime]:
    return moments.astype("datetime64[us]").tolist()


def _recent_or_backfilled(rng: np.random.Generator, count: int) -> np.ndarray:
    recent = np.datetime64(YEAR_END.isoformat(), "s") - np.timedelta64(RECENT_DAYS, "D")
    moments = recent + _seconds(rng, count, 0, RECENT_DAYS * 86_400)
    return np.where(rng.random(count) < BACKFILLED_SHARE, _moments(rng, count), moments)


def _resolution(rng: np.random.Generator, started: dt.datetime) -> dt.datetime:
    """Hours to days after the start, within the built year."""
    return min(started + dt.timedelta(seconds=int(rng.integers(3_600, 5 * 86_400))), LAST_MOMENT)


def new_deployments(rng: np.random.Generator, number: int) -> list[DeploymentEvent]:
    finished = _datetimes(_recent_or_backfilled(rng, CHANGE_DEPLOYMENTS))
    services = rng.integers(0, SERVICES, CHANGE_DEPLOYMENTS)
    own_team = rng.random(CHANGE_DEPLOYMENTS) >= CATALOG_TEAMED_SHARE
    return [
        DeploymentEvent(
            id=f"b{number}-d{n}",
            service=SERVICE_NAMES[service],
            team=SERVICE_TEAMS[service] if own else "",
            env="prod",
            version=f"2.{number}.{n}",
            started_at=moment - dt.timedelta(minutes=5),
            finished_at=moment,
        )
        for n, (moment, service, own) in enumerate(zip(finished, services, own_team, strict=True))
    ]


def new_failures(rng: np.random.Generator, number: int) -> list[FailureEvent]:
    started = _datetimes(_recent_or_backfilled(rng, CHANGE_FAILURES))
    first = rng.integers(0, SERVICES, CHANGE_FAILURES)
    second = (first + rng.integers(1, SERVICES, CHANGE_FAILURES)) % SERVICES
    two = rng.random(CHANGE_FAILURES) < TWO_SERVICES_SHARE
    resolved = rng.random(CHANGE_FAILURES) < 0.7
    return [
        FailureEvent(
            id=f"b{number}-f{n}",
            started_at=moment,
            finished_at=_resolution(rng, moment) if resolved[n] else None,
            services=(SERVICE_NAMES[first[n]], *((SERVICE_NAMES[second[n]],) if two[n] else ())),
            env="prod",
            name=f"incident b{number}-f{n}",
            severity="SEV-2",
        )
        for n, moment in enumerate(started)
    ]


def resolved_failures(
    engine: sa.Engine, rng: np.random.Generator, ids: Sequence[str]
) -> list[FailureEvent]:
    """Open history failures as their sender re-posts them once resolved (every attribute
    again: a re-POST replaces them all)."""
    failure, named = api_failures.c, api_failure_services.c
    with engine.connect() as connection:
        rows = connection.execute(sa.select(api_failures).where(failure.failure_id.in_(ids)))
        services: dict[str, list[str]] = defaultdict(list)
        for identifier, service in connection.execute(
            sa.select(named.failure_id, named.service).where(named.failure_id.in_(ids))
        ):
            services[identifier].append(service)
        return [
            FailureEvent(
                id=row.failure_id,
                started_at=row.started_at,
                finished_at=_resolution(rng, row.started_at),
                services=tuple(name for name in services[row.failure_id] if name),
                team=row.team,
                env=row.env,
                name=row.name,
                severity=row.severity,
            )
            for row in rows
        ]


def _rfc3339(moment: dt.datetime) -> str:
    return f"{moment.isoformat()}Z"


def resolved_pagerduty(
    engine: sa.Engine, rng: np.random.Generator, ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Open history incidents as the REST API returns them once resolved."""
    incident = pagerduty_incidents.c
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(pagerduty_incidents).where(incident.incident_id.in_(ids))
        ).all()
    return [
        {
            "id": row.incident_id,
            "incident_number": row.incident_number,
            "title": row.title,
            "status": "resolved",
            "urgency": row.urgency,
            "service": {"id": row.service_id, "summary": row.service_name},
            "teams": [{"summary": team} for team in json.loads(row.teams)],
            "created_at": _rfc3339(row.created_at),
            "resolved_at": _rfc3339(_resolution(rng, row.created_at)),
            "html_url": row.html_url,
        }
        for row in rows
    ]


def change_batch(engine: sa.Engine, history: History, number: int) -> ChangeBatch:
    rng = np.random.default_rng(1_000 + number)
    half = CHANGE_LATE_RESOLUTIONS // 2

    def pool(ids: np.ndarray, size: int) -> list[str]:
        return ids[number * size : (number + 1) * size].tolist()

    return ChangeBatch(
        deployments=new_deployments(rng, number),
        failures=new_failures(rng, number),
        resolved_failures=resolved_failures(engine, rng, pool(history.open_failures, half)),
        resolved_pagerduty=resolved_pagerduty(
            engine, rng, pool(history.open_pagerduty, CHANGE_LATE_RESOLUTIONS - half)
        ),
        retractions=pool(history.live_deployments, CHANGE_RETRACTIONS),
    )


def apply_change_batch(engine: sa.Engine, batch: ChangeBatch) -> None:
    """Through the event store (what the API's group commit calls) and the PagerDuty
    pull's landing upsert, so every row carries the change marker the product sets."""
    store = EventStore(engine)
    for start in range(0, len(batch.deployments), 100):
        store.upsert_deployments(batch.deployments[start : start + 100])
    store.upsert_failures(batch.failures)
    store.upsert_failures(batch.resolved_failures)
    observed = utcnow()
    if batch.resolved_pagerduty:
        with engine.begin() as connection:
            connection.execute(
                upsert(pagerduty_incidents, connection.dialect),
                [landing_row(incident, observed) for incident in batch.resolved_pagerduty],
            )
    for identifier in batch.retractions:
        store.delete_deployment(identifier)


# --- the product's incremental paths ---------------------------------------------------------


@dataclass
class Refreshed:
    deployments_s: float
    incidents_s: float
    deployments: Applied
    incidents: Applied

    @property
    def seconds(self) -> float:
        return self.deployments_s + self.incidents_s

    @property
    def rows_written(self) -> int:
        return self.deployments.rows_written + self.incidents.rows_written


def refresh_both(engine: sa.Engine, config: DoraConfig) -> Refreshed:
    """The two normalized refreshes, as the two assets call them."""
    started = time.perf_counter()
    deployments = refresh(engine, dora_deployments.name, deployment_sources(config), config)
    middle = time.perf_counter()
    incidents = refresh(engine, dora_incidents.name, incident_sources(config), config)
    return Refreshed(middle - started, time.perf_counter() - middle, deployments, incidents)


@contextmanager
def transaction_times(engine: sa.Engine) -> Iterator[list[float]]:
    """Seconds from BEGIN to COMMIT of every write transaction on `engine` while inside
    (reads, which take no lock, are left out). On SQLite each is a spell of the
    warehouse's one write lock (BEGIN IMMEDIATE), which an API write waits out; listeners
    run in order, so the clock starts once it is held."""
    began: dict[int, float] = {}
    spells: list[float] = []

    def begin(connection: sa.Connection) -> None:
        if not is_read_only(connection):
            began[id(connection)] = time.perf_counter()

    def end(connection: sa.Connection) -> None:
        if (started := began.pop(id(connection), None)) is not None:
            spells.append(time.perf_counter() - started)

    listeners = [("begin", begin), ("commit", end), ("rollback", end)]
    for name, listener in listeners:
        sa.event.listen(engine, name, listener)
    try:
        yield spells
    finally:
        for name, listener in listeners:
            sa.event.remove(engine, name, listener)


def spell_figures(prefix: str, spells: Sequence[float], seconds: float) -> dict[str, Any]:
    """How many transactions, the median, 99th percentile and longest, and the share of
    `seconds` spent inside one."""
    ranked = sorted(spells)
    return {
        f"{prefix}transactions": len(spells),
        f"{prefix}median_transaction_ms": round(ranked[len(ranked) // 2] * 1000, 1)
        if ranked
        else None,
        f"{prefix}p99_transaction_ms": round(ranked[len(ranked) * 99 // 100] * 1000, 1)
        if ranked
        else None,
        f"{prefix}longest_transaction_ms": round(max(spells, default=0) * 1000, 1),
        f"{prefix}in_transaction_share": round(sum(spells) / seconds, 2) if seconds else None,
    }


@dataclass
class Orchestrator:
    """The code location's definitions bound to one warehouse, on an ephemeral instance."""

    url: str
    instance: dg.DagsterInstance = field(default_factory=dg.DagsterInstance.ephemeral)

    def __post_init__(self) -> None:
        self.resources = {"warehouse": WarehouseResource(url=self.url)}
        self.definitions = dg.Definitions(
            assets=defs.assets,
            asset_checks=defs.asset_checks,
            jobs=defs.jobs,
            schedules=defs.schedules,
            sensors=defs.sensors,
            resources={**defs.resources, **self.resources},
        )

    def run(
        self,
        job_name: str,
        asset_selection: Sequence[dg.AssetKey] | None = None,
        tags: dict[str, str] | None = None,
    ) -> tuple[float, dict[str, float]]:
        """Seconds for the whole run in process, and the seconds of each step in it."""
        job = self.definitions.resolve_job_def(job_name)
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=self.instance,
            asset_selection=list(asset_selection) if asset_selection else None,
            tags=tags,
            run_config=QUIET_RUN,
        )
        elapsed = time.perf_counter() - started
        if not result.success:
            raise SystemExit(f"the {job_name} run failed")
        steps = {
            event.step_key: round(event.event_specific_data.duration_ms / 1000, 3)
            for event in result.all_events
            if event.event_type_value == "STEP_SUCCESS"
        }
        return elapsed, steps

    def evaluate_sensor(self) -> tuple[float, dg.RunRequest | None]:
        """One tick as the daemon runs it: a fresh context and resources, then the sensor."""
        sensor = self.definitions.resolve_sensor_def(late_data_sensor.name)
        started = time.perf_counter()
        with dg.build_sensor_context(
            instance=self.instance, definitions=self.definitions, resources=self.resources
        ) as context:
            result = sensor.evaluate_tick(context)
        elapsed = time.perf_counter() - started
        return elapsed, (result.run_requests or [None])[0]

    def built_days(self, asset_key: dg.AssetKey) -> set[dt.date]:
        return {
            dt.date.fromisoformat(key)
            for key in self.instance.get_materialized_partitions(asset_key)
        }


@dataclass
class Rebuilt:
    """The late-data sensor's tick and the run it requested."""

    sensor_s: float
    rebuild_s: float
    rebuild_steps: dict[str, float]
    stale_days: int
    range_days: int  # partitions of the requested range, each recorded as materialized


@dataclass
class Cycle:
    """One steady-state round: refresh, the sensor's tick, the rebuild it asked for."""

    refresh_s: float
    refresh_parts: dict[str, float]  # per table
    rows_written: int
    rebuilt: Rebuilt


def sensor_and_rebuild(orchestrator: Orchestrator) -> Rebuilt:
    sensor_s, request = orchestrator.evaluate_sensor()
    if request is None:
        raise SystemExit("the late-data sensor found no stale day after a change batch")
    rebuild_s, steps = orchestrator.run(
        late_data_job.name, asset_selection=request.asset_selection, tags=request.tags
    )
    first, last = (
        dt.date.fromisoformat(request.tags[tag])
        for tag in (PARTITION_RANGE_START_TAG, PARTITION_RANGE_END_TAG)
    )
    stale = len(request.tags[STALE_DAYS_TAG].split(","))
    return Rebuilt(sensor_s, rebuild_s, steps, stale, (last - first).days + 1)


def direct_cycle(
    engine: sa.Engine, orchestrator: Orchestrator, config: DoraConfig, batch: ChangeBatch
) -> Cycle:
    apply_change_batch(engine, batch)
    refreshed = refresh_both(engine, config)
    parts = {"deployments": refreshed.deployments_s, "incidents": refreshed.incidents_s}
    return Cycle(refreshed.seconds, parts, refreshed.rows_written, sensor_and_rebuild(orchestrator))


def refresh_run(orchestrator: Orchestrator) -> tuple[float, dict[str, float]]:
    """The `refresh_sources` run as its 15-minute schedule requests it without a
    PagerDuty token; seconds, and the seconds of each step."""
    selection = [key for key in (*INGEST_KEYS, *NORMALIZED_KEYS) if key != PAGERDUTY_KEY]
    return orchestrator.run(sources_job.name, asset_selection=selection)


# --- correctness ------------------------------------------------------------------------------


def full_comparison(engine: sa.Engine, orchestrator: Orchestrator) -> dict[str, list[str]]:
    """The daily audit's comparison: built days whose stored tallies differ from a full
    recomputation, per metric table (every one the audit knows)."""
    differing = {}
    for asset_key in METRIC_KEYS:
        _, stale_query, _ = AUDITED[asset_key.path[-1]]
        built = orchestrator.built_days(asset_key)
        with engine.connect() as connection:
            found = late_data.stale_days(
                connection, stale_query(min(built), max(built) + dt.timedelta(days=1)), built
            )
        differing[asset_key.path[-1]] = sorted(day.isoformat() for day in found)
    return differing


def maintained_columns(engine: sa.Engine, config: DoraConfig) -> dict[str, set[str]]:
    """Per normalized table, the columns its `refresh` writes (those of the rows its
    sources want for one landing key each), not what later steps derive from them."""
    tables = {
        dora_deployments.name: deployment_sources(config),
        dora_incidents.name: incident_sources(config),
    }
    columns: dict[str, set[str]] = {}
    with engine.connect() as connection:
        for name, sources in tables.items():
            columns[name] = set()
            for source in sources:
                key = source.feeds[0].key
                first = connection.execute(sa.select(key).limit(1)).scalar_one_or_none()
                for row in source.normalization.wanted(connection, [first] if first else []):
                    columns[name] |= row.keys()
    return columns


def normalized_digest(engine: sa.Engine, compared: dict[str, set[str]]) -> dict[str, list[int]]:
    """Per normalized table: rows, and the sum of the rows' hashes over the `compared`
    columns, so it does not depend on the order rows are read in (Python's hashes are
    stable within this process, which computes both sides)."""
    digests = {}
    for table in (dora_deployments, dora_incidents):
        columns = [column for column in table.columns if column.name in compared[table.name]]
        count = total = 0
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=20_000).execute(sa.select(*columns))
            for row in result:
                count += 1
                total = (total + hash(tuple(row))) & 0xFFFFFFFFFFFFFFFF
        digests[table.name] = [count, total]
    return digests


# --- baseline: the normalized tables as the previous release rebuilt them ---------------------
# Copied from e007fa3 (the last commit before the incremental refresh):
# dora_assets/normalized/{deployments,incidents,catalog}.py and `utc_date` of
# connectors/warehouse/sql.py. Every run deleted both tables and inserted every row again from the
# landing tables (INSERT ... SELECT for API events, PagerDuty rows normalized in Python),
# with the service catalog mirrored into `dora_service_catalog` so the team fill-in was a
# join. Kept here, not imported, so that `full_rebuild_s` stays the old cost as the
# product moves on. The catalog table is the bench's own: migration 0002 dropped it.


class utc_date(FunctionElement):
    """The UTC calendar day of a naive-UTC timestamp column."""

    type = sa.Date()
    inherit_cache = True


@compiles(utc_date)
def _utc_date_default(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


@compiles(utc_date, "sqlite")
def _utc_date_sqlite(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


dora_service_catalog = sa.Table(
    "dora_service_catalog",
    sa.MetaData(),
    sa.Column("service", sa.String(255), primary_key=True),
    sa.Column("team", sa.String(255), nullable=False),
)


def refresh_service_catalog(connection: sa.Connection, config: DoraConfig) -> None:
    connection.execute(sa.delete(dora_service_catalog))
    if config.service_teams:
        connection.execute(
            sa.insert(dora_service_catalog),
            [{"service": service, "team": team} for service, team in config.service_teams.items()],
        )


def team_or_catalog_team(event_team: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    return sa.func.coalesce(sa.func.nullif(event_team, ""), dora_service_catalog.c.team, "")


def deployments_from_api() -> sa.Select:
    landed = api_deployments.c
    return (
        sa.select(
            landed.deployment_id,
            landed.service,
            team_or_catalog_team(landed.team),
            landed.env,
            landed.version,
            landed.commit_sha,
            landed.repository_url,
            landed.started_at,
            landed.finished_at,
            sa.literal("api"),
            landed.custom_tags,
            landed.change_failure,
            landed.remediation_type,
            landed.updated_at,
            utc_date(landed.finished_at),
        )
        .select_from(
            api_deployments.outerjoin(
                dora_service_catalog, dora_service_catalog.c.service == landed.service
            )
        )
        .where(landed.deleted_at.is_(None))
    )


def incidents_from_api() -> sa.Select:
    failure, named = api_failures.c, api_failure_services.c
    return (
        sa.select(
            failure.failure_id,
            named.service,
            team_or_catalog_team(failure.team),
            failure.env,
            failure.severity,
            failure.name,
            sa.case((failure.finished_at.is_(None), "open"), else_="resolved"),
            failure.started_at,
            failure.finished_at,
            sa.literal("api"),
            sa.null(),
            failure.commit_sha,
            failure.version,
            failure.custom_tags,
            failure.updated_at,
            utc_date(failure.started_at),
            utc_date(failure.finished_at),
        )
        .select_from(
            api_failures.join(
                api_failure_services, named.failure_id == failure.failure_id
            ).outerjoin(dora_service_catalog, dora_service_catalog.c.service == named.service)
        )
        .where(failure.deleted_at.is_(None))
    )


# The columns the old rebuild wrote, in its SELECTs' order; columns added since (the
# change-failure classification) keep their defaults, as they would have then.
OLD_COLUMNS = {
    dora_deployments.name: (
        *("deployment_id", "service", "team", "env", "version", "commit_sha"),
        *("repository_url", "started_at", "finished_at", "source", "custom_tags"),
        *("change_failure", "remediation_type", "ingested_at", "finished_day"),
    ),
    dora_incidents.name: (
        *("incident_id", "service", "team", "env", "severity", "name", "status"),
        *("started_at", "finished_at", "source", "source_url", "commit_sha", "version"),
        *("custom_tags", "ingested_at", "started_day", "finished_day"),
    ),
}


def _insert_from_select(connection: sa.Connection, table: sa.Table, rows: sa.Select) -> None:
    connection.execute(sa.insert(table).from_select(list(OLD_COLUMNS[table.name]), rows))


def _lock(connection: sa.Connection, *tables: sa.Table) -> None:
    """The old `WarehouseResource.rewriting`: writers wait, readers keep the old rows."""
    if connection.dialect.name != "sqlite":
        names = ", ".join(table.name for table in sorted(tables, key=lambda t: t.name))
        connection.exec_driver_sql(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")


def old_full_rebuild(engine: sa.Engine, config: DoraConfig) -> float:
    """Seconds to rebuild both normalized tables the old way, in one transaction."""
    dora_service_catalog.create(engine, checkfirst=True)
    started = time.perf_counter()
    with engine.connect() as connection:
        pagerduty = pagerduty_incident_rows(connection, config)
    with engine.begin() as connection:
        _lock(connection, dora_deployments, dora_incidents, dora_service_catalog)
        refresh_service_catalog(connection, config)
        connection.execute(sa.delete(dora_deployments))
        _insert_from_select(connection, dora_deployments, deployments_from_api())
        connection.execute(sa.delete(dora_incidents))
        _insert_from_select(connection, dora_incidents, incidents_from_api())
        if pagerduty:
            old = OLD_COLUMNS[dora_incidents.name]
            connection.execute(
                sa.insert(dora_incidents), [{name: row[name] for name in old} for row in pagerduty]
            )
    elapsed = time.perf_counter() - started
    dora_service_catalog.drop(engine)
    return elapsed


# --- ingest latency ---------------------------------------------------------------------------

Sample = tuple[float, float, int]  # wall-clock send time, latency in ms, HTTP status (0: none)


@dataclass(frozen=True)
class LoadPlan:
    clients: int  # processes
    rate: float  # requests per second, all clients together
    before_s: float
    reteamed_services: int


def spin(seconds: float) -> None:
    """Keep one core busy in this process without touching the warehouse: the control
    that tells a 2-core machine's CPU contention from the refresh's own effect."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sum(range(10_000))


def _deployment_body(worker: int, sequence: int) -> bytes:
    finished = LOAD_FINISHED_AT + sequence
    attributes = {
        "service": SERVICE_NAMES[sequence % SERVICES],
        "env": "prod",
        "id": f"load-{worker}-{sequence}",
        "started_at": finished - 300,
        "finished_at": finished,
    }
    return json.dumps({"data": {"attributes": attributes}}).encode()


class KeepAliveClient:
    """A minimal HTTP/1.1 client: keep-alive connections on a free list, one request at a
    time each, a new one opened whenever none is free.

    httpx costs CPU per request in proportion to its open connections: after a 1 s write
    stall its four client processes, each grown to ~50 connections, took more CPU than
    the API server on two cores and kept latencies high for seconds after the stall.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        """The response's status; a request on a connection the server closed while idle
        is sent again on a new one (the deployment ids make a repeated POST harmless)."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"DD-API-KEY: {API_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        if self.idle:
            try:
                return await self._exchange(self.idle.pop(), head + body)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # closed by the server while idle (uvicorn's keep-alive timeout)
        return await self._exchange(
            await asyncio.open_connection("127.0.0.1", self.port), head + body
        )

    async def _exchange(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], message: bytes
    ) -> int:
        reader, writer = connection
        try:
            writer.write(message)
            status = await self._status(reader)
        except BaseException:
            writer.close()
            raise
        self.idle.append(connection)
        return status

    @staticmethod
    async def _status(reader: asyncio.StreamReader) -> int:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        return int(head.split(b" ", 2)[1])


async def _post(client: KeepAliveClient, body: bytes, samples: list[Sample]) -> None:
    sent, started = time.time(), time.perf_counter()
    try:
        status = await client.request("POST", DEPLOYMENT_PATH, body)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        status = 0
    samples.append((sent, (time.perf_counter() - started) * 1000, status))


async def _paced_posts(
    worker: int, port: int, rate: float, go: Any, stop: Any, messages: Any
) -> list[Sample]:
    """POSTs on a fixed schedule, each in its own task: an open loop, so a slow answer
    never delays the requests after it (a closed loop would hide a stall)."""
    samples: list[Sample] = []
    client = KeepAliveClient(port)
    await client.request("GET", "/healthz")  # a connection open before the clock starts
    messages.put(("ready", worker))
    await asyncio.to_thread(go.wait)
    pending: set[asyncio.Task[None]] = set()
    tick, sequence = time.monotonic(), 0
    while not stop.is_set():
        sequence += 1
        task = asyncio.create_task(_post(client, _deployment_body(worker, sequence), samples))
        pending.add(task)
        task.add_done_callback(pending.discard)
        tick += 1 / rate
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    await asyncio.gather(*pending)
    for _, writer in client.idle:
        writer.close()
    return samples


def load_client(worker: int, port: int, rate: float, go: Any, stop: Any, messages: Any) -> None:
    """One client process: its own event loop, posting its share of the rate."""
    messages.put(asyncio.run(_paced_posts(worker, port, rate, go, stop, messages)))


@contextmanager
def steady_load(port: int, plan: LoadPlan) -> Iterator[list[Sample]]:
    """Client processes posting from entry to exit; the samples list fills on exit."""
    # Forked while this process runs no other thread (Dagster's in-process runs leave
    # none): a spawned client re-imports this module and Dagster with it, ~10 s on two
    # busy cores. The children use none of the parent's connections.
    context = multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")
    messages, go, stop = context.Queue(), context.Event(), context.Event()
    workers = [
        context.Process(
            target=load_client,
            args=(worker, port, plan.rate / plan.clients, go, stop, messages),
            daemon=True,
        )
        for worker in range(plan.clients)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        messages.get(timeout=180)  # each client says it is connected
    samples: list[Sample] = []
    go.set()
    try:
        yield samples
    finally:
        stop.set()
        for _ in workers:
            samples.extend(messages.get(timeout=120))
        for worker in workers:
            worker.join(timeout=30)


def latency_figures(samples: Sequence[Sample], first: float, end: float) -> dict[str, Any]:
    """p50/p99/max of the requests sent in `[first, end)`, and how many did not get a 202."""
    window = [(ms, status) for sent, ms, status in samples if first <= sent < end]
    latencies = sorted(ms for ms, _ in window)
    if not latencies:
        return {"requests": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "non_202": 0}

    def percentile(fraction: float) -> float:
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))]

    return {
        "requests": len(latencies),
        "p50_ms": round(percentile(0.5), 1),
        "p99_ms": round(percentile(0.99), 1),
        "max_ms": round(latencies[-1], 1),
        "non_202": sum(status != 202 for _, status in window),
    }


def ingest_latency(
    url: str, engine: sa.Engine, config_path: Path, plan: LoadPlan, workdir: Path
) -> tuple[dict[str, Any], DoraConfig]:
    """`dora api` under steady load: latency before, while this process only spins one
    core, while a refresh applies a catalog edit (plus the load's own events) and just
    after it; returns the figures and the new config."""
    config = write_config(config_path, catalog(plan.reteamed_services))
    port = free_port()
    server = start_api(workdir, port, url)
    try:
        with steady_load(port, plan) as samples:
            time.sleep(LOAD_WARMUP_S)
            before_start = time.time()
            time.sleep(plan.before_s)
            # The control comes first: after a refresh the API may still be catching up.
            control_start = time.time()
            spin(plan.before_s)
            control_end = time.time()
            time.sleep(LOAD_SETTLE_S)
            refresh_start = time.time()
            with transaction_times(engine) as spells:
                refreshed = refresh_both(engine, config)
            refresh_end = time.time()
            time.sleep(LOAD_AFTER_S)
    finally:
        server.terminate()
        server.wait(timeout=60)
    before = latency_figures(samples, before_start, control_start)
    control = latency_figures(samples, control_start, control_end)
    during = latency_figures(samples, refresh_start, refresh_end)
    after = latency_figures(samples, refresh_end, refresh_end + LOAD_AFTER_S)
    # Answered only once the refresh had ended: requests that waited it out entirely.
    during["answered_after_refresh"] = sum(
        refresh_start <= sent < refresh_end and sent + ms / 1000 > refresh_end
        for sent, ms, _ in samples
    )
    figures = {
        "ingest_p99_ms_before": before["p99_ms"],
        "ingest_p99_ms_during_refresh": during["p99_ms"],
        "ingest_max_ms_during_refresh": during["max_ms"],
        "ingest_before": before,
        "ingest_during_refresh": during,
        "ingest_p99_ms_during_cpu_control": control["p99_ms"],
        "ingest_during_cpu_control": control,
        "ingest_after_refresh": after,
        "ingest_refresh_s": round(refreshed.seconds, 3),
        "ingest_refresh_rows_written": refreshed.rows_written,
        **spell_figures("ingest_refresh_", spells, refreshed.seconds),
        "ingest_events_spooled": events_spooled(engine),
        "ingest_rate_per_s": plan.rate,
        "ingest_clients": plan.clients,
        "ingest_reteamed_services": plan.reteamed_services,
    }
    say(
        f"    before: {before}\n    during a {refreshed.seconds:.2f} s refresh"
        f" ({refreshed.rows_written:,} rows written, {len(spells)} transactions: median"
        f" {figures['ingest_refresh_median_transaction_ms']:.1f} ms, p99"
        f" {figures['ingest_refresh_p99_transaction_ms']:.0f} ms, the longest"
        f" {figures['ingest_refresh_longest_transaction_ms']:.0f} ms; inside one"
        f" {figures['ingest_refresh_in_transaction_share']:.0%} of the time): {during}\n"
        f"    events the API spooled rather than wait for the lock (SQLite):"
        f" {figures['ingest_events_spooled']:,}\n"
        f"    in the {LOAD_AFTER_S:.0f} s after it: {after}\n"
        f"    control, {plan.before_s:.0f} s of this process spinning one core with no"
        f" warehouse work: {control}"
    )
    return figures, config


def events_spooled(engine: sa.Engine) -> int:
    """How many events the API kept in its spool (SQLite) while a job held the lock: the
    last entry the warehouse took from it (entries are numbered from 1, never reused)."""
    with reading(engine) as connection:
        state = read_state(connection, SPOOL_STATE)
    return json.loads(state)["through"] if state else 0


# --- one history, end to end ------------------------------------------------------------------


def first_build(engine: sa.Engine, config: DoraConfig) -> dict[str, Any]:
    """The normalized tables from nothing: every landing row read once, by the product."""
    with transaction_times(engine) as spells:
        refreshed = refresh_both(engine, config)
    rows = refreshed.rows_written
    return {
        "first_build_s": round(refreshed.seconds, 3),
        "first_build_deployments_s": round(refreshed.deployments_s, 3),
        "first_build_incidents_s": round(refreshed.incidents_s, 3),
        "first_build_rows": rows,
        "first_build_rows_per_s": round(rows / refreshed.seconds),
        **spell_figures("first_build_", spells, refreshed.seconds),
    }


def prepare(
    url: str, load: Callable[[str, History], None], history: History, config: DoraConfig
) -> tuple[sa.Engine, Orchestrator, dict[str, Any]]:
    """Landing rows, the first build, refresh runs with nothing new (after the first,
    `event_api_events` has a watermark, as in steady state) and the year's backfill."""
    timed("bulk load of the landing tables (not a product path)", lambda: load(url, history))
    engine = open_warehouse(url)
    orchestrator = Orchestrator(url)
    figures = first_build(engine, config)
    say(
        f"  first build (refresh from no watermark): {figures['first_build_s']:.1f} s,"
        f" {figures['first_build_rows_per_s']:,} rows/s, longest transaction"
        f" {figures['first_build_longest_transaction_ms']:.0f} ms"
    )
    if not is_sqlite(engine):
        vacuum_analyze(engine, [dora_deployments, dora_incidents])
    # The first run of `event_api_events` has no watermark and counts every landing row.
    refresh_run(orchestrator)
    idle_s, idle_steps = refresh_run(orchestrator)
    say(f"  Dagster refresh run with nothing new: {idle_s:.2f} s {idle_steps}")
    backfill_s = timed(
        f"metric backfill, {DAYS} days x {len(METRIC_KEYS)} assets, one run",
        lambda: orchestrator.run(late_data_job.name, tags=RANGE_TAGS),
    )
    figures.update(
        {
            "refresh_run_no_changes_s": round(idle_s, 3),
            "refresh_run_no_changes_steps_s": idle_steps,
            "backfill_s": round(backfill_s, 3),
        }
    )
    return engine, orchestrator, figures


def cycle_figures(direct: Cycle) -> dict[str, Any]:
    return {
        "refresh_s": round(direct.refresh_s, 3),
        "refresh_parts_s": rounded(direct.refresh_parts),
        "refresh_rows_written": direct.rows_written,
        "sensor_s": round(direct.rebuilt.sensor_s, 3),
        "rebuild_s": round(direct.rebuilt.rebuild_s, 3),
        "rebuild_steps_s": direct.rebuilt.rebuild_steps,
        "stale_days": direct.rebuilt.stale_days,
        "rebuild_range_days": direct.rebuilt.range_days,
    }


def describe(label: str, refresh: str, rebuilt: Rebuilt) -> None:
    say(
        f"  {label}: {refresh}; sensor {rebuilt.sensor_s:.3f} s; rebuild of"
        f" {rebuilt.stale_days} stale days (a range of {rebuilt.range_days})"
        f" {rebuilt.rebuild_s:.2f} s {rebuilt.rebuild_steps}"
    )


def run_history(
    url: str,
    load: Callable[[str, History], None],
    history: History,
    config_path: Path,
    plan: LoadPlan | None,
    workdir: Path,
) -> dict[str, Any]:
    """Prepare; change batch 1 through the refresh calls, the sensor and its rebuild;
    change batch 2 through a Dagster refresh run; the latency phase (given a plan); then
    one catch-up refresh, tick and rebuild (every ranged run costs Dagster seconds of
    bookkeeping) and the checks."""
    config = write_config(config_path, catalog())
    engine, orchestrator, figures = prepare(url, load, history, config)
    direct = direct_cycle(engine, orchestrator, config, change_batch(engine, history, 0))
    describe(
        "change batch 1",
        f"refresh {direct.refresh_s:.3f} s {rounded(direct.refresh_parts)},"
        f" {direct.rows_written} rows written",
        direct.rebuilt,
    )
    figures.update(cycle_figures(direct))
    apply_change_batch(engine, change_batch(engine, history, 1))
    run_s, steps = refresh_run(orchestrator)
    say(f"  change batch 2: Dagster refresh run {run_s:.2f} s {steps}")
    figures.update({"refresh_run_s": round(run_s, 3), "refresh_run_steps_s": steps})
    if plan is not None:
        say(f"  ingest latency: {plan.clients} client processes at {plan.rate:.0f} requests/s")
        latency, config = ingest_latency(url, engine, config_path, plan, workdir)
        figures.update(latency)
    refresh_both(engine, config)
    describe("catch-up", "refresh", sensor_and_rebuild(orchestrator))
    figures.update(verify(engine, orchestrator, config))
    engine.dispose()
    return figures


def verify(engine: sa.Engine, orchestrator: Orchestrator, config: DoraConfig) -> dict[str, Any]:
    started = time.perf_counter()
    differing = full_comparison(engine, orchestrator)
    audit_s = time.perf_counter() - started
    maintained = maintained_columns(engine, config)
    compared = {
        name: (maintained[name] & set(OLD_COLUMNS[name])) - BOOKKEEPING_COLUMNS
        for name in OLD_COLUMNS
    }
    incremental = normalized_digest(engine, compared)
    full_rebuild_s = old_full_rebuild(engine, config)
    rebuilt = normalized_digest(engine, compared)
    say(
        f"  full comparison (the daily audit's query): {audit_s:.2f} s, differing days"
        f" {differing}; old-way full rebuild {full_rebuild_s:.2f} s; normalized tables"
        f" {'equal' if incremental == rebuilt else 'DIFFER'} ({incremental} vs {rebuilt})"
    )
    return {
        "audit_comparison_s": round(audit_s, 3),
        "differing_days": differing,
        "full_rebuild_s": round(full_rebuild_s, 3),
        "normalized_rows": {name: rows for name, (rows, _) in incremental.items()},
        "compared_columns": {name: sorted(columns) for name, columns in compared.items()},
        "normalized_equal_to_full_rebuild": incremental == rebuilt,
        "values_agree": incremental == rebuilt and not any(differing.values()),
    }


# --- harness ----------------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident memory, the kernel's high-water mark (a sampling
    thread would compete for the GIL with the work it watches)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(label: str, action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    say(f"  {label}: {elapsed:.1f} s")
    return elapsed


def rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 3) for name, value in seconds.items()}


def verdict(value: float, target: float) -> str:
    return f"target <= {target}: {'met' if value <= target else 'NOT met'}"


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)


def prefixed(prefix: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{name}": value for name, value in figures.items()}


HALF_HISTORY_KEYS = (
    "refresh_s",
    "sensor_s",
    "rebuild_s",
    "refresh_run_s",
    "first_build_s",
    "full_rebuild_s",
)


def half_history_figures(full: dict[str, Any], half: dict[str, Any]) -> dict[str, Any]:
    """`<key>_half_history_s` and the full/half ratios (None without a half run)."""
    figures = {f"{key[:-2]}_half_history_s": half.get(key) for key in HALF_HISTORY_KEYS}
    for key in ("refresh", "sensor", "refresh_run"):
        figures[f"{key}_full_over_half"] = ratio(full[f"{key}_s"], half.get(f"{key}_s"))
    return figures


def summarize(figures: dict[str, Any]) -> None:
    say("")
    if figures["quick"]:
        say("--quick: a smoke run; at this size fixed costs dominate, so no target is judged")
    say(
        f"history: {figures['history_deployments']:,} deployments,"
        f" {figures['history_incidents']:,} incidents; change batch {figures['change_batch']}"
    )
    say(
        f"first build (SQLite): {figures['first_build_s']:.1f} s,"
        f" {figures['first_build_rows_per_s']:,} normalized rows/s"
    )
    for key, name, target in (
        ("refresh", "refresh", REFRESH_GROWTH_TARGET),
        ("sensor", "sensor tick", SENSOR_GROWTH_TARGET),
    ):
        growth = figures[f"{key}_full_over_half"]
        if growth is not None:
            say(
                f"{name} (SQLite): {figures[f'{key}_s']:.3f} s, half history"
                f" {figures[f'{key}_half_history_s']:.3f} s = {growth}x"
                f" ({verdict(growth, target)})"
            )
    for prefix, name in (("", "SQLite"), ("postgres_", "PostgreSQL")):
        if figures.get(f"{prefix}refresh_s") is None:
            continue
        share = figures[f"{prefix}refresh_over_full_rebuild"]
        say(
            f"{name}: refresh {figures[f'{prefix}refresh_s']:.3f} s = {share:.1%} of the old"
            f" full rebuild {figures[f'{prefix}full_rebuild_s']:.2f} s"
            f" ({verdict(share, REFRESH_SHARE_TARGET)}); whole Dagster refresh run"
            f" {figures[f'{prefix}refresh_run_s']:.2f} s; sensor {figures[f'{prefix}sensor_s']:.3f}"
            f" s; rebuild of {figures[f'{prefix}stale_days']} stale days"
            f" {figures[f'{prefix}rebuild_s']:.2f} s (the year's backfill:"
            f" {figures[f'{prefix}backfill_s']:.1f} s)"
        )
        if figures.get(f"{prefix}ingest_p99_ms_before") is None:
            continue
        before = figures[f"{prefix}ingest_p99_ms_before"]
        growth = figures[f"{prefix}ingest_p99_during_over_before"]
        during = figures[f"{prefix}ingest_p99_ms_during_refresh"]
        worst = figures[f"{prefix}ingest_max_ms_during_refresh"]
        say(
            f"  ingest p99 {before:.1f} ms before, {during:.1f} ms during the refresh ="
            f" {growth}x ({verdict(growth, INGEST_P99_GROWTH_TARGET)});"
            f" max during {worst:.0f} ms ({verdict(worst, INGEST_MAX_TARGET_MS)}); p99 while"
            f" only spinning a core {figures[f'{prefix}ingest_p99_ms_during_cpu_control']:.1f} ms"
        )
    say(
        f"values agree: {figures['values_agree']} {figures['agreement']};"
        f" peak RSS {figures['peak_rss_mb']} MiB; load average"
        f" {figures['load_average_1m']} at the start, {figures['load_average_1m_end']} at the end"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20,000 deployments, 2,000 incidents, no half-history run",
    )
    parser.add_argument("--deployments", type=int, default=1_000_000)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=os.environ.get("DORA_TEST_POSTGRES_URL"))
    parser.add_argument("--clients", type=int, default=4, help="load client processes")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s, all clients")
    parser.add_argument(
        "--reteamed-services",
        type=int,
        default=SERVICES // 20,
        help="services the catalog edit of the latency phase moves to another team",
    )
    args = parser.parse_args()
    deployments, incidents = (20_000, 2_000) if args.quick else (args.deployments, args.incidents)
    plan = LoadPlan(args.clients, args.rate, 3.0 if args.quick else 5.0, args.reteamed_services)
    figures: dict[str, Any] = {
        "quick": args.quick,
        "history_deployments": deployments,
        "history_incidents": incidents,
        "change_batch": {
            "deployments": CHANGE_DEPLOYMENTS,
            "failures": CHANGE_FAILURES,
            "late_resolutions": CHANGE_LATE_RESOLUTIONS,
            "retractions": CHANGE_RETRACTIONS,
        },
        "load_average_1m": round(os.getloadavg()[0], 2),
    }

    with tempfile.TemporaryDirectory(prefix="dora_steady_") as scratch:
        folder = Path(scratch)
        config_path = folder / "dora.yaml"
        # The Dagster assets read DORA_CONFIG; the direct refresh calls get the same file.
        os.environ["DORA_CONFIG"] = str(config_path)

        say(f"SQLite, {deployments:,} deployments and {incidents:,} incidents")
        history = generate(deployments, incidents)
        full = run_history(
            f"sqlite:///{folder / 'full.db'}", load_sqlite, history, config_path, plan, folder
        )
        figures.update(full)
        agreement = {"sqlite": full["values_agree"]}

        if args.postgres_url:
            say("PostgreSQL, the same history")
            with postgres_database(args.postgres_url) as postgres_url:
                postgres = run_history(
                    postgres_url, load_postgres, history, config_path, plan, folder
                )
            figures.update(prefixed("postgres_", postgres))
            agreement["postgres"] = postgres["values_agree"]
        else:
            say("no --postgres-url / DORA_TEST_POSTGRES_URL: PostgreSQL skipped")
        del history

        half: dict[str, Any] = {}
        if args.quick:
            say("--quick: no half-history run (at this size growth is all fixed costs)")
        else:
            say(f"SQLite, half the history: {deployments // 2:,} and {incidents // 2:,}")
            half_history = generate(deployments // 2, incidents // 2)
            half = run_history(
                f"sqlite:///{folder / 'half.db'}",
                load_sqlite,
                half_history,
                config_path,
                None,
                folder,
            )
            agreement["sqlite_half_history"] = half["values_agree"]

    figures.update(half_history_figures(figures, half))
    figures.update(
        {
            "refresh_over_full_rebuild": ratio(figures["refresh_s"], figures["full_rebuild_s"], 4),
            "postgres_refresh_over_full_rebuild": ratio(
                figures.get("postgres_refresh_s"), figures.get("postgres_full_rebuild_s"), 4
            ),
            "ingest_p99_during_over_before": ratio(
                figures.get("ingest_p99_ms_during_refresh"), figures.get("ingest_p99_ms_before")
            ),
            "postgres_ingest_p99_during_over_before": ratio(
                figures.get("postgres_ingest_p99_ms_during_refresh"),
                figures.get("postgres_ingest_p99_ms_before"),
            ),
            "values_agree": all(agreement.values()),
            "agreement": agreement,
            "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1),
            "load_average_1m_end": round(os.getloadavg()[0], 2),
        }
    )
    summarize(figures)
    print(json.dumps(figures))
    if not figures["values_agree"]:
        raise SystemExit("the incremental tables disagree with a full rebuild: see above")


if __name__ == "__main__":
    main()
