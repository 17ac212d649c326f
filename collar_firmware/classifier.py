"""The collar's activity classifier: a tree ensemble read from a model blob, so models update
without reflashing. Runs on MicroPython and CPython.

    model = load_model(hal.storage)            # stored blob, else last good, else default_model.bin
    feats = features.new_feature_buffer()      # array('i'), reused every window
    features.compute_features(buf, n, model.rate_hz, feats)
    behaviour = smoother.update(model.predict(feats))

`predict` and `predict_proba` allocate nothing when the features are an array of integers
(what `features.new_feature_buffer` returns); from an array('f') they work the same but box one
float per feature on builds with boxed floats.
"""

from array import array

from collar_firmware.blob import FORMAT_BOOSTED, ModelError, parse, parse_file

DEFAULT_MODEL_FILE = "default_model.bin"
GOOD_SUFFIX = ".good"


class Model:
    """A validated tree ensemble: quantise the features, walk every tree, add the leaf votes.

    A forest (format 1) adds every leaf's per-class votes; boosted trees (format 2) start from the
    per-class base scores and add each tree's one leaf score to its class. Integers only, either way.
    """

    def __init__(self, parsed):
        self._p = parsed
        self.version = parsed.model_version
        self.classes = parsed.classes
        self.n_classes = len(parsed.classes)
        self.n_features = parsed.n_features
        self.window_s = parsed.window_s
        self.rate_hz = parsed.rate_hz
        self.overlap_pct = parsed.overlap_pct
        self.name = parsed.name
        self.boosted = parsed.format_version == FORMAT_BOOSTED
        # forest: out[c] / proba_scale is P(c); boosted: out[c] / proba_scale is class c's raw score
        self.proba_scale = parsed.leaf_scale if self.boosted else parsed.leaf_scale * len(parsed.roots)
        self.source = "bytes"  # where load_model found it: storage, last_good, default
        self.refused = None  # why a stored blob was refused, when load_model fell back
        self._q = array("h", bytes(2 * parsed.n_features))
        self._votes = array("i", bytes(4 * self.n_classes))

    @classmethod
    def from_bytes(cls, data, verifier=None):
        """Return a Model from blob bytes; raise ModelError naming what is wrong with them."""
        return cls(parse(data, verifier))

    def window_samples(self):
        """Return the number of samples in one window (window_s * rate_hz)."""
        return self.window_s * self.rate_hz

    def quantize(self, features, q):
        """Fill q (array('h'), n_features) with the features in the model's int16 units; return q."""
        scales = self._p.scales
        for f in range(self.n_features):
            x = int(features[f])
            e = scales[f]
            if e >= 0:
                x <<= e
            else:
                x = (x + (1 << (-e - 1))) >> -e
            if x > 32767:
                x = 32767
            elif x < -32768:
                x = -32768
            q[f] = x
        return q

    def predict_proba_quantized(self, q, out):
        """Fill out (n_classes) with integer votes for quantised features q; the most votes wins.

        Forest: out[c] / proba_scale is P(c). Boosted: out[c] / proba_scale is class c's raw score
        (softmax of the scores gives the probabilities).
        """
        p = self._p
        feature = p.feature
        threshold = p.threshold
        left = p.left
        right = p.right
        leaves = p.leaves
        roots = p.roots
        nc = self.n_classes
        boosted = self.boosted
        tree_class = p.tree_class
        for c in range(nc):
            out[c] = p.base[c] if boosted else 0
        for t in range(len(roots)):
            i = roots[t]
            while i >= 0:
                if q[feature[i]] <= threshold[i]:
                    i = left[i]
                else:
                    i = right[i]
            if boosted:  # the leaf's score on the tree's class
                out[tree_class[t]] += leaves[-1 - i]
            else:  # the leaf's votes for every class
                first = (-1 - i) * nc
                for c in range(nc):
                    out[c] += leaves[first + c]
        return out

    def predict_proba(self, features, out):
        """Fill out (n_classes, integer array) with votes for raw features; out[c] / proba_scale is P(c)."""
        return self.predict_proba_quantized(self.quantize(features, self._q), out)

    def predict_quantized(self, q):
        """Return the class index with the most votes for quantised features q (ties: lowest index)."""
        votes = self.predict_proba_quantized(q, self._votes)
        best = 0
        for c in range(1, self.n_classes):
            if votes[c] > votes[best]:
                best = c
        return best

    def predict(self, features):
        """Return the class index (into self.classes) for one window's features."""
        return self.predict_quantized(self.quantize(features, self._q))


class Smoother:
    """Majority vote over the last `length` windows, so behaviour does not flicker.

    A single odd window is outvoted; on a tie the behaviour already shown stays.
    """

    def __init__(self, n_classes, length=3):
        if n_classes < 1 or length < 1:
            raise ValueError(
                "Smoother needs n_classes >= 1 and length >= 1, got %d, %d" % (n_classes, length)
            )
        self.n_classes = n_classes
        self.length = length
        self._ring = array("b", bytes(length))
        self._counts = array("H", bytes(2 * n_classes))
        self.reset()

    def reset(self):
        """Forget the history (after a reboot or a model change)."""
        for i in range(self.length):
            self._ring[i] = -1
        for c in range(self.n_classes):
            self._counts[c] = 0
        self._pos = 0
        self.current = -1

    def update(self, class_index):
        """Add one window's class; return the smoothed class index."""
        if class_index < 0 or class_index >= self.n_classes:
            raise ValueError("class index %d out of range" % class_index)
        ring = self._ring
        counts = self._counts
        old = ring[self._pos]
        if old >= 0:
            counts[old] -= 1
        ring[self._pos] = class_index
        counts[class_index] += 1
        self._pos = (self._pos + 1) % self.length
        best = self.current if self.current >= 0 else class_index
        for c in range(self.n_classes):
            if counts[c] > counts[best]:
                best = c
        self.current = best
        return best


def _module_dir():
    """Return the directory of this module, with a trailing slash ('' when unknown)."""
    path = globals().get("__file__", "")
    cut = max(path.rfind("/"), path.rfind("\\"))
    return path[: cut + 1] if cut >= 0 else ""


def read_default_blob():
    """Return the bytes of the model shipped with the firmware (default_model.bin beside this module)."""
    with open(_module_dir() + DEFAULT_MODEL_FILE, "rb") as f:
        return f.read()


def load_default(verifier):
    """Return the Model shipped with the firmware (default_model.bin beside this module), read a record
    at a time; verifier as load_model's."""
    with open(_module_dir() + DEFAULT_MODEL_FILE, "rb") as f:
        return Model(parse_file(f, verifier))


def _storage(storage, name, *args):
    """Call storage's method name (open, mirror); a storage of tools and tests that offers only
    read and write gets hal.Storage's own, built on them."""
    method = getattr(storage, name, None)
    if method is None:
        from collar_firmware.hal import Storage  # imported only then: the .eim export ships no hal

        return getattr(Storage, name)(storage, *args)
    return method(*args)


def _load(storage, key, verifier):
    """Return the Model stored under key, read from flash a record at a time; None when there is none,
    it is empty (a rolled-back update writes one where there was no model) or the flash does not
    answer; raise ModelError when it is refused."""
    try:
        f = _storage(storage, "open", key)
    except OSError:
        return None
    if f is None:
        return None
    try:
        if not f.seek(0, 2):
            return None
        return Model(parse_file(f, verifier))
    except OSError:
        return None
    finally:
        f.close()


def load_model(storage, key="model", verifier=None):
    """Return the Model to run: the blob under key, else the last good one, else the shipped default.

    Only signed blobs load, the shipped default included: verifier (default: the keys shipped
    beside the firmware, see trust.py) must accept each one. model.source says which one loaded
    ("storage", "last_good", "default"); model.refused holds the reason a stored blob was refused
    (None when nothing was), for the status flag model_fallback. A blob that loads is kept under
    key + ".good" for the next time one is refused. Raises ModelError when not even the default
    verifies (the collar then runs its threshold model).
    """
    if verifier is None:
        from collar_firmware import trust

        verifier = trust.shipped(storage=storage).blob_verifier()
    refused = None
    try:
        model = _load(storage, key, verifier)
    except ModelError as e:
        model = None
        refused = str(e)
    if model is not None:
        model.source = "storage"
        try:
            _storage(storage, "mirror", key, key + GOOD_SUFFIX)
        except OSError:
            pass  # the model runs anyway; the copy is retried at the next load
        return model
    try:
        model = _load(storage, key + GOOD_SUFFIX, verifier)
    except ModelError as e:
        model = None
        refused = refused or str(e)
    if model is not None:
        model.source = "last_good"
        model.refused = refused
        return model
    model = load_default(verifier)
    model.source = "default"
    model.refused = refused
    return model
