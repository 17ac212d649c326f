"""C export of a collar model through emlearn, for teams whose collar firmware is written in C.

The header holds the trees (emlearn's own code) and the per-feature scales: a C caller computes the
collar features (docs/researchers.md lists them), quantises each as round_half_up(x * 2^scale),
clamps to int16, and calls `<name>_predict(features, n_features)`. emlearn's trees vote one class
each (the collar adds their class probabilities), so a close call can come out differently.
"""

from __future__ import annotations

import re
from pathlib import Path

import emlearn

from collar_firmware import features as collar_features
from models.estimator import CollarForest


def write_c(model: CollarForest, path: str | Path, name: str = "tembo_model") -> Path:
    """Write model as a C header (emlearn trees + quantisation scales + class names); return the path."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"a C name is letters, digits and underscores, got {name!r}")
    path = Path(path)
    converted = emlearn.convert(model.forest_, method="inline")
    trees_c = converted.save(name=name, format="c")
    scales = ", ".join(str(int(e)) for e in model.scales_)
    classes = ", ".join(f'"{c}"' for c in model.classes_)
    names = ", ".join(f'"{n}"' for n in collar_features.FEATURE_NAMES)
    header = (
        f"/* Tembo collar activity model, exported through emlearn.\n"
        f" * Quantise feature f as round_half_up(x * 2^{name}_scales[f]) clamped to int16, in the order of\n"
        f" * {name}_feature_names, then call {name}_predict(values, {len(model.scales_)}). */\n"
        f"#ifndef {name.upper()}_TEMBO_H\n#define {name.upper()}_TEMBO_H\n"
        f"static const signed char {name}_scales[{len(model.scales_)}] = {{ {scales} }};\n"
        f"static const char *{name}_classes[{len(model.classes_)}] = {{ {classes} }};\n"
        f"static const char *{name}_feature_names[{len(collar_features.FEATURE_NAMES)}] = {{ {names} }};\n"
        f"#endif\n"
    )
    path.write_text(header + trees_c)
    return path
