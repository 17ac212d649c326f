"""A collar's battery readings lose their index of the collar alone: the readings' unique key
(collar, time) and the battery trend's window index (collar, seconds, millivolts) both begin with
the collar, so either finds a collar's readings, and every status uplink's reading kept one more
index up to date for nothing.

Revision ID: 0025_battery_one_collar_index
Revises: 0024_battery_readings_epoch
"""

from __future__ import annotations

from alembic import op

revision = "0025_battery_one_collar_index"
down_revision = "0024_battery_readings_epoch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_battery_readings_device_id", table_name="battery_readings")


def downgrade() -> None:
    op.create_index("ix_battery_readings_device_id", "battery_readings", ["device_id"])
