"""A field technician's collar that missed more of the window than its RAM holds parity rows for says so in its
fragment status answer (TS004 NotEnoughMatrixMemory), and the campaign fails it at once with that reason, instead of
spending its fair use on parity it drops until its time runs out."""

from __future__ import annotations

import pytest
from fuota_network import StandInTheThingsStack, serve
from fuota_twin import KEYS_FOR, Reserve, model_image, open_bridge

from collar_firmware import update_fec
from simulator import fuota


@pytest.fixture
def network(port):
    with serve(StandInTheThingsStack(), port) as stand_in:
        yield stand_in


def test_collars_whose_fec_matrix_is_full_are_failed_with_that_reason_and_keep_their_model(
        sqlite_url, network, monkeypatch):
    image, version = model_image()
    fleet = fuota.build_fleet(3, 0.3, 11, KEYS_FOR)
    before = {c.device_id: c.collar.model.version for c in fleet}
    # their RAM holds no parity row at all: a fragment missed of the window's can come back only as data
    monkeypatch.setattr(update_fec, "_MATRIX_BYTES", update_fec._ROW_BYTES)
    reserve = Reserve(fleet, network, seed=4)
    with open_bridge(sqlite_url, network) as bridge:
        started = reserve.start(bridge, image, version)
        reserve.through_delivery(started)
        campaign = bridge.campaign(started["id"])

    states = {c["device_id"]: (c["state"], c["reason"]) for c in campaign["collars"]}
    full = [d for d, (state, reason) in states.items() if state == "failed" and reason.startswith("FEC matrix full:")]
    assert full, states
    assert all(states[d][0] == "updated" for d in states if d not in full), "no collar failed for another reason"
    for device_id in full:
        assert next(c for c in fleet if c.device_id == device_id).collar.model.version == before[device_id]
        (failed,) = [e for e in campaign["history"] if e["device_id"] == device_id and e["event"] == "failed"]
        assert "NotEnoughMatrixMemory" in failed["detail"]["detail"]
