"""The text of SQLite's JSON columns, written and read in one step each.

A batch binds a JSON value for every raw row (its gateways), every activity summary (its shares) and
every changed collar's flags, and reads two for every collar it loads (its flags and reported
settings): about three values an uplink. `json.dumps` and `json.loads` reach the C encoder and scanner
through several Python steps a value (the encoder's `encode` and `iterencode`, the decoder's `decode`,
`raw_decode` and its two whitespace matches); here each value goes to them in one, with the same text
and the same values: the encoder made as `iterencode` makes it for a one-shot encode (json.dumps'
defaults, a fresh circular-reference check a value), the scanner taken alone when the text is one
JSON document with no whitespace around it (what `json_text` writes), else `json.loads`' own way.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any

_JSON_ENCODER = json.JSONEncoder()  # json.dumps' own encoder: its defaults, the same text
_JSON_DECODER = json.JSONDecoder()  # json.loads' own decoder
_SCAN = _JSON_DECODER.scan_once


def json_text(value: object) -> str:
    """value as SQLite's JSON columns keep it: the text `json.dumps` writes (SQLAlchemy's default
    serializer, a null for None); None at once: a batch's every raw row binds one (its path ids, of a
    webhook path that names none)."""
    if value is None:
        return "null"
    if c_make_encoder is None:  # a Python without json's C accelerator: its own way
        return _JSON_ENCODER.encode(value)
    encoder = _JSON_ENCODER
    # what `JSONEncoder.iterencode(value, _one_shot=True)` builds and runs, markers and all
    chunks = c_make_encoder({}, encoder.default, encode_basestring_ascii, None, encoder.key_separator,
                            encoder.item_separator, encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)(value, 0)
    return "".join(chunks)


def json_value(text: Any) -> Any:
    """The value of a JSON column's text, as `json.loads` reads it (its errors too): the scanner alone
    for a text that is one JSON document from its first character to its last, else the decoder's way
    (whitespace around it, extra data, not a document: its error)."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return _JSON_DECODER.decode(text)
    if end != len(text):
        return _JSON_DECODER.decode(text)
    return value
