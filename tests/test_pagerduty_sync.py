"""Incremental sync from the PagerDuty-compatible server into the landing table.

Every test runs on SQLite and PostgreSQL (the `warehouse` fixture) against a real
server on loopback; faults, growth between pages and late resolutions are the
server's own behaviour, not mocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from connectors.pagerduty.client import PagerDutyClient, RateLimiter
from connectors.pagerduty.compat_server import (
    SAMPLE_PRIORITIES,
    SAMPLE_SERVICES,
    SAMPLE_TEAMS,
    IncidentStore,
    ServerOptions,
    build_app,
)
from connectors.pagerduty.listing import IncidentLister
from connectors.pagerduty.sync import SyncReport, sync_incidents
from connectors.serving import serve_in_thread
from connectors.warehouse.schema import pagerduty_incidents

TOKEN = "sync-test-token"
JANUARY = (datetime(2025, 1, 1), datetime(2025, 2, 1))


@dataclass
class PagerDuty:
    store: IncidentStore
    options: ServerOptions
    client: PagerDutyClient

    def sync(self, engine: sa.Engine, since: datetime, until: datetime) -> SyncReport:
        return sync_incidents(engine, self.client, since, until)

    @property
    def requests(self) -> int:
        return self.options.counters.get("requests", 0)


def run_server(
    store: IncidentStore, options: ServerOptions, timeout_s: float = 30.0
) -> Iterator[PagerDuty]:
    """Serve `store`; the client has no pacing and millisecond backoffs (no latency here)."""
    with (
        # uvicorn closes a connection idle for 5 s; a request racing that close fails in
        # transport and is retried, counted by the client and never by the server. A page
        # whose warehouse write takes that long on a loaded machine must not look like a
        # miscount.
        serve_in_thread(build_app(store, options), timeout_keep_alive=300) as url,
        PagerDutyClient(
            TOKEN,
            url,
            timeout_s=timeout_s,
            backoff_base_s=0.01,
            backoff_cap_s=0.05,
            rate_limiter=RateLimiter(per_minute=6_000_000, burst=100),
        ) as client,
    ):
        yield PagerDuty(store, options, client)


@pytest.fixture
def pagerduty() -> Iterator[PagerDuty]:
    yield from run_server(IncidentStore(), ServerOptions(api_token=TOKEN))


def landed(engine: sa.Engine) -> dict[str, dict]:
    """Every landing row by id, without observed_at (the only column a rerun may change)."""
    columns = [c for c in pagerduty_incidents.columns if c.name != "observed_at"]
    with engine.connect() as connection:
        rows = connection.execute(sa.select(*columns)).mappings().all()
    return {row["incident_id"]: dict(row) for row in rows}


def test_25000_incidents_in_one_month_are_fetched_exactly_once(
    warehouse: sa.Engine, pagerduty: PagerDuty
) -> None:
    incidents = pagerduty.store.generate(25_000, datetime(2025, 3, 1), datetime(2025, 4, 1))
    still_open = sum(1 for i in incidents if i.status != "resolved")
    progress: list[str] = []

    report = sync_incidents(
        warehouse, pagerduty.client, datetime(2025, 1, 1), datetime(2025, 7, 1), progress.append
    )

    assert set(landed(warehouse)) == {i.id for i in incidents}
    assert report.inserted == 25_000
    # Each incident was written once by the listing, and open ones once more by the re-read.
    assert report.reread_open == still_open
    assert report.fetched == 25_000 + still_open
    # 250 pages are the minimum for the month; splitting costs one wasted probe per split,
    # and pages of partial windows and the open-set re-read add a handful.
    open_pages = -(-still_open // 100)
    assert 250 + open_pages <= report.requests <= 250 + open_pages + 20
    assert report.requests == pagerduty.requests
    assert any(message.endswith("page 1/1") for message in progress)
    assert progress[-1] == f"window all dates: page {open_pages}/{open_pages}"


def test_two_year_range_uses_six_month_windows(warehouse: sa.Engine, pagerduty: PagerDuty) -> None:
    incidents = pagerduty.store.generate(1_500, datetime(2023, 1, 1), datetime(2025, 1, 1), seed=2)
    progress: list[str] = []

    report = sync_incidents(
        warehouse, pagerduty.client, datetime(2023, 1, 1), datetime(2025, 1, 1), progress.append
    )

    assert report.windows == 4
    assert set(landed(warehouse)) == {i.id for i in incidents}
    windows = sorted({message.split(":")[0] for message in progress if "all dates" not in message})
    assert windows == [
        "window 2023-01-01..2023-07-01",
        "window 2023-07-01..2024-01-01",
        "window 2024-01-01..2024-07-01",
        "window 2024-07-01..2025-01-01",
    ]


def test_landing_row_columns(warehouse: sa.Engine, pagerduty: PagerDuty) -> None:
    store = pagerduty.store
    resolved = store.add(
        datetime(2025, 1, 5, 23, 59, 59),
        title="Checkout down",
        service=SAMPLE_SERVICES[0],
        teams=[SAMPLE_TEAMS[0], SAMPLE_TEAMS[2]],
        urgency="high",
        priority=SAMPLE_PRIORITIES[0],
    )
    store.resolve(resolved.id, datetime(2025, 1, 6, 1, 0, 0))
    plain = store.add(datetime(2025, 1, 6), service=SAMPLE_SERVICES[1], teams=[], urgency="low")
    before = datetime.now()

    pagerduty.sync(warehouse, *JANUARY)

    rows = landed(warehouse)
    row = rows[resolved.id]
    assert json.loads(row.pop("raw"))["id"] == resolved.id
    assert row == {
        "incident_id": resolved.id,
        "incident_number": 1,
        "title": "Checkout down",
        "status": "resolved",
        "urgency": "high",
        "priority": "P1",
        "service_id": "PSVC001",
        "service_name": "Checkout API",
        "teams": '["Payments", "Platform"]',
        "created_at": datetime(2025, 1, 5, 23, 59, 59),
        "created_day": datetime(2025, 1, 5).date(),
        "resolved_at": datetime(2025, 1, 6, 1, 0, 0),
        "html_url": f"https://compat.pagerduty.test/incidents/{resolved.id}",
    }
    assert (rows[plain.id]["priority"], rows[plain.id]["teams"]) == (None, "[]")
    assert (rows[plain.id]["status"], rows[plain.id]["resolved_at"]) == ("triggered", None)
    with warehouse.connect() as connection:
        observed = connection.execute(sa.select(sa.func.min(pagerduty_incidents.c.observed_at)))
        assert observed.scalar_one() >= before - timedelta(days=1)  # a UTC wall-clock time


def test_late_resolutions_reopen_and_acknowledge(
    warehouse: sa.Engine, pagerduty: PagerDuty
) -> None:
    store = pagerduty.store
    resolved_later = store.add(datetime(2025, 1, 10))
    reopened = store.add(datetime(2025, 1, 11))
    acknowledged = store.add(datetime(2025, 1, 12))
    untouched = store.add(datetime(2025, 1, 13))
    first = pagerduty.sync(warehouse, *JANUARY)
    assert first.inserted == 4
    assert first.resolved_since_last == 0

    store.resolve(resolved_later.id, datetime(2025, 2, 20, 8))
    store.resolve(reopened.id, datetime(2025, 2, 3))
    store.reopen(reopened.id, datetime(2025, 2, 4))
    store.resolve(reopened.id, datetime(2025, 2, 5, 6, 30))
    store.acknowledge(acknowledged.id, datetime(2025, 2, 2))
    requests_before = pagerduty.requests
    # February's window holds none of them: only the re-read of open incidents can see it.
    second = pagerduty.sync(warehouse, datetime(2025, 2, 1), datetime(2025, 3, 1))

    rows = landed(warehouse)
    assert rows[resolved_later.id]["status"] == "resolved"
    assert rows[resolved_later.id]["resolved_at"] == datetime(2025, 2, 20, 8)
    assert rows[reopened.id]["resolved_at"] == datetime(2025, 2, 5, 6, 30)
    assert (rows[acknowledged.id]["status"], rows[acknowledged.id]["resolved_at"]) == (
        "acknowledged",
        None,
    )
    assert rows[untouched.id]["status"] == "triggered"
    assert second.reread_open == 4
    assert second.resolved_since_last == 2
    # February's window (1), the open set (1), and one GET for each of the 2 that left it.
    assert pagerduty.requests - requests_before == 4
    assert second.inserted == 0
    assert second.updated == 4

    third = pagerduty.sync(warehouse, datetime(2025, 2, 1), datetime(2025, 3, 1))
    assert (third.reread_open, third.resolved_since_last) == (2, 0)
    assert landed(warehouse) == rows


def test_resolved_incident_reopened_and_resolved_again_takes_latest(
    warehouse: sa.Engine, pagerduty: PagerDuty
) -> None:
    incident = pagerduty.store.add(datetime(2025, 1, 20))
    pagerduty.store.resolve(incident.id, datetime(2025, 1, 20, 1))
    pagerduty.sync(warehouse, *JANUARY)
    pagerduty.store.reopen(incident.id, datetime(2025, 1, 21))
    pagerduty.store.resolve(incident.id, datetime(2025, 1, 22, 4))

    report = pagerduty.sync(warehouse, *JANUARY)

    assert landed(warehouse)[incident.id]["resolved_at"] == datetime(2025, 1, 22, 4)
    assert (report.inserted, report.updated) == (0, 1)


def test_incidents_created_and_resolved_between_pages(
    warehouse: sa.Engine, pagerduty: PagerDuty
) -> None:
    store = pagerduty.store
    existing = store.generate(1_100, datetime(2025, 1, 1), datetime(2025, 1, 31), seed=5)
    created_late: list[str] = []

    def change_after_the_probe(target: IncidentStore, request_number: int) -> None:
        if request_number == 2:  # the first page request after the window's probe
            target.resolve(existing[-1].id, datetime(2025, 1, 31, 23))  # on the last page
            for minute in range(3):
                late = target.add(datetime(2025, 1, 31, 23, minute))
                created_late.append(late.id)

    pagerduty.options.before_list_page = change_after_the_probe
    report = pagerduty.sync(warehouse, *JANUARY)

    rows = landed(warehouse)
    assert set(rows) == {i.id for i in existing} | set(created_late)
    assert report.inserted == 1_103
    assert rows[existing[-1].id]["resolved_at"] == datetime(2025, 1, 31, 23)


def test_window_that_grows_past_10000_is_split(pagerduty: PagerDuty) -> None:
    store = pagerduty.store
    store.generate(9_950, datetime(2025, 1, 1), datetime(2025, 1, 30), seed=6)

    def grow(target: IncidentStore, request_number: int) -> None:
        if request_number == 2:
            for second in range(100):
                target.add(datetime(2025, 1, 31, 12) + timedelta(seconds=second))

    pagerduty.options.before_list_page = grow
    lister = IncidentLister(pagerduty.client)
    listed = [i["id"] for page in lister.created_between(*JANUARY) for i in page.incidents]

    assert len(listed) == len(set(listed)) == 10_050
    assert lister.stats.split_windows == 1


def test_faulty_server_lands_the_same_table(warehouse: sa.Engine) -> None:
    def scenario(options: ServerOptions, timeout_s: float) -> dict[str, dict]:
        store = IncidentStore()
        incidents = store.generate(3_000, datetime(2024, 9, 1), datetime(2025, 3, 1), seed=11)
        for server in run_server(store, options, timeout_s):
            server.sync(warehouse, datetime(2024, 9, 1), datetime(2025, 3, 1))
            open_ones = [i for i in incidents if i.status != "resolved"]
            for incident in open_ones[:40]:
                store.resolve(incident.id, datetime(2025, 3, 2))
            for incident in open_ones[40:50]:
                store.resolve(incident.id, datetime(2025, 3, 3))
                store.reopen(incident.id, datetime(2025, 3, 4))
            server.sync(warehouse, datetime(2025, 3, 1), datetime(2025, 4, 1))
        table = landed(warehouse)
        with warehouse.begin() as connection:
            connection.execute(sa.delete(pagerduty_incidents))
        return table

    clean = scenario(ServerOptions(api_token=TOKEN), timeout_s=30.0)
    # Timeout faults answer after 1.5 s, past the client's 1 s timeout.
    faulty_options = ServerOptions(
        api_token=TOKEN, fault_rate=0.2, fault_seed=4, timeout_fault_s=1.5
    )
    faulty = scenario(faulty_options, timeout_s=1.0)

    assert len(clean) == 3_000
    assert faulty == clean
    counters = faulty_options.counters
    assert {kind for kind in counters if kind.startswith("fault_")} == {
        "fault_500",
        "fault_502",
        "fault_503",
        "fault_429",
        "fault_timeout",
        "fault_truncated",
    }
