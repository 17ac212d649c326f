"""Update campaigns gate collars on the spreading factor of their last uplink: the highest a campaign
lets a collar be on (12, the highest LoRa has, for the campaigns started before: no gate).

Revision ID: 0017_campaign_spreading_factor
Revises: 0014_activity_animal_time
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_campaign_spreading_factor"
down_revision = "0014_activity_animal_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("update_campaigns") as batch:
        batch.add_column(sa.Column("max_spreading_factor", sa.Integer(), nullable=False, server_default="12"))


def downgrade() -> None:
    with op.batch_alter_table("update_campaigns") as batch:
        batch.drop_column("max_spreading_factor")
