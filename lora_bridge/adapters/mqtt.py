"""MQTT ingest (paho-mqtt 2.x, MQTT 5): The Things Stack v3 and ChirpStack v4 topics into the bridge.

    v3/{application}@{tenant}/devices/{device}/{up|up/normalized|join|down/queued|down/sent|down/ack|
        down/nack|down/failed|down/invalidated|location/solved|service/data}   The Things Stack v3
    application/{application}/device/{devEui}/event/{event}             ChirpStack v4 (JSON or Protobuf)

Every message goes through `Bridge.ingest_network_message`, the one ingest entry; this adapter
never touches tables. QoS 1 with manual acknowledgement: the PUBACK leaves only once the body is
durable in the store, so a crash never loses a message the broker thinks delivered (the broker
sends it again; the store keeps it once). A store that cannot take a body (StoreUnavailable) is
tried again, without acknowledging, until it can. PUBACKs leave in the order the messages came, as
MQTT asks, so a message retried holds back every later one: a message whose ingest fails for a
reason that does not pass (a bug, a value the store refuses) is therefore kept as a dead letter
(`keep`, `Bridge.keep_failed`: replayable after a fix) and acknowledged, never retried for ever.

Several workers split the load with MQTT 5 shared subscriptions (`$share/{group}/...`): the broker
gives each message to one member of the group. Each worker keeps a session of its own (stable client
id, session expiry) so that messages in flight when it drops come back to it on reconnect; paho
reconnects by itself and `on_connect` subscribes again.

A message that comes with the retain flag (a publisher that retains uplinks) and whose body the store
holds already as that collar's uplink is acknowledged without a raw copy (`retained_copies`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lora_bridge.adapters.mqtt_hand_in import (
    BatchHandIn,
    BridgeBatches,
    HandInThreads,
    InHand,
    OneByOne,
    bridge_of,
)
from lora_bridge.adapters.mqtt_metrics import AckWaits
from lora_bridge.adapters.retained_copies import RetainedCopies, with_read
from lora_bridge.errors import (
    BrokerUnusable,
    StoreUnavailable,
    error_id_in,
    failure_context,
    redacted,
    said_of,
)
from lora_bridge.network_messages import MAX_BODY_BYTES
from lora_bridge.settings import MQTT_THREADS, check_broker_url
from lora_bridge.uplink_formats import SOURCE_CHIRPSTACK, SOURCE_TTS, label

log = logging.getLogger(__name__)

TTS_EVENTS = (
    "up",
    "up/normalized",
    "join",
    "down/queued",
    "down/sent",
    "down/ack",
    "down/nack",
    "down/failed",
    "down/invalidated",
    "location/solved",
    "service/data",
)
# Topics the bridge publishes (downlinks) under the same tree: never ingested.
TTS_PUBLISHED_BY_US = ("down/push", "down/replace")
# Subscriptions of a bridge that takes every application it is allowed to read.
DEFAULT_TOPICS = ("v3/+/devices/+/#", "application/+/device/+/event/+")
JSON = "application/json"
PROTOBUF = "application/octet-stream"
QOS = 1
SESSION_EXPIRY_S = 3600
RETRY_STORE_AFTER_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# CONNACK reason codes (MQTT 5, 3.2.2.2; paho maps MQTT 3.1.1's return codes onto them) that trying again
# does not mend: a worker starting with one stops at once instead of waiting for a connection in vain.
LOGIN_REFUSED_CODES = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})
# A connection the broker ends this soon after it was set up, this many times in a row, is taken over by
# another client with the same client id (MQTT 3.1.4-3: the broker closes the older one; Mosquitto
# 2.0 says nothing to it): two workers started with one --mqtt-client-id take turns for ever.
SHORT_SESSION_S = 10.0
SESSIONS_TAKEN_OVER = 3
SESSION_TAKEN_OVER = 0x8E  # the DISCONNECT reason a broker that says why gives
# A message in flight: [mid, qos, done, arrived (monotonic), retained (it came with the retain flag)].
RETAINED = 4


def in_flight(mid: int, qos: int, retained: bool = False) -> list[Any]:
    """The in-flight entry of a message just arrived (see RETAINED): not done yet, arrived now."""
    return [mid, qos, False, time.monotonic(), retained]


@dataclass(frozen=True)
class Routed:
    """Where a topic's message goes: network, the kind as the network names it, ids from the topic."""

    network: str
    event: str
    path_ids: dict[str, str]


def route(topic: str) -> Routed | None:
    """The network, event and ids a topic names; None for a topic that is not an ingest topic (the
    downlink topics the bridge itself publishes, anything outside the two networks' trees). A kind
    this module does not list still goes in: the bridge keeps what it does not know for inspection.
    The tree may sit under a prefix (`ttn/v3/...`, `eu868/application/...`): a Mosquitto bridge or
    a ChirpStack topic template adds one, and the topics a worker subscribes say so."""
    parts = topic.split("/")
    for start, part in enumerate(parts):
        tree = parts[start:]
        if part == "v3" and len(tree) >= 5 and tree[2] == "devices" and tree[1] and tree[3]:
            event = "/".join(tree[4:])
            if event in TTS_PUBLISHED_BY_US:
                return None
            # `{application id}@{tenant id}` on every deployment but Open Source (integrations/mqtt):
            # the tenant is part of the application's identity
            application_id, _, tenant_id = tree[1].partition("@")
            ids = {"application_id": application_id, "device_id": tree[3]}
            return Routed(SOURCE_TTS, event, ids | {"tenant_id": tenant_id} if tenant_id else ids)
        if part == "application" and len(tree) == 6 and tree[2] == "device" and tree[4] == "event" and tree[5]:
            return Routed(SOURCE_CHIRPSTACK, tree[5], {"application_id": tree[1], "dev_eui": tree[3].lower()})
    return None


def published_by_us(topic: str) -> bool:
    """True for the downlink topics the bridge publishes itself (TTS down/push and down/replace,
    ChirpStack command/down), which a broad subscription hands back to it."""
    parts = topic.split("/")
    return "/".join(parts[-2:]) in TTS_PUBLISHED_BY_US or parts[-2:] == ["command", "down"]


def content_type_of(network: str, body: bytes) -> str:
    """JSON or Protobuf: ChirpStack sends either on the same topics (its `json` setting). A JSON body
    is an object, `{`; a Protobuf event never starts with that byte (0x7B would open a group, a
    wire type proto3 never writes)."""
    if network == SOURCE_CHIRPSTACK and not body.lstrip()[:1] == b"{":
        return PROTOBUF
    return JSON


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is and who the bridge is there; the password never shows in repr."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def __repr__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        scheme = "mqtts" if self.tls else "mqtt"
        return f"BrokerAddress({scheme}://{user}{self.host}:{self.port})"


def parse_broker_url(url: str, username: str | None = None, password: str | None = None) -> BrokerAddress:
    """mqtt://[user[:password]@]host[:port] (mqtts:// for TLS); username / password given here win."""
    check_broker_url(url)
    parts = urlsplit(url)
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=username or (unquote(parts.username) if parts.username else None),
        password=password or (unquote(parts.password) if parts.password else None),
        tls=tls,
    )


def subscriptions(topics: tuple[str, ...] | list[str], share_group: str | None) -> list[str]:
    """The topic filters to subscribe: each as a shared subscription of share_group when given."""
    return [f"$share/{share_group}/{topic}" if share_group else topic for topic in topics]


class MqttIngest:
    """One bridge worker's MQTT client: subscribes, ingests each message, acknowledges once durable.

    ingest: `Bridge.ingest_network_message`, or a callable like it (network, event, body, content_type=...,
    path_ids=...) that returns once the body is durable and raises StoreUnavailable when it is not. A
    bridge's own gets the worker's messages as batches (`mqtt_hand_in`): one thread gathers those that
    came while the previous batch was written and hands them in together (`Bridge.write_batch_now`),
    one commit for all; any other callable is called for one message at a time, each on a thread of its own.
    threads: the Receive Maximum asked of the broker, the messages it sends before it waits for PUBACKs
    (it keeps the rest of a backlog); for a callable, also the threads that call it. A batch holds
    at most the bridge's `ingest_max_batch`.
    share: a `collar_shares.CollarShare` of this worker (several workers on one store): messages go
    through it (a collar another worker owns is handed over); started and stopped with the client.
    keep: where a message whose ingest raised something other than StoreUnavailable (a bug, a value
    the store refuses) is kept before its PUBACK, like `Bridge.keep_failed` (network, event, body,
    error, content_type=..., path_ids=...; raises StoreUnavailable when it cannot keep it now).
    Without one such a message is retried like a store that is down, and holds back later PUBACKs.
    """

    def __init__(
        self,
        ingest: Callable[..., Any],
        broker: BrokerAddress,
        *,
        topics: tuple[str, ...] | list[str] = DEFAULT_TOPICS,
        share_group: str | None = None,
        client_id: str | None = None,
        threads: int = MQTT_THREADS,
        share: Any = None,
        keep: Callable[..., Any] | None = None,
    ) -> None:
        self.share = share
        self.keep = keep
        self.ingest = share.ingest if share is not None else ingest
        self.broker = broker
        self.topics = subscriptions(topics, share_group)
        self.client_id = client_id or f"tembo-bridge-{socket.gethostname()}-{os.getpid()}"
        self.received = 0
        self.acknowledged = 0
        self.ignored = 0
        self.kept = 0
        self.ack_waits = AckWaits()  # from a message's arrival to its PUBACK (`/metrics`, the bench)
        self.threads = max(1, threads)
        bridge = bridge_of(ingest)
        # A bridge's store is asked which retained messages it holds already (`retained_copies`).
        self._retained = RetainedCopies(bridge) if bridge is not None else None
        if bridge is not None:
            self._writer: BridgeBatches | OneByOne = BridgeBatches(bridge, share)
            self._hand_in: BatchHandIn | HandInThreads = BatchHandIn(self._hand_in_all, "tembo-mqtt", self._writer.most)
        else:
            self._writer = OneByOne(self.ingest)
            self._hand_in = HandInThreads(self._hand_in_one, self.threads, "tembo-mqtt")
        self._in_flight: deque[list[Any]] = deque()  # messages in flight (see RETAINED) in arrival order
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        # Why the broker will not have this worker (a refused login or subscription), for start().
        self._refused: str | None = None
        # When the current connection was subscribed (monotonic), and how many in a row ended soon after.
        self._subscribed_at: float | None = None
        self._short_sessions = 0
        self.client = self._build_client()

    @property
    def retained_not_filed(self) -> int:
        """Messages that came with the retain flag, acknowledged without a raw copy: the store held them."""
        return self._retained.not_filed if self._retained is not None else 0

    def __repr__(self) -> str:
        return f"MqttIngest(broker={self.broker!r}, topics={self.topics!r}, client_id={self.client_id!r})"

    def _build_client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set()
        client.max_inflight_messages_set(100)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # Lifecycle -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 20.0) -> MqttIngest:
        """Connect (in paho's network thread) and return once subscribed. BrokerUnusable, once stopped
        again, as soon as the broker refuses the login or the subscriptions, or when it is not reached
        within timeout_s (the message says why)."""
        if self.share is not None:
            self.share.start()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = self.threads
        self.client.connect_async(
            self.broker.host, self.broker.port, keepalive=30, clean_start=False, properties=properties
        )
        self.client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self._connected.wait(0.1):
            refused = self._refused
            if refused is None and time.monotonic() < deadline:
                continue
            # A refused login had been retried for timeout_s, then ended the bridge with a traceback.
            why = refused or f"not reached within {timeout_s:.0f} s ({self._unreachable_because()})"
            self.stop()
            raise BrokerUnusable(f"MQTT broker {self.broker!r}: {why}")
        return self

    def _unreachable_because(self) -> str:
        """Why nothing answers at the broker's address, as a fresh TCP connection finds it."""
        try:
            with socket.create_connection((self.broker.host, self.broker.port), timeout=2):
                return "it takes TCP connections but no MQTT session came: is it an MQTT 5 broker, TLS as the URL says?"
        except OSError as error:
            return f"{error.strerror or error}: check the host and port, and that the broker runs"

    def stop(self) -> None:
        """Finish the messages in hand (acknowledging them), then disconnect."""
        self._stopping.set()
        self._hand_in.close()
        self.client.disconnect()
        self.client.loop_stop()
        if self.share is not None:
            self.share.stop()

    def __enter__(self) -> MqttIngest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def is_connected(self) -> bool:
        """True while the worker holds its broker session (connected and subscribed)."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """True once connected and subscribed (again, after a reconnect) within timeout_s."""
        return self._connected.wait(timeout_s)

    # paho callbacks (its network thread) ----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused by %r: %s", self.broker, reason_code)
            if reason_code.value in LOGIN_REFUSED_CODES:
                self._refused = (f"the broker refused the login of {self.broker.username or 'an anonymous client'!r}:"
                                 f" {reason_code} (check the user name and password, TEMBO_MQTT_USERNAME /"
                                 " TEMBO_MQTT_PASSWORD or the URL's)")
            return
        # Subscribing again is harmless when the broker kept the session, and needed when it did not.
        # Connected counts from the broker's SUBACK: a message published before it has no subscriber.
        # Retained messages with a new subscription only (MQTT 5 retain handling 1): a subscription the broker
        # kept does not bring every topic's retained uplink again at each reconnect. Those that still come (a
        # session the broker lost, a redelivery) are acknowledged without a copy (`retained_copies`).
        options = mqtt.SubscribeOptions(qos=QOS, retainHandling=mqtt.SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(topic, options) for topic in self.topics])

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reason_codes: Any, _props: Any) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            log.error("MQTT subscription refused by %r: %s", self.broker, refused)
            self._refused = (f"the broker refused the subscriptions {self.topics}: {', '.join(map(str, refused))} "
                             "(the user's topic rights, TEMBO_MQTT_TOPICS, a broker without shared subscriptions?)")
            return
        log.info("MQTT connected and subscribed", extra={"broker": repr(self.broker), "topics": self.topics})
        self._subscribed_at = time.monotonic()
        self._connected.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        if not self._stopping.is_set():
            log.warning("MQTT broker %r not reached; trying again", self.broker, extra={"broker": repr(self.broker)})

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self._connected.clear()
        if self._stopping.is_set():
            return
        log.warning("MQTT connection lost (%s); reconnecting", reason_code, extra={"broker": repr(self.broker)})
        subscribed_at, self._subscribed_at = self._subscribed_at, None
        if subscribed_at is not None:
            short = time.monotonic() - subscribed_at < SHORT_SESSION_S
            self._short_sessions = self._short_sessions + 1 if short else 0
        if getattr(reason_code, "value", None) == SESSION_TAKEN_OVER or self._short_sessions == SESSIONS_TAKEN_OVER:
            # It had only said "connection lost (Unspecified error)", over and over, on both workers.
            log.error("MQTT session of client id %r taken over: %s connections in a row ended within %.0f s; another "
                      "worker (or client) connects with the same client id and the broker keeps only the newest: "
                      "give each worker its own --mqtt-client-id (TEMBO_MQTT_CLIENT_ID)",
                      self.client_id, max(self._short_sessions, 1), SHORT_SESSION_S,
                      extra={"broker": repr(self.broker), "client_id": self.client_id})

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            # Arrived while the worker stops, after its hand-in ended: left without a PUBACK, the broker
            # hands it over again on the next connection (handing it to the ended hand-in raised in
            # paho's network thread and ended it with a traceback).
            log.info("MQTT message left to the broker: the worker is stopping", extra={"topic": message.topic[:200]})
            return
        self.received += 1
        entry = in_flight(message.mid, message.qos, message.retain)
        with self._lock:
            self._in_flight.append(entry)
        routed = route(message.topic)
        if routed is None:
            self.ignored += 1
            if published_by_us(message.topic):
                log.debug("MQTT downlink topic of the bridge itself: %r", message.topic[:200])
            else:
                # A subscription that names neither network's tree: its messages are dropped, say so.
                log.warning("MQTT message on a topic of neither network dropped: %r (subscriptions %s)",
                            message.topic[:200], self.topics, extra={"topic": message.topic[:200]})
            self._done(entry)
            return
        # The webhook's limit: a broker takes messages up to 256 MB, a network server's are a few KB. A
        # larger one keeps its first MAX_BODY_BYTES, is refused as too large by the reader, and acknowledged.
        body = bytes(message.payload[:MAX_BODY_BYTES])
        if len(message.payload) > MAX_BODY_BYTES:
            log.warning("oversized MQTT message cut", extra={"topic": message.topic[:200], "bytes": len(message.payload)})
        self._hand_in.put(InHand(routed, body, content_type_of(routed.network, body), entry))

    # Work (the hand-in's threads) --------------------------------------------------------------

    def _ingest(self, routed: Routed, body: bytes, entry: list[Any]) -> None:
        """Hand one message in and acknowledge it once durable or kept (retried until then)."""
        self._hand_in_all([InHand(routed, body, content_type_of(routed.network, body), entry)])

    def _hand_in_one(self, message: InHand) -> None:
        """Hand message in by itself (a thread of `HandInThreads`, for an ingest callable)."""
        self._hand_in_all([message])

    def _hand_in_all(self, messages: list[InHand]) -> None:
        """Hand messages in together and acknowledge each once durable or kept, in arrival order; those
        the store could not take are tried again, together, until it takes them (or the worker stops).
        A retained message whose body the store holds already is acknowledged without a copy."""
        messages = self._without_retained_copies(messages)
        attempt = 0
        while messages:
            again: list[tuple[InHand, BaseException]] = []
            done: list[list[Any]] = []
            for message, error in zip(messages, self._writer.write(messages), strict=True):
                if error is not None:
                    # StoreUnavailable: no PUBACK, tried again until the store takes it (or we stop, and
                    # the broker hands it over again on the next connection). Later PUBACKs wait behind
                    # it, so a store that stays down stops the flow instead of losing messages. Any other
                    # error would fail again for ever and hold back every later PUBACK: kept as a dead
                    # letter (for inspection and replay after a fix), then acknowledged.
                    retry_because = error if isinstance(error, StoreUnavailable) else self._kept(
                        message.routed, message.body, error)
                    if retry_because is not None:
                        again.append((message, retry_because))
                        continue
                done.append(message.entry)
            if done:
                self._done_all(done)
            if not again:
                return
            delay = RETRY_STORE_AFTER_S[min(attempt, len(RETRY_STORE_AFTER_S) - 1)]
            attempt += 1
            for message, failure in again:
                said = failure_context(failure)
                extra = {**_context(message.routed), "attempt": attempt, **said}
                log.warning("MQTT message not kept network=%s event=%s device=%s; retry in %.1f s: %s",
                            message.routed.network, extra["event"], extra["device"], delay, said_of(said), extra=extra)
            if self._stopping.wait(delay):
                return
            messages = [message for message, _ in again]

    def _without_retained_copies(self, messages: list[InHand]) -> list[InHand]:
        """messages less those that came with the retain flag and whose body the store holds already as
        that collar's uplink, which are acknowledged (`retained_copies`); non-retained ones are all kept."""
        if self._retained is None or not any(message.entry[RETAINED] for message in messages):
            return messages
        # each read once: for the store's answer, and by its batch when it is filed (`InHand.read`)
        messages = [with_read(message) if message.entry[RETAINED] else message for message in messages]
        retained = [message for message in messages if message.entry[RETAINED]]
        copies = []
        for message, held in zip(retained, self._retained.held(retained), strict=True):
            if held is not None:
                copies.append(message)
                log.debug("retained MQTT uplink held already, acknowledged without a copy device=%s f_cnt=%s",
                          label(held[0]), held[1], extra={**_context(message.routed), "f_cnt": held[1]})
        if not copies:
            return messages
        self._done_all([message.entry for message in copies])
        acknowledged = {id(message) for message in copies}
        return [message for message in messages if id(message) not in acknowledged]

    def _kept(self, routed: Routed, body: bytes, error: BaseException) -> BaseException | None:
        """None once body, whose ingest raised error (not StoreUnavailable), is kept by `keep`; else
        why it must be tried again (the store cannot keep it now, or there is no `keep`)."""
        context: dict[str, Any] = {**_context(routed), **failure_context(error)}
        if self.keep is None:
            log.error("MQTT message not ingested network=%s event=%s device=%s, nowhere to keep it; retried: %s",
                      routed.network, context["event"], context["device"], said_of(context), exc_info=redacted(error),
                      extra=context)
            return error
        try:
            result = self.keep(routed.network, routed.event, body, error,
                               content_type=content_type_of(routed.network, body), path_ids=routed.path_ids)
        except StoreUnavailable as unavailable:
            return unavailable  # ingest is tried again first: the store may be back
        except Exception as refused:  # noqa: BLE001 - the store refused even the bare body: retried, never dropped
            said = failure_context(refused)
            log.error("MQTT message neither ingested nor kept network=%s event=%s device=%s; retried: %s",
                      routed.network, context["event"], context["device"], said_of(said), exc_info=redacted(refused),
                      extra={**context, **said})
            return refused
        self.kept += 1
        # The error_id of the bridge's own line of it (`Bridge.keep_failed`), when its result names one.
        context["error_id"] = error_id_in(getattr(result, "reason", None)) or context["error_id"]
        log.warning("MQTT message acknowledged once kept as a dead letter network=%s event=%s device=%s "
                    "raw_uplink_id=%s: %s", routed.network, context["event"], context["device"],
                    getattr(result, "raw_uplink_id", None), said_of(context), extra=context)
        return None

    def _done(self, entry: list[Any]) -> None:
        """Mark entry done and send every PUBACK that is now due, in arrival order."""
        self._done_all([entry])

    def _done_all(self, entries: list[list[Any]]) -> None:
        """Mark entries done and send every PUBACK that is now due, in arrival order."""
        waits = []
        with self._lock:
            for entry in entries:
                entry[2] = True
            while self._in_flight and self._in_flight[0][2]:
                mid, qos, _, arrived, _ = self._in_flight.popleft()
                if qos > 0:
                    self.client.ack(mid, qos)
                self.acknowledged += 1
                waits.append(time.monotonic() - arrived)
        self.ack_waits.observe(waits)


def _context(routed: Routed) -> dict[str, str | None]:
    """The log context of a message: its network, kind and the collar its topic names, as labels (control
    characters escaped, cut: `uplink_formats.label`): a topic's level is any text its publisher chose, and
    a newline in it had started a forged line of the operator's log."""
    device = routed.path_ids.get("dev_eui") or routed.path_ids.get("device_id")
    return {"network": routed.network, "event": label(routed.event), "device": label(device)}


def worker_from_settings(bridge: Any, settings: Any, url: str | None = None, login: int = 0) -> MqttIngest:
    """A (not yet started) MQTT worker feeding bridge, configured by settings' mqtt_* values: for the
    main login (settings.mqtt_url, its credentials from mqtt_username / mqtt_password when set), or
    for url, the login-th of settings.mqtt_more_urls (its own credentials; its client id, and so
    its broker session, the main one's with `-{login}`)."""
    url = url or settings.mqtt_url
    if not url:
        raise ValueError("no MQTT broker configured (--mqtt URL or TEMBO_MQTT_URL)")
    if login == 0:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        broker = parse_broker_url(url, settings.mqtt_username, password)
    else:
        broker = parse_broker_url(url)
    client_id = settings.mqtt_client_id or f"tembo-bridge-{socket.gethostname()}-{os.getpid()}"
    if login:
        client_id = f"{client_id}-{login}"
    share = None
    if settings.mqtt_share_group and settings.mqtt_collar_shares:
        from lora_bridge.collar_shares import CollarShare

        share = CollarShare(bridge, f"{settings.mqtt_share_group}/{client_id}")
    return MqttIngest(
        bridge.ingest_network_message,
        broker,
        topics=tuple(settings.mqtt_topics),
        share_group=settings.mqtt_share_group,
        client_id=client_id,
        threads=settings.mqtt_threads,
        share=share,
        keep=bridge.keep_failed,
    )


def workers_from_settings(bridge: Any, settings: Any) -> list[MqttIngest]:
    """One (not yet started) worker per MQTT login of settings: mqtt_url, then each of mqtt_more_urls."""
    more = [worker_from_settings(bridge, settings, url, login) for login, url in enumerate(settings.mqtt_more_urls, 1)]
    return [worker_from_settings(bridge, settings), *more] if settings.mqtt_url else more
