"""The refresh → sensor → rebuild → audit cycle as plain calls, and a full recomputation
to compare it with; shared by the incremental-refresh tests.

Landing writes go through the product's own paths: the event API's store, the
PagerDuty pull's landing row and upsert, webhook deliveries and their fold.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from connectors.config import DoraConfig
from connectors.pagerduty.sync import landing_row
from connectors.pagerduty.webhooks import (
    fold_webhook_deliveries,
    parse_webhook_event,
    store_delivery,
)
from connectors.timestamps import utcnow
from connectors.warehouse.schema import (
    api_deployments,
    api_failures,
    dora_change_failure_rate_daily,
    dora_change_failures_daily,
    dora_deployments,
    dora_failed_deployment_recovery_daily,
    dora_incident_deployments,
    dora_incidents,
    dora_time_to_restore_daily,
    metadata,
    pagerduty_incidents,
    pagerduty_webhook_incidents,
)
from connectors.warehouse.upsert import upsert
from dora_assets import changed_days
from dora_assets.audit import AUDITED, audit
from dora_assets.change_failures import sequences
from dora_assets.change_failures.apply import classify_changed
from dora_assets.metrics.rebuild import replace_days
from dora_assets.normalized.changes import Applied
from dora_assets.normalized.deployments import ApiDeployments, deployment_sources
from dora_assets.normalized.incidents import ApiFailures, PagerDutyIncidents, incident_sources
from dora_assets.normalized.refresh import refresh
from dora_assets.resources import WarehouseResource

METRICS = (
    dora_change_failure_rate_daily,
    dora_time_to_restore_daily,
    dora_change_failures_daily,
    dora_failed_deployment_recovery_daily,
)
NO_OVERLAP = dt.timedelta(0)


def refresh_all(
    engine: sa.Engine, config: DoraConfig, overlap: dt.timedelta = NO_OVERLAP
) -> tuple[Applied, Applied]:
    """The refresh run's warehouse work: fold webhooks, then both normalized tables.

    The tests run without the re-read overlap, so a watermark bug cannot hide behind it.
    """
    fold_webhook_deliveries(engine)
    incidents = refresh(
        engine, dora_incidents.name, incident_sources(config), config, None, overlap
    )
    deployments = refresh(
        engine, dora_deployments.name, deployment_sources(config), config, None, overlap
    )
    deployments.metric_days |= classify_changed(engine, config.change_failures).metric_days
    return deployments, incidents


def rebuild_changed(warehouse: WarehouseResource, built: set[dt.date]) -> dict[str, set[dt.date]]:
    """What the sensor requests and the metric run does: rebuild recorded, built days."""
    first, end = min(built), max(built) + dt.timedelta(days=1)
    with warehouse.engine.connect() as connection:
        pending = changed_days.pending(connection, [t.name for t in METRICS], first, end)
    for table in METRICS:
        _, _, rows = AUDITED[table.name]
        replace_days(warehouse, table, rows, pending[table.name] & built)
    return pending


def audit_all(warehouse: WarehouseResource, built: set[dt.date]) -> dict[str, list[dt.date]]:
    return {table.name: audit(warehouse, table.name, built) for table in METRICS}


def build_days(warehouse: WarehouseResource, days: set[dt.date]) -> None:
    for table in METRICS:
        _, _, rows = AUDITED[table.name]
        replace_days(warehouse, table, rows, days)


def _without_bookkeeping(rows: list[dict[str, Any]]) -> list[tuple]:
    # repr orders rows whose columns mix values and NULLs.
    return sorted(
        (tuple(sorted((k, v) for k, v in row.items() if k != "ingested_at")) for row in rows),
        key=repr,
    )


# The classification's columns of dora_deployments: not the normalization's to write.
CLASSIFICATION = frozenset(
    {
        "change_failure",
        "change_failure_reason",
        "is_rollback",
        "is_rollforward",
        "remediation_type",
        "remediation_deployment_id",
        "recovered_at",
        "recovered_day",
    }
)


def normalized_rows(engine: sa.Engine, table: sa.Table) -> list[tuple]:
    """The rows the normalization wrote (without the classification's columns)."""
    owned = [column for column in table.columns if column.name not in CLASSIFICATION]
    with engine.connect() as connection:
        return _without_bookkeeping(
            [dict(row) for row in connection.execute(sa.select(*owned)).mappings()]
        )


def recomputed_normalized(engine: sa.Engine, config: DoraConfig) -> dict[str, list[tuple]]:
    """Both normalized tables as a from-scratch normalization of every landing key gives."""
    with engine.connect() as connection:
        deployment_ids = list(connection.scalars(sa.select(api_deployments.c.deployment_id)))
        failure_ids = list(connection.scalars(sa.select(api_failures.c.failure_id)))
        pagerduty_ids = list(
            connection.scalars(
                sa.union(
                    sa.select(pagerduty_incidents.c.incident_id),
                    sa.select(pagerduty_webhook_incidents.c.incident_id),
                )
            )
        )
        return {
            dora_deployments.name: _without_bookkeeping(
                ApiDeployments(config).wanted(connection, deployment_ids)
            ),
            dora_incidents.name: _without_bookkeeping(
                ApiFailures(config).wanted(connection, failure_ids)
                + PagerDutyIncidents(config).wanted(connection, pagerduty_ids)
            ),
        }


def _rounded(row: sa.Row) -> tuple:
    return tuple(round(value, 3) if isinstance(value, float) else value for value in row)


def metric_rows(engine: sa.Engine, table: sa.Table) -> list[tuple]:
    with engine.connect() as connection:
        return sorted((_rounded(row) for row in connection.execute(sa.select(table))), key=repr)


def recomputed_metric_rows(engine: sa.Engine, table: sa.Table, days: set[dt.date]) -> list[tuple]:
    _, _, rows = AUDITED[table.name]
    with engine.connect() as connection:
        result = connection.execute(rows(min(days), max(days) + dt.timedelta(days=1)))
        return sorted((_rounded(row) for row in result), key=repr)


def clear_warehouse(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(sa.delete(table))


def pull_incident(
    engine: sa.Engine,
    incident_id: str,
    created_at: dt.datetime,
    resolved_at: dt.datetime | None,
    service: tuple[str, str] = ("PSVC1", "Checkout API"),
) -> None:
    """Land an incident as the REST pull does (observed now)."""
    incident = {
        "id": incident_id,
        "incident_number": 1,
        "title": "Checkout errors",
        "status": "resolved" if resolved_at else "triggered",
        "urgency": "high",
        "priority": None,
        "service": {"id": service[0], "summary": service[1]},
        "teams": [{"summary": "SRE"}],
        "created_at": f"{created_at.isoformat()}Z",
        "resolved_at": f"{resolved_at.isoformat()}Z" if resolved_at else None,
        "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}",
    }
    with engine.begin() as connection:
        connection.execute(
            upsert(pagerduty_incidents, connection.dialect), [landing_row(incident, utcnow())]
        )


def deliver_webhook(
    engine: sa.Engine,
    webhook_id: str,
    incident_id: str,
    event_type: str,
    created_at: dt.datetime,
    occurred_at: dt.datetime,
) -> None:
    """Land one PagerDuty webhook delivery (folded by the next refresh)."""
    document = {
        "event": {
            "id": webhook_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": f"{occurred_at.isoformat()}Z",
            "data": {
                "id": incident_id,
                "type": "incident",
                "number": 2,
                "status": event_type.removeprefix("incident."),
                "created_at": f"{created_at.isoformat()}Z",
                "title": "Search latency",
                "service": {"id": "PSVC2", "summary": "search"},
                "teams": [{"summary": "Discovery"}],
                "urgency": "high",
            },
        }
    }
    payload = json.dumps(document)
    store_delivery(engine, webhook_id, parse_webhook_event(payload), payload)


def classification_snapshot(engine: sa.Engine) -> tuple[list[tuple], list[tuple]]:
    """Every deployment's classification columns and every attribution."""
    d = dora_deployments.c
    columns = [d.deployment_id, *(d[name] for name in sorted(CLASSIFICATION))]
    with engine.connect() as connection:
        classified = sorted(tuple(row) for row in connection.execute(sa.select(*columns)))
        attributed = sorted(
            tuple(row) for row in connection.execute(sa.select(dora_incident_deployments))
        )
    return classified, attributed


def classify_from_scratch(engine: sa.Engine, config: DoraConfig) -> None:
    """Enter every sequence and classify them all."""
    with engine.begin() as connection:
        every = connection.execute(
            sa.select(dora_deployments.c.service, dora_deployments.c.env).distinct()
        )
        sequences.record(connection, [tuple(row) for row in every])
    classify_changed(engine, config.change_failures)
