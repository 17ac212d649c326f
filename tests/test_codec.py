"""The one wire format: what the collar sends is what the bridge reads, within LoRaWAN's limits."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collar_firmware import codec

VECTORS = json.loads((Path(__file__).parent / "vectors" / "codec_vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["description"])
def test_bridge_decodes_every_golden_vector(vector):
    assert codec.decode(vector["port"], bytes.fromhex(vector["hex"])) == vector["expected"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["description"])
def test_collar_encodes_every_golden_vector_byte_for_byte(vector):
    assert codec.encode(vector["message"], vector["expected"]).hex() == vector["hex"]


@pytest.mark.parametrize("case", VECTORS["errors"], ids=lambda c: c["description"])
def test_malformed_payloads_are_refused_with_a_reason(case):
    with pytest.raises(codec.CodecError) as err:
        codec.decode(case["port"], bytes.fromhex(case["hex"]))
    assert str(err.value)


@pytest.mark.parametrize("message", [m for m in codec.MESSAGES if m[3] != "down"], ids=lambda m: m[0])
def test_every_uplink_fits_eu868_dr0(message):
    assert codec.max_size(message[0]) <= codec.MAX_UPLINK_BYTES or message[0] == "settings"


def test_settings_reports_are_split_to_fit_but_every_single_record_fits():
    assert all(2 + codec.field_size(("v", s[2], None)) <= codec.MAX_UPLINK_BYTES for s in codec.SETTINGS)


def test_alerts_fit_us915_dr0():
    assert codec.max_size("alert") <= codec.MAX_ALERT_BYTES


def test_every_message_name_and_port_tag_is_unique_per_direction():
    # a name repeats only as versions of one message: same port and direction, another version byte, or another
    # TS004 package version (a sixth element: the layouts of v2.0.0, which the bytes alone cannot tell apart)
    rows_by_name = {}
    for m in codec.MESSAGES:
        rows_by_name.setdefault((m[0], m[5] if len(m) > 5 else 1), []).append(m)
    for name, rows in rows_by_name.items():
        assert len({(m[1], m[3]) for m in rows}) == 1, name
        assert len({m[2] for m in rows}) == len(rows) and None not in {m[2] for m in rows} or len(rows) == 1, name
    for direction in ("up", "down"):
        keys = [(m[1], m[2], m[5] if len(m) > 5 else 1) for m in codec.MESSAGES if m[3] in (direction, "both")]
        assert len(set(keys)) == len(keys), direction
    versioned = [m for m in codec.MESSAGES if len(m) > 5]
    assert {(m[0], m[5]) for m in versioned} == {("frag_session_setup", 2), ("frag_session_status_ans", 2)}
    assert all(codec.message(m[0]) is not m and codec.message(m[0], m[5]) is m for m in versioned)


def test_out_of_range_values_are_refused_not_wrapped():
    with pytest.raises(codec.CodecError, match="battery_mv"):
        codec.encode("status", {**VECTORS["vectors"][0]["expected"], "battery_mv": 70000})
    with pytest.raises(codec.CodecError, match="gnss_interval_s"):
        codec.encode("settings", {"gnss_interval_s": 5})
    with pytest.raises(codec.CodecError, match="not a coordinate"):
        codec.encode("alert", {"alert_type": "mortality", "seq": 0, "time_s": 0, "lat": 91, "lon": 0})


def test_unknown_enum_index_decodes_to_a_named_unknown_rather_than_failing():
    alert = bytearray(codec.encode("alert", {"alert_type": "mortality", "seq": 1, "time_s": 5, "lat": 0, "lon": 0}))
    alert[0] = (31 << 3) | 1
    assert codec.decode(10, bytes(alert))["alert_type"] == "unknown_31"


lat = st.floats(min_value=-90, max_value=90, allow_nan=False)
lon = st.floats(min_value=-180, max_value=180, allow_nan=False)
u8, u16, u32 = (st.integers(0, 2**k - 1) for k in (8, 16, 32))


def _strategy(field):
    name, kind, arg = field
    if kind == "bits":
        return st.fixed_dictionaries({b[0]: (st.sampled_from(b[2]) if b[2] else st.integers(0, 2 ** b[1] - 1))
                                      for b in arg})
    if kind == "list":
        sub = arg[1]
        item = _strategy(sub[0]).map(lambda d: d[sub[0][0]]) if len(sub) == 1 else \
            st.fixed_dictionaries({}).flatmap(lambda _: st.tuples(*[_strategy(f) for f in sub]).map(
                lambda parts: {k: v for p in parts for k, v in p.items()}))
        return st.lists(item, max_size=arg[0]).map(lambda items: {name: items})
    base = {"u8": u8, "u16": u16, "u24": st.integers(0, 2**24 - 1), "u32": u32,
            "i16": st.integers(-2**15, 2**15 - 1), "i32": st.integers(-2**31, 2**31 - 1), "lat": lat, "lon": lon,
            "enum": st.sampled_from(arg) if kind == "enum" else None,
            "ver": st.tuples(u8, u8, u8).map(lambda t: ".".join(map(str, t)))}[kind]
    if arg and kind not in ("enum",):
        base = st.integers(0, 255 if kind == "u8" else 2**15 - 1).map(lambda raw: raw / arg)
    return base.map(lambda v: {name: v})


def _message_values(message):
    parts = [_strategy(f) for f in message[4]]
    return st.tuples(*parts).map(lambda ps: {k: v for p in ps for k, v in p.items()})


@pytest.mark.parametrize("message", [m for m in codec.MESSAGES if m[1] != codec.SETTINGS_PORT], ids=lambda m: m[0])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_round_trip_of_every_message(message, data):
    version = message[5] if len(message) > 5 else 1  # a TS004 package version's own row
    values = data.draw(_message_values(message))
    payload = codec.encode(message[0], values, version)
    assert len(payload) <= (codec.max_size(message[0]) if version == 1 else codec.payload_size(message[0], 1, version))
    decoded = codec.decode(message[1], payload, message[3] if message[3] != "both" else None, version)
    assert decoded["message"] == message[0]
    assert codec.encode(message[0], decoded, version) == payload
    for key, value in values.items():
        if isinstance(value, float) and key in ("lat", "lon"):
            assert abs(decoded[key] - value) <= 180 / 2**23
        elif isinstance(value, dict):
            assert all(decoded[k] == v for k, v in value.items())


@settings(max_examples=200, deadline=None)
@given(values=st.fixed_dictionaries({}, optional={s[1]: st.integers(s[3], s[4]) for s in codec.SETTINGS}))
def test_settings_round_trip(values):
    decoded = codec.decode(3, codec.encode("settings", values))
    assert {k: v for k, v in decoded.items() if k not in ("message", "port")} == values


@settings(max_examples=500, deadline=None)
@given(port=st.sampled_from(sorted({m[1] for m in codec.MESSAGES}) + [0, 99, 255]), payload=st.binary(max_size=60))
def test_arbitrary_bytes_decode_or_fail_cleanly(port, payload):
    try:
        out = codec.decode(port, payload)
    except codec.CodecError:
        return
    assert out["port"] == port


def test_a_collar_that_knows_no_update_fields_still_sends_a_status_the_bridge_reads():
    old = {k: v for k, v in VECTORS["vectors"][0]["expected"].items() if k not in ("message", "port")}
    assert codec.encode("status", old)[0] == 1 and len(codec.encode("status", old)) == 29
    new = {**old, "update_kind": "firmware", "update_outcome": "rolled_back", "update_version": "1.1.0",
           "update_reason": "self_test_failed"}
    decoded = codec.decode(1, codec.encode("status", new))
    assert decoded["message"] == "status" and decoded["battery_mv"] == old["battery_mv"]
    assert (decoded["update_kind"], decoded["update_outcome"], decoded["update_version"], decoded["update_reason"]) \
        == ("firmware", "rolled_back", "1.1.0", "self_test_failed")
    assert codec.max_size("status") == 34 <= codec.MAX_UPLINK_BYTES

