"""Each battery reading keeps its time as seconds since 1970 (UTC) too, in an index of the collar's
readings with their millivolts: the battery trend sums a collar's two weeks of readings (336 hourly
statuses) from that index alone, where it parsed every reading's stored time (SQLite keeps times as
text) and read each row.

Revision ID: 0024_battery_readings_epoch
Revises: 0023_handovers_carry_bodies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_battery_readings_epoch"
down_revision = "0023_handovers_carry_bodies"
branch_labels = None
depends_on = None

# The seconds of a stored time: SQLite's text 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), PostgreSQL's timestamp.
SECONDS_OF_TIME = {
    "sqlite": "CAST(strftime('%s', substr(time, 1, 19)) AS INTEGER) + CAST(substr(time, 21, 6) AS INTEGER) / 1000000.0",
    "postgresql": "EXTRACT(EPOCH FROM time)",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("battery_readings", sa.Column("epoch_s", sa.Double(), nullable=True))
    op.execute(f"UPDATE battery_readings SET epoch_s = {SECONDS_OF_TIME[dialect]}")
    with op.batch_alter_table("battery_readings") as batch:
        batch.alter_column("epoch_s", existing_type=sa.Double(), nullable=False)
    op.create_index("ix_battery_readings_window", "battery_readings", ["device_id", "epoch_s", "battery_mv"])


def downgrade() -> None:
    op.drop_index("ix_battery_readings_window", table_name="battery_readings")
    with op.batch_alter_table("battery_readings") as batch:
        batch.drop_column("epoch_s")
