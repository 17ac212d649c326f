"""Pushing downlinks to the network server through one injectable httpx client.

The Things Stack v3: `POST {url}/api/v3/as/applications/{app}/devices/{device}/down/push` (the
Application Server API; `.../applications/{app}/webhooks/{webhook}/devices/...` when `tts_webhook_id`
is set) with `Authorization: Bearer <API key>` and `{"downlinks": [{"f_port", "frm_payload", "priority"}]}`.
ChirpStack v4 (REST gateway): `POST {url}/api/devices/{devEui}/queue` with
`Grpc-Metadata-Authorization: Bearer <API key>` and `{"queueItem": {"fPort", "data", "confirmed"}}`.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from lora_bridge.errors import DownlinkError
from lora_bridge.settings import BridgeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownlinkTarget:
    """Where one collar's downlinks go."""

    device_id: str
    network: str | None
    application_id: str | None
    dev_eui: str | None


class NetworkServerClient:
    """Pushes encoded downlinks to TTS or ChirpStack; raises DownlinkError when refused."""

    def __init__(self, settings: BridgeSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.http = http or httpx.Client(timeout=settings.downlink_timeout_s)

    def __repr__(self) -> str:
        return f"NetworkServerClient(url={self.settings.network_server_url!r}, api_key=***)"

    def push(self, target: DownlinkTarget, f_port: int, payload: bytes) -> None:
        """Send one downlink for target on f_port; DownlinkError when not accepted."""
        base = (self.settings.network_server_url or "").rstrip("/")
        if not base:
            raise DownlinkError("no network server configured (TEMBO_NETWORK_SERVER_URL)")
        if target.network == "chirpstack":
            url, headers, body = self._chirpstack_request(base, target, f_port, payload)
        else:
            url, headers, body = self._tts_request(base, target, f_port, payload)
        try:
            response = self.http.post(url, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise DownlinkError(f"network server unreachable: {error!r}") from error
        if response.status_code >= 300:
            raise DownlinkError(f"network server answered {response.status_code}: {response.text[:200]}")
        log.info("downlink pushed device_id=%s f_port=%d", target.device_id, f_port, extra={"device_id": target.device_id, "f_port": f_port})

    def _authorization(self) -> str:
        key = self.settings.network_server_api_key
        return f"Bearer {key.get_secret_value()}" if key else ""

    def _tts_request(
        self, base: str, target: DownlinkTarget, f_port: int, payload: bytes
    ) -> tuple[str, dict[str, str], dict[str, object]]:
        if not target.application_id:
            raise DownlinkError(f"collar {target.device_id} has no TTS application id yet")
        application = f"{base}/api/v3/as/applications/{quote(target.application_id)}"
        webhook = self.settings.tts_webhook_id
        via = f"/webhooks/{quote(webhook)}" if webhook else ""
        url = f"{application}{via}/devices/{quote(target.device_id)}/down/push"
        body = {
            "downlinks": [
                {"f_port": f_port, "frm_payload": base64.b64encode(payload).decode(), "priority": "NORMAL"}
            ]
        }
        return url, {"Authorization": self._authorization()}, body

    def _chirpstack_request(
        self, base: str, target: DownlinkTarget, f_port: int, payload: bytes
    ) -> tuple[str, dict[str, str], dict[str, object]]:
        if not target.dev_eui:
            raise DownlinkError(f"collar {target.device_id} has no DevEUI")
        url = f"{base}/api/devices/{quote(target.dev_eui.lower())}/queue"
        body = {
            "queueItem": {"fPort": f_port, "data": base64.b64encode(payload).decode(), "confirmed": False}
        }
        return url, {"Grpc-Metadata-Authorization": self._authorization()}, body

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self.http.close()
