"""One model blob format: the golden blob, what the collar refuses, and how it falls back."""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collar_firmware import blob, classifier
from collar_firmware.blob import ModelError
from collar_firmware.classifier import Model, load_model
from models import blob_writer
from tests.model_helpers import GOLDEN_MODEL, golden_model_parts, micropython_session
from tests.signing_helpers import collar_trust, eager_verifier, sign_blob

GOLDEN = GOLDEN_MODEL.read_bytes()
SIGNED = sign_blob(GOLDEN)
N = 25


def features_with(**values: int) -> list[int]:
    """Return a feature vector of zeros with some named features set."""
    from collar_firmware.features import FEATURE_NAMES

    vector = [0] * N
    for name, value in values.items():
        vector[FEATURE_NAMES.index(name)] = value
    return vector


def rebuilt(body: bytes, flags: int = 0, version: int = 1) -> bytes:
    """Return a blob around body with a correct header (to test what the CRC cannot catch)."""
    return b"TMBM" + struct.pack("<BBHII", version, flags, 0, len(body), zlib.crc32(body)) + body


def body_of(data: bytes) -> bytes:
    """Return the body of a blob."""
    return data[16 : 16 + struct.unpack_from("<I", data, 8)[0]]


def records_of(data: bytes) -> list[tuple[int, bytes]]:
    """Return the (tag, value) records of a blob's body."""
    body, pos, records = body_of(data), 0, []
    while pos < len(body):
        tag, length = struct.unpack_from("<BH", body, pos)
        records.append((tag, body[pos + 3 : pos + 3 + length]))
        pos += 3 + length
    return records


def body_from(records: list[tuple[int, bytes]]) -> bytes:
    """Return a body made of (tag, value) records."""
    return b"".join(struct.pack("<BH", tag, len(value)) + value for tag, value in records)


def without_record(data: bytes, tag: int) -> bytes:
    """Return a correctly framed blob missing one record."""
    return rebuilt(body_from([r for r in records_of(data) if r[0] != tag]))


class FlashStorage:
    """A collar's key/value flash, as hal.Storage: survives 'reboots' within a test."""

    def __init__(self, records=None, broken=False):
        self.records = dict(records or {})
        self.broken = broken
        self.writes = []

    def read(self, key):
        if self.broken:
            raise OSError(5, "flash does not answer")
        return self.records.get(key)

    def write(self, key, data):
        if self.broken:
            raise OSError(5, "flash does not answer")
        self.writes.append(key)
        self.records[key] = bytes(data)


def test_writer_reproduces_the_golden_blob_byte_for_byte():
    trees, meta = golden_model_parts()
    assert blob_writer.write_blob(trees, meta) == GOLDEN


def test_collar_reads_the_golden_blob():
    model = Model.from_bytes(GOLDEN)
    assert model.version == 7
    assert model.classes == ("rest", "forage", "walk", "run")
    assert (model.window_s, model.rate_hz, model.overlap_pct) == (10, 25, 0)
    assert model.name == "tembo golden model"
    assert model.proba_scale == 2 * 65535
    assert model.window_samples() == 250


def test_golden_model_answers_as_its_trees_say():
    model = Model.from_bytes(GOLDEN)
    votes = [0] * 4
    quiet = features_with(vedba_mean_mg=5, std_x_dmg=40)
    assert model.predict(quiet) == 0
    assert model.predict_proba(quiet, votes) == [65535 + 49151, 16384, 0, 0]
    assert model.predict(features_with(vedba_mean_mg=21, dom_freq_chz=100, std_x_dmg=500)) == 2
    assert model.predict(features_with(vedba_mean_mg=21, dom_freq_chz=200, std_x_dmg=500)) == 3
    # Thresholds are inclusive: q <= threshold goes left.
    assert model.predict(features_with(vedba_mean_mg=20, std_x_dmg=300)) == 0


def test_scales_quantise_features_like_the_writer():
    model = Model.from_bytes(GOLDEN)
    raw = features_with(sma_mg=1001, std_x_dmg=-7, vedba_max_mg=40000)
    q = model.quantize(raw, [0] * N)
    assert q == blob_writer.quantize([raw], golden_model_parts()[1].scales)[0].tolist()
    assert q[18] == 501 and q[15] == 32767


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [
        ("empty", lambda b: b"", "truncated"),
        ("header only", lambda b: b[:16], "truncated"),
        ("cut in the body", lambda b: b[:-5], "truncated"),
        ("bad magic", lambda b: b"TMBX" + b[4:], "bad magic"),
        ("newer format", lambda b: b[:4] + b"\x03" + b[5:], "unsupported format version"),
        ("unknown flag", lambda b: b[:5] + b"\x80" + b[6:], "unknown header flags"),
        ("flipped body bit", lambda b: b[:40] + bytes([b[40] ^ 0x04]) + b[41:], "CRC mismatch"),
        ("trailing bytes", lambda b: b + b"\x00", "unexpected bytes"),
        ("unknown record", lambda b: rebuilt(body_of(b) + b"\x09\x01\x00\x00"), "unknown record 0x09"),
        ("record twice", lambda b: rebuilt(body_of(b) + b"\x07\x01\x00x"), "appears twice"),
        ("missing leaves", lambda b: without_record(b, blob.REC_LEAVES), "required record 6 missing"),
        (
            "meta not first",
            lambda b: rebuilt(body_from(records_of(b)[1:2] + records_of(b)[:1])),
            "before META",
        ),
        ("signed but no trailer", lambda b: rebuilt(body_of(b), flags=1), "signature trailer missing"),
    ],
)
def test_collar_refuses_a_damaged_blob_and_says_why(name, damage, reason):
    with pytest.raises(ModelError, match=reason):
        Model.from_bytes(damage(GOLDEN))


def test_collar_refuses_a_model_trained_on_other_features():
    trees, meta = golden_model_parts()
    data = bytearray(blob_writer.write_blob(trees, meta))
    meta_at = 16 + 3
    struct.pack_into("<I", data, meta_at + 16, 0xDEADBEEF)  # schema_hash
    with pytest.raises(ModelError, match="schema hash mismatch"):
        Model.from_bytes(rebuilt(body_of(bytes(data))))


def test_collar_refuses_a_model_for_another_window_setting_with_a_stale_hash():
    trees, meta = golden_model_parts()
    data = bytearray(blob_writer.write_blob(trees, meta))
    struct.pack_into("<H", data, 16 + 3 + 4, 20)  # window_s 10 -> 20, hash left as for 10 s
    with pytest.raises(ModelError, match="schema hash mismatch"):
        Model.from_bytes(rebuilt(body_of(bytes(data))))


def test_collar_refuses_trees_that_could_loop_or_read_out_of_range():
    trees, meta = golden_model_parts()
    looping = blob_writer.TreeArrays(
        trees[1].left.copy(), trees[1].right.copy(), trees[1].feature, trees[1].threshold_q, trees[1].value
    )
    good = blob_writer.write_blob([looping], meta)
    records = records_of(good)
    nodes = [i for i, (tag, _) in enumerate(records) if tag == blob.REC_NODES][0]
    node0 = bytearray(records[nodes][1])
    struct.pack_into("<h", node0, 3, 0)  # left child of node 0 -> node 0
    with pytest.raises(ModelError, match="links to node"):
        Model.from_bytes(
            rebuilt(body_from(records[:nodes] + [(blob.REC_NODES, bytes(node0))] + records[nodes + 1 :]))
        )
    node0 = bytearray(records[nodes][1])
    node0[0] = 99  # feature 99 of 25
    with pytest.raises(ModelError, match="tests feature 99"):
        Model.from_bytes(
            rebuilt(body_from(records[:nodes] + [(blob.REC_NODES, bytes(node0))] + records[nodes + 1 :]))
        )


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(0, len(GOLDEN) - 1))
def test_any_truncated_blob_is_refused_cleanly(cut):
    with pytest.raises(ModelError):
        Model.from_bytes(GOLDEN[:cut])


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(GOLDEN) - 1), mask=st.integers(1, 255))
def test_any_tampered_byte_is_refused_cleanly(position, mask):
    tampered = bytearray(GOLDEN)
    tampered[position] ^= mask
    with pytest.raises(ModelError):
        Model.from_bytes(bytes(tampered))


def test_signature_trailer_is_checked_by_the_verifier():
    signed = blob_writer.with_signature(GOLDEN, key_id=3, sign=lambda message: bytes(64))
    assert len(signed) == len(GOLDEN) + 4 + 64
    seen = []

    def verifier(scheme, key_id, message, signature):
        seen.append((scheme, key_id, bytes(message), signature))
        return signature == bytes(64)

    model = Model.from_bytes(signed, verifier)
    assert model.version == 7
    assert seen == [(1, 3, hashlib.sha256(blob_writer.signed_part(GOLDEN)).digest(), bytes(64))]
    assert Model.from_bytes(signed).version == 7  # shape checked, no key to verify with
    with pytest.raises(ModelError, match="does not verify"):
        Model.from_bytes(signed, lambda *a: False)
    with pytest.raises(ModelError, match="unsigned"):
        Model.from_bytes(GOLDEN, verifier)
    with pytest.raises(ModelError, match="signature trailer length"):
        Model.from_bytes(signed[:-1], verifier)


def test_crc32_without_binascii_matches_zlib(monkeypatch):
    monkeypatch.setattr(blob, "_binascii_crc32", None)
    for data in (b"", b"a", GOLDEN, bytes(range(256)) * 3):
        assert blob.crc32(data) == zlib.crc32(data)


def test_collar_loads_a_new_model_and_keeps_it_as_last_good():
    storage = FlashStorage({"model": SIGNED})
    verifier = eager_verifier(collar_trust())
    model = load_model(storage, verifier=verifier)
    assert (model.source, model.refused, model.version) == ("storage", None, 7)
    assert storage.records["model.good"] == SIGNED
    load_model(storage, verifier=verifier)
    assert storage.writes == ["model.good"]  # not rewritten at every boot


def test_collar_keeps_the_last_good_model_when_a_new_one_is_tampered():
    storage = FlashStorage({"model": SIGNED})
    verifier = eager_verifier(collar_trust())
    load_model(storage, verifier=verifier)
    tampered = bytearray(SIGNED)
    tampered[60] ^= 0xFF
    storage.records["model"] = bytes(tampered)
    model = load_model(storage, verifier=verifier)
    assert model.source == "last_good"
    assert model.version == 7
    assert "CRC mismatch" in model.refused
    assert storage.records["model.good"] == SIGNED


def test_an_unsigned_or_foreign_signed_model_never_loads_and_the_shipped_one_runs():
    from tests.signing_helpers import OTHER_KEY

    verifier = eager_verifier(collar_trust())
    for stored, reason in ((GOLDEN, "unsigned"), (sign_blob(GOLDEN, OTHER_KEY), "does not verify"),
                           (sign_blob(GOLDEN, key_id=77), "does not verify")):
        model = load_model(FlashStorage({"model": stored}), verifier=verifier)
        assert model.source == "default" and reason in model.refused


def test_the_shipped_default_model_is_signed_by_a_key_the_collar_holds():
    from collar_firmware import trust

    shipped = classifier.read_default_blob()
    assert shipped[5] & blob.FLAG_SIGNED
    assert trust.shipped().keys, "the firmware ships the deployment's public key"
    parsed = blob.parse(shipped, eager_verifier(trust.Trust(trust.shipped().keys)))
    assert parsed.signature[1] in trust.shipped().keys
    signed_digest = trust.digest(shipped[: 16 + struct.unpack_from("<I", shipped, 8)[0]])
    assert trust.receipt(signed_digest, parsed.signature[1], parsed.signature[2]) in trust.shipped().pinned


def test_a_collar_without_keys_loads_no_model_at_all():
    from collar_firmware import trust

    with pytest.raises(ModelError, match="does not verify"):
        load_model(FlashStorage(), verifier=trust.Trust({}).blob_verifier())


def with_record(data: bytes, tag: int, value: bytes) -> bytes:
    """Return a correctly framed blob with one record's value replaced."""
    return rebuilt(body_from([(t, value if t == tag else v) for t, v in records_of(data)]))


@pytest.mark.parametrize(
    "tag, value",
    [(blob.REC_CLASSES, b"\x04r\xffst\x06forage\x04walk\x03run"), (blob.REC_NAME, b"tembo \xc3(model")],
)
def test_a_model_whose_names_are_not_utf8_is_refused_and_the_last_good_one_runs(tag, value):
    damaged = sign_blob(with_record(GOLDEN, tag, value))  # signed: the release itself was broken
    with pytest.raises(ModelError, match="not UTF-8"):
        Model.from_bytes(damaged)
    model = load_model(FlashStorage({"model": damaged, "model.good": SIGNED}), verifier=eager_verifier(collar_trust()))
    assert (model.source, model.version) == ("last_good", 7)
    assert "not UTF-8" in model.refused


@pytest.mark.micropython
def test_a_model_whose_name_is_not_utf8_is_refused_under_micropython_too(tmp_path):
    from collar_firmware import records, trust
    from tests.signing_helpers import TEST_KEY_ID, TEST_PUBLIC

    damaged = sign_blob(with_record(GOLDEN, blob.REC_NAME, b"tembo \xc3(model"))
    # both arrived signed and were verified by this collar when they did (its flash says so)
    verified = records.sealed(b"".join(
        trust.receipt(trust.digest(b[: 16 + struct.unpack_from("<I", b, 8)[0]]), TEST_KEY_ID, b[-64:])
        for b in (damaged, SIGNED)))
    session = micropython_session(tmp_path)
    out = session.run(
        "from collar_firmware.classifier import load_model\nfrom collar_firmware import trust\n"
        "class Flash:\n    def read(self, key):\n        return self.records.get(key)\n"
        "    def write(self, key, data):\n        self.records[key] = data\n"
        f"flash = Flash()\nflash.records = {{'model': {damaged!r}, 'model.good': {SIGNED!r}, 'verified': {verified!r}}}\n"
        f"t = trust.Trust({{{TEST_KEY_ID}: {TEST_PUBLIC!r}}}, None, flash)\n"
        "model = load_model(flash, 'model', t.blob_verifier())\nprint(model.source, model.version)\nprint(model.refused)"
    )
    assert out.stdout.splitlines() == ["last_good 7", "record 7: text at offset 170 is not UTF-8"]


def test_collar_falls_back_to_the_shipped_model():
    default = Model.from_bytes(classifier.read_default_blob())
    model = load_model(FlashStorage({"model": b"garbage"}))
    assert (model.source, model.version) == ("default", default.version)
    assert "truncated" in model.refused
    fresh = load_model(FlashStorage())
    assert (fresh.source, fresh.refused) == ("default", None)
    assert load_model(FlashStorage(broken=True)).source == "default"


def test_writer_refuses_what_the_collar_could_not_hold():
    trees, meta = golden_model_parts()
    with pytest.raises(ValueError):
        blob_writer.write_blob(trees, blob_writer.ModelMeta(meta.classes, 10, 25, scales=(0,) * 3))
    with pytest.raises(ValueError):
        blob_writer.quantize([[0.5] * N], meta.scales)


def random_tree(rng, n_classes: int, max_depth: int) -> blob_writer.TreeArrays:
    """Return a random tree in scikit-learn's depth-first layout."""
    left, right, feature, threshold, value = [], [], [], [], []

    def grow(depth: int) -> int:
        node = len(left)
        left.append(-1)
        right.append(-1)
        feature.append(-2)
        threshold.append(0)
        value.append(rng.dirichlet(np.ones(n_classes)))
        if depth < max_depth and rng.random() < 0.8:
            feature[node] = int(rng.integers(N))
            threshold[node] = int(rng.integers(-300, 300))
            left[node] = grow(depth + 1)
            right[node] = grow(depth + 1)
        return node

    grow(0)
    return blob_writer.TreeArrays(
        np.array(left), np.array(right), np.array(feature), np.array(threshold), np.array(value)
    )


def reference_votes(trees, features) -> np.ndarray:
    """Walk the trees in numpy terms and add the leaves' 16-bit probabilities."""
    votes = 0
    for tree in trees:
        node = 0
        while tree.left[node] >= 0:
            node = (
                tree.left[node]
                if features[tree.feature[node]] <= tree.threshold_q[node]
                else tree.right[node]
            )
        votes = votes + np.rint(tree.value[node] * blob_writer.LEAF_SCALE).astype(int)
    return votes


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_trees=st.integers(1, 6), n_classes=st.integers(2, 6))
def test_any_written_forest_is_read_and_walked_the_same(seed, n_trees, n_classes):
    rng = np.random.default_rng(seed)
    trees = [random_tree(rng, n_classes, max_depth=int(rng.integers(0, 7))) for _ in range(n_trees)]
    meta = blob_writer.ModelMeta(
        classes=tuple(f"class{i}" for i in range(n_classes)), window_s=10, rate_hz=25, scales=(0,) * N
    )
    model = Model.from_bytes(blob_writer.write_blob(trees, meta))
    votes = [0] * n_classes
    for _ in range(20):
        features = rng.integers(-400, 400, N).tolist()
        expected = reference_votes(trees, features)
        assert model.predict_proba(features, votes) == expected.tolist()
        assert model.predict(features) == int(np.argmax(expected))


def test_a_crafted_41_byte_blob_declaring_69_mb_is_refused_before_anything_is_allocated():
    import tracemalloc

    meta = struct.pack(blob.META_FORMAT, 1, 10, 25, 0, N, 255, 1, 0, 65535, 0, 1000)
    crafted = rebuilt(struct.pack("<BH", blob.REC_META, len(meta)) + meta)
    assert len(crafted) == 41
    tracemalloc.start()
    try:
        with pytest.raises(ModelError, match="capacity"):
            Model.from_bytes(crafted)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"{peak} bytes allocated to refuse a 41-byte blob"


def test_a_blob_declaring_a_body_larger_than_the_collar_holds_is_refused_from_its_header():
    header = b"TMBM" + struct.pack("<BBHII", 1, 0, 0, blob.MAX_BODY_BYTES + 1, 0)
    with pytest.raises(ModelError, match="exceeds"):
        Model.from_bytes(header + bytes(100))


@pytest.mark.micropython
def test_a_deep_forest_with_shared_leaves_answers_the_same_under_micropython(tmp_path):
    from models import dataset
    from models.estimator import CollarForest

    data = dataset.simulated(40, seed=5)
    names = np.asarray(data.classes)[data.labels]
    model = CollarForest(n_estimators=10, max_depth=None, max_leaf_nodes=50, random_state=0).fit(data.features, names)
    fresh = dataset.simulated(4, seed=6).features.astype(int)
    session = micropython_session(tmp_path)
    out = session.run(
        "from array import array\nfrom collar_firmware.classifier import Model\n"
        f"model = Model.from_bytes({model.to_blob(data.window_s, data.rate_hz)!r})\n"
        f"for row in {fresh.tolist()!r}:\n    print(model.classes[model.predict(array('i', row))])"
    )
    assert out.stdout.split() == model.predict(fresh).tolist()
