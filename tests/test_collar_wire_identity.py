"""The codec table is the one source of wire identity: ports, alert ids and ack codes.

Where the collar needs a literal (MicroPython's const()), this test pins it to the table.
"""

from __future__ import annotations

import pytest

from collar_firmware import codec, downlink, fences, main, risk


@pytest.mark.parametrize("name", codec.ALERT_TYPES[1:])
def test_each_collar_alert_constant_is_the_codec_id_of_its_alert(name):
    assert getattr(risk, name.upper()) == codec.alert_id(name)
    assert risk.N_ALERT_TYPES == len(codec.ALERT_TYPES)


def test_collar_ports_and_ack_codes_come_from_the_codec_table():
    assert (main.PORT_STATUS, main.PORT_ACTIVITY, main.PORT_POSITIONS, main.PORT_ALERT, main.PORT_ACK) == tuple(
        codec.port_of(n) for n in ("status", "activity", "positions", "alert", "ack"))
    assert downlink.COMMAND_PORT == codec.port_of("tracking")
    assert downlink.SETTINGS_PORT == codec.port_of("settings")
    # every ack code the collar's downlink module names (fences take theirs from it) is the table's
    named = [name for name in codec.ACK_RESULTS if hasattr(downlink, "ACK_" + name.upper())]
    assert {"ok", "unknown_command", "malformed", "out_of_range", "refused"} <= set(named)
    for name in named:
        assert getattr(downlink, "ACK_" + name.upper()) == codec.ACK_RESULTS.index(name)
    assert (fences.ACK_OK, fences.ACK_MALFORMED, fences.ACK_OUT_OF_RANGE) == (
        downlink.ACK_OK, downlink.ACK_MALFORMED, downlink.ACK_OUT_OF_RANGE)


def test_encode_hands_back_the_port_with_the_bytes():
    port, payload = codec.encode_packet("ack", {"time_s": 1, "on_port": 32, "cmd": 4, "result": "out_of_range"})
    assert port == 31
    assert codec.decode(port, payload)["result"] == "out_of_range"


def test_fuota_ports_are_in_the_table_with_requests_and_answers_told_apart_by_direction():
    assert {codec.port_of(n) for n in ("mc_class_c_session", "frag_session_setup", "app_time_req")} == {200, 201, 202}
    answer = codec.encode("frag_session_setup_ans", {"status": 0})
    request = codec.encode("frag_session_status", {"participants": 1})
    assert answer[0] == codec.tag_of("frag_session_setup") != request[0]
    assert codec.decode(201, answer)["message"] == "frag_session_setup_ans"
    assert codec.decode(201, request, "down")["message"] == "frag_session_status"


def test_codec_errors_name_their_ack_result_so_nobody_parses_message_text():
    with pytest.raises(codec.CodecError) as unknown:
        codec.decode_settings(bytes([200, 1, 5]))
    assert unknown.value.reason == "unknown_setting"
    with pytest.raises(codec.CodecError) as out:
        codec.decode_settings(bytes([1, 4]) + (30).to_bytes(4, "little"))
    assert out.value.reason == "out_of_range"
    with pytest.raises(codec.CodecError) as cmd:
        codec.decode(32, bytes([0x63]))
    assert cmd.value.reason == "unknown_command"
