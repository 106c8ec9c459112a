"""`dora_deployments`: one row per deployment, maintained from what the event API landed."""

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from connectors.config import DoraConfig, load_config
from connectors.warehouse.schema import api_deployments, dora_deployments
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata
from dora_assets.normalized.changes import ChangeFeed, Row
from dora_assets.normalized.checks import integrity_checks
from dora_assets.normalized.refresh import (
    ConfigDocument,
    Source,
    refresh,
    services_with_new_team,
)
from dora_assets.normalized.report import refresh_result
from dora_assets.resources import WarehouseResource

landed = api_deployments.c


@dataclass(frozen=True)
class ApiDeployments:
    """Live (not retracted) API deployments as `dora_deployments` rows."""

    config: DoraConfig
    table: sa.Table = dora_deployments

    def held(self, connection: sa.Connection, keys: Sequence[str]) -> list[Row]:
        query = sa.select(dora_deployments).where(dora_deployments.c.deployment_id.in_(keys))
        return [dict(row) for row in connection.execute(query).mappings()]

    def wanted(self, connection: sa.Connection, keys: Sequence[str]) -> list[Row]:
        query = sa.select(api_deployments).where(
            landed.deployment_id.in_(keys), landed.deleted_at.is_(None)
        )
        return [
            {
                "deployment_id": row.deployment_id,
                "service": row.service,
                "team": row.team or self.config.team_of(row.service),
                "env": row.env,
                "version": row.version,
                "commit_sha": row.commit_sha,
                "repository_url": row.repository_url,
                "started_at": row.started_at,
                "finished_at": row.finished_at,
                "source": "api",
                "custom_tags": row.custom_tags,
                "change_failure": row.change_failure,
                "remediation_type": row.remediation_type,
                "ingested_at": row.updated_at,
                "finished_day": row.finished_at.date(),
            }
            for row in connection.execute(query)
        ]


def _catalog_teamed(before: ConfigDocument, after: ConfigDocument) -> sa.Select | None:
    """Deployments that took their team from a catalog entry that changed."""
    services = services_with_new_team(before, after)
    if not services:
        return None
    return sa.select(landed.deployment_id).where(landed.team == "", landed.service.in_(services))


def deployment_sources(config: DoraConfig) -> list[Source]:
    return [
        Source(
            normalization=ApiDeployments(config),
            feeds=[ChangeFeed("dora_deployments.api", landed.deployment_id, landed.updated_at)],
            affected_by_config=_catalog_teamed,
        )
    ]


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

Maintained incrementally from the event API's landing table `api_deployments`: each
run reads the deployments written or retracted since its watermark (`updated_at`),
writes only the rows that differ, and records the metric days each change touches
(before and after) for the late-data sensor. `team` is the event's own team, else the
team the `DORA_CONFIG` service catalog gives the service, else `''`; a catalog edit
re-teams just the rows it affects. `finished_day` is the UTC day of `finished_at`,
stored so metrics group on an index. Metadata: rows inserted, updated and deleted,
metric days marked changed, and a preview of the rows written.
""",
)
def dora_deployments_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    config = load_config()
    applied = refresh(
        warehouse.engine,
        dora_deployments.name,
        deployment_sources(config),
        config,
        on_progress=context.log.info,
    )
    return refresh_result(warehouse.engine, dora_deployments, applied)


dora_deployments_checks = integrity_checks(
    dora_deployments,
    key_columns=["deployment_id"],
    timestamp_columns=["started_at", "finished_at"],
)
