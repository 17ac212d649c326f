"""Nothing a network server delivers is lost: dead letters keep it, a replay after a fix uses it."""

from __future__ import annotations

import bridge_builders as b
import pytest

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
