"""Every message kind The Things Stack v3 and ChirpStack v4 send, as their documentation shows it.

Written by hand from the owners' pages (each fixture names its page), not from Tembo's builders:
ids, times and field sets are the documentation's. Only `frm_payload` / `data` of uplinks carry a
Tembo status payload (the collar's own wire format), so an uplink can be followed to the store.
ChirpStack's JSON is the Protobuf JSON mapping of chirpstack-api's integration.proto; a test parses
each ChirpStack fixture with that package's own messages to prove the shape.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from typing import Any

from collar_firmware import codec

TTS_DATA_FORMATS = "https://www.thethingsindustries.com/docs/integrations/data-formats/"
TTS_API_APPLICATION_UP = "https://www.thethingsindustries.com/docs/api/reference/grpc/application_server/#message:ApplicationUp"
TTS_WEBHOOK_PATHS = "https://www.thethingsindustries.com/docs/integrations/webhooks/path-variables/"
TTS_FIELD_MASK = "https://www.thethingsindustries.com/docs/integrations/webhooks/creating-webhooks/"
CHIRPSTACK_EVENTS = "https://www.chirpstack.io/docs/chirpstack/integrations/events.html"
CHIRPSTACK_HTTP = "https://www.chirpstack.io/docs/chirpstack/integrations/http.html"

STATUS_TIME_S = 1_581_952_000  # 2020-02-17T15:06:40Z, the day of the TTS examples


def status_payload() -> str:
    """A Tembo status message (port 1), base64, for the uplinks below."""
    values = {
        "time_s": STATUS_TIME_S, "lat": -2.5, "lon": 37.5, "fix_age_s": 0, "battery_mv": 3900,
        "temperature_c": 30.0, "fw_version": "1.2.3", "model_version": 7, "uptime_h": 5,
        "reset_cause": "power_on", "behaviour": "forage", "queue_depth": 0, "errors": 0,
    }
    return base64.b64encode(codec.encode("status", values)).decode()


@dataclass(frozen=True)
class Fixture:
    """One documented message: which network, which kind (as the network names it), the page, the body."""

    network: str
    event: str | None
    doc: str
    body: dict[str, Any]

    def copy(self) -> dict[str, Any]:
        """A deep copy of the body to change in a test."""
        return copy.deepcopy(self.body)


TTS_END_DEVICE_IDS = {
    "device_id": "dev1",
    "application_ids": {"application_id": "app1"},
    "dev_eui": "0004A30B001C0530",
    "join_eui": "800000000000000C",
    "dev_addr": "00BCB929",
}

TTS_UPLINK_MESSAGE = {
    "session_key_id": "AXA50tHUGUucuzS/bCGMNw==",
    "f_port": 1,
    "f_cnt": 1,
    "frm_payload": status_payload(),
    "decoded_payload": {"temperature": 1.0, "luminosity": 0.64},
    "rx_metadata": [{
        "gateway_ids": {"gateway_id": "gtw1", "eui": "9C5C8E00001A05C4"},
        "time": "2020-02-12T15:15:45.787Z",
        "timestamp": 2463457000,
        "rssi": -35,
        "channel_rssi": -35,
        "snr": 5,
        "uplink_token": "ChIKEAoEZ3R3MRIInFyOAAAaBcQQ6L3Vlgk=",
        "channel_index": 2,
    }],
    "settings": {
        "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
        "data_rate_index": 5,
        "coding_rate": "4/6",
        "frequency": "868300000",
        "timestamp": 2463457000,
        "time": "2020-02-12T15:15:45.787Z",
    },
    "consumed_airtime": "0.056576s",
    "locations": {"user": {"latitude": 37.97155556731436, "longitude": 23.72678801175413, "altitude": 10,
                           "source": "SOURCE_REGISTRY"}},
    "received_at": "2020-02-12T15:15:45.789585559Z",
}

TTS_DOWNLINK = {
    "session_key_id": "AXBSp8v2brG0jqkri+sIkw==",
    "f_port": 15,
    "f_cnt": 1,
    "frm_payload": "vu8=",
    "confirmed": True,
    "priority": "NORMAL",
    "correlation_ids": ["as:downlink:01E19B99501X84X6CV471TVSZ1"],
}


def _tts(key: str, message: dict[str, Any], doc: str = TTS_DATA_FORMATS, ids: dict[str, Any] | None = None) -> Fixture:
    return Fixture("tts", None, doc, {
        "end_device_ids": ids or TTS_END_DEVICE_IDS,
        "correlation_ids": ["as:up:01E0WZGT6Y7657CPFPE5WEYDSQ", "gs:conn:01E0WDEC6T5T4XXBAX7S1VMFKE"],
        "received_at": "2020-02-17T10:32:24.590413417Z",
        key: message,
    })


TTS = {
    "uplink_message": _tts("uplink_message", TTS_UPLINK_MESSAGE),
    # The documentation's own example leaves f_port out (it is omitted when zero): a MAC-only frame.
    "uplink_message_without_f_port": _tts("uplink_message", {
        key: value for key, value in TTS_UPLINK_MESSAGE.items() if key not in ("f_port", "frm_payload", "decoded_payload")
    } | {"f_cnt": 2}),
    "uplink_normalized": _tts("uplink_normalized", {
        "session_key_id": "AXA50tHUGUucuzS/bCGMNw==",
        "f_port": 1,
        "f_cnt": 1,
        "frm_payload": status_payload(),
        "normalized_payload": [{"air": {"temperature": 21.5}}],
        "rx_metadata": TTS_UPLINK_MESSAGE["rx_metadata"],
        "settings": TTS_UPLINK_MESSAGE["settings"],
        "received_at": "2020-02-12T15:15:45.789585559Z",
        "consumed_airtime": "0.056576s",
    }, doc=TTS_API_APPLICATION_UP),
    "join_accept": _tts("join_accept", {
        "session_key_id": "AXBSH1Pk6Z0G166RlH16CQ==",
        "received_at": "2020-02-17T07:49:09.736532315Z",
    }),
    "downlink_queued": _tts("downlink_queued", TTS_DOWNLINK),
    "downlink_sent": _tts("downlink_sent", TTS_DOWNLINK),
    "downlink_ack": _tts("downlink_ack", TTS_DOWNLINK),
    "downlink_nack": _tts("downlink_nack", TTS_DOWNLINK),
    "downlink_failed": _tts("downlink_failed", {
        "downlink": {
            "f_port": 15,
            "frm_payload": "vu8=",
            "confirmed": True,
            "priority": "NORMAL",
            "correlation_ids": ["as:downlink:01E19Z5W3BZBG7CXSJE9C0A3CE"],
        },
        "error": {
            "namespace": "pkg/networkserver",
            "name": "application_downlink_too_long",
            "message_format": "application downlink payload is too long",
            "correlation_id": "2e7f786912e946e597894e381d0ad7b0",
            "code": 3,
        },
    }, ids={"device_id": "dev1", "application_ids": {"application_id": "app1"}}),
    "downlink_queue_invalidated": _tts("downlink_queue_invalidated", {
        "downlinks": [TTS_DOWNLINK],
        "last_f_cnt_down": 1,
        "session_key_id": "AXBSp8v2brG0jqkri+sIkw==",
    }, doc=TTS_API_APPLICATION_UP),
    "location_solved": _tts("location_solved", {
        "service": "lora-cloud-device-management-v1-gnss",
        "location": {"latitude": 37.97155556731436, "longitude": 23.72678801175413, "altitude": 10, "accuracy": 13,
                     "source": "SOURCE_GPS"},
    }, doc=TTS_API_APPLICATION_UP),
    "service_data": _tts("service_data", {
        "service": "lora-cloud-device-management-v1",
        "data": {"result": {"deveui": "0004A30B001C0530", "uplink_count": 3}},
    }, doc=TTS_API_APPLICATION_UP),
}

CHIRPSTACK_DEVICE_INFO = {
    "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
    "tenantName": "ChirpStack",
    "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
    "applicationName": "Test application",
    "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
    "deviceProfileName": "Test device-profile",
    "deviceName": "Test device",
    "devEui": "0101010101010101",
    "deviceClassEnabled": "CLASS_A",
    "tags": {"key": "value"},
}
CHIRPSTACK_TX_INFO = {
    "frequency": 867100000,
    "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}},
}


def _chirpstack(event: str, fields: dict[str, Any]) -> Fixture:
    body = {"time": "2022-07-18T09:34:15.775023242+00:00", "deviceInfo": CHIRPSTACK_DEVICE_INFO, **fields}
    return Fixture("chirpstack", event, CHIRPSTACK_EVENTS, body)


CHIRPSTACK = {
    "up": _chirpstack("up", {
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "devAddr": "00189440",
        "dr": 1,
        "fCnt": 4,
        "fPort": 1,
        "data": status_payload(),
        "rxInfo": [{
            "gatewayId": "0016c001f153a14c",
            "uplinkId": 4217106255,
            "rssi": -36,
            "snr": 10.5,
            "context": "E3OWOQ==",
            "metadata": {"region_common_name": "EU868", "region_config_id": "eu868"},
        }],
        "txInfo": CHIRPSTACK_TX_INFO,
    }),
    "join": _chirpstack("join", {"deduplicationId": "c9dbe358-2578-4fb7-b295-66b44edc45a6", "devAddr": "00189440"}),
    "ack": _chirpstack("ack", {
        "deduplicationId": "c9dbe358-2578-4fb7-b295-66b44edc45a6",
        "queueItemId": "3a8d0f9e-4ff3-4cd6-8e2b-6f6bc0d24a37",
        "acknowledged": True,
        "fCntDown": 2,
    }),
    "txack": _chirpstack("txack", {
        "downlinkId": 3207290520,
        "queueItemId": "3a8d0f9e-4ff3-4cd6-8e2b-6f6bc0d24a37",
        "fCntDown": 2,
        "gatewayId": "0016c001f153a14c",
        "txInfo": CHIRPSTACK_TX_INFO,
    }),
    "status": _chirpstack("status", {
        "deduplicationId": "c9dbe358-2578-4fb7-b295-66b44edc45a6",
        "margin": 6,
        "batteryLevel": 75.5,
    }),
    "log": _chirpstack("log", {
        "level": "ERROR",
        "code": "UPLINK_CODEC",
        "description": "Decode error: payload is shorter than expected",
        "context": {"deduplication_id": "c9dbe358-2578-4fb7-b295-66b44edc45a6"},
    }),
    "location": _chirpstack("location", {
        "deduplicationId": "c9dbe358-2578-4fb7-b295-66b44edc45a6",
        "location": {"latitude": 52.3740364, "longitude": 4.9144401, "altitude": 10.5, "source": "GEO_RESOLVER_TDOA",
                     "accuracy": 25.0},
    }),
    "integration": _chirpstack("integration", {
        "deduplicationId": "c9dbe358-2578-4fb7-b295-66b44edc45a6",
        "integrationName": "loracloud",
        "eventType": "geolocation",
        "object": {"accuracy": 25, "latitude": 52.3740364},
    }),
}
