"""The event API's spool on SQLite: upserts do not wait for a job's write lock; they
land in order, once each, even across a SIGKILL, and reads see them."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import httpx
import sqlalchemy as sa
from api_support import (
    API_KEY,
    api_process,
    count_rows,
    deployment,
    failure,
    free_port,
    landed,
    live_api,
)
from lock_support import lock_held

from connectors.events.schemas import DeploymentEvent
from connectors.events.spool import Spool, spool_path
from connectors.events.store import EventStore, upsert_events
from connectors.warehouse import create_engine, open_warehouse
from connectors.warehouse.schema import api_failures
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


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_upserts_are_spooled_while_the_lock_is_held_and_land_once_it_is_free(
    warehouse_file: Path, short_busy_timeout: float, sqlite_warehouse: sa.Engine
) -> None:
    with live_api(sqlite_warehouse) as client:
        with lock_held(warehouse_file):
            # Longer than the busy timeout: a write that waited would have failed (503).
            time.sleep(short_busy_timeout)
            posted = client.post(DEPLOYMENT, json=deployment(id="while-locked", version="v1"))
            failure_posted = client.post(
                FAILURE, json=failure(id="f-while-locked", services=["shop", "cart"])
            )
            assert landed(sqlite_warehouse) == {}  # in the spool, not in the warehouse yet
            assert not Spool(spool_path(sqlite_warehouse)).is_empty()
        assert posted.status_code == failure_posted.status_code == 202
        assert posted.json()["data"]["id"] == "while-locked"
        assert failure_posted.json()["data"]["id"] == "f-while-locked"
        # Nothing else is sent: the API applies the spool on its own once the lock is free.
        assert wait_for(lambda: landed(sqlite_warehouse) == {"while-locked": "v1"})
        assert count_rows(sqlite_warehouse, api_failures) == 1
        assert Spool(spool_path(sqlite_warehouse)).is_empty()
        read = client.get("/api/v2/dora/deployments/while-locked")
        failure_read = client.get("/api/v2/dora/failures/f-while-locked")
    assert read.status_code == 200
    assert read.json()["data"]["attributes"]["version"] == "v1"
    assert failure_read.json()["data"]["attributes"]["services"] == ["cart", "shop"]


def test_a_read_or_retraction_after_a_spooled_upsert_sees_it(
    warehouse_file: Path, sqlite_warehouse: sa.Engine
) -> None:
    with live_api(sqlite_warehouse) as client:
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
    assert landed(sqlite_warehouse) == {"spooled": "v2", "retracted": "deleted", "resent": "v2"}


def test_a_spool_entry_is_applied_once_even_when_its_removal_was_lost(
    warehouse_file: Path, sqlite_warehouse: sa.Engine
) -> None:
    spool = Spool(spool_path(sqlite_warehouse))
    spool.append([deployment_event("again", "v1")])
    with (
        sqlite_warehouse.begin() as connection
    ):  # applied, then the process died before removing it
        assert spool.apply(connection, upsert_events).events == 1
    # Then another writer (a bulk load) sends a newer version...
    EventStore(sqlite_warehouse).upsert_deployments([deployment_event("again", "v2")])
    # ...and the API, restarted, finds the entry still in its spool.
    EventStore(sqlite_warehouse, spool).take_up_spool()
    assert landed(sqlite_warehouse) == {"again": "v2"}
    assert spool.is_empty()
    # A spool deleted and made again counts from 1: its entries are not taken as applied.
    spool.dispose()
    for leftover in warehouse_file.parent.glob(f"{warehouse_file.name}.spool*"):
        leftover.unlink()
    fresh = Spool(spool_path(sqlite_warehouse))
    fresh.append([deployment_event("after-reset", "v1")])
    EventStore(sqlite_warehouse, fresh).take_up_spool()
    assert landed(sqlite_warehouse) == {"again": "v2", "after-reset": "v1"}
    fresh.dispose()


def test_removing_landed_entries_never_waits_for_the_warehouse_lock(
    warehouse_file: Path, short_busy_timeout: float, sqlite_warehouse: sa.Engine
) -> None:
    spool = Spool(spool_path(sqlite_warehouse))
    spool.append([deployment_event("landed", "v1")])
    with sqlite_warehouse.begin() as connection:
        landed = spool.apply(connection, upsert_events)
    with lock_held(warehouse_file):
        time.sleep(short_busy_timeout)
        # A warehouse write would give up now (OperationalError).
        spool.forget(landed.through)
        assert spool.is_empty()
    spool.dispose()


def test_the_refresh_lands_what_the_spool_holds(
    warehouse_file: Path, sqlite_warehouse: sa.Engine
) -> None:
    spool = Spool(spool_path(sqlite_warehouse))
    spool.append([deployment_event("left-in-spool", "v1")])
    result = dg.materialize(
        [event_api_events_asset],
        resources={"warehouse": WarehouseResource(url=f"sqlite:///{warehouse_file}")},
    )
    metadata = result.asset_materializations_for_node("event_api_events")[0].metadata
    assert metadata["spooled_events_landed"].value == 1
    assert metadata["deployments"].value == 1
    assert landed(sqlite_warehouse) == {"left-in-spool": "v1"}
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
