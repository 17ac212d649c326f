"""A delivery's collars outside the multicast group (served by unicast, and why), and the group taken
down when the campaign ends (McGroupDeleteReq to the collars, the network server's group deleted).

Revision ID: 0012_fuota_group_close
Revises: 0011_multicast_groups
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_fuota_group_close"
down_revision = "0011_multicast_groups"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("fuota_collars", sa.Column("unicast_reason", sa.String(length=120), nullable=True))
    op.add_column("fuota_sessions", sa.Column("ended_at", UTC_TIME, nullable=True))
    op.add_column("fuota_sessions", sa.Column("group_created", sa.Boolean(), nullable=False,
                                              server_default=sa.false()))
    op.add_column("fuota_sessions", sa.Column("group_deleted_at", UTC_TIME, nullable=True))
    op.add_column("fuota_sessions", sa.Column("group_delete_attempts", sa.Integer(), nullable=False,
                                              server_default="0"))
    op.add_column("fuota_sessions", sa.Column("group_delete_next_at", UTC_TIME, nullable=True))
    op.add_column("fuota_sessions", sa.Column("group_delete_error", sa.String(length=200), nullable=True))


def downgrade() -> None:
    for column in ("group_delete_error", "group_delete_next_at", "group_delete_attempts", "group_deleted_at",
                   "group_created", "ended_at"):
        op.drop_column("fuota_sessions", column)
    op.drop_column("fuota_collars", "unicast_reason")
