"""The bridge held against a sloppy or hostile world from the outside: what a network server, a service
Tembo notifies or the network between does that their documents do not promise against (a server that
answers one byte at a time, a network clock reset to 1970), and what the bridge's readers then ask of it
(a weekend of dead letters, a twenty-digit animal id)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import bridge_builders as b
import pytest
from notify_standins import SmsGateway
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from lora_bridge.access import Viewer
from lora_bridge.adapters.api import create_app as create_api_app
from lora_bridge.adapters.webhook import create_app
from lora_bridge.group_commit import Submission
from lora_bridge.queries import DEAD_LETTERS_PAGE
from lora_bridge.server import serve_app_in_thread
from tembo.local_services import free_port


class TricklingServer:
    """A server (or a proxy before it) that answers any POST at once, then sends its body one byte at a time,
    each soon enough that no single wait of the bridge's times out, until released."""

    def __init__(self, byte_every_s: float = 0.1) -> None:
        self.byte_every_s = byte_every_s
        self.release = threading.Event()
        self.calls = 0

    def app(self) -> Starlette:
        async def push(request: Request) -> StreamingResponse:
            import anyio

            self.calls += 1

            async def body():  # a JSON object padded with spaces, one a tick, for as long as the test holds it
                yield b"{"
                while not self.release.is_set():
                    await anyio.sleep(self.byte_every_s)
                    yield b" "
                yield b"}"

            return StreamingResponse(body(), media_type="application/json")

        return Starlette(routes=[Route("/{path:path}", push, methods=["POST"])])


def _through(server_url: str, device: str, key: str) -> tuple[bytes, dict[str, str]]:
    """A mortality alert of device as The Things Stack posts it, with the X-Downlink-* headers of server_url."""
    push = f"{server_url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/{device}/down/push"
    headers = dict(b.HEADERS, **{"X-Downlink-Apikey": key, "X-Downlink-Push": push,
                                 "X-Downlink-Replace": push.replace("/push", "/replace")})
    return b.tts_uplink(b.alert("mortality", seq=1), device_id=device, f_cnt=1), headers


def test_rangers_acks_reach_other_collars_while_one_network_server_trickles_its_answer(store_url, network):
    # Collar tr-01's application routes its downlinks through a server that answers a push one byte every
    # 0.1 s: each read comes within downlink_timeout_s (0.5 s), so no single wait ever times out. The ack
    # of collar kws-01, on a working server, must not wait behind it for as long as the trickle lasts.
    trickling = TricklingServer()
    give_up = threading.Timer(20.0, trickling.release.set)  # an unbounded push fails the test, not hangs it
    give_up.start()
    try:
        with serve_app_in_thread(trickling.app(), port=free_port()) as running:
            with b.fresh_bridge(store_url, outbox_worker=False, downlink_timeout_s=0.5) as bridge, \
                    TestClient(create_app(bridge)) as client:
                for body, headers in (_through(running.url, "tr-01", "NNSXS.TRICKLE"),
                                      _through(network.url, "kws-01", network.api_key)):
                    assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
                accepted = bridge.flush_downlinks()
                still_trickling = not trickling.release.is_set()
                downlinks = {d.device_id: d for d in bridge.downlinks()}
    finally:
        trickling.release.set()
        give_up.cancel()

    assert still_trickling, "the flush waited until the trickling server let go"
    assert accepted == 1 and [p["device_id"] for p in network.pushes] == ["kws-01"]
    slow = downlinks["tr-01"]
    assert (slow.state, slow.attempts) == ("sent", 1), "the trickled push may be at the network: not pushed again"
    assert "within" in (slow.last_error or "")


def test_an_ack_whose_push_answer_was_cut_off_is_not_pushed_blindly_again_and_still_reaches_the_collar(store_url,
                                                                                                        network):
    # The network server takes the push of collar tr-01's mortality ack, then trickles its answer past the
    # bridge's limit: the ack may well be in the collar's queue at the network already. Pushed again at the
    # next flush, the collar would hear it twice, out of its ten downlinks a day. It waits instead for word
    # of its delivery; the collar's uplinks with no ack and no report make it unconfirmed, and it goes
    # once more, by the route the collar's newest uplinks came with.
    trickling = TricklingServer()
    give_up = threading.Timer(20.0, trickling.release.set)
    give_up.start()
    try:
        with serve_app_in_thread(trickling.app(), port=free_port()) as running:
            with b.fresh_bridge(store_url, outbox_worker=False, downlink_timeout_s=0.5) as bridge, \
                    TestClient(create_app(bridge)) as client:
                body, headers = _through(running.url, "tr-01", "NNSXS.TRICKLE")
                assert client.post("/uplinks/tts", content=body, headers=headers).status_code == 200
                first_flush = bridge.flush_downlinks()
                trickling.release.set()
                (cut_off,) = bridge.downlinks()
                repeat = b.tts_uplink(b.alert("mortality", seq=1), device_id="tr-01", f_cnt=2)
                assert client.post("/uplinks/tts", content=repeat, headers=headers).status_code == 200
                second_flush = bridge.flush_downlinks()
                pushes_to_trickling = trickling.calls
                _, working = _through(network.url, "tr-01", network.api_key)
                for f_cnt in (3, 4):
                    status = b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id="tr-01", f_cnt=f_cnt)
                    assert client.post("/uplinks/tts", content=status, headers=working).status_code == 200
                third_flush = bridge.flush_downlinks()
                later = [(d.state, d.attempts) for d in bridge.downlinks()]
    finally:
        trickling.release.set()
        give_up.cancel()

    assert first_flush == 0, "a push with no whole answer is not counted as accepted"
    assert (cut_off.state, cut_off.attempts) == ("sent", 1), "it may be at the network: it waits for word of it"
    assert "answer cut off" in (cut_off.last_error or "")
    assert second_flush == 0 and pushes_to_trickling == 1, "the repeated alert does not push its ack blindly again"
    assert third_flush == 1 and later == [("unconfirmed", 1), ("sent", 1)], "no word and 3 uplinks: it goes again"
    assert [p["device_id"] for p in network.pushes] == ["tr-01"], "the ack went once more, by the working route"


def test_the_duty_officers_sms_goes_while_earthranger_trickles_its_answer(sqlite_url, tmp_path):
    # EarthRanger (or the proxy of the reserve's uplink before it) takes the poaching alert's event and then
    # answers one byte every 0.1 s: each read comes within the notify timeout (0.5 s). The duty officer's
    # SMS, through a working gateway, must not wait behind it for as long as the trickle lasts.
    gateway = SmsGateway(token="sms-gateway-token")
    trickling = TricklingServer()
    give_up = threading.Timer(20.0, trickling.release.set)  # an unbounded call fails the test, not hangs it
    give_up.start()
    try:
        with serve_app_in_thread(trickling.app(), port=free_port()) as er, \
                serve_app_in_thread(gateway.app(), port=free_port()) as sms:
            rules = tmp_path / "rules.toml"
            rules.write_text(
                f'[notify.earthranger]\nurl = "{er.url}/api/v1.0"\ntoken = "er-token"\nprovider_key = "tembo"\n'
                f'[notify.sms]\nurl = "{sms.url}/send"\ntoken = "sms-gateway-token"\n'
                '[notify.retry]\ntimeout_s = 0.5\n'
                '[[notify.routes]]\nname = "earthranger"\nchannel = "earthranger"\n'
                '[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = ["+254700000001"]\n')
            with b.fresh_bridge(sqlite_url, rules_path=str(rules)) as bridge:
                bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), device_id="collar-07", f_cnt=1))
                bridge.flush_notifications()
                still_trickling = not trickling.release.is_set()
                states = {n.channel: n.state for n in bridge.notifications(viewer=Viewer("admin.neema", "admin"))}
    finally:
        trickling.release.set()
        give_up.cancel()

    assert still_trickling, "the notifications waited until the trickling EarthRanger let go"
    assert [m["to"] for m in gateway.messages] == ["+254700000001"]
    assert states == {"earthranger": "pending", "sms": "sent"}


def test_admin_reads_a_weekends_dead_letters_a_page_at_a_time(sqlite_url):
    # A broken formatter at the network server sent a weekend of bodies Tembo cannot read. The admin's page
    # of dead letters had answered every one of them, bodies and all, in one JSON list (6.6 MB for 4,116
    # letters held against a running bridge; a month of a fleet's would not fit the bridge's memory).
    bodies = [Submission("tts", None, b"not json %d" % n) for n in range(DEAD_LETTERS_PAGE + 5)]
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_api_app(bridge)) as client:
        assert {r.status for r in bridge.ingest_batch(bodies)} == {"dead_letter"}
        admin = b.api_headers(bridge, "admin")
        first = client.get("/api/dead_letters", headers=admin).json()
        rest = client.get(f"/api/dead_letters?after={first[-1]['dead_letter_id']}", headers=admin).json()
        five = client.get("/api/dead_letters?limit=5", headers=admin).json()
        refused = client.get("/api/dead_letters?limit=0", headers=admin)

    assert len(first) == DEAD_LETTERS_PAGE and len(rest) == 5, "the letters come a page at a time, oldest first"
    assert [d["body"] for d in first + rest] == [s.body.hex() for s in bodies]
    assert [d["dead_letter_id"] for d in five] == [d["dead_letter_id"] for d in first[:5]]
    assert refused.status_code == 400 and "limit" in refused.json()["error"]


@pytest.mark.parametrize("network_clock", ["1970-01-01T00:00:05Z", "0001-01-01T00:00:00Z"])
def test_a_fix_through_a_network_server_whose_clock_was_reset_shows_as_the_animals_latest_place(
        sqlite_url, network_clock):
    # The reserve's own network server runs on a board without a clock battery and no internet: after a power
    # cut its clock starts again at 1970 (or a network gives Go's zero time, year 1). The collar's GPS clock is
    # right. Its newest fix had been dated by the network's clock: filed in 1970, never the animal's latest
    # place on the live map, and a GeoPackage export of the herd answered 500 for a fix in year 1.
    before = b.tts_uplink(b.status(time_s=b.T0_S - 600, lat=-2.51), f_cnt=1, received_at=b.T0 - timedelta(seconds=590))
    newest = json.loads(b.tts_uplink(b.status(time_s=b.T0_S, lat=-2.52), f_cnt=2))
    newest["received_at"] = newest["uplink_message"]["received_at"] = network_clock
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_api_app(bridge)) as client:
        for body in (before, json.dumps(newest).encode()):
            assert bridge.ingest_tts_uplink(body).status == "processed"
        (latest,) = bridge.latest_positions(viewer=b.RANGER)
        fix_times = [p.time for p in bridge.tracks(viewer=b.RANGER)[latest.animal_id]]
        export = client.get("/api/exports/positions.gpkg", headers=b.api_headers(bridge, "admin"))

    assert (latest.time, round(latest.lat, 2)) == (b.T0, -2.52), "the newest fix is the animal's latest place"
    assert min(fix_times) == b.T0 - timedelta(seconds=600), "no fix filed at the network's reset clock"
    assert export.status_code == 200


@pytest.mark.parametrize("path", ["/api/positions?animal_id={id}", "/api/tracks?animal_id={id}",
                                  "/api/exports/movebank.csv?animal_id={id}", "/api/exports/positions.geojson?animal_id={id}",
                                  "/api/exports/positions.gpkg?animal_id={id}", "/api/exports/positions.shp.zip?animal_id={id}",
                                  "/api/animals/{id}/activity", "/api/animals/{id}/collars"])
def test_a_researcher_who_mistypes_an_animal_id_past_64_bits_gets_an_answer_not_a_500(sqlite_url, path):
    # A script that pasted a DevEUI's digits (or any number of twenty digits) as an animal id: the store's
    # keys are 64-bit, and SQLite refused the number itself (OverflowError), answered as a 500.
    with b.fresh_bridge(sqlite_url, outbox_worker=False) as bridge, TestClient(create_api_app(bridge)) as client:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
        answer = client.get(path.format(id="99999999999999999999"), headers=b.api_headers(bridge, "admin"))

    assert answer.status_code in (200, 404), answer.text


def test_a_herd_whose_store_kept_a_fix_at_a_networks_zero_time_still_exports_to_every_format(tmp_path):
    # A store written before network times of year 1 were refused holds a fix dated 0001-01-01. Its time was
    # written `1-01-01T00:00:00.000Z` (the platform's %Y pads no year to four digits): the GeoPackage export of
    # the whole herd answered 500 and the CSVs held a time no reader takes.
    from datetime import UTC, datetime

    import geopandas as gpd

    from lora_bridge import exports
    from lora_bridge.views import PositionView

    fixes = [PositionView("1", "Naserian", "collar-01", datetime(1, 1, 1, tzinfo=UTC), -2.5, 37.5, 1),
             PositionView("1", "Naserian", "collar-01", b.T0, -2.51, 37.51, 2)]
    (tmp_path / "herd.gpkg").write_bytes(exports.to_geopackage(fixes))
    times = gpd.read_file(tmp_path / "herd.gpkg")["time_utc"].dt.year.tolist()
    movebank = exports.to_movebank_csv(fixes).decode().splitlines()

    assert times == [1, 2026]
    assert movebank[1].split(",")[2] == "0001-01-01 00:00:00.000"


def test_the_duty_officers_sms_is_not_counted_sent_when_the_gateway_only_redirects(sqlite_url, tmp_path):
    # The SMS gateway's operator moved it to HTTPS: its old address answers every call "301 Moved Permanently"
    # and sends nothing. A 3xx is no delivery: the poaching alert's SMS had been marked sent, and the duty
    # officer never woken.
    async def moved(request: Request) -> Response:
        return Response(status_code=301, headers={"Location": "https://sms.example/send"})

    gateway = Starlette(routes=[Route("/send", moved, methods=["POST"])])
    with serve_app_in_thread(gateway, port=free_port()) as sms:
        rules = tmp_path / "rules.toml"
        rules.write_text(f'[notify.sms]\nurl = "{sms.url}/send"\ntoken = "sms-gateway-token"\n'
                         '[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = ["+254700000001"]\n')
        with b.fresh_bridge(sqlite_url, rules_path=str(rules)) as bridge:
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), device_id="collar-07", f_cnt=1))
            bridge.flush_notifications()
            (sms_row,) = bridge.notifications(viewer=Viewer("admin.neema", "admin"))

    assert sms_row.state == "pending", "a redirect is no delivery: the SMS waits to be sent again"
    assert "301" in sms_row.last_error and "https://sms.example/send" in sms_row.last_error


def test_a_chirpstack_that_takes_a_queue_item_and_never_answers_has_it_followed_and_a_cut_off_flush_goes_again_whole():
    # ChirpStack queues a downlink when it has read the POST; an answer that never comes says nothing of it.
    # Only the call that carries the downlink pushed for is "maybe queued" (`AnswerCutOff`): a replace's
    # flush (DELETE) or an earlier item cut off fails as before, and the replace goes again whole, flush first.
    import httpx

    from lora_bridge.errors import DownlinkError
    from lora_bridge.network_server import AnswerCutOff, DownlinkTarget, NetworkServerClient, OutgoingDownlink
    from lora_bridge.settings import BridgeSettings

    def never_answering(hang: str):
        def chirpstack(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content or b"{}")
            data = body.get("queueItem", {}).get("data")
            if request.method == hang.split(":")[0] and (hang == "DELETE" or data == hang.split(":")[1]):
                raise httpx.ReadTimeout("no answer", request=request)
            return httpx.Response(200, json={"id": "q-1"})
        return chirpstack

    settings = BridgeSettings(network_server_url="http://chirpstack.invalid", network_server_api_key="key")
    target = DownlinkTarget("collar-07", "chirpstack", "app", "70B3D57ED0000007")
    older, newer = OutgoingDownlink(32, b"\x01", None), OutgoingDownlink(32, b"\x02", None)
    outcomes = {}
    for hang, items, replace in (("POST:Ag==", [newer], False), ("POST:Ag==", [older, newer], True),
                                 ("POST:AQ==", [older, newer], True), ("DELETE", [older, newer], True)):
        client = NetworkServerClient(settings, httpx.Client(transport=httpx.MockTransport(never_answering(hang))))
        with pytest.raises(DownlinkError) as raised:
            client.send(target, items, replace=replace)
        client.close()
        outcomes[(hang, replace)] = type(raised.value)

    assert outcomes == {("POST:Ag==", False): AnswerCutOff, ("POST:Ag==", True): AnswerCutOff,
                        ("POST:AQ==", True): DownlinkError, ("DELETE", True): DownlinkError}
