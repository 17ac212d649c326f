"""Peak memory of loading a researcher's long labelled accelerometer CSV, the shape of a night's logging.

    PYTHONPATH=$PWD .venv/bin/python scripts/csv_memory.py --animals 20 --hours 1 --rate 25

writes a CSV with the white stork dataset's column names (bout, sample, behaviour, ax, ay, az in m/s2)
plus the animal's tag and an ISO 8601 UTC timestamp with milliseconds, one animal after another, then
loads it with `models.csv_source.load_csv` in a fresh process and prints the file's size, the peak
resident memory the load added (ru_maxrss after minus before) and the bytes of the recordings it returned.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COLUMNS = "animal=tag,bout=bout,time=timestamp,x=ax,y=ay,z=az,label=behaviour"
BEHAVIOURS = ("STND", "WALK", "SITTING", "P_FLIGHT", "A_FLIGHT")
BOUT_S = 600  # one bout id per ten minutes of logging
LABEL_RUN_S = 8  # the behaviour changes every eight seconds


def write_night(path: Path, animals: int, hours: float, rate_hz: float, seed: int = 1) -> int:
    """Write the CSV and return its number of data rows."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * rate_hz)
    t = np.arange(n) / rate_hz
    start = np.datetime64("2026-11-20T18:00:00", "ms")
    stamps = np.datetime_as_string(start + (t * 1000).astype("timedelta64[ms]"), unit="ms")
    stamps = np.char.replace(stamps, "T", " ")
    rows = 0
    with open(path, "w") as out:
        out.write("tag,bout,sample,timestamp,behaviour,ax,ay,az\n")
        for a in range(animals):
            labels = np.asarray(BEHAVIOURS)[rng.integers(0, len(BEHAVIOURS), n // int(LABEL_RUN_S * rate_hz) + 1)]
            acc = rng.normal(0.0, 2.0, (n, 3))
            acc[:, 2] += 9.80665
            frame = pd.DataFrame({
                "tag": f"Storch {a + 1:02d}",
                "bout": (t // BOUT_S).astype(np.int64) + 1000 * a,
                "sample": np.arange(n) % int(BOUT_S * rate_hz),
                "timestamp": stamps,
                "behaviour": labels[(t // LABEL_RUN_S).astype(np.int64)],
                "ax": acc[:, 0], "ay": acc[:, 1], "az": acc[:, 2],
            })
            frame.to_csv(out, header=False, index=False, float_format="%.5f")
            rows += n
    return rows


def measure(path: Path) -> dict:
    """Load the CSV in a fresh process and return its peak memory figures."""
    code = f"""
import json, resource, sys
import numpy, pandas
from models.csv_source import Columns, load_csv
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loaded = load_csv([{str(path)!r}], Columns.parse({COLUMNS!r}), units="m/s2")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kept = {{id(a.base if a.base is not None else a): (a.base if a.base is not None else a).nbytes
        for r in loaded.recordings for a in (r.samples_mg, r.labels)}}
print(json.dumps({{"peak_added_mib": (after - before) / 1024, "recordings": len(loaded.recordings),
                  "rows": loaded.report.rows, "recordings_mib": sum(kept.values()) / 2**20}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--animals", type=int, default=20)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--keep", type=Path, help="write the CSV here (else a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.keep or Path(folder) / "night.csv"
        rows = write_night(path, args.animals, args.hours, args.rate)
        figures = measure(path)
        figures.update(file_mib=path.stat().st_size / 2**20, file_rows=rows)
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
