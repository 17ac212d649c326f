"""The bridge asks each collar which LoRa Alliance FUOTA packages it speaks (PackageVersionReq) and remembers
the answer: `collar_packages` holds, per collar and package port (200 TS005, 201 TS004, 202 TS003), the
PackageIdentifier and PackageVersion it announced, the firmware it reported then and when it was heard. A delivery's collar keeps when it
was asked before its set-up (`fuota_collars.version_asked_at`), so the wait for the answer is bounded.

Revision ID: 0033_collar_packages
Revises: 0032_collar_in_stock
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033_collar_packages"
down_revision = "0032_collar_in_stock"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collar_packages",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("package_version", sa.Integer(), nullable=False),
        sa.Column("fw_version", sa.String(length=32), nullable=True),
        sa.Column("heard_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("device_id", "port"),
    )
    with op.batch_alter_table("fuota_collars") as batch_op:
        batch_op.add_column(sa.Column("version_asked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fuota_collars") as batch_op:
        batch_op.drop_column("version_asked_at")
    op.drop_table("collar_packages")
