"""A ranger's alert SMS is one text message in the encoding the phone network really uses (GSM 03.38
7-bit: 160 characters, its extension table's characters two each; UCS-2 once one character is outside
it: 70 UTF-16 units), whatever the alert type's words or the animal's name; the place and the local time
are never what is cut."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
from notify_standins import SmsGateway

from lora_bridge.notify.channels import sms_text_of, when_where_of
from lora_bridge.notify.sms_text import fits_one_sms, sms_units
from lora_bridge.server import serve_app_in_thread
from lora_bridge.store.utc import utc_now

# The GSM 7-bit default alphabet as 3GPP TS 23.038 §6.2.1 prints it: its eight columns (b7 b6 b5 = 0..7),
# rows b4..b1 = 0..F; ESC (column 1, row B) is the escape to the extension table, not a character.
GSM_0338_COLUMNS = [
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞ" + "ÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmnO".replace("O", "o"),
    "pqrstuvwxyzäöñüà",
]
# Its extension table (each sent as ESC + one septet): form feed, ^ { } \ [ ~ ] | €.
GSM_0338_EXTENSION = "\f^{}\\[~]|€"
# Characters a ranger's phone book or a researcher's naming meets that are NOT in the alphabet.
OUTSIDE_GSM = ["í", "ç", "á", "ú", "ő", "🐘", "Ж", "象"]

PLACE = {"lat": -2.65432, "lon": 37.26123, "utc_offset_min": 180}


def alert(**changes):
    """An outbox payload of a high poaching alert at 02:00 East Africa Time, by a named collar."""
    payload = {"alert_id": 4711, "action": "raised", "alert_type": "poaching_risk", "priority": 300,
               "device_id": "collar-0042", "animal": "Naserian", "time": "2026-03-01T23:00:00+00:00",
               "confidence": 0.93, **PLACE}
    return {**payload, **changes}


def test_every_character_of_the_gsm_alphabet_counts_one_septet_and_its_extension_two():
    basic = "".join(GSM_0338_COLUMNS)
    assert len(basic) == 127
    assert sms_units(basic) == ("GSM-7", 127, 160)
    assert fits_one_sms((basic * 2)[:160]) and not fits_one_sms((basic * 2)[:161])
    assert sms_units(GSM_0338_EXTENSION) == ("GSM-7", 20, 160)
    assert fits_one_sms("€" * 80) and not fits_one_sms("€" * 80 + "a")
    for character in OUTSIDE_GSM:
        encoding, _, limit = sms_units("Naserian" + character)
        assert (encoding, limit) == ("UCS-2", 70), character
    assert sms_units("🐘" * 35) == ("UCS-2", 70, 70)  # an emoji is two UTF-16 units
    assert not fits_one_sms("🐘" * 35 + "a")


def test_a_spanish_or_german_name_stays_in_the_gsm_alphabet_and_loses_nothing():
    # ñ, ü, é are in GSM 03.38: the name needs no UCS-2, and nothing of the message is cut.
    text = sms_text_of(alert(animal="Peña Müller-José"))
    assert sms_units(text)[0] == "GSM-7"
    assert text.split("\n") == ["HIGH Possible poaching: Peña Müller-José (confidence 0.93)",
                                "at 2026-03-02 02:00 UTC+03:00 (-2.65432,37.26123)", "alert #4711 collar collar-0042"]


def test_the_duty_officer_gets_one_sms_with_the_place_and_time_whole_however_long_the_type_or_name():
    long_name = "Naserian daughter of Nyokabi of the Amboseli Kitirua family, collared at Ol Tukai in 2024 " * 2
    cases = [
        alert(animal=long_name[:128]),
        alert(alert_type="human_wildlife_conflict_near_the_school_of_kimana_and_its_farms", animal=long_name[:128]),
        alert(animal="Nyota 🐘 ya Tsavo"),
        alert(animal="Lucía"),  # í: UCS-2
        alert(animal="象" * 40, action="resolved", resolved_by="ranger.amani.with.a.long.account.name",
              verdict="false_alarm"),
        alert(animal=None, device_id="x" * 64),
    ]
    for payload in cases:
        text = sms_text_of(payload)
        assert fits_one_sms(text), (sms_units(text), text)
        assert when_where_of(payload) in text.split("\n"), text
        assert text.startswith("HIGH "), text


def test_a_name_with_an_emoji_or_an_accent_is_spelled_in_the_gsm_alphabet_rather_than_cut():
    # In UCS-2 the message holds 70 units, too few for the alert: the names are spelled in the GSM
    # alphabet (the emoji left out, 'í' as 'i') and the whole alert fits 160 septets.
    text = sms_text_of(alert(animal="Nyota 🐘 ya Tsavo"))
    assert text.split("\n") == ["HIGH Possible poaching: Nyota ya Tsavo (confidence 0.93)",
                                "at 2026-03-02 02:00 UTC+03:00 (-2.65432,37.26123)", "alert #4711 collar collar-0042"]
    assert sms_text_of(alert(animal="Lucía")).startswith("HIGH Possible poaching: Lucia (confidence 0.93)\n")
    # A name with nothing in the GSM alphabet is named by its collar.
    assert sms_text_of(alert(animal="象" * 40)).startswith("HIGH Possible poaching: collar collar-0042")


def test_the_least_important_part_goes_first_and_a_name_is_cut_only_when_nothing_else_is_left():
    # "HIGH Possible poaching: " (24) + name + " (confidence 0.93)" (18) + the place and time (1 + 49)
    # + "alert #4711 collar collar-0042" (1 + 30) = 123 + the name's length, in GSM-7.
    name = ("Naserian daughter of Nyokabi of the Amboseli Kitirua family " * 3).replace(" ", "_")
    assert sms_text_of(alert(animal=name[:37])).count("\n") == 2 and "(confidence 0.93)" in sms_text_of(
        alert(animal=name[:37]))
    cut_confidence = sms_text_of(alert(animal=name[:38]))
    assert "confidence" not in cut_confidence and cut_confidence.endswith("\nalert #4711 collar collar-0042")
    cut_collar = sms_text_of(alert(animal=name[:74]))
    assert cut_collar.endswith("\nalert #4711") and f": {name[:74]}\n" in cut_collar
    cut_number = sms_text_of(alert(animal=name[:85]))
    assert cut_number.split("\n")[-1].startswith("at ") and f": {name[:85]}\n" in cut_number
    cut_name = sms_text_of(alert(animal=name[:120]))
    first, when_where = cut_name.split("\n")
    assert first == f"HIGH Possible poaching: {name[:84 + 1]}." and when_where == "at 2026-03-02 02:00 UTC+03:00 (-2.65432,37.26123)"
    assert len(cut_name) == 160
    label = "human_wildlife_conflict_near_the_school_of_kimana_and_its_farms_" * 2
    cut_type = sms_text_of(alert(alert_type=label, animal=name[:120]))
    assert fits_one_sms(cut_type) and cut_type.split("\n")[1] == when_where and cut_type.startswith("HIGH Human")


def test_the_gateway_gets_one_message_for_an_elephant_named_with_an_emoji(sqlite_url, tmp_path):
    from test_rules_notifications import NIGHT, SMS_TOKEN, write_rules

    gateway = SmsGateway(token=SMS_TOKEN)
    routes = '[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = ["+254700000001"]\n'
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.register_animal("collar-01", "Nyota 🐘 of the Kitirua family, Amboseli")
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=int(NIGHT.timestamp())),
                                                  f_cnt=1))
            assert bridge.flush_notifications(now=utc_now() + timedelta(seconds=1)).sent == 1

    (message,) = gateway.messages
    assert fits_one_sms(message["text"]), message["text"]
    assert "\nat 2026-03-02 02:00 " in message["text"]
