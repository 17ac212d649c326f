"""Each downlink on air for a collar's fair-use day: the bridge's pushes (one row pushed again after
its lease ran out or ChirpStack discarded it counts each time) and The Things Stack's own resends of a
nacked downlink (each reported as downlink_sent). The outbox had counted downlink rows, so a collar
nacking its ack got more than its ten downlinks a day.

Revision ID: 0021_downlink_transmissions
Revises: 0020_raw_uplinks_device_heard
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_downlink_transmissions"
down_revision = "0020_raw_uplinks_device_heard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "downlink_transmissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("downlink_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["downlink_id"], ["downlinks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_downlink_transmissions_downlink_id", "downlink_transmissions", ["downlink_id"])
    op.create_index("ix_downlink_transmissions_device_at", "downlink_transmissions", ["device_id", "at"])
    # What went on air before: each downlink's latest push, as the outbox counted it until now.
    op.execute(
        "INSERT INTO downlink_transmissions (device_id, downlink_id, at, cause) "
        "SELECT device_id, id, sent_at, 'push' FROM downlinks WHERE sent_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_downlink_transmissions_device_at", table_name="downlink_transmissions")
    op.drop_index("ix_downlink_transmissions_downlink_id", table_name="downlink_transmissions")
    op.drop_table("downlink_transmissions")
