"""PagerDuty incidents into `dora_incidents` rows: merge, mapping, defaults and filters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.config import DoraConfig, IncidentFilters, ServiceMapping, parse_config
from connectors.pagerduty.normalize import pagerduty_incident_rows, unmapped_services
from connectors.pagerduty.webhooks import (
    fold_webhook_deliveries,
    parse_webhook_event,
    store_delivery,
)
from connectors.warehouse.schema import dora_incidents, pagerduty_incidents


def pull(engine: sa.Engine, incident_id: str = "PABC123", **overrides: Any) -> None:
    """Land one incident as the REST pull would, with a resolved Search API incident by default."""
    row = {
        "incident_id": incident_id,
        "incident_number": 7,
        "title": "Search is down",
        "status": "resolved",
        "urgency": "high",
        "priority": "P1",
        "service_id": "PSVC002",
        "service_name": "Search API",
        "teams": json.dumps(["Discovery", "SRE"]),
        "created_at": datetime(2025, 3, 1, 23, 50),
        "resolved_at": datetime(2025, 3, 2, 0, 20, 15),
        "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}",
        "observed_at": datetime(2025, 3, 2, 1, 0),
        "raw": "{}",
    } | overrides
    row["created_day"] = row["created_at"].date()
    with engine.begin() as connection:
        connection.execute(pagerduty_incidents.insert().values(**row))


def webhook(engine: sa.Engine, webhook_id: str, event_type: str, occurred_at: str) -> None:
    """Land and fold one webhook delivery about incident PABC123."""
    document = {
        "event": {
            "id": webhook_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": occurred_at,
            "data": {
                "id": "PABC123",
                "type": "incident",
                "html_url": "https://acme.pagerduty.com/incidents/PABC123",
                "number": 7,
                "status": event_type.removeprefix("incident."),
                "created_at": "2025-03-01T23:50:00Z",
                "title": "Search is down (webhook)",
                "service": {"id": "PSVC002", "type": "service_reference", "summary": "Search API"},
                "teams": [{"id": "PTEAM09", "type": "team_reference", "summary": "Discovery"}],
                "priority": None,
                "urgency": "high",
            },
        }
    }
    payload = json.dumps(document)
    store_delivery(engine, webhook_id, parse_webhook_event(payload), payload)
    fold_webhook_deliveries(engine)


@dataclass(frozen=True)
class Normalized:
    rows: list[dict[str, Any]]
    unmapped_services: set[str]


def normalize(engine: sa.Engine, config: DoraConfig) -> Normalized:
    """Every PagerDuty incident as `dora_incidents` rows, and the unmapped services."""
    with engine.connect() as connection:
        return Normalized(
            pagerduty_incident_rows(connection, config), unmapped_services(connection, config)
        )


def only_row(engine: sa.Engine, config: DoraConfig) -> dict[str, Any]:
    (row,) = normalize(engine, config).rows
    return row


def test_a_resolved_incident_becomes_one_complete_row(warehouse: sa.Engine) -> None:
    config = parse_config({"pagerduty": {"services": {"PSVC002": {"service": "search"}}}})
    result = normalize(warehouse, config)
    assert result.rows == []
    pull(warehouse)
    result = normalize(warehouse, config)
    assert result.rows == [
        {
            "incident_id": "pagerduty:PABC123",
            "service": "search",
            "team": "Discovery",
            "env": "prod",
            "severity": "P1",
            "name": "Search is down",
            "status": "resolved",
            "started_at": datetime(2025, 3, 1, 23, 50),
            "finished_at": datetime(2025, 3, 2, 0, 20, 15),
            "source": "pagerduty",
            "source_url": "https://acme.pagerduty.com/incidents/PABC123",
            "commit_sha": None,
            "version": None,
            "custom_tags": "[]",
            "ingested_at": datetime(2025, 3, 2, 1, 0),
            "started_day": date(2025, 3, 1),
            "finished_day": date(2025, 3, 2),
        }
    ]
    assert result.unmapped_services == set()
    # The rows are exactly what the normalized table takes.
    with warehouse.begin() as connection:
        connection.execute(dora_incidents.insert(), result.rows)


@pytest.mark.parametrize("status", ["triggered", "acknowledged"])
def test_an_unresolved_incident_is_open_without_finished_at(
    warehouse: sa.Engine, status: str
) -> None:
    pull(warehouse, status=status, resolved_at=None)
    row = only_row(warehouse, DoraConfig())
    assert (row["status"], row["finished_at"], row["finished_day"]) == ("open", None, None)


def test_mapping_by_service_id(warehouse: sa.Engine) -> None:
    pull(warehouse)
    config = DoraConfig(
        pagerduty_services={
            "PSVC002": ServiceMapping(service="search", team="discovery", env="staging"),
            "Search API": ServiceMapping(service="by-name", team="by-name", env="by-name"),
        }
    )
    row = only_row(warehouse, config)
    # The id is the stable key, so it wins over a name entry for the same service.
    assert (row["service"], row["team"], row["env"]) == ("search", "discovery", "staging")


def test_mapping_by_service_name_takes_the_catalog_team(warehouse: sa.Engine) -> None:
    pull(warehouse)
    config = parse_config(
        {
            "services": {"search": {"team": "relevance"}},
            "pagerduty": {"services": {"Search API": {"service": "search", "env": "eu"}}},
        }
    )
    row = only_row(warehouse, config)
    assert (row["service"], row["team"], row["env"]) == ("search", "relevance", "eu")


def test_a_mapping_without_service_keeps_the_pagerduty_name(warehouse: sa.Engine) -> None:
    pull(warehouse)
    config = DoraConfig(pagerduty_services={"PSVC002": ServiceMapping(team="platform")})
    row = only_row(warehouse, config)
    assert (row["service"], row["team"], row["env"]) == ("Search API", "platform", "prod")


def test_unmapped_defaults_service_name_catalog_team_and_prod(warehouse: sa.Engine) -> None:
    pull(warehouse)
    config = DoraConfig(service_teams={"Search API": "relevance"})
    result = normalize(warehouse, config)
    (row,) = result.rows
    assert (row["service"], row["team"], row["env"]) == ("Search API", "relevance", "prod")
    assert result.unmapped_services == {"Search API"}


def test_without_catalog_team_the_first_pagerduty_team_counts(warehouse: sa.Engine) -> None:
    pull(warehouse, teams=json.dumps([None, "SRE", "Discovery"]))
    assert only_row(warehouse, DoraConfig())["team"] == "SRE"


def test_without_any_team_the_team_is_empty(warehouse: sa.Engine) -> None:
    pull(warehouse, teams="[]")
    assert only_row(warehouse, DoraConfig())["team"] == ""


def test_severity_is_the_priority_else_the_urgency(warehouse: sa.Engine) -> None:
    pull(warehouse, "PWITHP1", priority="P1", urgency="low")
    pull(warehouse, "PNOPRIO", priority=None, urgency="low")
    rows = normalize(warehouse, DoraConfig()).rows
    assert {row["incident_id"]: row["severity"] for row in rows} == {
        "pagerduty:PNOPRIO": "low",
        "pagerduty:PWITHP1": "P1",
    }


def _pull_a_mix(engine: sa.Engine) -> None:
    pull(engine, "PHIGHP1", urgency="high", priority="P1")
    pull(engine, "PLOWP3", urgency="low", priority="P3")
    pull(engine, "PNOPRIO", urgency="high", priority=None)
    pull(engine, "POTHER", service_id="PSVC009", service_name="Billing", priority="P2")


SEARCH, BILLING = {"Search API"}, {"Billing"}


def only(**names: set[str]) -> IncidentFilters:
    return IncidentFilters(**{key: frozenset(values) for key, values in names.items()})


@pytest.mark.parametrize(
    ("filters", "kept", "unmapped"),
    [
        (IncidentFilters(), {"PHIGHP1", "PLOWP3", "PNOPRIO", "POTHER"}, SEARCH | BILLING),
        (
            only(urgencies={"high"}),
            {"PHIGHP1", "PNOPRIO", "POTHER"},
            SEARCH | BILLING,
        ),
        (
            only(priorities={"P1", "P2"}),
            {"PHIGHP1", "POTHER"},
            SEARCH | BILLING,
        ),
        (only(services={"PSVC009"}), {"POTHER"}, BILLING),
        (
            only(services={"Search API"}),
            {"PHIGHP1", "PLOWP3", "PNOPRIO"},
            SEARCH,
        ),
        (
            only(urgencies={"high"}, priorities={"P1", "P3"}),
            {"PHIGHP1"},
            SEARCH,
        ),
    ],
)
def test_filters_drop_what_they_do_not_name(
    warehouse: sa.Engine, filters: IncidentFilters, kept: set[str], unmapped: set[str]
) -> None:
    _pull_a_mix(warehouse)
    result = normalize(warehouse, DoraConfig(pagerduty_filters=filters))
    assert {row["incident_id"].removeprefix("pagerduty:") for row in result.rows} == kept
    # Services whose incidents were all filtered out are not worth a mapping warning.
    assert result.unmapped_services == unmapped


def test_a_newer_webhook_observation_wins_over_the_pull(warehouse: sa.Engine) -> None:
    pull(warehouse, status="triggered", resolved_at=None, observed_at=datetime(2025, 3, 2, 0, 5))
    webhook(warehouse, "W1", "incident.triggered", "2025-03-01T23:50:00Z")
    assert only_row(warehouse, DoraConfig())["source"] == "pagerduty"  # the pull is newer
    webhook(warehouse, "W2", "incident.resolved", "2025-03-02T00:20:00Z")
    row = only_row(warehouse, DoraConfig())
    assert row["source"] == "pagerduty_webhook"
    assert (row["status"], row["finished_at"]) == ("resolved", datetime(2025, 3, 2, 0, 20))
    assert row["name"] == "Search is down (webhook)"
    assert row["severity"] == "high"  # the webhook saw no priority
    assert row["ingested_at"] == datetime(2025, 3, 2, 0, 20)


def test_a_newer_pull_wins_over_the_webhook(warehouse: sa.Engine) -> None:
    webhook(warehouse, "W1", "incident.resolved", "2025-03-02T00:20:00Z")
    pull(warehouse)  # observed at 01:00 with PagerDuty's own resolved_at
    row = only_row(warehouse, DoraConfig())
    assert row["source"] == "pagerduty"
    assert row["finished_at"] == datetime(2025, 3, 2, 0, 20, 15)
    assert row["name"] == "Search is down"


def test_webhook_only_incidents_are_normalized(warehouse: sa.Engine) -> None:
    webhook(warehouse, "W1", "incident.triggered", "2025-03-01T23:50:00Z")
    webhook(warehouse, "W2", "incident.acknowledged", "2025-03-01T23:55:00Z")
    row = only_row(warehouse, DoraConfig())
    assert (row["source"], row["status"], row["team"]) == ("pagerduty_webhook", "open", "Discovery")
    assert (row["started_at"], row["started_day"]) == (
        datetime(2025, 3, 1, 23, 50),
        date(2025, 3, 1),
    )
