"""The Things Stack / ChirpStack formatter, generated from the codec table, decodes like the bridge."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from collar_firmware import codec
from lora_bridge import formatter

pytestmark = pytest.mark.node

VECTORS_PATH = Path(__file__).parent / "vectors" / "codec_vectors.json"

RUNNER = r"""
const f = require(process.argv[2]);
const doc = JSON.parse(require("fs").readFileSync(process.argv[3], "utf8"));
const hex = (h) => (h.match(/../g) || []).map((b) => parseInt(b, 16));
const out = {
  decoded: doc.vectors.map((v) => v.direction === "down"
      ? f.decodeDownlink({fPort: v.port, bytes: hex(v.hex)})
      : f.decodeUplink({fPort: v.port, bytes: hex(v.hex)})),
  encoded: doc.vectors.filter((v) => v.direction !== "up").map((v) =>
      f.encodeDownlink({data: Object.assign({message: v.message}, v.expected)})),
  errors: doc.errors.map((e) => f.decodeUplink({fPort: e.port, bytes: hex(e.hex)})),
};
process.stdout.write(JSON.stringify(out));
"""


def _node() -> str:
    node = shutil.which("node")
    assert node, "Node.js is required: `make test` installs it (apt-get install nodejs)"
    return node


@pytest.fixture(scope="module")
def node_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formatter")
    js = folder / "tembo-formatter.js"
    js.write_text(formatter.render())
    runner = folder / "run.js"
    runner.write_text(RUNNER)
    done = subprocess.run([_node(), str(runner), str(js), str(VECTORS_PATH)], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_committed_formatter_is_generated_from_the_current_codec_table():
    assert formatter.FORMATTER_PATH.read_text() == formatter.render(), \
        "regenerate: python -m lora_bridge.formatter > formatters/tembo-formatter.js"


def test_node_formatter_decodes_every_vector_like_the_python_codec(node_results):
    vectors = json.loads(VECTORS_PATH.read_text())["vectors"]
    for vector, result in zip(vectors, node_results["decoded"], strict=True):
        assert result["errors"] == [], vector["description"]
        assert result["data"] == vector["expected"], vector["description"]
        assert result["data"] == codec.decode(vector["port"], bytes.fromhex(vector["hex"]))


def test_node_formatter_encodes_downlinks_byte_for_byte(node_results):
    vectors = [v for v in json.loads(VECTORS_PATH.read_text())["vectors"] if v["direction"] != "up"]
    for vector, result in zip(vectors, node_results["encoded"], strict=True):
        assert result["errors"] == [], vector["description"]
        assert bytes(result["bytes"]).hex() == vector["hex"], vector["description"]
        assert result["fPort"] == vector["port"]


def test_node_formatter_returns_errors_as_values_for_malformed_payloads(node_results):
    cases = json.loads(VECTORS_PATH.read_text())["errors"]
    for case, result in zip(cases, node_results["errors"], strict=True):
        assert "data" not in result, case["description"]
        assert result["errors"] and result["errors"][0], case["description"]
