"""A downlink route belongs to the collar it was learnt from (`downlink_routes.device_id`, the bridge's
own name of the collar), no longer to an (application id, device id) pair: since 0026 two The Things
Stack Cloud tenants' ABP `collar-1` in applications both called `tembo` are two collars, and the one
route they shared sent one tenant's acks and commands to the other tenant's host, with its API key,
for its collar of that name.

Each existing route goes to the collar of that application and name; where two collars hold them (two
tenants or clusters), to the one whose network scope names the route's host (a tenant is the first
label of `{tenant}.{region}.cloud.thethings.industries`, a cluster its address), else to none: the
next message of each collar brings its own route again (TTS sends the headers with every message).

Revision ID: 0028_downlink_route_per_collar
Revises: 0027_positions_collar_time
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0028_downlink_route_per_collar"
down_revision = "0027_positions_collar_time"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

UTC_TIME = sa.DateTime(timezone=True)
ROUTE_FIELDS = ("push_url", "replace_url", "api_key", "updated_at")


def _route_table(name: str, *key: sa.Column) -> None:
    op.create_table(
        name,
        *key,
        sa.Column("push_url", sa.Text(), nullable=True),
        sa.Column("replace_url", sa.Text(), nullable=True),
        sa.Column("api_key", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
    )


def _scope_names_host(scope: str | None, url: str | None) -> bool:
    """True when a collar's network scope (tenant, else cluster address) names url's host."""
    host = (urlsplit(url).hostname or "") if url else ""
    return bool(scope and host) and (host == scope or host.startswith(f"{scope}."))


def upgrade() -> None:
    connection = op.get_bind()
    # Read, dropped, made anew (one route per collar: few rows): a renamed table would keep its key's
    # name, `downlink_routes_pkey` on PostgreSQL, which the new table's key needs.
    old = sa.table("downlink_routes", *(sa.column(c) for c in ("application_id", "tts_device_id", *ROUTE_FIELDS)))
    routes = connection.execute(sa.select(old)).mappings().all()
    op.drop_table("downlink_routes")
    _route_table(
        "downlink_routes",
        sa.Column("device_id", sa.String(length=64), primary_key=True),
        sa.Column("application_id", sa.String(length=64), nullable=False),
        sa.Column("tts_device_id", sa.String(length=64), nullable=False),
    )
    devices = sa.table("devices", *(sa.column(c) for c in ("device_id", "application_id", "label", "network_scope")))
    new = sa.table("downlink_routes", *(sa.column(c) for c in ("device_id", "application_id", "tts_device_id",
                                                                 *ROUTE_FIELDS)))
    for route in routes:
        holders = connection.execute(
            sa.select(devices.c.device_id, devices.c.network_scope).where(
                devices.c.application_id == route["application_id"],
                sa.func.coalesce(devices.c.label, devices.c.device_id) == route["tts_device_id"])
        ).all()
        if len(holders) > 1:
            holders = [h for h in holders if _scope_names_host(h.network_scope, route["push_url"])]
        if len(holders) != 1:
            log.warning("downlink route of %s/%s not kept: %d collars hold that name; the next message brings it",
                        route["application_id"], route["tts_device_id"], len(holders))
            continue
        connection.execute(sa.insert(new).values(device_id=holders[0].device_id, **dict(route)))


def downgrade() -> None:
    connection = op.get_bind()
    fields = ("application_id", "tts_device_id", *ROUTE_FIELDS)
    old = sa.table("downlink_routes", *(sa.column(c) for c in fields))
    kept: dict[tuple[str, str], dict] = {}
    for route in connection.execute(sa.select(old).order_by(old.c.updated_at)).mappings().all():
        kept[(route["application_id"], route["tts_device_id"])] = dict(route)  # the newest of a name wins
    op.drop_table("downlink_routes")
    _route_table(
        "downlink_routes",
        sa.Column("application_id", sa.String(length=64), nullable=False),
        sa.Column("tts_device_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("application_id", "tts_device_id"),
    )
    new = sa.table("downlink_routes", *(sa.column(c) for c in fields))
    for route in kept.values():
        connection.execute(sa.insert(new).values(**route))
