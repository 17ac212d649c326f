"""Nothing a network server delivers is lost: dead letters keep it, a replay after a fix uses it."""

from __future__ import annotations

import bridge_builders as b
import pytest
from sqlalchemy import text

from collar_firmware import codec as real_codec
from lora_bridge.adapters.replay import replay_file


class CodecWithoutActivity:
    """An older codec that did not know the activity message yet."""

    CodecError = real_codec.CodecError
    BEHAVIOURS = real_codec.BEHAVIOURS
    ALERT_TYPES = real_codec.ALERT_TYPES
    MESSAGES = real_codec.MESSAGES
    encode = staticmethod(real_codec.encode)

    @staticmethod
    def decode(port, payload):
        if port == 2:
            raise real_codec.CodecError("unknown port 2")
        return real_codec.decode(port, payload)


class CrashingCodec(CodecWithoutActivity):
    """A codec with a bug: it crashes instead of raising CodecError."""

    @staticmethod
    def decode(port, payload):
        raise IndexError("index out of range")


@pytest.fixture
def bridge(store_url):
    with b.fresh_bridge(store_url) as bridge:
        yield bridge


def test_activity_dead_lettered_by_old_codec_is_replayed_after_codec_fix(bridge):
    bridge.codec = CodecWithoutActivity()
    first = bridge.ingest_tts_uplink(b.tts_uplink(b.activity(), f_cnt=1))
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=2))
    assert first.status == "dead_letter" and "unknown port 2" in first.reason
    assert bridge.counts()["activity_summaries"] == 0

    bridge.codec = real_codec
    report = bridge.replay_dead_letters()

    assert (report.attempted, report.processed, report.still_dead) == (1, 1, 0)
    (animal,) = bridge.animals(viewer=b.RANGER)
    (summary,) = bridge.activity(animal.animal_id, viewer=b.RANGER)
    assert summary.shares_pct["rest"] == 50.0
    assert bridge.dead_letters() == []
    (replayed,) = bridge.dead_letters(include_replayed=True)
    assert replayed.replayed_at is not None and replayed.replay_result == "processed"
    assert bridge.counts()["dead_letter"] == 0


def test_replay_without_a_fix_keeps_the_dead_letter_with_one_row(bridge):
    bridge.codec = CodecWithoutActivity()
    bridge.ingest_tts_uplink(b.tts_uplink(b.activity(), f_cnt=1))

    report = bridge.replay_dead_letters()

    assert (report.attempted, report.still_dead) == (1, 1)
    (letter,) = bridge.dead_letters()
    assert letter.replayed_at is None and letter.replay_result.startswith("still dead")


def test_codec_crash_does_not_lose_the_uplink(bridge):
    bridge.codec = CrashingCodec()

    result = bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
    bridge.codec = real_codec
    bridge.replay_dead_letters()

    assert result.status == "dead_letter" and "codec crashed" in result.reason
    assert bridge.counts()["positions"] == 1


def test_copy_of_a_dead_lettered_uplink_is_still_one_uplink_after_replay(bridge):
    bridge.codec = CodecWithoutActivity()
    bridge.ingest_tts_uplink(b.tts_uplink(b.activity(), f_cnt=1, gateways=("gw-a",)))
    copy = bridge.ingest_tts_uplink(b.tts_uplink(b.activity(), f_cnt=1, gateways=("gw-b",)))

    bridge.codec = real_codec
    bridge.replay_dead_letters()

    assert copy.status == "duplicate"
    counts = bridge.counts()
    assert (counts["uplinks_stored"], counts["activity_summaries"], counts["dead_letter"]) == (1, 1, 0)


def test_replayed_file_of_uplinks_fills_the_store(bridge, tmp_path):
    lines = [
        b.tts_uplink(b.status(), f_cnt=1),
        b.tts_uplink(b.status(), f_cnt=1, gateways=("gw-b",)),
        b"",
        b"# captured at the north gateway",
        b.tts_uplink(b.alert("geofence_farmland", seq=2), f_cnt=2),
        b"{broken",
    ]
    capture = tmp_path / "uplinks.jsonl"
    capture.write_bytes(b"\n".join(lines) + b"\n")

    report = replay_file(bridge, capture)

    assert (report.attempted, report.processed, report.duplicates, report.still_dead) == (4, 2, 1, 1)
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.priority) == ("geofence_farmland", 200)



class CodecWithoutAlerts(CodecWithoutActivity):
    """An older codec that did not know the collar's alert messages yet."""

    @staticmethod
    def decode(port, payload):
        if 10 <= port <= 19:
            raise real_codec.CodecError(f"unknown port {port}")
        return real_codec.decode(port, payload)


def test_two_operators_replaying_the_same_dead_letters_at_once_apply_each_uplink_once(bridge, monkeypatch):
    import lora_bridge.service as service

    bridge.codec = CodecWithoutAlerts()
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality"), f_cnt=2))
    bridge.codec = real_codec
    applied = service.process_raw
    other_ran = []

    def after_the_other_operators_replay(*args, **kwargs):
        # Both read the letter waiting; the other operator's replay (`tembo bridge replay`, the API's)
        # applies it first, then this one gets to it.
        if not other_ran:
            other_ran.append("replaying")
            with b.fresh_bridge(bridge.settings.database_url, outbox_worker=False) as other:
                other_ran[0] = other.replay_dead_letters()
        return applied(*args, **kwargs)

    monkeypatch.setattr(service, "process_raw", after_the_other_operators_replay)
    bridge.replay_dead_letters()

    (other,) = other_ran
    (letter,) = bridge.dead_letters(include_replayed=True)
    assert (other.processed, letter.replay_result) == (1, "processed")
    with bridge.db.read() as session:
        history = session.execute(text("SELECT action FROM alert_events ORDER BY id")).scalars().all()
    # Applied twice, the collar had "repeated" an alert it sent once, and its ack was queued again.
    assert history == ["raised", "ack_queued"]
    assert (bridge.counts()["alerts"], bridge.counts()["downlinks_queued"]) == (1, 1)
