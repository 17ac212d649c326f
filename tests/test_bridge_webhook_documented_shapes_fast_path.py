"""A network server's webhook calls answered the quick way are answered, kept and dead-lettered as the
full reader has them: every message kind The Things Stack v3 documents for its webhooks (fields left out
when empty or zero, a field mask leaving only `uplink_message`), ChirpStack v4's HTTP integration
events, and broken bodies (wrong-typed fields, duplicate keys, escaped and non-ASCII device ids, a BOM,
UTF-16, non-UTF-8, numbers as text, odd `received_at`, an empty body, one over the size limit), posted
whole or over several HTTP reads. The durable intake's writer reads a common TTS uplink in one parse
(`uplink_heard.heard_plainly`), and the webhook takes a body that came with its headers without a timer
(`webhook._read_body`); the bridge answering each body as it is applied (no durable ack) reads all of
them with the full reader, and is the reference here."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import bridge_builders as b
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect
from starlette.testclient import TestClient

from lora_bridge.adapters.webhook import _read_body, _read_capped, create_app
from lora_bridge.network_messages import MAX_BODY_BYTES
from lora_bridge.server import serve_app_in_thread

UPLINK = json.loads(b.tts_uplink(b.status(), f_cnt=7))
IDS = UPLINK["end_device_ids"]
HEARD = "2026-12-07T09:00:00.123456789Z"


def tts_message(key: str, message: dict[str, Any]) -> bytes:
    """A TTS webhook body of message kind key, as The Things Stack posts it (ids, correlation ids, time)."""
    return json.dumps({"end_device_ids": IDS, "correlation_ids": ["as:up:01"], "received_at": HEARD,
                       key: message}).encode()


def uplink_with(**fields: Any) -> bytes:
    """The usual uplink body with fields of its uplink_message set (None: left out)."""
    message = {**UPLINK["uplink_message"], **fields}
    return json.dumps({**UPLINK, "uplink_message": {k: v for k, v in message.items() if v is not None}}).encode()


def _plain() -> bytes:
    return json.dumps(UPLINK).encode()


DOWNLINK = {"session_key_id": "AXBSH1Pk6Z0G166RlH16CQ==", "f_port": 10, "f_cnt": 3, "frm_payload": "AQ==",
            "confirmed": True, "priority": "NORMAL", "correlation_ids": ["as:downlink:01"]}

TTS_BODIES: dict[str, bytes] = {
    "uplink": _plain(),
    "uplink, every zero and empty field left out": uplink_with(f_port=None, f_cnt=None, frm_payload=None,
                                                               rx_metadata=None, settings=None),
    "uplink with network ids": uplink_with(network_ids={"net_id": "000013", "tenant_id": "ttn",
                                                        "cluster_id": "eu1", "cluster_address": "eu1.cloud"}),
    "uplink, field mask leaving only uplink_message": json.dumps({"uplink_message": UPLINK["uplink_message"]}).encode(),
    "uplink, simulated": json.dumps({**UPLINK, "simulated": True}).encode(),
    "uplink_normalized": tts_message("uplink_normalized", {**UPLINK["uplink_message"],
                                                           "normalized_payload": [{"battery": 3.9}]}),
    "join_accept": tts_message("join_accept", {"session_key_id": "AXA=", "received_at": HEARD}),
    "downlink_ack": tts_message("downlink_ack", DOWNLINK),
    "downlink_nack": tts_message("downlink_nack", DOWNLINK),
    "downlink_sent": tts_message("downlink_sent", DOWNLINK),
    "downlink_queued": tts_message("downlink_queued", DOWNLINK),
    "downlink_failed": tts_message("downlink_failed", {"downlink": DOWNLINK, "error": {
        "namespace": "pkg/networkserver", "name": "application_downlink_too_long", "code": 3}}),
    "location_solved": tts_message("location_solved", {"service": "frequency-plan", "location": {
        "latitude": -2.5, "longitude": 37.5, "accuracy": 12, "source": "SOURCE_GPS"}}),
    "service_data": tts_message("service_data", {"service": "lora-cloud", "data": {"x": 1}}),
    # broken or odd
    "empty": b"",
    "a JSON list": b"[1, 2]",
    "byte-order mark": b"\xef\xbb\xbf" + _plain(),
    "UTF-16": _plain().decode().encode("utf-16-le"),
    "white space after it": _plain() + b"\r\n",
    "not UTF-8": _plain().replace(b"collar-01", b"collar-\xff1"),
    "a NUL after the brace": b"{\x00}",
    "duplicate f_cnt": _plain().replace(b'"f_cnt": 7', b'"f_cnt": 7, "f_cnt": 8'),
    "duplicate device_id": _plain().replace(b'"device_id": "collar-01"', b'"device_id": "x", "device_id": "collar-02"'),
    "escaped device_id": _plain().replace(b'"device_id": "collar-01"', b'"device_id": "coll\\u0061r-03"'),
    "non-ASCII device_id": _plain().replace(b'"device_id": "collar-01"', '"device_id": "kiboko-ñ"'.encode()),
    "control character in device_id": _plain().replace(b'"device_id": "collar-01"', b'"device_id": "c\\u0000\\t1"'),
    "lone surrogate in device_id": _plain().replace(b'"device_id": "collar-01"', b'"device_id": "c\\ud800"'),
    "empty device_id": _plain().replace(b'"device_id": "collar-01"', b'"device_id": ""'),
    "device_id a number": _plain().replace(b'"device_id": "collar-01"', b'"device_id": 42'),
    "f_cnt as text": uplink_with(f_cnt="7"),
    "f_port as text": uplink_with(f_port="1"),
    "f_cnt a float": uplink_with(f_cnt=7.0),
    "f_cnt true": uplink_with(f_cnt=True),
    "f_cnt negative": uplink_with(f_cnt=-1),
    "f_cnt beyond 32 bits": uplink_with(f_cnt=2**32),
    "frm_payload a number": uplink_with(frm_payload=5),
    "frm_payload not base64": uplink_with(frm_payload="!!"),
    "a number of 5,000 digits": _plain().replace(b'"f_cnt": 7', b'"f_cnt": ' + b"9" * 5000),
    "nested too deeply": b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "end_device_ids null": json.dumps({**UPLINK, "end_device_ids": None}).encode(),
    "dev_eui with dashes": json.dumps({**UPLINK, "end_device_ids": {
        **IDS, "dev_eui": "-".join(IDS["dev_eui"][i:i + 2] for i in range(0, 16, 2))}}).encode(),
    "dev_eui lower case": json.dumps({**UPLINK, "end_device_ids": {**IDS, "dev_eui": IDS["dev_eui"].lower()}}).encode(),
    "dev_eui a number": json.dumps({**UPLINK, "end_device_ids": {**IDS, "dev_eui": 12345}}).encode(),
    "dev_eui not hex": json.dumps({**UPLINK, "end_device_ids": {**IDS, "dev_eui": "ZZ" * 8}}).encode(),
    "application_ids text": json.dumps({**UPLINK, "end_device_ids": {**IDS, "application_ids": "tembo"}}).encode(),
    "network_ids text": uplink_with(network_ids="eu1"),
    "rx_metadata odd": uplink_with(rx_metadata=[{"gateway_ids": "gw"}, 5, {"gateway_ids": {"gateway_id": ["x"]}}]),
    "received_at not a time": uplink_with(received_at="yesterday"),
    "received_at a number": json.dumps({**UPLINK, "received_at": 5,
                                        "uplink_message": {**UPLINK["uplink_message"], "received_at": 1.5e300}}).encode(),
    "received_at a leap second": uplink_with(received_at="2026-12-31T23:59:60Z"),
    "received_at with an offset": uplink_with(received_at="2026-12-07T12:00:00+03:00"),
    "uplink_message null": json.dumps({**UPLINK, "uplink_message": None}).encode(),
    "over the size limit": _plain()[:-1] + b', "pad": "' + b"x" * (MAX_BODY_BYTES + 1024) + b'"}',
}

CS_UPLINK = json.loads(b.chirpstack_uplink(b.status(), f_cnt=9))
CS_BASE = {"deduplicationId": "d1", "time": "2026-12-07T09:00:00Z", "deviceInfo": CS_UPLINK["deviceInfo"]}
CHIRPSTACK_BODIES: list[tuple[str | None, dict[str, Any]]] = [
    ("up", CS_UPLINK), (None, CS_UPLINK), (" /UP/ ", CS_UPLINK), ("up", {**CS_UPLINK, "fCnt": "9"}),
    ("join", {**CS_BASE, "devAddr": "260b0001"}),
    ("ack", {**CS_BASE, "queueItemId": "q1", "acknowledged": True, "fCntDown": 3}),
    ("ack", {**CS_BASE, "queueItemId": "q1"}),  # not acknowledged: false left out
    ("txack", {**CS_BASE, "downlinkId": 5, "queueItemId": "q1", "fCntDown": 3, "gatewayId": "0016c001ff10a235"}),
    ("status", {**CS_BASE, "margin": 7, "batteryLevel": 88.5}),
    ("log", {**CS_BASE, "level": "ERROR", "code": "UPLINK_CODEC", "description": "codec failed"}),
    ("location", {**CS_BASE, "location": {"latitude": -2.5, "longitude": 37.5, "source": "GEO_RESOLVER_TDOA"}}),
    ("integration", {**CS_BASE, "integrationName": "loracloud", "eventType": "x", "object": {}}),
    ("bogus", CS_UPLINK), ("up\x00", CS_UPLINK), ("txAck", CS_BASE),
    ("up", {**CS_UPLINK, "deviceInfo": {**CS_UPLINK["deviceInfo"], "devEui": "zz"}}),
    ("up", {**CS_UPLINK, "data": 5}), ("up", {**CS_UPLINK, "fPort": 300}),
]


def outcome(reply: Any) -> tuple[Any, ...]:
    """What a network server and an operator read in an answer, apart from whether it was applied yet."""
    said = reply.json()
    if said["status"] == "dead_letter":
        return reply.status_code, "dead_letter", said["stage"], said["reason"], said["device_id"], said["dev_eui"]
    assert 200 <= reply.status_code < 300
    # an uplink's message is its payload's kind once applied (the durable 202 comes before its decoding)
    message = None if said["f_cnt"] is not None else said["message"]
    return "kept", said["device_id"], said["dev_eui"], said["f_cnt"], message


def posted(store_url: str, durable: bool) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, int]]:
    """Every body above posted to a fresh bridge (durable: answered once kept, the writer's quick read;
    else answered once applied, the full reader): the answers, dead letters and counts once applied."""
    options = {"webhook_ack": "durable", "intake_applier": "thread"} if durable else {}
    with b.fresh_bridge(store_url, **options) as bridge, TestClient(create_app(bridge)) as client:
        replies = [client.post("/uplinks/tts", content=body, headers=b.HEADERS) for body in TTS_BODIES.values()]
        replies += [client.post("/uplinks/chirpstack", params={"event": event} if event is not None else None,
                                content=json.dumps(body).encode(), headers=b.HEADERS)
                    for event, body in CHIRPSTACK_BODIES]
        if durable:
            deadline = time.monotonic() + 60
            while bridge.durable_intake().backlog() and time.monotonic() < deadline:
                time.sleep(0.02)
        letters = sorted((letter.stage, letter.reason, letter.body) for letter in bridge.dead_letters())
        return [outcome(reply) for reply in replies], letters, bridge.counts()


def test_documented_and_broken_bodies_are_answered_kept_and_dead_lettered_the_quick_way_as_the_full_reader_has_them(
        store_url, tmp_path):
    quick = posted(store_url, durable=True)
    full = posted(f"sqlite:///{tmp_path / 'full-reader.db'}", durable=False)

    names = [*TTS_BODIES, *(f"chirpstack {event}" for event, _ in CHIRPSTACK_BODIES)]
    assert dict(zip(names, quick[0], strict=True)) == dict(zip(names, full[0], strict=True))
    assert quick[1] == full[1]
    assert quick[2] == full[2]
    # the bodies above are what they say: most read, several dead-lettered, none answered 5xx
    assert sum(answer[0] == "kept" for answer in quick[0]) > 30
    assert {answer[:2] for answer in quick[0] if answer[0] != "kept"} == {(200, "dead_letter")}


# --- a body over several HTTP reads, through a real server -----------------------------------------


def _raw_post(url: str, path: str, parts: list[bytes], *, chunked: bool, hang_up_before: int | None = None) -> bytes:
    """POST parts of a body over one connection, each written a moment after the last (headers first);
    chunked: Transfer-Encoding chunked, else its Content-Length. The answer's bytes; hang_up_before: the
    Content-Length of a body of which the sender writes only parts, then hangs up (b"": no answer)."""
    host, port = url.removeprefix("http://").split(":")
    length = len(b"".join(parts)) if hang_up_before is None else hang_up_before
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"X-Tembo-Secret: {b.SECRET}",
            "Content-Type: application/json", "Connection: close",
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"]
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for part in parts:
            time.sleep(0.02)  # the server's read of what came so far returns before the rest comes
            connection.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked and part else part)
        if hang_up_before is not None:
            return b""
        if chunked:
            connection.sendall(b"0\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def _answer(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


SPLIT_BODIES = {
    "uplink": b.tts_uplink(b.status(), f_cnt=11),
    "join_accept": b.tts_join(),
    "not base64": uplink_with(frm_payload="!!", f_cnt=12),
    "empty": b"",
}


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_over_several_reads_is_answered_and_kept_as_the_same_body_posted_whole(sqlite_url, tmp_path, chunked):
    answers: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for way, url in (("split", sqlite_url), ("whole", f"sqlite:///{tmp_path / 'whole.db'}")):
        with b.fresh_bridge(url, webhook_ack="durable", intake_applier="thread") as bridge, \
                serve_app_in_thread(create_app(bridge)) as server:
            answers[way] = []
            for body in SPLIT_BODIES.values():
                parts = [body[i:i + 4096] for i in range(0, len(body), 4096)] if way == "split" else [body]
                answers[way].append(_answer(_raw_post(server.url, "/uplinks/tts", parts, chunked=chunked)))
            # a sender that hangs up half-way through its body leaves nothing behind
            uplink = SPLIT_BODIES["uplink"]
            _raw_post(server.url, "/uplinks/tts", [uplink[:100]], chunked=chunked, hang_up_before=len(uplink))
            time.sleep(0.2)
            while bridge.durable_intake().backlog():
                time.sleep(0.02)
            letters = sorted((letter.stage, letter.reason, letter.body) for letter in bridge.dead_letters())
            answers[way].append((letters, bridge.counts()))  # type: ignore[arg-type]

    def without_ids(answer: Any) -> Any:
        if isinstance(answer, tuple) and isinstance(answer[1], dict) and "status" in answer[1]:
            return answer[0], {k: v for k, v in answer[1].items() if k not in ("raw_uplink_id", "intake_id")}
        return answer

    assert [without_ids(a) for a in answers["split"]] == [without_ids(a) for a in answers["whole"]]
    statuses = [(code, said["status"]) for code, said in answers["split"][:-1]]
    assert statuses == [(202, "received"), (202, "received"), (200, "dead_letter"), (200, "dead_letter")]
    assert answers["split"][3][1]["reason"] == "body is empty"
    # the two dead letters (the not base64's reason sorts first); the hung-up body kept nowhere
    assert [body for _, _, body in answers["split"][-1][0]] == [SPLIT_BODIES["not base64"], b""]


# --- the webhook's read of a body: quick when it came with its headers, else under a timer ----------

# How a server hands each message of a body in: at once, after a turn of the event loop, or once a
# future it waits for is set by the loop a moment later.
ARRIVALS = st.sampled_from(["at once", "next turn", "later"])


def _receiving(messages: list[dict[str, Any]], arrivals: list[str]):
    """An ASGI receive handing in messages, each arriving as arrivals say."""
    given_out = iter(zip(messages, arrivals, strict=True))

    async def receive() -> dict[str, Any]:
        message, arrival = next(given_out)
        if arrival == "next turn":
            await asyncio.sleep(0)
        elif arrival == "later":
            loop = asyncio.get_running_loop()
            came = loop.create_future()
            loop.call_later(0.001, came.set_result, None)
            await came
        return message

    return receive


async def _read_or_refused(read: Any) -> tuple[Any, ...]:
    try:
        return ("read", *await read)
    except ClientDisconnect:
        return ("disconnected",)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(st.binary(max_size=12), max_size=6),
    arrivals=st.lists(ARRIVALS, min_size=8, max_size=8),
    limit=st.integers(min_value=0, max_value=40),
    disconnect=st.booleans(),
)
def test_the_quick_read_of_a_body_gives_what_the_plain_read_gives_however_its_messages_arrive(
        chunks, arrivals, limit, disconnect):
    """`_read_body` (no timer for a body that came with its headers) takes the same bytes, says the same
    about a body over the limit, and the same about a sender hanging up, as `_read_capped` alone."""
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    else:
        messages.append({"type": "http.request", "body": b"", "more_body": False})
    arrivals = arrivals[:len(messages)] + ["at once"] * (len(messages) - len(arrivals))

    quick = asyncio.run(_read_or_refused(_read_body(_receiving(messages, arrivals), limit, 5.0)))
    plain = asyncio.run(_read_or_refused(_read_capped(_receiving(messages, arrivals), limit)))

    assert quick == plain
    whole = b"".join(chunks)
    if quick[0] == "read":
        assert quick[1:] == (whole[:limit], len(whole) > limit)


def test_a_body_whose_rest_never_comes_is_refused_in_time_with_its_first_part_read_quickly():
    """The first message came with the headers and more is due: the rest is awaited under the timer."""
    async def receive_first_only() -> dict[str, Any]:
        if not hasattr(receive_first_only, "given"):
            receive_first_only.given = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b'{"a":', "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("never reached")

    with pytest.raises(TimeoutError):
        asyncio.run(_read_body(receive_first_only, 1024, 0.05))



# --- the answer's collar and the secret in force, as the slow path has them ------------------------


def test_a_replaced_collar_registered_under_the_old_ones_name_is_answered_as_the_store_files_it(sqlite_url, tmp_path):
    old_collar = b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1, dev_eui="70B3D57ED0000001")
    new_collar = b.tts_uplink(b.status(), device_id="collar-01", f_cnt=1, dev_eui="70B3D57ED0000002")
    answers = {}
    for way, url in (("durable", sqlite_url), ("applied", f"sqlite:///{tmp_path / 'applied.db'}")):
        options = {"webhook_ack": "durable", "intake_applier": "thread"} if way == "durable" else {}
        with b.fresh_bridge(url, **options) as bridge, TestClient(create_app(bridge)) as client:
            client.post("/uplinks/tts", content=old_collar, headers=b.HEADERS)
            while way == "durable" and bridge.durable_intake().backlog():
                time.sleep(0.02)
            answers[way] = client.post("/uplinks/tts", content=new_collar, headers=b.HEADERS).json()["device_id"]
            while way == "durable" and bridge.durable_intake().backlog():
                time.sleep(0.02)
            answers[f"{way} filed"] = bridge.device_ids_by_eui({"70B3D57ED0000002"})["70B3D57ED0000002"]

    assert answers["applied"] == answers["applied filed"] == answers["durable filed"] == "70B3D57ED0000002"
    assert answers["durable"] == answers["durable filed"]


def test_a_webhook_secret_rotated_under_a_running_app_is_in_force_at_its_next_call(sqlite_url):
    """The secret in force is taken again once the settings' secret is another (`_secret_in_force`)."""
    from pydantic import SecretStr

    body = b.tts_uplink(b.status())
    rotated = "a-new-secret-of-the-reserve"
    with b.fresh_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:
        before = client.post("/uplinks/tts", content=body, headers=b.HEADERS).status_code
        bridge.settings.webhook_secret = SecretStr(rotated)
        old = client.post("/uplinks/tts", content=body, headers=b.HEADERS).status_code
        new = client.post("/uplinks/tts", content=body, headers={**b.HEADERS, "X-Tembo-Secret": rotated}).status_code
    assert (before, old, new) == (200, 401, 200)


def test_two_collars_of_one_name_heard_first_before_either_is_applied_are_answered_as_the_store_files_them(sqlite_url):
    """The first body of each is kept before the applier files either: the first takes the name, the
    second is filed under its DevEUI, and their answers say so (the writer's promise of the name)."""
    first = [b.tts_uplink(b.status(), device_id="collar-01", f_cnt=n, dev_eui="70B3D57ED0000001") for n in (1, 2)]
    second = [b.tts_uplink(b.status(), device_id="collar-01", f_cnt=n, dev_eui="70B3D57ED0000002") for n in (1, 2)]
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier="thread") as bridge, \
            TestClient(create_app(bridge)) as client:
        answered = [client.post("/uplinks/tts", content=body, headers=b.HEADERS).json()["device_id"]
                    for body in (first[0], second[0], first[1], second[1])]
        while bridge.durable_intake().backlog():
            time.sleep(0.02)
        filed = bridge.device_ids_by_eui({"70B3D57ED0000001", "70B3D57ED0000002"})

    assert filed == {"70B3D57ED0000001": "collar-01", "70B3D57ED0000002": "70B3D57ED0000002"}
    assert answered == ["collar-01", "70B3D57ED0000002", "collar-01", "70B3D57ED0000002"]


def test_a_collar_registered_before_it_was_heard_is_answered_under_its_name_on_its_first_uplink(sqlite_url):
    with b.fresh_bridge(sqlite_url, webhook_ack="durable", intake_applier="thread") as bridge, \
            TestClient(create_app(bridge)) as client:
        bridge.register_animal("collar-01", "Tembo Kubwa")
        answer = client.post("/uplinks/tts", content=b.tts_uplink(b.status()), headers=b.HEADERS).json()
        while bridge.durable_intake().backlog():
            time.sleep(0.02)
        filed = bridge.device_ids_by_eui({answer["dev_eui"]})

    assert answer["device_id"] == filed[answer["dev_eui"]] == "collar-01"


def _tts_of(name: str, dev_eui: str | None, application: str = b.APPLICATION_ID, tenant: str | None = None,
            f_cnt: int = 1) -> tuple[str, bytes]:
    document = json.loads(b.tts_uplink(b.status(), device_id=name, f_cnt=f_cnt, dev_eui=dev_eui or "0" * 16))
    document["end_device_ids"]["application_ids"]["application_id"] = application
    if dev_eui is None:  # an ABP device: no DevEUI
        del document["end_device_ids"]["dev_eui"]
    if tenant:
        document["uplink_message"]["network_ids"] = {"tenant_id": tenant}
    return "/uplinks/tts", json.dumps(document).encode()


def _chirpstack_of(name: str, dev_eui: str, f_cnt: int = 1) -> tuple[str, bytes]:
    return "/uplinks/chirpstack", b.chirpstack_uplink(b.status(), device_id=name, f_cnt=f_cnt, dev_eui=dev_eui)


# Collars sharing names across applications, tenants and networks, one registered without a DevEUI
# before it gains one, and one heard by both networks.
SHARED_NAMES = [
    _tts_of("kiboko", "A000000000000001"), _tts_of("kiboko", "A000000000000002", application="other"),
    _tts_of("kiboko", None, application="third"), _tts_of("kiboko", "A000000000000003", "other", tenant="t2"),
    _chirpstack_of("kiboko", "A000000000000004"), _chirpstack_of("kiboko", "A000000000000001", f_cnt=2),
    _tts_of("simba", None), _tts_of("simba", "A000000000000005"), _tts_of("simba", "A000000000000006", f_cnt=3),
    _chirpstack_of("twiga", "A000000000000007"), _tts_of("twiga", "A000000000000008"),
]


def answered_both_ways(sqlite_url: str, tmp_path: Any, bodies: list[tuple[str, bytes]],
                       applied_between: bool) -> dict[str, list[tuple[Any, ...]]]:
    """bodies posted in turn to a bridge with durable ack (applied_between: each applied before the next
    is posted, else kept in a burst) and to one answering once applied: each answer's collar and kind
    (an uplink's kind is its payload's once applied, after the durable 202)."""
    answered: dict[str, list[tuple[Any, ...]]] = {}
    for way, url in (("durable", sqlite_url), ("applied", f"sqlite:///{tmp_path / 'applied.db'}")):
        options = {"webhook_ack": "durable", "intake_applier": "thread"} if way == "durable" else {}
        with b.fresh_bridge(url, **options) as bridge, TestClient(create_app(bridge)) as client:
            answered[way] = []
            for path, body in bodies:
                said = client.post(path, content=body, headers=b.HEADERS).json()
                answered[way].append((said["device_id"], None if said["f_cnt"] is not None else said["message"]))
                while way == "durable" and applied_between and bridge.durable_intake().backlog():
                    time.sleep(0.02)
            while way == "durable" and bridge.durable_intake().backlog():
                time.sleep(0.02)
    return answered


BETWEEN_OR_BURST = pytest.mark.parametrize("applied_between", [True, False], ids=["applied-between", "kept-in-a-burst"])


@BETWEEN_OR_BURST
def test_collars_sharing_names_are_answered_by_the_durable_ack_as_the_applied_answer_names_them(
        sqlite_url, tmp_path, applied_between):
    answered = answered_both_ways(sqlite_url, tmp_path, SHARED_NAMES, applied_between)

    assert answered["durable"] == answered["applied"]
    assert [device_id for device_id, _ in answered["applied"]] == [
        "kiboko", "A000000000000002", "third/kiboko", "A000000000000003", "A000000000000004", "kiboko",
        "simba", "simba", "A000000000000006", "twiga", "A000000000000008"]


def _reports_of_new_collars() -> list[tuple[str, bytes]]:
    """Reports (not uplinks) of collars never heard: one whose name another DevEUI's collar holds, one
    whose name is free, and a ChirpStack device whose name is held."""
    reports = [("/uplinks/tts", b.tts_uplink(b.status(), f_cnt=1))]
    held, free = {**IDS, "dev_eui": "B000000000000009"}, {**IDS, "device_id": "free-name", "dev_eui": "B00000000000000A"}
    for key in ("join_accept", "downlink_ack", "location_solved", "service_data", "downlink_failed"):
        document = json.loads(TTS_BODIES[key])
        reports += [("/uplinks/tts", json.dumps({**document, "end_device_ids": ids}).encode()) for ids in (held, free)]
    device = {**CS_BASE["deviceInfo"], "devEui": "b00000000000000b"}
    for event, fields in (("join", {"devAddr": "260b0001"}), ("status", {"margin": 7})):
        reports.append((f"/uplinks/chirpstack?event={event}", json.dumps({**CS_BASE, "deviceInfo": device, **fields}).encode()))
    return reports


@BETWEEN_OR_BURST
def test_reports_of_collars_never_heard_are_answered_by_the_durable_ack_as_the_applied_answer_names_them(
        sqlite_url, tmp_path, applied_between):
    answered = answered_both_ways(sqlite_url, tmp_path, _reports_of_new_collars(), applied_between)

    assert answered["durable"] == answered["applied"]
    assert {device_id for device_id, _ in answered["applied"][1:]} == {"B000000000000009", "free-name",
                                                                       "B00000000000000B"}
