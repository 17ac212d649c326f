"""The record a collar in stock is filed under is no animal (`animals.holds_collar_in_stock`): a collar
taken off with no other fitted and heard since is held by a record named after it (`devices.ensure_animal`),
which the herd register lists as a collar in stock, and whose time with the collar is a spell in stock, not
an animal's (no alert is raised for it). Existing holders, of collars still taken off, are marked. A
collar fitted out of stock keeps when (`devices.left_stock_at`): its silence counts from then.

Revision ID: 0032_collar_in_stock
Revises: 0031_collar_taken_off
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032_collar_in_stock"
down_revision = "0031_collar_taken_off"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("left_stock_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("animals") as batch_op:
        batch_op.add_column(sa.Column("holds_collar_in_stock", sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
    animals = sa.table("animals", sa.column("device_id", sa.String), sa.column("holds_collar_in_stock", sa.Boolean))
    devices = sa.table("devices", sa.column("device_id", sa.String), sa.column("taken_off_at", sa.DateTime))
    taken_off = sa.select(devices.c.device_id).where(devices.c.taken_off_at.is_not(None))
    op.execute(animals.update().where(animals.c.device_id.in_(taken_off)).values(holds_collar_in_stock=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("animals") as batch_op:
        batch_op.drop_column("holds_collar_in_stock")
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("left_stock_at")
