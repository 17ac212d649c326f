"""A delivery's collar keeps the TS004 v2.0.0 SessionCnt of the last v2.0.0 set-up the bridge queued for it
(`fuota_collars.session_cnt`): the next set-up must carry a greater one, and the outbox's set-up rows, from which it
was read back, are the outbox's record of what was sent, not a counter kept for this (the bridge prunes none today).

Revision ID: 0034_fuota_session_cnt
Revises: 0033_collar_packages
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034_fuota_session_cnt"
down_revision = "0033_collar_packages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fuota_collars") as batch_op:
        batch_op.add_column(sa.Column("session_cnt", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fuota_collars") as batch_op:
        batch_op.drop_column("session_cnt")
