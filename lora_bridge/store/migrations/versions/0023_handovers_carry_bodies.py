"""A hand-over carries its body: the collar's owner writes the raw row once, in its final state, as for
a body of its own (a hand-over used to point at a raw row the receiving worker wrote, which the owner
then locked, read and updated).

Hand-overs waiting when the store is upgraded point at raw rows still `received`: they are dropped,
and those rows are applied as every pending body is (`Bridge.process_pending`, at the bridge's start
and by its timer).

Revision ID: 0023_handovers_carry_bodies
Revises: 0022_campaign_delta_base
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_handovers_carry_bodies"
down_revision = "0022_campaign_delta_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM collar_handovers")
    with op.batch_alter_table("collar_handovers") as batch:
        batch.drop_column("raw_uplink_id")
        batch.add_column(sa.Column("source", sa.String(length=32), nullable=False))
        batch.add_column(sa.Column("body", sa.LargeBinary(), nullable=False))
        batch.add_column(sa.Column("event", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("content_type", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("path_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Bodies still handed over become raw rows `received` (applied as pending bodies), then the
    # hand-overs point at raw rows again.
    op.execute(
        "INSERT INTO raw_uplinks (received_at, source, body, status, gateways, event, content_type, path_ids) "
        "SELECT handed_at, source, body, 'received', '[]', event, content_type, path_ids FROM collar_handovers"
    )
    op.execute("DELETE FROM collar_handovers")
    with op.batch_alter_table("collar_handovers") as batch:
        for name in ("path_ids", "content_type", "event", "body", "source"):
            batch.drop_column(name)
        batch.add_column(sa.Column("raw_uplink_id", sa.Integer(), nullable=False))
        batch.create_foreign_key("fk_collar_handovers_raw_uplink_id", "raw_uplinks", ["raw_uplink_id"], ["id"])
        batch.create_unique_constraint("uq_collar_handovers_raw_uplink_id", ["raw_uplink_id"])
