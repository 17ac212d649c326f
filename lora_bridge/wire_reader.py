"""The bridge's reading of collar payloads, built once from the codec table (`collar_firmware.codec.MESSAGES`).

The collar's codec decodes a payload field by field (a call for each field, each integer and each message's
fixed size, about fifty an uplink); it must stay small, for it runs on the collar too. The bridge reads every
uplink, so at import it turns each row of the same table into a `struct` layout (fixed sizes computed once) and
a list of steps for each count of list items, and reads a payload with one unpacking and one pass over them.

What it gives is the collar codec's `decode`, dict for dict (same keys in the same order, same values and types):
a payload it does not read as a well-formed row (a length that is not the row's, an empty payload, an unknown
command id, port or TS004 package version, the settings port's TLV) is handed to `collar_firmware.codec.decode` itself, which reads it
or raises its own CodecError, so a malformed payload's error is the codec's, word for word
(tests/test_bridge_wire_reader.py proves both over every row).
"""

from __future__ import annotations

import struct
from typing import Any

from collar_firmware import codec as collar_codec

CODEC = collar_codec  # the codec this reader was built from: another (a newer one passed in) is asked itself
# the FUOTA ports (TS005, TS004, TS003), whose uplinks may carry several answers (`fuota_answers.split_answers`)
FUOTA_PORTS = (collar_codec.PORT_MULTICAST, collar_codec.PORT_FRAGMENTS, collar_codec.PORT_CLOCK)

# how a field's raw value is read (struct codes, little-endian; a 24-bit integer is a u16 then a u8) and turned
# into its value
_PLAIN, _SCALED, _ENUM, _U24, _I24, _LAT, _LON, _VER, _BITS = range(9)
_ONE_CODE = {"u8": "B", "u16": "H", "u32": "I", "i8": "b", "i16": "h", "i32": "i", "enum": "B"}
_WIDE_KIND = {"u24": _U24, "i24": _I24, "lat": _LAT, "lon": _LON, "ver": _VER}

Part = tuple[str, int, Any]  # (field name, how it is read, what that needs: scale, enum names, bit parts)
Step = tuple[str, int, Any, int]  # a Part and which dict it goes to: 0 the message, k + 1 its list's item k


def _steps(fields: tuple[Any, ...]) -> tuple[str, tuple[Part, ...]] | None:
    """The struct codes and the steps of fields without a list, or None when a kind is not one this reader
    knows (its row is then left to the codec)."""
    codes = []
    steps = []
    for name, kind, arg in fields:
        if kind in _ONE_CODE:
            codes.append(_ONE_CODE[kind])
            if kind == "enum":
                steps.append((name, _ENUM, (arg, len(arg))))
            else:
                steps.append((name, _SCALED, arg) if arg else (name, _PLAIN, None))
        elif kind in _WIDE_KIND:
            codes.append("HB")
            steps.append((name, _WIDE_KIND[kind], arg or None))
        elif kind == "bits":
            size = collar_codec.field_size((name, kind, arg))
            shift = size * 8
            parts = []
            for bname, bits, names in arg:
                shift -= bits
                parts.append((bname, shift, (1 << bits) - 1, names or None, len(names) if names else 0))
            codes.append("B" * size)
            steps.append((name, _BITS, (size, tuple(parts))))
        else:
            return None
    return "".join(codes), tuple(steps)


def _convert(steps: tuple[Step, ...], values: tuple[int, ...], outs: tuple[dict[str, Any], ...]) -> None:
    """Put the values of steps, read from values in order, into outs (the message, then each list item: a step's
    last element says which) as the codec's `_decode_field` does."""
    i = 0
    for name, how, arg, to in steps:
        out = outs[to]
        raw = values[i]
        if how <= _ENUM:
            i += 1
            if how == _PLAIN:
                out[name] = raw
            elif how == _SCALED:
                out[name] = raw / arg
            else:
                out[name] = arg[0][raw] if raw < arg[1] else f"unknown_{raw}"
            continue
        if how == _BITS:
            size, parts = arg
            acc = 0
            for byte in values[i:i + size]:
                acc = (acc << 8) | byte
            i += size
            for bname, shift, mask, names, n in parts:
                bit_raw = (acc >> shift) & mask
                out[bname] = (names[bit_raw] if bit_raw < n else f"unknown_{bit_raw}") if names else bit_raw
            continue
        raw |= values[i + 1] << 16
        i += 2
        if how == _VER:
            out[name] = f"{(raw >> 16) & 0xFF}.{(raw >> 8) & 0xFF}.{raw & 0xFF}"
            continue
        if how != _U24 and raw >= 8388608:
            raw -= 16777216
        if how == _LAT:
            out[name] = raw * 90 / 8388608
        elif how == _LON:
            out[name] = raw * 180 / 8388608
        else:
            out[name] = raw / arg if arg else raw


class _Row:
    """One message row made ready: its name, and for each count of list items its struct layout and its steps
    (the head's, then every item's: one pass reads the whole payload)."""

    __slots__ = ("name", "fixed", "item_size", "max_items", "list_name", "single", "unpack_of", "steps_of")

    def __init__(self, row: tuple[Any, ...], head: tuple[str, tuple[Part, ...]],
                 listed: tuple[str, int, tuple[str, tuple[Part, ...]], str | None] | None) -> None:
        self.name = row[0]
        tag = "x" if row[2] is not None else ""
        self.fixed = struct.calcsize("<" + tag + head[0])  # pos + the codec's _fixed_size, once
        self.item_size = 0
        self.max_items = 0
        self.list_name = ""
        self.single: str | None = None
        item_codes = ""
        item: tuple[Part, ...] = ()
        if listed is not None:
            self.list_name, self.max_items, (item_codes, item), self.single = listed
            self.item_size = struct.calcsize("<" + item_codes)
        counts = range(self.max_items + 1)
        self.unpack_of = tuple(struct.Struct("<" + tag + head[0] + item_codes * n).unpack for n in counts)
        self.steps_of = tuple(tuple(step + (0,) for step in head[1])
                              + tuple(step + (k + 1,) for k in range(n) for step in item) for n in counts)


_UNREAD = ("left to the codec",)  # a row this reader does not read


def _row(row: tuple[Any, ...]) -> _Row | tuple[str]:
    """The row made ready, or _UNREAD when its fields are not all of the kinds read here."""
    fields = row[4]
    lists = [f for f in fields if f[1] == "list"]
    if lists and (len(lists) > 1 or fields[-1][1] != "list"):
        return _UNREAD
    head = _steps(tuple(f for f in fields if f[1] != "list"))
    if head is None:
        return _UNREAD
    listed = None
    if lists:
        name, _kind, (max_items, subfields) = lists[0]
        item = _steps(subfields)
        if item is None or not item[0] or len(subfields) == 1 and subfields[0][1] == "bits":
            return _UNREAD
        listed = (name, max_items, item, subfields[0][0] if len(subfields) == 1 else None)
    return _Row(row, head, listed)


def _ports() -> dict[tuple[int, str | None, int], tuple[Any, dict[int, Any]]]:
    """(port, direction None or "up", TS004 package version) -> (the row of a port without tags, or None; first
    byte -> row), chosen as the codec's `decode` chooses its variants (its `_index`: a versioned row keyed by
    tag | version << 8, the row of tag alone where the version has none of its own)."""
    up: dict[int, dict[int | None, Any]] = {}
    down: dict[int, dict[int | None, Any]] = {}
    versions = {1}
    for m in collar_codec.MESSAGES:
        v = m[5] << 8 if len(m) > 5 else 0
        versions.add(v >> 8 or 1)
        key = m[2] if m[2] is None else m[2] | v
        if m[3] != "down":
            up.setdefault(m[1], {})[key] = m
        if m[3] != "up":
            down.setdefault(m[1], {})[key] = m
    made: dict[tuple[int, str | None, int], tuple[Any, dict[int, Any]]] = {}
    for port in set(up) | set(down):
        if port == collar_codec.SETTINGS_PORT:
            continue  # TLV records: the codec reads them
        for direction in (None, "up"):
            variants = up.get(port)
            if variants is None and direction is None:
                variants = down.get(port)
            if variants is None:
                continue
            for version in versions:
                if None in variants:
                    made[port, direction, version] = (_row(variants[None]), {})
                    continue
                tagged = {}
                for first in range(256):
                    m = variants.get(first | version << 8) or variants.get(first)
                    if m is not None:
                        tagged[first] = _row(m)
                made[port, direction, version] = (None, tagged)
    return made


_PORTS = _ports()


def read(port: int, payload: bytes, direction: str | None = None, version: int = 1) -> dict[str, Any]:
    """`collar_firmware.codec.decode(port, payload, direction, version)`, the same dict, read in one unpacking;
    raise its CodecError for a payload it refuses."""
    ready = _PORTS.get((port, direction, version))
    if ready is None:  # a port, a direction or a package version of no row read here
        return collar_codec.decode(port, payload, direction, version)
    row, tagged = ready
    if row is None:
        if not payload:
            return collar_codec.decode(port, payload, direction, version)
        row = tagged.get(payload[0])
        if row is None or row is _UNREAD:
            return collar_codec.decode(port, payload, direction, version)
    elif row is _UNREAD:
        return collar_codec.decode(port, payload, direction, version)
    out = {"message": row.name, "port": port}
    if not row.item_size:
        try:
            values = row.unpack_of[0](payload)
        except struct.error:  # not the row's length: the codec says so in its words
            return collar_codec.decode(port, payload, direction, version)
        _convert(row.steps_of[0], values, (out,))
        return out
    rest = len(payload) - row.fixed
    if rest < 0 or rest % row.item_size or rest // row.item_size > row.max_items:
        return collar_codec.decode(port, payload, direction, version)
    n = rest // row.item_size
    items: list[dict[str, Any]] = [{} for _ in range(n)]
    _convert(row.steps_of[n], row.unpack_of[n](payload), (out, *items))
    single = row.single
    out[row.list_name] = items if single is None else [item[single] for item in items]
    return out
