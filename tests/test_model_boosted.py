"""Boosted trees as a collar model: the format-2 blob, its estimator, and the collar's reader of both formats."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_estimator

from collar_firmware import blob as collar_blob
from collar_firmware import features as collar_features
from collar_firmware.blob import ModelError
from collar_firmware.classifier import Model
from models import dataset
from models.boosted import CollarBoost
from models.field_model import predict_blob
from tests.model_helpers import GOLDEN_MODEL, micropython_session


@pytest.fixture(scope="module")
def stork_like():
    """A fitted boosted model on simulated windows, its blob and fresh windows to classify."""
    data = dataset.simulated(40, seed=11)
    names = np.asarray(data.classes)[data.labels]
    model = CollarBoost(n_estimators=12, max_leaf_nodes=6, random_state=0).fit(data.features, names)
    fresh = dataset.simulated(10, seed=12).features
    return model, model.to_blob(data.window_s, data.rate_hz, model_version=7, name="boosted"), fresh


def rebuilt(body: bytes, version: int = collar_blob.FORMAT_BOOSTED) -> bytes:
    """Return an unsigned blob of body with a correct header of the given format version."""
    return collar_blob.MAGIC + struct.pack("<BBHII", version, 0, 0, len(body), zlib.crc32(body)) + body


def records_of(data: bytes) -> list[tuple[int, bytes]]:
    body, pos, out = data[16:], 0, []
    while pos < len(body):
        tag, length = struct.unpack_from("<BH", body, pos)
        out.append((tag, body[pos + 3 : pos + 3 + length]))
        pos += 3 + length
    return out


def body_from(records: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack("<BH", tag, len(value)) + value for tag, value in records)


def test_researcher_boosted_model_is_a_scikit_learn_estimator():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(CollarBoost(n_estimators=3, max_leaf_nodes=4, min_samples_leaf=1, random_state=0),
                                  on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == [] and len(results) > 40


def test_boosted_model_predicts_what_the_collar_predicts_from_its_format_2_blob(stork_like):
    model, blob, fresh = stork_like
    parsed = collar_blob.parse(blob)
    assert parsed.format_version == collar_blob.FORMAT_BOOSTED
    assert parsed.classes == tuple(model.classes_) and parsed.model_version == 7
    assert len(parsed.roots) == 12 * len(model.classes_)
    assert (predict_blob(blob, fresh) == model.predict(fresh)).all()
    collar = Model.from_bytes(blob)
    votes = collar.predict_proba(collar_blob.array("i", fresh[0].astype(int).tolist()), collar_blob.array("i", [0] * 4))
    assert list(votes) == model.scores(fresh[:1])[0].tolist()


def test_boosted_model_on_two_classes_scores_one_class_against_the_other():
    data = dataset.simulated(30, seed=3)
    names = np.asarray(data.classes)[data.labels]
    keep = np.isin(names, ["rest", "run"])
    model = CollarBoost(n_estimators=5, max_leaf_nodes=4, random_state=0).fit(data.features[keep], names[keep])
    blob = model.to_blob(data.window_s, data.rate_hz)
    fresh = dataset.simulated(6, seed=4).features
    assert len(collar_blob.parse(blob).roots) == 5
    assert (predict_blob(blob, fresh) == model.predict(fresh)).all()


def test_a_forest_blob_of_format_1_still_loads_and_predicts_beside_format_2():
    parsed = collar_blob.parse(GOLDEN_MODEL.read_bytes())
    assert parsed.format_version == collar_blob.FORMAT_VERSION and parsed.tree_class is None
    model = Model.from_bytes(GOLDEN_MODEL.read_bytes())
    assert not model.boosted and 0 <= model.predict(collar_blob.array("i", [0] * model.n_features)) < model.n_classes


def test_every_truncation_of_a_boosted_blob_is_refused_with_a_reason(stork_like):
    _model, blob, _fresh = stork_like
    for cut in range(0, len(blob), 7):
        with pytest.raises(ModelError, match="truncated|CRC|record|capacity"):
            collar_blob.parse(blob[:cut])


def corrupt_cases(blob: bytes) -> list[tuple[bytes, str]]:
    """Return (damaged blob, the reason the collar must give) for each way a format-2 blob can be wrong."""
    records = records_of(blob)
    tags = dict(records)
    n_classes = tags[collar_blob.REC_META][10]

    def replaced(tag: int, value: bytes) -> bytes:
        return rebuilt(body_from([(t, value if t == tag else v) for t, v in records]))

    return [
        (replaced(collar_blob.REC_TREE_CLASS, bytes([n_classes]) + tags[collar_blob.REC_TREE_CLASS][1:]),
         f"tree 0 scores class {n_classes} of {n_classes}"),
        (replaced(collar_blob.REC_BASE, struct.pack("<i", 1 << 30) + tags[collar_blob.REC_BASE][4:]),
         "class 0 base score"),
        (replaced(collar_blob.REC_TREE_CLASS, tags[collar_blob.REC_TREE_CLASS][:-1]), "record 8 has"),
        (replaced(collar_blob.REC_ROOTS, struct.pack("<h", -32768) + tags[collar_blob.REC_ROOTS][2:]),
         "links to leaf"),
        (rebuilt(body_from([r for r in records if r[0] != collar_blob.REC_BASE])), "required record 9 missing"),
        (rebuilt(body_from(records), version=1), "capacity needs|record 6 has|unknown record 0x08"),
        (rebuilt(body_from(records), version=3), "unsupported format version 3"),
    ]


def test_a_corrupt_boosted_blob_is_refused_with_a_clear_reason(stork_like):
    _model, blob, _fresh = stork_like
    for data, reason in corrupt_cases(blob):
        with pytest.raises(ModelError, match=reason):
            Model.from_bytes(data)


@pytest.mark.micropython
def test_boosted_model_answers_the_same_under_micropython_and_refuses_a_damaged_blob(tmp_path, stork_like):
    model, blob, fresh = stork_like
    damaged = blob[:-9]
    session = micropython_session(tmp_path)
    out = session.run(
        "from array import array\nfrom collar_firmware.classifier import Model\nfrom collar_firmware.blob import ModelError\n"
        f"model = Model.from_bytes({blob!r})\n"
        f"for row in {fresh.astype(int).tolist()!r}:\n    print(model.classes[model.predict(array('i', row))])\n"
        "try:\n"
        f"    Model.from_bytes({damaged!r})\n"
        "except ModelError as e:\n    print('refused:', e)\n"
    )
    lines = out.stdout.splitlines()
    assert lines[:-1] == model.predict(fresh).tolist()
    assert lines[-1].startswith("refused: truncated")


@pytest.mark.micropython
def test_forests_and_boosted_trees_compete_under_one_fuel_budget():
    from models.budget import Limits
    from models.simulated_source import simulated_recordings
    from models.windowing import WindowSettings, make_windows
    from models.workflow import TrainOptions, _representative_window, candidates

    loaded = simulated_recordings(n_animals=2, bouts_per_behaviour=1, bout_s=16, seed=2)
    settings = WindowSettings(window_s=4, rate_hz=25)
    windows = make_windows(loaded, settings)
    window = _representative_window(windows, loaded)
    options = TrainOptions(settings=settings, grid=((3, 3, 1, None, None),), boosted_grid=((12, 6, 0.2, 5),))
    _allowed, sizes = candidates(windows, options, window)
    forest, boosted = sizes
    assert (forest["kind"], boosted["kind"]) == ("forest", "boosted")
    assert forest["fits"] and boosted["fits"] and boosted["fuel_per_window"] > forest["fuel_per_window"]
    between = (forest["fuel_per_window"] + boosted["fuel_per_window"]) // 2
    tight = TrainOptions(settings=settings, grid=options.grid, boosted_grid=options.boosted_grid,
                         limits=Limits(fuel_per_window=between))
    allowed, sizes = candidates(windows, tight, window)
    assert [row["fits"] for row in sizes] == [True, False]
    assert [type(grid["model"][0]).__name__ for grid in allowed] == ["CollarForest"]


def hand_made_boosted() -> tuple[list, list[int], object]:
    """Three boosted trees checkable by hand (leaf_scale 256): rest gains 2.0 when vedba_mean_mg (14) <= 20
    else loses 1.0; walk gains 1.5 when dom_freq_chz (20) <= 150 else loses 0.5 and starts at -0.5; run's
    one-leaf tree always adds 0.25."""
    from models.blob_writer import BoostedTree, ModelMeta

    p = np.array
    trees = [
        BoostedTree(p([1, -1, -1]), p([2, -1, -1]), p([14, -2, -2]), p([20, 0, 0]), p([0, 512, -256]), 0),
        BoostedTree(p([1, -1, -1]), p([2, -1, -1]), p([20, -2, -2]), p([150, 0, 0]), p([0, 384, -128]), 1),
        BoostedTree(p([-1]), p([-1]), p([0]), p([0]), p([64]), 2),
    ]
    meta = ModelMeta(classes=("rest", "walk", "run"), window_s=10, rate_hz=25,
                     scales=(0,) * collar_features.N_FEATURES, model_version=3, name="hand")
    return trees, [0, -128, 0], meta


def test_format_2_written_as_the_spec_says_byte_for_byte_and_answered_by_hand():
    from models.blob_writer import write_boosted_blob

    trees, base, meta = hand_made_boosted()
    n = collar_features.N_FEATURES

    def record(tag: int, value: bytes) -> bytes:
        return struct.pack("<BH", tag, len(value)) + value

    # docs/model-format.md, format version 2, written out field by field
    body = b"".join([
        record(1, struct.pack("<IHHBBBBHHIH", 3, 10, 25, 0, n, 3, 3, 2, 5, collar_blob.schema_hash(10, 25), 256)),
        record(2, b"\x04rest\x04walk\x03run"),
        record(3, bytes(n)),
        record(4, struct.pack("<3h", 0, 1, -5)),
        record(5, struct.pack("<Bhhh", 14, 20, -1, -2) + struct.pack("<Bhhh", 20, 150, -3, -4)),
        record(6, struct.pack("<5h", 512, -256, 384, -128, 64)),
        record(8, bytes([0, 1, 2])),
        record(9, struct.pack("<3i", 0, -128, 0)),
        record(7, b"hand"),
    ])
    spec = b"TMBM" + struct.pack("<BBHII", 2, 0, 0, len(body), zlib.crc32(body)) + body
    assert write_boosted_blob(trees, base, meta, leaf_scale=256) == spec
    model = Model.from_bytes(spec)
    assert model.boosted and model.proba_scale == 256 and model.classes == ("rest", "walk", "run")

    def answer(vedba: int, dom_freq: int) -> str:
        row = [0] * n
        row[14], row[20] = vedba, dom_freq
        return model.classes[model.predict(collar_blob.array("i", row))]

    assert [answer(10, 100), answer(50, 100), answer(50, 200)] == ["rest", "walk", "run"]
