"""Retained uplinks the store holds already: an MQTT worker acknowledges them without filing a copy.

A publisher that sets the retain flag on uplinks (a misconfigured network-server integration, a bridge
between brokers) leaves each collar's last uplink on its topic. The broker hands it to a worker with
the flag set at every subscription it takes as new (Mosquitto after losing the worker's session: a
broker killed between two autosaves of its persistence file), and hands it again, the flag still set,
when the broker stopped before it read the worker's PUBACK (a restart a few milliseconds after a batch
was acknowledged). Each came filed as one more raw copy: the store grew and the raw and dead-letter
views filled with copies at every reconnect. A retained message whose body the store holds already,
byte for byte, as that collar's uplink with that frame counter is acknowledged without a copy; any other
(a collar's last uplink retained before any worker subscribed, a body that does not read as an uplink
with a DevEUI, a store that cannot be asked now) is filed as every message is.
"""

from __future__ import annotations

import logging
from typing import Any

from lora_bridge.adapters.mqtt_hand_in import InHand
from lora_bridge.network_messages import read_network_message
from lora_bridge.store.stored_bodies import UplinkBody, stored_uplink_bodies
from lora_bridge.uplink_formats import Uplink

log = logging.getLogger(__name__)


def with_read(message: InHand) -> InHand:
    """message with what its body reads as (`InHand.read`; None when it does not read): asked once, for the
    store's answer here and for its batch when it is filed (`Bridge.submission`)."""
    routed = message.routed
    try:
        read = read_network_message(routed.network, routed.event, message.body, content_type=message.content_type,
                                    path_ids=routed.path_ids)
    except Exception:  # noqa: BLE001 - a body that does not read is the ingest's to keep as a dead letter
        return message
    return message._replace(read=read)


def uplink_body_of(message: InHand) -> UplinkBody | None:
    """The collar's DevEUI, frame counter and body of message (`with_read`) when it read as an uplink naming
    a DevEUI, else None (it is filed, as any message is)."""
    read = message.read
    if not isinstance(read, Uplink) or not read.dev_eui:
        return None
    return read.dev_eui, read.f_cnt, message.body


class RetainedCopies:
    """Tells which retained messages a bridge's store holds already (`held`), and counts them."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self.not_filed = 0  # retained messages acknowledged without a raw copy

    def held(self, messages: list[InHand]) -> list[tuple[str, int] | None]:
        """For each of messages (each came with the retain flag and was read, `with_read`), the collar's DevEUI
        and frame counter when the store holds its body as that uplink already, else None. Counts those held."""
        keys = [uplink_body_of(message) for message in messages]
        wanted = {key for key in keys if key is not None}
        if not wanted:
            return [None] * len(messages)
        try:
            with self.bridge.db.read() as session:
                stored = stored_uplink_bodies(session, wanted)
        except Exception as error:  # noqa: BLE001 - asking is a saving, never a condition: they are filed
            log.warning("retained MQTT messages filed without asking the store for their bodies (%s)",
                        type(error).__name__, extra={"messages": len(messages)})
            return [None] * len(messages)
        held = [(key[0], key[1]) if key in stored else None for key in keys]
        self.not_filed += sum(1 for key in held if key is not None)
        return held
