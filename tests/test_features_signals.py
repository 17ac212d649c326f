"""Simulated collar accelerometer signals look like an elephant's (simulator/signals.py)."""

from __future__ import annotations

import numpy as np
import pytest

from collar_firmware.codec import BEHAVIOURS
from simulator import signals


def dominant_hz(window: np.ndarray, rate_hz: float) -> float:
    """Return the strongest frequency of the dynamic signal summed over the axes (FFT)."""
    dynamic = window - window.mean(axis=0)
    spectrum = (np.abs(np.fft.rfft(dynamic, axis=0)) ** 2).sum(axis=1)
    freqs = np.fft.rfftfreq(len(window), 1 / rate_hz)
    return float(freqs[1:][np.argmax(spectrum[1:])])


def test_default_classes_are_the_wire_formats_behaviours():
    assert signals.BEHAVIOURS == BEHAVIOURS


@pytest.mark.parametrize("behaviour", signals.ALL_BEHAVIOURS)
def test_window_is_integer_milli_g_with_gravity_on_a_tilted_collar(behaviour):
    rng = np.random.default_rng(1)
    window = signals.accel_window(behaviour, 250, 25, rng)
    assert window.shape == (250, 3) and window.dtype == np.int16
    assert 900 < np.linalg.norm(window.mean(axis=0)) < 1100  # gravity, whatever the orientation
    assert np.abs(window).max() < signals.DEFAULT_RANGE_G * 1000


def test_same_seed_same_signal():
    a = signals.accel_window("forage", 250, 25, np.random.default_rng(7))
    b = signals.accel_window("forage", 250, 25, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_gait_of_walking_is_near_one_hertz_and_running_near_two():
    rng = np.random.default_rng(2)
    walk = [dominant_hz(signals.accel_window("walk", 500, 25, rng), 25) for _ in range(20)]
    run = [dominant_hz(signals.accel_window("run", 500, 25, rng), 25) for _ in range(20)]
    assert 0.75 <= np.median(walk) <= 1.3
    assert 1.6 <= np.median(run) <= 2.6


def test_movement_grows_from_rest_to_forage_walk_and_run():
    rng = np.random.default_rng(3)
    profile = signals.random_profile(rng)

    def vedba(behaviour):
        windows = [signals.accel_window(behaviour, 250, 25, rng, profile=profile) for _ in range(30)]
        return np.median([np.linalg.norm(w - w.mean(axis=0), axis=1).mean() for w in windows])

    still, rest, walk, run = vedba("still"), vedba("rest"), vedba("walk"), vedba("run")
    assert still < rest < walk < run
    assert still < 2 * profile.noise_mg


def test_dead_animal_keeps_the_worn_orientation_and_a_dropped_collar_changes_it():
    rng = np.random.default_rng(4)
    profile = signals.random_profile(rng)
    worn = signals.accel_window("walk", 250, 25, rng, profile=profile).mean(axis=0)
    still = signals.accel_window("still", 250, 25, rng, profile=profile)
    dropped = signals.accel_window("dropped", 250, 25, rng, profile=profile)
    angle = lambda a, b: np.degrees(np.arccos(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)))  # noqa: E731
    assert angle(worn, still.mean(axis=0)) < 15
    assert angle(worn, dropped.mean(axis=0)) > 45
    for window in (still, dropped):
        assert window.std(axis=0).max() < 2 * profile.noise_mg


def test_stream_is_continuous_and_a_dropped_collar_stays_where_it_fell():
    stream = signals.AccelStream(np.random.default_rng(5), rate_hz=25)
    first = stream.read("walk", 250)
    assert first.shape == (250, 3)
    assert stream.t_s == pytest.approx(10.0)
    stream.read("walk", 250, gap_s=50)
    assert stream.t_s == pytest.approx(70.0)
    fell = stream.read("dropped", 250).mean(axis=0)
    later = stream.read("still", 250).mean(axis=0)
    assert np.abs(fell - later).max() < 5


def test_unknown_behaviour_is_refused():
    with pytest.raises(ValueError, match="unknown behaviour"):
        signals.accel_window("fly", 250, 25, np.random.default_rng(0))


def test_labelled_windows_for_training():
    windows, labels, animals = signals.labelled_windows(5, 100, 25, np.random.default_rng(6), n_animals=3)
    assert windows.shape == (20, 100, 3)
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    assert set(animals.tolist()) <= {0, 1, 2}


def test_a_weak_animals_gallop_passes_fast_vedba_while_no_healthy_walk_does():
    """The collar's poaching rule counts a "walk" at fast_vedba_mg or more as flight (risk.py): through the
    collar's feature pass and shipped model, a runner as weak as the standard scenario's weakest chased
    animal (vigour 0.67) is in flight in most windows, and the strongest walker's (vigour 1.5) walk never
    reaches the threshold."""
    from array import array
    from dataclasses import replace

    from collar_firmware import classifier, config, features

    class NoFlash:
        def read(self, key):
            return None

        def write(self, key, value):
            pass

    model = classifier.load_model(NoFlash())
    n, rate = model.window_s * model.rate_hz, model.rate_hz
    vedba_at = features.FEATURE_NAMES.index("vedba_mean_mg")
    fast = config.DEFAULTS["fast_vedba_mg"]
    rng = np.random.default_rng(11)

    def windows(behaviour: str, vigour: float) -> list[tuple[str, int]]:
        out = []
        for _ in range(6):
            stream = signals.AccelStream(rng, rate, replace(signals.random_profile(rng), vigour=vigour))
            for _ in range(8):
                feat = features.new_feature_buffer()
                features.compute_features(array("h", stream.read(behaviour, n, 50.0).reshape(-1).tolist()), n, rate,
                                          feat)
                out.append((model.classes[model.predict(feat)], int(feat[vedba_at])))
        return out

    walks = windows("walk", 1.5)
    assert max(v for c, v in walks if c == "walk") < fast
    assert all(c != "run" for c, _ in walks)
    gallop = windows("run", 0.67)
    flight = [c == "run" or (c == "walk" and v >= fast) for c, v in gallop]
    assert sum(flight) / len(flight) >= 0.8
