"""Indexes for the change-failure classification, which reads one (service, env) sequence
at a time: `dora_incidents (service, env)` for its incidents and
`dora_incident_deployments (service)` for the attributions it owns. Without them each
sequence scanned both tables whole (at 1M deployments and 100,000 incidents, 400 scans
of each, a cost that grew with the square of the history).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dora_incidents_sequence", "dora_incidents", ["service", "env"])
    op.create_index(
        "ix_dora_incident_deployments_service", "dora_incident_deployments", ["service"]
    )


def downgrade() -> None:
    op.drop_index("ix_dora_incident_deployments_service", table_name="dora_incident_deployments")
    op.drop_index("ix_dora_incidents_sequence", table_name="dora_incidents")
