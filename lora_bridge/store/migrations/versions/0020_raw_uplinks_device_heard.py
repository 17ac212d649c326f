"""An index of each collar's uplinks by when they were heard: a researcher or visitor reads an
animal's last report, battery and temperature as the bridge had heard them by the role's cutoff, one
index seek per collar instead of a walk over every uplink the collar ever sent.

Revision ID: 0020_raw_uplinks_device_heard
Revises: 0017_campaign_spreading_factor
"""

from __future__ import annotations

from alembic import op

revision = "0020_raw_uplinks_device_heard"
down_revision = "0017_campaign_spreading_factor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_raw_uplinks_device_heard", "raw_uplinks", ["device_id", "heard_at"])


def downgrade() -> None:
    op.drop_index("ix_raw_uplinks_device_heard", table_name="raw_uplinks")
