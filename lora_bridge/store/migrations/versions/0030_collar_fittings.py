"""The herd register keeps who wore a collar when: an animal's current collar has the time it was
fitted (`animals.collar_fitted_at`), and every collar an animal wore and took off is a row of
`collar_fittings` (animal, collar, fitted, removed). A message of a collar dated before its current
fitting is filed under the animal that wore it then, so a field technician's swap or move of a collar
leaves each animal its own track and alerts. Existing animals wear their collars since they were
registered (NULL).

Revision ID: 0030_collar_fittings
Revises: 0029_notification_tries_total
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030_collar_fittings"
down_revision = "0029_notification_tries_total"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("animals") as batch_op:
        batch_op.add_column(sa.Column("collar_fitted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "collar_fittings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("animal_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["animal_id"], ["animals.id"]),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_collar_fittings_animal_id", "collar_fittings", ["animal_id"])
    op.create_index("ix_collar_fittings_device_removed", "collar_fittings", ["device_id", "removed_at"])


def downgrade() -> None:
    op.drop_index("ix_collar_fittings_device_removed", table_name="collar_fittings")
    op.drop_index("ix_collar_fittings_animal_id", table_name="collar_fittings")
    op.drop_table("collar_fittings")
    with op.batch_alter_table("animals") as batch_op:
        batch_op.drop_column("collar_fitted_at")
