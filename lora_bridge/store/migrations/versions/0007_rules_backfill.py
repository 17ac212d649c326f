"""Rules: a collar's rule cursor keeps the highest fix id it has judged (so a fix back-filled from the
collar's flash, older than the cursor's time, is still found and judged), and a fence keeps when it
last changed (so a renamed fence rebuilds the rules' fence index).

Revision ID: 0007_rules_backfill
Revises: 0006_access
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_rules_backfill"
down_revision = "0006_access"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("rule_cursors") as batch_op:
        batch_op.add_column(sa.Column("position_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("geofences") as batch_op:
        batch_op.add_column(sa.Column("updated_at", UTC_TIME, nullable=True))
    op.execute("UPDATE geofences SET updated_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("geofences") as batch_op:
        batch_op.drop_column("updated_at")
    with op.batch_alter_table("rule_cursors") as batch_op:
        batch_op.drop_column("position_id")
