"""A notification keeps every try it was given (`notifications.tries_total`), beside the tries of its
current round (`attempts`, the budget `max_attempts` bounds): an administrator's retry starts a new
round, and until now the count started again with it, so nobody could see how many times an SMS route
had been tried in all. Existing rows start with the tries of their current round.

Revision ID: 0029_notification_tries_total
Revises: 0028_downlink_route_per_collar
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029_notification_tries_total"
down_revision = "0028_downlink_route_per_collar"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.add_column(sa.Column("tries_total", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE notifications SET tries_total = attempts")


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_column("tries_total")
