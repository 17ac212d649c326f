"""What the durable intake's writer needs of a common TTS uplink body, read without the full reader.

The writer (`lora_bridge.durable_intake`) reads every body on arrival for two things only: whether it
is broken (kept as a dead letter and answered 200 at once) and which collar its answer names (device
id, DevEUI, frame counter). `read_network_message` builds a whole `Uplink` for that (gateways, times,
radio settings, the payload's bytes), about half of the writer's work per body, and the applier
process reads the body again anyway. `read_to_answer` looks at a body as The Things Stack nearly
always posts it (the base webhook URL, JSON, an `uplink_message` object, ids and counters written
plainly) and takes from it only what the answer needs, checking those fields exactly as the full
reader checks them (`tts_identity`, `_port`, `_counter`, `_base64`; the rest of an uplink is read
tolerantly and refuses nothing). Every other body, and any such field not written plainly (a DevEUI
with dashes, a port as text, a payload that is not base64, no `end_device_ids`, a simulated uplink),
goes to the full reader, so each broken shape is refused with the reason it always had.
`heard_plainly` goes further for the writer: it parses such a body itself, as event_name_of would, and
names its kind at once (its first key is `uplink_message`), so the common body costs the writer one
parse and a handful of calls; any body it does not take goes the way above (parsed again).
tests/test_bridge_uplink_heard.py compares the ways on generated bodies.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

from lora_bridge.network_messages import NetworkEvent, parsed_just_now, read_network_message
from lora_bridge.uplink_formats import (
    JUDGED_EUIS,
    JUDGED_LABELS,
    MAX_F_CNT,
    SOURCE_TTS,
    Uplink,
    eui_or_none,
    label,
    quick_json_object,
)

# The content type The Things Stack's JSON webhook posts (the webhook's default when none is sent).
JSON = "application/json"
# The digits of an EUI-64 (either case), as `uplink_formats.eui_or_none` takes them.
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class UplinkHeard:
    """A readable TTS uplink as its answer names it: the same values `read_network_message`'s Uplink
    gives for these fields (`source`, `application_id` and `network_scope` name a collar without a
    DevEUI, as `Uplink.identity` does)."""

    device_id: str
    dev_eui: str | None
    f_cnt: int
    application_id: str | None
    network_scope: str | None
    source: str = SOURCE_TTS


def read_to_answer(
    network: str, event: str | None, body: bytes, *, content_type: str | None, path_ids: dict[str, Any] | None
) -> UplinkHeard | Uplink | NetworkEvent:
    """read_network_message's outcome as far as an answer needs it: an UplinkHeard for a common TTS
    uplink body that event_name_of has just parsed (event "uplink_message", as it names such a body),
    else what the full reader returns; MalformedUplink for a broken body, from the full reader."""
    if network == SOURCE_TTS and event == "uplink_message" and path_ids is None and content_type == JSON:
        document = parsed_just_now(body)
        if document is not None:
            heard = _heard(document)
            if heard is not None:
                return heard
    return read_network_message(network, event, body, content_type=content_type, path_ids=path_ids)


def heard_plainly(network: str, body: bytes, content_type: str | None,
                  path_ids: dict[str, Any] | None) -> UplinkHeard | None:
    """For the writer: the UplinkHeard of a TTS uplink body as The Things Stack nearly always posts it
    (JSON, no path ids: what `event_name_of` names "uplink_message", whatever event its path named,
    and `read_to_answer` reads the quick way), parsed here as `load_json_object` parses it; None for
    any other body, which the writer then names and reads as ever (`event_name_of`, `read_to_answer`)."""
    if network != SOURCE_TTS or content_type != JSON or path_ids is not None:
        return None
    document = quick_json_object(body)  # load_json_object's quick way only
    # uplink_message is the first of TTS_MESSAGE_KEYS, so a body holding it is named so
    if document is None or "uplink_message" not in document:
        return None
    return _heard(document)


def _heard(document: dict[str, Any]) -> UplinkHeard | None:
    """The UplinkHeard of a plainly written TTS uplink document (no path ids), else None (read in full).
    Fields are looked up with `in` (a left-out field reads as `dict.get` reads it), and the names and
    DevEUIs a herd repeats are taken as `label` and `eui_or_none` judged them before."""
    message = document["uplink_message"] if "uplink_message" in document else None
    ids = document["end_device_ids"] if "end_device_ids" in document else None
    if type(message) is not dict or type(ids) is not dict or ("simulated" in document and document["simulated"] is True):
        return None
    dev_eui = ids["dev_eui"] if "dev_eui" in ids else None
    if dev_eui is None or dev_eui == "":
        dev_eui = None
    elif type(dev_eui) is str:
        try:  # a DevEUI eui_or_none judged before (only plain ones are remembered there)
            dev_eui = JUDGED_EUIS[dev_eui]
        except KeyError:  # (a lookup, not `in` then a lookup: another thread may empty it between the two)
            if len(dev_eui) != 16 or not _HEX_DIGITS.issuperset(dev_eui):
                return None  # written otherwise: the full reader judges it
            dev_eui = eui_or_none(dev_eui, "dev_eui")
    else:
        return None
    name = ids["device_id"] if "device_id" in ids else None
    try:  # a name the herd repeats, as label judged it before, without a call (KeyError: judged now)
        device_id = (JUDGED_LABELS[name] if type(name) is str else _label(name)) or dev_eui
    except KeyError:
        device_id = _label(name) or dev_eui
    if not device_id:
        return None
    f_port = message["f_port"] if "f_port" in message else 0
    f_cnt = message["f_cnt"] if "f_cnt" in message else 0
    if type(f_port) is not int or not 0 <= f_port <= 255 or type(f_cnt) is not int or not 0 <= f_cnt <= MAX_F_CNT:
        return None
    payload = message["frm_payload"] if "frm_payload" in message else None
    if payload is not None and payload != "":
        if type(payload) is not str:
            return None
        try:  # what base64.b64decode(validate=True) does with text
            binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, ValueError):
            return None
    applications = ids["application_ids"] if "application_ids" in ids else None
    application = (applications["application_id"] if "application_id" in applications else None) \
        if type(applications) is dict else None
    try:
        application = JUDGED_LABELS[application] if type(application) is str else _label(application)
    except KeyError:
        application = _label(application)
    network = message["network_ids"] if "network_ids" in message else None
    return UplinkHeard(
        device_id=device_id,
        dev_eui=dev_eui,
        f_cnt=f_cnt,
        application_id=application,
        network_scope=_first_label(network.get("tenant_id"), network.get("cluster_address"), network.get("cluster_id"))
        if type(network) is dict else None,
    )


def _label(value: Any) -> str | None:
    """`label(value)`, taken from what label remembers for a text judged before; None for a field left out."""
    if value is None:
        return None
    if type(value) is str:
        try:
            return JUDGED_LABELS[value]
        except KeyError:  # not judged yet, or just forgotten: judged now
            pass
    return label(value)


def _first_label(*values: Any) -> str | None:
    """The first of values that makes a label (`tts_network_scope` without path ids)."""
    for value in values:
        if value is not None:
            named = label(value)
            if named:
                return named
    return None
