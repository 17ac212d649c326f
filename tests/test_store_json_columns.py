"""A collar's flags, a raw row's gateways and a summary's shares are kept in SQLite's JSON columns as the
very text `json.dumps` writes, and read back as the very values (and errors) `json.loads` gives, whatever
their shape (store.json_columns); and a collar's flags stored and read through the store come back whole."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_bridge.store.database import open_database
from lora_bridge.store.json_columns import json_text, json_value
from lora_bridge.store.tables import Device

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


def same(a: object, b: object) -> bool:
    """a and b equal, a NaN equal to a NaN (json reads "NaN" as one)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_a_value_is_kept_as_the_text_json_dumps_writes_and_read_back_as_json_loads_reads_it(value: object) -> None:
    text = json_text(value)
    assert text == json.dumps(value)
    assert same(json_value(text), json.loads(text))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_reads_as_json_loads_reads_it_or_fails_as_it_fails(text: str) -> None:
    try:
        expected = json.loads(text)
    except json.JSONDecodeError as error:
        with pytest.raises(json.JSONDecodeError) as raised:
            json_value(text)
        assert (raised.value.msg, raised.value.pos) == (error.msg, error.pos)
        return
    assert same(json_value(text), expected)


@pytest.mark.parametrize("text", [' {"a": 1}', '{"a": 1} ', '\n[1, 2]\n', '[1] [2]', '', '  ', 'nul'])
def test_whitespace_around_a_document_or_extra_text_reads_as_json_loads_reads_it(text: str) -> None:
    try:
        expected = json.loads(text)
    except json.JSONDecodeError as error:
        with pytest.raises(json.JSONDecodeError, match=error.msg):
            json_value(text)
        return
    assert json_value(text) == expected


def test_a_value_that_refers_to_itself_is_refused_as_json_dumps_refuses_it() -> None:
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(ValueError, match="Circular reference"):
        json_text(looped)
    with pytest.raises(TypeError, match="not JSON serializable"):
        json_text({"when": object()})


def test_a_collars_flags_and_settings_come_back_from_the_store_as_they_were_stored(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'tembo.db'}")
    flags = {"gnss_fault": True, "note": "café ☕", "levels": [1, 2.5, None], "nested": {"a": {"b": []}}}
    with db.write() as session:
        session.add(Device(device_id="collar-7", flags=flags, reported_settings={"interval_s": 900}))
    with db.read() as session:
        device = session.get(Device, "collar-7")
        assert device is not None
        assert (device.flags, device.reported_settings) == (flags, {"interval_s": 900})
    db.dispose()
