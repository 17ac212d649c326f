"""A collar's fixes lose their second index on (collar, time): the fixes' unique key
`uq_position_device_time` is an index on the same two columns, in the same order, so every read that
used `ix_positions_device_time` finds the same rows through the key, and every fix stored kept one more
index up to date, and one more copy of its collar and time in the store, for nothing.

Revision ID: 0027_positions_collar_time
Revises: 0026_collar_network_scope
"""

from __future__ import annotations

from alembic import op

revision = "0027_positions_collar_time"
down_revision = "0026_collar_network_scope"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_positions_device_time", table_name="positions")


def downgrade() -> None:
    op.create_index("ix_positions_device_time", "positions", ["device_id", "time"])
