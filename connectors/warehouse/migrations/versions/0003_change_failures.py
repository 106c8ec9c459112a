"""Change failures on deployments: classification columns, attribution, two metric tables.

- `api_deployments`: `patched_at` (NULL: never patched, so left to detection; existing
  rows marked as change failures were patched when last updated) and `remediation_by`
  (`id` or `version`: what `remediation_ref` names; unknown for existing rows).
- `dora_deployments`: the classification (`change_failure_reason`, `is_rollback`,
  `is_rollforward`, `remediation_deployment_id`, `recovered_at` and its indexed
  `recovered_day`) and its input `change_failure_patch`.
- `dora_incident_deployments`, the `changed_sequences` record (every existing
  (service, env) sequence is entered, so the next refresh classifies them all), and the
  metric tables `dora_change_failures_daily` and `dora_failed_deployment_recovery_daily`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _metric_keys() -> list[sa.Column]:
    return [
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("team", sa.String(255), primary_key=True),
        sa.Column("env", sa.String(255), primary_key=True),
    ]


def upgrade() -> None:
    op.add_column("api_deployments", sa.Column("remediation_by", sa.String(16), nullable=True))
    op.add_column("api_deployments", sa.Column("patched_at", sa.DateTime, nullable=True))
    op.execute("UPDATE api_deployments SET patched_at = updated_at WHERE change_failure")
    false = sa.false()
    for column in (
        sa.Column("change_failure_reason", sa.String(16), nullable=True),
        sa.Column("is_rollback", sa.Boolean, nullable=False, server_default=false),
        sa.Column("is_rollforward", sa.Boolean, nullable=False, server_default=false),
        sa.Column("remediation_deployment_id", sa.String(255), nullable=True),
        sa.Column("recovered_at", sa.DateTime, nullable=True),
        sa.Column("recovered_day", sa.Date, nullable=True),
        sa.Column("change_failure_patch", sa.Text, nullable=True),
    ):
        op.add_column("dora_deployments", column)
    op.create_index(
        "ix_dora_deployments_recovered_day",
        "dora_deployments",
        ["recovered_day", "service", "team", "env"],
    )
    op.create_index("ix_dora_deployments_sequence", "dora_deployments", ["service", "env"])
    op.create_table(
        "dora_incident_deployments",
        sa.Column("incident_id", sa.String(255), primary_key=True),
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("deployment_id", sa.String(255), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("lag_seconds", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_dora_incident_deployments_deployment_id", "dora_incident_deployments", ["deployment_id"]
    )
    op.create_table(
        "changed_sequences",
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("env", sa.String(255), primary_key=True),
        sa.Column("changed_at", sa.DateTime, nullable=False),
    )
    op.execute(
        "INSERT INTO changed_sequences (service, env, changed_at)"
        " SELECT DISTINCT service, env, CURRENT_TIMESTAMP FROM dora_deployments"
    )
    op.create_table(
        "dora_change_failures_daily",
        *_metric_keys(),
        sa.Column("deployments", sa.Integer, nullable=False),
        sa.Column("change_failures", sa.Integer, nullable=False),
        sa.Column("rollbacks", sa.Integer, nullable=False),
        sa.Column("rollforwards", sa.Integer, nullable=False),
        sa.Column("change_failure_rate", sa.Float, nullable=True),
        sa.Column("change_failure_rate_excluding_rollbacks", sa.Float, nullable=True),
        sa.Column("rework_rate", sa.Float, nullable=True),
    )
    op.create_table(
        "dora_failed_deployment_recovery_daily",
        *_metric_keys(),
        sa.Column("recovered_failures", sa.Integer, nullable=False),
        sa.Column("total_seconds", sa.Float, nullable=False),
        sa.Column("mean_seconds", sa.Float, nullable=False),
        sa.Column("median_seconds", sa.Float, nullable=False),
        sa.Column("p90_seconds", sa.Float, nullable=False),
        sa.Column("max_seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dora_failed_deployment_recovery_daily")
    op.drop_table("dora_change_failures_daily")
    op.drop_table("changed_sequences")
    op.drop_index(
        "ix_dora_incident_deployments_deployment_id", table_name="dora_incident_deployments"
    )
    op.drop_table("dora_incident_deployments")
    op.drop_index("ix_dora_deployments_sequence", table_name="dora_deployments")
    op.drop_index("ix_dora_deployments_recovered_day", table_name="dora_deployments")
    with op.batch_alter_table("dora_deployments") as batch:
        for name in (
            "change_failure_patch",
            "recovered_day",
            "recovered_at",
            "remediation_deployment_id",
            "is_rollforward",
            "is_rollback",
            "change_failure_reason",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("api_deployments") as batch:
        batch.drop_column("patched_at")
        batch.drop_column("remediation_by")
