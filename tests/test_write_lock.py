"""SQLite's one write lock: a writer takes it soon after it is released, gives up after
the busy timeout with the error the event API answers 503 to, and leaves nothing
half-written; the event API's upserts do not wait for it (they are spooled, then land
in order, once each, even across a SIGKILL)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from api_support import (
    API_KEY,
    api_process,
    count_rows,
    deployment,
    failure,
    free_port,
    live_api,
)

from connectors.events.schemas import DeploymentEvent
from connectors.events.spool import Spool, spool_path
from connectors.events.store import EventStore, upsert_events
from connectors.warehouse import create_engine, open_warehouse, reading
from connectors.warehouse import engine as warehouse_engine
from connectors.warehouse.schema import api_deployments, api_failures
from dora_assets.ingest.event_api import event_api_events_asset
from dora_assets.resources import WarehouseResource

DEPLOYMENT = "/api/v2/dora/deployment"
FAILURE = "/api/v2/dora/failure"
STARTED = dt.datetime(2025, 1, 31, 12, tzinfo=dt.UTC)


def deployment_event(identifier: str, version: str) -> DeploymentEvent:
    return DeploymentEvent(
        service="shop",
        started_at=STARTED,
        finished_at=STARTED + dt.timedelta(minutes=5),
        version=version,
        id=identifier,
    )


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


def test_the_api_answers_503_to_a_retraction_while_the_warehouse_stays_locked(
    warehouse_file: Path, short_busy_timeout: float, engine: sa.Engine
) -> None:
    with live_api(engine) as client:
        assert client.post(DEPLOYMENT, json=deployment(id="kept")).status_code == 202
        with lock_held(warehouse_file):
            # A retraction answers from what is stored (404 when unknown): it waits.
            refused = client.delete(f"{DEPLOYMENT}/kept")
        accepted = client.delete(f"{DEPLOYMENT}/kept")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert accepted.status_code == 202
    assert landed(engine) == {"kept": "deleted"}


# --- the spool: upserts do not wait for a job's write ---------------------------------


def landed(engine: sa.Engine) -> dict[str, str]:
    """Landed deployments: id -> version, or "deleted"."""
    d = api_deployments.c
    with reading(engine) as connection:
        rows = connection.execute(sa.select(d.deployment_id, d.version, d.deleted_at)).all()
    return {row.deployment_id: "deleted" if row.deleted_at else row.version for row in rows}


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_upserts_are_spooled_while_the_lock_is_held_and_land_once_it_is_free(
    warehouse_file: Path, short_busy_timeout: float, engine: sa.Engine
) -> None:
    with live_api(engine) as client:
        with lock_held(warehouse_file):
            # Longer than the busy timeout: a write that waited would have failed (503).
            time.sleep(short_busy_timeout)
            posted = client.post(DEPLOYMENT, json=deployment(id="while-locked", version="v1"))
            failure_posted = client.post(
                FAILURE, json=failure(id="f-while-locked", services=["shop", "cart"])
            )
            assert landed(engine) == {}  # in the spool, not in the warehouse yet
            assert not Spool(spool_path(engine)).is_empty()
        assert posted.status_code == failure_posted.status_code == 202
        assert posted.json()["data"]["id"] == "while-locked"
        assert failure_posted.json()["data"]["id"] == "f-while-locked"
        # Nothing else is sent: the API applies the spool on its own once the lock is free.
        assert wait_for(lambda: landed(engine) == {"while-locked": "v1"})
        assert count_rows(engine, api_failures) == 1
        assert Spool(spool_path(engine)).is_empty()
        read = client.get("/api/v2/dora/deployments/while-locked")
        failure_read = client.get("/api/v2/dora/failures/f-while-locked")
    assert read.status_code == 200
    assert read.json()["data"]["attributes"]["version"] == "v1"
    assert failure_read.json()["data"]["attributes"]["services"] == ["cart", "shop"]


def test_a_read_or_retraction_after_a_spooled_upsert_sees_it(
    warehouse_file: Path, engine: sa.Engine
) -> None:
    with live_api(engine) as client:
        with lock_held(warehouse_file, release_after_s=0.3):
            client.post(DEPLOYMENT, json=deployment(id="spooled", version="v1"))
            # Both wait for the lock, then apply the spool before they read.
            read = client.get("/api/v2/dora/deployments/spooled")
        with lock_held(warehouse_file, release_after_s=0.3):
            client.post(DEPLOYMENT, json=deployment(id="spooled", version="v2"))
            client.post(DEPLOYMENT, json=deployment(id="retracted"))
            retracted = client.delete(f"{DEPLOYMENT}/retracted")
        # A later direct write of the same id comes after the spooled one.
        with lock_held(warehouse_file, release_after_s=0.3):
            client.post(DEPLOYMENT, json=deployment(id="resent", version="v1"))
        client.post(DEPLOYMENT, json=deployment(id="resent", version="v2"))
    assert read.status_code == 200
    assert read.json()["data"]["attributes"]["version"] == "v1"
    assert retracted.status_code == 202
    assert landed(engine) == {"spooled": "v2", "retracted": "deleted", "resent": "v2"}


def test_a_spool_entry_is_applied_once_even_when_its_removal_was_lost(
    warehouse_file: Path, engine: sa.Engine
) -> None:
    spool = Spool(spool_path(engine))
    spool.append([deployment_event("again", "v1")])
    with engine.begin() as connection:  # applied, then the process died before removing it
        assert spool.apply(connection, upsert_events) == 1
    # Then another writer (a bulk load) sends a newer version...
    EventStore(engine).upsert_deployments([deployment_event("again", "v2")])
    # ...and the API, restarted, finds the entry still in its spool.
    EventStore(engine, spool).take_up_spool()
    assert landed(engine) == {"again": "v2"}
    assert spool.is_empty()
    # A spool deleted and made again counts from 1: its entries are not taken as applied.
    spool.dispose()
    for leftover in warehouse_file.parent.glob(f"{warehouse_file.name}.spool*"):
        leftover.unlink()
    fresh = Spool(spool_path(engine))
    fresh.append([deployment_event("after-reset", "v1")])
    EventStore(engine, fresh).take_up_spool()
    assert landed(engine) == {"again": "v2", "after-reset": "v1"}
    fresh.dispose()


def test_spool_reads_never_wait_for_the_warehouse_lock(
    warehouse_file: Path, short_busy_timeout: float, engine: sa.Engine
) -> None:
    spool = Spool(spool_path(engine))
    spool.append([deployment_event("landed", "v1")])
    with engine.begin() as connection:
        spool.apply(connection, upsert_events)
    with lock_held(warehouse_file):
        time.sleep(short_busy_timeout)
        # A write would give up now (OperationalError); these only read the warehouse.
        spool.forget_applied(engine)
        assert spool.is_empty()
    spool.dispose()


def test_the_refresh_lands_what_the_spool_holds(warehouse_file: Path, engine: sa.Engine) -> None:
    spool = Spool(spool_path(engine))
    spool.append([deployment_event("left-in-spool", "v1")])
    result = dg.materialize(
        [event_api_events_asset],
        resources={"warehouse": WarehouseResource(url=f"sqlite:///{warehouse_file}")},
    )
    metadata = result.asset_materializations_for_node("event_api_events")[0].metadata
    assert metadata["spooled_events_landed"].value == 1
    assert metadata["deployments"].value == 1
    assert landed(engine) == {"left-in-spool": "v1"}
    assert spool.is_empty()
    spool.dispose()


def test_every_spooled_event_survives_sigkill(warehouse_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{warehouse_file}"
    port = free_port()
    accepted = []
    with (
        api_process(url, port, tmp_path / "api.log") as server,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"DD-API-KEY": API_KEY}) as http,
        lock_held(warehouse_file),
    ):
        for number in range(20):
            response = http.post(DEPLOYMENT, json=deployment(id=f"d-{number}"))
            assert response.status_code == 202
            accepted.append(response.json()["data"]["id"])
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    engine = open_warehouse(url)
    assert landed(engine) == {}
    with (
        api_process(url, port, tmp_path / "api.log"),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"DD-API-KEY": API_KEY}) as http,
    ):
        missing = [
            identifier
            for identifier in accepted
            if http.get(f"/api/v2/dora/deployments/{identifier}").status_code != 200
        ]
    assert missing == []
    assert len(landed(engine)) == 20
    engine.dispose()


def test_only_a_sqlite_file_warehouse_has_a_spool(postgres_url: str, warehouse_file: Path) -> None:
    # PostgreSQL's writers do not share one lock; an in-memory database has no beside.
    for url, spool in (
        (postgres_url, None),
        ("sqlite://", None),
        (f"sqlite:///{warehouse_file}", Path(f"{warehouse_file}.spool")),
    ):
        engine = create_engine(url)
        assert spool_path(engine) == spool
        engine.dispose()
