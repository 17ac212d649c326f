"""ChirpStack v4 events in binary Protobuf, read with the pinned `chirpstack-api` messages.

ChirpStack's integrations encode events as JSON (the Protobuf JSON mapping) or binary Protobuf
(docs: chirpstack.io/docs/chirpstack/integrations/events.html). A binary event is turned into the
same JSON object the JSON encoding would carry (`MessageToDict`, camelCase names, bytes as base64),
so one reader serves both encodings.
"""

from __future__ import annotations

from typing import Any

from lora_bridge.errors import MalformedUplink

# ChirpStack's event name -> the message in chirpstack_api.integration (integration.proto).
EVENT_MESSAGES = {
    "up": "UplinkEvent",
    "join": "JoinEvent",
    "ack": "AckEvent",
    "txack": "TxAckEvent",
    "status": "StatusEvent",
    "log": "LogEvent",
    "location": "LocationEvent",
    "integration": "IntegrationEvent",  # not in the pinned chirpstack-api 4.20.0: kept as unknown
}


def has_message(event: str) -> bool:
    """True when the pinned chirpstack-api holds the Protobuf message of this event."""
    from chirpstack_api import integration

    return hasattr(integration, EVENT_MESSAGES.get(event, ""))


def message_class(event: str) -> Any:
    """The chirpstack_api.integration message class of a ChirpStack event name."""
    from chirpstack_api import integration

    try:
        return getattr(integration, EVENT_MESSAGES[event])
    except (KeyError, AttributeError) as error:
        raise MalformedUplink(f"no Protobuf message for ChirpStack event {event!r}") from error


def protobuf_event_as_json(event: str, body: bytes) -> dict[str, Any]:
    """body (binary Protobuf of the event's message) as its Protobuf-JSON object."""
    from google.protobuf.json_format import Error as JsonFormatError
    from google.protobuf.json_format import MessageToDict
    from google.protobuf.message import DecodeError

    message = message_class(event)()
    try:
        message.ParseFromString(bytes(body))
    except (DecodeError, ValueError, RuntimeError) as error:
        raise MalformedUplink(f"body is not a ChirpStack {EVENT_MESSAGES[event]} in Protobuf: {error}") from error
    except RecursionError as error:
        raise MalformedUplink("Protobuf body nested too deeply") from error
    try:
        return MessageToDict(message, preserving_proto_field_name=False)
    except (JsonFormatError, ValueError) as error:
        # Parsed, but holding what no ChirpStack writes: a Timestamp whose nanoseconds lie outside
        # 0..999,999,999 (the JSON mapping cannot write it). Broken as a body, not a bug of ours.
        raise MalformedUplink(f"body is not a ChirpStack {EVENT_MESSAGES[event]} in Protobuf: {error}"[:300]) from error

