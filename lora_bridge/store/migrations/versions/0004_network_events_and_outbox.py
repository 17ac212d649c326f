"""Network events, TTS downlink routes, collar sessions and the downlink outbox's bookkeeping.

network_events keeps what network servers say besides uplinks (joins, delivery reports, locations,
status, logs); downlink_routes keeps The Things Stack's X-Downlink-* headers per collar; devices get
a label and a session (one per join); raw_uplinks the kind, encoding and path ids of each body;
downlinks a lease, a fair-use hold, correlation ids and the network's delivery state.

Revision ID: 0004_network_events_and_outbox
Revises: 0003_rules_tables
Create Date: 2026-12-02 06:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_network_events_and_outbox"
down_revision = "0003_rules_tables"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "downlink_routes",
        sa.Column("application_id", sa.String(length=64), nullable=False),
        sa.Column("tts_device_id", sa.String(length=64), nullable=False),
        sa.Column("push_url", sa.Text(), nullable=True),
        sa.Column("replace_url", sa.Text(), nullable=True),
        sa.Column("api_key", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("application_id", "tts_device_id"),
    )
    op.create_table(
        "network_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("raw_uplink_id", sa.Integer(), nullable=True),
        sa.Column("network", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("dev_eui", sa.String(length=16), nullable=True),
        sa.Column("time", UTC_TIME, nullable=True),
        sa.Column("downlink_id", sa.Integer(), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("accuracy_m", sa.Double(), nullable=True),
        sa.Column("battery_pct", sa.Double(), nullable=True),
        sa.Column("margin_db", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["downlink_id"], ["downlinks.id"]),
        sa.ForeignKeyConstraint(["raw_uplink_id"], ["raw_uplinks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_network_events_device_id", "network_events", ["device_id"])
    op.create_index("ix_network_events_kind", "network_events", ["kind"])
    op.create_index("ix_network_events_raw_uplink_id", "network_events", ["raw_uplink_id"])

    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("session", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("joined_at", UTC_TIME, nullable=True))
        batch_op.add_column(sa.Column("newest_message_time", UTC_TIME, nullable=True))

    with op.batch_alter_table("downlinks") as batch_op:
        batch_op.add_column(sa.Column("lease_until", UTC_TIME, nullable=True))
        batch_op.add_column(sa.Column("not_before", UTC_TIME, nullable=True))
        batch_op.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("network_ref", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("network_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("network_reported_at", UTC_TIME, nullable=True))
        batch_op.add_column(sa.Column("superseded_by", sa.Integer(), nullable=True))
        batch_op.create_index("ix_downlinks_correlation_id", ["correlation_id"])
        batch_op.create_index("ix_downlinks_network_ref", ["network_ref"])
        batch_op.create_foreign_key("fk_downlinks_superseded_by", "downlinks", ["superseded_by"], ["id"])

    with op.batch_alter_table("raw_uplinks") as batch_op:
        batch_op.add_column(sa.Column("event", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("content_type", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("path_ids", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("heard_at_reported", UTC_TIME, nullable=True))
        batch_op.add_column(sa.Column("session", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("backfilled", sa.Boolean(), nullable=True))
        batch_op.create_index("ix_raw_uplinks_device_session_fcnt", ["device_id", "session", "f_cnt"])


def downgrade() -> None:
    with op.batch_alter_table("raw_uplinks") as batch_op:
        batch_op.drop_index("ix_raw_uplinks_device_session_fcnt")
        for column in ("backfilled", "session", "heard_at_reported", "path_ids", "content_type", "event"):
            batch_op.drop_column(column)
    with op.batch_alter_table("downlinks") as batch_op:
        batch_op.drop_constraint("fk_downlinks_superseded_by", type_="foreignkey")
        batch_op.drop_index("ix_downlinks_network_ref")
        batch_op.drop_index("ix_downlinks_correlation_id")
        for column in (
            "superseded_by", "network_reported_at", "network_state", "network_ref", "correlation_id",
            "not_before", "lease_until",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("devices") as batch_op:
        for column in ("newest_message_time", "joined_at", "session", "label"):
            batch_op.drop_column(column)
    op.drop_table("network_events")
    op.drop_table("downlink_routes")
