"""PagerDuty webhooks v3: the receiver over real HTTP, and folding deliveries into incidents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from connectors.api.app import ApiSettings, create_app
from connectors.pagerduty.webhooks import fold_webhook_deliveries, sign
from connectors.serving import serve_in_thread
from connectors.warehouse.schema import (
    ingest_state,
    pagerduty_webhook_deliveries,
    pagerduty_webhook_incidents,
)

OLD_SECRET = "old-signing-secret"
NEW_SECRET = "new-signing-secret"
EVENT_STATUS = {
    "incident.triggered": "triggered",
    "incident.acknowledged": "acknowledged",
    "incident.resolved": "resolved",
    "incident.reopened": "triggered",
}


def incident_event(
    event_type: str,
    occurred_at: str,
    *,
    incident_id: str = "Q1ABCDEF",
    status: str | None = None,
    priority: str | None = "P2",
) -> dict:
    """A v3 delivery shaped like PagerDuty's documented examples."""
    return {
        "event": {
            "id": f"01{event_type}{occurred_at}",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": occurred_at,
            "agent": {"id": "PUSER01", "type": "user_reference", "summary": "Ada"},
            "client": None,
            "data": {
                "id": incident_id,
                "type": "incident",
                "self": f"https://api.pagerduty.com/incidents/{incident_id}",
                "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}",
                "number": 42,
                "status": status or EVENT_STATUS[event_type],
                "incident_key": "d3640fbd41094207a1c11e58e46b1662",
                "created_at": "2025-03-01T10:00:00Z",
                "title": "Checkout latency above SLO",
                "service": {"id": "PSVC001", "type": "service_reference", "summary": "Checkout"},
                "assignees": [],
                "escalation_policy": {"id": "PEP0001", "type": "escalation_policy_reference"},
                "teams": [
                    {"id": "PTEAM01", "type": "team_reference", "summary": "Payments"},
                    {"id": "PTEAM02", "type": "team_reference", "summary": "SRE"},
                ],
                "priority": priority
                and {"id": "PPRIO01", "type": "priority_reference", "summary": priority},
                "urgency": "high",
                "conference_bridge": None,
                "resolve_reason": None,
            },
        }
    }


def deliver(
    base_url: str,
    document: dict | bytes,
    *,
    webhook_id: str | None = None,
    signature: str | None = None,
    secret: str = NEW_SECRET,
) -> httpx.Response:
    """POST signed with `secret`, or with `signature` as given ('' sends none)."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    signature = sign(body, secret) if signature is None else signature
    headers = {"Content-Type": "application/json"}
    if signature:
        headers["X-PagerDuty-Signature"] = signature
    if webhook_id:
        headers["X-Webhook-Id"] = webhook_id
    return httpx.post(f"{base_url}/webhooks/pagerduty", content=body, headers=headers)


def serve(engine: sa.Engine, secrets: list[str]) -> AbstractContextManager[str]:
    return serve_in_thread(create_app(engine, ApiSettings(api_keys=["k"], webhook_secrets=secrets)))


@pytest.fixture
def api(warehouse: sa.Engine) -> Iterator[str]:
    with serve(warehouse, [OLD_SECRET, NEW_SECRET]) as base_url:
        yield base_url


def delivery_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        column = pagerduty_webhook_deliveries.c.webhook_id
        return list(connection.execute(sa.select(column).order_by(column)).scalars())


def folded(engine: sa.Engine, incident_id: str = "Q1ABCDEF") -> sa.Row:
    fold_webhook_deliveries(engine)
    with engine.connect() as connection:
        table = pagerduty_webhook_incidents
        return connection.execute(sa.select(table).where(table.c.incident_id == incident_id)).one()


# --- the receiver -----------------------------------------------------------------------


def test_valid_signature_lands_the_delivery(api: str, warehouse: sa.Engine) -> None:
    document = incident_event("incident.triggered", "2025-03-01T10:00:05.250Z")
    response = deliver(api, document, webhook_id="W1")
    assert response.status_code == 202
    assert response.json() == {
        "data": {"id": "W1", "type": "pagerduty_webhook_delivery", "status": "stored"}
    }
    with warehouse.connect() as connection:
        row = connection.execute(sa.select(pagerduty_webhook_deliveries)).one()
    assert row.webhook_id == "W1"
    assert row.event_type == "incident.triggered"
    assert row.incident_id == "Q1ABCDEF"
    assert row.occurred_at == datetime(2025, 3, 1, 10, 0, 5, 250000)
    assert json.loads(row.payload) == document


def test_the_event_id_stands_in_for_a_missing_webhook_id(api: str, warehouse: sa.Engine) -> None:
    document = incident_event("incident.triggered", "2025-03-01T10:00:00Z")
    assert deliver(api, document).status_code == 202
    assert delivery_ids(warehouse) == [document["event"]["id"]]


def test_rotated_secrets_each_verify(api: str, warehouse: sa.Engine) -> None:
    first = json.dumps(incident_event("incident.triggered", "2025-03-01T10:00:00Z")).encode()
    second = json.dumps(incident_event("incident.acknowledged", "2025-03-01T10:01:00Z")).encode()
    assert deliver(api, first, webhook_id="W1", secret=OLD_SECRET).status_code == 202
    # During a rotation PagerDuty sends one v1 value per secret; any match is enough.
    two_values = f"{sign(second, 'retired-secret')}, {sign(second, NEW_SECRET)}"
    assert deliver(api, second, webhook_id="W2", signature=two_values).status_code == 202
    assert delivery_ids(warehouse) == ["W1", "W2"]


@pytest.mark.parametrize(
    "signature",
    ["v1=" + "0" * 64, "v1=not-hex", "v0=abc", "sha256=abc"],
)
def test_a_bad_signature_is_403_and_stores_nothing(
    api: str, warehouse: sa.Engine, signature: str
) -> None:
    document = incident_event("incident.triggered", "2025-03-01T10:00:00Z")
    response = deliver(api, document, webhook_id="W1", signature=signature)
    assert response.status_code == 403
    assert "PAGERDUTY_WEBHOOK_SECRETS" in response.json()["errors"][0]["detail"]
    assert delivery_ids(warehouse) == []


def test_a_body_signed_with_an_unknown_secret_is_403(api: str, warehouse: sa.Engine) -> None:
    document = incident_event("incident.triggered", "2025-03-01T10:00:00Z")
    assert deliver(api, document, secret="someone-else").status_code == 403
    assert delivery_ids(warehouse) == []


def test_a_missing_signature_is_401(api: str, warehouse: sa.Engine) -> None:
    document = incident_event("incident.triggered", "2025-03-01T10:00:00Z")
    response = deliver(api, document, webhook_id="W1", signature="")
    assert response.status_code == 401
    assert "X-PagerDuty-Signature" in response.json()["errors"][0]["detail"]
    assert delivery_ids(warehouse) == []


def test_without_secrets_the_endpoint_is_503(warehouse: sa.Engine) -> None:
    with serve(warehouse, []) as base_url:
        document = incident_event("incident.triggered", "2025-03-01T10:00:00Z")
        response = deliver(base_url, document, webhook_id="W1")
    assert response.status_code == 503
    assert "PAGERDUTY_WEBHOOK_SECRETS" in response.json()["errors"][0]["detail"]
    assert delivery_ids(warehouse) == []


def _without_occurred_at() -> bytes:
    document = incident_event("incident.triggered", "2025-03-01T10:00:00Z")
    del document["event"]["occurred_at"]
    return json.dumps(document).encode()


def _with_incident_id(incident_id: str) -> bytes:
    document = incident_event("incident.triggered", "2025-03-01T10:00:00Z")
    document["event"]["data"]["id"] = incident_id
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"event": {"event_type": "incident.trig', "not valid JSON"),
        (b"[1, 2]", '"event"'),
        ("é".encode("latin-1"), "UTF-8"),
        (b'{"event": {"resource_type": "incident"}}', "event.event_type"),
        (_without_occurred_at(), "event.occurred_at"),
        (
            json.dumps(incident_event("incident.triggered", "2025-03-01 10:00:00")).encode(),
            "event.occurred_at",
        ),
        (
            json.dumps(incident_event("incident.triggered", "9999-12-31T23:59:59-01:00")).encode(),
            "event.occurred_at",
        ),
        (_with_incident_id("P\x00X"), "event.data.id"),
        (_with_incident_id("P" * 65), "event.data.id"),
    ],
)
def test_a_malformed_body_is_400(api: str, warehouse: sa.Engine, body: bytes, named: str) -> None:
    response = deliver(api, body, webhook_id="W1")
    assert response.status_code == 400
    assert named in response.json()["errors"][0]["detail"]
    assert delivery_ids(warehouse) == []


def test_non_incident_events_are_accepted_and_ignored(api: str, warehouse: sa.Engine) -> None:
    document = {
        "event": {
            "id": "01SERVICEUPDATED",
            "event_type": "service.updated",
            "resource_type": "service",
            "occurred_at": "2025-03-01T10:00:00Z",
            "data": {"id": "PSVC001", "type": "service", "name": "Checkout"},
        }
    }
    response = deliver(api, document, webhook_id="W1")
    assert response.status_code == 202
    assert response.json()["data"]["status"] == "ignored"
    assert delivery_ids(warehouse) == []


def test_a_redelivered_webhook_id_changes_nothing(api: str, warehouse: sa.Engine) -> None:
    triggered = incident_event("incident.triggered", "2025-03-01T10:00:00Z")
    resolved = incident_event("incident.resolved", "2025-03-01T11:00:00Z")
    assert deliver(api, triggered, webhook_id="W1").json()["data"]["status"] == "stored"
    again = deliver(api, resolved, webhook_id="W1")
    assert again.status_code == 202
    assert again.json()["data"]["status"] == "duplicate"
    assert delivery_ids(warehouse) == ["W1"]
    state = folded(warehouse)
    assert (state.status, state.resolved_at) == ("triggered", None)


# --- folding deliveries into incident state ---------------------------------------------


def test_resolved_delivered_before_triggered_ends_resolved(api: str, warehouse: sa.Engine) -> None:
    deliver(api, incident_event("incident.resolved", "2025-03-01T10:45:30Z"), webhook_id="W2")
    deliver(api, incident_event("incident.triggered", "2025-03-01T10:00:00Z"), webhook_id="W1")
    state = folded(warehouse)
    assert state.status == "resolved"
    assert state.created_at == datetime(2025, 3, 1, 10, 0)
    assert state.resolved_at == datetime(2025, 3, 1, 10, 45, 30)
    assert state.observed_at == datetime(2025, 3, 1, 10, 45, 30)


def test_out_of_order_across_folds_still_ends_resolved(api: str, warehouse: sa.Engine) -> None:
    deliver(api, incident_event("incident.resolved", "2025-03-01T10:45:30Z"), webhook_id="W2")
    assert folded(warehouse).status == "resolved"
    deliver(api, incident_event("incident.triggered", "2025-03-01T10:00:00Z"), webhook_id="W1")
    state = folded(warehouse)
    assert (state.status, state.resolved_at) == ("resolved", datetime(2025, 3, 1, 10, 45, 30))


def test_a_reopen_after_resolve_makes_it_open_again(api: str, warehouse: sa.Engine) -> None:
    deliver(api, incident_event("incident.triggered", "2025-03-01T10:00:00Z"), webhook_id="W1")
    deliver(api, incident_event("incident.resolved", "2025-03-01T10:30:00Z"), webhook_id="W2")
    deliver(api, incident_event("incident.reopened", "2025-03-01T12:00:00Z"), webhook_id="W3")
    state = folded(warehouse)
    assert (state.status, state.resolved_at) == ("triggered", None)
    # Resolved again later: the latest resolution is the one that counts.
    deliver(api, incident_event("incident.resolved", "2025-03-01T13:15:00Z"), webhook_id="W4")
    state = folded(warehouse)
    assert (state.status, state.resolved_at) == ("resolved", datetime(2025, 3, 1, 13, 15))


def test_acknowledged_is_still_open(api: str, warehouse: sa.Engine) -> None:
    deliver(api, incident_event("incident.triggered", "2025-03-01T10:00:00Z"), webhook_id="W1")
    deliver(api, incident_event("incident.acknowledged", "2025-03-01T10:02:00Z"), webhook_id="W2")
    state = folded(warehouse)
    assert (state.status, state.resolved_at) == ("acknowledged", None)


def test_the_latest_event_sets_the_fields(api: str, warehouse: sa.Engine) -> None:
    deliver(api, incident_event("incident.triggered", "2025-03-01T10:00:00Z"), webhook_id="W1")
    bumped = incident_event(
        "incident.priority_updated", "2025-03-01T10:05:00Z", status="acknowledged", priority="P1"
    )
    deliver(api, bumped, webhook_id="W2")
    state = folded(warehouse)
    assert state.priority == "P1"
    assert state.status == "acknowledged"
    assert state.incident_number == 42
    assert state.title == "Checkout latency above SLO"
    assert state.urgency == "high"
    assert (state.service_id, state.service_name) == ("PSVC001", "Checkout")
    assert json.loads(state.teams) == ["Payments", "SRE"]
    assert state.html_url == "https://acme.pagerduty.com/incidents/Q1ABCDEF"
    assert state.observed_at == datetime(2025, 3, 1, 10, 5)


def test_a_note_is_landed_but_does_not_change_the_state(api: str, warehouse: sa.Engine) -> None:
    deliver(api, incident_event("incident.triggered", "2025-03-01T10:00:00Z"), webhook_id="W1")
    note = {
        "event": {
            "id": "01NOTE",
            "event_type": "incident.annotated",
            "resource_type": "incident",
            "occurred_at": "2025-03-01T10:10:00Z",
            "data": {
                "incident": {"id": "Q1ABCDEF", "type": "incident_reference"},
                "content": "Rolled back",
                "type": "incident_note",
            },
        }
    }
    assert deliver(api, note, webhook_id="W2").status_code == 202
    assert delivery_ids(warehouse) == ["W1", "W2"]
    state = folded(warehouse)
    assert (state.status, state.observed_at) == ("triggered", datetime(2025, 3, 1, 10, 0))


def test_each_fold_reports_what_it_took_up(api: str, warehouse: sa.Engine) -> None:
    deliver(api, incident_event("incident.triggered", "2025-03-01T10:00:00Z"), webhook_id="W1")
    other = incident_event("incident.triggered", "2025-03-01T10:01:00Z", incident_id="Q2OTHER")
    deliver(api, other, webhook_id="W2")
    report = fold_webhook_deliveries(warehouse)
    assert (report.deliveries, report.incidents) == (2, 2)
    assert fold_webhook_deliveries(warehouse).deliveries == 0


def test_a_delivery_committed_behind_the_watermark_is_still_folded(
    api: str, warehouse: sa.Engine
) -> None:
    deliver(api, incident_event("incident.triggered", "2025-03-01T10:00:00Z"), webhook_id="W1")
    fold_webhook_deliveries(warehouse)
    with warehouse.connect() as connection:
        watermark = datetime.fromisoformat(
            connection.execute(sa.select(ingest_state.c.value)).scalar_one()
        )
    # A request that took its received_at before the fold read but committed after it.
    late = incident_event("incident.resolved", "2025-03-01T10:20:00Z")
    with warehouse.begin() as connection:
        connection.execute(
            pagerduty_webhook_deliveries.insert().values(
                webhook_id="W2",
                event_type="incident.resolved",
                incident_id="Q1ABCDEF",
                occurred_at=datetime(2025, 3, 1, 10, 20),
                received_at=watermark - timedelta(seconds=30),
                payload=json.dumps(late),
            )
        )
    state = folded(warehouse)
    assert (state.status, state.resolved_at) == ("resolved", datetime(2025, 3, 1, 10, 20))


@pytest.mark.parametrize("created_at", [1740823200, "0001-01-01T00:00:00+01:00"])
def test_odd_field_values_never_fail_the_fold(
    api: str, warehouse: sa.Engine, created_at: object
) -> None:
    document = incident_event("incident.priority_updated", "2025-03-01T10:00:00Z", status="x")
    document["event"]["data"].update(
        title="Checkout \x00down \ud800" + "!" * 2000,
        number=True,
        status=["resolved"],
        created_at=created_at,
        teams=["Payments", {"summary": 7}, {"summary": "SRE"}],
        service="Checkout",
        priority={"summary": {"name": "P1"}},
    )
    body = json.dumps(document).encode()  # ASCII-escaped, so the lone surrogate is valid JSON
    assert deliver(api, body, webhook_id="W1").status_code == 202
    state = folded(warehouse)
    assert state.title == "Checkout down ?" + "!" * 1009
    assert state.status == "triggered"  # neither the event type nor data.status says otherwise
    assert state.incident_number is None
    assert state.created_at == datetime(2025, 3, 1, 10, 0)  # fell back to the first event
    assert json.loads(state.teams) == ["SRE"]
    assert (state.service_id, state.service_name, state.priority) == (None, None, None)
