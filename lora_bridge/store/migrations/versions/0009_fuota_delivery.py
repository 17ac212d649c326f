"""Over-the-air delivery: update results from status, delivery sessions, their collars, multicast frames.

Revision ID: 0009_fuota_delivery
Revises: 0008_sign_in_lockout
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_fuota_delivery"
down_revision = "0008_sign_in_lockout"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "update_results",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("time", UTC_TIME, nullable=False),
        sa.Column("reported_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "fuota_sessions",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("application_id", sa.String(length=64), nullable=True),
        sa.Column("gateways", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("frag_size", sa.Integer(), nullable=False),
        sa.Column("nb_frag", sa.Integer(), nullable=False),
        sa.Column("padding", sa.Integer(), nullable=False),
        sa.Column("sf", sa.Integer(), nullable=False),
        sa.Column("fragment_airtime_s", sa.Double(), nullable=False),
        sa.Column("spacing_s", sa.Double(), nullable=False),
        sa.Column("session_time", UTC_TIME, nullable=False),
        sa.Column("target_fragment", sa.Integer(), nullable=False),
        sa.Column("next_fragment", sa.Integer(), nullable=False),
        sa.Column("next_at", UTC_TIME, nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("airtime_s", sa.Double(), nullable=False),
        sa.Column("status_asked_at", UTC_TIME, nullable=True),
        sa.Column("status_rounds", sa.Integer(), nullable=False),
        sa.Column("closed_at", UTC_TIME, nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["update_campaigns.id"]),
        sa.PrimaryKeyConstraint("campaign_id"),
    )
    op.create_index("ix_fuota_sessions_state", "fuota_sessions", ["state"])
    op.create_table(
        "fuota_collars",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("setup_queued_at", UTC_TIME, nullable=True),
        sa.Column("session_answered", sa.Boolean(), nullable=False),
        sa.Column("setup_answered", sa.Boolean(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=True),
        sa.Column("missing", sa.Integer(), nullable=True),
        sa.Column("status_fragment", sa.Integer(), nullable=True),
        sa.Column("status_at", UTC_TIME, nullable=True),
        sa.Column("loss", sa.Double(), nullable=True),
        sa.Column("unicast_sent", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["update_campaigns.id"]),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("campaign_id", "device_id"),
    )
    op.create_table(
        "multicast_downlinks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("application_id", sa.String(length=64), nullable=True),
        sa.Column("gateways", sa.JSON(), nullable=False),
        sa.Column("f_port", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("command", sa.String(length=32), nullable=False),
        sa.Column("send_at", UTC_TIME, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("lease_until", UTC_TIME, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", UTC_TIME, nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["update_campaigns.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_multicast_downlinks_campaign_id", "multicast_downlinks", ["campaign_id"])
    op.create_index("ix_multicast_downlinks_state", "multicast_downlinks", ["state"])


def downgrade() -> None:
    op.drop_index("ix_multicast_downlinks_state", table_name="multicast_downlinks")
    op.drop_index("ix_multicast_downlinks_campaign_id", table_name="multicast_downlinks")
    op.drop_table("multicast_downlinks")
    op.drop_table("fuota_collars")
    op.drop_index("ix_fuota_sessions_state", table_name="fuota_sessions")
    op.drop_table("fuota_sessions")
    op.drop_table("update_results")
