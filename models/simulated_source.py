"""The digital twin's labelled accelerometer output, as recordings or as a long CSV.

Every simulated animal wears its own collar (fit, gait, noise from `simulator.signals`) and does
each behaviour in bouts; the samples are what the collar's accelerometer would read, in milli-g,
with the true behaviour as label. `write_labelled_csv` writes the same as a long CSV with any
column names and units, the way a research group's logger export looks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.recordings import Loaded, LoadReport, Recording, unit_factor_mg
from simulator import signals

SOURCE = "simulator"


def simulated_recordings(n_animals: int = 4, bouts_per_behaviour: int = 3, bout_s: float = 30.0,
                         rate_hz: float = 25.0, seed: int = 0,
                         behaviours: tuple[str, ...] = signals.BEHAVIOURS) -> Loaded:
    """Return labelled recordings of simulated animals: each animal does every behaviour in bouts of bout_s."""
    rng = np.random.default_rng(seed)
    recordings = []
    n = int(round(bout_s * rate_hz))
    for a in range(n_animals):
        stream = signals.AccelStream(rng, rate_hz=rate_hz)
        order = [b for _ in range(bouts_per_behaviour) for b in behaviours]
        rng.shuffle(order)
        for k, behaviour in enumerate(order):
            start_s = stream.t_s
            samples = stream.read(behaviour, n, gap_s=float(rng.uniform(5, 60)))
            recordings.append(Recording(f"animal-{a + 1:02d}", f"{SOURCE}:animal-{a + 1:02d}:{k}", rate_hz,
                                        samples.astype(np.float64), np.full(n, behaviour), f"{SOURCE} seed {seed}",
                                        start_s))
    return Loaded(recordings, LoadReport(files=[f"{SOURCE} seed {seed}"], rows=n * len(recordings)))


def write_labelled_csv(loaded: Loaded, path: str | Path, names: dict[str, str], units: str = "g",
                       iso_time: bool = False) -> Path:
    """Write recordings as a long CSV, one row per sample, with columns named by `names`
    (roles animal, bout, time, x, y, z, label) and values in `units`."""
    import pandas as pd

    factor = unit_factor_mg(units)
    frames = []
    for r in loaded.recordings:
        t = r.start_s + np.arange(len(r)) / r.rate_hz
        frame = {names["animal"]: r.animal, names["bout"]: r.bout,
                 names["time"]: (pd.to_datetime(t + 1.7e9, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                                 if iso_time else np.round(t, 4))}
        for a, axis in enumerate(("x", "y", "z")):
            frame[names[axis]] = np.round(r.samples_mg[:, a] / factor, 5)
        frame[names["label"]] = r.labels
        frames.append(pd.DataFrame(frame))
    path = Path(path)
    pd.concat(frames).to_csv(path, index=False)
    return path
