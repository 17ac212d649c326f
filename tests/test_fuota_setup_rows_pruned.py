"""A field technician's store loses the outbox's fragmentation set-up rows in the middle of a campaign (a retention
job, a clean-up by hand). The collars set up in TS004 v2.0.0 still answer the status round in v2.0.0's layout:
the bridge must still read them, and the campaign must still update every collar.
"""

from __future__ import annotations

from migration_round_trip import round_trip
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from test_fuota_from_the_outside import into_the_window, v2_campaign
from test_fuota_multicast_setup import tts  # noqa: F401

from collar_firmware import codec
from lora_bridge.domain import frag_package
from lora_bridge.store import migrate
from lora_bridge.store.tables import Downlink, DownlinkTransmission, NetworkEvent


def _prune_setups(session: Session) -> int:
    """Delete the outbox's fragmentation set-up rows as a retention job would, with what points at them (their
    transmissions; network events and superseding rows keep no link); return how many set-ups went."""
    ids = list(session.scalars(select(Downlink.id).where(Downlink.command == frag_package.SETUP)))
    session.execute(delete(DownlinkTransmission).where(DownlinkTransmission.downlink_id.in_(ids)))
    session.execute(update(NetworkEvent).where(NetworkEvent.downlink_id.in_(ids)).values(downlink_id=None))
    session.execute(update(Downlink).where(Downlink.superseded_by.in_(ids)).values(superseded_by=None))
    return session.execute(delete(Downlink).where(Downlink.id.in_(ids))).rowcount


def test_field_technician_pruning_the_outbox_set_ups_mid_window_still_sees_every_v2_collar_updated(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """Three collars on TS004 v2.0.0 are set up and a dozen fragments into the window when the outbox's set-up rows
    are deleted. Their v2.0.0 status answers must still be read as v2.0.0 (before: read as v1.0.0, unread, and all
    three failed "never answered a fragment status request"), and all three install the model."""
    with v2_campaign(sqlite_url, tts, tmp_path, monkeypatch) as (bridge, reserve, campaign, version):
        into_the_window(reserve, campaign)
        with bridge.db.write() as session:
            pruned = _prune_setups(session)
        with bridge.db.read() as session:
            versions = {d.device_id: frag_package.session_version(session, d.device_id, codec) for d in reserve.fleet}
        reserve.run_until(reserve.now_s() + 6 * 86400, step_s=1800)
        after = bridge.campaign(campaign["id"])
    assert pruned == len(reserve.fleet), "one set-up row per collar was pruned"
    assert versions == {d.device_id: frag_package.V2 for d in reserve.fleet}, "their answers read in v2.0.0"
    assert after["counts"] == {"updated": len(reserve.fleet)}, after["collars"]
    assert all(c.collar.model.version == version for c in reserve.fleet)


def test_the_set_up_version_columns_are_added_and_removed_by_their_migration(store_url):
    """A store upgraded to the newest revision keeps each delivery's set-up version and its time; downgraded to the
    revision before it has neither, and upgraded again has both (SQLite in batch mode, PostgreSQL in place)."""
    added = {"setup_version", "setup_version_at"}
    trip = round_trip(store_url, "fuota_collars", "0034_fuota_session_cnt")
    assert trip.down_at == "0034_fuota_session_cnt"
    assert trip.up_at == migrate.head_revision() == "0035_fuota_setup_version"
    assert added <= trip.columns and trip.without == trip.columns - added and trip.again == trip.columns
