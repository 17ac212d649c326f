"""An index of each collar's fixes by id: the rules read a collar's fixes newer than its cursor
without walking every fix it ever sent.

Revision ID: 0013_positions_device_id
Revises: 0012_fuota_group_close
"""

from __future__ import annotations

from alembic import op

revision = "0013_positions_device_id"
down_revision = "0012_fuota_group_close"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_positions_device_id", "positions", ["device_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_positions_device_id", table_name="positions")
