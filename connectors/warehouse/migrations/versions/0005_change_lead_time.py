"""Change lead time from git: mirrors' state, commits, what each deployment shipped, and
the daily metric; an index on `dora_deployments.ingested_at` for the incremental step.

Existing deployments are all evaluated by the first run (their `ingested_at` is after
the empty watermark), so nothing needs seeding here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dora_deployments_ingested_at", "dora_deployments", ["ingested_at"])
    op.create_table(
        "git_repositories",
        sa.Column("repository_url", sa.String(2048), primary_key=True),
        sa.Column("synced_at", sa.DateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempted_at", sa.DateTime, nullable=False),
        sa.Column("shallow", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "git_commits",
        sa.Column("repository_url", sa.String(2048), primary_key=True),
        sa.Column("commit_sha", sa.String(64), primary_key=True),
        sa.Column("parents", sa.Text, nullable=False),
        sa.Column("authored_at", sa.DateTime, nullable=False),
        sa.Column("committed_at", sa.DateTime, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "dora_deployment_commits",
        sa.Column("deployment_id", sa.String(255), primary_key=True),
        sa.Column("commit_sha", sa.String(64), primary_key=True),
        sa.Column("repository_url", sa.String(2048), nullable=False),
        sa.Column("authored_at", sa.DateTime, nullable=False),
        sa.Column("lead_time_seconds", sa.Float, nullable=False),
    )
    op.create_table(
        "deployment_commit_ranges",
        sa.Column("deployment_id", sa.String(255), primary_key=True),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("env", sa.String(255), nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        sa.Column("repository_url", sa.String(2048), nullable=True),
        sa.Column("previous_deployment_id", sa.String(255), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("commits", sa.Integer, nullable=False),
        sa.Column("finished_day", sa.Date, nullable=False),
        sa.Column("evaluated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_deployment_commit_ranges_outcome", "deployment_commit_ranges", ["outcome"])
    op.create_table(
        "dora_change_lead_time_daily",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("team", sa.String(255), primary_key=True),
        sa.Column("env", sa.String(255), primary_key=True),
        sa.Column("deployments_with_commits", sa.Integer, nullable=False),
        sa.Column("commits", sa.Integer, nullable=False),
        sa.Column("total_seconds", sa.Float, nullable=False),
        sa.Column("mean_seconds", sa.Float, nullable=False),
        sa.Column("median_seconds", sa.Float, nullable=False),
        sa.Column("p90_seconds", sa.Float, nullable=False),
        sa.Column("median_deployment_seconds", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dora_change_lead_time_daily")
    op.drop_index("ix_deployment_commit_ranges_outcome", table_name="deployment_commit_ranges")
    op.drop_table("deployment_commit_ranges")
    op.drop_table("dora_deployment_commits")
    op.drop_table("git_commits")
    op.drop_table("git_repositories")
    op.drop_index("ix_dora_deployments_ingested_at", table_name="dora_deployments")
