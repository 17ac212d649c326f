"""TS005 group set-up by the bridge: a delivery's McAddr, and the groups each collar says it holds.

Revision ID: 0011_multicast_groups
Revises: 0010_collar_shares
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_multicast_groups"
down_revision = "0010_collar_shares"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("fuota_sessions", sa.Column("mc_addr", sa.BigInteger(), nullable=True))
    op.create_table(
        "collar_multicast_groups",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("mc_group", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("mc_addr", sa.BigInteger(), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("device_id", "mc_group"),
    )


def downgrade() -> None:
    op.drop_table("collar_multicast_groups")
    op.drop_column("fuota_sessions", "mc_addr")
