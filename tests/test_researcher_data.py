"""A researcher's own labelled accelerometer data comes in (long CSV with their column names, a dataset
TOML, Movebank e-obs bursts, Edge Impulse data acquisition JSON), and bad data is refused with a message
naming file, row and column; anything left out is counted."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from collar_firmware.hal import lis2dw12
from models import cbor_reader, edge_impulse
from models.csv_source import Columns, load_csv, load_dataset_file
from models.movebank_source import load_movebank
from models.recordings import STANDARD_GRAVITY_M_S2, DataError, Loaded
from models.simulated_source import simulated_recordings, write_labelled_csv
from models.sources import DataOptions, load
from models.windowing import COLLAR_RATES_HZ, WindowSettings, cut_windows, make_windows

FIXTURES = Path(__file__).parent / "fixtures" / "researchers"
NAMES = {"animal": "collar", "bout": "seg", "time": "t_s", "x": "acc_x", "y": "acc_y", "z": "acc_z", "label": "behav"}
COLUMNS = "animal=collar,bout=seg,time=t_s,x=acc_x,y=acc_y,z=acc_z,label=behav"


def _rows(n: int, t0: float = 0.0, rate_hz: float = 10.0, label: str = "walk", animal: str = "a1",
          bout: str = "b1") -> list[str]:
    return [f"{animal},{bout},{t0 + i / rate_hz:.4f},0.01,0.02,0.98,{label}" for i in range(n)]


def _csv(tmp_path: Path, rows: list[str], name: str = "logger.csv") -> Path:
    path = tmp_path / name
    path.write_text("collar,seg,t_s,acc_x,acc_y,acc_z,behav\n" + "\n".join(rows) + "\n")
    return path


def test_researcher_loads_a_long_csv_with_their_own_column_names_and_units(tmp_path):
    herd = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=5)
    path = write_labelled_csv(herd, tmp_path / "herd.csv", NAMES, units="m/s2", iso_time=True)
    loaded = load_csv([path], Columns.parse(COLUMNS), units="m/s2")
    assert loaded.animals_known and {r.animal for r in loaded.recordings} == {"animal-01", "animal-02"}
    assert all(abs(r.rate_hz - 25) < 0.1 for r in loaded.recordings)  # detected from ISO 8601 times
    first = loaded.recordings[0]
    assert np.allclose(first.samples_mg, herd.recordings[0].samples_mg, atol=0.01)  # m/s2 back to milli-g
    assert list(first.labels[:1]) == [herd.recordings[0].labels[0]]


def test_researcher_with_a_spreadsheets_semicolons_and_decimal_commas_or_a_loggers_tabs_loads_the_same_data(tmp_path):
    herd = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=4, rate_hz=25, seed=5)
    names = {**NAMES, "label": "behav"}
    comma = write_labelled_csv(herd, tmp_path / "herd.csv", names)
    lines = comma.read_text().splitlines()
    european = tmp_path / "herd_excel.csv"  # Excel where the decimal mark is a comma: ";" between fields
    european.write_text("\n".join(line.replace(",", ";").replace(".", ",") for line in lines) + "\n")
    tabs = tmp_path / "herd_logger.txt"
    tabs.write_text("\n".join(line.replace(",", "\t") for line in lines) + "\n")
    expected = load_csv([comma], Columns.parse(COLUMNS))
    for path in (european, tabs):
        loaded = load_csv([path], Columns.parse(COLUMNS))
        assert [r.animal for r in loaded.recordings] == [r.animal for r in expected.recordings]
        assert [r.labels.tolist() for r in loaded.recordings] == [r.labels.tolist() for r in expected.recordings]
        for got, want in zip(loaded.recordings, expected.recordings, strict=True):
            assert np.array_equal(got.samples_mg, want.samples_mg) and got.rate_hz == want.rate_hz


def test_a_spreadsheets_blank_rows_are_left_out_counted_and_a_bad_cell_after_them_is_named_by_its_line(tmp_path):
    # Excel keeps rows that were once formatted as bare separators (",,,,,,"), often at the end; a hand-edited
    # file has blank lines. Both are left out and counted; a row is still named by its line in the file.
    header = "collar,seg,t_s,acc_x,acc_y,acc_z,behav"
    rows = _rows(40)
    text = "\r\n".join([header, *rows[:20], "", ",,,,,,", *rows[20:], ",,,,,,", " , , ,,,,"]) + "\r\n"
    path = tmp_path / "edited.csv"
    path.write_text(text, newline="")
    loaded = load_csv([path], Columns.parse(COLUMNS))
    assert [len(r) for r in loaded.recordings] == [40] and loaded.report.rows == 40
    assert loaded.report.notes == [f"{path}: 4 blank row(s) (no value in any column read) left out"]
    assert loaded.recordings[0].source == f"{path}, row 2"
    broken = text.replace(rows[30], rows[30].replace("0.98", "O.98"))  # line 1 + 20 + 2 + 11 = 34
    path.write_text(broken, newline="")
    with pytest.raises(DataError, match=r"edited.csv, row 34, column 'acc_z': 'O.98' is not a number"):
        load_csv([path], Columns.parse(COLUMNS))


def test_a_spreadsheets_unicode_text_is_read_and_a_windows_code_page_csv_is_refused_naming_its_row(tmp_path):
    # Excel's "Unicode Text" is UTF-16 with a byte-order mark, tab-separated; its "CSV UTF-8" has a UTF-8
    # byte-order mark; its plain "CSV" on Windows is in the code page (cp1252: "é" is the byte 0xe9).
    lines = ["collar,seg,t_s,acc_x,acc_y,acc_z,behav", *_rows(40, label="marche lente (é)")]
    expected = load_csv([_csv(tmp_path, lines[1:], "plain.csv")], Columns.parse(COLUMNS))
    unicode_text = tmp_path / "unicode.txt"
    unicode_text.write_text("\r\n".join(line.replace(",", "\t") for line in lines) + "\r\n", encoding="utf-16",
                            newline="")
    csv_utf8 = tmp_path / "utf8.csv"
    csv_utf8.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8-sig", newline="")
    for path in (unicode_text, csv_utf8):
        loaded = load_csv([path], Columns.parse(COLUMNS))
        assert [r.labels.tolist() for r in loaded.recordings] == [r.labels.tolist() for r in expected.recordings]
        assert np.array_equal(loaded.recordings[0].samples_mg, expected.recordings[0].samples_mg)
    code_page = tmp_path / "windows.csv"
    code_page.write_text("\r\n".join(lines) + "\r\n", encoding="cp1252", newline="")
    with pytest.raises(DataError, match=r'windows.csv, row 2: not UTF-8 text \(byte 0xe9\): save it .* "CSV UTF-8"'):
        load_csv([code_page], Columns.parse(COLUMNS))


def test_researcher_with_acceleration_in_m_per_s2_who_forgets_units_is_told_instead_of_getting_a_ten_g_model(
        tmp_path):
    herd = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=5)
    in_g = write_labelled_csv(herd, tmp_path / "herd_g.csv", NAMES, units="g")
    in_m_s2 = write_labelled_csv(herd, tmp_path / "herd_m_s2.csv", NAMES, units="m/s2")
    settings = WindowSettings(window_s=4)
    as_g = make_windows(load_csv([in_g], Columns.parse(COLUMNS)), settings)
    as_m_s2 = make_windows(load_csv([in_m_s2], Columns.parse(COLUMNS), units="m/s2"), settings)
    assert np.array_equal(as_g.features, as_m_s2.features) and np.array_equal(as_g.labels, as_m_s2.labels)
    with pytest.raises(DataError, match=r"herd_m_s2.csv: read as 'g', gravity comes out at 9.\d+ g.*give --units m/s2"):
        load_csv([in_m_s2], Columns.parse(COLUMNS))  # the default unit is g
    with pytest.raises(DataError, match=r"read as 'mg', gravity comes out at 0.00\d+ g.*give --units g"):
        load([str(in_g)], DataOptions(columns=COLUMNS, units="mg"))


def test_edge_impulse_file_whose_sensors_say_m_per_s2_but_hold_g_is_refused(tmp_path):
    document = json.loads((FIXTURES / "edge_impulse_docs_example.json").read_text())
    document["payload"]["values"] = [[v / STANDARD_GRAVITY_M_S2 for v in row] for row in document["payload"]["values"]]
    path = tmp_path / "idle.in_g.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"idle.in_g.json: read as 'm/s2', gravity comes out at 0.09\d* g.*units g"):
        edge_impulse.load_edge_impulse([path])


def test_animals_logged_at_once_and_merged_by_time_are_trained_on_whole_not_as_single_rows(tmp_path):
    herd = simulated_recordings(n_animals=3, bouts_per_behaviour=1, bout_s=8, rate_hz=25, seed=5)
    by_animal = write_labelled_csv(herd, tmp_path / "by_animal.csv", NAMES)
    header, *rows = by_animal.read_text().splitlines()
    merged = tmp_path / "merged_by_time.csv"  # the collars' logs merged and sorted by time: rows interleave
    merged.write_text("\n".join([header, *sorted(rows, key=lambda r: (float(r.split(",")[2]), r))]) + "\n")
    expected = load_csv([by_animal], Columns.parse(COLUMNS))
    loaded = load_csv([merged], Columns.parse(COLUMNS))
    assert not loaded.report.left_out and "put together in time order" in loaded.report.notes[0]
    per_bout = {r.bout.split(":", 1)[1]: r for r in loaded.recordings}
    assert sorted(per_bout) == sorted(r.bout.split(":", 1)[1] for r in expected.recordings)
    for want in expected.recordings:
        got = per_bout[want.bout.split(":", 1)[1]]
        assert np.array_equal(got.samples_mg, want.samples_mg) and got.labels.tolist() == want.labels.tolist()


def _night(path: Path, animals: int, rows_each: int, rate_hz: float = 25.0) -> Path:
    """Write a herd's night of 25 Hz logging as one long CSV: the white stork data's column names (behaviour, ax,
    ay, az in m/s2) with the tag, a bout per minute and ISO 8601 UTC times with milliseconds."""
    import pandas as pd

    rng = np.random.default_rng(3)
    t = np.arange(rows_each) / rate_hz
    stamps = np.datetime_as_string(np.datetime64("2026-11-20T18:00:00", "ms")
                                   + (t * 1000).astype("timedelta64[ms]"), unit="ms")
    with open(path, "w") as out:
        out.write("tag,bout,sample,timestamp,behaviour,ax,ay,az\n")
        for a in range(animals):
            acc = rng.normal(0.0, 2.0, (rows_each, 3)) + [0.0, 0.0, STANDARD_GRAVITY_M_S2]
            pd.DataFrame({"tag": f"Storch {a + 1:02d}", "bout": (t // 60).astype(int), "sample": np.arange(rows_each),
                          "timestamp": stamps, "behaviour": np.where((t // 8) % 2, "STND", "WALK"),
                          "ax": acc[:, 0], "ay": acc[:, 1], "az": acc[:, 2]}).to_csv(
                out, header=False, index=False, float_format="%.5f")
    return path


NIGHT_COLUMNS = "animal=tag,bout=bout,time=timestamp,x=ax,y=ay,z=az,label=behaviour"


def test_a_herds_night_of_logging_loads_in_memory_bounded_by_what_is_kept_not_by_the_text_of_the_file(
        tmp_path, monkeypatch):
    import tracemalloc

    from models import csv_source

    monkeypatch.setattr(csv_source, "CHUNK_ROWS", 1000)
    path = _night(tmp_path / "night.csv", animals=8, rows_each=9000)  # 72 chunks of rows
    load_csv([_night(tmp_path / "hour.csv", animals=1, rows_each=900)], Columns.parse(NIGHT_COLUMNS), units="m/s2")
    tracemalloc.start()  # after a first load, so what pandas imports on its first read is not counted
    try:
        loaded = load_csv([path], Columns.parse(NIGHT_COLUMNS), units="m/s2")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = {id(a.base if a.base is not None else a): (a.base if a.base is not None else a).nbytes
            for r in loaded.recordings for a in (r.samples_mg, r.labels)}
    chunk_text = path.stat().st_size / loaded.report.rows * csv_source.CHUNK_ROWS
    assert loaded.report.rows == 72_000 and {r.animal for r in loaded.recordings} == {f"Storch {a:02d}" for a in
                                                                                       range(1, 9)}
    # The numbers and labels kept, a little bookkeeping per row and a few chunks' text: never the whole file as
    # one Python string per cell (which had the load take over five times what it kept).
    assert peak < 4 * sum(kept.values()) + 4 * chunk_text


def test_a_file_read_in_chunks_loads_as_one_read_whole_and_names_bad_cells_by_their_file_row(tmp_path, monkeypatch):
    from models import csv_source

    herd = simulated_recordings(n_animals=3, bouts_per_behaviour=1, bout_s=8, rate_hz=25, seed=5)
    by_animal = write_labelled_csv(herd, tmp_path / "by_animal.csv", NAMES, units="m/s2", iso_time=True)
    header, *rows = by_animal.read_text().splitlines()
    merged = tmp_path / "merged_by_time.csv"  # interleaved rows of three collars, across many chunks
    merged.write_text("\n".join([header, *sorted(rows, key=lambda r: (r.split(",")[2], r))]) + "\n")
    whole = load_csv([merged], Columns.parse(COLUMNS), units="m/s2")
    monkeypatch.setattr(csv_source, "CHUNK_ROWS", 7)
    chunked = load_csv([merged], Columns.parse(COLUMNS), units="m/s2")
    assert [(r.bout, r.source, r.start_s, r.labels.tolist()) for r in chunked.recordings] == [
        (r.bout, r.source, r.start_s, r.labels.tolist()) for r in whole.recordings]
    assert all(np.array_equal(a.samples_mg, b.samples_mg) for a, b in zip(chunked.recordings, whole.recordings,
                                                                           strict=True))
    lines = merged.read_text().splitlines()
    labels = lines[:]
    for row in (30, 51):  # two bad cells in later chunks: the first is named, both are counted
        cells = lines[row - 1].split(",")
        cells[4] = "n/a"
        lines[row - 1] = ",".join(cells)
    cells = labels[44].split(",")
    labels[44] = ",".join([*cells[:-1], "NA"])
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "unlabelled.csv").write_text("\n".join(labels) + "\n")
    with pytest.raises(DataError, match=r"row 30, column 'acc_y': 'n/a' is not a number \(2 such rows\)"):
        load_csv([tmp_path / "bad.csv"], Columns.parse(COLUMNS), units="m/s2")
    with pytest.raises(DataError, match=r"row 45, column 'behav': no label \('NA'; 1 such rows\)"):
        load_csv([tmp_path / "unlabelled.csv"], Columns.parse(COLUMNS), units="m/s2")


def test_collars_numbered_with_leading_zeros_keep_their_ids_as_the_researcher_wrote_them(tmp_path):
    rows = [*_rows(40, animal="007", bout="01"), *_rows(40, animal="7", bout="1", label="rest"),
            *_rows(40, animal="0042", bout="1.0")]
    loaded = load_csv([_csv(tmp_path, rows)], Columns.parse(COLUMNS))
    assert [(r.animal, r.bout.split(":", 1)[1]) for r in loaded.recordings] == [
        ("007", "007:01"), ("7", "7:1"), ("0042", "0042:1.0")]


def test_dataset_toml_names_the_columns_units_and_files(tmp_path):
    (tmp_path / "raw").mkdir()
    _csv(tmp_path / "raw", _rows(40), "day1.csv")
    _csv(tmp_path / "raw", _rows(40, label="rest", bout="b2"), "day2.csv")
    toml = tmp_path / "storks.toml"
    toml.write_text('[dataset]\nfiles = ["raw/"]\nunits = "g"\n[columns]\n'
                    + "\n".join(f'{role} = "{name}"' for role, name in NAMES.items()) + "\n")
    loaded = load_dataset_file(toml)
    assert len(loaded.recordings) == 2 and loaded.label_counts() == {"walk": 40, "rest": 40}
    assert loaded.recordings[0].samples_mg[0].tolist() == pytest.approx([10.0, 20.0, 980.0])


@pytest.mark.parametrize(
    ("rows", "units", "expected"),
    [
        (["a1,b1,0.0,0.01,0.02,0.98,walk", "a1,b1,0.1,oops,0.02,0.98,walk"], "g",
         "row 3, column 'acc_x': 'oops' is not a number"),
        (["a1,b1,0.0,0.01,,0.98,walk"], "g", "row 2, column 'acc_y'"),  # an empty cell is a NaN
        (_rows(3)[:1] + ["a1,b1,0.1,0.01,0.02,0.98,"], "g", "row 3, column 'behav': no label"),
        (_rows(5), "furlongs", "unknown unit 'furlongs'"),
        (_rows(20) + _rows(20, rate_hz=25.0, bout="b2"), "g", "row 22, column 't_s'"),  # mixed rates
        (_rows(10) + _rows(10, t0=5.0)[0:10], "g", "row 12, column 't_s': gap of"),
        (_rows(3) + _rows(3, t0=0.0)[0:1], "g", "row 5, column 't_s': time does not increase"),
    ],
    ids=["not-a-number", "nan", "no-label", "unknown-unit", "mixed-rates", "gap-in-bout", "time-backwards"],
)
def test_bad_csv_gets_a_message_naming_file_row_and_column(tmp_path, rows, units, expected):
    path = _csv(tmp_path, rows)
    with pytest.raises(DataError) as refused:
        load_csv([path], Columns.parse(COLUMNS), units=units)
    assert str(path) in str(refused.value) or "furlongs" in expected
    assert expected in str(refused.value)


@pytest.mark.parametrize("marker", ["NA", "N/A", "nan", "NULL", "#N/A"])
def test_researcher_whose_export_spells_missing_labels_na_gets_no_behaviour_or_animal_called_na(tmp_path, marker):
    labelled = _rows(40)
    unlabelled = [row.rsplit(",", 1)[0] + f",{marker}" for row in _rows(40, t0=4.0)]
    with pytest.raises(DataError, match=rf"row 42, column 'behav': no label \('{marker}'; 40 such rows\)"):
        load_csv([_csv(tmp_path, labelled + unlabelled)], Columns.parse(COLUMNS))
    unknown_animal = [f"{marker}," + row.split(",", 1)[1] for row in _rows(40, bout="b2")]
    with pytest.raises(DataError, match=rf"row 42, column 'collar': no animal id \('{marker}'\)"):
        load_csv([_csv(tmp_path, labelled + unknown_animal)], Columns.parse(COLUMNS))
    bursts = (FIXTURES / "movebank_eobs_bursts.csv").read_text().replace(",walking,", f",{marker},")
    (tmp_path / "bursts.csv").write_text(bursts)
    loaded = load_movebank([tmp_path / "bursts.csv"])
    assert {label for r in loaded.recordings for label in r.labels} == {"standing"}
    assert loaded.report.left_out["bursts without a label (not annotated)"] == 3 + 4


def test_missing_column_is_named_with_the_columns_the_file_has(tmp_path):
    path = _csv(tmp_path, _rows(5))
    with pytest.raises(DataError, match=r"row 1, column 'behaviour'.*missing column\(s\) \['behaviour'\]") as refused:
        load_csv([path], Columns.parse("x=acc_x,y=acc_y,z=acc_z,label=behaviour"))
    assert "acc_x" in str(refused.value)


def test_a_label_with_two_samples_is_named_with_where_it_is(tmp_path):
    rows = _rows(60) + [r.replace("walk", "yawn") for r in _rows(62)[60:]] + _rows(60, t0=8.0, label="rest", bout="b3")
    loaded = load_csv([_csv(tmp_path, rows)], Columns.parse(COLUMNS))
    with pytest.raises(DataError, match=r"logger.csv, row 62, column 'label': label 'yawn' has only 2 sample"):
        make_windows(loaded, WindowSettings(window_s=2, rate_hz=25))


def test_labels_that_differ_only_in_case_are_refused_rather_than_trained_as_two_behaviours(tmp_path):
    _csv(tmp_path, _rows(60), "day1.csv")
    _csv(tmp_path, _rows(60, label="Walk", bout="b2") + _rows(60, t0=7.0, label="rest", bout="b3"), "day2.csv")
    loaded = load_csv([tmp_path], Columns.parse(COLUMNS))
    with pytest.raises(DataError, match=r"day2.csv, row 2, column 'label': labels 'walk' and 'Walk' differ only in case"):
        make_windows(loaded, WindowSettings(window_s=2, rate_hz=25))


def test_one_animal_under_two_spellings_is_refused_rather_than_held_out_from_itself(tmp_path):
    _csv(tmp_path, _rows(60, animal="Storch 1"), "season1.csv")
    _csv(tmp_path, _rows(60, animal="storch 1", label="rest"), "season2.csv")
    loaded = load_csv([tmp_path], Columns.parse(COLUMNS))
    with pytest.raises(DataError, match=r"season2.csv, row 2, column 'animal': animal ids 'Storch 1' and 'storch 1' "
                                        r"differ only in case"):
        make_windows(loaded, WindowSettings(window_s=2, rate_hz=25))


def test_gaps_split_bouts_when_asked_and_short_tails_are_counted_not_dropped_silently(tmp_path):
    rows = _rows(30) + _rows(30, t0=10.0)  # 3 s, a 7 s gap, 3 s
    loaded = load_csv([_csv(tmp_path, rows)], Columns.parse(COLUMNS), split_gaps=True)
    assert len(loaded.recordings) == 2 and any("gap" in note for note in loaded.report.notes)
    windows = make_windows(loaded, WindowSettings(window_s=2, rate_hz=25))
    assert len(windows) == 2
    left = windows.report.as_dict()["left_out_samples"]
    assert sum(left.values()) == 2 * (73 - 50)  # 2.9 s at 25 Hz = 73 samples, one 50-sample window each


@pytest.mark.parametrize(
    ("to_time", "expected"),
    [
        (lambda t_s: f"{t_s * 1000:.0f}", r"steps 100 between samples, which as seconds is 0.01 Hz"),  # logger ms
        (lambda t_s: f"{45000 + t_s / 86400:.9f}", r"steps 1.1\d*e-06 between samples"),  # spreadsheet day serial
    ],
    ids=["milliseconds", "spreadsheet-days"],
)
def test_researcher_whose_time_column_is_not_in_seconds_is_told_instead_of_windows_of_made_up_samples(
        tmp_path, to_time, expected):
    rows = [row.split(",") for row in _rows(60)]
    path = _csv(tmp_path, [",".join([*row[:2], to_time(float(row[2])), *row[3:]]) for row in rows])
    with pytest.raises(DataError, match=rf"logger.csv, row 2, column 't_s': the time column {expected}.*seconds"):
        load_csv([path], Columns.parse(COLUMNS))
    with pytest.raises(DataError, match=r"--rate: 10000 Hz is not a rate"):
        load_csv([path], Columns.parse(COLUMNS.replace(",time=t_s", "")), rate_hz=10000)
    document = json.loads((FIXTURES / "edge_impulse_docs_example.json").read_text())
    document["payload"]["interval_ms"] = 0.01  # seconds written where Edge Impulse wants milliseconds
    (tmp_path / "idle.seconds.json").write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"column 'payload.interval_ms': interval_ms 0.01 is 1e\+05 Hz"):
        edge_impulse.load_edge_impulse([tmp_path / "idle.seconds.json"])


def test_a_logger_stamping_whole_seconds_is_told_to_leave_the_time_column_out_and_give_the_rate(tmp_path):
    rows = [row.split(",") for row in _rows(60)]  # 10 Hz, stamped to the second as some exports are
    stamped = [",".join([*row[:2], f"2015-06-01T06:00:{int(float(row[2])):02d}Z", *row[3:]]) for row in rows]
    path = _csv(tmp_path, stamped)
    with pytest.raises(DataError, match=r"row 3, column 't_s': time does not increase inside a bout .*whole seconds "
                                        r"to several samples: leave it out .* --rate"):
        load_csv([path], Columns.parse(COLUMNS))
    without_time = load_csv([path], Columns.parse(COLUMNS.replace(",time=t_s", "")), rate_hz=10)
    assert len(without_time.recordings) == 1 and without_time.recordings[0].rate_hz == 10


def test_rate_given_on_the_command_line_is_checked_against_the_time_column(tmp_path):
    path = _csv(tmp_path, _rows(20))
    with pytest.raises(DataError, match="the time column says 10 Hz but the rate given is 25 Hz"):
        load_csv([path], Columns.parse(COLUMNS), rate_hz=25)


def test_collar_rates_are_the_lis2dw12_rates_the_blob_can_hold():
    whole_hz = [mhz // 1000 for mhz, _ in lis2dw12.ODR_TABLE if mhz % 1000 == 0 and mhz <= 400_000]
    assert COLLAR_RATES_HZ == tuple(whole_hz) and 25 in COLLAR_RATES_HZ and 10 not in COLLAR_RATES_HZ
    with pytest.raises(DataError, match="10 Hz is not a rate of the collar's LIS2DW12"):
        WindowSettings(rate_hz=10).check()


def test_a_16_g_logger_is_trained_on_what_the_collars_4_g_accelerometer_reads(tmp_path):
    herd = simulated_recordings(n_animals=1, bouts_per_behaviour=1, bout_s=8, rate_hz=25, seed=3)
    sprint = herd.recordings[0]
    t = np.arange(len(sprint)) / sprint.rate_hz
    strides = np.stack([6000 * np.sin(2 * np.pi * 3 * t), 2500 * np.cos(2 * np.pi * 3 * t), 1000 + 0 * t], axis=1)
    logged = Loaded([replace(sprint, samples_mg=strides, labels=np.full(len(t), "sprint"))], herd.report)
    on_the_collar = Loaded([replace(logged.recordings[0], samples_mg=np.clip(strides, -4000, 3999))], herd.report)
    as_logged = make_windows(logged, WindowSettings(window_s=2))
    as_the_collar_reads = make_windows(on_the_collar, WindowSettings(window_s=2, range_g=16))
    assert np.array_equal(as_logged.features, as_the_collar_reads.features)  # the collar's default 4 g
    assert "at or beyond the collar's +-4 g full scale" in " ".join(as_logged.report.notes)
    at_16_g = make_windows(logged, WindowSettings(window_s=2, range_g=16))  # a fleet set to 16 g
    assert not np.array_equal(at_16_g.features, as_logged.features) and not at_16_g.report.notes
    with pytest.raises(DataError, match="--collar-range: 3 g is not a full scale"):
        WindowSettings(range_g=3).check()


def test_ten_hz_data_is_resampled_to_a_collar_rate_with_overlap_and_axes_remapped(tmp_path):
    rows = [f"a1,b1,{i / 10:.2f},{0.1 * (i % 2)},0.5,1.0,walk" for i in range(100)]  # 9.9 s at 10 Hz
    loaded = load_csv([_csv(tmp_path, rows)], Columns.parse(COLUMNS))
    raw = cut_windows(loaded, 25, 100, 50, axes="-z,y,x")
    assert raw.samples.shape == (3, 100, 3)  # 248 samples at 25 Hz: windows start at 0, 50, 100
    assert raw.samples[0, 0].tolist() == [-1000, 500, 0]  # collar x = -data z, collar z = data x


def test_movebank_eobs_bursts_from_the_attribute_names_movebank_documents():
    loaded = load_movebank([FIXTURES / "movebank_eobs_bursts.csv"], units="counts:0.0027")
    assert [r.animal for r in loaded.recordings] == ["Storch 1", "Storch 2"]
    stand = loaded.recordings[0]
    assert stand.rate_hz == 10.54 and stand.labels.tolist() == ["standing"] * 4
    assert stand.samples_mg[0].tolist() == pytest.approx([0.0, 0.0, (2418 - 2048) * 2.7])
    assert loaded.report.left_out == {"Movebank rows without an accelerometer burst (other sensors)": 1,
                                      "bursts without a label (not annotated)": 3}


def test_movebank_outliers_and_bursts_before_deployment_are_left_out_and_animals_stay_known(tmp_path):
    lines = (FIXTURES / "movebank_eobs_bursts.csv").read_text().splitlines()
    burst = lines[1].split(",")  # Storch 1 standing
    outlier = [*burst[:1], "false", *burst[2:6], "walking", *burst[7:]]
    outlier[0] = "1005"
    on_the_desk = [*burst[:6], "standing", burst[7], "", *burst[9:]]
    on_the_desk[0] = "1006"
    path = tmp_path / "bursts.csv"
    path.write_text("\n".join([*lines, ",".join(outlier), ",".join(on_the_desk)]) + "\n")
    loaded = load_movebank([path])
    assert [r.animal for r in loaded.recordings] == ["Storch 1", "Storch 2"] and loaded.animals_known
    assert {label for r in loaded.recordings for label in r.labels} == {"standing", "walking"}
    assert loaded.report.left_out["bursts Movebank marks as outliers (visible false)"] == 4
    assert loaded.report.left_out[
        "bursts of no animal (individual-local-identifier blank: before or after deployment)"] == 4


def test_a_movebank_study_read_and_written_again_with_r_loads_as_the_download_does(tmp_path):
    # R's write.csv of the study as read.csv read it: every text quoted, NA in the cells of other sensors' rows
    # (no burst, axes or frequency on a GPS fix) and of bursts not annotated, TRUE/FALSE for visible.
    download = load_movebank([FIXTURES / "movebank_eobs_bursts.csv"])
    lines = []
    for cells in csv.reader((FIXTURES / "movebank_eobs_bursts.csv").read_text().splitlines()):
        cells = ["NA" if c == "" else c.upper() if c in ("true", "false") else c for c in cells]
        lines.append(",".join(c if c == "NA" or c.replace(".", "").isdigit() else f'"{c}"' for c in cells))
    (tmp_path / "storks_from_r.csv").write_text("\n".join(lines) + "\n")
    from_r = load([str(tmp_path / "storks_from_r.csv")])
    assert [(r.animal, r.labels[0], len(r)) for r in from_r.recordings] == [
        (r.animal, r.labels[0], len(r)) for r in download.recordings]
    assert all(np.array_equal(a.samples_mg, b.samples_mg) for a, b in zip(from_r.recordings, download.recordings,
                                                                           strict=True))
    assert from_r.report.left_out == download.report.left_out


@pytest.mark.parametrize("spell", [lambda name: name.replace(":", "_").replace("-", "_"),  # Movebank's API, move2
                                   lambda name: name.replace(":", ".").replace("-", ".")],  # R's move, read.csv
                         ids=["move2-underscores", "move-dots"])
def test_a_movebank_study_downloaded_with_r_and_its_attribute_names_so_spelt_loads_as_the_download_does(
        tmp_path, spell):
    download = load([str(FIXTURES / "movebank_eobs_bursts.csv")])
    header, *rows = (FIXTURES / "movebank_eobs_bursts.csv").read_text().splitlines()
    (tmp_path / "storks.csv").write_text("\n".join([",".join(map(spell, header.split(","))), *rows]) + "\n")
    from_r = load([str(tmp_path / "storks.csv")])
    assert [(r.animal, r.labels[0], r.rate_hz, r.start_s) for r in from_r.recordings] == [
        (r.animal, r.labels[0], r.rate_hz, r.start_s) for r in download.recordings]
    assert from_r.report.left_out == download.report.left_out
    (tmp_path / "two_axes.csv").write_text((tmp_path / "storks.csv").read_text().replace(",XYZ,", ",XY,", 1))
    with pytest.raises(DataError, match=rf"row 2, column '{re.escape(spell('eobs:acceleration-axes'))}': burst axes"):
        load([str(tmp_path / "two_axes.csv")])


def _movebank_download(path: Path, rows: int) -> Path:
    """Write a study's Movebank download of e-obs tags: bursts of 40 samples at 10.54 Hz (as in the white stork
    data) among GPS rows and columns Tembo does not read; one in ten of the first 1000 rows' bursts annotated."""
    rng = np.random.default_rng(7)
    lines = ["event-id,visible,timestamp,location-long,location-lat,eobs:accelerations-raw,eobs:acceleration-axes,"
             "eobs:acceleration-sampling-frequency-per-axis,eobs:start-timestamp,behavioural-classification,"
             "sensor-type,individual-taxon-canonical-name,tag-local-identifier,individual-local-identifier,"
             "study-name"]
    for i in range(rows):
        stamp = f"2015-06-{1 + i // 1440:02d} {i % 1440 // 60:02d}:{i % 60:02d}:00.000"
        stork, tag = f"Störchin {i // 10 % 5 + 1}", 4700 + i // 10 % 5
        if i % 3 == 0:
            lines.append(f"{i},true,{stamp},9.12,47.78,,,,,,gps,Ciconia ciconia,{tag},{stork},LifeTrack")
            continue
        raw = " ".join(map(str, (2048 + rng.normal(0, 60, 120) + np.tile([0, 0, 370], 40)).astype(int)))
        label = ("walking", "standing")[i % 2] if i % 10 == 1 and i < 1000 else ""
        lines.append(f"{i},true,{stamp},,,{raw},XYZ,10.54,{stamp},{label},acceleration,Ciconia ciconia,{tag},"
                     f"{stork},LifeTrack")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_studys_whole_movebank_download_loads_in_the_memory_of_its_annotated_bursts(tmp_path, monkeypatch):
    import tracemalloc

    from models import movebank_source

    monkeypatch.setattr(movebank_source, "CHUNK_BURSTS", 50)
    annotated = _movebank_download(tmp_path / "LifeTrack White Stork-acc-2015-06-01.csv", rows=1000)
    whole = _movebank_download(tmp_path / "LifeTrack White Stork-acc.csv", rows=5000)  # the rest not annotated
    load_movebank([annotated])  # once before measuring, so what pandas imports on its first read is not counted
    peaks = []
    for path in (annotated, whole):
        tracemalloc.start()
        try:
            loaded = load_movebank([path])
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert len(loaded.recordings) == 67 and {r.animal for r in loaded.recordings} == {
            f"Störchin {n}" for n in range(1, 6)}
    assert loaded.report.rows == 5000
    assert loaded.report.left_out["bursts without a label (not annotated)"] == (3333 - 67) * 40
    # Five times the bursts, the same annotated ones: about the same memory, never every burst's text at once.
    assert peaks[1] < 1.3 * peaks[0]


def test_a_duplicate_movebank_record_or_a_file_named_twice_is_trained_and_scored_once(tmp_path):
    from models.sources import DUPLICATE

    lines = (FIXTURES / "movebank_eobs_bursts.csv").read_text().splitlines()
    again = lines[1].split(",")
    again[0] = "1099"  # the same burst under another event-id, as duplicate Movebank records come
    path = tmp_path / "bursts.csv"
    path.write_text("\n".join([*lines, ",".join(again)]) + "\n")
    loaded = load([str(path)])
    assert [r.bout for r in loaded.recordings] == ["bursts.csv:1001", "bursts.csv:1003"]
    assert loaded.report.left_out[DUPLICATE] == 4
    day = _csv(tmp_path, _rows(40), "day1.csv")
    twice = load([str(day), str(tmp_path / "day1.csv")], DataOptions(columns=COLUMNS))
    assert len(twice.recordings) == 1 and twice.report.left_out[DUPLICATE] == 40
    still = _csv(tmp_path, _rows(40) + _rows(40, t0=100.0, bout="b2"), "still.csv")  # alike, at other times
    assert len(load([str(still)], DataOptions(columns=COLUMNS)).recordings) == 2


def test_a_movebank_study_that_stores_converted_g_read_as_raw_counts_is_told_to_check_calibration(tmp_path):
    header, *rows = (FIXTURES / "movebank_eobs_bursts.csv").read_text().splitlines()
    converted = []
    for row in rows:  # the study stores g, (count - 2048) * 0.0027, in the raw column
        cells = row.split(",")
        cells[3] = " ".join(f"{(int(v) - 2048) * 0.0027:.4f}" for v in cells[3].split())
        converted.append(",".join(cells))
    path = tmp_path / "converted.csv"
    path.write_text("\n".join([header, *converted]) + "\n")
    with pytest.raises(DataError, match=r"read as 'counts:0.0027', gravity comes out at 9.\d+ g .*check the tag's "
                                        r"calibration \(--units counts:G_PER_COUNT and its zero, --zero\), or give "
                                        r"--units g, mg or m/s2 when the values are already converted"):
        load([str(path)])
    assert load([str(path)], DataOptions(units="g")).label_counts() == {"standing": 4, "walking": 4}


def test_movebank_burst_with_two_axes_is_refused_by_row_and_column(tmp_path):
    text = (FIXTURES / "movebank_eobs_bursts.csv").read_text().replace("2048 2048 2418 2050 2046 2420 2052 2044 2418 "
                                                                       "2048 2048 2416,XYZ", "2048 2048 2418 2050,XY")
    path = tmp_path / "bursts.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=r"row 2, column 'eobs:acceleration-axes': burst axes 'XY'"):
        load_movebank([path])


def test_a_movebank_file_with_blank_lines_names_a_bad_burst_by_its_line_and_counts_the_blank_rows(tmp_path):
    # A study hand-edited in a text editor (a blank line after the header and one at the end): the burst at line
    # 5 is named as row 5, where the researcher's editor shows it, and the blank rows are counted.
    lines = (FIXTURES / "movebank_eobs_bursts.csv").read_text().splitlines()
    path = tmp_path / "bursts.csv"
    path.write_text("\n".join([lines[0], "", *lines[1:], ""]) + "\n")
    kept = load_movebank([path])
    assert len(kept.recordings) == 2 and kept.report.notes == [f"{path}: 2 blank row(s) left out"]
    assert "Movebank rows without an accelerometer burst (other sensors)" in kept.report.left_out
    path.write_text(path.read_text().replace("2048 2048 2418 2050 2046 2420 2052 2044 2418 2048 2048 2416,XYZ",
                                             "2048 2048 2418 2050,XY"))
    with pytest.raises(DataError, match=r"row 3, column 'eobs:acceleration-axes': burst axes 'XY'"):
        load_movebank([path])


def test_a_movebank_study_saved_again_by_a_european_spreadsheet_loads_as_the_download_does(tmp_path):
    # Excel where the decimal mark is a comma saves "CSV UTF-8" with a byte-order mark, ";" between fields and
    # the burst rate as "10,54"; the burst's values are whole counts and stay as they were.
    rows = list(csv.reader((FIXTURES / "movebank_eobs_bursts.csv").read_text().splitlines()))
    path = tmp_path / "bursts_excel.csv"
    path.write_text("\r\n".join(";".join(cell.replace(".", ",") if cell == "10.54" else cell for cell in row)
                                 for row in rows) + "\r\n", encoding="utf-8-sig", newline="")
    download = load([str(FIXTURES / "movebank_eobs_bursts.csv")])
    saved_again = load([str(path)])
    assert [r.rate_hz for r in saved_again.recordings] == [r.rate_hz for r in download.recordings] == [10.54, 10.54]
    for got, want in zip(saved_again.recordings, download.recordings, strict=True):
        assert np.array_equal(got.samples_mg, want.samples_mg) and got.labels.tolist() == want.labels.tolist()
    assert saved_again.report.left_out == download.report.left_out


def test_a_movebank_burst_whose_timestamp_was_mistyped_is_refused_by_row_and_column_not_put_at_1970(tmp_path):
    # A researcher corrected a stork's annotated burst by hand and typed 31 June: the burst is not put at the epoch
    # (first in the stork's day, and a wrong time in the model's registry of what it was trained on).
    good = load_movebank([FIXTURES / "movebank_eobs_bursts.csv"])
    assert [r.start_s for r in good.recordings] == [1433138400.0, 1433139000.0]  # 06:00 and 06:10 UTC, 1 June 2015
    path = tmp_path / "bursts.csv"
    path.write_text((FIXTURES / "movebank_eobs_bursts.csv").read_text().replace(
        "1003,true,2015-06-01 06:10:00.000", "1003,true,2015-06-31 06:10:00.000"))
    with pytest.raises(DataError, match=r"bursts.csv, row 4, column 'timestamp': timestamp '2015-06-31 06:10:00.000'"):
        load_movebank([path])


def test_edge_impulse_example_from_its_documentation_is_read(tmp_path):
    shutil.copyfile(FIXTURES / "edge_impulse_docs_example.json", tmp_path / "idle.docs.json")
    loaded = load([str(tmp_path / "idle.docs.json")])
    recording = loaded.recordings[0]
    assert recording.rate_hz == 100.0 and recording.animal == "ac:87:a3:0a:2d:1b"
    assert recording.labels.tolist() == ["idle"] * 4  # the label comes from the file name, as in Studio
    assert recording.samples_mg[0].tolist() == pytest.approx([-9.81 / STANDARD_GRAVITY_M_S2 * 1000,
                                                              0.03 / STANDARD_GRAVITY_M_S2 * 1000,
                                                              1.21 / STANDARD_GRAVITY_M_S2 * 1000])
    assert "not verified" in loaded.report.notes[0]


def test_a_researcher_loading_edge_impulse_files_is_told_each_file_and_sample_once(tmp_path):
    for name in ("idle.1.json", "idle.2.json"):
        shutil.copyfile(FIXTURES / "edge_impulse_docs_example.json", tmp_path / name)  # 4 samples each
    loaded = edge_impulse.load_edge_impulse([tmp_path])
    assert sorted(Path(f).name for f in loaded.report.files) == ["idle.1.json", "idle.2.json"]
    assert loaded.report.rows == sum(len(r) for r in loaded.recordings) == 8
    assert loaded.report.notes == ["2 Edge Impulse file(s) with signatures not verified (no HMAC key given, or "
                                   "alg none)"]


def test_labels_studios_file_name_rule_would_cut_short_travel_whole_in_the_export(tmp_path):
    herd = simulated_recordings(n_animals=1, bouts_per_behaviour=1, bout_s=4, rate_hz=25, seed=2)
    spelt = {"rest": "lying (head up)", "forage": "grazing.browsing", "walk": "walk/trot", "run": "run"}
    renamed = Loaded([replace(r, labels=np.asarray([spelt[v] for v in r.labels])) for r in herd.recordings],
                     herd.report)
    files = edge_impulse.export_edge_impulse(renamed, tmp_path / "studio")
    listed = json.loads((tmp_path / "studio" / "info.labels").read_text())["files"]
    assert sorted(item["label"]["label"] for item in listed) == sorted(spelt.values())
    assert sorted(item["path"] for item in listed) == sorted(f.name for f in files)
    assert load([str(tmp_path / "studio")]).label_counts() == renamed.label_counts()


def test_researcher_brings_a_studio_data_export_and_gets_the_labels_studio_shows(tmp_path):
    """Studio's export: info.labels at the root lists each sample with the label Studio shows, which is not
    always the one its file name starts with (a sample relabelled in Studio keeps its name)."""
    document = (FIXTURES / "edge_impulse_docs_example.json").read_text()  # 4 samples, 10 ms apart
    for folder, name in (("training", "walk.s1.json"), ("training", "idle.s2.json"), ("testing", "idle.s3.json"),
                         ("training", "noise.s4.json")):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_text(document)
    (tmp_path / "info.labels").write_text(json.dumps({"version": 1, "files": [
        {"path": "training/walk.s1.json", "name": "walk.s1", "category": "training",
         "label": {"type": "label", "label": "run"}},  # relabelled in Studio
        {"path": "training/idle.s2.json", "name": "idle.s2", "category": "training",
         "label": {"type": "multi-label", "labels": [{"label": "idle", "startIndex": 0, "endIndex": 15},
                                                     {"label": "walk", "startIndex": 16, "endIndex": 30}]}},
        {"path": "testing/idle.s3.json", "name": "idle.s3", "category": "testing",
         "label": {"type": "label", "label": "idle"}},
        {"path": "training/noise.s4.json", "name": "noise.s4", "category": "training",
         "label": {"type": "unlabeled"}},
    ]}))
    loaded = load([str(tmp_path)])
    labels = {Path(r.source).name: r.labels.tolist() for r in loaded.recordings}
    assert labels == {"walk.s1.json": ["run"] * 4, "idle.s2.json": ["idle", "idle", "walk", "walk"],
                      "idle.s3.json": ["idle"] * 4}
    assert loaded.report.left_out == {edge_impulse.UNLABELED: 4}
    assert load([str(tmp_path / "training")]).label_counts() == {"run": 4, "idle": 2, "walk": 2}
    (tmp_path / "info.labels").unlink()
    (tmp_path / "training" / "walk (2).json").write_text(document.replace("-9.81", "-9.80"))  # another walk
    by_name = load([str(tmp_path / "training")]).label_counts()
    assert by_name == {"walk": 8, "idle": 4, "noise": 4}  # Studio's uploader reads "walk (2).json" as walk


def test_one_edge_impulse_file_without_device_name_is_named_as_why_animals_cannot_be_held_out(tmp_path):
    from models.honest import choose_folds

    herd = simulated_recordings(n_animals=3, bouts_per_behaviour=1, bout_s=8, rate_hz=25, seed=2)
    files = edge_impulse.export_edge_impulse(herd, tmp_path)
    anonymous = json.loads(files[0].read_text())
    del anonymous["payload"]["device_name"]  # a sample recorded on a phone in Studio
    files[0].write_text(json.dumps(anonymous))
    folds = choose_folds(make_windows(load([str(tmp_path)]), WindowSettings(window_s=4)))
    assert folds.kind == "grouped_by_bout"
    assert re.search(rf"^\d+ of \d+ windows name no animal \(from 1 bout\(s\), e.g. '{files[0].name}'\)",
                     folds.warning)
    assert "NOT animal-independent" in folds.warning and "fewer than two animals" not in folds.warning


def test_edge_impulse_export_signs_and_import_verifies_and_refuses_a_tampered_file(tmp_path):
    herd = simulated_recordings(n_animals=1, bouts_per_behaviour=1, bout_s=4, rate_hz=25, seed=2)
    files = edge_impulse.export_edge_impulse(herd, tmp_path, hmac_key=b"field-team-key")
    assert len(files) == 4 and all(f.name.split(".")[0] in {"rest", "forage", "walk", "run"} for f in files)
    document = json.loads(files[0].read_text())
    assert document["protected"]["alg"] == "HS256" and len(document["signature"]) == 64
    assert document["payload"]["sensors"][0] == {"name": "accX", "units": "m/s2"}
    back = edge_impulse.load_edge_impulse([tmp_path], hmac_key=b"field-team-key")
    by_label = {r.labels[0]: r for r in back.recordings}
    for original in herd.recordings:
        assert np.allclose(by_label[original.labels[0]].samples_mg, original.samples_mg, atol=0.01)
    document["payload"]["values"][0][0] += 1.0
    files[0].write_text(json.dumps(document))
    with pytest.raises(DataError, match="signature does not match"):
        edge_impulse.load_edge_impulse([files[0]], hmac_key=b"field-team-key")


def _signed_as_edge_impulse_documents(document: dict, key: bytes, encode) -> bytes:
    """Sign as Edge Impulse's ingestion examples do: encode with 64 zeros as signature, HMAC the bytes,
    put the signature in and encode again."""
    document = dict(document, signature="0" * 64)
    signature = hmac.new(key, encode(document).encode(), hashlib.sha256).hexdigest()
    return encode(dict(document, signature=signature)).encode()


@pytest.mark.parametrize(
    "encode",
    [
        lambda d: json.dumps(d, separators=(",", ":")),  # Node.js example and data forwarder: JSON.stringify
        json.dumps,  # Python example: json.dumps
        lambda d: json.dumps({"payload": d["payload"], "protected": d["protected"], "signature": d["signature"]},
                             indent=2),  # any encoder that signs the bytes it writes
    ],
    ids=["json_stringify", "python_json_dumps", "reordered_and_indented"],
)
def test_researcher_verifies_files_signed_the_way_edge_impulse_documents_in_node_and_python(tmp_path, encode):
    document = json.loads((FIXTURES / "edge_impulse_docs_example.json").read_text())
    path = tmp_path / "idle.signed.json"
    path.write_bytes(_signed_as_edge_impulse_documents(document, b"project-hmac-key", encode))
    loaded = edge_impulse.load_edge_impulse([path], hmac_key=b"project-hmac-key")
    assert loaded.recordings[0].labels.tolist() == ["idle"] * 4 and not loaded.report.notes
    with pytest.raises(DataError, match="signature does not match"):
        edge_impulse.load_edge_impulse([path], hmac_key=b"another-projects-key")
    path.write_bytes(path.read_bytes().replace(b"-9.83", b"-9.73"))
    with pytest.raises(DataError, match="signature does not match"):
        edge_impulse.load_edge_impulse([path], hmac_key=b"project-hmac-key")


def test_exporting_days_logged_to_files_of_one_name_to_edge_impulse_keeps_every_day(tmp_path):
    for day, t0 in (("day1", 0.0), ("day2", 100.0)):
        (tmp_path / day).mkdir()
        _csv(tmp_path / day, _rows(40, t0=t0), "collar7.csv")  # same animal, bout id and file name each day
    days = load_csv([tmp_path / "day1" / "collar7.csv", tmp_path / "day2" / "collar7.csv"], Columns.parse(COLUMNS))
    files = edge_impulse.export_edge_impulse(days, tmp_path / "studio")
    assert len(files) == len(set(files)) == 2 and sorted(tmp_path.joinpath("studio").glob("*.json")) == sorted(files)
    back = edge_impulse.load_edge_impulse([tmp_path / "studio"])
    assert len(back.recordings) == 2 and sum(len(r) for r in back.recordings) == 80  # both days, every sample
    assert {edge_impulse.label_from_name(f) for f in files} == {"walk"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("signature"), "missing 'signature'"),
        (lambda d: d["protected"].update(alg="RS256"), "protected.alg 'RS256'"),
        (lambda d: d["payload"].pop("interval_ms"), "payload has no 'interval_ms'"),
        (lambda d: d["payload"]["sensors"].pop(), "must include accX, accY, accZ"),
        (lambda d: d["payload"]["values"].__setitem__(1, [1.0, "x", 2.0]), "values must be one list of numbers"),
        (lambda d: [s.update(units="furlongs") for s in d["payload"]["sensors"]], "unknown unit 'furlongs'"),
        (lambda d: d["payload"]["sensors"][0].update(units="g"), "the three axes have different units"),
    ],
)
def test_broken_edge_impulse_files_are_refused_with_the_field_named(tmp_path, change, expected):
    document = json.loads((FIXTURES / "edge_impulse_docs_example.json").read_text())
    change(document)
    path = tmp_path / "walk.1.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=expected):
        edge_impulse.load_edge_impulse([path])


def test_each_source_is_recognised_from_its_path(tmp_path):
    shutil.copyfile(FIXTURES / "edge_impulse_docs_example.json", tmp_path / "idle.a.json")
    loaded = load([str(FIXTURES / "movebank_eobs_bursts.csv"), str(tmp_path / "idle.a.json"), "simulated:3"],
                  DataOptions())
    sources = {r.source.split(",")[0] for r in loaded.recordings}
    assert any("movebank" in s for s in sources) and any("idle.a.json" in s for s in sources)
    assert "simulator seed 3" in sources


def _cbor(value) -> bytes:
    """CBOR (RFC 8949) of JSON-like values as a writer such as Edge Impulse's SDKs may encode them: definite
    lengths, floats as doubles (0xfb), integers in their shortest head."""
    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        raise ValueError(n)

    if isinstance(value, bool) or value is None:
        return {False: b"\xf4", True: b"\xf5", None: b"\xf6"}[value]
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, str):
        return head(3, len(value.encode())) + value.encode()
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(map(_cbor, value))
    return head(5, len(value)) + b"".join(_cbor(k) + _cbor(v) for k, v in value.items())


@pytest.mark.parametrize(("hex_item", "value"), [
    # RFC 8949 Appendix A: examples of encoded CBOR data items
    ("00", 0), ("1903e8", 1000), ("3903e7", -1000), ("f93c00", 1.0), ("f9c400", -4.0), ("fa47c35000", 100000.0),
    ("fb3ff199999999999a", 1.1), ("f4", False), ("f6", None), ("6449455446", "IETF"),
    ("83010203", [1, 2, 3]), ("9f018202039f0405ffff", [1, [2, 3], [4, 5]]),
    ("a26161016162820203", {"a": 1, "b": [2, 3]}), ("bf6346756ef563416d7421ff", {"Fun": True, "Amt": -2}),
    ("7f657374726561646d696e67ff", "streaming"), ("c11a514b67b0", 1363896240),
])
def test_the_cbor_reader_reads_rfc_8949s_own_examples(hex_item, value):
    assert cbor_reader.decode(bytes.fromhex(hex_item)) == value


def test_researcher_loads_and_verifies_an_edge_impulse_cbor_file_as_the_uploader_takes_it(tmp_path):
    # Edge Impulse's uploader takes .cbor files in the data acquisition format: the same document in CBOR,
    # signed with HMAC-SHA256 over its bytes with a signature of 64 zeros.
    document = json.loads((FIXTURES / "edge_impulse_docs_example.json").read_text())
    unsigned = _cbor(dict(document, signature="0" * 64))
    signature = hmac.new(b"project-hmac-key", unsigned, hashlib.sha256).hexdigest()
    path = tmp_path / "idle.sample1.cbor"
    path.write_bytes(_cbor(dict(document, signature=signature)))

    loaded = load([str(tmp_path)], DataOptions(hmac_key=b"project-hmac-key"))  # a folder of .cbor files
    (cbor,) = loaded.recordings
    assert Path(cbor.source).name == "idle.sample1.cbor" and not loaded.report.notes, "signature verified"
    assert (cbor.rate_hz, cbor.animal, cbor.labels.tolist()) == (100.0, "ac:87:a3:0a:2d:1b", ["idle"] * 4)
    assert cbor.samples_mg[0].tolist() == pytest.approx([-9.81 / STANDARD_GRAVITY_M_S2 * 1000,
                                                         0.03 / STANDARD_GRAVITY_M_S2 * 1000,
                                                         1.21 / STANDARD_GRAVITY_M_S2 * 1000])
    with pytest.raises(DataError, match="idle.sample1.cbor, column 'signature': signature does not match"):
        edge_impulse.load_edge_impulse([path], hmac_key=b"another-projects-key")
    path.write_bytes(path.read_bytes().replace(struct.pack(">d", -9.83), struct.pack(">d", -9.73)))
    with pytest.raises(DataError, match="signature does not match"):
        edge_impulse.load_edge_impulse([path], hmac_key=b"project-hmac-key")


@pytest.mark.parametrize(("cut", "expected"), [
    (lambda raw: raw[:-5], "the file ends inside an item"),
    (lambda raw: raw + b"\x00", "1 byte\\(s\\) after the data item"),
    (lambda raw: b"\x1c" + raw, "reserved additional information 28"),
])
def test_a_broken_edge_impulse_cbor_file_is_refused_naming_the_file_and_where(tmp_path, cut, expected):
    document = json.loads((FIXTURES / "edge_impulse_docs_example.json").read_text())
    path = tmp_path / "walk.1.cbor"
    path.write_bytes(cut(_cbor(document)))
    with pytest.raises(DataError, match=rf"walk.1.cbor: not CBOR: CBOR: {expected}"):
        edge_impulse.load_edge_impulse([path])


# Edge Impulse's CSV format as its data-collection example documents it: first column the timestamp in
# milliseconds, one reading per row (github.com/edgeimpulse/example-data-collection-csv, "CSV Format").
EDGE_IMPULSE_CSV = """timestamp,accX,accY,accZ
0,4.220828473773600,1.8800472920291100,-16.89228981323240
16,4.471770735278730,2.0017025177553300,-17.887080018505500
32,4.31928972478658,2.4953566802978500,-18.926163539013300
48,4.648792312787470,2.958335718591510,-18.5336641043514
64,4.773739711926880,2.719663740594690,-18.800019623565700
80,4.653879991315310,2.6865938301637800,-19.98305510341230
"""


def test_researcher_loads_edge_impulse_csv_samples_labelled_by_file_name_or_label_column(tmp_path):
    (tmp_path / "wave.01.csv").write_text(EDGE_IMPULSE_CSV)
    (tmp_path / "wave.02.csv").write_text(EDGE_IMPULSE_CSV.replace("\n0,", "\n1000,").replace("\n16,", "\n1016,")
                                          .replace("\n32,", "\n1032,").replace("\n48,", "\n1048,")
                                          .replace("\n64,", "\n1064,").replace("\n80,", "\n1080,")
                                          .replace("-16.89", "-16.88"))
    loaded = load([str(tmp_path)])
    assert [(Path(r.source.split(",")[0]).name, r.rate_hz, r.labels.tolist()) for r in loaded.recordings] == [
        ("wave.01.csv", 62.5, ["wave"] * 6), ("wave.02.csv", 62.5, ["wave"] * 6)]
    assert loaded.recordings[0].samples_mg[0].tolist() == pytest.approx(
        [v / STANDARD_GRAVITY_M_S2 * 1000 for v in (4.220828473773600, 1.8800472920291100, -16.89228981323240)])
    labelled = tmp_path / "mixed" / "sample.csv"
    labelled.parent.mkdir()
    lines = EDGE_IMPULSE_CSV.splitlines()
    labelled.write_text("\n".join([lines[0] + ",label", *(f"{line},{'idle' if i < 3 else 'wave'}"
                                                          for i, line in enumerate(lines[1:]))]) + "\n")
    (recording,) = load([str(labelled)]).recordings
    assert recording.labels.tolist() == ["idle"] * 3 + ["wave"] * 3


@pytest.mark.parametrize(("change", "expected"), [
    (lambda text: text.replace("\n32,", "\n12,"), r"row 4, column 'timestamp': timestamp does not increase"),
    (lambda text: text.replace("4.31928972478658", "4.31.9"), r"row 4, column 'accX': '4.31.9' is not a number"),
    (lambda text: text.replace("\n80,", "\n800,"), r"row 7, column 'timestamp': gap of 736 ms"),
    (lambda text: "".join(f"{line.split(',', 1)[0]}000,{line.split(',', 1)[1]}\n" if line[0].isdigit() else line + "\n"
                          for line in text.splitlines()), r"row 2, column 'timestamp': timestamps 16000 apart"),
])
def test_a_broken_edge_impulse_csv_is_refused_naming_its_row_and_column(tmp_path, change, expected):
    path = tmp_path / "wave.01.csv"
    path.write_text(change(EDGE_IMPULSE_CSV))
    with pytest.raises(DataError, match=rf"wave.01.csv, {expected}"):
        load([str(path)])


def test_a_folder_of_edge_impulse_csvs_with_one_of_another_shape_names_that_file_and_its_columns(tmp_path):
    (tmp_path / "a_wave.csv").write_text(EDGE_IMPULSE_CSV)
    (tmp_path / "b_wave.csv").write_text(EDGE_IMPULSE_CSV.replace("accZ", "gyrZ"))
    with pytest.raises(DataError, match=r"b_wave.csv, row 1, column 'accZ': missing column\(s\) \['accZ'\]"):
        load([str(tmp_path)], DataOptions(fmt="edge-impulse"))


def test_a_sample_in_two_studio_exports_of_one_project_is_trained_and_scored_once(tmp_path):
    # Studio signs each sample when it exports it: the same sample comes with another `iat` (when the file was
    # made, Edge Impulse's docs say) and signature in Monday's export and in Thursday's.
    from models.sources import DUPLICATE

    key = b"project-hmac-key"
    document = json.loads((FIXTURES / "edge_impulse_docs_example.json").read_text())
    for export, iat in (("monday", 1764547200), ("thursday", 1764806400)):
        signed = dict(document, protected={**document["protected"], "iat": iat})
        signed["signature"] = edge_impulse.sign(signed, key)
        (tmp_path / export / "training").mkdir(parents=True)
        (tmp_path / export / "training" / "idle.s1.json").write_text(json.dumps(signed))
    other_collar = json.loads(json.dumps(document))
    other_collar["payload"]["device_name"] = "ac:87:a3:0a:2d:1c"  # the same values logged by another device
    other_collar["signature"] = edge_impulse.sign(other_collar, key)
    (tmp_path / "thursday" / "training" / "idle.s2.json").write_text(json.dumps(other_collar))

    loaded = load([str(tmp_path / "monday"), str(tmp_path / "thursday")], DataOptions(hmac_key=key))
    assert sorted((r.animal, Path(r.source).parent.parent.name) for r in loaded.recordings) == [
        ("ac:87:a3:0a:2d:1b", "monday"), ("ac:87:a3:0a:2d:1c", "thursday")]
    assert loaded.report.rows == 12 and loaded.report.left_out == {DUPLICATE: 4}
    assert f"1 recording(s) repeated another and were left out ({DUPLICATE})" in loaded.report.notes
    assert loaded.report.as_dict()["left_out_samples"] == {DUPLICATE: 4}


def _studio_export(folder: Path, iat: int | None, samples: dict[str, tuple[str, str, dict]]) -> None:
    """Write a Studio data export as Edge Impulse documents it: training/ and testing/ folders of data acquisition
    files and an info.labels at the root listing each file's `path`, `name`, `category` and `label`.
    samples: file name -> (category, values changed from the docs example as (old, new) text, label entry)."""
    document = (FIXTURES / "edge_impulse_docs_example.json").read_text()  # 4 samples, 10 ms apart
    listed = []
    for name, (category, (old, new), label) in samples.items():
        sample = json.loads(document.replace(old, new))
        if iat is None:
            del sample["protected"]["iat"]
        else:
            sample["protected"]["iat"] = iat  # the export signs each sample anew
        sample["signature"] = edge_impulse.sign(sample, b"project-hmac-key")
        (folder / category).mkdir(parents=True, exist_ok=True)
        (folder / category / name).write_text(json.dumps(sample))
        listed.append({"path": f"{category}/{name}", "name": name.rsplit(".", 1)[0], "category": category,
                       "label": label})
    (folder / "info.labels").write_text(json.dumps({"version": 1, "files": listed}))


def test_a_sample_relabelled_in_studio_between_two_exports_is_trained_on_under_its_new_label_only(tmp_path):
    from models.sources import DUPLICATE, RELABELLED

    walk, idle = {"type": "label", "label": "walk"}, {"type": "label", "label": "idle"}
    _studio_export(tmp_path / "november", 1761955200, {
        "walk.s1.json": ("training", ("-9.81", "-9.81"), walk),  # the sample the researcher will relabel
        "idle.s2.json": ("training", ("-9.81", "-9.70"), idle),  # the same in both exports
        "walk.s3.json": ("testing", ("-9.81", "-9.60"), walk),   # split in two parts later
        "idle.s5.json": ("training", ("-9.81", "-9.40"), idle),  # found to be noise later
    })
    _studio_export(tmp_path / "december", 1764547200, {
        "run.s1.json": ("training", ("-9.81", "-9.81"), {"type": "label", "label": "run"}),  # Studio: walk -> run
        "idle.s2.json": ("training", ("-9.81", "-9.70"), idle),
        "walk.s3.json": ("testing", ("-9.81", "-9.60"),
                         {"type": "multi-label", "labels": [{"label": "walk", "startIndex": 0, "endIndex": 15},
                                                            {"label": "run", "startIndex": 16, "endIndex": 30}]}),
        "run.s4.json": ("training", ("-9.81", "-9.50"), {"type": "label", "label": "run"}),  # new since November
        "idle.s5.json": ("training", ("-9.81", "-9.40"), {"type": "unlabeled"}),  # withdrawn from training
    })

    for order in (["november", "december"], ["december", "november"]):  # the later export wins, given first or not
        loaded = load([str(tmp_path / folder) for folder in order], DataOptions(hmac_key=b"project-hmac-key"))
        by_file = {(Path(r.source).parent.parent.name, Path(r.source).name): r.labels.tolist()
                   for r in loaded.recordings}
        assert by_file == {("december", "run.s1.json"): ["run"] * 4,
                           (order[0], "idle.s2.json"): ["idle"] * 4,  # the same label: the copy given first
                           ("december", "walk.s3.json"): ["walk", "walk", "run", "run"],
                           ("december", "run.s4.json"): ["run"] * 4}
        assert loaded.label_counts() == {"run": 10, "idle": 4, "walk": 2}
        assert loaded.report.rows == 36 and loaded.report.left_out == {RELABELLED: 12, DUPLICATE: 4,
                                                                        edge_impulse.UNLABELED: 4}
        assert ("3 sample(s) relabelled since an earlier Edge Impulse export, trained on under their latest label "
                "only (run.s1.json: walk -> run; walk.s3.json: walk -> walk+run; idle.s5.json: idle -> unlabeled)"
                ) in loaded.report.notes


def test_two_exports_without_iat_keep_the_label_of_the_export_given_last(tmp_path):
    from models.sources import RELABELLED

    for export, label in (("first", "walk"), ("second", "run")):
        _studio_export(tmp_path / export, None, {"s1.json": ("training", ("-9.81", "-9.81"),
                                                             {"type": "label", "label": label})})
    loaded = load([str(tmp_path / "first"), str(tmp_path / "second")])
    assert loaded.label_counts() == {"run": 4} and loaded.report.left_out == {RELABELLED: 4}
    assert "1 sample(s) relabelled" in loaded.report.notes[-1] and "s1.json: walk -> run" in loaded.report.notes[-1]


def test_a_studio_export_unzipped_in_part_tells_the_researcher_which_listed_samples_are_missing(tmp_path):
    idle, walk = {"type": "label", "label": "idle"}, {"type": "label", "label": "walk"}
    _studio_export(tmp_path / "export", 1764547200, {
        "idle.s1.json": ("training", ("-9.81", "-9.81"), idle),
        "walk.s2.json": ("training", ("-9.81", "-9.70"), walk),
        "walk.s3.json": ("testing", ("-9.81", "-9.60"), walk),
    })
    (tmp_path / "export" / "training" / "walk.s2.json").unlink()  # the unzip stopped short
    loaded = load([str(tmp_path / "export")])
    assert loaded.label_counts() == {"idle": 4, "walk": 4}
    assert ("1 sample(s) listed in info.labels are not in the export (e.g. training/walk.s2.json): an export "
            "unzipped in part? Not trained on") in loaded.report.notes
    # Only the samples of the folders given are missed: a researcher training on testing/ alone, or on one file
    # of training/, is told nothing of the others the root info.labels lists.
    assert not any("not in the export" in note for note in load([str(tmp_path / "export" / "testing")]).report.notes)
    one_file = load([str(tmp_path / "export" / "training" / "idle.s1.json")])
    assert one_file.label_counts() == {"idle": 4}
    assert not any("not in the export" in note for note in one_file.report.notes)
