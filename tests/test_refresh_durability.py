"""The refresh under stress: a SIGKILL mid-run, untouched rows, a change committed while a
metric day is being rebuilt, and a warehouse built by revision 0001 upgraded in place.

Each runs on SQLite and PostgreSQL unless the situation only exists on one of them.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from incremental_support import (
    NO_OVERLAP,
    classification_snapshot,
    classify_from_scratch,
    normalized_rows,
    recomputed_normalized,
    refresh_all,
)

from connectors.config import DoraConfig
from connectors.events.schemas import DeploymentEvent, FailureEvent
from connectors.events.store import EventStore
from connectors.warehouse import create_engine, is_sqlite, open_warehouse
from connectors.warehouse.engine import normalize_url
from connectors.warehouse.migrate import alembic_config, upgrade
from connectors.warehouse.schema import (
    changed_sequences,
    dora_change_failure_rate_daily,
    dora_deployments,
    dora_time_to_restore_daily,
    ingest_state,
    metric_changed_days,
    pagerduty_webhook_incidents,
)
from dora_assets import changed_days
from dora_assets.change_failures.apply import classify_changed
from dora_assets.metrics.change_failure_rate import change_failure_rate_rows
from dora_assets.metrics.rebuild import replace_days
from dora_assets.normalized.changes import (
    CHUNK_KEYS,
    FEED_PACING,
    MIN_CHUNK_KEYS,
    RE_APPLY_PACING,
)
from dora_assets.normalized.deployments import deployment_sources
from dora_assets.normalized.refresh import refresh
from dora_assets.resources import WarehouseResource

CFR = dora_change_failure_rate_daily.name
TTR = dora_time_to_restore_daily.name
DEPLOYMENTS_WATERMARK = "dora_deployments.api"


def deployments(count: int, first: dt.datetime = dt.datetime(2025, 3, 1)) -> list[DeploymentEvent]:
    """`count` deployments, one a minute from `first`."""
    return [
        DeploymentEvent(
            id=f"d{n:06d}",
            service=f"svc{n % 7}",
            env="prod",
            started_at=first + dt.timedelta(minutes=n),
            finished_at=first + dt.timedelta(minutes=n, seconds=30),
        )
        for n in range(count)
    ]


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def reader(url: str) -> sa.Engine:
    """A plain engine: the warehouse's own SQLite engines begin every transaction
    IMMEDIATE, so their reads would queue behind the refresh being watched."""
    return sa.create_engine(normalize_url(url))


REFRESH_SCRIPT = """
import sys
from connectors.config import DoraConfig
from connectors.warehouse import open_warehouse
from dora_assets.normalized.deployments import deployment_sources
from dora_assets.normalized.refresh import refresh

engine = open_warehouse(sys.argv[1])
refresh(engine, "dora_deployments", deployment_sources(DoraConfig()), DoraConfig())
"""


def test_a_refresh_killed_mid_run_leaves_whole_chunks_and_the_next_run_converges(
    warehouse: sa.Engine, warehouse_url: str, tmp_path: Path
) -> None:
    total = 30 * CHUNK_KEYS
    EventStore(warehouse).upsert_deployments(deployments(total))
    process = subprocess.Popen([sys.executable, "-c", REFRESH_SCRIPT, warehouse_url])
    watcher = reader(warehouse_url)
    deadline = time.monotonic() + 120
    while count(watcher, dora_deployments) < 2 * CHUNK_KEYS:
        assert process.poll() is None, "the refresh finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    watcher.dispose()

    applied = count(warehouse, dora_deployments)
    assert 0 < applied < total
    # Each chunk commits with its watermark, or not at all (chunks shrink from CHUNK_KEYS
    # by halves when writes are slow, down to MIN_CHUNK_KEYS).
    assert applied % MIN_CHUNK_KEYS == 0
    with warehouse.connect() as connection:
        watermark = connection.execute(
            sa.select(ingest_state.c.value).where(ingest_state.c.name == DEPLOYMENTS_WATERMARK)
        ).scalar_one()
    assert watermark

    refresh(warehouse, dora_deployments.name, deployment_sources(DoraConfig()), DoraConfig())
    assert count(warehouse, dora_deployments) == total
    assert (
        normalized_rows(warehouse, dora_deployments)
        == recomputed_normalized(warehouse, DoraConfig())[dora_deployments.name]
    )
    # Every day the history covers is recorded as changed, whichever run wrote it.
    days = {dt.date(2025, 3, 1) + dt.timedelta(days=n) for n in range(total // 1440 + 1)}
    with warehouse.connect() as connection:
        recorded = changed_days.pending(connection, [CFR], min(days), max(days) + dt.timedelta(1))
    assert recorded[CFR] == days


def row_versions(engine: sa.Engine) -> dict[str, object]:
    """Per deployment id, something that changes whenever its row is written."""
    with engine.connect() as connection:
        if is_sqlite(engine):
            return dict(connection.exec_driver_sql("SELECT id, writes FROM row_writes").all())
        return dict(
            connection.exec_driver_sql("SELECT deployment_id, xmin FROM dora_deployments").all()
        )


def count_row_writes(engine: sa.Engine) -> None:
    """SQLite has no row version: count writes per row with triggers."""
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE row_writes (id TEXT PRIMARY KEY, writes INT)")
        for event, row in (("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old")):
            connection.exec_driver_sql(
                f"CREATE TRIGGER count_{event.lower()} AFTER {event} ON dora_deployments BEGIN"
                f" INSERT INTO row_writes VALUES ({row}.deployment_id, 1)"
                " ON CONFLICT (id) DO UPDATE SET writes = writes + 1; END"
            )


def test_rows_a_refresh_does_not_change_are_not_rewritten(warehouse: sa.Engine) -> None:
    if is_sqlite(warehouse):
        count_row_writes(warehouse)
    events = EventStore(warehouse)
    history = deployments(50)
    events.upsert_deployments(history)
    refresh_all(warehouse, DoraConfig())
    before = row_versions(warehouse)

    moved = history[7]
    new = DeploymentEvent(**{**vars(history[0]), "id": "new"})
    events.upsert_deployments(
        [
            *history[:5],  # re-sent unchanged
            DeploymentEvent(**{**vars(moved), "finished_at": moved.finished_at + dt.timedelta(1)}),
            new,
        ]
    )
    events.delete_deployment(history[9].id)
    applied, _ = refresh_all(warehouse, DoraConfig())

    after = row_versions(warehouse)
    rewritten = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert rewritten == {moved.id, history[9].id, new.id}
    assert (applied.inserted, applied.updated, applied.deleted) == (1, 1, 1)


@pytest.mark.postgres
def test_a_change_committed_while_a_day_is_rebuilt_is_not_lost(postgres_url: str) -> None:
    """Only PostgreSQL lets a refresh commit during a metric rebuild (SQLite admits one
    writer at a time). The change commits after the rebuild cleared the day's entry, so
    the entry must survive the rebuild."""
    warehouse = WarehouseResource(url=postgres_url)
    engine = warehouse.engine
    events = EventStore(engine)
    day = dt.date(2025, 3, 1)
    events.upsert_deployments(deployments(1))
    refresh_all(engine, DoraConfig())
    # Built once, so the day has no entry a concurrent insert would have to wait on.
    replace_days(warehouse, dora_change_failure_rate_daily, change_failure_rate_rows, [day])

    def rows_with_a_concurrent_change(first: dt.date, end: dt.date) -> sa.Select:
        late = DeploymentEvent(
            id="late",
            service="svc1",
            started_at=dt.datetime(2025, 3, 1, 9),
            finished_at=dt.datetime(2025, 3, 1, 9, 5),
        )
        events.upsert_deployment(late)
        refresh_all(engine, DoraConfig())  # commits on its own connection, mid-rebuild
        return change_failure_rate_rows(first, end)

    replace_days(warehouse, dora_change_failure_rate_daily, rows_with_a_concurrent_change, [day])
    with engine.connect() as connection:
        assert changed_days.pending(connection, [CFR], day, day + dt.timedelta(1))[CFR] == {day}
    engine.dispose()


def test_a_warehouse_built_by_revision_0001_upgrades_in_place_and_refreshes(
    warehouse_url: str,
) -> None:
    engine = create_engine(warehouse_url)
    command.upgrade(alembic_config(engine), "0001")
    old = sa.MetaData()
    old.reflect(engine)
    moment = dt.datetime(2025, 3, 1, 10)
    deployment_row = {
        "deployment_id": "d1",
        "service": "checkout",
        "team": "",
        "env": "prod",
        "started_at": moment,
        "finished_at": moment,
        "custom_tags": "[]",
        "change_failure": False,
    }
    incident_state = {
        "incident_id": "P1",
        "status": "triggered",
        "teams": "[]",
        "created_at": moment,
        "observed_at": moment,
    }
    with engine.begin() as connection:
        # What today's main leaves behind: landing, the catalog, normalized and metric rows.
        connection.execute(
            old.tables["api_deployments"].insert(),
            [{**deployment_row, "received_at": moment, "updated_at": moment}],
        )
        connection.execute(old.tables["pagerduty_webhook_incidents"].insert(), [incident_state])
        connection.execute(
            old.tables["dora_service_catalog"].insert(),
            [{"service": "checkout", "team": "payments"}],
        )
        connection.execute(
            old.tables["dora_deployments"].insert(),
            [
                {
                    **deployment_row,
                    "team": "payments",
                    "source": "api",
                    "ingested_at": moment,
                    "finished_day": moment.date(),
                }
            ],
        )
        connection.execute(
            old.tables["dora_change_failure_rate_daily"].insert(),
            [
                {
                    "day": moment.date(),
                    "service": "checkout",
                    "team": "payments",
                    "env": "prod",
                    "deployments": 1,
                    "failures": 0,
                    "change_failure_rate": 0.0,
                }
            ],
        )

    upgrade(engine)
    with engine.connect() as connection:
        entered = connection.execute(
            sa.select(changed_sequences.c.service, changed_sequences.c.env)
        )
        assert entered.all() == [("checkout", "prod")]
    inspector = sa.inspect(engine)
    assert "dora_service_catalog" not in inspector.get_table_names()
    assert "metric_changed_days" in inspector.get_table_names()
    with engine.connect() as connection:
        folded = connection.execute(sa.select(pagerduty_webhook_incidents.c.updated_at))
        assert folded.scalar_one() == moment

    catalog = DoraConfig(service_teams={"checkout": "payments"})
    # The first refresh compares the rows in place with landing: nothing to write.
    deployments_applied, incidents_applied = refresh_all(engine, catalog)
    assert deployments_applied.rows_written == 0
    assert deployments_applied.keys_read == 1
    # The webhook incident was never normalized by 0001's build in this warehouse.
    assert incidents_applied.inserted == 1
    # Revision 0003 entered every existing sequence; the refresh classified and cleared it.
    assert count(engine, changed_sequences) == 0
    assert classify_changed(engine, catalog.change_failures).sequences == 0
    # New data flows after the upgrade.
    EventStore(engine).upsert_failure(
        FailureEvent(id="f1", services=("checkout",), started_at=moment, finished_at=moment)
    )
    _, incidents_applied = refresh_all(engine, catalog)
    assert incidents_applied.inserted == 1
    with engine.connect() as connection:
        recorded = connection.execute(
            sa.select(metric_changed_days.c.metric, metric_changed_days.c.day)
        )
        assert set(recorded) == {(CFR, moment.date()), (TTR, moment.date())}
    engine.dispose()
    open_warehouse(warehouse_url).dispose()  # current: a no-op


def test_chunks_halve_after_a_slow_write_and_grow_back_after_quick_ones() -> None:
    budget = FEED_PACING.write_budget_s
    sizes = [FEED_PACING.max_keys]
    for _ in range(6):
        sizes.append(FEED_PACING.next_keys(sizes[-1], budget * 2))
    assert sizes == [2000, 1000, 500, 250, 125, 125, 125]
    assert FEED_PACING.first_keys in sizes
    assert FEED_PACING.next_keys(500, budget / 2) == 500  # within budget: kept
    assert FEED_PACING.next_keys(125, budget / 5) == 250
    assert FEED_PACING.next_keys(CHUNK_KEYS, 0.0) == CHUNK_KEYS
    assert all(size % MIN_CHUNK_KEYS == 0 for size in sizes)
    # A catalog edit's chunks start and end smaller, halving down to a multiple too.
    sizes = [RE_APPLY_PACING.max_keys]
    for _ in range(8):
        sizes.append(RE_APPLY_PACING.next_keys(sizes[-1], 1.0))
    assert sizes[-1] == RE_APPLY_PACING.min_keys
    assert all(size % RE_APPLY_PACING.min_keys == 0 for size in sizes)
    assert RE_APPLY_PACING.first_keys % RE_APPLY_PACING.min_keys == 0


def test_a_catalog_edit_rewrites_its_rows_a_small_chunk_first(warehouse: sa.Engine) -> None:
    EventStore(warehouse).upsert_deployments(deployments(7 * 300))
    refresh_all(warehouse, DoraConfig())
    moved = DoraConfig(service_teams={f"svc{n}": "platform" for n in range(4)})
    rows_per_write: list[int] = []

    def watch(*args: object) -> None:
        statement, parameters, executemany = args[2], args[3], args[5]
        assert isinstance(statement, str)
        if statement.startswith(("UPDATE dora_deployments", "INSERT INTO dora_deployments")):
            rows_per_write.append(len(parameters) if executemany else 1)  # type: ignore[arg-type]

    sa.event.listen(warehouse, "after_cursor_execute", watch)
    applied, _ = refresh_all(warehouse, moved)
    sa.event.remove(warehouse, "after_cursor_execute", watch)

    # Later chunks grow only after quick writes, which depend on the machine.
    assert rows_per_write[0] == RE_APPLY_PACING.first_keys
    assert max(rows_per_write) <= RE_APPLY_PACING.max_keys
    assert sum(rows_per_write) == applied.updated == 4 * 300


def test_changes_committed_while_sequences_are_classified_are_classified_by_the_next_run(
    warehouse: sa.Engine,
) -> None:
    """The classification reads a batch of sequences outside the write lock, then writes:
    a sequence changed in between keeps its entry in the changed-sequences record (its
    `changed_at` moved), so the next run classifies it from what the change left."""
    events = EventStore(warehouse)
    first = dt.datetime(2025, 3, 1)
    sequences = [f"svc{number:02d}" for number in range(20)]

    def deployment(identifier: str, service: str, minute: int, version: str) -> DeploymentEvent:
        moment = first + dt.timedelta(minutes=minute)
        return DeploymentEvent(
            id=identifier,
            service=service,
            env="prod",
            version=version,
            started_at=moment,
            finished_at=moment + dt.timedelta(seconds=30),
        )

    # Long sequences, so reading the batch takes a while: v0, v1, v2, v3, v4, v0, ...
    events.upsert_deployments(
        [
            deployment(f"{service}-{n:04d}", service, n, f"v{n % 5}")
            for service in sequences
            for n in range(400)
        ]
    )
    config = DoraConfig()
    refresh_all(warehouse, config)
    classify_from_scratch(warehouse, config)  # every sequence in the record, classified
    with warehouse.begin() as connection:
        connection.execute(
            sa.insert(changed_sequences),
            [{"service": service, "env": "prod", "changed_at": first} for service in sequences],
        )

    warmed_up = threading.Event()

    def land(service: str, identifier: str) -> None:
        events.upsert_deployments([deployment(identifier, service, 10_000, "v0")])
        sources = deployment_sources(config)
        refresh(warehouse, dora_deployments.name, sources, config, None, NO_OVERLAP)

    def land_rollbacks_meanwhile() -> None:
        land("warm-up", "warm-up")  # a first refresh costs more than the next ones
        warmed_up.set()
        # One change per sequence, in the order the classification reads them: each a
        # rollback to v0 that makes the deployment after the last v0 a change failure.
        for service in sequences:
            land(service, f"{service}-late")

    writer = threading.Thread(target=land_rollbacks_meanwhile)
    writer.start()
    warmed_up.wait()
    classify_changed(warehouse, config.change_failures)
    writer.join()

    refresh_all(warehouse, config)
    incremental = classification_snapshot(warehouse)
    classify_from_scratch(warehouse, config)
    assert classification_snapshot(warehouse) == incremental
