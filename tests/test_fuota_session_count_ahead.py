"""A field technician's campaign goes to collars on TS004 v2.0.0, one of which took a far greater SessionCnt than
the bridge remembers giving it (a store restored from a backup, a collar set up by another bridge). The collar refuses each set-up whose SessionCnt is not above its own; it must still be set up in a
few round trips, each a downlink of its few a day, not one per count between the bridge's and its own.
"""

from __future__ import annotations

import struct

from migration_round_trip import round_trip
from sqlalchemy import select
from test_fuota_from_the_outside import into_the_window, v2_campaign
from test_fuota_multicast_setup import tts  # noqa: F401

from collar_firmware import codec, records
from collar_firmware.update_install import KEYS_SESSION_CNT
from lora_bridge import fuota_session_counts
from lora_bridge.store import migrate
from lora_bridge.store.tables import FuotaCollar

SETUP_TAG = codec.tag_of("frag_session_setup")


def _setups_to(tts, device_id: str) -> list[int]:  # noqa: F811
    """The SessionCnt of each v2.0.0 set-up the network server was handed for the collar, in order."""
    return [codec.decode(201, p["payload"], "down", 2)["session_cnt"] for p in tts.unicast
            if p["device"] == device_id and p["f_port"] == 201 and p["payload"][0] == SETUP_TAG]


def _setup_answers(reserve, device_id: str) -> list[int]:
    """The error bits of each FragSessionSetupAns the collar sent, in order."""
    return [m["status"] & 0x3F for d, m in reserve.heard if d == device_id and m["message"] == "frag_session_setup_ans"]


def test_a_collar_whose_session_count_is_far_ahead_is_set_up_within_a_bounded_number_of_round_trips(
        sqlite_url, tts, tmp_path, monkeypatch):  # noqa: F811
    """collar-001 took SessionCnt 500 from another bridge; this bridge's first set-up carries the campaign's id.
    Each set-up it refuses as a replay while holding no session is found by the status round and set up again:
    one count above the last it had been, 500 round trips; now the step doubles with each such refusal, so it takes
    set-up number floor(log2(500 - first + 2)) + 1 and gathers the image."""
    with v2_campaign(sqlite_url, tts, tmp_path, monkeypatch) as (bridge, reserve, campaign, version):
        ahead = reserve.fleet[1]
        ahead.hal.storage.write(KEYS_SESSION_CNT[0], records.sealed(struct.pack("<H", 500)))
        into_the_window(reserve, campaign)
        reserve.run_until(reserve.now_s() + 8 * 86400, step_s=1800)
        after = bridge.campaign(campaign["id"])
        with bridge.db.read() as session:
            kept = session.scalar(select(FuotaCollar.session_cnt).where(FuotaCollar.device_id == ahead.device_id))
            refusals = fuota_session_counts.replays_refused(session, ahead.device_id, campaign["id"])
    counts = _setups_to(tts, ahead.device_id)
    first = campaign["id"] % fuota_session_counts.COUNT_SPAN
    taken = (500 - first + 2).bit_length()  # floor(log2(500 - first + 2)) + 1
    assert counts == [first + (1 << (j + 1)) - 2 for j in range(taken)], "the step doubles: +2, +4, +8, ..."
    assert _setup_answers(reserve, ahead.device_id) == [0x10] * (taken - 1) + [0], "refused as replays, then taken"
    assert kept == counts[-1] and refusals == taken - 1, "the count it took kept on its delivery's row"
    assert ahead.collar.model.version == version
    assert after["counts"] == {"updated": 3}, after["collars"]


def test_the_session_count_column_is_added_and_removed_by_its_migration(store_url):
    """A store upgraded to the newest revision has the delivery's SessionCnt column; downgraded to the revision
    before it has it no more, and upgraded again it has it once more (SQLite in batch mode, PostgreSQL in place)."""
    trip = round_trip(store_url, "fuota_collars", "0033_collar_packages")
    assert trip.down_at == "0033_collar_packages" and trip.up_at == migrate.head_revision()
    assert "session_cnt" in trip.columns and "session_cnt" not in trip.without and trip.again == trip.columns
