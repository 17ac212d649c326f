"""Rangers see every collar message the bridge stores exactly as the collar's codec reads it, and every malformed
payload dead-lettered with the codec's own words.

The bridge reads payloads with `lora_bridge.wire_reader`, built once from the codec table; these tests hold it to
`collar_firmware.codec.decode` over every row of that table, with payloads of each row's lengths (every list
count from none to one too many), cut short, overlong and random, in both TS004 package versions.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collar_firmware import codec
from lora_bridge import wire_reader
from lora_bridge.decode import decode_payload

# every row the bridge may be asked to read (uplinks, and the downlinks of a port that carries only downlinks)
_READ_DIRECTIONS = (None, "up")
_PORTS = sorted({m[codec.ROW_PORT] for m in codec.MESSAGES} | {99})  # 99: a port of no message


def _item_and_fixed(row: tuple[Any, ...]) -> tuple[int, int, int]:
    """(bytes of the row's head with its tag, bytes of one list item or 0, the list's most items)."""
    fixed = (row[codec.ROW_TAG] is not None) + sum(
        codec.field_size(f) for f in row[codec.ROW_FIELDS] if f[1] != "list")
    for f in row[codec.ROW_FIELDS]:
        if f[1] == "list":
            return fixed, codec.field_size(f), f[2][0]
    return fixed, 0, 0


@st.composite
def _payloads(draw: st.DrawFn) -> tuple[int, bytes, str | None, int]:
    """(port, payload, direction, version): a row's well-formed payload, or one cut short, overlong or random."""
    direction = draw(st.sampled_from(_READ_DIRECTIONS))
    version = draw(st.sampled_from((1, 1, 2, 2, 0, 3)))  # 0 and 3: versions of no row
    shape = draw(st.sampled_from(("row", "row", "short", "long", "random")))
    if shape == "random":
        port = draw(st.sampled_from(_PORTS + [codec.SETTINGS_PORT]))
        return port, draw(st.binary(max_size=60)), direction, version
    row = draw(st.sampled_from([m for m in codec.MESSAGES if m[codec.ROW_PORT] != codec.SETTINGS_PORT]))
    fixed, item, most = _item_and_fixed(row)
    size = fixed + item * draw(st.integers(0, most + 1))
    if shape == "short":
        size = draw(st.integers(0, max(size - 1, 0)))
    elif shape == "long":
        size += draw(st.integers(1, 3))
    body = draw(st.binary(min_size=size, max_size=size))
    tag = row[codec.ROW_TAG]
    payload = bytes([tag]) + body[1:] if tag is not None and body else body
    return row[codec.ROW_PORT], payload, direction, version


def _outcome(read: Any, port: int, payload: bytes, direction: str | None, version: int) -> tuple[Any, ...]:
    """What reading gives, exactly: its dict's items and their types, or its error's type, words and reason."""
    try:
        out = read(port, payload, direction, version)
    except Exception as error:  # the codec's CodecError, or whatever else it raises
        return "error", type(error).__name__, str(error), getattr(error, "reason", None)
    return "read", repr(list(out.items())), [type(v).__name__ for v in out.values()]


@settings(max_examples=500, deadline=None)
@given(_payloads())
def test_the_bridge_reads_every_payload_as_the_collar_codec_does(case: tuple[int, bytes, str | None, int]) -> None:
    port, payload, direction, version = case
    assert _outcome(wire_reader.read, *case) == _outcome(codec.decode, port, payload, direction, version)


_UPLINK_ROWS = [m for m in codec.MESSAGES if m[codec.ROW_DIRECTION] != "down" and m[codec.ROW_PORT] != codec.SETTINGS_PORT]


@pytest.mark.parametrize("row", _UPLINK_ROWS, ids=lambda m: f"{m[0]}-{m[1]}-{m[2]}-v{m[5] if len(m) > 5 else 1}")
def test_every_uplink_row_is_read_by_the_bridge_itself(row: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """A well-formed payload of every uplink row (each list count) is read without asking the codec, and reads as
    the codec reads it."""
    version = row[5] if len(row) > 5 else 1
    fixed, item, most = _item_and_fixed(row)
    tag = row[codec.ROW_TAG]
    expected = {}
    payloads = []
    for n in range(most + 1 if item else 1):
        size = fixed + item * n
        payload = bytes([tag] if tag is not None else []) + bytes((7 * k + 200) & 0xFF for k in range(size))[
            tag is not None:]
        payloads.append(payload)
        expected[payload] = codec.decode(row[codec.ROW_PORT], payload, "up", version)
    monkeypatch.setattr(codec, "decode", None)  # the bridge's reader must not hand these back
    for payload in payloads:
        read = wire_reader.read(row[codec.ROW_PORT], payload, "up", version)
        assert repr(list(read.items())) == repr(list(expected[payload].items()))
        assert read["message"] == row[codec.ROW_NAME]


# the same codec, not recognised as the collar's: decode_payload asks it field by field, as it always did
_AS_BEFORE = types.SimpleNamespace(**{k: v for k, v in vars(codec).items() if not k.startswith("__")})


@settings(max_examples=300, deadline=None)
@given(_payloads())
def test_a_dead_letter_keeps_the_reason_it_always_had(case: tuple[int, bytes, str | None, int]) -> None:
    """decode_payload through the reader gives what it gave through the codec's decode: the same messages (several
    answers of a FUOTA uplink included) or the same dead letter's reason."""
    port, payload, _direction, version = case
    now = decode_payload(codec, port, payload, version)
    before = decode_payload(_AS_BEFORE, port, payload, version)
    assert now.reason == before.reason
    assert repr([list(a.items()) for a in now.answers]) == repr([list(a.items()) for a in before.answers])
