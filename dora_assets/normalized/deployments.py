"""`dora_deployments`: one row per deployment, maintained from what the event API landed."""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from connectors.config import DoraConfig, load_config
from connectors.warehouse import reading
from connectors.warehouse.schema import api_deployments, dora_deployments, dora_incident_deployments
from dora_assets.change_failures.apply import classify_changed
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, column_schema, table_definition_metadata
from dora_assets.normalized.changes import ChangeFeed, Row, as_dicts
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
        return as_dicts(connection.execute(query))

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
                "ingested_at": row.updated_at,
                "finished_day": row.finished_at.date(),
                "change_failure_patch": patch_document(row),
            }
            for row in connection.execute(query)
        ]


def patch_document(row: sa.Row) -> str | None:
    """The landed PATCH as JSON (an input of the classification), None if never patched."""
    if row.patched_at is None:
        return None
    return json.dumps(
        {
            "change_failure": bool(row.change_failure),
            "remediation_type": row.remediation_type,
            "remediation_ref": row.remediation_ref,
            "remediation_by": row.remediation_by,
        },
        sort_keys=True,
    )


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


@dg.multi_asset(
    name="dora_deployments",
    # `dagster asset materialize --select` works for either key; both tables are written
    # either way (attribution is part of the classification), only the selected report.
    can_subset=True,
    specs=[
        dg.AssetSpec(
            "dora_deployments",
            group_name="normalized",
            deps=["event_api_events", "dora_incidents"],
            kinds={"sql", WAREHOUSE_KIND},
            owners=OWNERS,
            metadata=table_definition_metadata(dora_deployments),
            description="""
**Every deployment, one row each** (`deployment_id` is the key), with its change-failure
classification. The downstream contract of DESIGN.md: BI, dbt and notebooks read this
table directly.

Maintained incrementally from the event API's landing table `api_deployments`: each
run reads the deployments written or retracted since its watermark (`updated_at`),
writes only the rows that differ, and records the metric days each change touches
(before and after) for the late-data sensor. `team` is the event's own team, else the
team the `DORA_CONFIG` service catalog gives the service, else `''`; a catalog edit
re-teams just the rows it affects. `finished_day` is the UTC day of `finished_at`.

Then every (`service`, `env`) sequence whose deployments or incidents changed is
classified again (DESIGN.md, "Change failures on deployments"): `change_failure` and
`change_failure_reason` (`manual` PATCH, `rollback`, hotfix `rollforward`, attributed
`incident`; a PATCH with `change_failure: false` marks it stable), `is_rollback`,
`is_rollforward`, `remediation_type`, `remediation_deployment_id`, `recovered_at`.
""",
        ),
        dg.AssetSpec(
            "dora_incident_deployments",
            group_name="normalized",
            deps=["dora_incidents"],
            kinds={"sql", WAREHOUSE_KIND},
            owners=OWNERS,
            metadata=table_definition_metadata(dora_incident_deployments),
            description="""
**Which deployment each incident is attributed to** (key `incident_id`, `service`): the
latest deployment of the incident's service and env finished at or before it started
with the incident's `commit_sha` (`method = commit`), else with its `version`
(`version`), else finished within `attribution_window_hours` (default 24) before it
(`preceding`). `lag_seconds` = incident start - deployment finish. Written with the
classification of `dora_deployments`, sequence by sequence.
""",
        ),
    ],
)
def dora_deployments_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult]:
    config = load_config()
    engine = warehouse.engine
    applied = refresh(
        engine, dora_deployments.name, deployment_sources(config), config, context.log.info
    )
    classified = classify_changed(engine, config.change_failures, context.log.info)
    applied.metric_days |= classified.metric_days
    selected = context.selected_asset_keys
    if dg.AssetKey(dora_deployments.name) in selected:
        yield refresh_result(
            engine,
            dora_deployments,
            applied,
            extra={
                "sequences_classified": dg.MetadataValue.int(classified.sequences),
                "deployments_reclassified": dg.MetadataValue.int(
                    classified.deployments_reclassified
                ),
            },
        )
    if dg.AssetKey(dora_incident_deployments.name) not in selected:
        return
    with reading(engine) as connection:
        attributions = connection.execute(
            sa.select(sa.func.count()).select_from(dora_incident_deployments)
        ).scalar_one()
    yield dg.MaterializeResult(
        asset_key="dora_incident_deployments",
        metadata={
            "dagster/row_count": dg.MetadataValue.int(attributions),
            "dagster/column_schema": column_schema(dora_incident_deployments),
            "rows_written": dg.MetadataValue.int(classified.attributions_written),
            "rows_deleted": dg.MetadataValue.int(classified.attributions_deleted),
        },
    )


dora_deployments_checks = integrity_checks(
    dora_deployments,
    key_columns=["deployment_id"],
    timestamp_columns=["started_at", "finished_at"],
)
