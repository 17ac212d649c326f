"""Properties of ingest that hold for any body a network server (or an attacker) might post."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import bridge_builders as b
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_bridge.service import open_bridge

pytestmark = pytest.mark.slow

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def tts_shaped(port: int, f_cnt: int, payload: bytes) -> bytes:
    """A TTS uplink body with any port, frame counter and payload bytes."""
    document = json.loads(b.tts_uplink((1, b""), f_cnt=1))
    document["uplink_message"].update(
        {"f_port": port, "f_cnt": f_cnt, "frm_payload": base64.b64encode(payload).decode()}
    )
    return json.dumps(document).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.builds(tts_shaped, st.integers(-5, 300), st.integers(-3, 2**32), st.binary(max_size=60)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bodies, min_size=1, max_size=6))
def test_every_posted_body_is_kept_and_none_crashes_the_bridge(posted):
    with tempfile.TemporaryDirectory() as folder:
        with open_bridge(f"sqlite:///{Path(folder) / 'tembo.db'}") as bridge:
            results = [bridge.ingest_tts_uplink(body) for body in posted]
            counts = bridge.counts()
            letters = bridge.dead_letters()

    assert {r.status for r in results} <= {"processed", "duplicate", "dead_letter", "recorded", "kept"}
    assert counts["uplinks_stored"] + counts["duplicates"] == len(posted)
    # One letter per distinct body the bridge could not use; the same body posted again is one of its tries.
    assert len(letters) == sum(r.status in ("dead_letter", "kept") and r.duplicate_of is None for r in results)
    kept = {letter.raw_uplink_id for letter in letters}
    assert sum(letter.tries for letter in letters) == sum(
        r.raw_uplink_id in kept or r.duplicate_of in kept for r in results)
    assert all(letter.reason for letter in letters)
