"""The text of an alert's SMS, made to fit one message in the encoding it will really travel in.

A phone network carries one SMS as 140 octets: 160 characters of the GSM 03.38 7-bit default alphabet
(a character of its extension table, `{` or `€`, takes two), or, as soon as one character is outside
that alphabet (an emoji, 'í', a name in another script), 70 UTF-16 code units of UCS-2 (an emoji takes
two). A longer text goes as parts, and a basic phone on a weak network at night may show one part
alone. So the message keeps what a ranger acts on (the alert's type and priority, the animal, the place
and the local time) and loses the rest first: the confidence, the collar's id, who acted; then the
animal's name and the type's words are shortened. The place and the time are never cut.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

# GSM 03.38 (3GPP TS 23.038 §6.2.1): the basic character set (one septet each; ESC, 0x1B, left out)
# and the characters of its extension table (ESC and one septet: two each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_SINGLE_SMS = 160  # septets in one message
UCS2_SINGLE_SMS = 70  # UTF-16 code units in one message
SHORTENED = "."  # marks a shortened name or type (in both alphabets, one septet)


def is_gsm7(text: str) -> bool:
    """True when every character of text is in the GSM 7-bit default alphabet or its extension."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def sms_units(text: str) -> tuple[str, int, int]:
    """(encoding, units used, units one message holds): ("GSM-7", septets, 160) or ("UCS-2", UTF-16 code
    units, 70)."""
    if is_gsm7(text):
        return "GSM-7", sum(2 if c in GSM7_EXTENSION else 1 for c in text), GSM7_SINGLE_SMS
    return "UCS-2", len(text.encode("utf-16-le")) // 2, UCS2_SINGLE_SMS


def fits_one_sms(text: str) -> bool:
    """True when text travels as one SMS in its real encoding."""
    _, used, limit = sms_units(text)
    return used <= limit


def one_sms_text(priority: str, label: str, animal: str, when_where: str, *, confidence: str = "",
                 action: str = "", who: str | None = None, ident: str = "", alert_ref: str = "",
                 collar: str = "") -> str:
    """The alert's message in one SMS: "<priority> <label>: <animal><confidence><action>", who acted,
    "<when_where>", "<ident>"; cut, least important first, until it fits. `alert_ref` ("alert #12") is what
    is left of ident once the collar's id is dropped; `collar` names the animal whose name has nothing
    left in the GSM alphabet.

    A message in UCS-2 only for a name's emoji or accent would hold 70 units, too few for the alert:
    then the names are spelled in the GSM alphabet first ('Lucía' as 'Lucia', the emoji left out), and
    only then cut."""

    def text(label_: str, animal_: str, confidence_: str, who_: str | None, ident_: str) -> str:
        lines = [f"{priority} {label_}: {animal_}{confidence_}{action}"]
        if who_:
            lines.append(who_)
        lines.append(when_where)
        if ident_:
            lines.append(ident_)
        return "\n".join(lines)

    full = text(label, animal, confidence, who, ident)
    if fits_one_sms(full):
        return full
    label, who, ident, alert_ref = gsm7_spelling(label), gsm7_spelling(who or ""), gsm7_spelling(ident), \
        gsm7_spelling(alert_ref)
    animal = gsm7_spelling(animal) or gsm7_spelling(collar) or "?"
    tries: list[Callable[[], Iterator[str]]] = [
        lambda: iter([text(label, animal, confidence, who, ident)]),
        lambda: iter([text(label, animal, "", who, ident)]),
        lambda: iter([text(label, animal, "", who, alert_ref)]),
        lambda: iter([text(label, animal, "", who, "")]),
        lambda: (text(label, animal, "", short, "") for short in _shortened(who)),
        lambda: (text(label, short, "", None, "") for short in _shortened(animal)),
        lambda: (text(short, animal[:1] + SHORTENED, "", None, "") for short in _shortened(label)),
    ]
    for candidates in tries:
        for candidate in candidates():
            if fits_one_sms(candidate):
                return candidate
    return text(label[:1] + SHORTENED, animal[:1] + SHORTENED, "", None, "")


def gsm7_spelling(words: str) -> str:
    """words in the GSM alphabet: its own characters kept (é, ñ, ü are in it), others spelled by their
    base letter ('í' as 'i', 'ő' as 'o'), what has none (an emoji, a Chinese name) left out."""
    kept = []
    for character in words:
        if character in GSM7_BASIC or character in GSM7_EXTENSION:
            kept.append(character)
            continue
        kept.extend(c for c in unicodedata.normalize("NFKD", character) if c in GSM7_BASIC or c in GSM7_EXTENSION)
    return " ".join(part for part in "".join(kept).split(" ") if part)


def _shortened(words: str) -> Iterator[str]:
    """words cut shorter and shorter (each marked with SHORTENED), longest first."""
    for end in range(len(words) - 1, 0, -1):
        yield words[:end].rstrip() + SHORTENED


def sms_of(payload: dict[str, Any], title_parts: dict[str, str], when_where: str, who: str | None) -> str:
    """one_sms_text of an outbox payload, from the parts the channels' title is made of."""
    return one_sms_text(
        title_parts["priority"], title_parts["label"], title_parts["animal"], when_where,
        confidence=title_parts["confidence"], action=title_parts["action"], who=who,
        ident=f"alert #{payload['alert_id']} collar {payload['device_id']}", alert_ref=f"alert #{payload['alert_id']}",
        collar=f"collar {payload['device_id']}",
    )
