"""`dora_deployments`: one row per deployment, rebuilt from what the event API landed."""

import dagster as dg
import sqlalchemy as sa

from connectors.config import load_config
from connectors.warehouse.schema import api_deployments, dora_deployments, dora_service_catalog
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata, table_metadata
from dora_assets.normalized.catalog import refresh_service_catalog, team_or_catalog_team
from dora_assets.normalized.checks import integrity_checks
from dora_assets.resources import WarehouseResource
from dora_assets.sql import insert_from_select, utc_date


def deployments_from_api() -> sa.Select:
    """Live (not retracted) API deployments as `dora_deployments` rows, in table column order."""
    landed = api_deployments.c
    return (
        sa.select(
            landed.deployment_id,
            landed.service,
            team_or_catalog_team(landed.team),
            landed.env,
            landed.version,
            landed.commit_sha,
            landed.repository_url,
            landed.started_at,
            landed.finished_at,
            sa.literal("api"),
            landed.custom_tags,
            landed.change_failure,
            landed.remediation_type,
            landed.updated_at,
            utc_date(landed.finished_at),
        )
        .select_from(
            api_deployments.outerjoin(
                dora_service_catalog, dora_service_catalog.c.service == landed.service
            )
        )
        .where(landed.deleted_at.is_(None))
    )


@dg.asset(
    key="dora_deployments",
    group_name="normalized",
    deps=["event_api_events"],
    kinds={"sql", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(dora_deployments),
    description="""
**Every deployment, one row each** (`deployment_id` is the key). The downstream contract
of DESIGN.md: BI, dbt and notebooks read this table directly.

Rebuilt in one transaction from the event API's landing table `api_deployments`
(retracted deployments dropped) with one `INSERT ... SELECT`. `team` is the event's own
team, else the team the `DORA_CONFIG` service catalog gives the service, else `''`;
`finished_day` is the UTC day of `finished_at`, stored so metrics group on an index.
""",
)
def dora_deployments_asset(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.rewriting(dora_deployments, dora_service_catalog) as connection:
        refresh_service_catalog(connection, load_config())
        connection.execute(sa.delete(dora_deployments))
        inserted = insert_from_select(connection, dora_deployments, deployments_from_api())
        metadata = table_metadata(
            connection,
            dora_deployments,
            inserted,
            sa.select(
                dora_deployments.c.deployment_id,
                dora_deployments.c.service,
                dora_deployments.c.team,
                dora_deployments.c.env,
                dora_deployments.c.finished_at,
            ).order_by(dora_deployments.c.finished_at.desc()),
        )
    return dg.MaterializeResult(metadata=metadata)


dora_deployments_checks = integrity_checks(
    dora_deployments,
    key_columns=["deployment_id"],
    timestamp_columns=["started_at", "finished_at"],
)
