"""Initial schema: landing, normalized and metric tables.

Frozen: this revision spells out the tables exactly as `connectors/warehouse/schema.py`
declared them when 0001 was the only revision, instead of calling
`metadata.create_all`. The live metadata moves on with later revisions, so a baseline
that followed it would create tomorrow's schema under today's revision number and
break every revision after it. Never edit this file to match schema.py; add a revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- landing: event API -----------------------------------------------------------
    op.create_table(
        "api_deployments",
        sa.Column("deployment_id", sa.String(255), primary_key=True),
        sa.Column("service", sa.String(255), nullable=False, server_default=""),
        sa.Column("team", sa.String(255), nullable=False, server_default=""),
        sa.Column("env", sa.String(255), nullable=False, server_default=""),
        sa.Column("version", sa.String(255), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("repository_url", sa.String(2048), nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        sa.Column("custom_tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("change_failure", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("remediation_type", sa.String(32), nullable=True),
        sa.Column("remediation_ref", sa.String(255), nullable=True),
        sa.Column("deleted_at", sa.DateTime, nullable=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_api_deployments_updated_at", "api_deployments", ["updated_at"])

    op.create_table(
        "api_failures",
        sa.Column("failure_id", sa.String(255), primary_key=True),
        sa.Column("team", sa.String(255), nullable=False, server_default=""),
        sa.Column("env", sa.String(255), nullable=False, server_default=""),
        sa.Column("name", sa.String(1024), nullable=True),
        sa.Column("severity", sa.String(255), nullable=True),
        sa.Column("version", sa.String(255), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("repository_url", sa.String(2048), nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("custom_tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("deleted_at", sa.DateTime, nullable=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_api_failures_updated_at", "api_failures", ["updated_at"])

    op.create_table(
        "api_failure_services",
        sa.Column(
            "failure_id",
            sa.String(255),
            sa.ForeignKey("api_failures.failure_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("service", sa.String(255), primary_key=True),
    )

    # --- landing: PagerDuty -----------------------------------------------------------
    op.create_table(
        "pagerduty_incidents",
        *_incident_state(),
        sa.Column("created_day", sa.Date, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
    )
    op.create_index("ix_pagerduty_incidents_created_day", "pagerduty_incidents", ["created_day"])

    op.create_table(
        "pagerduty_webhook_deliveries",
        sa.Column("webhook_id", sa.String(255), primary_key=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(64), nullable=True),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_pagerduty_webhook_deliveries_incident_id",
        "pagerduty_webhook_deliveries",
        ["incident_id"],
    )
    op.create_index(
        "ix_pagerduty_webhook_deliveries_received_at",
        "pagerduty_webhook_deliveries",
        ["received_at"],
    )

    op.create_table("pagerduty_webhook_incidents", *_incident_state())

    op.create_table(
        "ingest_state",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )

    # --- normalized: the downstream contract ------------------------------------------
    op.create_table(
        "dora_deployments",
        sa.Column("deployment_id", sa.String(255), primary_key=True),
        sa.Column("service", sa.String(255), nullable=False, server_default=""),
        sa.Column("team", sa.String(255), nullable=False, server_default=""),
        sa.Column("env", sa.String(255), nullable=False, server_default=""),
        sa.Column("version", sa.String(255), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("repository_url", sa.String(2048), nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("custom_tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("change_failure", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("remediation_type", sa.String(32), nullable=True),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.Column("finished_day", sa.Date, nullable=False),
    )
    op.create_index(
        "ix_dora_deployments_finished_day",
        "dora_deployments",
        ["finished_day", "service", "team", "env"],
    )

    op.create_table(
        "dora_incidents",
        sa.Column("incident_id", sa.String(255), primary_key=True),
        sa.Column("service", sa.String(255), primary_key=True, server_default=""),
        sa.Column("team", sa.String(255), nullable=False, server_default=""),
        sa.Column("env", sa.String(255), nullable=False, server_default=""),
        sa.Column("severity", sa.String(255), nullable=True),
        sa.Column("name", sa.String(1024), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("source_url", sa.String(2048), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("version", sa.String(255), nullable=True),
        sa.Column("custom_tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.Column("started_day", sa.Date, nullable=False),
        sa.Column("finished_day", sa.Date, nullable=True),
    )
    op.create_index(
        "ix_dora_incidents_started_day",
        "dora_incidents",
        ["started_day", "service", "team", "env"],
    )
    op.create_index(
        "ix_dora_incidents_finished_day",
        "dora_incidents",
        ["finished_day", "service", "team", "env"],
    )

    op.create_table(
        "dora_service_catalog",
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("team", sa.String(255), nullable=False),
    )

    # --- metrics ----------------------------------------------------------------------
    op.create_table(
        "dora_change_failure_rate_daily",
        *_metric_keys(),
        sa.Column("deployments", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("change_failure_rate", sa.Float, nullable=True),
    )

    op.create_table(
        "dora_time_to_restore_daily",
        *_metric_keys(),
        sa.Column("resolved_incidents", sa.Integer, nullable=False),
        sa.Column("total_seconds", sa.Float, nullable=False),
        sa.Column("mean_seconds", sa.Float, nullable=False),
        sa.Column("median_seconds", sa.Float, nullable=False),
        sa.Column("p90_seconds", sa.Float, nullable=False),
        sa.Column("max_seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dora_time_to_restore_daily")
    op.drop_table("dora_change_failure_rate_daily")
    op.drop_table("dora_service_catalog")
    op.drop_index("ix_dora_incidents_finished_day", table_name="dora_incidents")
    op.drop_index("ix_dora_incidents_started_day", table_name="dora_incidents")
    op.drop_table("dora_incidents")
    op.drop_index("ix_dora_deployments_finished_day", table_name="dora_deployments")
    op.drop_table("dora_deployments")
    op.drop_table("ingest_state")
    op.drop_table("pagerduty_webhook_incidents")
    op.drop_index(
        "ix_pagerduty_webhook_deliveries_received_at", table_name="pagerduty_webhook_deliveries"
    )
    op.drop_index(
        "ix_pagerduty_webhook_deliveries_incident_id", table_name="pagerduty_webhook_deliveries"
    )
    op.drop_table("pagerduty_webhook_deliveries")
    op.drop_index("ix_pagerduty_incidents_created_day", table_name="pagerduty_incidents")
    op.drop_table("pagerduty_incidents")
    op.drop_table("api_failure_services")
    op.drop_index("ix_api_failures_updated_at", table_name="api_failures")
    op.drop_table("api_failures")
    op.drop_index("ix_api_deployments_updated_at", table_name="api_deployments")
    op.drop_table("api_deployments")


# Frozen copies of the column groups two tables shared in 0001. Fresh Column objects on
# every call: a Column can belong to one table only.


def _incident_state() -> list[sa.Column]:
    return [
        sa.Column("incident_id", sa.String(64), primary_key=True),
        sa.Column("incident_number", sa.Integer, nullable=True),
        sa.Column("title", sa.String(1024), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("urgency", sa.String(32), nullable=True),
        sa.Column("priority", sa.String(255), nullable=True),
        sa.Column("service_id", sa.String(64), nullable=True),
        sa.Column("service_name", sa.String(255), nullable=True),
        sa.Column("teams", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("resolved_at", sa.DateTime, nullable=True),
        sa.Column("html_url", sa.String(2048), nullable=True),
        sa.Column("observed_at", sa.DateTime, nullable=False),
    ]


def _metric_keys() -> list[sa.Column]:
    return [
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("team", sa.String(255), primary_key=True),
        sa.Column("env", sa.String(255), primary_key=True),
    ]
