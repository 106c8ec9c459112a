"""An index on `dora_incidents (service, env)`: the change-failure classification reads
the incidents of one (service, env) sequence at a time, and without it each read scanned
the whole table (400 scans of 100,000 incidents for a year of 200 services).

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


def downgrade() -> None:
    op.drop_index("ix_dora_incidents_sequence", table_name="dora_incidents")
