"""Update campaigns know the base a firmware delta is built against: only collars that run it are sent
it (none for the campaigns started before: whole images).

Revision ID: 0022_campaign_delta_base
Revises: 0021_downlink_transmissions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_campaign_delta_base"
down_revision = "0021_downlink_transmissions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("update_campaigns") as batch:
        batch.add_column(sa.Column("base_version", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("update_campaigns") as batch:
        batch.drop_column("base_version")
