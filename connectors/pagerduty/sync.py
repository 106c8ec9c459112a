"""Incremental pull of PagerDuty incidents into the landing table `pagerduty_incidents`.

A sync does two things:

1. lists every incident created in [since, until) and upserts it;
2. re-reads every incident the landing table still holds as open (triggered or
   acknowledged, whatever its creation day), so a resolution that comes days or
   months later always arrives. One listing of the currently open set
   (`date_range=all`) answers for all of them; only those that left it are
   fetched one by one, since they are the ones that changed.

Writes are idempotent upserts in batches, one transaction per batch, the same on
SQLite and PostgreSQL, so a sync that fails half-way is simply run again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from connectors.pagerduty.client import PagerDutyClient
from connectors.pagerduty.listing import (
    OPEN_STATUSES,
    AllDatesListingTooLarge,
    IncidentLister,
    Page,
    utc_naive,
)
from connectors.timestamps import from_rfc3339, utcnow
from connectors.warehouse import reading
from connectors.warehouse.schema import pagerduty_incidents
from connectors.warehouse.upsert import supports_upsert, upsert

BATCH_SIZE = 1_000
_OPEN_FILTER = {"statuses[]": list(OPEN_STATUSES)}


@dataclass
class SyncReport:
    windows: int = 0
    pages: int = 0
    requests: int = 0
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    reread_open: int = 0
    resolved_since_last: int = 0


def sync_incidents(
    engine: sa.Engine,
    client: PagerDutyClient,
    since: datetime,
    until: datetime,
    on_progress: Callable[[str], None] | None = None,
) -> SyncReport:
    """Land incidents created in [since, until) and refresh every incident still open."""
    requests_before = client.requests
    report = SyncReport()
    lister = IncidentLister(client, on_progress=on_progress)
    writer = _LandingWriter(engine, report, open_before=_open_incidents(engine))

    writer.write_pages(lister.created_between(utc_naive(since), utc_naive(until)))
    report.windows = lister.stats.windows

    still_open = _open_incidents(engine)
    report.reread_open = len(still_open)
    if still_open:
        listed: set[str] = set()
        for page in _list_open(lister, still_open):
            listed.update(incident["id"] for incident in page.incidents)
            writer.write(i for i in page.incidents if i["id"] in still_open)
        writer.flush()
        left_open_set = sorted(set(still_open) - listed)
        if on_progress and left_open_set:
            on_progress(f"re-reading {len(left_open_set)} incidents that are no longer open")
        with ThreadPoolExecutor(lister.max_workers, thread_name_prefix="pagerduty") as pool:
            writer.write(pool.map(client.get_incident, left_open_set))
            writer.flush()

    report.pages = lister.stats.pages
    report.requests = client.requests - requests_before
    return report


def _list_open(lister: IncidentLister, open_created: dict[str, datetime]) -> Iterator[Page]:
    """The currently open incidents; by created_at windows when over 10,000."""
    try:
        yield from lister.all_dates(_OPEN_FILTER)
    except AllDatesListingTooLarge:
        since = min(open_created.values())
        until = max(open_created.values()) + timedelta(seconds=1)
        yield from lister.created_between(since, until, _OPEN_FILTER)


def _open_incidents(engine: sa.Engine) -> dict[str, datetime]:
    """Incident id -> created_at of every incident the landing table holds as open."""
    query = sa.select(pagerduty_incidents.c.incident_id, pagerduty_incidents.c.created_at).where(
        pagerduty_incidents.c.status.in_(OPEN_STATUSES)
    )
    with reading(engine) as connection:
        return dict(connection.execute(query).tuples().all())


def landing_row(incident: dict[str, Any], observed_at: datetime) -> dict[str, Any]:
    """A `pagerduty_incidents` row from a REST API incident object."""
    created_at = from_rfc3339(incident["created_at"])
    status = incident["status"]
    resolved_text = (
        (incident.get("resolved_at") or incident.get("last_status_change_at"))
        if status == "resolved"
        else None
    )
    service = incident.get("service") or {}
    priority = incident.get("priority") or {}
    return {
        "incident_id": incident["id"],
        "incident_number": incident.get("incident_number"),
        "title": incident.get("title"),
        "status": status,
        "urgency": incident.get("urgency"),
        "priority": priority.get("summary") or priority.get("name") or None,
        "service_id": service.get("id"),
        "service_name": service.get("summary"),
        "teams": json.dumps([team.get("summary") for team in incident.get("teams") or []]),
        "created_at": created_at,
        "created_day": created_at.date(),
        "resolved_at": from_rfc3339(resolved_text) if resolved_text else None,
        "html_url": incident.get("html_url"),
        "observed_at": observed_at,
        "raw": orjson.dumps(incident, option=orjson.OPT_SORT_KEYS).decode(),
    }


class _LandingWriter:
    """Buffers rows and upserts them `BATCH_SIZE` at a time, counting what changed."""

    def __init__(
        self, engine: sa.Engine, report: SyncReport, open_before: dict[str, datetime]
    ) -> None:
        self.engine = engine
        self.report = report
        self.open_before = open_before
        self.resolved: set[str] = set()
        self._rows: dict[str, dict[str, Any]] = {}
        # Without ON CONFLICT, a batch replaces its rows by delete and insert instead.
        self._upsert = (
            upsert(pagerduty_incidents, engine.dialect) if supports_upsert(engine.dialect) else None
        )

    def write_pages(self, pages: Iterable[Page]) -> None:
        for page in pages:
            self.write(page.incidents, page.observed_at)
        self.flush()

    def write(
        self, incidents: Iterable[dict[str, Any]], observed_at: datetime | None = None
    ) -> None:
        for incident in incidents:
            row = landing_row(incident, observed_at or utcnow())
            self._rows[row["incident_id"]] = row  # a later observation of an id replaces it
            if len(self._rows) >= BATCH_SIZE:
                self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        rows = list(self._rows.values())
        self._rows = {}
        ids = [row["incident_id"] for row in rows]
        table = pagerduty_incidents
        with self.engine.begin() as connection:
            existing = set(
                connection.scalars(
                    sa.select(table.c.incident_id).where(table.c.incident_id.in_(ids))
                )
            )
            if self._upsert is None:
                connection.execute(sa.delete(table).where(table.c.incident_id.in_(ids)))
                connection.execute(sa.insert(table), rows)
            else:
                connection.execute(self._upsert, rows)
        self.report.fetched += len(rows)
        self.report.updated += len(existing)
        self.report.inserted += len(rows) - len(existing)
        self.resolved.update(
            row["incident_id"]
            for row in rows
            if row["status"] == "resolved" and row["incident_id"] in self.open_before
        )
        self.report.resolved_since_last = len(self.resolved)
