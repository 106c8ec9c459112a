"""PagerDuty incidents as `dora_incidents` rows: merge pull and webhooks, map, filter.

The REST pull (`pagerduty_incidents`) and the folded webhooks
(`pagerduty_webhook_incidents`) may both describe an incident; the newer
observation wins. Each incident is then mapped through `DORA_CONFIG` as
DESIGN.md's "PagerDuty semantics" state (service, team, env, severity) and
dropped when the configured filters exclude it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from connectors.config import DoraConfig, IncidentFilters, ServiceMapping
from connectors.warehouse.schema import pagerduty_incidents, pagerduty_webhook_incidents

PULL_SOURCE = "pagerduty"
WEBHOOK_SOURCE = "pagerduty_webhook"
DEFAULT_ENV = "prod"
_NO_MAPPING = ServiceMapping()
_COLUMNS = (
    "incident_id",
    "title",
    "status",
    "urgency",
    "priority",
    "service_id",
    "service_name",
    "teams",
    "created_at",
    "resolved_at",
    "html_url",
    "observed_at",
)


@dataclass(frozen=True)
class PagerDutyIncident:
    """One incident as its newest observation (pull or webhook) describes it."""

    incident_id: str
    title: str | None
    status: str
    urgency: str | None
    priority: str | None
    service_id: str | None
    service_name: str | None
    teams: tuple[str, ...]  # team names, in PagerDuty's order
    created_at: datetime
    resolved_at: datetime | None
    html_url: str | None
    observed_at: datetime
    source: str = PULL_SOURCE


class ServiceFields(Protocol):
    """What mapping and filtering read of an incident."""

    service_id: str | None
    service_name: str | None
    urgency: str | None
    priority: str | None


def mapping_for(incident: ServiceFields, config: DoraConfig) -> ServiceMapping | None:
    """The DORA_CONFIG entry for the incident's service, by id first, then by name."""
    for key in (incident.service_id, incident.service_name):
        if key is not None and key in config.pagerduty_services:
            return config.pagerduty_services[key]
    return None


def passes_filters(incident: ServiceFields, filters: IncidentFilters) -> bool:
    """An empty filter lets everything through; a missing value never matches a set filter."""
    return (
        (not filters.urgencies or incident.urgency in filters.urgencies)
        and (not filters.priorities or incident.priority in filters.priorities)
        and (
            not filters.services
            or incident.service_id in filters.services
            or incident.service_name in filters.services
        )
    )


def incident_row(incident: PagerDutyIncident, config: DoraConfig) -> dict[str, Any]:
    """The `dora_incidents` row of one PagerDuty incident (filters are applied separately)."""
    mapping = mapping_for(incident, config) or _NO_MAPPING
    service = _first(mapping.service, incident.service_name, incident.service_id, "")
    team = _first(
        mapping.team, config.team_of(service) or None, next(iter(incident.teams), None), ""
    )
    resolved = incident.status == "resolved"
    # A resolved incident without resolved_at (should not happen) finished by the time we saw it.
    finished_at = (incident.resolved_at or incident.observed_at) if resolved else None
    return {
        "incident_id": f"pagerduty:{incident.incident_id}",
        "service": service,
        "team": team,
        "env": _first(mapping.env, DEFAULT_ENV),
        "severity": incident.priority or incident.urgency,
        "name": incident.title,
        "status": "resolved" if resolved else "open",
        "started_at": incident.created_at,
        "finished_at": finished_at,
        "source": incident.source,
        "source_url": incident.html_url,
        "commit_sha": None,
        "version": None,
        "custom_tags": "[]",
        "ingested_at": incident.observed_at,
        "started_day": incident.created_at.date(),
        "finished_day": finished_at.date() if finished_at else None,
    }


def _first(*values: str | None) -> str:
    return next(value for value in values if value is not None)


def _team_names(teams: str) -> tuple[str, ...]:
    # A team without a summary is stored as null; it names nothing.
    return tuple(name for name in json.loads(teams) if name)


def newest_observations(
    connection: sa.Connection, incident_ids: Sequence[str] | None = None
) -> list[PagerDutyIncident]:
    """Each incident (of `incident_ids`, else all) once, from whichever of pull and
    webhooks observed it last.

    On a tie the pull wins: its `resolved_at` comes from PagerDuty itself.
    """

    def observations(table: sa.Table, source: str, preference: int) -> sa.Select:
        query = sa.select(
            *(table.c[name] for name in _COLUMNS),
            sa.literal(source).label("source"),
            sa.literal(preference).label("preference"),
        )
        return query if incident_ids is None else query.where(table.c.incident_id.in_(incident_ids))

    both = sa.union_all(
        observations(pagerduty_incidents, PULL_SOURCE, 0),
        observations(pagerduty_webhook_incidents, WEBHOOK_SOURCE, 1),
    ).subquery()
    ranked = sa.select(
        both,
        sa.func.row_number()
        .over(
            partition_by=both.c.incident_id,
            order_by=(both.c.observed_at.desc(), both.c.preference),
        )
        .label("rank"),
    ).subquery()
    newest = (
        sa.select(*(ranked.c[name] for name in (*_COLUMNS, "source")))
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.incident_id)
    )
    return [
        PagerDutyIncident(**{**row._mapping, "teams": _team_names(row.teams)})
        for row in connection.execute(newest)
    ]


def pagerduty_incident_rows(
    connection: sa.Connection, config: DoraConfig, incident_ids: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The `dora_incidents` rows of the incidents (of `incident_ids`, else all) that the
    filters keep."""
    return [
        incident_row(incident, config)
        for incident in newest_observations(connection, incident_ids)
        if passes_filters(incident, config.pagerduty_filters)
    ]


def unmapped_services(connection: sa.Connection, config: DoraConfig) -> set[str]:
    """PagerDuty services (name, else id) of incidents the filters keep that DORA_CONFIG
    does not map (their incidents are recorded under the defaults)."""
    fields = ("service_id", "service_name", "urgency", "priority")
    seen = sa.union(
        *(
            sa.select(*(table.c[name] for name in fields))
            for table in (pagerduty_incidents, pagerduty_webhook_incidents)
        )
    )
    unmapped = {
        row.service_name or row.service_id or ""
        for row in connection.execute(seen)
        if passes_filters(row, config.pagerduty_filters) and mapping_for(row, config) is None
    }
    unmapped.discard("")
    return unmapped
