"""The DORA summary: `dora_summary`, trailing-window figures and levels per scope.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

LEVELS = (
    "deployment_frequency_level",
    "lead_time_level",
    "change_failure_rate_level",
    "recovery_level",
    "time_to_restore_level",
    "rework_rate_level",
)


def upgrade() -> None:
    op.create_table(
        "dora_summary",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("window_start", sa.Date, nullable=False),
        sa.Column("window_end", sa.Date, nullable=False),
        sa.Column("benchmark", sa.String(32), nullable=False),
        sa.Column("deployments", sa.Integer, nullable=False),
        sa.Column("deployments_per_week", sa.Float, nullable=False),
        sa.Column("deployment_days_per_week", sa.Float, nullable=False),
        sa.Column("median_lead_time_seconds", sa.Float, nullable=True),
        sa.Column("change_failure_rate", sa.Float, nullable=True),
        sa.Column("incident_change_failure_rate", sa.Float, nullable=True),
        sa.Column("rework_rate", sa.Float, nullable=True),
        sa.Column("median_recovery_seconds", sa.Float, nullable=True),
        sa.Column("median_time_to_restore_seconds", sa.Float, nullable=True),
        *(sa.Column(name, sa.String(16), nullable=True) for name in LEVELS),
    )


def downgrade() -> None:
    op.drop_table("dora_summary")
