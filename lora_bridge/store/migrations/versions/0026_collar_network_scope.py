"""A collar remembers the tenant (else the cluster) its network names its application in: a collar
without a DevEUI (a TTS ABP device) is its name within its application and that scope, so two ABP
collars of one name in two applications or tenants stay two collars. Existing collars have none
until they are heard again; an unknown scope contradicts no message.

Revision ID: 0026_collar_network_scope
Revises: 0025_battery_one_collar_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_collar_network_scope"
down_revision = "0025_battery_one_collar_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_scope", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("network_scope")
