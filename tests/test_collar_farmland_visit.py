"""One farmland visit gives the collar one alert: a bad fix out of the field does not end the visit.

Found on the twin's crop raids: an elephant deep in a field, one GNSS fix several hundred metres off
(multipath; the twin's error model draws them up to 600 m) lands outside the field past the collar's
margin, the collar's farmland state flipped out at once, and the next good fix flipped it back in and
raised the alert a second time, for the same visit. Leaving a field now needs FENCE_CONFIRM_FIXES fixes in
a row past the margin, as leaving the park does; entering a field is still not delayed.

The track is fed straight to the collar's rule (risk.RiskEngine.on_fix) so the answer can be checked by
hand, under CPython and under the real MicroPython interpreter alike."""

from __future__ import annotations

import pytest
from model_helpers import micropython_session

# A park of about 9 km x 9 km on the equator with a 2.2 km field in its middle; a track of
# (seconds, lat, lon) fixes. run() returns, per fix, (t, in farmland, farmland alerts raised so far).
TRACK_SCRIPT = """
from collar_firmware import config, geo, risk

def _fence(fence_id, kind, south, west, north, east):
    f = geo.Fence(fence_id, kind, 4)
    corners = ((south, west), (south, east), (north, east), (north, west))
    for i in range(4):
        f.set_point(i, geo.lat_raw(corners[i][0]), geo.lon_raw(corners[i][1]))
    f.close()
    return f

FENCES = [_fence(0, 0, -0.04, 37.46, 0.04, 37.54), _fence(1, 1, -0.01, 37.49, 0.01, 37.51)]

def run(track):
    engine = risk.RiskEngine(dict(config.DEFAULTS))
    raised = 0
    out = []
    for t_s, lat, lon in track:
        engine.on_fix(t_s, geo.lat_raw(lat), geo.lon_raw(lon), FENCES, geo.distance_m)
        while engine.pending:
            if engine.pending.pop(0) == risk.GEOFENCE_FARMLAND:
                raised += 1
        out.append((t_s, engine.in_farmland(), raised))
    return out
"""

FIELD = (0.0, 37.50)  # the field's middle: 1.1 km from each of its edges
BESIDE = (0.02, 37.50)  # 1.1 km north of the field, in the park
BAD_FIX = (0.0, 37.515)  # 550 m east of the field's east edge (a multipath fix), past the 50 m margin

# Into the field, one bad fix out, back in, two minutes apart (the collar tracks in a field).
ONE_BAD_FIX = [(0, *BESIDE), (120, *FIELD), (240, *FIELD), (360, *BAD_FIX), (480, *FIELD), (600, *FIELD)]
# Out of the field for real (two fixes beside it), in again half an hour later: a second visit.
LEFT_AND_CAME_BACK = [*ONE_BAD_FIX, (720, *BESIDE), (840, *BESIDE), (2640, *FIELD), (2760, *FIELD)]


def _run(track: list[tuple[int, float, float]]) -> list[tuple[int, bool, int]]:
    namespace: dict = {}
    exec(TRACK_SCRIPT, namespace)  # noqa: S102 - the same text runs under MicroPython below
    return namespace["run"](track)


def test_one_bad_fix_out_of_the_field_does_not_raise_the_farmland_alert_twice():
    states = _run(ONE_BAD_FIX)
    assert states == [(0, False, 0), (120, True, 1), (240, True, 1), (360, True, 1), (480, True, 1), (600, True, 1)]


def test_an_elephant_that_leaves_the_field_and_comes_back_later_raises_a_second_visit():
    states = _run(LEFT_AND_CAME_BACK)
    assert [(t, inside, n) for t, inside, n in states if t >= 720] == [
        (720, True, 1), (840, False, 1), (2640, True, 2), (2760, True, 2)]


@pytest.mark.micropython
def test_the_farmland_visit_rule_gives_the_same_answers_under_micropython(tmp_path):
    session = micropython_session(tmp_path)
    session.run(TRACK_SCRIPT)
    for track in (ONE_BAD_FIX, LEFT_AND_CAME_BACK):
        got = session.run(f"print(run({track!r}))").stdout.strip()
        assert got == repr(_run(track))
