"""An index of each animal's activity summaries by time: the Animal page reads one animal's
summaries of the chosen days without walking every summary the animal ever sent (the index on
`animal_id` alone, which this one starts with, goes).

Revision ID: 0014_activity_animal_time
Revises: 0013_positions_device_id
"""

from __future__ import annotations

from alembic import op

revision = "0014_activity_animal_time"
down_revision = "0013_positions_device_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_activity_animal_time", "activity_summaries", ["animal_id", "time"])
    op.drop_index("ix_activity_summaries_animal_id", table_name="activity_summaries")


def downgrade() -> None:
    op.create_index("ix_activity_summaries_animal_id", "activity_summaries", ["animal_id"])
    op.drop_index("ix_activity_animal_time", table_name="activity_summaries")
