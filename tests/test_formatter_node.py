"""The Things Stack / ChirpStack formatter, generated from the codec table, decodes like the bridge."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from collar_firmware import codec
from lora_bridge import formatter
from lora_bridge.decode import decode_payload

pytestmark = pytest.mark.node

VECTORS_PATH = Path(__file__).parent / "vectors" / "codec_vectors.json"

RUNNER = r"""
const f = require(process.argv[2]);
const doc = JSON.parse(require("fs").readFileSync(process.argv[3], "utf8"));
const fuota = JSON.parse(require("fs").readFileSync(process.argv[4], "utf8"));
const downs = JSON.parse(require("fs").readFileSync(process.argv[5], "utf8"));
const hex = (h) => (h.match(/../g) || []).map((b) => parseInt(b, 16));
const out = {
  decoded: doc.vectors.map((v) => v.direction === "down"
      ? f.decodeDownlink({fPort: v.port, bytes: hex(v.hex)})
      : f.decodeUplink({fPort: v.port, bytes: hex(v.hex)})),
  encoded: doc.vectors.filter((v) => v.direction !== "up").map((v) =>
      f.encodeDownlink({data: Object.assign({message: v.message}, v.expected)})),
  errors: doc.errors.map((e) => f.decodeUplink({fPort: e.port, bytes: hex(e.hex)})),
  fuota: fuota.map((u) => f.decodeUplink({fPort: u[0], bytes: hex(u[1])})),
  downs: downs.map((d) => f.decodeDownlink({fPort: d[0], bytes: hex(d[1])})),
};
process.stdout.write(JSON.stringify(out));
"""


# FUOTA uplinks of several answers, written byte by byte from the packages' layouts (TS004 v1.0.0, TS005 v1.0.0):
# FragSessionSetupAns 02|StatusBitMask, PackageVersionAns 00|03|01, FragSessionStatusAns 01|Received&index
# (2, little-endian)|MissingFrag|Status; McGroupStatusAns 01|Status (NbTotalGroups 6..4, AnsGroupMask 3..0) then
# McGroupID|McAddr (4) a group in the mask; McClassCSessionAns 04|Status (error bits 5..2, McGroupID 1..0) then
# TimeToStart (3) only without an error bit; AppTimeReq 01|DeviceTime (4)|Param.
SEVERAL_ANSWERS = [
    (201, "0200" "000301" "01050007" "00"),
    (200, "0123" "0000000000" "0104030201" "0410" "0400100e00" "0205"),
    (202, "011244ce5615" "011244ce5615"),
    (201, "0200"),  # one answer alone: its fields, as any message
]
BROKEN_ANSWERS = [
    (201, "0200" "010500"),  # a FragSessionStatusAns cut short after a good answer
    (201, "0200" "7f"),  # an unknown answer id after a good answer
    (200, "0123" "0000000000" "01040302"),  # a McGroupStatusAns naming two groups, carrying one and a bit
    (200, "01"),  # a McGroupStatusAns without its status
    (200, "0410" "100e00"),  # TimeToStart after an error bit
]


# FUOTA downlinks of several commands (TS005 v1.0.0 4, TS004 v1.0.0: "a message MAY carry more than one command"),
# each command written byte by byte from the packages' layouts, little-endian: McGroupStatusReq 01|ReqGroupMask;
# McGroupDeleteReq 03|McGroupIDHeader; McClassCSessionReq 04|McGroupIDHeader|SessionTime (4, GPS s)|
# SessionTimeOut|DLFrequency (3, 100 Hz)|DR; FragPackageVersionReq 00; FragSessionSetupReq 02|FragSession
# (RFU 2, FragIndex 2, McGroupBitMask 4)|NbFrag (2)|FragSize|Control|Padding|Descriptor (4); DataFragment
# 08|IndexAndN (2)|payload (the rest of the frame); FragSessionStatusReq 01|Param; AppTimeAns 01|TimeCorrection
# (4, signed)|Param.
SEVERAL_COMMANDS = [
    (200, ["010f", "0301", "0400d20296490ad2ad8403"]),  # 869.525 MHz = 8695250 x 100 Hz = 0x84add2
    (201, ["00", "0201140032000078563412", "080100aabbccdd"]),  # a setup, then its first fragment
    (201, ["0101", "0300"]),
    (202, ["01fcffffff01", "010500000002"]),
    (201, ["0101"]),  # one command alone: its fields, as any message
]
BROKEN_COMMANDS = [
    (201, "0101" "0201140032", "frag_session_setup"),  # a FragSessionSetupReq cut short after a good command
    (200, "010f" "7f", "command 127"),  # an unknown command after a good one
    (202, "01fcffffff", "app_time_ans"),  # an AppTimeAns without its Param
    (200, "0301" "0400d202", "mc_class_c_session"),  # a McClassCSessionReq cut short
]


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
    fuota = folder / "fuota.json"
    fuota.write_text(json.dumps(SEVERAL_ANSWERS + BROKEN_ANSWERS))
    downs = folder / "downs.json"
    downs.write_text(json.dumps([(port, "".join(pieces)) for port, pieces in SEVERAL_COMMANDS]
                                + [(port, hex_) for port, hex_, _ in BROKEN_COMMANDS]))
    done = subprocess.run([_node(), str(runner), str(js), str(VECTORS_PATH), str(fuota), str(downs)],
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_committed_formatter_is_generated_from_the_current_codec_table():
    assert formatter.FORMATTER_PATH.read_text() == formatter.render(), \
        "regenerate: python -m lora_bridge.formatter > formatters/tembo-formatter.js"


def test_formatter_fits_the_things_stacks_40_kb_limit():
    # The Things Stack: "The maximum size of a JavaScript payload formatter is 40KB (40,960 bytes)."
    assert len(formatter.render().encode()) <= 40_960


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


def test_node_formatter_decodes_every_answer_of_a_fuota_uplink_as_the_bridge_does(node_results):
    for (port, hex_), result in zip(SEVERAL_ANSWERS, node_results["fuota"][:len(SEVERAL_ANSWERS)], strict=True):
        decoded = decode_payload(codec, port, bytes.fromhex(hex_))
        assert result["errors"] == [] and decoded.reason is None, hex_
        if decoded.more:
            assert result["data"] == {"message": decoded.message, "port": port, "answers": list(decoded.answers)}
        else:
            assert result["data"] == decoded.fields
    several = node_results["fuota"][1]["data"]
    assert several["message"] == "mc_group_status_ans+3"
    assert [a["message"] for a in several["answers"][1:]] == ["mc_class_c_session_ans"] * 2 + ["mc_group_setup_ans"]
    assert several["answers"][0]["groups"] == [{"group": 0, "mc_addr": 0}, {"group": 1, "mc_addr": 0x01020304}]


def test_node_formatter_refuses_a_broken_fuota_uplink_whole_in_the_bridges_words(node_results):
    for (port, hex_), result in zip(BROKEN_ANSWERS, node_results["fuota"][len(SEVERAL_ANSWERS):], strict=True):
        decoded = decode_payload(codec, port, bytes.fromhex(hex_))
        assert "data" not in result, hex_
        assert len(result["errors"]) == 1 and decoded.reason is not None, hex_
        assert decoded.reason.endswith(": " + result["errors"][0]), (decoded.reason, result["errors"])


def test_node_formatter_decodes_every_command_of_a_fuota_downlink_in_order(node_results):
    for (port, pieces), result in zip(SEVERAL_COMMANDS, node_results["downs"][:len(SEVERAL_COMMANDS)], strict=True):
        commands = [codec.decode(port, bytes.fromhex(piece), "down") for piece in pieces]
        assert result["errors"] == [] and result["warnings"] == [], pieces
        if len(commands) == 1:
            assert result["data"] == commands[0]
        else:
            assert result["data"] == {"message": f"{commands[0]['message']}+{len(commands) - 1}", "port": port,
                                      "commands": commands}
    setup_then_fragment = node_results["downs"][1]["data"]["commands"]
    assert [c["message"] for c in setup_then_fragment] == ["frag_package_version", "frag_session_setup",
                                                          "data_fragment"]
    assert setup_then_fragment[1]["nb_frag"] == 20 and setup_then_fragment[1]["descriptor"] == 0x12345678
    assert setup_then_fragment[2]["data"] == [0xAA, 0xBB, 0xCC, 0xDD]
    class_c = node_results["downs"][0]["data"]["commands"][2]
    assert (class_c["session_time_gps_s"], class_c["frequency_hz100"]) == (1234567890, 8695250)


def test_node_formatter_refuses_a_broken_fuota_downlink_whole_naming_the_command(node_results):
    for (_port, hex_, named), result in zip(BROKEN_COMMANDS, node_results["downs"][len(SEVERAL_COMMANDS):],
                                           strict=True):
        assert "data" not in result, hex_
        assert len(result["errors"]) == 1 and named in result["errors"][0], (hex_, result["errors"])


def test_formatter_takes_each_fuota_commands_size_from_the_codec_table():
    line = next(li for li in formatter.render().splitlines() if li.startswith("var COMMAND_SIZES = "))
    generated = json.loads(line.removeprefix("var COMMAND_SIZES = ").rstrip(";"))
    expected = {str(row[1]): {} for row in codec.MESSAGES if row[1] in (200, 201, 202)}
    for _name, port, cid, direction, *_ in [row for row in codec.MESSAGES if len(row) == 5]:  # v1.0.0's rows
        if port in (200, 201, 202) and direction == "down":
            expected[str(port)][str(cid)] = codec.command_size(port, cid, "down")
    assert generated == expected
