"""A delivery's collar keeps the TS004 version of the last fragmentation set-up the bridge queued for it, and when
(`fuota_collars.setup_version`, `setup_version_at`): its answers on port 201 are read in that version's layout, which
was read back from the outbox's set-up rows, and a retention job or a technician's clean-up may prune those. The
collar's deliveries are indexed by the collar (`ix_fuota_collars_device_id`): both are read by collar at every answer.

Revision ID: 0035_fuota_setup_version
Revises: 0034_fuota_session_cnt
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035_fuota_setup_version"
down_revision = "0034_fuota_session_cnt"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fuota_collars") as batch_op:
        batch_op.add_column(sa.Column("setup_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("setup_version_at", sa.DateTime(timezone=True), nullable=True))
    # a collar's deliveries found by the collar alone (its last set-up's version, the SessionCnt it was given),
    # at each of its answers on port 201, without reading every campaign's collars
    op.create_index("ix_fuota_collars_device_id", "fuota_collars", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_fuota_collars_device_id", table_name="fuota_collars")
    with op.batch_alter_table("fuota_collars") as batch_op:
        batch_op.drop_column("setup_version_at")
        batch_op.drop_column("setup_version")
