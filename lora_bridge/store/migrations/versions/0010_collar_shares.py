"""Workers sharing the collars: worker leases and bodies handed to the collar's owner.

Revision ID: 0010_collar_shares
Revises: 0009_fuota_delivery
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_collar_shares"
down_revision = "0009_fuota_delivery"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bridge_workers",
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("renewed_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("worker_id"),
    )
    op.create_index("ix_bridge_workers_expires_at", "bridge_workers", ["expires_at"])
    op.create_table(
        "collar_handovers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("raw_uplink_id", sa.Integer(), nullable=False),
        sa.Column("collar_key", sa.String(length=128), nullable=False),
        sa.Column("to_worker", sa.String(length=128), nullable=False),
        sa.Column("from_worker", sa.String(length=128), nullable=False),
        sa.Column("handed_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["raw_uplink_id"], ["raw_uplinks.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("raw_uplink_id"),
    )
    op.create_index("ix_collar_handovers_to_worker", "collar_handovers", ["to_worker"])


def downgrade() -> None:
    op.drop_index("ix_collar_handovers_to_worker", table_name="collar_handovers")
    op.drop_table("collar_handovers")
    op.drop_index("ix_bridge_workers_expires_at", table_name="bridge_workers")
    op.drop_table("bridge_workers")
