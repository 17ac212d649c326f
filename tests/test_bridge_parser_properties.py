"""Every parser of network-server input, tried with anything: it answers with a value or with
MalformedUplink (a clear reason), never with another exception; through the bridge, never a 5xx."""

from __future__ import annotations

import json
import math
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import network_fixtures as nf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from lora_bridge.adapters.webhook import create_app
from lora_bridge.decode import EARLIEST_COLLAR_TIME_S, collar_time, collar_time_ahead, dated, message_time
from lora_bridge.domain import network_events
from lora_bridge.errors import MalformedUplink
from lora_bridge.network_messages import NetworkEvent, canonical_event, read_network_message
from lora_bridge.service import open_bridge
from lora_bridge.uplink_formats import (
    MAX_LABEL,
    Uplink,
    _counter,
    _port,
    dig,
    escaped_text,
    eui_or_none,
    int_or_none,
    label,
    number_or_none,
    time_or_none,
    whole_number,
)

SECRET = "property-test-secret"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(10**308, 10**330)  # past any float
    | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=16), children, max_size=5),
    max_leaves=20,
)
TTS_EVENTS = st.sampled_from([None, "up", "join", "down/ack", "down/nack", "down/sent", "down/queued", "down/failed",
                              "down/invalidated", "location/solved", "service/data", "up/normalized", "uplink-message",
                              "x\ny", ""])
CHIRPSTACK_EVENTS = st.sampled_from(["up", "join", "ack", "txack", "status", "log", "location", "integration",
                                     "mesh", "UP", "", "a/b"])
CONTENT_TYPES = st.sampled_from(["application/json", "application/octet-stream", "application/x-protobuf",
                                 "text/plain", None, "application/json; charset=utf-8"])


def mutated(fixture: nf.Fixture, data: st.DataObject) -> bytes:
    """A documented body with one field replaced by anything (or removed)."""
    body = fixture.copy()
    target = body
    path = []
    while isinstance(target, dict) and target:
        key = data.draw(st.sampled_from(sorted(target)))
        path.append(key)
        if not isinstance(target[key], dict) or data.draw(st.booleans()):
            if data.draw(st.booleans()):
                del target[key]
            else:
                target[key] = data.draw(json_values)
            break
        target = target[key]
    return json.dumps(body, allow_nan=True).encode()


ALL_FIXTURES = [*nf.TTS.values(), *nf.CHIRPSTACK.values()]


def read(network, event, body, content_type, path_ids=None):
    try:
        result = read_network_message(network, event, body, content_type=content_type, path_ids=path_ids)
    except MalformedUplink as error:
        assert str(error)
        return None
    assert isinstance(result, Uplink | NetworkEvent)
    if isinstance(result, Uplink):
        assert 0 <= result.f_port <= 255 and 0 <= result.f_cnt < 2**32
        assert result.device_id and not any(ord(c) < 32 for c in result.device_id)
        assert all(g.rssi_dbm is None or math.isfinite(g.rssi_dbm) for g in result.gateways)
    else:
        for value in (result.lat, result.lon, result.accuracy_m, result.battery_pct):
            assert value is None or math.isfinite(value)
        json.dumps(result.detail, allow_nan=False)  # storable as JSON
        assert network_events.dedup_key(result, body).startswith("event:")  # told from its copies
    return result


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), TTS_EVENTS, CONTENT_TYPES)
def test_tts_reader_never_raises_anything_but_malformed_on_any_bytes(body, event, content_type):
    read("tts", event, body, content_type)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), CHIRPSTACK_EVENTS, CONTENT_TYPES)
def test_chirpstack_reader_never_raises_anything_but_malformed_on_any_bytes(body, event, content_type):
    read("chirpstack", event, body, content_type)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_documented_bodies_with_any_field_changed_read_or_fail_with_a_reason(data):
    fixture = data.draw(st.sampled_from(ALL_FIXTURES))
    body = mutated(fixture, data)
    path_ids = data.draw(st.none() | st.fixed_dictionaries({"application_id": st.text(max_size=10),
                                                            "device_id": st.text(max_size=10)}))
    read(fixture.network, fixture.event, body, "application/json", path_ids)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_as_a_tts_body_reads_or_fails_with_a_reason(value):
    read("tts", None, json.dumps(value, allow_nan=True).encode(), "application/json")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | json_values)
def test_field_readers_return_a_value_or_none(value):
    moment = time_or_none(value)
    assert moment is None or moment.utcoffset() is not None
    name = label(value)
    assert name is None or (0 < len(name) <= 64 and not any(ord(c) < 32 for c in name))
    number = number_or_none(value)
    assert number is None or math.isfinite(number)
    event = canonical_event("tts", value) if isinstance(value, str) else None
    assert event is None or isinstance(event, str)
    try:
        eui = eui_or_none(value, "dev_eui")
    except MalformedUplink:
        return
    assert eui is None or (len(eui) == 16 and eui == eui.upper())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["tts", "chirpstack"]), st.data()), min_size=1, max_size=5))
def test_the_webhook_never_answers_5xx_and_keeps_every_body(posts):
    with tempfile.TemporaryDirectory() as folder:
        with open_bridge(f"sqlite:///{Path(folder) / 'tembo.db'}", webhook_secret=SECRET,
                         outbox_worker=False) as bridge, TestClient(create_app(bridge)) as client:
            statuses = []
            for network, data in posts:
                fixtures = nf.TTS if network == "tts" else nf.CHIRPSTACK
                fixture = data.draw(st.sampled_from(sorted(fixtures)))
                body = data.draw(st.sampled_from([mutated(fixtures[fixture], data), data.draw(st.binary(max_size=80))]))
                url = "/uplinks/tts" if network == "tts" else f"/uplinks/chirpstack?event={fixture}"
                content_type = data.draw(CONTENT_TYPES) or "application/json"
                reply = client.post(url, content=body, headers={"X-Tembo-Secret": SECRET, "Content-Type": content_type})
                statuses.append(reply.status_code)
            counts = bridge.counts()

    assert all(status in (200, 202) for status in statuses)  # kept, whatever came: no webhook disabled
    assert counts["uplinks_stored"] + counts["duplicates"] == len(posts)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=140) | st.text(alphabet=st.characters(codec="ascii"), min_size=60, max_size=70)
       | st.integers() | st.booleans() | st.none() | st.floats())
def test_a_collar_name_from_the_network_is_the_label_its_escaped_text_made(value):
    """A ranger finds a collar under the same name whatever way the bridge reads it: a label, printable
    short text read without its escaping call, is what that escaping makes of it (spaces around it,
    control characters, past 64 characters, numbers and other JSON values alike)."""
    assert label(value) == escaped_text(value, MAX_LABEL)


def _dated_as_before(fields, fallback, heard_at):
    """message_time as it read the collar's time before it read it once: the time ahead first, then again."""
    if collar_time_ahead(fields, heard_at) is not None and heard_at is not None:
        return heard_at
    return collar_time(fields) or fallback


HEARD = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


@settings(max_examples=1500, deadline=None)
@given(st.integers(min_value=-300, max_value=300), st.booleans(),
       st.integers(min_value=100, max_value=140) | st.integers(min_value=-300, max_value=300) | st.none(),
       st.integers(min_value=EARLIEST_COLLAR_TIME_S - 3, max_value=EARLIEST_COLLAR_TIME_S + 3)
       | st.integers(min_value=-1, max_value=2**33) | st.booleans() | st.none() | st.floats(allow_nan=False)
       | st.text(max_size=3))
def test_a_message_is_dated_as_before_whatever_time_its_collar_gave(heard_s, heard_known, ahead_s, other):
    """A ranger sees each fix and alert at the same time as before the collar's time was read once per
    dating: a believed collar time, one ahead of the reception (dated at the reception; two minutes ahead
    still believed), none, a clock never set, a time that is no number."""
    heard_at = HEARD + timedelta(seconds=heard_s) if heard_known else None
    time_s = int(HEARD.timestamp()) + heard_s + ahead_s if ahead_s is not None else other
    fields = {"message": "status", "time_s": time_s}
    fallback = HEARD - timedelta(hours=1)
    assert message_time(fields, fallback, heard_at=heard_at) == _dated_as_before(fields, fallback, heard_at)


answers = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=12), answers, max_size=8))
def test_a_network_server_reads_the_same_answer_bytes_as_starlettes_json_gave(payload):
    """A webhook answer (status, collar, frame counter, reasons in any language) is the same bytes and
    headers as Starlette's JSONResponse wrote, though its encoder is made once and its headers set at
    once; a NaN is refused by both alike."""
    from starlette.responses import JSONResponse

    from lora_bridge.adapters.webhook import WebhookAnswer

    for status in (200, 202):  # the webhook's answers of a body kept (its 4xx/5xx are Starlette's own)
        ours, starlettes = WebhookAnswer(payload, status_code=status), JSONResponse(payload, status_code=status)
        assert (ours.status_code, ours.raw_headers, ours.body) == (status, starlettes.raw_headers, starlettes.body)
        assert ours.background is None and ours.headers == starlettes.headers
    refused = []
    for response in (WebhookAnswer, JSONResponse):
        try:
            response({**payload, "nan": math.nan})
        except ValueError as error:
            refused.append(str(error))
    assert len(refused) == 2 and refused[0] == refused[1]


@settings(max_examples=1000, deadline=None)
@given(st.integers(min_value=-300, max_value=300),
       st.integers(min_value=100, max_value=140) | st.integers(min_value=-300, max_value=300) | st.none(),
       st.integers(min_value=EARLIEST_COLLAR_TIME_S - 3, max_value=EARLIEST_COLLAR_TIME_S + 3)
       | st.integers(min_value=-1, max_value=2**33) | st.booleans() | st.none() | st.floats(allow_nan=False)
       | st.text(max_size=3))
def test_an_applied_message_is_dated_and_its_clock_judged_as_reading_the_collar_time_twice_did(heard_s, ahead_s,
                                                                                                other):
    """A ranger sees each message at the same time, and the same warning of a collar clock ahead, now that
    the bridge reads the collar's time once for both (`decode.dated`)."""
    heard_at = HEARD + timedelta(seconds=heard_s)
    time_s = int(HEARD.timestamp()) + heard_s + ahead_s if ahead_s is not None else other
    fields = {"message": "status", "time_s": time_s}
    assert dated(fields, heard_at) == (message_time(fields, heard_at, heard_at=heard_at),
                                       collar_time_ahead(fields, heard_at))


def _plain_number(value):
    """number_or_none as it read every value, before floats were taken at once."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?", value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _plain_int(value):
    """int_or_none as it read every value, before whole numbers were taken at once."""
    value = whole_number(value)
    return None if isinstance(value, bool) or not isinstance(value, int) else value


def _plain_dig(document, *keys):
    """dig as it walked a document, asking each level whether it is an object."""
    value = document
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


@settings(max_examples=600, deadline=None)
@given(st.text(max_size=12) | st.sampled_from(["7", "-35", "7.5", "1e5", "7.0", "1e999"]) | json_values,
       st.lists(st.sampled_from(["a", "b", "lora"]), max_size=3))
def test_a_network_field_reads_the_same_value_by_its_quick_way(value, keys):
    """An RSSI, an SNR, a port, a counter, a spreading factor read the same whatever the network sent
    (an int, a float, number text, infinity, a boolean, null, an object), and a walk into the JSON finds
    the same object, now that the usual values are taken without the questions every other value needs."""
    assert repr(number_or_none(value)) == repr(_plain_number(value))
    assert repr(int_or_none(value)) == repr(_plain_int(value))
    document = {"a": value, "b": {"a": value, "lora": {"a": value}}, "lora": [value]}
    assert _plain_dig(document, *keys) == dig(document, *keys)
    assert _plain_dig(value, *keys) == dig(value, *keys)
    for read, key, most in ((_port, "f_port", 255), (_counter, "f_cnt", 2**32 - 1)):
        assert _read_or_refusal(read, {key: value}, key) == _read_or_refusal(_plain_counter, {key: value}, key, most)


def _plain_counter(document, key, most):
    """_port and _counter as they judged every value, before whole numbers were taken at once."""
    value = whole_number(document.get(key, 0))
    if value is None:
        value = 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise MalformedUplink(f"{key!r} out of range")
    return value


def _read_or_refusal(read, *args):
    try:
        return repr(read(*args))
    except MalformedUplink:
        return "refused"
