"""The stand-in network server's downlink API that the bridge pushes ranger commands to."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from collar_firmware import codec
from simulator.network_server import NetworkServerStandIn, parse_downlinks

API_KEY = "NNSXS.TEMBO-TEST-KEY"


class RecordingSink:
    """A DownlinkSink that keeps what the server accepted (the Fleet is the real one)."""

    def __init__(self) -> None:
        self.queues: dict[str, list[tuple[int, bytes, bool]]] = {"tembo-collar-01": [], "tembo-collar-02": []}

    def push_downlink(self, device_id: str, port: int, payload: bytes, confirmed: bool = False) -> None:
        self.queues[device_id].append((port, payload, confirmed))

    def clear_downlinks(self, device_id: str) -> None:
        self.queues[device_id].clear()

    def downlink_queue(self, device_id: str) -> list[tuple[int, bytes, bool]]:
        return list(self.queues[device_id])

    def has_device(self, device_id: str) -> bool:
        return device_id in self.queues

    def device_id_of(self, dev_eui: str) -> str | None:
        return {"70b3d57ed0060001": "tembo-collar-01"}.get(dev_eui.lower())


@pytest.fixture
def api() -> Iterator[tuple[NetworkServerStandIn, RecordingSink]]:
    sink = RecordingSink()
    with NetworkServerStandIn(sink, api_key=API_KEY, application_id="tembo-demo") as server:
        yield server, sink


def _body(payload: bytes, port: int = 32) -> dict:
    return {"downlinks": [{"f_port": port, "frm_payload": base64.b64encode(payload).decode(), "confirmed": False}]}


def test_bridge_pushes_a_command_and_it_is_queued_for_the_collar(api):
    server, sink = api
    command = codec.encode("request_status", {})
    response = httpx.post(server.push_url("tembo-collar-01"), json=_body(command),
                          headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200 and response.json() == {}
    assert sink.queues["tembo-collar-01"] == [(32, command, False)]
    listed = httpx.get(server.push_url("tembo-collar-01").removesuffix("/push"),
                       headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert listed["downlinks"][0]["frm_payload"] == base64.b64encode(command).decode()


def test_replace_empties_the_queue_before_queueing(api):
    server, sink = api
    headers = {"Authorization": f"Bearer {API_KEY}"}
    httpx.post(server.push_url("tembo-collar-02"), json=_body(b"\x02"), headers=headers)
    httpx.post(server.push_url("tembo-collar-02").replace("/push", "/replace"), json=_body(b"\x03"), headers=headers)
    assert sink.queues["tembo-collar-02"] == [(32, b"\x03", False)]


def test_the_webhook_variant_of_the_push_route_is_served_too(api):
    server, sink = api
    url = f"{server.url}/api/v3/as/applications/tembo-demo/webhooks/tembo-bridge/devices/tembo-collar-01/down/push"
    response = httpx.post(url, json=_body(b"\x02"), headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200 and sink.queues["tembo-collar-01"] == [(32, b"\x02", False)]


def test_chirpstack_rest_queue_call_is_accepted_by_dev_eui(api):
    server, sink = api
    body = {"queueItem": {"fPort": 32, "data": base64.b64encode(b"\x04\x3c\x00").decode(), "confirmed": False}}
    response = httpx.post(f"{server.url}/api/devices/70b3d57ed0060001/queue", json=body,
                          headers={"Grpc-Metadata-Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200 and "id" in response.json()
    assert sink.queues["tembo-collar-01"] == [(32, b"\x04\x3c\x00", False)]


def test_a_wrong_key_is_refused_and_nothing_is_queued(api):
    server, sink = api
    response = httpx.post(server.push_url("tembo-collar-01"), json=_body(b"\x02"),
                          headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and response.json()["code"] == 16
    assert httpx.post(server.push_url("tembo-collar-01"), json=_body(b"\x02")).status_code == 401
    assert sink.queues["tembo-collar-01"] == []


def test_unknown_devices_and_applications_are_not_found(api):
    server, _ = api
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.post(server.push_url("tembo-collar-99"), json=_body(b"\x02"), headers=headers).status_code == 404
    other_app = server.push_url("tembo-collar-01").replace("/tembo-demo/", "/someone-else/")
    assert httpx.post(other_app, json=_body(b"\x02"), headers=headers).status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"downlinks": [{"f_port": 0, "frm_payload": "AA=="}]},
     {"downlinks": [{"f_port": 32, "frm_payload": "not base64!"}]},
     {"downlinks": [{"f_port": 32, "frm_payload": base64.b64encode(bytes(52)).decode()}]},
     {"nothing": []}],
)
def test_malformed_downlinks_are_refused_with_the_reason(api, body):
    server, sink = api
    response = httpx.post(server.push_url("tembo-collar-01"), json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 400 and response.json()["code"] == 3 and response.json()["message"]
    assert sink.queues["tembo-collar-01"] == []


def test_parse_downlinks_reads_port_payload_and_confirmation():
    assert parse_downlinks({"downlinks": [{"f_port": 3, "frm_payload": "AQI=", "confirmed": True}]}) == [
        (3, b"\x01\x02", True)
    ]


def test_the_server_repr_masks_the_api_key(api):
    server, _ = api
    assert API_KEY not in repr(server) and "***" in repr(server)
