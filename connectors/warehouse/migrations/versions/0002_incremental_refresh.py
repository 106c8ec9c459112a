"""Incremental refresh: the changed-days record and change markers on PagerDuty landing.

- `metric_changed_days`: the metric days each normalized change touched, which the
  late-data sensor reads and metric runs clear.
- `pagerduty_webhook_incidents.updated_at`: when the fold last wrote the row (its
  `observed_at` is when PagerDuty saw the event, which is not a change order); existing
  rows take their `observed_at`.
- An index on `pagerduty_incidents.observed_at`, the pull's change marker.
- `dora_service_catalog` goes: rows are teamed in Python from DORA_CONFIG, and the
  applied catalog is kept with each normalized table's state in `ingest_state`.

Normalized tables built by revision 0001 stay in place: their change feeds start
without a watermark, so the first refresh compares every row once and writes only
what differs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_changed_days",
        sa.Column("metric", sa.String(255), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("changed_at", sa.DateTime, nullable=False),
    )
    with op.batch_alter_table("pagerduty_webhook_incidents") as batch:
        batch.add_column(sa.Column("updated_at", sa.DateTime, nullable=True))
    op.execute("UPDATE pagerduty_webhook_incidents SET updated_at = observed_at")
    with op.batch_alter_table("pagerduty_webhook_incidents") as batch:
        batch.alter_column("updated_at", existing_type=sa.DateTime, nullable=False)
        batch.create_index("ix_pagerduty_webhook_incidents_updated_at", ["updated_at"])
    op.create_index("ix_pagerduty_incidents_observed_at", "pagerduty_incidents", ["observed_at"])
    op.drop_table("dora_service_catalog")


def downgrade() -> None:
    op.create_table(
        "dora_service_catalog",
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("team", sa.String(255), nullable=False),
    )
    op.drop_index("ix_pagerduty_incidents_observed_at", table_name="pagerduty_incidents")
    with op.batch_alter_table("pagerduty_webhook_incidents") as batch:
        batch.drop_index("ix_pagerduty_webhook_incidents_updated_at")
        batch.drop_column("updated_at")
    op.drop_table("metric_changed_days")
