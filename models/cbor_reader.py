"""A reader of CBOR (RFC 8949), the binary form of Edge Impulse's data acquisition format (`.cbor` files).

Only what a data acquisition file can hold is read: integers, byte and text strings, arrays, maps, tags (their
value kept), false, true, null, undefined and half, single and double floats, with definite or indefinite
lengths. Anything else (a break where none may be, a reserved additional information, bytes left over, nesting
deeper than MAX_DEPTH) is a ValueError saying where in the file it is.
"""

from __future__ import annotations

import struct
from typing import Any

MAX_DEPTH = 64  # a data acquisition file nests four deep (document, payload, values, sample)
_BREAK = object()
_SIMPLE = {20: False, 21: True, 22: None, 23: None}


def decode(data: bytes) -> Any:
    """Return the one CBOR data item of `data` as Python values (maps as dicts, arrays as lists)."""
    reader = _Reader(memoryview(data))
    item = reader.item(0)
    if item is _BREAK:
        raise ValueError("CBOR: a break (0xff) outside an indefinite-length item at byte 0")
    if reader.at != len(data):
        raise ValueError(f"CBOR: {len(data) - reader.at} byte(s) after the data item, from byte {reader.at}")
    return item


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError(f"CBOR: the file ends inside an item (byte {self.at} wants {n} more)")
        chunk = bytes(self.data[self.at:self.at + n])
        self.at += n
        return chunk

    def argument(self, info: int, start: int) -> int | None:
        """The head's argument; None for an indefinite length (additional information 31)."""
        if info < 24:
            return info
        if info in (24, 25, 26, 27):
            return int.from_bytes(self.take(1 << (info - 24)), "big")
        if info == 31:
            return None
        raise ValueError(f"CBOR: reserved additional information {info} at byte {start}")

    def item(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError(f"CBOR: nested deeper than {MAX_DEPTH} at byte {self.at}")
        start = self.at
        head = self.take(1)[0]
        major, info = head >> 5, head & 0x1F
        if major == 7:
            return self.simple(info, start)
        value = self.argument(info, start)
        if major == 0:
            return self.definite(value, start)
        if major == 1:
            return -1 - self.definite(value, start)
        if major in (2, 3):
            raw = self.chunks(major, start) if value is None else self.take(value)
            return raw if major == 2 else self.text(raw, start)
        if major == 4:
            return self.array(value, depth)
        if major == 5:
            return self.map(value, depth, start)
        return self.item(depth + 1)  # major 6: a tag; its value stands for it

    def definite(self, value: int | None, start: int) -> int:
        if value is None:
            raise ValueError(f"CBOR: an integer cannot have an indefinite length (byte {start})")
        return value

    def text(self, raw: bytes, start: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"CBOR: text string at byte {start} is not UTF-8") from None

    def chunks(self, major: int, start: int) -> bytes:
        parts = []
        while True:
            at = self.at
            head = self.take(1)[0]
            if head == 0xFF:
                return b"".join(parts)
            if head >> 5 != major or head & 0x1F == 31:
                raise ValueError(f"CBOR: chunk of another kind inside the indefinite string of byte {start} "
                                 f"(byte {at})")
            parts.append(self.take(self.definite(self.argument(head & 0x1F, at), at)))

    def array(self, count: int | None, depth: int) -> list:
        items = []
        while count is None or len(items) < count:
            start = self.at
            item = self.item(depth + 1)
            if item is _BREAK:
                if count is None:
                    return items
                raise ValueError(f"CBOR: a break inside a definite-length array (byte {start})")
            items.append(item)
        return items

    def map(self, count: int | None, depth: int, start: int) -> dict:
        found: dict = {}
        while count is None or len(found) < count:
            at = self.at
            key = self.item(depth + 1)
            if key is _BREAK:
                if count is None:
                    return found
                raise ValueError(f"CBOR: a break inside a definite-length map (byte {at})")
            if isinstance(key, list | dict | bytes) or key in found:
                raise ValueError(f"CBOR: map key {key!r} at byte {at} is repeated or not a text or number")
            value = self.item(depth + 1)
            if value is _BREAK:
                raise ValueError(f"CBOR: map at byte {start} has a key without a value (byte {at})")
            found[key] = value
        return found

    def simple(self, info: int, start: int) -> Any:
        if info in _SIMPLE:
            return _SIMPLE[info]
        if info == 25:
            return struct.unpack(">e", self.take(2))[0]
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return struct.unpack(">d", self.take(8))[0]
        if info == 31:
            return _BREAK
        raise ValueError(f"CBOR: simple value {info} at byte {start} is not false, true, null or a float")
