"""A researcher trains a collar model on their own data from the command line, gets an honest
(leave-one-animal-out) score beside a 300-tree forest and the model in the field, and ships it: blob,
registry, promotion, an Edge Impulse .eim that Edge Impulse's own runner classifies with, and a bridge
that names the new model's classes."""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_estimator

from collar_firmware import blob as collar_blob
from collar_firmware import classifier
from collar_firmware import features as collar_features
from lora_bridge.access import Viewer
from lora_bridge.domain import activity
from models import dataset, registry
from models.budget import Limits
from models.eim import evaluate_eim, export_eim
from models.estimator import CollarForest
from models.field_model import field_scores, predict_blob
from models.honest import choose_folds, out_of_fold, scores
from models.recordings import DataError, Loaded, LoadReport
from models.simulated_source import simulated_recordings, write_labelled_csv
from models.sources import DataOptions, load
from models.windowing import Windows, WindowSettings
from tembo.cli import main

RANGER = Viewer("ranger.amani", "ranger")
SHIPPED = Path(classifier.__file__).with_name(classifier.DEFAULT_MODEL_FILE)
RENAMED = {"rest": "lying", "forage": "grazing", "walk": "walking", "run": "running"}


def test_collar_forest_is_a_scikit_learn_estimator():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(CollarForest(n_estimators=4, max_depth=4, random_state=0), on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == [] and len(results) > 40


def test_collar_forest_predicts_what_the_collar_predicts_from_its_blob():
    data = dataset.simulated(40, seed=8)
    names = np.asarray(data.classes)[data.labels]
    model = CollarForest(n_estimators=6, max_depth=6, random_state=1).fit(data.features, names)
    blob = model.to_blob(data.window_s, data.rate_hz, model_version=42, name="parity")
    assert collar_blob.parse(blob).classes == tuple(sorted(data.classes))
    fresh = dataset.simulated(15, seed=9)
    assert (predict_blob(blob, fresh.features) == model.predict(fresh.features)).all()


def test_a_deep_forest_fits_the_collar_budget_because_equal_leaves_are_stored_once():
    data = dataset.simulated(60, seed=3)
    names = np.asarray(data.classes)[data.labels]
    model = CollarForest(n_estimators=12, max_depth=None, max_leaf_nodes=60, random_state=0).fit(data.features, names)
    blob = model.to_blob(data.window_s, data.rate_hz)
    parsed = collar_blob.parse(blob)
    n_leaves = len(parsed.leaves) // len(parsed.classes)
    tree_leaves = sum(int((tree.tree_.children_left < 0).sum()) for tree in model.forest_.estimators_)
    assert len(parsed.feature) == tree_leaves - 12 and n_leaves < tree_leaves / 2
    fresh = dataset.simulated(15, seed=4)
    assert (predict_blob(blob, fresh.features) == model.predict(fresh.features)).all()
    collar = classifier.Model.from_bytes(blob)
    votes = classifier.array("i", bytes(4 * collar.n_classes))
    row = classifier.array("i", [int(v) for v in fresh.features[0]])
    assert list(collar.predict_proba(row, votes)) == model.votes(fresh.features[:1])[0].tolist()


def _animal_signature_windows(n_animals: int = 6, per_label: int = 30, seed: int = 0) -> Windows:
    """Windows whose labels can only be told apart by who the animal is: each animal shows each
    behaviour with its own, random offset of one feature, and every collar sits its own way (another
    feature). A model that saw the animal in training scores high; on an animal it never saw it can
    only guess."""
    rng = np.random.default_rng(seed)
    rows, labels, animals, bouts = [], [], [], []
    for a in range(n_animals):
        offsets = rng.permutation(4) * 300
        fit_mg = 500 * a
        for label in range(4):
            for b in range(3):  # three bouts per behaviour and animal
                for _ in range(per_label // 3):
                    row = rng.normal(0, 20, collar_features.N_FEATURES)
                    row[[0, 12, 13, 14]] += offsets[label]
                    row[1:12] += fit_mg
                    rows.append(np.rint(row))
                    labels.append(label)
                    animals.append(f"animal-{a}")
                    bouts.append(f"animal-{a}:{label}:{b}")
    return Windows(np.asarray(rows), np.asarray(labels), ("a", "b", "c", "d"), np.asarray(animals),
                   np.asarray(bouts), WindowSettings(), LoadReport(), 25.0)


def test_leave_one_animal_out_never_shares_an_animal_and_shows_what_leakage_hides():
    windows = _animal_signature_windows()
    folds = choose_folds(windows)
    assert folds.kind == "leave_one_animal_out" and folds.n_folds == 6 and folds.warning is None
    for train, test in folds.splitter.split(windows.features, windows.labels, folds.groups):
        assert not set(windows.animals[train]) & set(windows.animals[test])
    names = np.asarray(windows.classes)
    model = CollarForest(n_estimators=16, max_depth=8, random_state=0)
    honest = scores(names[windows.labels], names[out_of_fold(model, windows, folds)], windows.classes,
                    windows.animals)
    by_bout = Windows(windows.features, windows.labels, windows.classes, np.full(len(windows), ""), windows.bouts,
                      windows.settings, windows.report, 25.0)
    leaky = choose_folds(by_bout)
    assert leaky.kind == "grouped_by_bout" and "NOT animal-independent" in leaky.warning
    leaked = scores(names[by_bout.labels], names[out_of_fold(model, by_bout, leaky)], by_bout.classes,
                    by_bout.animals)
    assert leaked["macro_f1"] > 0.9 and honest["macro_f1"] < 0.5


def test_researcher_trains_from_their_own_csv_on_the_command_line(tmp_path, capsys):
    herd = simulated_recordings(n_animals=3, bouts_per_behaviour=2, bout_s=16, rate_hz=25, seed=4)
    names = {"animal": "tag", "bout": "segment", "time": "utc", "x": "surge", "y": "sway", "z": "heave",
             "label": "ethogram"}
    csv = write_labelled_csv(herd, tmp_path / "herd.csv", names, units="m/s2", iso_time=True)
    shipped_before = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    reg = tmp_path / "registry"
    args = ["models", "train", str(csv), "--columns", ",".join(f"{k}={v}" for k, v in names.items()),
            "--units", "m/s2", "--window", "4", "--overlap", "0.5", "--registry", str(reg),
            "--no-learning-curve", "--json"]
    assert main(args + ["--out", str(SHIPPED.parent / "trained")]) == 1
    assert "which Tembo ships" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "out")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cv"] == "leave_one_animal_out" and result["folds"] == 3 and result["warning"] is None
    assert result["classes"] == ["forage", "rest", "run", "walk"]
    assert result["windows"] == 3 * 4 * 2 * 7  # animals x behaviours x bouts x (4 s windows every 2 s in 16 s)
    assert set(result["per_class_f1"]) == set(result["classes"])
    assert 0 < result["macro_f1"] <= 1 and 0 < result["baseline_macro_f1"] <= 1
    assert result["field_macro_f1"] > 0.5  # the shipped model knows these four behaviours
    assert 0 < result["blob_bytes"] <= 16 * 1024 and result["fuel_per_window"] > 100_000
    blob = (tmp_path / "out" / "model.bin").read_bytes()
    parsed = collar_blob.parse(blob)
    assert parsed.classes == tuple(result["classes"]) and parsed.window_s == 4 and parsed.overlap_pct == 50
    assert parsed.model_version == result["model_version"] > classifier.Model.from_bytes(SHIPPED.read_bytes()).version
    figures = json.loads((tmp_path / "out" / "figures.json").read_text())
    assert {"confusion_matrix", "per_class_f1", "per_animal_accuracy", "feature_importance", "budget_use"} <= set(figures)
    assert (tmp_path / "out" / "report.html").read_text().count("data:image/png;base64,") >= 5
    assert result["kind"] in ("forest", "boosted") and parsed.format_version == {"forest": 1, "boosted": 2}[result["kind"]]
    if result["kind"] == "forest":  # emlearn exports forests; a boosted model has no C header
        assert "tembo_model_predict" in (tmp_path / "out" / "model.h").read_text()
    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() == shipped_before

    assert main(["models", "list", "--registry", str(reg), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["model_id"] for row in listed] == [result["model_id"]]
    assert main(["models", "promote", result["model_id"], "--registry", str(reg), "--json"]) == 0
    promoted = json.loads((reg / "promoted.json").read_text())
    assert promoted["model_version"] == parsed.model_version
    assert hashlib.sha256(Path(promoted["blob"]).read_bytes()).hexdigest() == promoted["blob_sha256"]


def test_researcher_evaluating_a_model_on_its_own_training_data_gets_no_in_sample_score(tmp_path, capsys):
    from models.workflow import TrainOptions, train

    names = {"animal": "tag", "bout": "segment", "time": "t", "x": "x", "y": "y", "z": "z", "label": "behaviour"}
    columns = ["--columns", ",".join(f"{k}={v}" for k, v in names.items())]
    season1 = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=21)
    season2 = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=22)
    trained_csv = write_labelled_csv(season1, tmp_path / "season1.csv", names)
    new_csv = write_labelled_csv(season2, tmp_path / "season2.csv", names)
    reg = tmp_path / "registry"
    options = TrainOptions(WindowSettings(window_s=4), grid=((4, 4, 1, None, None),), boosted_grid=(),
                           baseline_trees=10, learning_curve=False)
    trained = train(load([str(trained_csv)], DataOptions(columns=columns[1])), options, tmp_path / "out", reg)

    from signing_helpers import sign_blob

    released = tmp_path / "released.bin"  # the model as tembo release model signs it for the collars
    released.write_bytes(sign_blob((tmp_path / "out" / "model.bin").read_bytes()))
    assert main(["models", "evaluate", str(trained_csv), *columns, "--model", str(released),
                 "--registry", str(reg), "--json"]) == 0
    on_its_own = json.loads(capsys.readouterr().out)
    assert on_its_own["applicable"] is False and "macro_f1" not in on_its_own
    assert on_its_own["trained_on_recordings"] == len(season1.recordings)
    assert main(["models", "evaluate", str(trained_csv), str(new_csv), *columns,
                 "--model", str(tmp_path / "out" / "model.bin"), "--registry", str(reg), "--json"]) == 0
    mixed = json.loads(capsys.readouterr().out)
    assert mixed["applicable"] and mixed["trained_on_recordings"] == len(season1.recordings)
    assert mixed["windows"] == 2 * 4 * 3  # season 2 only: animals x behaviours x 4 s windows in 12 s
    assert main(["models", "evaluate", str(new_csv), *columns, "--model", trained["model_id"],
                 "--registry", str(reg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macro_f1"] == mixed["macro_f1"]


def test_a_sample_relabelled_in_studio_since_a_model_was_trained_on_it_is_still_not_scored_in_sample(tmp_path,
                                                                                                       capsys):
    # The model learnt November's export; in December the researcher relabels one of its samples in Studio and
    # evaluates the model on December's export: that sample's data is still data the model has seen.
    from models import edge_impulse
    from models.workflow import TrainOptions, train

    reg = tmp_path / "registry"
    season1 = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=21)
    season2 = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=22)
    november = edge_impulse.export_edge_impulse(season1, tmp_path / "november")
    options = TrainOptions(WindowSettings(window_s=4), grid=((4, 4, 1, None, None),), boosted_grid=(),
                           baseline_trees=10, learning_curve=False)
    trained = train(load([str(tmp_path / "november")]), options, tmp_path / "out", reg)

    december = tmp_path / "december"
    edge_impulse.export_edge_impulse(season2, december)
    listed = json.loads((december / "info.labels").read_text())
    for path in november:  # Studio exports every sample again, one of them under its new label
        (december / f"n_{path.name}").write_text(path.read_text())
        listed["files"].append({"path": f"n_{path.name}", "name": path.stem, "category": "training",
                                "label": {"type": "label", "label": path.name.split(".")[0]}})
    relabelled = next(item for item in listed["files"] if item["path"] == f"n_{november[0].name}")
    relabelled["label"]["label"] = next(c for c in ("rest", "forage", "walk", "run")
                                        if c != relabelled["label"]["label"])
    (december / "info.labels").write_text(json.dumps(listed))

    assert main(["models", "evaluate", str(december), "--model", trained["model_id"], "--registry", str(reg),
                 "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["trained_on_recordings"] == len(november)  # the relabelled sample among them
    assert figures["windows"] == 2 * 4 * 3  # December's new samples only: animals x behaviours x 4 s windows in 12 s


def test_a_field_model_trained_on_the_same_recordings_is_not_scored_on_them_beside_the_new_model(tmp_path):
    from models.workflow import TrainOptions, train

    reg = tmp_path / "registry"
    season1 = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=21)
    season2 = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=22)
    options = TrainOptions(WindowSettings(window_s=4), grid=((4, 4, 1, None, None),), boosted_grid=(),
                           baseline_trees=10, learning_curve=False)
    first = train(season1, options, tmp_path / "first", reg)
    from signing_helpers import sign_blob

    released = sign_blob((tmp_path / "first" / "model.bin").read_bytes())  # promoted, signed, installed as shipped
    in_the_field = replace(options, field_blob=released)
    again = train(season1, in_the_field, tmp_path / "again", reg)
    assert again["field_macro_f1"] is None and again["models"]["field"]["applicable"] is False
    assert again["models"]["field"]["trained_on_recordings"] == len(season1.recordings)
    both = Loaded(season1.recordings + season2.recordings, season1.report)
    widened = train(both, in_the_field, tmp_path / "widened", reg)
    assert widened["models"]["field"]["windows"] == 2 * 4 * 3  # season 2's windows only
    assert widened["field_macro_f1"] == field_scores(in_the_field.field_blob, season2)["macro_f1"]
    assert first["model_version"] < again["model_version"] < widened["model_version"]


def test_exporting_a_model_over_the_shipped_signed_model_is_refused(tmp_path, capsys, monkeypatch):
    from models import workflow

    with pytest.raises(workflow.OutputError, match="which Tembo ships"):
        workflow.check_out_dir(SHIPPED.parent)  # the folder of the shipped, signed default model
    firmware = tmp_path / "collar_firmware"  # a stand-in, so a regression cannot overwrite the real one
    firmware.mkdir()
    (firmware / SHIPPED.name).write_bytes(b"signed default model")
    monkeypatch.setattr(workflow, "SHIPPED_DIRS", (*workflow.SHIPPED_DIRS, firmware))
    monkeypatch.setattr(workflow, "REPO", tmp_path)
    reg = tmp_path / "registry"
    entry = registry.register(_renamed_model(registry.reserve_version(reg)), {}, reg)
    for option, target in (("--blob", firmware / SHIPPED.name), ("--eim", firmware / "model.eim"),
                           ("--c", firmware / "model.h"), ("--blob", firmware / "sub" / "model.bin")):
        assert main(["models", "export", entry.model_id, option, str(target), "--registry", str(reg)]) == 1
        assert "which Tembo ships" in capsys.readouterr().err
    assert sorted(p.name for p in firmware.iterdir()) == [SHIPPED.name]
    assert (firmware / SHIPPED.name).read_bytes() == b"signed default model"
    assert main(["models", "export", entry.model_id, "--blob", str(tmp_path / "v.bin"), "--registry", str(reg)]) == 0
    assert (tmp_path / "v.bin").read_bytes() == entry.blob_path.read_bytes()


def test_a_pilot_study_with_few_bouts_is_trained_or_told_which_bout_leaves_one_behaviour(tmp_path, capsys):
    names = {"animal": "tag", "bout": "segment", "time": "t", "x": "x", "y": "y", "z": "z", "label": "behaviour"}
    pilot = simulated_recordings(n_animals=1, bouts_per_behaviour=2, bout_s=12, rate_hz=25, seed=8,
                                 behaviours=("rest", "walk"))  # one stork, two bouts of each behaviour
    four_bouts = write_labelled_csv(pilot, tmp_path / "pilot.csv", names)
    columns = ",".join(f"{k}={v}" for k, v in names.items() if k != "animal")
    args = ["models", "train", "--columns", columns, "--window", "4", "--no-register", "--no-learning-curve", "--json"]
    assert main([*args, str(four_bouts), "--out", str(tmp_path / "four")]) == 0  # inner folds keep two behaviours
    assert json.loads(capsys.readouterr().out)["cv"] == "grouped_by_bout"
    one_each = Loaded([next(r for r in pilot.recordings if r.labels[0] == b) for b in ("rest", "walk")], pilot.report)
    two_bouts = write_labelled_csv(one_each, tmp_path / "two.csv", names)
    assert main([*args, str(two_bouts), "--out", str(tmp_path / "two")]) == 1
    assert re.search(r"holding out bout \S+ leaves only '(rest|walk)' to train on", capsys.readouterr().err)


def test_an_ethogram_of_more_behaviours_than_the_collar_reports_is_refused_before_training(tmp_path):
    from models.workflow import TrainOptions, train

    herd = simulated_recordings(n_animals=3, bouts_per_behaviour=2, bout_s=12, rate_hz=25, seed=1)
    ethogram = Loaded([replace(r, labels=np.full(len(r), f"behaviour {i % 17:02d}"))
                       for i, r in enumerate(herd.recordings)], herd.report)  # 17 behaviours
    with pytest.raises(DataError, match=r"17 behaviours, but a collar model reports at most 16 .*behaviour 16 \(3\)"):
        train(ethogram, TrainOptions(WindowSettings(window_s=4)), tmp_path / "out", register=False)
    assert not (tmp_path / "out" / "model.bin").exists()


def test_what_loading_did_to_the_data_is_in_the_summary_and_the_report(tmp_path):
    from models.workflow import TrainOptions, summary_json, train
    from tembo.models_command import _train_text

    herd = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=12, rate_hz=25, seed=21)
    wild = Loaded([replace(r, samples_mg=r.samples_mg * (3 if r.labels[0] == "run" else 1)) for r in herd.recordings],
                  herd.report)  # a logger with a wider range than the collar's 4 g
    options = TrainOptions(WindowSettings(window_s=4), grid=((4, 4, 1, None, None),), boosted_grid=(),
                           baseline_trees=10, learning_curve=False)
    result = train(wild, options, tmp_path / "out", register=False)
    note = next(n for n in result["data"]["notes"] if "full scale" in n)
    assert note in summary_json(result)["notes"] and f"note            {note}" in _train_text(summary_json(result))
    assert html.escape(note) in (tmp_path / "out" / "report.html").read_text()


def test_bad_data_on_the_command_line_exits_1_with_the_message(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("ax,ay,az,behaviour\n0.1,0.2,nan,rest\n")
    assert main(["models", "train", str(bad), "--columns", "x=ax,y=ay,z=az,label=behaviour", "--rate", "25",
                 "--out", str(tmp_path / "out")]) == 1
    assert "bad.csv, row 2, column 'az'" in capsys.readouterr().err


@functools.cache
def _renamed_forest() -> tuple[CollarForest, int, int]:
    """The renamed herd forest, trained once: it is deterministic, and to_blob leaves it unchanged."""
    data = dataset.simulated(60, seed=12)
    names = np.asarray([RENAMED[c] for c in data.classes])[data.labels]
    model = CollarForest(n_estimators=8, max_depth=6, random_state=0).fit(data.features, names)
    return model, data.window_s, data.rate_hz


def _renamed_model(model_version: int) -> bytes:
    model, window_s, rate_hz = _renamed_forest()
    return model.to_blob(window_s, rate_hz, model_version=model_version, name="renamed herd model")


@functools.cache
def _small_forest() -> tuple[CollarForest, int, int]:
    """The small herd forest, trained once (deterministic, unchanged by to_blob)."""
    data = dataset.simulated(30, seed=4)
    model = CollarForest(n_estimators=4, max_depth=4, random_state=1).fit(data.features, data.labels)
    return model, data.window_s, data.rate_hz


def _small_model(model_version: int) -> bytes:
    model, window_s, rate_hz = _small_forest()
    return model.to_blob(window_s, rate_hz, model_version=model_version, name="small herd model")


def test_an_exported_eim_ends_when_edge_impulses_runner_stops_it_even_under_a_parent_ignoring_sigint(tmp_path):
    import signal
    import subprocess

    from edge_impulse_linux.runner import ImpulseRunner

    eim = export_eim(_renamed_model(9), tmp_path / "herd.eim")
    runner = ImpulseRunner(str(eim))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a service or a test worker runs it
    try:
        runner.init()
        process = runner._runner  # the model's process, which stop() forgets
    finally:
        signal.signal(signal.SIGINT, previous)
        runner.stop()
    try:
        assert process.wait(timeout=30) is not None
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the .eim kept running after ImpulseRunner.stop()") from None


def test_exported_eim_answers_edge_impulse_runner_with_the_blobs_classes(tmp_path):
    from edge_impulse_linux.runner import ImpulseRunner

    blob = _renamed_model(9)
    eim = export_eim(blob, tmp_path / "herd.eim")
    window = dataset.signals.accel_window("walk", 250, 25, np.random.default_rng(3))
    runner = ImpulseRunner(str(eim))
    try:
        info = runner.init()
        assert info["model_parameters"]["labels"] == list(collar_blob.parse(blob).classes)
        assert info["model_parameters"]["input_features_count"] == 750 and info["project"]["deploy_version"] == 9
        answer = runner.classify((window.reshape(-1) * 9.80665 / 1000).tolist())["result"]["classification"]
        with pytest.raises(Exception, match="classify needs 750 values"):
            runner.classify([0.0] * 5)
        with pytest.raises(Exception, match="classify values must be numbers"):
            runner.classify(["x"] * 750)
    finally:
        runner.stop()
    assert set(answer) == {"grazing", "lying", "running", "walking"}
    feats = collar_features.compute_features(classifier.array("h", window.reshape(-1).tolist()), 250, 25,
                                             collar_features.new_feature_buffer())
    assert max(answer, key=answer.get) == predict_blob(blob, np.asarray([list(feats)]))[0]


def test_any_eim_is_scored_on_our_folds_like_the_collar_model(tmp_path):
    eim = export_eim(SHIPPED.read_bytes(), tmp_path / "shipped.eim")
    herd = simulated_recordings(n_animals=3, bouts_per_behaviour=1, bout_s=20, seed=6)
    through_runner = evaluate_eim(eim, herd)
    on_collar = field_scores(SHIPPED.read_bytes(), herd)
    assert through_runner["cv"] == "leave_one_animal_out" and len(through_runner["per_fold_macro_f1"]) == 3
    assert through_runner["windows"] == on_collar["windows"] == 3 * 4 * 2
    assert through_runner["macro_f1"] == on_collar["macro_f1"]


def test_an_eims_fold_of_an_animal_that_never_ran_is_scored_on_what_it_did_not_on_a_class_it_lacks(tmp_path):
    # A calf seen resting, foraging and walking but never running: its held-out fold has no "run" window, and
    # a class with no window and no prediction in the fold is no failure of the model there.
    from sklearn.metrics import f1_score

    from models.windowing import make_windows

    eim = export_eim(SHIPPED.read_bytes(), tmp_path / "shipped.eim")
    herd = simulated_recordings(n_animals=3, bouts_per_behaviour=1, bout_s=20, seed=6)
    calf = [r for r in herd.recordings if r.animal == "animal-03" and r.labels[0] != "run"]
    study = Loaded([r for r in herd.recordings if r.animal != "animal-03"] + calf, herd.report)
    figures = evaluate_eim(eim, study)
    assert figures["cv"] == "leave_one_animal_out" and len(figures["per_fold_macro_f1"]) == 3

    model = classifier.Model.from_bytes(SHIPPED.read_bytes())
    windows = make_windows(Loaded(calf, herd.report), WindowSettings(window_s=model.window_s, rate_hz=model.rate_hz))
    truth, predicted = windows.label_names(), predict_blob(SHIPPED.read_bytes(), windows.features)
    assert "run" not in set(truth)
    assert figures["per_fold_macro_f1"][2] == round(float(f1_score(truth, predicted, average="macro")), 4)


def test_field_model_and_an_eim_are_scored_on_a_researchers_capitalised_labels_as_on_their_own_spelling(tmp_path):
    herd = simulated_recordings(n_animals=3, bouts_per_behaviour=1, bout_s=20, seed=6)
    capitalised = Loaded([replace(r, labels=np.char.capitalize(r.labels)) for r in herd.recordings], herd.report)
    as_spelt = field_scores(SHIPPED.read_bytes(), herd)
    on_capitals = field_scores(SHIPPED.read_bytes(), capitalised)
    assert on_capitals["applicable"] and on_capitals["common_classes"] == as_spelt["common_classes"]
    assert on_capitals["macro_f1"] == as_spelt["macro_f1"] > 0.5  # not every "Walk" window marked wrong
    assert on_capitals["spelt_as_the_model"] == {"Rest": "rest", "Forage": "forage", "Walk": "walk", "Run": "run"}
    eim = export_eim(SHIPPED.read_bytes(), tmp_path / "shipped.eim")
    assert evaluate_eim(eim, capitalised)["macro_f1"] == as_spelt["macro_f1"]


def test_bridge_names_activity_from_the_model_version_the_collar_runs(tmp_path, sqlite_url):
    """Twin -> bridge -> dashboard with a model whose classes are not the codec's: the map shows its names."""
    from signing_helpers import collar_trust, sign_blob

    from lora_bridge.service import open_bridge
    from ranger_dashboard import views
    from simulator.animals import AnimalIdentity, SimulatedAnimal
    from simulator.fleet import Fleet
    from simulator.reserve import demo_reserve

    reg = tmp_path / "registry"
    blob = _renamed_model(registry.next_version(reg))
    entry = registry.register(blob, {"metrics": {}}, reg)
    shipped = classifier.Model.from_bytes(SHIPPED.read_bytes())
    start = datetime(2026, 3, 1, tzinfo=UTC)
    reserve = demo_reserve()
    animal = SimulatedAnimal(AnimalIdentity("tembo-collar-07", "70B3D57ED0060007", "Shaba"), reserve,
                             int(start.timestamp()), seed=5, home_xy=(0.0, 0.0))
    fleet = Fleet(animals=[animal], reserve=reserve, start=start, days=0.3)
    collar = fleet.collar("tembo-collar-07")
    collar.trust = collar_trust(collar.hal.storage)  # a collar that holds the test release key
    collar.hal.storage.write("model", sign_blob(blob))  # as `tembo release model` rolls it out
    collar.reload_model()  # taken up once its signature is checked, a few steps per wake-up
    with open_bridge(sqlite_url, model_registry=str(reg)) as bridge:
        bridge.register_animal("tembo-collar-07", "Shaba")
        for message in fleet.uplinks():
            bridge.ingest_tts_uplink(json.dumps(message).encode())
        shaba = next(a for a in bridge.animals(viewer=RANGER) if a.name == "Shaba")
        summaries = bridge.activity(shaba.animal_id, viewer=RANGER)
    new = [s for s in summaries if s.model_version == entry.model_version]
    old = [s for s in summaries if s.model_version == shipped.version]
    assert len(new) >= 4 and len(old) + len(new) == len(summaries)
    assert collar.model.version == entry.model_version
    classes = set(RENAMED.values())
    assert all(set(s.shares_pct) == classes and s.dominant in classes for s in new)
    assert all(set(s.shares_pct) == set(shipped.classes) for s in old)
    frame = views.activity_frame(new)
    assert classes <= set(frame.columns) and shaba.behaviour in classes
    truth = [animal.state_at(t).behaviour for t in range(int(start.timestamp()), int(start.timestamp()) + 25920, 60)]
    most_common_truth = max(set(truth), key=truth.count)
    shown = views.behaviour_shares(frame)
    assert shown.index[0] == RENAMED[most_common_truth]


@pytest.mark.parametrize("bad_version", [None, 999])
def test_activity_of_a_model_the_bridge_does_not_know_is_not_named_from_another_models_list(tmp_path, bad_version):
    from lora_bridge.domain import activity

    names = activity.class_names_for(bad_version, str(tmp_path)) if bad_version is not None else []
    assert names == []
    assert activity.shares_by_class([60.0, 40.0], names) == {"class_0": 60.0, "class_1": 40.0}
    shipped = classifier.Model.from_bytes(SHIPPED.read_bytes())
    assert activity.class_names_for(shipped.version, str(tmp_path)) == list(shipped.classes)


def test_bridge_and_model_tools_share_one_registry_default():
    from lora_bridge.settings import BridgeSettings

    assert Path(BridgeSettings().model_registry) == registry.DEFAULT_REGISTRY


def test_c_export_through_emlearn_compiles_and_agrees_with_the_estimator(tmp_path):
    import subprocess

    import emlearn

    from models.c_export import write_c

    data = dataset.simulated(30, seed=14)
    names = np.asarray(data.classes)[data.labels]
    model = CollarForest(n_estimators=4, max_depth=5, random_state=2).fit(data.features, names)
    header = write_c(model, tmp_path / "model.h", name="herd")
    fresh = dataset.simulated(5, seed=15)
    from models.estimator import quantize

    rows = quantize(fresh.features, model.scales_)
    program = tmp_path / "main.c"
    table = ",".join("{" + ",".join(map(str, r)) + "}" for r in rows)
    n, width = rows.shape
    program.write_text(
        '#include <stdio.h>\n#include "model.h"\n'
        f"static const int16_t rows[{n}][{width}] = {{{table}}};\n"
        f'int main(void) {{ for (int i = 0; i < {n}; i++) printf("%s\\n", herd_classes[herd_predict(rows[i], {width})]);'
        " return 0; }\n")
    exe = tmp_path / "main"
    subprocess.run(["gcc", "-O1", "-I", emlearn.includedir, "-I", str(header.parent), "-o", str(exe), str(program)],
                   check=True)
    printed = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    # emlearn counts one vote per tree, the collar and scikit-learn add the trees' probabilities: close
    # calls may differ, the rest agree
    assert len(printed) == len(rows)
    assert np.mean(np.asarray(printed) == model.predict(fresh.features)) >= 0.9


def test_registry_refuses_to_promote_what_it_does_not_hold_or_what_changed(tmp_path):
    reg = tmp_path / "registry"
    entry = registry.register(_renamed_model(registry.next_version(reg)), {"metrics": {"macro_f1": 0.9}}, reg)
    with pytest.raises(registry.RegistryError, match="no model matches 'v99'"):
        registry.promote("v99", reg)
    with pytest.raises(registry.RegistryError, match="already registered"):
        registry.register(entry.blob_path.read_bytes(), {}, reg)
    blob = bytearray(entry.blob_path.read_bytes())
    blob[-1] ^= 1
    entry.blob_path.write_bytes(bytes(blob))
    with pytest.raises(collar_blob.ModelError, match="CRC mismatch"):
        registry.promote(entry.model_id, reg)
    assert registry.promoted(reg) is None


def test_researcher_names_model_v2_and_gets_v2_even_with_v20_and_v21_registered(tmp_path, capsys):
    reg = tmp_path / "registry"
    ids = {v: registry.register(_renamed_model(v), {"budget": {"fuel_per_window": 1}}, reg).model_id
           for v in (2, 20, 21)}
    assert main(["models", "promote", "v2", "--registry", str(reg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_id"] == ids[2]
    assert registry.find("21", reg).model_id == ids[21] and registry.find(ids[20][:6], reg).model_id == ids[20]


def test_a_model_trained_over_the_collars_budget_is_registered_but_never_promoted(tmp_path):
    reg = tmp_path / "registry"
    data = dataset.simulated(80, seed=3)
    hard = np.random.default_rng(0).permutation(np.asarray(data.classes)[data.labels])  # labels trees must memorise
    big = CollarForest(n_estimators=40, random_state=0).fit(data.features, hard).to_blob(
        data.window_s, data.rate_hz, model_version=registry.reserve_version(reg))
    assert len(big) > Limits().blob_bytes  # as if trained with --budget-bytes raised
    entry = registry.register(big, {"budget": {"fuel_per_window": 1}}, reg)
    with pytest.raises(registry.RegistryError, match=rf"{entry.model_id} does not fit the collar's budget \(blob "
                       rf"{len(big)} B > {Limits().blob_bytes} B\)"):  # read a record at a time, its heap fits
        registry.promote(entry.model_id, reg)
    slow = registry.register(_renamed_model(registry.reserve_version(reg)),
                             {"budget": {"fuel_per_window": Limits().fuel_per_window + 1}}, reg)
    with pytest.raises(registry.RegistryError, match=r"fuel \d+ > \d+ per window"):
        registry.promote(slow.model_id, reg)
    assert registry.promoted(reg) is None
    unmeasured = registry.register(_renamed_model(registry.reserve_version(reg)), {}, reg)  # not trained by Tembo
    with pytest.raises(registry.RegistryError, match=rf"{unmeasured.model_id} has no fuel per window measured"):
        registry.promote(unmeasured.model_id, reg)
    assert registry.promoted(reg) is None
    fits = registry.register(_renamed_model(registry.reserve_version(reg)), {"budget": {"fuel_per_window": 1}}, reg)
    assert registry.promote(fits.model_id, reg)["model_id"] == fits.model_id


def test_a_damaged_registry_entry_is_named_and_does_not_stop_the_next_training(tmp_path, capsys):
    reg = tmp_path / "registry"
    damaged = registry.register(_renamed_model(registry.reserve_version(reg)), {}, reg)
    (damaged.folder / "entry.json").write_text('{"model_id": "v2-', encoding="utf-8")  # a hand edit gone wrong
    assert main(["models", "list", "--registry", str(reg)]) == 1
    assert f"{damaged.folder / 'entry.json'}: not a readable registry entry" in capsys.readouterr().err
    version = registry.reserve_version(reg)  # the next training still gets a version of its own
    assert version > damaged.model_version
    assert registry.register(_renamed_model(version), {}, reg).model_version == version


def test_comparing_models_scored_on_other_recordings_or_folds_warns_that_a_higher_score_says_nothing(tmp_path,
                                                                                                    capsys):
    reg = tmp_path / "registry"
    storks = {"recording_digests": ["0a1b", "2c3d"], "fingerprint": "f1"}

    def registered(dataset: dict, cv: str, macro_f1: float) -> str:
        blob = _renamed_model(registry.reserve_version(reg))
        return registry.register(blob, {"dataset": dataset, "metrics": {"cv": cv, "macro_f1": macro_f1}}, reg).model_id

    first = registered(storks, "leave_one_animal_out", 0.80)
    same = registered({**storks, "fingerprint": "f2"}, "leave_one_animal_out", 0.84)  # other window, same storks
    easier = registered({"recording_digests": ["0a1b"], "fingerprint": "f3"}, "leave_one_animal_out", 0.95)
    by_bout = registered(storks, "grouped_by_bout", 0.97)
    assert main(["models", "compare", first, same, easier, by_bout, "--registry", str(reg), "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [row["scored_alike_first"] for row in rows] == [True, True, False, False]
    assert f"{easier}, {by_bout} not scored on the same recordings with the same folds as {first}" in captured.err
    assert main(["models", "compare", first, same, "--registry", str(reg)]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_two_researchers_training_into_one_registry_at_once_both_get_their_model_registered(tmp_path):
    reg = tmp_path / "registry"
    first = registry.reserve_version(reg)  # both trainings reach their final model before either registers
    second = registry.reserve_version(reg)
    assert first != second and registry.next_version(reg) > max(first, second)
    registry.register(_renamed_model(second), {"metrics": {"macro_f1": 0.8}}, reg)
    registry.register(_renamed_model(first), {"metrics": {"macro_f1": 0.9}}, reg)
    assert sorted(e.model_version for e in registry.entries(reg)) == sorted([first, second])
    assert registry.reserve_version(reg) > max(first, second)


def test_two_registrations_of_one_version_at_once_leave_one_model_of_that_version(tmp_path):
    import threading

    reg = tmp_path / "registry"
    version = registry.next_version(reg)
    blobs = [_renamed_model(version), _small_model(version)]  # one version, two models
    start, outcomes = threading.Barrier(2), []

    def register(blob: bytes) -> None:
        start.wait()
        try:
            outcomes.append(registry.register(blob, {}, reg).model_id)
        except registry.RegistryError as refused:
            outcomes.append(str(refused))

    threads = [threading.Thread(target=register, args=(blob,)) for blob in blobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.startswith(f"v{version}-") for o in outcomes) == [False, True]
    assert [e.model_version for e in registry.entries(reg)] == [version]
    assert len(list(reg.glob(activity.REGISTRY_BLOBS))) == 1  # the bridge names shares from one class list


def test_an_interrupted_registration_leaves_no_half_entry_and_registering_again_works(tmp_path, monkeypatch):
    reg = tmp_path / "registry"
    blob = _renamed_model(registry.reserve_version(reg))
    report = tmp_path / "report.html"
    report.write_text("<html>report</html>")

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry.shutil, "copyfile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        registry.register(blob, {}, reg, extra_files={"report.html": report})
    assert registry.entries(reg) == [] and list(reg.glob(activity.REGISTRY_BLOBS)) == []
    monkeypatch.undo()
    entry = registry.register(blob, {}, reg, extra_files={"report.html": report})
    assert (entry.folder / "report.html").read_text() == "<html>report</html>"


def test_two_promotions_at_once_never_leave_a_broken_promoted_json(tmp_path):
    import threading

    reg = tmp_path / "registry"
    ids = [registry.register(_renamed_model(registry.reserve_version(reg)), {"budget": {"fuel_per_window": 1}},
                             reg).model_id for _ in range(2)]
    start, failures = threading.Barrier(2), []

    def promote(model_id: str) -> None:
        start.wait()
        for _ in range(40):
            try:
                registry.promote(model_id, reg, note="y" * (4000 if model_id == ids[0] else 1))
            except Exception as err:  # noqa: BLE001 - any failure of a promotion is what this test looks for
                failures.append(repr(err))

    threads = [threading.Thread(target=promote, args=(model_id,)) for model_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert registry.promoted(reg)["model_id"] in ids


def test_a_stork_model_with_five_classes_names_status_and_shares_beyond_the_codecs_four(tmp_path, sqlite_url):
    import bridge_builders as b

    from collar_firmware import codec

    reg = tmp_path / "registry"
    classes = ("A_FLIGHT", "P_FLIGHT", "SITTING", "STND", "WALK")
    rng = np.random.default_rng(0)
    features = np.rint(rng.normal(0, 100, (200, collar_features.N_FEATURES)))
    labels = np.asarray(classes)[np.arange(200) % 5]
    features[:, 0] += (np.arange(200) % 5) * 400
    version = registry.next_version(reg)
    registry.register(CollarForest(4, 4, random_state=0).fit(features, labels).to_blob(3, 25, model_version=version),
                      {}, reg)
    status = dict(time_s=b.T0_S, lat=-2.5, lon=37.5, fix_age_s=0, battery_mv=3900, temperature_c=30.0,
                  fw_version="1.2.3", model_version=version, uptime_h=1, reset_cause="power_on", behaviour=4,
                  queue_depth=0, errors=0)
    shares = dict(time_s=b.T0_S - 3600, interval_min=60, model_version=version, vedba_mean_mg=90, vedba_max_mg=700,
                  shares=[5.0, 5.0, 10.0, 20.0, 60.0])
    with b.fresh_bridge(sqlite_url, model_registry=str(reg)) as bridge:
        bridge.register_animal("collar-01", "Ciconia")
        assert bridge.ingest_tts_uplink(b.tts_uplink((codec.port_of("status"), codec.encode("status", status)),
                                                     f_cnt=1)).ok
        assert bridge.ingest_tts_uplink(b.tts_uplink((codec.port_of("activity"), codec.encode("activity", shares)),
                                                     f_cnt=2)).ok
        stork = bridge.animals(viewer=RANGER)[0]
        summary = bridge.activity(stork.animal_id, viewer=RANGER)[0]
    assert stork.behaviour == "WALK"
    assert summary.shares_pct == dict(zip(classes, [5.0, 5.0, 10.0, 20.0, 60.0], strict=True))
    assert summary.dominant == "WALK"


def test_a_researchers_promotion_is_on_disk_under_its_name_before_the_command_returns(tmp_path, monkeypatch):
    """A power cut just after `tembo models promote` said it was done must not bring back the model promoted
    before: the new promoted.json is fsynced, renamed over the old one, and then its folder is fsynced (the
    rename lives in the folder, which a file's own fsync does not cover)."""
    import os

    reg = tmp_path / "registry"
    model_ids = [registry.register(_renamed_model(registry.reserve_version(reg)), {"budget": {"fuel_per_window": 1}},
                                   reg).model_id for _ in range(2)]
    registry.promote(model_ids[0], reg)
    happened: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        happened.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(source, target) -> None:
        real_replace(source, target)
        happened.append(("replace", str(target)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", rename)
    registry.promote(model_ids[1], reg)
    monkeypatch.undo()
    promoted_json = [target for kind, target in happened if kind == "replace" and target.endswith("promoted.json")]
    assert len(promoted_json) == 1
    after = happened[happened.index(("replace", promoted_json[0])):]
    assert ("fsync", str(Path(promoted_json[0]).parent)) in after, "the folder holding the new name is fsynced"
    assert registry.promoted(reg)["model_id"] == model_ids[1]


def test_a_researchers_registered_model_is_on_disk_under_its_name_before_the_command_returns(tmp_path, monkeypatch):
    """A power cut just after `tembo models register` said it was done must not lose the entry it named:
    the staged folder is renamed into the registry's entries, and then that folder is fsynced (the new
    name lives there)."""
    import os

    reg = tmp_path / "registry"
    happened: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        happened.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(source, target) -> None:
        real_rename(source, target)
        happened.append(("rename", str(target)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    entry = registry.register(_renamed_model(registry.reserve_version(reg)), {}, reg)
    monkeypatch.undo()
    assert ("rename", str(entry.folder)) in happened
    after = happened[happened.index(("rename", str(entry.folder))):]
    assert ("fsync", str(entry.folder.parent)) in after, "the folder holding the entry's new name is fsynced"
