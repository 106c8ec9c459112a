"""Partial indexes for the change-failure checks, which run after every refresh: each
check looked for its offenders by reading `dora_deployments` whole (four scans, ~2.5 s of
a refresh run with nothing new at 1M deployments, growing with the history). Each index
holds only the rows its check can name (usually none, or the change failures), so the
checks cost what the failures are, not what the history is.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PARTIAL = {
    "ix_dora_deployments_recovered_before_finished": (
        ["deployment_id"],
        "recovered_at < finished_at",
    ),
    "ix_dora_deployments_change_failure_reason": (
        ["change_failure_reason", "remediation_deployment_id"],
        "change_failure_reason IS NOT NULL",
    ),
    "ix_dora_deployments_without_sha_or_version": (
        ["service"],
        "commit_sha IS NULL AND version IS NULL",
    ),
}


def upgrade() -> None:
    for name, (columns, where) in PARTIAL.items():
        op.create_index(
            name,
            "dora_deployments",
            columns,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    for name in reversed(PARTIAL):
        op.drop_index(name, table_name="dora_deployments")
