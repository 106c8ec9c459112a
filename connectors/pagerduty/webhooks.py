"""PagerDuty webhooks v3: signature check, payload parsing, landing, and folding into incidents.

The endpoint lands each incident delivery as it came (it must answer within
PagerDuty's 5 s, and PagerDuty may deliver late, twice or out of order).
`fold_webhook_deliveries` later recomputes every touched incident from all of its
deliveries ordered by `occurred_at`, so the folded state never depends on delivery order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

import sqlalchemy as sa

from connectors.timestamps import TimestampError, from_rfc3339, utcnow
from connectors.warehouse.schema import (
    pagerduty_webhook_deliveries,
    pagerduty_webhook_incidents,
)
from connectors.warehouse.upsert import insert, upsert
from connectors.warehouse.watermarks import lock_watermark, save_watermark

SIGNATURE_HEADER = "X-PagerDuty-Signature"
WEBHOOK_ID_HEADER = "X-Webhook-Id"
WATERMARK_NAME = "pagerduty_webhook_deliveries"
# A delivery can commit after a fold has read past its `received_at` (PostgreSQL
# transactions commit in any order, API replicas' clocks differ slightly), so each fold
# re-reads this far behind its watermark; recomputing an incident is idempotent.
REREAD_OVERLAP = timedelta(minutes=5)

_WATERMARK_ORIGIN = datetime(1970, 1, 1)
# Column widths of pagerduty_webhook_deliveries: longer values get a 400, not a database error.
_MAX_WEBHOOK_ID = 255
_MAX_SHORT_VALUE = 64
# The status an event type sets; other incident events carry the status in `data.status`.
_STATUS_SET_BY = {
    "incident.triggered": "triggered",
    "incident.acknowledged": "acknowledged",
    "incident.unacknowledged": "triggered",
    "incident.resolved": "resolved",
    "incident.reopened": "triggered",
}
_STATUSES = frozenset(_STATUS_SET_BY.values())


class WebhookPayloadError(ValueError):
    """A webhook body that is not a PagerDuty v3 event; the message names the field."""


@dataclass(frozen=True)
class WebhookEvent:
    """The parts of a v3 event we use; `data` is the incident for incident state events."""

    event_id: str | None
    event_type: str
    resource_type: str
    occurred_at: datetime | None
    incident_id: str | None
    data: dict[str, Any]

    @property
    def carries_incident(self) -> bool:
        """True when `data` is the incident itself (not, say, a note that references it)."""
        return self.data.get("type") == "incident"


@dataclass(frozen=True)
class FoldReport:
    deliveries: int  # deliveries received since the previous fold
    incidents: int  # incidents whose state was recomputed


def _digest(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str) -> str:
    """The header value PagerDuty would send for `body` signed with `secret`."""
    return f"v1={_digest(body, secret)}"


def signature_is_valid(body: bytes, header: str, secrets: Sequence[str]) -> bool:
    """Whether any `v1=<hex>` value in the header is the HMAC-SHA256 of `body` under any secret."""
    offered = [
        part.strip()[3:].lower().encode()
        for part in header.split(",")
        if part.strip().startswith("v1=")
    ]
    expected = [_digest(body, secret).encode() for secret in secrets]
    return any(hmac.compare_digest(value, digest) for value in offered for digest in expected)


def _clean(value: str) -> str:
    """`value` without what PostgreSQL cannot store: NUL characters and lone surrogates."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _checked(value: str, where: str, max_length: int) -> str:
    if len(value) > max_length:
        raise WebhookPayloadError(f"{where} is longer than {max_length} characters")
    if _clean(value) != value:
        raise WebhookPayloadError(f"{where} must be valid Unicode without NUL characters")
    return value


def _text(container: dict[str, Any], key: str, where: str, max_length: int) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookPayloadError(f"{where}.{key} must be a non-empty string")
    return _checked(value, f"{where}.{key}", max_length)


def _incident_id(data: dict[str, Any]) -> str:
    # Incident state events carry the incident; others (notes, responders) reference it.
    if data.get("type") == "incident":
        return _text(data, "id", "event.data", _MAX_SHORT_VALUE)
    reference = data.get("incident")
    if not isinstance(reference, dict):
        raise WebhookPayloadError("event.data must be an incident or reference one in .incident")
    return _text(reference, "id", "event.data.incident", _MAX_SHORT_VALUE)


def parse_webhook_event(body: str) -> WebhookEvent:
    """Parse `{"event": {...}}`; incident events must name the incident and when it happened."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise WebhookPayloadError(f"the body is not valid JSON: {error}") from None
    event = document.get("event") if isinstance(document, dict) else None
    if not isinstance(event, dict):
        raise WebhookPayloadError('the body must be a JSON object with an "event" object')
    event_type = _text(event, "event_type", "event", _MAX_SHORT_VALUE)
    resource_type = _text(event, "resource_type", "event", _MAX_SHORT_VALUE)
    event_id = event.get("id") if isinstance(event.get("id"), str) else None
    if resource_type != "incident":
        return WebhookEvent(event_id, event_type, resource_type, None, None, {})
    data = event.get("data")
    if not isinstance(data, dict):
        raise WebhookPayloadError("event.data must be an object")
    try:
        occurred_at = from_rfc3339(_text(event, "occurred_at", "event", _MAX_SHORT_VALUE))
    except TimestampError as error:
        raise WebhookPayloadError(f"event.occurred_at: {error}") from None
    return WebhookEvent(event_id, event_type, resource_type, occurred_at, _incident_id(data), data)


def delivery_id(header_value: str | None, event: WebhookEvent) -> str:
    """`X-Webhook-Id`, else the event id: the key a redelivery is recognized by."""
    value = header_value or event.event_id
    if not value:
        raise WebhookPayloadError(f"neither a {WEBHOOK_ID_HEADER} header nor event.id was sent")
    return _checked(value, "the delivery id", _MAX_WEBHOOK_ID)


def store_delivery(engine: sa.Engine, webhook_id: str, event: WebhookEvent, payload: str) -> bool:
    """Land one incident delivery and commit; False when `webhook_id` was landed before."""
    table = pagerduty_webhook_deliveries
    with engine.begin() as connection:
        # Taken inside the transaction: on SQLite (BEGIN IMMEDIATE) it then orders like commits.
        received_at = utcnow()
        result = connection.execute(
            insert(table, connection.dialect)
            .values(
                webhook_id=webhook_id,
                event_type=event.event_type,
                incident_id=event.incident_id,
                occurred_at=event.occurred_at,
                received_at=received_at,
                payload=payload,
            )
            .on_conflict_do_nothing(index_elements=[table.c.webhook_id])
            .returning(table.c.webhook_id)
        )
        # rowcount is not reliable here on every driver; RETURNING yields nothing on conflict.
        return result.first() is not None


def _string(value: object, max_length: int) -> str | None:
    # Payload fields land in bounded columns; a surprising value must not fail the whole fold.
    return _clean(value)[:max_length] if isinstance(value, str) else None


def _reference(data: dict[str, Any], key: str, field: str, max_length: int) -> str | None:
    """`data[key][field]` of a PagerDuty reference such as `service` or `priority`."""
    reference = data.get(key)
    return _string(reference.get(field), max_length) if isinstance(reference, dict) else None


def _team_names(data: dict[str, Any]) -> list[str]:
    teams = data.get("teams") if isinstance(data.get("teams"), list) else []
    names = (_string(team.get("summary"), 255) for team in teams if isinstance(team, dict))
    return [name for name in names if name]


def _status_after(event: WebhookEvent, previous: str) -> str:
    status = _STATUS_SET_BY.get(event.event_type) or event.data.get("status")
    return status if isinstance(status, str) and status in _STATUSES else previous


def incident_state(events: Iterable[WebhookEvent]) -> dict[str, Any] | None:
    """An incident's `pagerduty_webhook_incidents` row from its events, in any order.

    None when no event carries the incident itself (only notes or responders, say).
    """
    ordered = sorted((e for e in events if e.carries_incident), key=lambda e: e.occurred_at)
    if not ordered:
        return None
    status, resolved_at = "triggered", None
    for event in ordered:
        new_status = _status_after(event, status)
        # The latest explicit resolution, else the moment the incident was first seen resolved.
        if new_status == "resolved" and (
            status != "resolved" or event.event_type == "incident.resolved"
        ):
            resolved_at = event.occurred_at
        status = new_status
    latest = ordered[-1]
    data = latest.data
    try:
        created_at = from_rfc3339(str(data.get("created_at")))
    except TimestampError:
        created_at = ordered[0].occurred_at  # the first event is the best estimate we hold
    number = data.get("number")
    return {
        "incident_id": latest.incident_id,
        "incident_number": number if type(number) is int and 0 < number < 2**31 else None,
        "title": _string(data.get("title"), 1024),
        "status": status,
        "urgency": _string(data.get("urgency"), 32),
        "priority": _reference(data, "priority", "summary", 255),
        "service_id": _reference(data, "service", "id", 64),
        "service_name": _reference(data, "service", "summary", 255),
        "teams": json.dumps(_team_names(data)),
        "created_at": created_at,
        "resolved_at": resolved_at if status == "resolved" else None,
        "html_url": _string(data.get("html_url"), 2048),
        "observed_at": latest.occurred_at,
    }


def fold_webhook_deliveries(engine: sa.Engine) -> FoldReport:
    """Recompute, in one transaction, every incident with deliveries since the last fold."""
    deliveries, incidents = pagerduty_webhook_deliveries, pagerduty_webhook_incidents
    with engine.begin() as connection:
        watermark = lock_watermark(connection, WATERMARK_NAME) or _WATERMARK_ORIGIN
        touched = sa.select(deliveries.c.incident_id).where(
            deliveries.c.received_at > watermark - REREAD_OVERLAP
        )
        rows = connection.execute(
            sa.select(deliveries.c.incident_id, deliveries.c.received_at, deliveries.c.payload)
            .where(deliveries.c.incident_id.in_(touched))
            # Ties in occurred_at fold in one fixed order, whatever the delivery order.
            .order_by(deliveries.c.incident_id, deliveries.c.occurred_at, deliveries.c.webhook_id)
        ).all()
        states = []
        folded_at = utcnow()
        for _, group in groupby(rows, key=lambda row: row.incident_id):
            state = incident_state(parse_webhook_event(row.payload) for row in group)
            if state is not None:
                # The change marker `dora_incidents` reads from (observed_at is PagerDuty's).
                states.append({**state, "updated_at": folded_at})
        if states:
            connection.execute(upsert(incidents, connection.dialect), states)
        new_watermark = max([watermark, *(row.received_at for row in rows)])
        save_watermark(connection, WATERMARK_NAME, new_watermark)
    return FoldReport(
        deliveries=sum(1 for row in rows if row.received_at > watermark), incidents=len(states)
    )
