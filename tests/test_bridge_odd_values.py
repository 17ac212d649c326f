"""Odd values a network server (or a broken gateway) may send never cost a valid uplink, never break a
ranger's view and never forge a log line."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import bridge_builders as b
import network_fixtures as nf
import pytest

from lora_bridge.store.utc import utc_now


@pytest.fixture
def bridge_store(sqlite_url):  # parsing is the same whatever the store: SQLite only
    return sqlite_url


def tts_document(**changes) -> dict:
    document = json.loads(b.tts_uplink(b.status(), f_cnt=1))
    for path, value in changes.items():
        target = document
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return document


def test_rssi_infinity_and_nan_are_dropped_and_the_device_list_still_answers(client, bridge):
    body = json.dumps(tts_document()).replace('"rssi": -100', '"rssi": Infinity').replace('"snr": 7.5', '"snr": NaN')

    reply = client.post("/uplinks/tts", content=body, headers=b.HEADERS)
    devices = client.get("/api/devices", headers=b.api_headers(bridge, "field_technician"))

    assert reply.status_code == 200 and reply.json()["status"] == "processed"
    assert devices.status_code == 200
    (device,) = devices.json()
    assert device["last_rssi_dbm"] is None or device["last_rssi_dbm"] == -100.0  # channel_rssi when rssi is not finite
    assert device["last_snr_db"] is None


@pytest.mark.parametrize(
    "changes",
    [
        {"uplink_message__settings__data_rate": None},
        {"uplink_message__settings": "fast"},
        {"uplink_message__rx_metadata": {"gateway_ids": "gw"}},
        {"uplink_message__rx_metadata": [None, 7, {"gateway_ids": None, "rssi": "strong", "snr": True}]},
        {"uplink_message__consumed_airtime": 61.7},
        {"uplink_message__received_at": 1234},
        {"received_at": None},
        {"end_device_ids__application_ids": "tembo-test"},
        {"uplink_message__f_cnt": None},
    ],
)
def test_wrong_typed_optional_fields_never_dead_letter_a_valid_uplink(client, bridge, changes):
    reply = client.post("/uplinks/tts", content=json.dumps(tts_document(**changes)), headers=b.HEADERS)

    assert reply.status_code == 200 and reply.json()["status"] == "processed"
    assert bridge.dead_letters() == []
    assert bridge.counts()["positions"] == 1


def test_a_reception_time_in_year_9999_is_dated_at_arrival_with_the_original_kept(client, bridge):
    before = utc_now()
    body = tts_document(received_at="9999-12-31T23:59:59.999999999Z",
                        uplink_message__received_at="9999-12-31T23:59:59.999999999Z")

    client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    (device,) = bridge.devices()
    assert before - timedelta(seconds=1) <= device.last_seen <= utc_now() + timedelta(seconds=1)
    with bridge.db.read() as session:
        from lora_bridge.store.tables import RawUplink

        (raw,) = session.query(RawUplink).all()
        assert raw.heard_at_reported.year == 9999
        assert raw.heard_at == device.last_seen


def test_a_clock_far_ahead_does_not_freeze_last_seen_so_the_offline_rule_still_fires(client, bridge):
    far_future = (utc_now() + timedelta(days=400)).isoformat().replace("+00:00", "Z")
    client.post("/uplinks/tts", content=json.dumps(tts_document(uplink_message__received_at=far_future)),
                headers=b.HEADERS)

    raised = bridge.run_rules(now=utc_now() + timedelta(days=2))

    assert raised, "a collar silent for two days is offline even if its network once claimed a future time"
    assert {a.alert_type for a in bridge.open_alerts(viewer=b.RANGER)} >= {"offline"}


@pytest.mark.parametrize("name", ["collar-01\nERROR forged line", "collar\r\n01", "collar\x1b[31m01", "collar\x00"])
def test_control_characters_in_ids_are_escaped_so_logs_cannot_be_forged(client, bridge, caplog, name):
    body = tts_document(end_device_ids__device_id=name)

    with caplog.at_level(logging.INFO):
        reply = client.post("/uplinks/tts", content=json.dumps(body), headers=b.HEADERS)

    assert reply.status_code == 200
    (device,) = bridge.devices()
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in device.device_id)
    assert "\\" in device.device_id
    assert all("\n" not in r.getMessage() and "\r" not in r.getMessage() and "\x1b" not in r.getMessage()
               for r in caplog.records)


def test_a_dev_eui_that_is_not_an_eui_is_refused_with_a_clear_reason(client, bridge):
    reply = client.post("/uplinks/tts", content=json.dumps(tts_document(end_device_ids__dev_eui="70B3\nD57E")),
                        headers=b.HEADERS)

    assert reply.status_code == 200 and "EUI-64" in reply.json()["reason"]
    (letter,) = bridge.dead_letters()
    assert letter.stage == "parse"


def test_huge_and_deeply_nested_json_is_a_dead_letter_not_a_crash(client, bridge):
    nested = b"[" * 100_000 + b"]" * 100_000

    reply = client.post("/uplinks/tts", content=nested[: 200 * 1024], headers=b.HEADERS)

    assert reply.status_code == 200 and reply.json()["stage"] == "parse"


@pytest.mark.parametrize("network", ["tts", "chirpstack"])
def test_a_number_of_thousands_of_digits_is_kept_for_inspection_not_a_500_lost(client, bridge, network):
    # Python turns at most 4300 digits into an int: such a number had raised out of the JSON reader,
    # a TTS body was answered 500 and never kept (TTS tried it seven times in vain), and a ChirpStack
    # body was taken for a bug ("processing failed").
    huge = "1" + "0" * 5000
    fixture = nf.TTS["uplink_message"] if network == "tts" else nf.CHIRPSTACK["up"]
    document = fixture.copy()
    if network == "tts":
        document["uplink_message"]["f_cnt"] = 123454321
    else:
        document["fCnt"] = 123454321
    body = json.dumps(document).replace("123454321", huge)
    url = "/uplinks/tts" if network == "tts" else "/uplinks/chirpstack?event=up"

    reply = client.post(url, content=body, headers=b.HEADERS)
    again = client.post(url, content=body, headers=b.HEADERS)  # the same body again (a retry whose first answer was lost)

    assert reply.status_code == 200 and "more than 4300 digits" in reply.json()["reason"]
    assert again.status_code == 200
    (letter,) = bridge.dead_letters()
    assert letter.stage == "parse" and letter.tries == 2
