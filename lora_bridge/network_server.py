"""Pushing downlinks to the network server through one injectable httpx client.

The Things Stack v3: `POST {url}/api/v3/as/applications/{app}/devices/{device}/down/push` (the
Application Server API; `.../applications/{app}/webhooks/{webhook}/devices/...` when `tts_webhook_id`
is set) with `Authorization: Bearer <API key>` and `{"downlinks": [{"f_port", "frm_payload",
"priority", "correlation_ids"}]}`; `.../down/replace` replaces the collar's whole queue. When TTS
told us where to push with its webhook headers (`X-Downlink-Push`, `X-Downlink-Replace`,
`X-Downlink-Apikey`; docs: thethingsindustries.com/docs/integrations/webhooks/scheduling-downlinks/),
those are used, with or without a configured network-server URL.
ChirpStack v4 (REST gateway): `POST {url}/api/devices/{devEui}/queue` with
`Grpc-Metadata-Authorization: Bearer <API key>` and `{"queueItem": {"fPort", "data", "confirmed"}}`;
the answer's `id` is the queue item that ChirpStack's ack / txack events name.
Multicast: The Things Stack takes a frame for a multicast end device with its `class_b_c` gateways
and absolute time; ChirpStack v4 takes it into the multicast group's queue
(`MulticastGroupService.Enqueue`: `POST {url}/api/multicast-groups/{id}/queue`, body the JSON of
`EnqueueMulticastGroupQueueItemRequest`, built with the chirpstack-api package) and sends it by the
group's own Class C settings, without a time per frame (the bridge creates the group itself with
`MulticastGroupService.Create`, `AddDevice`, `AddGateway`: `create_chirpstack_multicast_group`): the outbox pushes a ChirpStack frame only
when it is due, with `expiresAt` one duty-cycle spacing later so a frame held back is dropped, not
sent on the heels of the next.
Timeouts are short: the outbox worker, not a webhook request, waits here.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from lora_bridge import https
from lora_bridge.call_deadline import DeadlinePassed, request_within
from lora_bridge.errors import DownlinkError
from lora_bridge.refusal_reasons import refusal_reason
from lora_bridge.settings import BridgeSettings
from lora_bridge.updates.multicast_keys import GroupKeys
from lora_bridge.uplink_formats import MAX_F_CNT, UINT64_MAX, int_within

log = logging.getLogger(__name__)


class AnswerCutOff(DownlinkError):
    """The network server had a push whole, and its answer did not come whole within the call's limits (it
    hung, or trickled past `call_deadline`'s bound): the downlink may already wait in the collar's (or the
    multicast group's) queue there, so pushing it again could have the collars hear it twice."""


@dataclass(frozen=True)
class DownlinkTarget:
    """Where one collar's downlinks go."""

    device_id: str
    network: str | None
    application_id: str | None
    dev_eui: str | None
    label: str | None = None
    push_url: str | None = None
    replace_url: str | None = None
    api_key: str | None = None

    def __repr__(self) -> str:
        return (
            f"DownlinkTarget(device_id={self.device_id!r}, network={self.network!r}, "
            f"push_url={self.push_url!r}, api_key={'***' if self.api_key else None})"
        )


@dataclass(frozen=True)
class OutgoingDownlink:
    """One downlink as the network server receives it."""

    f_port: int
    payload: bytes
    correlation_id: str | None = None


@dataclass(frozen=True)
class MulticastFrame:
    """One frame for a multicast group, sent by the gateways at send_at (Class C)."""

    group_id: str
    application_id: str | None
    gateways: tuple[str, ...]
    f_port: int
    payload: bytes
    send_at: datetime
    correlation_id: str | None = None
    network: str = "tts"
    expires_at: datetime | None = None  # ChirpStack drops the frame when it could not send it by then


@dataclass(frozen=True)
class ChirpStackGroup:
    """What a ChirpStack multicast group is created with; its repr never shows the keys."""

    name: str
    application_id: str
    keys: GroupKeys
    dr: int
    frequency_hz: int
    dev_euis: list[str]
    gateway_ids: list[str]


@dataclass(frozen=True)
class RouteHint:
    """A push URL TTS gave for a collar of the group's application, and its key."""

    url: str
    api_key: str | None = None

    def __repr__(self) -> str:
        return f"RouteHint(url={self.url!r}, api_key={'***' if self.api_key else None})"


@dataclass(frozen=True)
class ServerKey:
    """A network server as the outbox tells servers apart (`NetworkServerClient.server_of`): its origin
    and the API key pushes to it carry (a refused key does not hold back another key's pushes); the
    repr never shows the key."""

    origin: tuple[str, str, int] | None
    api_key: str

    def __repr__(self) -> str:
        return f"ServerKey(origin={self.origin!r}, api_key={'***' if self.api_key else None})"


# The port a URL of each scheme names when it names none (RFC 9110, 4.2).
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str | None) -> tuple[str, str, int] | None:
    """The scheme, host and port (the default made explicit) url reaches; None when it is no http(s)
    URL with a host and a valid port."""
    if not url:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, DEFAULT_PORTS[parts.scheme] if port is None else port


def allowed_route(url: str | None, settings: BridgeSettings) -> bool:
    """True when a push URL from a webhook header may be used: http(s), and on the configured network
    server (same scheme, host and port) when one is configured: a header naming another port or plain
    http on the server's host cannot send our pushes, and the configured key with them, elsewhere."""
    origin = origin_of(url)
    if origin is None:
        return False
    if settings.network_server_url:
        return origin == origin_of(settings.network_server_url)
    return True


class NetworkServerClient:
    """Pushes encoded downlinks to TTS or ChirpStack; raises DownlinkError when refused."""

    def __init__(self, settings: BridgeSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        timeout = httpx.Timeout(settings.downlink_timeout_s, connect=min(2.0, settings.downlink_timeout_s))
        self.http = http or https.client(timeout=timeout)

    def __repr__(self) -> str:
        return f"NetworkServerClient(url={self.settings.network_server_url!r}, api_key=***)"

    def can_reach(self, target: DownlinkTarget) -> bool:
        """True when there is somewhere to push target's downlinks."""
        if self.settings.network_server_url:
            return True
        return target.network != "chirpstack" and allowed_route(target.push_url, self.settings)

    def server_of(self, push_url: str | None = None, api_key: str | None = None) -> ServerKey:
        """The network server (its origin: scheme, host and port, `origin_of`) and the key a push goes to
        with, as `send` picks them: push_url (a TTS webhook header's route) and its key (else the
        configured key on the configured origin) when push_url may be used (`allowed_route`), else the
        configured server and key. However a URL spells its server (`HTTPS://EU1...`, an explicit
        `:443`), one server is one key: a refusal holds back all of its pushes, not one spelling's."""
        if push_url and allowed_route(push_url, self.settings):
            return ServerKey(origin_of(push_url), self._route_key(push_url, api_key))
        return ServerKey(origin_of(self.settings.network_server_url), self._key())

    def push(self, target: DownlinkTarget, f_port: int, payload: bytes, correlation_id: str | None = None) -> str | None:
        """Send one downlink for target; the network's id for it (ChirpStack) or None; DownlinkError."""
        return self.send(target, [OutgoingDownlink(f_port, payload, correlation_id)], replace=False)

    def send(self, target: DownlinkTarget, items: list[OutgoingDownlink], replace: bool) -> str | None:
        """Push items (or replace the collar's queue at the network with them); DownlinkError if refused."""
        if target.network == "chirpstack":
            return self._send_chirpstack(target, items, replace)
        url, headers = self._tts_route(target, replace)
        body = {
            "downlinks": [
                {
                    "f_port": item.f_port,
                    "frm_payload": base64.b64encode(item.payload).decode(),
                    "priority": "NORMAL",
                    **({"correlation_ids": [item.correlation_id]} if item.correlation_id else {}),
                }
                for item in items
            ]
        }
        self._post(url, body, headers, f"downlink pushed device_id={target.device_id}", target.device_id,
                   carries_downlinks=True)
        return None

    def send_multicast(self, frame: MulticastFrame, route_hint: RouteHint | None = None) -> None:
        """Push one frame to a TTS multicast group (a multicast end device) for Class C transmission at
        frame.send_at through frame.gateways (TTS knows no downlink path for a group: docs,
        thethingsindustries.com/docs/devices/configuring-devices/class-c/ and .../multicast/);
        DownlinkError if refused. route_hint is a collar's push URL of the same application, used
        when no network-server URL is configured. A ChirpStack group: `_send_chirpstack_multicast`."""
        if frame.network == "chirpstack":
            self._send_chirpstack_multicast(frame)
            return
        if not frame.application_id:
            raise DownlinkError(f"multicast group {frame.group_id} has no TTS application id")
        if not frame.gateways:
            raise DownlinkError(f"multicast group {frame.group_id}: no gateway to send through")
        base, via, headers = self._tts_server(route_hint)
        application = quote(frame.application_id, safe="")
        url = f"{base}/api/v3/as/applications/{application}{via}/devices/{quote(frame.group_id, safe='')}/down/push"
        body = {"downlinks": [{
            "f_port": frame.f_port,
            "frm_payload": base64.b64encode(frame.payload).decode(),
            "priority": "NORMAL",
            "class_b_c": {
                "gateways": [{"gateway_ids": {"gateway_id": g}} for g in frame.gateways],
                "absolute_time": frame.send_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            },
            **({"correlation_ids": [frame.correlation_id]} if frame.correlation_id else {}),
        }]}
        self._post(url, body, headers, f"multicast frame pushed to TTS group {frame.group_id}", carries_downlinks=True)

    def _tts_route(self, target: DownlinkTarget, replace: bool) -> tuple[str, dict[str, str]]:
        route = target.replace_url if replace else target.push_url
        if route and allowed_route(route, self.settings):
            return route, _bearer(self._route_key(route, target.api_key))
        base, via, headers = self._tts_server()
        if not target.application_id:
            raise DownlinkError(f"collar {target.device_id} has no TTS application id yet")
        application = quote(target.application_id, safe="")
        device = quote(target.label or target.device_id, safe="")
        operation = "replace" if replace else "push"
        return f"{base}/api/v3/as/applications/{application}{via}/devices/{device}/down/{operation}", headers

    def _tts_server(self, route_hint: RouteHint | None = None) -> tuple[str, str, dict[str, str]]:
        """Where The Things Stack is: its URL, the webhook path segment (`/webhooks/{id}` or "") and the
        Authorization header; the configured server and webhook id, else those of route_hint (a
        collar's push URL of the same application, with its key). DownlinkError when neither is known."""
        base = (self.settings.network_server_url or "").rstrip("/")
        if base:
            webhook = self.settings.tts_webhook_id
            return base, f"/webhooks/{quote(webhook, safe='')}" if webhook else "", _bearer(self._key())
        if route_hint is not None and allowed_route(route_hint.url, self.settings):
            base, via = _tts_server_of(route_hint.url)
            return base, via, _bearer(self._route_key(route_hint.url, route_hint.api_key))
        raise DownlinkError("no network server configured (TEMBO_NETWORK_SERVER_URL) and no X-Downlink-Push seen")

    def _send_chirpstack(self, target: DownlinkTarget, items: list[OutgoingDownlink], replace: bool) -> str | None:
        base = self._configured_base()
        if not target.dev_eui:
            raise DownlinkError(f"collar {target.device_id} has no DevEUI")
        url = f"{base}/api/devices/{quote(target.dev_eui.lower(), safe='')}/queue"
        headers = {"Grpc-Metadata-Authorization": f"Bearer {self._key()}"}
        if replace:
            # ChirpStack's flush: the queue is then refilled
            self._call("DELETE", url, None, headers, f"downlink queue flushed device_id={target.device_id}",
                       target.device_id)
        reference = None
        for n, item in enumerate(items, start=1):
            answer = self._post(
                url,
                {"queueItem": {"fPort": item.f_port, "data": base64.b64encode(item.payload).decode(), "confirmed": False}},
                headers,
                f"downlink pushed device_id={target.device_id}",
                target.device_id,
                # the last item is the one pushed for; an earlier one cut off is pushed again with it (a
                # replace flushes the queue first)
                carries_downlinks=n == len(items),
            )
            reference = _queue_item_id(answer)
        return reference

    def _send_chirpstack_multicast(self, frame: MulticastFrame) -> int | None:
        """Enqueue frame in a ChirpStack v4 multicast group's queue; return the frame counter it got."""
        from chirpstack_api.api import multicast_group_pb2
        from google.protobuf import json_format

        base = self._configured_base()
        item = multicast_group_pb2.MulticastGroupQueueItem(multicast_group_id=frame.group_id, f_port=frame.f_port,
                                                           data=frame.payload)
        if frame.expires_at is not None:
            item.expires_at.FromDatetime(frame.expires_at.astimezone(UTC))
        body = json_format.MessageToDict(multicast_group_pb2.EnqueueMulticastGroupQueueItemRequest(queue_item=item))
        url = f"{base}/api/multicast-groups/{quote(frame.group_id, safe='')}/queue"
        answer = self._post(url, body, {"Grpc-Metadata-Authorization": f"Bearer {self._key()}"},
                            f"multicast frame queued in ChirpStack group {frame.group_id}", carries_downlinks=True)
        try:
            said = answer.json()
        except ValueError:
            said = None
        f_cnt = said.get("fCnt") if isinstance(said, dict) else None
        counter = int_within(f_cnt, 0, MAX_F_CNT)
        if f_cnt is not None and counter is None:  # the frame is queued: nothing may raise now (a retry sends it twice)
            log.warning("ChirpStack group %s queued the frame and answered fCnt %r, not a frame counter: ignored",
                        frame.group_id, f_cnt)
        return counter

    def create_chirpstack_multicast_group(self, group: ChirpStackGroup) -> str:
        """Create a ChirpStack v4 multicast group and add its collars and gateways (MulticastGroupService
        Create, AddDevice, AddGateway through the REST gateway, bodies from chirpstack-api's messages);
        return the group's id. DownlinkError when ChirpStack refuses any step: the group made so far is
        deleted again, so a retry starts clean. The session keys travel in the Create body only."""
        from chirpstack_api.api import multicast_group_pb2 as mg
        from chirpstack_api.common import common_pb2
        from google.protobuf import json_format

        base = self._configured_base()
        if not group.application_id:
            raise DownlinkError("a ChirpStack multicast group needs the collars' application id")
        if not group.dev_euis or not group.gateway_ids:
            raise DownlinkError("a ChirpStack multicast group needs its collars' DevEUIs and at least one gateway")
        headers = {"Grpc-Metadata-Authorization": f"Bearer {self._key()}"}
        create = mg.CreateMulticastGroupRequest(multicast_group=mg.MulticastGroup(
            name=group.name, application_id=group.application_id, region=common_pb2.Region.EU868,
            mc_addr=f"{group.keys.mc_addr:08x}", mc_nwk_s_key=group.keys.nwk_s_key.hex(),
            mc_app_s_key=group.keys.app_s_key.hex(), f_cnt=0, group_type=mg.MulticastGroupType.CLASS_C,
            dr=group.dr, frequency=group.frequency_hz,
            class_c_scheduling_type=mg.MulticastGroupSchedulingType.DELAY))
        answer = self._post(f"{base}/api/multicast-groups", json_format.MessageToDict(create), headers,
                            f"ChirpStack multicast group {group.name} created")
        try:
            group_id = str(answer.json()["id"])
        except (ValueError, KeyError, TypeError):
            raise DownlinkError("ChirpStack answered the group's creation without its id") from None
        if not group_id or len(group_id) > 64:
            raise DownlinkError("ChirpStack answered the group's creation with an unusable id")
        members = f"{base}/api/multicast-groups/{quote(group_id, safe='')}"
        try:
            for dev_eui in group.dev_euis:
                self._post(f"{members}/devices", json_format.MessageToDict(mg.AddDeviceToMulticastGroupRequest(
                    multicast_group_id=group_id, dev_eui=dev_eui.lower())), headers,
                    f"collar {dev_eui.lower()} added to ChirpStack multicast group {group_id}")
            for gateway_id in group.gateway_ids:
                self._post(f"{members}/gateways", json_format.MessageToDict(mg.AddGatewayToMulticastGroupRequest(
                    multicast_group_id=group_id, gateway_id=gateway_id.lower())), headers,
                    f"gateway {gateway_id.lower()} added to ChirpStack multicast group {group_id}")
        except DownlinkError:
            try:
                self._call("DELETE", members, None, headers, f"half-made ChirpStack multicast group {group_id} deleted")
            except DownlinkError as error:
                log.warning("ChirpStack multicast group %s left half made: %s", group_id, error)
            raise
        log.info("ChirpStack multicast group %s ready id=%s collars=%d gateways=%d", group.name, group_id,
                 len(group.dev_euis), len(group.gateway_ids))
        return group_id

    def chirpstack_multicast_group(self, group_id: str) -> Any:
        """Read a ChirpStack v4 multicast group (MulticastGroupService.Get, `GET /api/multicast-groups/{id}`)
        as chirpstack-api's MulticastGroup message. DownlinkError when ChirpStack refuses or the answer
        is not a GetMulticastGroupResponse."""
        from chirpstack_api.api import multicast_group_pb2 as mg
        from google.protobuf import json_format

        base = self._configured_base()
        answer = self._call("GET", f"{base}/api/multicast-groups/{quote(group_id, safe='')}", None,
                            {"Grpc-Metadata-Authorization": f"Bearer {self._key()}"},
                            f"ChirpStack multicast group {group_id} read")
        try:
            parsed = json_format.ParseDict(answer.json(), mg.GetMulticastGroupResponse(), ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError) as error:
            raise DownlinkError(f"ChirpStack answered the group's read with no GetMulticastGroupResponse: {error}") from None
        if not parsed.HasField("multicast_group"):
            raise DownlinkError("ChirpStack answered the group's read without the group")
        return parsed.multicast_group

    def delete_chirpstack_multicast_group(self, group_id: str) -> None:
        """Delete a ChirpStack v4 multicast group the bridge made (MulticastGroupService.Delete,
        `DELETE /api/multicast-groups/{id}`, the id from chirpstack-api's DeleteMulticastGroupRequest);
        a group ChirpStack no longer has (404) counts as deleted. DownlinkError when it refuses."""
        from chirpstack_api.api import multicast_group_pb2 as mg

        base = self._configured_base()
        request = mg.DeleteMulticastGroupRequest(id=group_id)
        url = f"{base}/api/multicast-groups/{quote(request.id, safe='')}"
        self._call("DELETE", url, None, {"Grpc-Metadata-Authorization": f"Bearer {self._key()}"},
                   f"ChirpStack multicast group {group_id} deleted",
                   accept={404: f"ChirpStack multicast group {group_id} was already gone"})

    def tts_multicast_device(self, application_id: str, device_id: str,
                             route_hint: RouteHint | None = None) -> TtsMulticastDevice:
        """Read a TTS multicast end device from the Network Server's registry (NsEndDeviceRegistry.Get,
        `GET /api/v3/ns/applications/{app}/devices/{device}?field_mask=...`): whether it is a multicast,
        Class C device and the RX2 frequency and data rate its Class C downlinks go out on
        (`mac_state.current_parameters`, the MACParameters the Network Server schedules RX2 with).
        route_hint (a collar's push URL of the application) names the server when no URL is configured.
        DownlinkError when it cannot be read or the answer is not an end device."""
        base, _, headers = self._tts_server(route_hint)
        url = (f"{base}/api/v3/ns/applications/{quote(application_id, safe='')}/devices/{quote(device_id, safe='')}"
               f"?field_mask={','.join(TTS_MULTICAST_FIELDS)}")
        answer = self._call("GET", url, None, headers,
                            f"TTS multicast end device {device_id} read")
        try:
            return parse_tts_multicast_device(answer.json())
        except ValueError as error:
            raise DownlinkError(f"The Things Stack's answer for {device_id} is not an end device: {error}") from None

    def _configured_base(self) -> str:
        """The network server's URL without a trailing slash; DownlinkError when none is configured."""
        base = (self.settings.network_server_url or "").rstrip("/")
        if not base:
            raise DownlinkError("no network server configured (TEMBO_NETWORK_SERVER_URL)")
        return base

    def _key(self) -> str:
        key = self.settings.network_server_api_key
        return key.get_secret_value() if key else ""

    def _route_key(self, url: str, header_key: str | None) -> str:
        """The key a push to url (a webhook header's route) carries: the header's own, else the configured
        one only when url is on the configured network server (scheme, host and port): never to a host
        only a header named."""
        if header_key:
            return header_key
        configured = origin_of(self.settings.network_server_url)
        return self._key() if configured is not None and origin_of(url) == configured else ""

    def _post(self, url: str, body: dict[str, object], headers: dict[str, str], done: str,
              device_id: str | None = None, carries_downlinks: bool = False) -> httpx.Response:
        return self._call("POST", url, body, headers, done, device_id, carries_downlinks=carries_downlinks)

    def _call(self, method: str, url: str, body: dict[str, object] | None, headers: dict[str, str], done: str,
              device_id: str | None = None, accept: dict[int, str] | None = None,
              carries_downlinks: bool = False) -> httpx.Response:
        """Make one call to the network server and log `done` (what the call did) once it answered 2xx;
        a status in `accept` also counts as done and logs, as a warning, what that status means there.
        DownlinkError when the server is unreachable, has not answered whole in time (a connect and a read at
        their limits: `call_deadline`) or answers anything else; AnswerCutOff, when the call carries_downlinks,
        for a request the server had whole and never answered whole (the downlinks may be queued there)."""
        try:
            response = request_within(self.http, method, url, "network-server-call", json=body, headers=headers)
        except httpx.ReadTimeout as error:
            cut_off = AnswerCutOff if carries_downlinks else DownlinkError
            raise cut_off(f"network server took the request and did not answer: {type(error).__name__}") from error
        except httpx.HTTPError as error:
            raise DownlinkError(f"network server unreachable: {type(error).__name__}") from error
        except DeadlinePassed as error:
            cut_off = AnswerCutOff if carries_downlinks else DownlinkError
            raise cut_off(f"network server too slow: {error}") from error
        context = {"device_id": device_id} if device_id else {}
        meaning = (accept or {}).get(response.status_code)
        if meaning is not None:
            log.warning("%s (network server answered %d)", meaning, response.status_code, extra=context)
            return response
        if response.status_code >= 300:
            raise DownlinkError(f"network server answered {response.status_code}: {refusal_reason(response)}",
                                status=response.status_code,
                                retry_after_s=_retry_after_of(response.headers))
        log.info("%s", done, extra=context)
        return response

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self.http.close()


TTS_MULTICAST_FIELDS = ("multicast", "supports_class_c", "mac_state.current_parameters.rx2_frequency",
                        "mac_state.current_parameters.rx2_data_rate_index")


@dataclass(frozen=True)
class TtsMulticastDevice:
    """What The Things Stack's Network Server holds for a multicast end device."""

    multicast: bool
    supports_class_c: bool
    rx2_frequency_hz: int | None  # None: the device has no MAC state at the Network Server
    rx2_data_rate: int | None


def parse_tts_multicast_device(answer: object) -> TtsMulticastDevice:
    """An EndDevice of TTS's JSON API (proto3 JSON: fields that are false or zero left out, uint64 as a
    decimal string, the DataRateIndex enum by its name `DATA_RATE_<n>` or its number); ValueError when
    the shape is not that."""
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    flags = {name: answer.get(name, False) for name in ("multicast", "supports_class_c")}
    if not all(isinstance(value, bool) for value in flags.values()):
        raise ValueError("multicast and supports_class_c must be booleans")
    state = answer.get("mac_state")
    if state is None:
        return TtsMulticastDevice(flags["multicast"], flags["supports_class_c"], None, None)
    current = state.get("current_parameters", {}) if isinstance(state, dict) else None
    if not isinstance(current, dict):
        raise ValueError("mac_state.current_parameters must be an object")
    frequency = int_within(current.get("rx2_frequency", "0"), 0, UINT64_MAX)
    if frequency is None:
        raise ValueError(f"rx2_frequency {current.get('rx2_frequency')!r} is not a uint64")
    said = current.get("rx2_data_rate_index", 0)
    rate = int_within(said[10:] if isinstance(said, str) and said.startswith("DATA_RATE_") else said, 0, 15)
    if rate is None:
        raise ValueError(f"rx2_data_rate_index {current.get('rx2_data_rate_index')!r} is not a DataRateIndex")
    return TtsMulticastDevice(flags["multicast"], flags["supports_class_c"], frequency, rate)


# The longest a network server's Retry-After is followed (a day: fair use's own window).
MAX_RETRY_AFTER_S = 86400.0


def _retry_after_of(headers: httpx.Headers) -> float | None:
    """How long a refusing server asks to wait: The Things Stack's `X-Rate-Limit-Retry` (whole seconds,
    beside `X-Rate-Limit-Limit`, `-Available` and `-Reset`: lorawan-stack pkg/ratelimit
    Result.SetHTTPHeaders) when above 0, else the standard `Retry-After`."""
    tts = retry_after_s(headers.get("X-Rate-Limit-Retry"))
    return tts if tts else retry_after_s(headers.get("Retry-After"))


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """How many seconds a `Retry-After` header asks to wait (RFC 9110 10.2.3: delay-seconds or an
    HTTP-date), at most MAX_RETRY_AFTER_S; None when there is none or it is neither."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(int(value[:12])), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    waited = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(waited, 0.0), MAX_RETRY_AFTER_S)


# The Things Stack's downlink URLs as its webhooks send them (X-Downlink-Push / X-Downlink-Replace):
# `{server}/api/v3/as/applications/{app}[/webhooks/{id}]/devices/{device}/down/push|replace`
# (a server behind a path prefix puts it before `/api/v3`)
_TTS_DOWNLINK_PATH = re.compile(r"/api/v3/as/applications/[^/]+(/webhooks/[^/]+)?/devices/[^/]+/down/(push|replace)$")
# The collars whose odd downlink URLs were logged, at most this many remembered (then forgotten, logged again)
ODD_URLS_REMEMBERED = 10_000


def tts_downlink_url_in_usual_form(url: str) -> bool:
    """True when url is a downlink URL in The Things Stack's form (`_TTS_DOWNLINK_PATH` on http(s))."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and _TTS_DOWNLINK_PATH.search(parts.path) is not None


class OddDownlinkUrls:
    """Tells the log, once per collar and header, of a TTS downlink URL in no usual form (a proxy that rewrote
    it, a hand-made webhook): until 7 December its route was dropped without a line. The line names the
    collar, the header and the URL's host and path, never its query nor user part, nor the API key."""

    def __init__(self) -> None:
        self._told: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def check(self, device_id: str | None, header: str, url: str | None) -> bool:
        """True (and one line the first time for device_id and header) when url is in no usual form."""
        if not url or tts_downlink_url_in_usual_form(url):
            return False
        told = (device_id or "", header)
        with self._lock:
            if told in self._told:
                return True
            if len(self._told) >= ODD_URLS_REMEMBERED:
                self._told.clear()
            self._told.add(told)
        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"[:200]
        log.warning("%s of device_id=%s is in no usual form of The Things Stack (%r, not "
                    "{server}/api/v3/as/applications/{app}/devices/{device}/down/push): its route is read from the "
                    "webhook path when it names the collar, else not kept", header, device_id, shown,
                    extra={"device_id": device_id, "header": header})
        return True


def _bearer(key: str) -> dict[str, str]:
    """The Things Stack's Authorization header for an API key (none without a key)."""
    return {"Authorization": f"Bearer {key}"} if key else {}


def _tts_server_of(push_url: str) -> tuple[str, str]:
    """The server URL and webhook path segment of a TTS push URL
    (`{server}/api/v3/as/applications/{app}[/webhooks/{id}]/devices/{device}/down/push`)."""
    server, _, path = push_url.partition("/api/v3/")
    if not path:
        parts = urlsplit(push_url)
        return f"{parts.scheme}://{parts.netloc}", ""
    webhook = path.split("/devices/", 1)[0].partition("/webhooks/")[2]
    return server.rstrip("/"), f"/webhooks/{webhook}" if webhook else ""


def _queue_item_id(response: httpx.Response) -> str | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    value = answer.get("id") if isinstance(answer, dict) else None
    return str(value)[:64] if isinstance(value, str | int) else None
