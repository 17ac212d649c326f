"""Server rules and notifications: geofences, battery readings, rule cursors, the notification outbox.

Revision ID: 0003_rules_and_notifications
Revises: 0002_postgis_geometry
Create Date: 2026-12-02 06:44:01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rules_and_notifications"
down_revision = "0002_postgis_geometry"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "geofences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("alert_on", sa.String(length=8), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("source_file", sa.String(length=256), nullable=True),
        sa.Column("source_crs", sa.String(length=64), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_geofences_kind", "geofences", ["kind"])

    op.create_table(
        "battery_readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("time", UTC_TIME, nullable=False),
        sa.Column("battery_mv", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "time", name="uq_battery_device_time"),
    )
    op.create_index("ix_battery_readings_device_id", "battery_readings", ["device_id"])

    op.create_table(
        "rule_cursors",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("position_time", UTC_TIME, nullable=True),
        sa.Column("status_time", UTC_TIME, nullable=True),
        sa.Column("evaluated_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.device_id"]),
        sa.PrimaryKeyConstraint("device_id"),
    )

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=256), nullable=False),
        sa.Column("route", sa.String(length=64), nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC_TIME, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("sent_at", UTC_TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
    )
    op.create_index("ix_notifications_alert_id", "notifications", ["alert_id"])
    op.create_index("ix_notifications_next_attempt_at", "notifications", ["next_attempt_at"])
    op.create_index("ix_notifications_state", "notifications", ["state"])


def downgrade() -> None:
    op.drop_index("ix_notifications_state", table_name="notifications")
    op.drop_index("ix_notifications_next_attempt_at", table_name="notifications")
    op.drop_index("ix_notifications_alert_id", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("rule_cursors")
    op.drop_index("ix_battery_readings_device_id", table_name="battery_readings")
    op.drop_table("battery_readings")
    op.drop_index("ix_geofences_kind", table_name="geofences")
    op.drop_table("geofences")
