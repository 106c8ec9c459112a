"""`dora_incidents`: one row per incident per affected service, from the API and PagerDuty."""

from collections.abc import Sequence

import dagster as dg
import sqlalchemy as sa

from connectors.config import load_config
from connectors.pagerduty.normalize import pagerduty_incident_rows
from connectors.warehouse.schema import (
    api_failure_services,
    api_failures,
    dora_incidents,
    dora_service_catalog,
)
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata, table_metadata
from dora_assets.normalized.catalog import refresh_service_catalog, team_or_catalog_team
from dora_assets.normalized.checks import integrity_checks
from dora_assets.resources import WarehouseResource
from dora_assets.sql import insert_from_select, utc_date

UNMAPPED_CHECK = "pagerduty_services_mapped"


def incidents_from_api() -> sa.Select:
    """Live API failures, one row per named service (a team-only failure has service ''),
    in `dora_incidents` column order."""
    failure, named = api_failures.c, api_failure_services.c
    return (
        sa.select(
            failure.failure_id,
            named.service,
            team_or_catalog_team(failure.team),
            failure.env,
            failure.severity,
            failure.name,
            sa.case((failure.finished_at.is_(None), "open"), else_="resolved"),
            failure.started_at,
            failure.finished_at,
            sa.literal("api"),
            sa.null(),
            failure.commit_sha,
            failure.version,
            failure.custom_tags,
            failure.updated_at,
            utc_date(failure.started_at),
            utc_date(failure.finished_at),
        )
        .select_from(
            api_failures.join(
                api_failure_services, named.failure_id == failure.failure_id
            ).outerjoin(dora_service_catalog, dora_service_catalog.c.service == named.service)
        )
        .where(failure.deleted_at.is_(None))
    )


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

Rebuilt in one transaction from two sources:
- failures sent to the event API (`api_failures` joined to `api_failure_services`,
  retracted ones dropped; a team-only failure has `service = ''`; `status` is
  `resolved` once `finished_at` is known), with one `INSERT ... SELECT`;
- PagerDuty incidents from the REST pull and the webhooks (`pagerduty:<id>`, the newer
  observation winning), mapped through `DORA_CONFIG`.

`team` falls back to the service catalog, then `''`. `started_day`/`finished_day` are
the UTC days the metrics group on.
""",
)
def dora_incidents_asset(warehouse: WarehouseResource) -> dg.MaterializeResult:
    config = load_config()
    pagerduty = pagerduty_incident_rows(warehouse.engine, config)
    with warehouse.rewriting(dora_incidents, dora_service_catalog) as connection:
        refresh_service_catalog(connection, config)
        connection.execute(sa.delete(dora_incidents))
        from_api = insert_from_select(connection, dora_incidents, incidents_from_api())
        if pagerduty.rows:
            connection.execute(sa.insert(dora_incidents), pagerduty.rows)
        incidents = dora_incidents.c
        metadata = table_metadata(
            connection,
            dora_incidents,
            from_api + len(pagerduty.rows),
            sa.select(
                incidents.incident_id,
                incidents.service,
                incidents.team,
                incidents.status,
                incidents.started_at,
                incidents.finished_at,
                incidents.source,
            ).order_by(incidents.started_at.desc()),
        )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "rows_from_api": dg.MetadataValue.int(from_api),
            "rows_from_pagerduty": dg.MetadataValue.int(len(pagerduty.rows)),
        },
        check_results=[unmapped_services_result(list(pagerduty.unmapped_services))],
    )


dora_incidents_checks = integrity_checks(
    dora_incidents,
    key_columns=["incident_id", "service"],
    timestamp_columns=["started_at", "finished_at"],
)
