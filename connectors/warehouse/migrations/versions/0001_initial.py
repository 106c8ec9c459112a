"""Initial schema: landing, normalized and metric tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from connectors.warehouse.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The baseline is the declared metadata. The next schema change must first freeze
    # these tables here as explicit op.create_table calls, then add its own revision.
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
