"""A collar taken off its animal with no other fitted is worn by nobody until it is fitted again
(`devices.taken_off_at`, the moment it came off): the rules judge none of its fixes as an animal's, so a
collar lying in the workshop raises no fence, stillness or speed alert. Existing collars are worn (NULL).

Revision ID: 0031_collar_taken_off
Revises: 0030_collar_fittings
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031_collar_taken_off"
down_revision = "0030_collar_fittings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("taken_off_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("taken_off_at")
