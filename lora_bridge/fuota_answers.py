"""Where each answer of a collar's FUOTA uplink begins (ports of TS005 200, TS004 201, TS003 202).

The LoRa Alliance packages let one uplink carry several answers one after another, each its command id
and its payload: TS005 v1.0.0 4 ("A message MAY carry more than one command ... Each command MUST be
individually acknowledged"), TS004 v1.0.0 3 and LoRa Basics Modem's fragmentation parser, which builds one
uplink of up to five answers. A collar answers a downlink of several commands so (`UpdateAgent.handle`).

An answer's length comes from the codec table (`codec.command_size`), except the two whose last field is a
list, whose length their first byte tells (TS005 v1.0.0 4.2 and 4.5):
  - McGroupStatusAns: Status = RFU | NbTotalGroups 3 | AnsGroupMask 4, then McGroupID and McAddr of every
    group in AnsGroupMask;
  - McClassCSessionAns: Status = error bits 7..2 | McGroupID 2, then TimeToStart only when no error bit is set;
  - TS004 v2.0.0's FragSessionStatusAns (v2.0.0 3.2, LoRa Basics Modem's `frag_construct_frag_session_status_answer`):
    Status = RFU 5 | SessionDoesNotExist | MICError | MemoryError, then Received&index and MissingFrag only when
    SessionDoesNotExist is clear (v1.0.0's is 5 bytes, whatever it says).
The item sizes come from the codec table too (`codec.payload_size`). Which TS004 version's layouts an uplink on
port 201 carries is the version the collar's session speaks (`version`; the bridge knows it, the bytes do not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lora_bridge import wire_reader

ANS_GROUP_MASK = 0x0F  # McGroupStatusAns Status bits 3..0
CLASS_C_ERROR_BITS = 0xFC  # McClassCSessionAns Status bits 7..2 (McGroupID in 1..0)
SESSION_DOES_NOT_EXIST = 0x04  # TS004 v2.0.0 FragSessionStatusAns Status bit 2


def _group_status_items(header: int) -> int:
    return bin(header & ANS_GROUP_MASK).count("1")


def _class_c_items(header: int) -> int:
    return 0 if header & CLASS_C_ERROR_BITS else 1


def _frag_status_items(header: int) -> int:
    return 0 if header & SESSION_DOES_NOT_EXIST else 1


# answers whose list field's length the byte after their command id tells: name -> items from that byte
_LISTED: dict[str, Callable[[int], int]] = {
    "mc_group_status_ans": _group_status_items,
    "mc_class_c_session_ans": _class_c_items,
    "frag_session_status_ans": _frag_status_items,  # v2.0.0's only: v1.0.0's has no list field
}


# codec id -> (codec, its FUOTA ports): read once per codec (its ports are constants of its wire table),
# not at every uplink's payload; the codec is kept, so its id names no other object while cached
_PORTS_OF: dict[int, tuple[Any, tuple[int, ...]]] = {}


def fuota_ports(codec: Any) -> tuple[int, ...]:
    """The codec's FUOTA ports (none for a codec without them)."""
    known = _PORTS_OF.get(id(codec))
    if known is not None and known[0] is codec:
        return known[1]
    # no generators: a generator's every item is a call of its own
    ports = (getattr(codec, "PORT_MULTICAST", None), getattr(codec, "PORT_FRAGMENTS", None),
             getattr(codec, "PORT_CLOCK", None))
    found = tuple([p for p in ports if isinstance(p, int)])
    _PORTS_OF[id(codec)] = (codec, found)
    return found


def split_answers(codec: Any, port: int, payload: bytes, version: int = 1) -> list[bytes]:
    """Return the answers of an uplink on port one by one (the whole payload for a port not of FUOTA, or an empty
    one, which the codec then judges), read in the layouts of TS004 package version. Raise codec.CodecError naming
    the position of an unknown command id or an answer cut short: nothing after it can be located."""
    if port not in fuota_ports(codec) or not payload:
        return [payload]
    pieces = []
    pos = 0
    while pos < len(payload):
        size = answer_size(codec, port, payload, pos, version)
        if size < 0 or pos + size > len(payload):
            _refuse(codec, port, payload, pos, size, version)
        pieces.append(payload[pos:pos + size])
        pos += size
    return pieces


def _refuse(codec: Any, port: int, payload: bytes, pos: int, size: int, version: int) -> None:
    """Raise codec.CodecError for the answer at pos, unknown (size -1) or cut short, in the codec's own words
    where it has them (the message's name and its length)."""
    where = f"answer {payload[pos]} at byte {pos}"
    try:
        _decode(codec, port, payload[pos:], "up", version)
    except codec.CodecError as error:
        raise codec.CodecError(f"{where}: {error}") from None
    if size < 0:
        raise codec.CodecError(f"port {port}: unknown {where}")
    raise codec.CodecError(f"port {port}: {where} cut short ({len(payload) - pos} of {size} bytes)")


def _decode(codec: Any, port: int, payload: bytes, direction: str | None, version: int) -> dict[str, Any]:
    """codec.decode in TS004 package version (a codec of before versioned rows is asked v1.0.0's way); the
    collar's codec through the bridge's reader of its table (`wire_reader.read`, the same dict)."""
    if codec is wire_reader.CODEC:
        return wire_reader.read(port, payload, direction, version)
    if version == 1:
        return codec.decode(port, payload) if direction is None else codec.decode(port, payload, direction)
    return codec.decode(port, payload, direction, version)


def decode_answer(codec: Any, port: int, payload: bytes, version: int = 1) -> dict[str, Any]:
    """One answer of an uplink (split_answers' piece) decoded in the layouts of TS004 package version."""
    return _decode(codec, port, payload, None, version)


def answer_size(codec: Any, port: int, payload: bytes, pos: int, version: int = 1) -> int:
    """Return the bytes of the answer starting at pos (its command id included) in TS004 package version's layouts,
    or -1 for an unknown id; an answer whose length byte is missing is taken as 2 bytes (id and that byte), so it
    reads as cut short."""
    cid = payload[pos]
    size = int(codec.command_size(port, cid, "up", version) if version != 1 else codec.command_size(port, cid, "up"))
    if size != 0:
        return size
    for name, items in _LISTED.items():
        if codec.port_of(name) == port and codec.tag_of(name) == cid:
            if pos + 1 >= len(payload):
                return 2
            return int(codec.payload_size(name, items(payload[pos + 1]), version) if version != 1
                       else codec.payload_size(name, items(payload[pos + 1])))
    return -1
