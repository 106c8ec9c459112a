"""A PagerDuty-compatible REST server for the tests, the demo and the benchmark.

It answers `GET /incidents` and `GET /incidents/{id}` the way api.pagerduty.com
does, including the parts connectors trip over: `since`/`until` filter on
`created_at`, a window over 6 months is a 400, offset+limit over 10,000 is a 400
with code 2002, `total` is null unless `total=true`, the default window is the
last 30 days, the `ratelimit-*` headers and the 429 body. It can also misbehave
on purpose: per-request latency, a seeded fraction of faulty responses (5xx, 429
without headers, answers slower than any client timeout, truncated JSON), and a
hook that changes incidents between the pages of a listing.

Incidents live in memory in an `IncidentStore`; `build_app(store, options)`
returns the ASGI app (serve it with `connectors.serving.serve_in_thread`).
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from connectors.pagerduty.listing import MAX_WINDOW_MONTHS, OFFSET_LIMIT_CAP, add_months
from connectors.timestamps import utcnow

STATUSES = ("triggered", "acknowledged", "resolved")
URGENCIES = ("high", "low")
SORT_FIELDS = ("created_at", "incident_number", "resolved_at", "urgency")
DEFAULT_WINDOW = timedelta(days=30)
MAX_LIMIT = 100
DEFAULT_LIMIT = 25
HTML_BASE = "https://compat.pagerduty.test"

# (id, name) pairs the bulk generator draws from.
SAMPLE_SERVICES = (
    ("PSVC001", "Checkout API"),
    ("PSVC002", "Search API"),
    ("PSVC003", "Payments Worker"),
    ("PSVC004", "Identity"),
    ("PSVC005", "Storefront Web"),
)
SAMPLE_TEAMS = (("PTEAM01", "Payments"), ("PTEAM02", "Discovery"), ("PTEAM03", "Platform"))
SAMPLE_PRIORITIES = (("PPRIO01", "P1"), ("PPRIO02", "P2"), ("PPRIO03", "P3"), ("PPRIO04", "P4"))

FAULT_KINDS = ("500", "502", "503", "429", "timeout", "truncated")


@dataclass
class StoredIncident:
    id: str
    incident_number: int
    title: str
    service: tuple[str, str]
    teams: list[tuple[str, str]]
    urgency: str
    priority: tuple[str, str] | None
    created_at: datetime
    status: str = "triggered"
    resolved_at: datetime | None = None
    last_status_change_at: datetime | None = None

    def to_json(self, zone: ZoneInfo) -> dict[str, Any]:
        """The incident as PagerDuty renders it, times in the requested zone."""
        service_id, service_name = self.service
        return {
            "id": self.id,
            "type": "incident",
            "summary": f"[#{self.incident_number}] {self.title}",
            "self": f"{HTML_BASE}/api/incidents/{self.id}",
            "html_url": f"{HTML_BASE}/incidents/{self.id}",
            "incident_number": self.incident_number,
            "title": self.title,
            "description": self.title,
            "status": self.status,
            "urgency": self.urgency,
            "incident_key": f"key-{self.id}",
            "created_at": _render(self.created_at, zone),
            "updated_at": _render(self.last_status_change_at or self.created_at, zone),
            "last_status_change_at": _render(self.last_status_change_at or self.created_at, zone),
            "resolved_at": _render(self.resolved_at, zone) if self.resolved_at else None,
            "service": {
                "id": service_id,
                "type": "service_reference",
                "summary": service_name,
                "self": f"{HTML_BASE}/api/services/{service_id}",
                "html_url": f"{HTML_BASE}/services/{service_id}",
            },
            "teams": [
                {
                    "id": team_id,
                    "type": "team_reference",
                    "summary": name,
                    "self": f"{HTML_BASE}/api/teams/{team_id}",
                    "html_url": f"{HTML_BASE}/teams/{team_id}",
                }
                for team_id, name in self.teams
            ],
            "priority": (
                {"id": self.priority[0], "type": "priority", "summary": self.priority[1]}
                if self.priority
                else None
            ),
            "assignments": [],
            "acknowledgements": [],
            "pending_actions": [],
            "alert_counts": {"all": 1, "triggered": 0, "resolved": 0},
            "incident_type": {"name": "incident_default"},
            "is_mergeable": True,
        }


def _render(moment: datetime, zone: ZoneInfo) -> str:
    if zone.key == "UTC":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=UTC).astimezone(zone).isoformat(timespec="seconds")


class IncidentStore:
    """In-memory incidents, ordered by creation time; safe to change while being served."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._by_id: dict[str, StoredIncident] = {}
        # (created_at, sequence, id), sorted: since/until become two binary searches.
        self._order: list[tuple[datetime, int, str]] = []
        self._sequence = itertools.count(1)

    def __len__(self) -> int:
        return len(self._by_id)

    def add(
        self,
        created_at: datetime,
        *,
        title: str = "Elevated error rate",
        service: tuple[str, str] = SAMPLE_SERVICES[0],
        teams: Iterable[tuple[str, str]] = (SAMPLE_TEAMS[0],),
        urgency: str = "high",
        priority: tuple[str, str] | None = None,
    ) -> StoredIncident:
        """A new triggered incident created at `created_at` (naive UTC)."""
        with self._lock:
            number = next(self._sequence)
            incident = StoredIncident(
                id=f"Q{_base36(number).rjust(12, '0')}",
                incident_number=number,
                title=title,
                service=service,
                teams=list(teams),
                urgency=urgency,
                priority=priority,
                created_at=created_at,
                last_status_change_at=created_at,
            )
            self._by_id[incident.id] = incident
            bisect.insort(self._order, (created_at, number, incident.id))
            return incident

    def acknowledge(self, incident_id: str, at: datetime) -> StoredIncident:
        return self._transition(incident_id, "acknowledged", at)

    def resolve(self, incident_id: str, at: datetime) -> StoredIncident:
        return self._transition(incident_id, "resolved", at)

    def reopen(self, incident_id: str, at: datetime) -> StoredIncident:
        return self._transition(incident_id, "triggered", at)

    def _transition(self, incident_id: str, status: str, at: datetime) -> StoredIncident:
        with self._lock:
            incident = self._by_id[incident_id]
            incident.status = status
            incident.resolved_at = at if status == "resolved" else None
            incident.last_status_change_at = at
            return incident

    def get(self, incident_id: str) -> StoredIncident | None:
        return self._by_id.get(incident_id)

    def generate(
        self,
        count: int,
        since: datetime,
        until: datetime,
        *,
        seed: int = 0,
        resolved_fraction: float = 0.85,
        acknowledged_fraction: float = 0.05,
    ) -> list[StoredIncident]:
        """`count` incidents spread uniformly over [since, until), the same for the same seed."""
        chooser = random.Random(seed)
        span = (until - since).total_seconds()
        created = sorted(
            since + timedelta(seconds=int(chooser.random() * span)) for _ in range(count)
        )
        incidents = []
        for created_at in created:
            service = chooser.choice(SAMPLE_SERVICES)
            incident = self.add(
                created_at,
                title=f"{service[1]}: {chooser.choice(('latency', 'errors', 'saturation'))}",
                service=service,
                teams=[chooser.choice(SAMPLE_TEAMS)] if chooser.random() < 0.9 else [],
                urgency=chooser.choice(URGENCIES),
                priority=chooser.choice((*SAMPLE_PRIORITIES, None)),
            )
            outcome = chooser.random()
            later = created_at + timedelta(minutes=chooser.randint(1, 3000))
            if outcome < resolved_fraction:
                self.resolve(incident.id, later)
            elif outcome < resolved_fraction + acknowledged_fraction:
                self.acknowledge(incident.id, later)
            incidents.append(incident)
        return incidents

    def query(
        self,
        since: datetime | None,
        until: datetime | None,
        keep: Callable[[StoredIncident], bool] | None,
    ) -> list[StoredIncident]:
        """Incidents created in [since, until) (None: unbounded) that `keep` accepts."""
        with self._lock:
            start = 0 if since is None else bisect.bisect_left(self._order, (since,))
            stop = len(self._order) if until is None else bisect.bisect_left(self._order, (until,))
            selected = [self._by_id[entry[2]] for entry in self._order[start:stop]]
        return selected if keep is None else [incident for incident in selected if keep(incident)]


def _base36(number: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    text = ""
    while number:
        number, remainder = divmod(number, 36)
        text = digits[remainder] + text
    return text or "0"


@dataclass
class ServerOptions:
    """How the server behaves; the defaults are a fast, well-behaved PagerDuty."""

    api_token: str = "compat-token"
    latency_s: float = 0.0
    # Token bucket per API key: refills at rate_limit_per_minute / 60 a second, holds
    # rate_limit_burst requests (default: a whole minute's worth). None: no limit.
    rate_limit_per_minute: int | None = None
    rate_limit_burst: int | None = None
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    fault_seed: int = 0
    # A "timeout" fault answers only after this long: set it above the client's timeout.
    timeout_fault_s: float = 2.0
    # Called with the store and the 1-based number of the listing request, before the
    # page is computed: lets a test create or resolve incidents between pages.
    before_list_page: Callable[[IncidentStore, int], None] | None = None
    now: Callable[[], datetime] = utcnow
    counters: dict[str, int] = field(default_factory=dict)


class _TokenBucket:
    def __init__(self, per_minute: int, burst: int) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> tuple[bool, int, int]:
        """(allowed, remaining, reset seconds) for one request now."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            allowed = self.tokens >= 1.0
            if allowed:
                self.tokens -= 1.0
            remaining = int(self.tokens)
            missing = (1.0 if remaining == 0 else self.capacity) - self.tokens
            return allowed, remaining, max(0, math.ceil(missing / self.rate))


def _error(status: int, message: str, code: int, errors: list[str] | None = None) -> Response:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return Response(orjson.dumps({"error": body}), status, media_type="application/json")


class _BadRequest(Exception):
    def __init__(self, detail: str, code: int = 2001, message: str = "Invalid Input Provided"):
        super().__init__(detail)
        self.response = _error(400, message, code, [detail])


def build_app(store: IncidentStore, options: ServerOptions | None = None) -> FastAPI:
    """The ASGI app serving `store` with the behaviour `options` describes."""
    options = options or ServerOptions()
    app = FastAPI(title="PagerDuty-compatible REST API", docs_url=None, redoc_url=None)
    bucket = (
        _TokenBucket(
            options.rate_limit_per_minute,
            options.rate_limit_burst or options.rate_limit_per_minute,
        )
        if options.rate_limit_per_minute
        else None
    )
    faults = random.Random(options.fault_seed)
    list_requests = itertools.count(1)
    counters = options.counters

    def count(name: str) -> None:
        counters[name] = counters.get(name, 0) + 1

    async def respond(request: Request, answer: Callable[[], Response]) -> Response:
        count("requests")
        if options.latency_s:
            await asyncio.sleep(options.latency_s)
        if not _authorized(request, options.api_token):
            count("unauthorized")
            return _error(401, "Authentication failed", 2006)
        headers: dict[str, str] = {}
        if bucket:
            allowed, remaining, reset = bucket.take()
            headers = {
                "ratelimit-limit": str(bucket.limit),
                "ratelimit-remaining": str(remaining),
                "ratelimit-reset": str(reset),
            }
            if not allowed:
                count("rate_limited")
                response = _error(429, "Rate Limit Exceeded", 2020)
                response.headers.update(headers)
                return response
        fault = faults.choice(options.fault_kinds) if faults.random() < options.fault_rate else None
        if fault is not None:
            count(f"fault_{fault}")
            if fault == "429":
                return _error(429, "Rate Limit Exceeded", 2020)
            if fault in ("500", "502", "503"):
                return _error(int(fault), "Internal Server Error", 2000)
            if fault == "timeout":
                await asyncio.sleep(options.timeout_fault_s)
        try:
            response = answer()
        except _BadRequest as bad:
            response = bad.response
        response.headers.update(headers)
        if fault == "truncated" and response.status_code == 200:
            truncated = bytes(response.body[: len(response.body) // 2])
            response = Response(truncated, 200, headers=headers, media_type="application/json")
        return response

    @app.get("/incidents")
    async def list_incidents(request: Request) -> Response:
        def answer() -> Response:
            if options.before_list_page:
                options.before_list_page(store, next(list_requests))
            return _list_incidents(store, request, options.now())

        return await respond(request, answer)

    @app.get("/incidents/{incident_id}")
    async def get_incident(request: Request, incident_id: str) -> Response:
        def answer() -> Response:
            incident = store.get(incident_id)
            if incident is None:
                return _error(404, "Not Found", 2100)
            zone = _zone(request.query_params.get("time_zone"))
            return _json({"incident": incident.to_json(zone)})

        return await respond(request, answer)

    return app


def _authorized(request: Request, token: str) -> bool:
    presented = request.headers.get("authorization", "")
    return hmac.compare_digest(presented.encode(), f"Token token={token}".encode())


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), 200, media_type="application/json")


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise _BadRequest(f"time_zone {name!r} is not a known time zone") from None


def _parse_time(value: str, name: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _BadRequest(f"{name} {value!r} is invalid", 2004) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC).replace(tzinfo=None)


def _integer(value: str | None, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None
    if number < 0:
        raise _BadRequest(f"{name} must not be negative")
    return number


def _list_incidents(store: IncidentStore, request: Request, now: datetime) -> Response:
    query = request.query_params
    zone = _zone(query.get("time_zone"))
    since, until = _date_range(
        query.get("since"), query.get("until"), query.get("date_range"), zone, now
    )
    limit = min(_integer(query.get("limit"), "limit", DEFAULT_LIMIT), MAX_LIMIT) or DEFAULT_LIMIT
    offset = _integer(query.get("offset"), "offset", 0)
    if offset + limit > OFFSET_LIMIT_CAP:
        raise _BadRequest(
            "Offset+limit exceeds maximum allowed value of 10000. Please try to refine your "
            "search to reduce the returned set of records below this number, like adding a "
            "date range.",
            2002,
            "Arguments Caused Error",
        )
    matching = store.query(since, until, _filter(query))
    _sort(matching, query.get("sort_by"))
    page = matching[offset : offset + limit]
    return _json(
        {
            "incidents": [incident.to_json(zone) for incident in page],
            "limit": limit,
            "offset": offset,
            "total": len(matching) if query.get("total") == "true" else None,
            "more": offset + len(page) < len(matching),
        }
    )


def _date_range(
    since_text: str | None,
    until_text: str | None,
    date_range: str | None,
    zone: ZoneInfo,
    now: datetime,
) -> tuple[datetime | None, datetime | None]:
    if date_range == "all":
        return None, None
    if date_range is not None:
        raise _BadRequest("date_range must be 'all'")
    until = _parse_time(until_text, "until", zone) if until_text else now
    since = _parse_time(since_text, "since", zone) if since_text else until - DEFAULT_WINDOW
    if since > until:
        raise _BadRequest("since must not be after until", 2005, "Invalid Query Date Range")
    if until > add_months(since, MAX_WINDOW_MONTHS):
        raise _BadRequest(
            "The range between since and until must not exceed 6 months",
            2005,
            "Invalid Query Date Range",
        )
    return since, until


def _filter(query: Any) -> Callable[[StoredIncident], bool] | None:
    statuses = set(query.getlist("statuses[]"))
    services = set(query.getlist("service_ids[]"))
    teams = set(query.getlist("team_ids[]"))
    urgencies = set(query.getlist("urgencies[]"))
    for value in statuses - set(STATUSES):
        raise _BadRequest(f"statuses[] value {value!r} is invalid")
    for value in urgencies - set(URGENCIES):
        raise _BadRequest(f"urgencies[] value {value!r} is invalid")
    if not (statuses or services or teams or urgencies):
        return None

    def keep(incident: StoredIncident) -> bool:
        return (
            (not statuses or incident.status in statuses)
            and (not services or incident.service[0] in services)
            and (not urgencies or incident.urgency in urgencies)
            and (not teams or any(team_id in teams for team_id, _ in incident.teams))
        )

    return keep


def _sort(incidents: list[StoredIncident], sort_by: str | None) -> None:
    """Sort in place; the store's order (created_at, then creation) breaks ties."""
    field_name, _, direction = (sort_by or "created_at:asc").partition(":")
    if field_name not in SORT_FIELDS or direction not in ("", "asc", "desc"):
        raise _BadRequest(f"sort_by {sort_by!r} is invalid")
    if field_name != "created_at":
        floor = datetime.min

        def key(incident: StoredIncident) -> Any:
            value = getattr(incident, field_name)
            return floor if value is None else value

        incidents.sort(key=key)
    if direction == "desc":
        incidents.reverse()
