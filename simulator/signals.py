"""Accelerometer signals of a collared elephant, per behaviour, in integer milli-g.

The collar's accelerometer (LIS2DW12 on the reference collar) measures specific force: gravity
(+1000 mg pointing up) plus the body's dynamic acceleration, in the sensor frame. This module
builds both in the animal's body frame (x forward, y left, z up), rotates them into the sensor
frame of a collar that sits tilted on the neck, adds sensor noise, rounds to milli-g and clips
to the configured range.

Behaviours (the classifier's default classes, `collar_firmware.codec.BEHAVIOURS`):
  rest    standing or lying: slow breathing sway, ear flaps, a few mg of movement
  forage  trunk and head swings at 0.1-0.7 Hz, the head pitching up and down, a slow step now and then
  walk    a gait near 1 Hz (per animal 0.8-1.2 Hz), heave, surge and sway of 40-120 mg
  run     a gait near 2 Hz (1.7-2.4 Hz), 200-450 mg, harmonics and footfall jolts
Look-alikes the collar's risk rules must tell apart:
  still   mortality: only sensor noise, orientation fixed as the collar was worn
  dropped the collar lies on the ground: only sensor noise, a changed orientation

Every random draw goes through the `numpy.random.Generator` the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BEHAVIOURS = ("rest", "forage", "walk", "run")
LOOKALIKES = ("still", "dropped")
ALL_BEHAVIOURS = BEHAVIOURS + LOOKALIKES

GRAVITY_MG = 1000.0
DEFAULT_RANGE_G = 4


def rotation_from_angles(roll_deg: float, pitch_deg: float, yaw_deg: float = 0.0) -> np.ndarray:
    """Return the 3x3 matrix that turns body-frame vectors into the sensor frame (angles in degrees)."""
    r, p, y = np.radians([roll_deg, pitch_deg, yaw_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    return (rz @ ry @ rx).T


def random_orientation(rng: np.random.Generator) -> np.ndarray:
    """Return how a collar sits on a neck: rolled and pitched by up to ~25 degrees, any yaw error small."""
    return rotation_from_angles(rng.normal(0, 12), rng.normal(0, 10), rng.normal(0, 6))


def ground_orientation(rng: np.random.Generator) -> np.ndarray:
    """Return the orientation of a collar lying on the ground: on its side or upside down."""
    roll = rng.choice([90.0, -90.0, 180.0]) + rng.normal(0, 15)
    return rotation_from_angles(roll, rng.normal(0, 25), rng.uniform(-180, 180))


@dataclass(frozen=True)
class AnimalProfile:
    """What makes one animal's signals its own: collar fit, gait rhythm, vigour and sensor noise."""

    orientation: np.ndarray = field(repr=False)
    gait_scale: float = 1.0  # multiplies gait frequencies (big bulls are slower)
    vigour: float = 1.0  # multiplies movement amplitudes
    noise_mg: float = 2.5  # sensor noise, 1-sigma per axis
    range_g: int = DEFAULT_RANGE_G


def random_profile(rng: np.random.Generator, range_g: int = DEFAULT_RANGE_G) -> AnimalProfile:
    """Draw one animal: collar orientation, gait rhythm (+-10 %), vigour (+-25 %), noise 1.5-4 mg."""
    return AnimalProfile(
        orientation=random_orientation(rng),
        gait_scale=float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.15)),
        vigour=float(np.clip(rng.normal(1.0, 0.18), 0.6, 1.5)),
        noise_mg=float(rng.uniform(1.5, 4.0)),
        range_g=range_g,
    )


@dataclass
class _Bout:
    """Parameters held for one stretch of a behaviour, so consecutive windows join smoothly."""

    behaviour: str
    freq_hz: np.ndarray  # per component
    amp_mg: np.ndarray  # (components, 3 body axes)
    phase: np.ndarray  # (components, 3)
    head_pitch_deg: float
    pitch_swing_deg: float
    pitch_swing_hz: float
    lying: bool
    jolt_rate_hz: float
    jolt_mg: float
    orientation: np.ndarray | None = None  # overrides the worn orientation (dropped collar)


def _draw_bout(behaviour: str, profile: AnimalProfile, rng: np.random.Generator) -> _Bout:
    """Draw the rhythm, amplitudes and posture of a new bout of behaviour."""
    g, v = profile.gait_scale, profile.vigour
    none = np.zeros(0)
    if behaviour == "walk":
        f = rng.uniform(0.85, 1.15) * g
        freq = np.array([f, 2 * f, 3 * f])
        amp = v * np.array(
            [
                [rng.uniform(15, 35), rng.uniform(40, 80), rng.uniform(50, 100)],  # stride: sway, heave
                [rng.uniform(30, 60), rng.uniform(10, 25), rng.uniform(20, 45)],  # step: surge
                [rng.uniform(5, 15), rng.uniform(3, 10), rng.uniform(5, 15)],
            ]
        )
        return _Bout(
            behaviour,
            freq,
            amp,
            rng.uniform(0, 2 * np.pi, (3, 3)),
            rng.normal(-10, 4),
            rng.uniform(2, 5),
            f,
            False,
            0.0,
            0.0,
        )
    if behaviour == "run":
        f = rng.uniform(1.8, 2.3) * g
        freq = np.array([f, 2 * f, 3 * f])
        amp = v * np.array(
            [
                [rng.uniform(80, 160), rng.uniform(120, 220), rng.uniform(220, 400)],
                [rng.uniform(100, 200), rng.uniform(30, 80), rng.uniform(60, 140)],
                [rng.uniform(20, 60), rng.uniform(10, 40), rng.uniform(20, 60)],
            ]
        )
        return _Bout(
            behaviour,
            freq,
            amp,
            rng.uniform(0, 2 * np.pi, (3, 3)),
            rng.normal(-4, 4),
            rng.uniform(3, 8),
            f,
            False,
            f,
            v * rng.uniform(100, 250),
        )
    if behaviour == "forage":
        k = 3
        freq = rng.uniform(0.12, 0.7, k)
        amp = v * rng.uniform(10, 70, (k, 3))
        return _Bout(
            behaviour,
            freq,
            amp,
            rng.uniform(0, 2 * np.pi, (k, 3)),
            rng.normal(-25, 6),
            rng.uniform(4, 14),
            rng.uniform(0.08, 0.3),
            False,
            rng.uniform(0.05, 0.3),
            v * rng.uniform(40, 120),
        )
    if behaviour == "rest":
        freq = np.array([rng.uniform(0.1, 0.25), rng.uniform(0.5, 1.4)])  # breathing, ear flaps
        amp = np.array([rng.uniform(2, 8, 3), rng.uniform(0, 18, 3) * (rng.random() < 0.5)])
        return _Bout(
            behaviour,
            freq,
            amp,
            rng.uniform(0, 2 * np.pi, (2, 3)),
            rng.normal(-5, 4),
            rng.uniform(0, 2),
            freq[0],
            bool(rng.random() < 0.15),
            0.0,
            0.0,
        )
    if behaviour in LOOKALIKES:
        orientation = ground_orientation(rng) if behaviour == "dropped" else None
        head = 0.0 if behaviour == "dropped" else rng.normal(-5, 4)
        return _Bout(
            behaviour, none, np.zeros((0, 3)), np.zeros((0, 3)), head, 0.0, 0.1, False, 0.0, 0.0, orientation
        )
    raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {ALL_BEHAVIOURS}")


def _body_signal(bout: _Bout, t_s: np.ndarray, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Return (n, 3) body-frame specific force in mg (gravity + dynamic) for times t_s."""
    n = t_s.size
    # Posture: head pitch with slow swings; gravity seen by the collar follows it.
    pitch = np.radians(
        bout.head_pitch_deg + bout.pitch_swing_deg * np.sin(2 * np.pi * bout.pitch_swing_hz * t_s)
    )
    roll = np.full(n, np.radians(85.0 if bout.lying else 0.0))
    gravity = GRAVITY_MG * np.stack(
        [np.sin(pitch), np.cos(pitch) * np.sin(roll), np.cos(pitch) * np.cos(roll)], axis=1
    )
    dynamic = np.zeros((n, 3))
    if bout.freq_hz.size:
        # Gait rhythm drifts a few percent within a window, as real strides do.
        drift = 1.0 + 0.03 * np.cumsum(rng.normal(0, 1, n)) / np.sqrt(max(n, 1))
        phase_t = 2 * np.pi * np.outer(np.cumsum(drift) / rate_hz, bout.freq_hz)  # (n, components)
        phase_t += 2 * np.pi * t_s[0] * bout.freq_hz
        for c in range(bout.freq_hz.size):
            dynamic += bout.amp_mg[c] * np.sin(phase_t[:, c, None] + bout.phase[c])
    if bout.jolt_rate_hz > 0:
        jolts = rng.random(n) < bout.jolt_rate_hz / rate_hz
        kernel = np.exp(-np.arange(int(max(rate_hz * 0.2, 2))) * 10.0 / rate_hz)
        for axis in range(3):
            spikes = jolts * rng.normal(0, bout.jolt_mg, n)
            dynamic[:, axis] += np.convolve(spikes, kernel)[:n]
    return gravity + dynamic


def _to_sensor(
    body_mg: np.ndarray, orientation: np.ndarray, noise_mg: float, range_g: int, rng: np.random.Generator
) -> np.ndarray:
    """Rotate into the sensor frame, add noise, round to integer milli-g and clip to the range."""
    sensed = body_mg @ orientation.T + rng.normal(0, noise_mg, body_mg.shape)
    limit = range_g * 1000
    return np.clip(np.rint(sensed), -limit, limit - 1).astype(np.int16)


def accel_window(
    behaviour: str,
    n_samples: int,
    rate_hz: float,
    rng: np.random.Generator,
    orientation: np.ndarray | None = None,
    profile: AnimalProfile | None = None,
) -> np.ndarray:
    """Return one window of 3-axis acceleration, (n_samples, 3) int16 milli-g, for a fresh bout.

    `orientation` (3x3, body to sensor) fixes how the collar sits; `profile` fixes the animal.
    Without them both are drawn from `rng` (a new animal each call).
    """
    if n_samples <= 0 or rate_hz <= 0:
        raise ValueError(f"n_samples and rate_hz must be positive, got {n_samples}, {rate_hz}")
    if profile is None:
        profile = random_profile(rng)
    if orientation is None:
        orientation = profile.orientation
    bout = _draw_bout(behaviour, profile, rng)
    t_s = np.arange(n_samples) / rate_hz + rng.uniform(0, 60)
    body = _body_signal(bout, t_s, rate_hz, rng)
    worn = bout.orientation if bout.orientation is not None else orientation
    return _to_sensor(body, worn, profile.noise_mg, profile.range_g, rng)


class AccelStream:
    """A continuous accelerometer stream of one collared animal, read window by window.

    Time runs on between reads, a behaviour keeps its rhythm until it changes, and a dropped
    collar keeps the orientation it landed in. The simulated IMU of the fleet holds one per collar.
    """

    def __init__(self, rng: np.random.Generator, rate_hz: float = 25.0, profile: AnimalProfile | None = None):
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.rng = rng
        self.rate_hz = float(rate_hz)
        self.profile = profile if profile is not None else random_profile(rng)
        self.t_s = 0.0
        self._bout: _Bout | None = None

    def read(self, behaviour: str, n_samples: int, gap_s: float = 0.0) -> np.ndarray:
        """Return the next n_samples (n, 3) int16 mg of `behaviour`, after `gap_s` seconds unsampled."""
        if self._bout is None or self._bout.behaviour != behaviour:
            if self._bout is not None and self._bout.behaviour == "dropped" and behaviour == "still":
                pass  # a dropped collar stays where it fell
            else:
                self._bout = _draw_bout(behaviour, self.profile, self.rng)
        self.t_s += gap_s
        t_s = self.t_s + np.arange(n_samples) / self.rate_hz
        self.t_s += n_samples / self.rate_hz
        body = _body_signal(self._bout, t_s, self.rate_hz, self.rng)
        worn = self._bout.orientation if self._bout.orientation is not None else self.profile.orientation
        return _to_sensor(body, worn, self.profile.noise_mg, self.profile.range_g, self.rng)


def labelled_windows(
    n_per_class: int,
    n_samples: int,
    rate_hz: float,
    rng: np.random.Generator,
    behaviours: tuple[str, ...] = BEHAVIOURS,
    n_animals: int = 12,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (windows (m, n, 3) int16 mg, labels (m,) class index, animal (m,) id) for training.

    Windows come from `n_animals` simulated animals, each with its own collar fit and gait.
    """
    profiles = [random_profile(rng) for _ in range(n_animals)]
    windows, labels, animals = [], [], []
    for label, behaviour in enumerate(behaviours):
        for _ in range(n_per_class):
            a = int(rng.integers(n_animals))
            windows.append(accel_window(behaviour, n_samples, rate_hz, rng, profile=profiles[a]))
            labels.append(label)
            animals.append(a)
    return np.stack(windows), np.asarray(labels, dtype=np.int64), np.asarray(animals, dtype=np.int64)
