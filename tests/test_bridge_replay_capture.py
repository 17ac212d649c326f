"""An operator replays what a network server sent while the control room was offline: a JSON-lines
capture of ChirpStack events (the bodies, as its HTTP integration posts them), or a `mosquitto_sub
-F '%J'` capture of both networks' topics. Each line is read as the kind it is, as the live webhook
and MQTT ingest read it, and the report says what became of each kind."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import bridge_builders as b
import network_fixtures as nf
import pytest

from lora_bridge.adapters.replay import replay_file
from tembo.cli import main


@pytest.fixture
def bridge(store_url):  # a batch holding two copies of one event: claimed once on both stores
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        yield bridge


def capture(tmp_path, lines: list[dict | str]) -> str:
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return str(path)


def test_operator_replays_a_chirpstack_capture_and_each_event_is_read_as_its_kind(bridge, tmp_path):
    names = ["up", "join", "status", "ack", "txack", "log", "location", "integration"]
    lines = [nf.CHIRPSTACK[name].body for name in names] + [nf.CHIRPSTACK["status"].body]  # a status twice

    report = replay_file(bridge, capture(tmp_path, lines), "chirpstack")

    assert (report.attempted, report.processed, report.duplicates, report.still_dead) == (9, 1, 1, 0)
    assert report.recorded == 7
    assert report.kinds == {
        "uplink": {"processed": 1},
        "join": {"recorded": 1},
        "status": {"recorded": 1, "duplicate": 1},
        "downlink_ack": {"recorded": 1},
        "downlink_sent": {"recorded": 1},
        "log": {"recorded": 1},
        "location": {"recorded": 1},
        "integration": {"recorded": 1},
    }
    events = bridge.network_events(viewer=b.RANGER)
    assert sorted(event["kind"] for event in events) == sorted(
        ["join", "status", "downlink_ack", "downlink_sent", "log", "location", "integration"])
    assert not bridge.dead_letters()


def test_operator_replays_a_mosquitto_capture_of_both_networks_and_several_applications(bridge, tmp_path):
    # `mosquitto_sub -v -F '%J' -t 'v3/#' -t 'application/#'`: each line names its topic; the payload
    # is the message (%J) or, with %j, the message as a string.
    tts_up = nf.TTS["uplink_message"].body
    other_app_join = nf.TTS["join_accept"].copy()
    other_app_join["end_device_ids"] = {**nf.TTS_END_DEVICE_IDS, "device_id": "dev2", "dev_eui": "0004A30B001C0531",
                                        "application_ids": {"application_id": "app2"}}
    lines = [
        {"tst": "2026-12-03T21:00:00.000000+0000", "topic": "v3/app1@ttn/devices/dev1/up", "qos": 1, "retain": 0,
         "payloadlen": len(json.dumps(tts_up)), "payload": tts_up},
        {"tst": "2026-12-03T21:00:01.000000+0000", "topic": "v3/app2@ttn/devices/dev2/join", "qos": 1, "retain": 0,
         "payloadlen": 0, "payload": json.dumps(other_app_join)},
        {"tst": "2026-12-03T21:00:02.000000+0000", "topic": "application/17c82e96/device/0101010101010101/event/ack",
         "qos": 1, "retain": 0, "payloadlen": 0, "payload": nf.CHIRPSTACK["ack"].body},
        {"tst": "2026-12-03T21:00:03.000000+0000", "topic": "v3/app1@ttn/devices/dev1/down/push", "qos": 1, "retain": 0,
         "payloadlen": 2, "payload": {"downlinks": []}},  # the bridge's own downlink: not ingested
    ]

    report = replay_file(bridge, capture(tmp_path, lines), "tts")

    assert report.kinds == {"uplink": {"processed": 1}, "join": {"recorded": 1}, "downlink_ack": {"recorded": 1}}
    assert report.skipped == 1
    assert {device.dev_eui for device in bridge.devices()} == {"0004A30B001C0530", "0004A30B001C0531",
                                                               "0101010101010101"}


def test_operator_reads_what_a_replay_did_to_each_kind_on_the_command_line(sqlite_url, tmp_path, capsys):
    lines = [nf.CHIRPSTACK["up"].body, nf.CHIRPSTACK["join"].body, "{broken"]
    path = capture(tmp_path, lines)

    code = main(["bridge", "replay", path, "--source", "chirpstack", "--database-url", sqlite_url])
    printed = json.loads(capsys.readouterr().out)

    assert code == 1  # a line stayed dead
    assert (printed["processed"], printed["recorded"], printed["still_dead"]) == (1, 1, 1)
    assert printed["kinds"] == {"uplink": {"processed": 1}, "join": {"recorded": 1}, "unreadable": {"dead_letter": 1}}


def hold_write_lock(path: str, seconds: float, held: threading.Event,
                    release: threading.Event | None = None) -> threading.Thread:
    """Another program (a backup, a second bridge) holding the SQLite store's write lock for a while:
    `seconds`, or until `release` is set (then `seconds` is only its deadline)."""

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        held.set()
        if release is None:
            time.sleep(seconds)
        else:
            release.wait(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def test_operator_replays_a_capture_while_another_program_holds_the_store_a_moment(tmp_path):
    path = tmp_path / "store.db"
    lines = [b.tts_uplink(b.status(time_s=b.T0_S + 600 * n), f_cnt=n + 1).decode() for n in range(5)]
    with b.fresh_bridge(f"sqlite:///{path}", sqlite_busy_timeout_ms=100, outbox_worker=False) as bridge:
        held = threading.Event()
        holder = hold_write_lock(str(path), 1.5, held)
        held.wait(5)
        report = replay_file(bridge, capture(tmp_path, lines), "tts")
        holder.join()
        stored = bridge.counts()["uplinks_stored"]

    assert (report.attempted, report.processed, stored) == (5, 5, 5)


def test_operator_told_how_far_a_replay_got_when_the_store_stays_locked_and_runs_it_again(tmp_path, capsys,
                                                                                            monkeypatch):
    from lora_bridge.adapters import replay
    from lora_bridge.errors import StoreUnavailable

    monkeypatch.setattr(replay, "RETRY_STORE_AFTER_S", (0.05, 0.05))
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    lines = [json.dumps(nf.CHIRPSTACK[name].body) for name in ("up", "join", "status")]
    file = capture(tmp_path, lines)
    held, release = threading.Event(), threading.Event()
    with b.fresh_bridge(url, sqlite_busy_timeout_ms=50, outbox_worker=False) as bridge:
        # held until both replays were refused, however long a loaded machine takes over their tries
        holder = hold_write_lock(str(path), 120.0, held, release)
        assert held.wait(60)
        try:
            with pytest.raises(StoreUnavailable, match="0 lines were taken before it: run the replay again"):
                replay_file(bridge, file, "chirpstack")
            monkeypatch.setenv("TEMBO_SQLITE_BUSY_TIMEOUT_MS", "50")
            locked = main(["bridge", "replay", file, "--source", "chirpstack", "--database-url", url])
            told = capsys.readouterr().err
        finally:
            release.set()
            holder.join()
    again = main(["bridge", "replay", file, "--source", "chirpstack", "--database-url", url])
    printed = json.loads(capsys.readouterr().out)

    assert locked == 2 and "store unavailable" in told and "again" in told
    assert again == 0 and printed["kinds"] == {"uplink": {"processed": 1}, "join": {"recorded": 1},
                                                "status": {"recorded": 1}}


def test_a_capture_line_whose_payload_is_no_text_is_a_dead_letter_and_the_replay_goes_on(bridge, tmp_path):
    # mosquitto_sub '%j' writes a payload that is no UTF-8 as a string with escapes of no character.
    broken = '{"tst": "2026-12-03T21:00:00Z", "topic": "v3/app1@ttn/devices/dev1/up", "payload": "\\udc80\\ud800"}'
    lines = [broken, {"topic": "v3/app1@ttn/devices/dev1/join", "payload": nf.TTS["join_accept"].body}]

    report = replay_file(bridge, capture(tmp_path, lines), "tts")

    assert report.kinds == {"unreadable": {"dead_letter": 1}, "join": {"recorded": 1}}
