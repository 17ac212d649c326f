"""Builders for the bridge tests: collar payloads through the real codec, wrapped as the JSON a
network server posts (The Things Stack v3 uplink, ChirpStack v4 event/up). Small on purpose, so the
answer of every test can be checked by hand."""

from __future__ import annotations

import atexit
import base64
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from collar_firmware import codec
from collar_firmware.classifier import Model, read_default_blob
from lora_bridge.access import Viewer
from lora_bridge.service import Bridge, open_bridge
from lora_bridge.store.database import open_database

# Activity and status messages name their shares and behaviour by the model version they carry:
# the builders speak as a collar running the shipped model.
SHIPPED_MODEL_VERSION = Model.from_bytes(read_default_blob()).version

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
T0_S = int(T0.timestamp())
APPLICATION_ID = "tembo-test"
SECRET = "test-secret-of-the-reserve"
# What a network server's webhook call carries (the secret the operator configured in the webhook).
HEADERS = {"X-Tembo-Secret": SECRET, "Content-Type": "application/json"}
# The ranger whose eyes the bridge tests read through: exact live positions.
RANGER = Viewer("ranger.amani", "ranger")


def rfc3339(moment: datetime) -> str:
    """moment as TTS writes it (nanoseconds, Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def status(time_s: int = T0_S, lat: float = -2.5, lon: float = 37.5, battery_mv: int = 3900,
           behaviour: str = "forage", fix_age_s: int = 0, fw_version: str = "1.2.3",
           model_version: int | None = None, update: dict | None = None,
           temperature_c: float = 31.5, flags: dict[str, bool] | None = None) -> tuple[int, bytes]:
    """(port, payload) of a status message (version 2 when update gives the last update's result:
    update_kind, update_outcome, update_version, update_reason); flags: the status flags set
    (in_farmland, outside_park, ...)."""
    values = {
        "time_s": time_s, "lat": lat, "lon": lon, "fix_age_s": fix_age_s, "battery_mv": battery_mv,
        "temperature_c": temperature_c, "fw_version": fw_version,
        "model_version": SHIPPED_MODEL_VERSION if model_version is None else model_version, "uptime_h": 12,
        "reset_cause": "power_on", "behaviour": behaviour, "queue_depth": 0, "errors": 0, **(update or {}),
        **{name: int(bool(value)) for name, value in (flags or {}).items()},
    }
    return codec.port_of("status"), codec.encode("status", values)


def activity(time_s: int = T0_S, shares_pct: tuple[float, ...] = (50.0, 30.0, 15.0, 5.0),
             interval_min: int = 60) -> tuple[int, bytes]:
    """(port, payload) of an activity summary of the shipped model; shares in percent, in its class order."""
    values = {
        "time_s": time_s, "interval_min": interval_min, "model_version": SHIPPED_MODEL_VERSION, "vedba_mean_mg": 85,
        "vedba_max_mg": 640, "shares": list(shares_pct),
    }
    return codec.port_of("activity"), codec.encode("activity", values)


def positions(time_s: int = T0_S, fixes: tuple[tuple[int, float, float], ...] = ()) -> tuple[int, bytes]:
    """(port, payload) of a positions message: fixes are (dt_s, lat, lon)."""
    values = {"time_s": time_s, "fixes": [{"dt_s": dt, "lat": la, "lon": lo} for dt, la, lo in fixes]}
    return codec.port_of("positions"), codec.encode("positions", values)


def alert(alert_type: str = "mortality", seq: int = 1, time_s: int = T0_S, lat: float = -2.51,
          lon: float = 37.52) -> tuple[int, bytes]:
    """(port, payload) of a collar alert."""
    values = {"alert_type": alert_type, "seq": seq, "time_s": time_s, "lat": lat, "lon": lon}
    return codec.port_of("alert"), codec.encode("alert", values)


def settings(**values: int) -> tuple[int, bytes]:
    """(port, payload) of the collar's settings report (port 3, TLV), e.g. settings(status_interval_s=10800)."""
    return codec.SETTINGS_PORT, codec.encode_settings(values)


def ack(command: str = "ack_alert", result: str = "ok", time_s: int = T0_S) -> tuple[int, bytes]:
    """(port, payload) of the collar's ack of a port-32 command."""
    row = codec.message(command)
    values = {"time_s": time_s, "on_port": row[1], "cmd": row[2], "result": result}
    return codec.port_of("ack"), codec.encode("ack", values)


def dev_eui_of(device_id: str) -> str:
    """The DevEUI the builders give a collar name (every collar its own, as on a real network)."""
    import hashlib

    return "70B3D57ED0" + hashlib.sha256(device_id.encode()).hexdigest()[:6].upper()


def heard_by_default(message: tuple[int, bytes]) -> datetime:
    """When the builders' network hears a message no test dated: 2 s after the collar's time of it, and
    not before T0 (a message of the morning is heard at T0 + 2 s). A reception before the message's own
    time would be a collar clock ahead, which the bridge does not believe."""
    port, payload = message
    try:
        time_s = codec.decode(port, bytes(payload)).get("time_s")
    except Exception:  # a payload a test broke on purpose has no time to go by
        time_s = None
    sent = datetime.fromtimestamp(time_s, UTC) if isinstance(time_s, int) and time_s > T0_S else T0
    return sent + timedelta(seconds=2)


def tts_uplink(message: tuple[int, bytes], *, device_id: str = "collar-01", f_cnt: int = 1,
               gateways: tuple[str, ...] = ("gw-north",), received_at: datetime | None = None,
               dev_eui: str | None = None) -> bytes:
    """A The Things Stack v3 uplink webhook body (bytes, as posted)."""
    port, payload = message
    dev_eui = dev_eui or dev_eui_of(device_id)
    heard = received_at or heard_by_default(message)
    document = {
        "end_device_ids": {
            "device_id": device_id,
            "application_ids": {"application_id": APPLICATION_ID},
            "dev_eui": dev_eui,
            "dev_addr": "260B0001",
        },
        "correlation_ids": [f"as:up:{device_id}:{f_cnt}"],
        "received_at": rfc3339(heard),
        "uplink_message": {
            "f_port": port,
            "f_cnt": f_cnt,
            "frm_payload": base64.b64encode(payload).decode(),
            "rx_metadata": [
                {"gateway_ids": {"gateway_id": gw}, "rssi": -100 - 3 * i, "channel_rssi": -100 - 3 * i,
                 "snr": 7.5 - i}
                for i, gw in enumerate(gateways)
            ],
            "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9,
                                                "coding_rate": "4/5"}}, "frequency": "868100000"},
            "received_at": rfc3339(heard),
            "consumed_airtime": "0.185344s",
        },
    }
    return json.dumps(document).encode()


def tts_join(*, device_id: str = "collar-01", received_at: datetime = T0, dev_eui: str | None = None) -> bytes:
    """A The Things Stack v3 join-accept webhook body (bytes, as posted): the collar joined at received_at."""
    document = json.loads(tts_uplink((1, b""), device_id=device_id, received_at=received_at, dev_eui=dev_eui))
    del document["uplink_message"]
    document["correlation_ids"] = [f"as:up:{device_id}:join"]
    document["join_accept"] = {"session_key_id": "AXBSH1Pk6Z0G166RlH16CQ==", "received_at": rfc3339(received_at)}
    return json.dumps(document).encode()


def chirpstack_uplink(message: tuple[int, bytes], *, device_id: str = "collar-01", f_cnt: int = 1,
                      gateways: tuple[str, ...] = ("0016c001ff10a235",), received_at: datetime | None = None,
                      dev_eui: str | None = None) -> bytes:
    """A ChirpStack v4 `event/up` body (bytes, as posted by the HTTP integration)."""
    port, payload = message
    dev_eui = (dev_eui or dev_eui_of(device_id)).lower()
    heard = received_at or heard_by_default(message)
    document = {
        "deduplicationId": f"dedup-{device_id}-{f_cnt}",
        "time": heard.isoformat().replace("+00:00", "Z"),
        "deviceInfo": {"tenantId": "t", "applicationId": "0b8e8ae8-1f21-4b5d-9d2a-ffcb57c1a0a1",
                       "applicationName": "tembo", "deviceName": device_id, "devEui": dev_eui},
        "devAddr": "260b0001",
        "dr": 3,
        "fCnt": f_cnt,
        "fPort": port,
        "data": base64.b64encode(payload).decode(),
        "rxInfo": [{"gatewayId": gw, "rssi": -104, "snr": 6.0} for gw in gateways],
        "txInfo": {"frequency": 868100000, "modulation": {"lora": {"bandwidth": 125000,
                                                                   "spreadingFactor": 9,
                                                                   "codeRate": "CR_4_5"}}},
    }
    return json.dumps(document).encode()


def api_headers(bridge: Bridge, role: str = "ranger") -> dict[str, str]:
    """`Authorization: Bearer ...` of a fresh API token in `role` (its account made when missing)."""
    from lora_bridge.errors import InvalidRequest

    console = Viewer("console:tests", "admin")
    owner = f"{role.replace('_', '-')}-tests"
    try:
        bridge.add_user(owner, role, "a test account's password", actor=console)
    except InvalidRequest:
        pass  # made by an earlier call
    return {"Authorization": f"Bearer {bridge.create_token(owner, 'tests', actor=console).secret}"}


def chirpstack_ack(dev_eui: str, queue_item_id: str, acknowledged: bool) -> bytes:
    """ChirpStack v4's `ack` event (integration.proto AckEvent, tests/network_fixtures.py) of a queue item."""
    import network_fixtures as nf

    ack = nf.CHIRPSTACK["ack"].copy()
    ack["deviceInfo"]["devEui"], ack["queueItemId"] = dev_eui.lower(), queue_item_id
    if acknowledged:
        ack["acknowledged"] = True
    else:
        ack.pop("acknowledged")  # proto3 JSON leaves false out
    return json.dumps(ack).encode()


# ---- running things ---------------------------------------------------------------------------

def statements_of(bridge: Bridge) -> list[str]:
    """The SQL statements the bridge's write engine runs from now on, each on one line (the list
    returned fills as they run)."""
    said: list[str] = []

    def keep(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        said.append(" ".join(statement.split()))

    event.listen(bridge.db.write_engine, "before_cursor_execute", keep)
    return said


def reads_by_one_value(statement: str, where: str) -> bool:
    """statement reads by one value of where's column (where: "FROM alerts WHERE alerts.device_id"),
    not by a batch's list of them (`reads_by_a_list`)."""
    return f"{where} = " in statement and f"{where} = ANY" not in statement


def reads_by_a_list(statement: str, where: str) -> bool:
    """statement reads by a batch's list of values of where's column (`store.bulk.in_list`: IN on
    SQLite, = ANY on PostgreSQL)."""
    return f"{where} IN" in statement or f"{where} = ANY" in statement


def release_keys_file(folder: Path, *signing_keys: Any) -> str:
    """A collar release key file (TEMBO_RELEASE_KEYS_FILE) in folder holding the keys the firmware ships
    and signing_keys (`updates.keys.SigningKey`s a test signs images with): what its collars hold."""
    from lora_bridge.updates import keys

    held = Path(folder) / "collars_release_keys.bin"
    held.write_bytes(keys.COLLAR_KEYS_PATH.read_bytes())
    for key in signing_keys:
        keys.install_public(key.key_id, key.public_key, held, replace=True)
    return str(held)


_MIGRATED_SQLITE: list[Path] = []


def migrated_sqlite_store() -> Path:
    """A SQLite store brought to the newest migration by `open_database`, made once per test process
    (migrating a new file takes ~0.4 s; a copy of this one, a millisecond). The migrations themselves
    are tried from nothing by tests/test_bridge_stores.py, on both stores."""
    if not _MIGRATED_SQLITE:
        folder = Path(tempfile.mkdtemp(prefix="tembo-store-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = folder / "tembo.db"
        open_database(f"sqlite:///{path}").dispose()  # the last connection closed: its WAL checkpointed
        _MIGRATED_SQLITE.append(path)
    return _MIGRATED_SQLITE[0]


def _new_sqlite_file(store_url: str) -> Path | None:
    """The SQLite file store_url names when it is not there yet (None for PostgreSQL, memory, a file there)."""
    parsed = make_url(store_url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def migrated(store_url: str) -> str:
    """store_url, whose SQLite file, when not there yet, starts as a copy of the migrated empty store
    (`migrated_sqlite_store`): what opening it would have migrated, in a millisecond instead of ~0.4 s of
    CPU. PostgreSQL, memory and a file already there are left as they are."""
    sqlite_file = _new_sqlite_file(store_url)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_sqlite_store(), sqlite_file)
    return store_url


@contextmanager
def fresh_bridge(store_url: str, signed_by: tuple[Any, ...] = (), **settings: Any) -> Iterator[Bridge]:
    """A Bridge on the empty store at store_url (SQLite file or PostgreSQL database of the fixture);
    signed_by: the release keys its collars hold beside the firmware's (`release_keys_file`), which the
    images of its campaigns are checked against. A SQLite file not there yet starts as a copy of the
    migrated empty store (`migrated_sqlite_store`), as a PostgreSQL one is cloned from its template."""
    settings.setdefault("webhook_secret", SECRET)
    # the builders' collars are set up as their firmware says, unasked, unless a test asks them first
    settings.setdefault("fuota_version_wait_s", 0)
    migrated(store_url)
    with tempfile.TemporaryDirectory(prefix="tembo-release-keys-") as folder:
        if signed_by:
            settings["release_keys_file"] = release_keys_file(Path(folder), *signed_by)
        bridge = open_bridge(store_url, **settings)
        try:
            yield bridge
        finally:
            bridge.close()


def pushing_to(network: Any, store_url: str, **settings: Any) -> Any:
    """A fresh bridge (fresh_bridge) whose downlinks go to the stand-in network server on
    `flush_downlinks()` (no outbox thread: each push happens at a known point)."""
    return fresh_bridge(store_url, network_server_url=network.url, network_server_api_key=network.api_key,
                        outbox_worker=False, **settings)


@dataclass
class StandInNetworkServer:
    """Plays The Things Stack's (and ChirpStack's) downlink API; remembers every push it accepted
    (`pushes`, one per downlink) and every queue operation (`operations`: push or replace, with the
    payloads and the body as posted)."""

    api_key: str = "NNSXS.TEST-KEY"
    url: str = ""
    refuse: bool = False
    # Called as each push arrives, before it is answered (a test does what happens meanwhile).
    on_push: Callable[[], object] | None = None
    # TTS device ids deleted from the application: their pushes are answered 404 NOT_FOUND.
    deleted: set[str] = field(default_factory=set)
    # How many of the next pushes are answered 429 (TTS's rate_limit_exceeded, ResourceExhausted), with
    # TTS's rate-limit headers saying to retry after this many seconds.
    rate_limited: int = 0
    retry_after_s: int = 0
    pushes: list[dict[str, Any]] = field(default_factory=list)
    operations: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        """The Starlette app of the stand-in."""

        async def tts_push(request: Request) -> JSONResponse:
            if request.headers.get("Authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"code": 16, "message": "unauthenticated"}, status_code=401)
            if self.refuse:
                return JSONResponse({"code": 14, "message": "unavailable"}, status_code=503)
            device = request.path_params["device"]
            if device in self.deleted:  # The Things Stack's error body (code 5: NOT_FOUND)
                return JSONResponse({"code": 5, "message": f"error:pkg/applicationserver:device_not_found "
                                     f"(device `{device}` not found)", "details": []}, status_code=404)
            if self.rate_limited > 0:
                self.rate_limited -= 1
                # lorawan-stack pkg/ratelimit: Result.SetHTTPHeaders, errRateLimitExceeded
                return JSONResponse({"code": 8, "message": "error:pkg/ratelimit:rate_limit_exceeded "
                                     "(rate limit exceeded)", "details": []}, status_code=429,
                                    headers={"X-Rate-Limit-Limit": "10", "X-Rate-Limit-Available": "0",
                                             "X-Rate-Limit-Reset": str(self.retry_after_s),
                                             "X-Rate-Limit-Retry": str(self.retry_after_s)})
            body = await request.json()
            if self.on_push is not None:
                self.on_push()
            operation = request.url.path.rsplit("/", 1)[-1]
            self.operations.append({
                "operation": operation,
                "payloads": [base64.b64decode(item["frm_payload"]) for item in body["downlinks"]],
                "body": body,
            })
            for item in body["downlinks"]:
                self.pushes.append({
                    "network": "tts",
                    "application_id": request.path_params["app"],
                    "device_id": request.path_params["device"],
                    "f_port": item["f_port"],
                    "payload": base64.b64decode(item["frm_payload"]),
                    "correlation_ids": item.get("correlation_ids", []),
                })
            return JSONResponse({})

        async def chirpstack_queue(request: Request) -> JSONResponse:
            if request.headers.get("Grpc-Metadata-Authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"code": 16, "message": "unauthenticated"}, status_code=401)
            item = (await request.json())["queueItem"]
            self.pushes.append({
                "network": "chirpstack",
                "dev_eui": request.path_params["dev_eui"],
                "f_port": item["fPort"],
                "payload": base64.b64decode(item["data"]),
            })
            return JSONResponse({"id": f"q-{len(self.pushes)}"})

        return Starlette(routes=[
            Route("/api/v3/as/applications/{app}/devices/{device}/down/push", tts_push, methods=["POST"]),
            Route("/api/v3/as/applications/{app}/devices/{device}/down/replace", tts_push, methods=["POST"]),
            Route("/api/v3/as/applications/{app}/webhooks/{webhook}/devices/{device}/down/push", tts_push,
                  methods=["POST"]),
            Route("/api/v3/as/applications/{app}/webhooks/{webhook}/devices/{device}/down/replace", tts_push,
                  methods=["POST"]),
            Route("/api/devices/{dev_eui}/queue", chirpstack_queue, methods=["POST"]),
        ])


def webhook_post(client: Any, url: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
    """Post a network server's body (a dict as JSON, or bytes) to url; the JSON of its 2xx answer."""
    content = body if isinstance(body, bytes) else json.dumps(body)
    reply = client.post(url, content=content, headers=HEADERS)
    assert 200 <= reply.status_code < 300, reply.text
    return reply.json()
