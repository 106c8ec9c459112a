"""Change failures on deployments: the classification and incident attribution of a year,
against DuckDB doing the same from the rows read out of the warehouse.

Builds (not timed) a SQLite warehouse with one year of 1,000,000 deployments over 200
services in two envs and 100,000 incidents, written straight into `dora_deployments`
and `dora_incidents`: about 3% of deployments roll back to the version deployed two
before in their sequence, about 2% are hotfixes of the one before, and a tenth of the
incidents name the version of a deployment that finished shortly before they started.
Then, in one process:

- `classify_s`: the product's classification and attribution of every sequence
  (`classify_changed` with every (service, env) in the changed-sequences record, what
  the first refresh after an upgrade does), writing `dora_deployments`' classification
  columns and `dora_incident_deployments`;
- `metrics_s`: the two daily assets' warehouse work over 365 days
  (`dora_change_failures_daily`, `dora_failed_deployment_recovery_daily`);
- `duckdb_classify_from_warehouse_s`: reading the same rows with SQLAlchemy and pandas
  and computing the same classification and attribution in DuckDB (rollback, rollforward
  and incident rules and their precedence; the data has no PATCH);
- the same classification at half the rows, for how cost grows.

The classification and the DuckDB path each run `--repeat` times (2 by default, 1 with
`--quick`; the classification on a fresh copy of the unclassified warehouse each time),
in turn (classification, DuckDB, classification, DuckDB), and the fastest run of each
counts, as in `bench/metrics_backfill.py`: on these machines the same run varies by a
fifth or more from one try to the next. Every run's time is in the JSON
line (`classify_runs_s`, `duckdb_runs_s`).

Every deployment's classification and every attribution must agree. `peak_rss_mb` is the
kernel's high-water mark of this process during the classification. Ends with one JSON
line; `--quick` runs 100,000 deployments and 10,000 incidents.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import sqlalchemy as sa
from metrics_backfill import (
    DAYS,
    YEAR_START,
    Dataset,
    PeakMemory,
    Result,
    _chunks,
    _day_text,
    _event_columns,
    _ids,
    fastest_in_turn,
    generate,
    say,
)

from connectors.config import ChangeFailureSettings
from connectors.warehouse import open_warehouse
from connectors.warehouse.schema import (
    changed_sequences,
    dora_change_failures_daily,
    dora_deployments,
    dora_failed_deployment_recovery_daily,
    dora_incident_deployments,
    dora_incidents,
)
from dora_assets.change_failures.apply import classify_changed
from dora_assets.change_failures.classify import Classification
from dora_assets.metrics.change_failures import change_failures_rows
from dora_assets.metrics.failed_deployment_recovery import recovery_rows
from dora_assets.metrics.rebuild import replace_days
from dora_assets.resources import WarehouseResource

ROLLBACK_SHARE = 0.03
HOTFIX_SHARE = 0.02
VERSIONED_INCIDENT_SHARE = 0.1
# The `dora_deployments` columns the classification decides.
CLASSIFICATION = list(Classification._fields)


def with_versions(data: Dataset, seed: int = 5) -> Dataset:
    """Versions per sequence, with rollbacks and hotfixes; some incidents name a version."""
    rng = np.random.default_rng(seed)
    deployments = data.deployments.sort_values(["service", "env", "finished_at"]).reset_index(
        drop=True
    )
    sequence = deployments.groupby(["service", "env"], observed=True).cumcount().to_numpy()
    base = np.char.add("v", sequence.astype(str))
    version = base.copy()
    roll = rng.random(len(deployments))
    rollback = (roll < ROLLBACK_SHARE) & (sequence >= 2)
    hotfix = (roll >= ROLLBACK_SHARE) & (roll < ROLLBACK_SHARE + HOTFIX_SHARE) & (sequence >= 1)
    positions = np.arange(len(deployments))
    version[rollback] = base[positions[rollback] - 2]
    version[hotfix] = np.char.add(base[positions[hotfix] - 1], "-hotfix")
    deployments["version"] = version
    incidents = data.incidents.copy()
    incidents["version"] = None
    chosen = np.flatnonzero(rng.random(len(incidents)) < VERSIONED_INCIDENT_SHARE)
    source = rng.integers(0, len(deployments), len(chosen))
    for column in ("service", "team", "env"):
        incidents[column] = incidents[column].astype(str)
        incidents.loc[chosen, column] = deployments[column].astype(str).to_numpy()[source]
    delay = rng.integers(60, 7_200, len(chosen)).astype("timedelta64[s]")
    started = deployments["finished_at"].to_numpy()[source] + delay
    incidents.loc[chosen, "version"] = deployments["version"].to_numpy()[source]
    incidents.loc[chosen, "started_at"] = started
    duration = incidents.loc[chosen, "finished_at"] - incidents.loc[chosen, "started_at"]
    incidents.loc[chosen, "finished_at"] = started + np.where(
        duration.isna(), np.timedelta64("NaT"), np.timedelta64(3_600, "s")
    )
    incidents["started_day"] = incidents["started_at"].dt.floor("D")
    incidents["finished_day"] = incidents["finished_at"].dt.floor("D")
    return Dataset(deployments, incidents)


def load(path: Path, data: Dataset) -> None:
    open_warehouse(f"sqlite:///{path}").dispose()
    connection = sqlite3.connect(path)
    with connection:
        for start, part in _chunks(data.deployments):
            columns = {
                "deployment_id": _ids("d", start, part),
                **_event_columns(part),
                "version": part["version"].to_numpy(),
                "finished_day": _day_text(part["finished_day"]),
            }
            _insert(connection, dora_deployments.name, pd.DataFrame(columns))
        for start, part in _chunks(data.incidents):
            columns = {
                "incident_id": _ids("i", start, part),
                **_event_columns(part),
                "version": part["version"].to_numpy(),
                "status": np.where(part["finished_at"].isna(), "open", "resolved"),
                "started_day": _day_text(part["started_day"]),
                "finished_day": _day_text(part["finished_day"]),
            }
            _insert(connection, dora_incidents.name, pd.DataFrame(columns))
        connection.execute(
            f"INSERT INTO {changed_sequences.name} (service, env, changed_at)"
            " SELECT DISTINCT service, env, '2026-01-01 00:00:00.000000'"
            f" FROM {dora_deployments.name}"
        )
    connection.execute("ANALYZE")
    connection.close()


def _insert(connection: sqlite3.Connection, table: str, chunk: pd.DataFrame) -> None:
    columns = ", ".join(chunk.columns)
    marks = ", ".join("?" * len(chunk.columns))
    connection.executemany(
        f"INSERT INTO {table} ({columns}) VALUES ({marks})",
        chunk.itertuples(index=False, name=None),
    )


DUCKDB_CLASSIFICATION = """
CREATE TEMP TABLE d AS
SELECT *, coalesce(nullif(commit_sha, ''), nullif(version, '')) AS deployed,
       row_number() OVER (PARTITION BY service, env
                          ORDER BY finished_at, started_at, deployment_id) AS pos
FROM deployments;

CREATE TEMP TABLE visible AS
SELECT deployment_id, service, env, deployed, pos, finished_at,
       row_number() OVER w AS rank, lag(deployed) OVER w AS previous_deployed
FROM d WHERE deployed IS NOT NULL
WINDOW w AS (PARTITION BY service, env ORDER BY pos);

CREATE TEMP TABLE rollbacks AS
SELECT deployment_id, service, env, rank, finished_at, previous_deployed, deployed,
       lag(rank) OVER (PARTITION BY service, env, deployed ORDER BY rank) AS target_rank
FROM visible;

CREATE TEMP TABLE is_rollback AS
SELECT * FROM rollbacks
WHERE target_rank IS NOT NULL AND previous_deployed IS DISTINCT FROM deployed;

CREATE TEMP TABLE rollback_failures AS
SELECT f.deployment_id, arg_min(r.deployment_id, r.rank) AS remedy,
       arg_min(r.finished_at, r.rank) AS recovered
FROM is_rollback r
JOIN visible f ON f.service = r.service AND f.env = r.env AND f.rank = r.target_rank + 1
GROUP BY f.deployment_id;

CREATE TEMP TABLE rolled_forward AS
SELECT deployment_id, service, env, pos, finished_at FROM d
WHERE regexp_matches(coalesce(version, ''), '(?i)hotfix')
   OR EXISTS (SELECT 1 FROM unnest(CAST(json(custom_tags) AS VARCHAR[])) AS t(tag)
              WHERE regexp_matches(tag, '(?i)hotfix'));

CREATE TEMP TABLE rollforward_failures AS
SELECT f.deployment_id, r.deployment_id AS remedy, r.finished_at AS recovered
FROM rolled_forward r JOIN d f ON f.service = r.service AND f.env = r.env AND f.pos = r.pos - 1;

-- The latest deployment (in sequence order) finished at or before each moment, overall and
-- per version and per commit: one row per finished_at, so an ASOF join picks exactly it.
CREATE TEMP TABLE last_at AS
SELECT service, env, finished_at, arg_max(deployment_id, pos) AS deployment_id
FROM d GROUP BY service, env, finished_at;

CREATE TEMP TABLE last_version_at AS
SELECT service, env, version, finished_at, arg_max(deployment_id, pos) AS deployment_id
FROM d WHERE version IS NOT NULL GROUP BY service, env, version, finished_at;

CREATE TEMP TABLE last_commit_at AS
SELECT service, env, commit_sha, finished_at, arg_max(deployment_id, pos) AS deployment_id
FROM d WHERE commit_sha IS NOT NULL GROUP BY service, env, commit_sha, finished_at;

CREATE TEMP TABLE latest AS
SELECT i.incident_id, i.service, i.started_at, i.finished_at,
       c.deployment_id AS by_commit, v.deployment_id AS by_version,
       p.deployment_id AS preceding, p.finished_at AS preceding_at
FROM (SELECT * FROM incidents WHERE service <> '') i
ASOF LEFT JOIN last_at p
  ON p.service = i.service AND p.env = i.env AND i.started_at >= p.finished_at
ASOF LEFT JOIN last_version_at v
  ON v.service = i.service AND v.env = i.env AND v.version = i.version
 AND i.started_at >= v.finished_at
ASOF LEFT JOIN last_commit_at c
  ON c.service = i.service AND c.env = i.env AND c.commit_sha = i.commit_sha
 AND i.started_at >= c.finished_at;

CREATE TEMP TABLE attributions AS
SELECT incident_id, service, started_at, finished_at,
       coalesce(by_commit, by_version, preceding) AS deployment_id,
       CASE WHEN by_commit IS NOT NULL THEN 'commit'
            WHEN by_version IS NOT NULL THEN 'version' ELSE 'preceding' END AS method
FROM latest
WHERE by_commit IS NOT NULL OR by_version IS NOT NULL
   OR preceding_at >= started_at - INTERVAL 24 HOUR;

CREATE TEMP TABLE incident_failures AS
SELECT deployment_id,
       CASE WHEN count(*) = count(finished_at) THEN max(finished_at) END AS recovered
FROM attributions GROUP BY deployment_id;

CREATE TEMP TABLE classified AS
SELECT d.deployment_id,
       coalesce(rb.deployment_id, rf.deployment_id, inc.deployment_id) IS NOT NULL
           AS change_failure,
       CASE WHEN rb.deployment_id IS NOT NULL THEN 'rollback'
            WHEN rf.deployment_id IS NOT NULL THEN 'rollforward'
            WHEN inc.deployment_id IS NOT NULL THEN 'incident' END AS change_failure_reason,
       d.deployment_id IN (SELECT deployment_id FROM is_rollback) AS is_rollback,
       d.deployment_id IN (SELECT deployment_id FROM rolled_forward) AS is_rollforward,
       CASE WHEN rb.deployment_id IS NOT NULL THEN 'rollback'
            WHEN rf.deployment_id IS NOT NULL THEN 'rollforward' END AS remediation_type,
       coalesce(rb.remedy, rf.remedy) AS remediation_deployment_id,
       CASE WHEN rb.deployment_id IS NOT NULL THEN rb.recovered
            WHEN rf.deployment_id IS NOT NULL THEN rf.recovered
            ELSE inc.recovered END AS recovered_at
FROM d
LEFT JOIN rollback_failures rb USING (deployment_id)
LEFT JOIN rollforward_failures rf USING (deployment_id)
LEFT JOIN incident_failures inc USING (deployment_id);
"""


def duckdb_classification(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What a notebook user would do: read the rows, classify in DuckDB."""
    engine = sa.create_engine(url)
    d, i = dora_deployments.c, dora_incidents.c
    with engine.connect() as connection:
        deployments = pd.read_sql(
            sa.select(
                d.deployment_id, d.service, d.env, d.version, d.commit_sha, d.custom_tags,
                d.started_at, d.finished_at,
            ),
            connection,
        )  # fmt: skip
        incidents = pd.read_sql(
            sa.select(
                i.incident_id, i.service, i.env, i.started_at, i.finished_at, i.commit_sha,
                i.version,
            ),
            connection,
        )  # fmt: skip
    engine.dispose()
    database = duckdb.connect()
    database.register("deployments", deployments)
    database.register("incidents", incidents)
    database.execute(DUCKDB_CLASSIFICATION)
    classified = database.execute(
        f"SELECT deployment_id, {', '.join(CLASSIFICATION)} FROM classified"
    ).df()
    attributions = database.execute(
        "SELECT a.incident_id, a.service, a.deployment_id, a.method,"
        " epoch(a.started_at) - epoch(d.finished_at) AS lag_seconds"
        " FROM attributions a JOIN d USING (deployment_id)"
    ).df()
    database.close()
    return classified, attributions


def warehouse_classification(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    engine = sa.create_engine(url)
    d, a = dora_deployments.c, dora_incident_deployments.c
    with engine.connect() as connection:
        classified = pd.read_sql(
            sa.select(d.deployment_id, *(d[name] for name in CLASSIFICATION)), connection
        )
        attributions = pd.read_sql(
            sa.select(a.incident_id, a.service, a.deployment_id, a.method, a.lag_seconds),
            connection,
        )
    engine.dispose()
    return classified, attributions


def _canonical(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    frame = frame.sort_values(key).reset_index(drop=True).astype(object)
    for column in frame.columns:
        if column.endswith("_at"):
            frame[column] = pd.to_datetime(frame[column]).dt.floor("s")
        if column == "lag_seconds":
            frame[column] = frame[column].astype(float).round(3)
    return frame.astype(object).where(frame.notna(), None)


def agree(
    product: tuple[pd.DataFrame, pd.DataFrame], duck: tuple[pd.DataFrame, pd.DataFrame]
) -> bool:
    classified = _canonical(product[0], ["deployment_id"]).equals(
        _canonical(duck[0][product[0].columns], ["deployment_id"])
    )
    key = ["incident_id", "service"]
    attributed = _canonical(product[1], key).equals(_canonical(duck[1][product[1].columns], key))
    if not classified or not attributed:
        say(f"  disagreement: classification {classified}, attribution {attributed}")
    return classified and attributed


def classify(loaded: Path, path: Path) -> tuple[float, None]:
    """Classify a fresh copy of the `loaded` (never classified) warehouse at `path`."""
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(loaded, path)
    # The copy's writeback would otherwise fall into the timed run.
    os.sync()
    engine = open_warehouse(f"sqlite:///{path}")
    started = time.perf_counter()
    classified = classify_changed(engine, ChangeFailureSettings())
    elapsed = time.perf_counter() - started
    engine.dispose()
    say(f"  classification: {classified.sequences} sequences in {elapsed:.1f} s")
    return elapsed, None


def timed(work: Callable[[], Result]) -> tuple[float, Result]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def run(
    deployments: int, incidents: int, folder: Path, memory: PeakMemory, repeat: int
) -> dict[str, object]:
    data = with_versions(generate(deployments, incidents))
    loaded = folder / f"loaded-{deployments}.db"
    load(loaded, data)
    path = folder / f"warehouse-{deployments}.db"
    url = f"sqlite:///{path}"
    say(f"{deployments:,} deployments, {incidents:,} incidents loaded")
    classify_peaks: list[int] = []

    def classification() -> tuple[float, None]:
        with memory.section() as peak:
            outcome = classify(loaded, path)
        classify_peaks.append(peak())
        return outcome

    # In turn, so a slow minute of the machine falls on one run of each. DuckDB reads
    # the deployments and incidents, which the classification does not change.
    paths = fastest_in_turn(
        repeat,
        {
            "classification": classification,
            "DuckDB from the warehouse": lambda: timed(lambda: duckdb_classification(url)),
        },
    )
    classify_s, _, classify_runs = paths["classification"]
    duckdb_s, duck, duckdb_runs = paths["DuckDB from the warehouse"]
    resource = WarehouseResource(url=url)
    days = [YEAR_START + dt.timedelta(days=n) for n in range(DAYS)]
    started = time.perf_counter()
    replace_days(resource, dora_change_failures_daily, change_failures_rows, days)
    replace_days(resource, dora_failed_deployment_recovery_daily, recovery_rows, days)
    metrics_s = time.perf_counter() - started
    resource.engine.dispose()
    say(f"  daily assets {metrics_s:.1f} s")
    product = warehouse_classification(url)
    failures = int(product[0]["change_failure"].sum())
    return {
        "classify_s": classify_s,
        "classify_runs": classify_runs,
        # The first run's: later ones start with what DuckDB's run left in the process.
        "classify_peak": classify_peaks[0],
        "metrics_s": metrics_s,
        "duckdb_s": duckdb_s,
        "duckdb_runs": duckdb_runs,
        "change_failures": failures,
        "attributions": len(product[1]),
        "values_agree": agree(product, duck),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="100,000 deployments, 10,000 incidents"
    )
    parser.add_argument(
        "--repeat", type=int, help="runs of each timed path, the fastest counts (default 2)"
    )
    arguments = parser.parse_args()
    repeat = arguments.repeat or (1 if arguments.quick else 2)
    deployments, incidents = (100_000, 10_000) if arguments.quick else (1_000_000, 100_000)
    memory = PeakMemory()
    with tempfile.TemporaryDirectory(prefix="dora-change-failures-") as folder:
        full = run(deployments, incidents, Path(folder), memory, repeat)
        half = run(deployments // 2, incidents // 2, Path(folder), memory, repeat)
    figures = {
        "deployments": deployments,
        "incidents": incidents,
        "repeat": repeat,
        "change_failures": full["change_failures"],
        "attributions": full["attributions"],
        "classify_s": round(full["classify_s"], 2),
        "duckdb_classify_from_warehouse_s": round(full["duckdb_s"], 2),
        "classify_over_duckdb": round(full["classify_s"] / full["duckdb_s"], 2),
        "classify_runs_s": [round(seconds, 2) for seconds in full["classify_runs"]],
        "duckdb_runs_s": [round(seconds, 2) for seconds in full["duckdb_runs"]],
        "metrics_365_days_s": round(full["metrics_s"], 2),
        "half_rows_classify_s": round(half["classify_s"], 2),
        "growth_full_over_half": round(full["classify_s"] / half["classify_s"], 2),
        # The classification's own high-water mark (it runs after the data is loaded);
        # the whole bench, with its generated frames and DuckDB, peaks higher.
        "peak_rss_mb": round(full["classify_peak"] / 2**20, 1),
        "bench_peak_rss_mb": round(memory.read() / 2**20, 1),
        "values_agree": bool(full["values_agree"] and half["values_agree"]),
    }
    say(
        f"classification {figures['classify_s']} s vs DuckDB from the warehouse"
        f" {figures['duckdb_classify_from_warehouse_s']} s: {figures['classify_over_duckdb']}x"
        f" (target <= 1.0x); half rows {figures['half_rows_classify_s']} s"
        f" ({figures['growth_full_over_half']}x growth); peak {figures['peak_rss_mb']} MB"
    )
    print(json.dumps(figures))
    return 0 if figures["values_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
