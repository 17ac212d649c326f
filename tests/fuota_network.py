"""The network servers an update delivery talks to, as stand-ins on 127.0.0.1 that take only what their
owners document, and the technician's collar key file: shared by the FUOTA delivery tests.

- The Things Stack v3: `POST /api/v3/as/applications/{app}/devices/{device}/down/push` (and
  `/down/replace`) with `Authorization: Bearer <key>` and `{"downlinks": [{"f_port", "frm_payload",
  "priority", "correlation_ids"}]}` (thethingsindustries.com/docs/integrations/webhooks/scheduling-downlinks/),
  and for a multicast group, which has no downlink path of its own, `class_b_c` with `gateways`
  (`[{"gateway_ids": {"gateway_id": ...}}]`) and `absolute_time` in ISO 8601
  (thethingsindustries.com/docs/devices/configuring-devices/class-c/). The Network Server's end
  device registry: `GET /api/v3/ns/applications/{app}/devices/{device}?field_mask=a,b` (NsEndDeviceRegistry.Get,
  lorawan-stack api/api.md; paths from its EndDevice message, e.g. `mac_state.current_parameters.rx2_frequency`)
  answers the EndDevice as proto3 JSON: its `ids`, then only the masked fields that are not false or zero
  ("Fields that are empty or zero are not returned"), a uint64 as a decimal string, an enum by its name
  (`DATA_RATE_3`); 404 for a device it does not hold, 400 for a path it does not know.
- ChirpStack v4, as the pinned chirpstack-api's Protobuf documents it (`api/device.proto`,
  `api/multicast_group.proto`, served as JSON by its REST gateway): each route from the call's
  `google.api.http` option, each body parsed as that call's request message with no unknown field,
  the proto's comments for the values (id generated on create, `mc_addr` a HEX encoded DevAddr, the
  session keys HEX encoded AES128 keys, `dev_eui` and `gateway_id` HEX encoded, application ids
  UUIDs), `fPort` above 0 ("must be > 0"), the key as `Grpc-Metadata-Authorization: Bearer <key>`.

Anything else is answered 400 (401 without the key, 404 for a group the server does not hold).
"""

from __future__ import annotations

import base64
import os
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import anyio
import bridge_builders as b
from chirpstack_api.api import device_pb2, multicast_group_pb2
from chirpstack_api.common import common_pb2
from google.api import annotations_pb2
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lora_bridge.server import serve_app_in_thread

GROUP = "herd-multicast"  # the TTS multicast end device the technician made
CHIRPSTACK_GROUP_ID = "6b6d8c3e-5f0c-4f3e-9a7e-2f1d9f3c0b11"  # a ChirpStack multicast group is named by its UUID
CHIRPSTACK_APPLICATION = "0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1"
MC_ADDR_HEX = "01ff0a42"
ROOT = "603deb1015ca71be2b73aef0857d7781"
PRIORITIES = ("LOWEST", "LOW", "BELOW_NORMAL", "NORMAL", "ABOVE_NORMAL", "HIGH", "HIGHEST")
HEX = re.compile(r"^[0-9a-f]+$")


@contextmanager
def serve(stand_in, port: int) -> Iterator:
    """Run a stand-in's app on 127.0.0.1:port for a test; its `url` is set while it runs."""
    with serve_app_in_thread(stand_in.app(), port=port) as running:
        stand_in.url = running.url
        yield stand_in


def gen_app_key(i: int) -> bytes:
    """The i-th collar's LoRaWAN 1.0 AppKey in the technician's key file."""
    return bytes([0x10 + i]) * 8 + bytes(range(8))


def write_key_file(tmp_path, device_ids: list[str], mode: int = 0o600):
    """The technician's collar key file (TEMBO_COLLAR_KEYS_FILE): the multicast root and each collar's
    GenAppKey (`gen_app_key(i)` for the i-th device id) by its DevEUI."""
    lines = [f'multicast_root = "{ROOT}"']
    for i, device_id in enumerate(device_ids):
        lines += [f'[collars."{b.dev_eui_of(device_id).lower()}"]', f'gen_app_key = "{gen_app_key(i).hex()}"']
    path = tmp_path / "collar-keys.toml"
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, mode)
    return path


# ---- The Things Stack ---------------------------------------------------------------------------


NS_DEVICE_PATHS = ("ids", "multicast", "supports_class_b", "supports_class_c", "frequency_plan_id", "lorawan_version",
                   "lorawan_phy_version", "session.dev_addr", "mac_settings", "mac_settings.rx2_frequency",
                   "mac_settings.rx2_data_rate_index", "mac_state", "mac_state.current_parameters",
                   "mac_state.current_parameters.rx2_frequency", "mac_state.current_parameters.rx2_data_rate_index",
                   "mac_state.current_parameters.rx1_delay", "mac_state.desired_parameters")


def tts_multicast_end_device(frequency_hz: int = 869_525_000, data_rate: int = 3, class_c: bool = True,
                             multicast: bool = True) -> dict:
    """A multicast end device as a technician creates it (`ttn-lw-cli end-devices create ... --multicast
    --supports-class-c --frequency-plan-id EU_863_870`): the Network Server's EndDevice, its MAC state's
    current parameters holding the RX2 frequency and data rate its Class C downlinks are sent with."""
    device = {"ids": {"device_id": GROUP, "application_ids": {"application_id": b.APPLICATION_ID},
                      "dev_addr": MC_ADDR_HEX.upper()},
              "frequency_plan_id": "EU_863_870", "lorawan_version": "MAC_V1_0_3", "lorawan_phy_version": "PHY_V1_0_3_REV_A",
              "multicast": multicast, "supports_class_c": class_c,
              "session": {"dev_addr": MC_ADDR_HEX.upper()},
              "mac_state": {"current_parameters": {"rx1_delay": "RX_DELAY_1", "rx2_frequency": str(frequency_hz),
                                                   "rx2_data_rate_index": f"DATA_RATE_{data_rate}"}}}
    return device


def _masked(device: dict, paths: list[str]) -> dict:
    """device with only the masked paths (and its ids), false and zero values left out, as TTS answers."""
    def zero(value: object) -> bool:
        return value in (False, 0, "0", "", "DATA_RATE_0", None, {}, [])

    answer: dict = {"ids": device["ids"]}
    for path in paths:
        source, target, keys = device, answer, path.split(".")
        for key in keys[:-1]:
            if not isinstance(source.get(key), dict):
                break
            source, target = source[key], target.setdefault(key, {})
        else:
            if keys[-1] in source and not zero(source[keys[-1]]):
                target[keys[-1]] = source[keys[-1]]
    return answer


class StandInTheThingsStack:
    """The downlink API and the Network Server's end device registry of The Things Stack as
    documented; remembers what it accepted."""

    api_key = "NNSXS.FUOTA-TEST"

    def __init__(self) -> None:
        self.url = ""
        self.devices: dict[str, dict] = {GROUP: tts_multicast_end_device()}  # the Network Server's registry
        self.reads: list[str] = []  # field masks of the registry reads
        self.unicast: list[dict] = []  # {"device", "f_port", "payload"}
        self.multicast: list[dict] = []  # {"group", "f_port", "payload", "at", "gateways"}
        self.refused: list[str] = []
        self.refuse_next = 0
        self.hold_group_answer_next = 0  # group pushes taken whole whose answer waits for let_go (a hung server)
        self.let_go = threading.Event()

    def app(self) -> Starlette:
        async def push(request: Request) -> JSONResponse:
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"code": 16, "message": "unauthenticated"}, status_code=401)
            if self.refuse_next:
                self.refuse_next -= 1
                return JSONResponse({"code": 14, "message": "unavailable"}, status_code=503)
            body = await request.json()
            problem = _shape_problem(body, request.path_params["device"] == GROUP)
            if problem:
                self.refused.append(problem)
                return JSONResponse({"code": 3, "message": problem}, status_code=400)
            for item in body["downlinks"]:
                frame = {"f_port": item["f_port"], "payload": base64.b64decode(item["frm_payload"])}
                if "class_b_c" in item:
                    at = datetime.fromisoformat(item["class_b_c"]["absolute_time"].replace("Z", "+00:00"))
                    gateways = [g["gateway_ids"]["gateway_id"] for g in item["class_b_c"]["gateways"]]
                    self.multicast.append({**frame, "group": request.path_params["device"], "at": at,
                                           "gateways": gateways})
                else:
                    self.unicast.append({**frame, "device": request.path_params["device"]})
            if self.hold_group_answer_next and request.path_params["device"] == GROUP:
                self.hold_group_answer_next -= 1
                await anyio.to_thread.run_sync(self.let_go.wait, 20.0)
            return JSONResponse({})

        async def get_device(request: Request) -> JSONResponse:
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"code": 16, "message": "unauthenticated"}, status_code=401)
            paths = [p for p in request.query_params.get("field_mask", "").split(",") if p]
            unknown = [p for p in paths if p not in NS_DEVICE_PATHS]
            if unknown:
                return JSONResponse({"code": 3, "message": f"invalid field mask paths {unknown}"}, status_code=400)
            self.reads.append(",".join(paths))
            device = self.devices.get(request.path_params["device"])
            if device is None or device["ids"]["application_ids"]["application_id"] != request.path_params["app"]:
                return JSONResponse({"code": 5, "message": "entity not found"}, status_code=404)
            return JSONResponse(_masked(device, paths))

        base = "/api/v3/as/applications/{app}/devices/{device}/down/"
        webhook = "/api/v3/as/applications/{app}/webhooks/{webhook}/devices/{device}/down/"  # X-Downlink-Push's
        return Starlette(routes=[Route(base + "push", push, methods=["POST"]),
                                 Route(base + "replace", push, methods=["POST"]),
                                 Route(webhook + "push", push, methods=["POST"]),
                                 Route("/api/v3/ns/applications/{app}/devices/{device}", get_device, methods=["GET"])])


def _shape_problem(body: object, multicast: bool) -> str | None:
    """What in a push body The Things Stack would not take, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("downlinks"), list) or not body["downlinks"]:
        return "downlinks: a non-empty list is required"
    for item in body["downlinks"]:
        if not isinstance(item.get("f_port"), int) or not 1 <= item["f_port"] <= 223:
            return "f_port: 1..223"
        try:
            base64.b64decode(item["frm_payload"], validate=True)
        except (KeyError, ValueError, TypeError):
            return "frm_payload: base64 required"
        if item.get("priority", "NORMAL") not in PRIORITIES:
            return "priority: unknown"
        class_b_c = item.get("class_b_c")
        if multicast and class_b_c is None:
            return "multicast: a downlink path (class_b_c.gateways) is required"
        if class_b_c is not None:
            gateways = class_b_c.get("gateways")
            if not gateways or not all(isinstance(g.get("gateway_ids", {}).get("gateway_id"), str) for g in gateways):
                return "class_b_c.gateways: [{gateway_ids: {gateway_id}}]"
            try:
                datetime.fromisoformat(str(class_b_c.get("absolute_time")).replace("Z", "+00:00"))
            except ValueError:
                return "class_b_c.absolute_time: ISO 8601"
    return None


# ---- ChirpStack ---------------------------------------------------------------------------------

GROUP_SERVICE = multicast_group_pb2.DESCRIPTOR.services_by_name["MulticastGroupService"]
DEVICE_SERVICE = device_pb2.DESCRIPTOR.services_by_name["DeviceService"]


def chirpstack_route(service, method: str) -> tuple[str, str]:
    """(HTTP method, Starlette path) of a ChirpStack call as its proto declares it ({a.b} becomes a
    path parameter b)."""
    rule = service.methods_by_name[method].GetOptions().Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    path = re.sub(r"\{([a-z_.]+)\}", lambda m: "{" + m.group(1).split(".")[-1] + "}", getattr(rule, verb))
    return verb.upper(), path


def technicians_group() -> multicast_group_pb2.MulticastGroup:
    """A group a technician made in ChirpStack for the collars: Class C on 869.525 MHz at DR3 (SF9)."""
    return multicast_group_pb2.MulticastGroup(
        id=CHIRPSTACK_GROUP_ID, name="tembo collars", application_id=CHIRPSTACK_APPLICATION,
        region=common_pb2.Region.EU868, mc_addr=MC_ADDR_HEX, group_type=multicast_group_pb2.MulticastGroupType.CLASS_C,
        dr=3, frequency=869_525_000, class_c_scheduling_type=multicast_group_pb2.MulticastGroupSchedulingType.DELAY)


class StandInChirpStack:
    """ChirpStack v4's device queues and multicast groups (create, add collars and gateways, read,
    enqueue, delete) as its proto documents them; remembers what it accepted."""

    api_key = "chirpstack-api-token"

    def __init__(self, *groups: multicast_group_pb2.MulticastGroup) -> None:
        self.url = ""
        self.groups: dict[str, dict] = {g.id: {"group": g, "devices": [], "gateways": []} for g in groups}
        self.unicast: list[dict] = []  # {"device", "f_port", "payload"}
        self.multicast: list[dict] = []  # {"group", "f_port", "payload", "expires_at", "f_cnt"}
        self.refused: list[str] = []
        self.fail: dict[str, int] = {}  # call name -> HTTP status to answer once
        self.create_answer: dict | None = None  # a broken Create answer
        self.deleted: list[str] = []  # groups deleted, in order

    @property
    def group(self) -> multicast_group_pb2.MulticastGroup:
        """The technician's group (`technicians_group`), to change in a test."""
        return self.groups[CHIRPSTACK_GROUP_ID]["group"]

    def _problem(self, group: multicast_group_pb2.MulticastGroup) -> str | None:
        if group.id:
            return "id is generated on create"
        if not group.name:
            return "name is required"
        try:
            uuid.UUID(group.application_id)
        except ValueError:
            return "application_id: a UUID"
        if not HEX.match(group.mc_addr) or len(group.mc_addr) != 8:
            return "mc_addr: a HEX encoded DevAddr"
        for name in ("mc_nwk_s_key", "mc_app_s_key"):
            value = getattr(group, name)
            if not HEX.match(value) or len(value) != 32:
                return f"{name}: a HEX encoded AES128 key"
        if group.group_type != multicast_group_pb2.MulticastGroupType.CLASS_C or group.frequency == 0:
            return "a Class C group needs its frequency"
        return None

    def app(self) -> Starlette:
        async def parse(request: Request, call: str, message):
            if request.headers.get("Grpc-Metadata-Authorization") != f"Bearer {self.api_key}":
                return None, JSONResponse({"code": 16, "message": "unauthenticated"}, status_code=401)
            if call in self.fail:
                return None, JSONResponse({"code": 13, "message": "internal"}, status_code=self.fail.pop(call))
            if message is None:
                return None, None
            try:
                return json_format.ParseDict(await request.json(), message, ignore_unknown_fields=False), None
            except (json_format.ParseError, ValueError) as error:
                self.refused.append(f"{call}: {error}")
                return None, JSONResponse({"code": 3, "message": str(error)}, status_code=400)

        def refuse(problem: str) -> JSONResponse:
            self.refused.append(problem)
            return JSONResponse({"code": 3, "message": problem}, status_code=400)

        def queue_problem(item) -> str | None:
            if item.f_port == 0 or item.f_port > 223:
                return "fPort must be 1..223"
            return None if item.data else "data is required"

        async def create(request: Request) -> JSONResponse:
            parsed, answer = await parse(request, "Create", multicast_group_pb2.CreateMulticastGroupRequest())
            if answer:
                return answer
            problem = self._problem(parsed.multicast_group)
            if problem:
                return refuse(problem)
            group_id = str(uuid.uuid4())
            self.groups[group_id] = {"group": parsed.multicast_group, "devices": [], "gateways": []}
            return JSONResponse(self.create_answer if self.create_answer is not None else {"id": group_id})

        async def add(request: Request, call: str, message, field: str, length: int) -> Response:
            parsed, answer = await parse(request, call, message)
            if answer:
                return answer
            group_id = request.path_params["multicast_group_id"]
            if parsed.multicast_group_id not in ("", group_id) or group_id not in self.groups:
                return refuse(f"{call}: no such multicast group")
            value = getattr(parsed, field)
            if not HEX.match(value) or len(value) != length:
                return refuse(f"{call}: {field} HEX encoded")
            self.groups[group_id][call].append(value)
            return JSONResponse({})

        async def add_device(request: Request) -> Response:
            return await add(request, "devices", multicast_group_pb2.AddDeviceToMulticastGroupRequest(), "dev_eui", 16)

        async def add_gateway(request: Request) -> Response:
            return await add(request, "gateways", multicast_group_pb2.AddGatewayToMulticastGroupRequest(),
                             "gateway_id", 16)

        async def get(request: Request) -> JSONResponse:
            _parsed, answer = await parse(request, "Get", None)
            if answer:
                return answer
            held = self.groups.get(request.path_params["id"])
            if held is None:
                return JSONResponse({"code": 5, "message": "object does not exist"}, status_code=404)
            answer = multicast_group_pb2.GetMulticastGroupResponse(multicast_group=held["group"])
            answer.created_at.FromDatetime(datetime(2026, 11, 30, tzinfo=UTC))
            return JSONResponse(json_format.MessageToDict(answer))

        async def delete(request: Request) -> Response:
            _parsed, answer = await parse(request, "Delete", None)
            if answer:
                return answer
            if await request.body():
                return refuse("Delete: the REST gateway takes DeleteMulticastGroupRequest from the path, no body")
            parsed = multicast_group_pb2.DeleteMulticastGroupRequest(id=request.path_params["id"])
            try:
                uuid.UUID(parsed.id)
            except ValueError:
                return refuse("Delete: id is a UUID")
            if parsed.id not in self.groups:
                return JSONResponse({"code": 5, "message": "object does not exist"}, status_code=404)
            self.groups.pop(parsed.id)
            self.deleted.append(parsed.id)
            return JSONResponse({})

        async def device_queue(request: Request) -> Response:
            parsed, answer = await parse(request, "device", device_pb2.EnqueueDeviceQueueItemRequest())
            if answer:
                return answer
            problem = queue_problem(parsed.queue_item)
            if problem:
                return refuse(problem)
            self.unicast.append({"device": request.path_params["dev_eui"], "f_port": parsed.queue_item.f_port,
                                 "payload": bytes(parsed.queue_item.data)})
            return JSONResponse({"id": f"q-{len(self.unicast)}"})

        async def group_queue(request: Request) -> Response:
            group = request.path_params["multicast_group_id"]
            parsed, answer = await parse(request, "Enqueue", multicast_group_pb2.EnqueueMulticastGroupQueueItemRequest())
            if answer:
                return answer
            item = parsed.queue_item
            problem = queue_problem(item)
            if problem:
                return refuse(problem)
            if item.multicast_group_id not in ("", group):
                return refuse("multicastGroupId differs from the path")
            if group not in self.groups:
                return JSONResponse({"code": 5, "message": "object does not exist"}, status_code=404)
            self.multicast.append({"group": group, "f_port": item.f_port, "payload": bytes(item.data),
                                   "expires_at": item.expires_at.ToDatetime(UTC) if item.HasField("expires_at")
                                   else None, "f_cnt": len(self.multicast) + 1})
            return JSONResponse({"fCnt": len(self.multicast)})

        routes = []
        for call, handler in (("Create", create), ("AddDevice", add_device), ("AddGateway", add_gateway),
                              ("Get", get), ("Delete", delete), ("Enqueue", group_queue)):
            verb, path = chirpstack_route(GROUP_SERVICE, call)
            routes.append(Route(path, handler, methods=[verb]))
        verb, path = chirpstack_route(DEVICE_SERVICE, "Enqueue")
        routes.append(Route(path, device_queue, methods=[verb]))
        return Starlette(routes=routes)
