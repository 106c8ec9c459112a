"""`dora_incidents`: one row per incident per affected service, from the API and PagerDuty."""

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from connectors.config import DoraConfig, load_config
from connectors.pagerduty.normalize import (
    PULL_SOURCE,
    WEBHOOK_SOURCE,
    pagerduty_incident_rows,
    unmapped_services,
)
from connectors.warehouse import reading
from connectors.warehouse.schema import (
    api_failure_services,
    api_failures,
    dora_incidents,
    pagerduty_incidents,
    pagerduty_webhook_incidents,
)
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata
from dora_assets.normalized.changes import ChangeFeed, Row, as_dicts, distinct_keys
from dora_assets.normalized.checks import integrity_checks
from dora_assets.normalized.refresh import (
    ConfigDocument,
    Source,
    refresh,
    services_with_new_team,
)
from dora_assets.normalized.report import refresh_result
from dora_assets.resources import WarehouseResource

API_SOURCE = "api"
UNMAPPED_CHECK = "pagerduty_services_mapped"
PAGERDUTY_PREFIX = "pagerduty:"
PAGERDUTY_SOURCES = (PULL_SOURCE, WEBHOOK_SOURCE)
failure, named, incident = api_failures.c, api_failure_services.c, dora_incidents.c


def _held(connection: sa.Connection, ids: Sequence[str], sources: Sequence[str]) -> list[Row]:
    query = sa.select(dora_incidents).where(
        incident.incident_id.in_(ids), incident.source.in_(sources)
    )
    return as_dicts(connection.execute(query))


@dataclass(frozen=True)
class ApiFailures:
    """Live API failures, one row per named service (a team-only failure has service '')."""

    config: DoraConfig
    table: sa.Table = dora_incidents

    def held(self, connection: sa.Connection, keys: Sequence[str]) -> list[Row]:
        return _held(connection, keys, [API_SOURCE])

    def wanted(self, connection: sa.Connection, keys: Sequence[str]) -> list[Row]:
        query = (
            sa.select(api_failures, named.service)
            .join(api_failure_services, named.failure_id == failure.failure_id)
            .where(failure.failure_id.in_(keys), failure.deleted_at.is_(None))
        )
        return [
            {
                "incident_id": row.failure_id,
                "service": row.service,
                "team": row.team or self.config.team_of(row.service),
                "env": row.env,
                "severity": row.severity,
                "name": row.name,
                "status": "open" if row.finished_at is None else "resolved",
                "started_at": row.started_at,
                "finished_at": row.finished_at,
                "source": API_SOURCE,
                "source_url": None,
                "commit_sha": row.commit_sha,
                "version": row.version,
                "custom_tags": row.custom_tags,
                "ingested_at": row.updated_at,
                "started_day": row.started_at.date(),
                "finished_day": row.finished_at.date() if row.finished_at else None,
            }
            for row in connection.execute(query)
        ]


@dataclass(frozen=True)
class PagerDutyIncidents:
    """PagerDuty incidents (keys are PagerDuty ids), the newer of pull and webhook winning."""

    config: DoraConfig
    table: sa.Table = dora_incidents

    def held(self, connection: sa.Connection, keys: Sequence[str]) -> list[Row]:
        return _held(connection, [PAGERDUTY_PREFIX + key for key in keys], PAGERDUTY_SOURCES)

    def wanted(self, connection: sa.Connection, keys: Sequence[str]) -> list[Row]:
        return pagerduty_incident_rows(connection, self.config, keys)


def _api_failures_catalog_teamed(before: ConfigDocument, after: ConfigDocument) -> sa.Select | None:
    services = services_with_new_team(before, after)
    if not services:
        return None
    return (
        sa.select(failure.failure_id)
        .join(api_failure_services, named.failure_id == failure.failure_id)
        .where(failure.team == "", named.service.in_(services))
    )


def _pagerduty_reconfigured(before: ConfigDocument, after: ConfigDocument) -> sa.Select | None:
    """Every PagerDuty incident when its mapping or filters changed, else those recorded
    under a service whose catalog team changed."""
    if any(before[part] != after[part] for part in ("pagerduty_services", "pagerduty_filters")):
        return distinct_keys(
            sa.select(table.c.incident_id)
            for table in (pagerduty_incidents, pagerduty_webhook_incidents)
        )
    services = services_with_new_team(before, after)
    if not services:
        return None
    return sa.select(sa.func.substr(incident.incident_id, len(PAGERDUTY_PREFIX) + 1)).where(
        incident.source.in_(PAGERDUTY_SOURCES), incident.service.in_(services)
    )


def incident_sources(config: DoraConfig) -> list[Source]:
    return [
        Source(
            normalization=ApiFailures(config),
            feeds=[ChangeFeed("dora_incidents.api", failure.failure_id, failure.updated_at)],
            affected_by_config=_api_failures_catalog_teamed,
        ),
        Source(
            normalization=PagerDutyIncidents(config),
            feeds=[
                ChangeFeed(
                    "dora_incidents.pagerduty",
                    pagerduty_incidents.c.incident_id,
                    pagerduty_incidents.c.observed_at,
                ),
                ChangeFeed(
                    "dora_incidents.pagerduty_webhook",
                    pagerduty_webhook_incidents.c.incident_id,
                    pagerduty_webhook_incidents.c.updated_at,
                ),
            ],
            affected_by_config=_pagerduty_reconfigured,
        ),
    ]


def unmapped_services_result(unmapped: Sequence[str]) -> dg.AssetCheckResult:
    listed = ", ".join(sorted(unmapped))
    return dg.AssetCheckResult(
        check_name=UNMAPPED_CHECK,
        passed=not unmapped,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"PagerDuty services without a DORA_CONFIG mapping (recorded under their PagerDuty"
            f" name): {listed}. Map them under pagerduty.services."
            if unmapped
            else "Every PagerDuty service seen is mapped in DORA_CONFIG."
        ),
        metadata={
            "unmapped_services": dg.MetadataValue.json(sorted(unmapped)),
            "unmapped_count": dg.MetadataValue.int(len(unmapped)),
        },
    )


@dg.asset(
    key="dora_incidents",
    group_name="normalized",
    deps=["event_api_events", "pagerduty_incidents"],
    kinds={"sql", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(dora_incidents),
    check_specs=[
        dg.AssetCheckSpec(
            UNMAPPED_CHECK,
            asset="dora_incidents",
            description="Lists PagerDuty services that DORA_CONFIG does not map (a warning).",
        )
    ],
    description="""
**Every incident, one row per affected service** (key `incident_id`, `service`). The
downstream contract of DESIGN.md.

Maintained incrementally from two sources, each read from its watermark:
- failures sent to the event API (`api_failures` and `api_failure_services`, by
  `updated_at`; retracted ones removed; a team-only failure has `service = ''`;
  `status` is `resolved` once `finished_at` is known);
- PagerDuty incidents from the REST pull (`pagerduty_incidents`, by `observed_at`) and
  the folded webhooks (`pagerduty_webhook_incidents`, by `updated_at`): `pagerduty:<id>`,
  the newer observation winning, mapped and filtered through `DORA_CONFIG`.

Only rows that differ are written, and each change records the metric days it touches
(before and after: a late resolution marks its resolution day) for the late-data
sensor. `team` falls back to the service catalog, then `''`; a `DORA_CONFIG` edit
re-applies just the rows it can change. `started_day`/`finished_day` are the UTC days
the metrics group on.
""",
)
def dora_incidents_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    config = load_config()
    applied = refresh(
        warehouse.engine,
        dora_incidents.name,
        incident_sources(config),
        config,
        on_progress=context.log.info,
    )
    with reading(warehouse.engine) as connection:
        unmapped = unmapped_services(connection, config)
    return refresh_result(
        warehouse.engine,
        dora_incidents,
        applied,
        check_results=[unmapped_services_result(list(unmapped))],
    )


dora_incidents_checks = integrity_checks(
    dora_incidents,
    key_columns=["incident_id", "service"],
    timestamp_columns=["started_at", "finished_at"],
)
