"""Notifications reach the people on duty: EarthRanger, a signed webhook, e-mail and SMS, through an
outbox that survives restarts and never sends a message twice."""

from __future__ import annotations

import email
import email.utils
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import bridge_builders as b
import pytest
import rules_builders as rb
from conftest import free_port
from notify_standins import EarthRangerStandIn, SmsGateway, SmtpStandIn, WebhookReceiver

from lora_bridge.access import Viewer
from lora_bridge.errors import Forbidden, InvalidRequest
from lora_bridge.notify.channels import sign, verify
from lora_bridge.notify.outbox import DrainReport
from lora_bridge.notify.sms_text import fits_one_sms
from lora_bridge.rules_file import read_rules_file
from lora_bridge.server import serve_app_in_thread
from lora_bridge.store.utc import utc_now

ADMIN = Viewer("admin.neema", "admin")

T = b.T0
TECHNICIAN = Viewer("tito", "field_technician")
NIGHT = T + timedelta(hours=17)  # 02:00 East Africa Time


def wall(seconds: float = 0) -> datetime:
    """The outbox runs on the wall clock (alerts carry the collars' own times): now + seconds."""
    return utc_now() + timedelta(seconds=seconds)

ER_TOKEN = "er-service-token"
HOOK_SECRET = "hook-secret-for-tests"
SMS_TOKEN = "sms-gateway-token"


def write_rules(path, *, er_url=None, hook_url=None, smtp_port=None, sms_url=None, routes="", er_extra="",
                er_token=ER_TOKEN):
    parts = []
    if er_url:
        parts.append(f'[notify.earthranger]\nurl = "{er_url}/api/v1.0"\ntoken = "{er_token}"\nprovider_key = "tembo"\n'
                     + er_extra)
    if hook_url:
        parts.append(f'[notify.webhook]\nurl = "{hook_url}/hook"\nsecret = "{HOOK_SECRET}"\n')
    if smtp_port:
        parts.append(f'[notify.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsender = "tembo@reserve.example"\n')
    if sms_url:
        parts.append(f'[notify.sms]\nurl = "{sms_url}/send"\ntoken = "{SMS_TOKEN}"\n')
    parts.append('[notify.retry]\nbackoff_s = 60\nmax_attempts = 5\n')
    parts.append(routes)
    path.write_text("\n".join(parts))
    return str(path)


def er_route(*actions: str) -> str:
    """The rules file's route of alerts to EarthRanger, for `actions` (every action when none)."""
    return '[[notify.routes]]\nname = "earthranger"\nchannel = "earthranger"\n' + (
        f"actions = {json.dumps(list(actions))}\n" if actions else "")


# The duty officer's phone, for every alert or for HIGH ones only.
DUTY_SMS = '[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = ["+254700000001"]\n'
DUTY_SMS_AT_HIGH = DUTY_SMS + "min_priority = 300\n"


@contextmanager
def _bridge_texting(sqlite_url, tmp_path, gateway: SmsGateway, routes: str) -> Iterator:
    """A bridge whose rules file sends alerts along `routes` to the SMS gateway, served meanwhile."""
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            yield bridge


@pytest.fixture
def earthranger():
    stand_in = EarthRangerStandIn(token=ER_TOKEN, provider_key="tembo")
    with serve_app_in_thread(stand_in.app()) as server:
        yield stand_in, server.url


def test_earthranger_gets_alerts_as_events_and_fixes_as_observations_in_its_documented_shape(
    sqlite_url, tmp_path, earthranger
):
    stand_in, url = earthranger
    routes = er_route("raised", "acknowledged", "resolved")
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url, routes=routes)) as bridge:
        bridge.register_animal("collar-01", "Naserian")
        for body in rb.fix_uplinks("collar-01", T, [(0, 305_000, 9_705_000), (60, 305_020, 9_705_000)]):
            bridge.ingest_tts_uplink(body)
        lat, lon = rb.lat_lon(305_000, 9_705_000)
        mortality = b.alert("mortality", seq=1, lat=lat, lon=lon)
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(mortality, f_cnt=9)).alert_ids
        assert stand_in.requests == []  # ingest never waits on EarthRanger
        assert bridge.flush_notifications(now=wall()).sent == 3
        bridge.acknowledge_alert(alert_id, Viewer("ranger.amani", "ranger"))
        bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "true")
        assert bridge.flush_notifications(now=wall()).sent == 2

    assert stand_in.problems == []
    paths = [(r["method"], r["path"]) for r in stand_in.requests]
    (fixes,) = [r for r in stand_in.requests if r["path"] == "/api/v1.0/sensors/generic/tembo/status"]
    assert isinstance(fixes["body"], list) and fixes["observations"] == 2  # both fixes in one list
    assert paths.count(("POST", "/api/v1.0/activity/events")) == 1
    (event_id, event), = stand_in.events.items()
    assert paths.count(("PATCH", f"/api/v1.0/activity/event/{event_id}")) == 2
    assert (event["event_type"], event["priority"], event["state"]) == ("tembo_mortality", 300, "resolved")
    assert event["location"] == {"latitude": pytest.approx(lat, abs=1e-4), "longitude": pytest.approx(lon, abs=1e-4)}
    assert event["event_details"]["confidence"] > 0.8  # still 20 m away an hour later
    observation = next(iter(stand_in.observations.values()))
    assert (observation["manufacturer_id"], observation["subject_name"]) == ("collar-01", "Naserian")


def test_signed_webhook_verifies_and_a_restart_sends_nothing_twice(store_url, tmp_path):
    receiver = WebhookReceiver(secret=HOOK_SECRET.encode(), refuse_first=2)
    routes = '[[notify.routes]]\nname = "control-room"\nchannel = "webhook"\n'
    with serve_app_in_thread(receiver.app()) as server:
        rules_path = write_rules(tmp_path / "r.toml", hook_url=server.url, routes=routes)
        with b.fresh_bridge(store_url, rules_path=rules_path) as bridge:
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("collar_drop", seq=2), f_cnt=2))
            first = bridge.flush_notifications(now=wall())
            assert (first.sent, first.retried) == (0, 1)  # refused (503): the channel waits, the rest too
            waiting = bridge.notifications(viewer=ADMIN, state="pending")
            assert len(waiting) == 2 and max(n.attempts for n in waiting) == 1
        # The bridge restarts: a new process on the same store, same rules.
        with b.fresh_bridge(store_url, rules_path=rules_path) as bridge:
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))  # a repeat, queued once
            bridge.run_rules(now=T)  # re-queues nothing already queued
            # 30 s on: the refused one waits out its 60 s backoff; the other goes and is refused (503) too.
            assert bridge.flush_notifications(now=wall(30)) == DrainReport(sent=0, retried=1, failed=0)
            second = bridge.flush_notifications(now=wall(90))
            third = bridge.flush_notifications(now=wall(400))
            sent = bridge.notifications(viewer=ADMIN, state="sent")
        with b.fresh_bridge(store_url, rules_path=rules_path) as bridge:
            assert bridge.flush_notifications(now=wall(86_400)).sent == 0

    assert (second.sent, third.sent) == (2, 0)
    assert receiver.bad_signatures == 0
    deliveries = [d["delivery"] for d in receiver.deliveries]
    assert sorted(deliveries) == sorted({str(n.notification_id) for n in sent}) and len(deliveries) == 2
    assert {d["body"]["alert_type"] for d in receiver.deliveries} == {"mortality", "collar_drop"}


def test_webhook_signature_is_hmac_sha256_over_timestamp_and_body():
    body = b'{"alert_id":7}'
    header = sign(b"key", body, 1_700_000_000)

    assert header == "t=1700000000,v1=" + __import__("hmac").new(
        b"key", b"1700000000." + body, "sha256"
    ).hexdigest()
    assert verify(b"key", body, header, now=1_700_000_100)
    assert not verify(b"key", body + b" ", header, now=1_700_000_100)
    assert not verify(b"other", body, header, now=1_700_000_100)
    assert not verify(b"key", body, header, now=1_700_000_000 + 3600)  # replayed an hour later
    assert not verify(b"key", body, "v1=abc", now=time.time())


def test_night_routing_sends_high_alerts_by_sms_and_email_and_nothing_low(sqlite_url, tmp_path):
    gateway = SmsGateway(token=SMS_TOKEN)
    smtp_port = free_port()
    routes = (
        DUTY_SMS +
        'types = ["poaching_risk", "mortality"]\nmin_priority = 300\nhours = "night"\n'
        '[[notify.routes]]\nname = "warden-mail"\nchannel = "email"\nto = ["warden@reserve.example"]\nmin_priority = 200\n'
    )
    with serve_app_in_thread(gateway.app()) as sms, SmtpStandIn(smtp_port) as smtp:
        rules_path = write_rules(tmp_path / "r.toml", smtp_port=smtp_port, sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.register_animal("collar-01", "Naserian")
            night_s = int(NIGHT.timestamp())
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1, time_s=night_s), f_cnt=1))
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("collar_drop", seq=2), f_cnt=2))  # by day, 200
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3200), f_cnt=3))  # low battery, 100
            report = bridge.flush_notifications(now=wall())

    assert (report.sent, report.failed) == (3, 0)
    (text,) = gateway.messages
    assert text["to"] == "+254700000001" and text["text"].startswith("HIGH Possible mortality: Naserian")
    subjects = sorted(email.message_from_bytes(m["data"])["Subject"] for m in smtp.messages)
    assert subjects == ["[Tembo] HIGH Possible mortality: Naserian (confidence 0.50)", "[Tembo] MEDIUM Collar drop: Naserian"]
    assert all(m["to"] == ["warden@reserve.example"] for m in smtp.messages)


def test_alerting_in_the_control_room_does_not_wait_when_every_outside_service_is_down(sqlite_url, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    routes = '[[notify.routes]]\nname = "control-room"\nchannel = "webhook"\n'
    rules_path = write_rules(tmp_path / "r.toml", hook_url=dead, er_url=dead, routes=routes)
    with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
        result = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
        assert [a.alert_id for a in bridge.open_alerts(viewer=b.RANGER)] == list(result.alert_ids)
        report = bridge.flush_notifications(now=wall())
        assert report.sent == 0 and report.retried >= 1
        assert {n.state for n in bridge.notifications(viewer=ADMIN)} == {"pending"}
        assert all("ConnectError" in (n.last_error or "") for n in bridge.notifications(viewer=ADMIN) if n.attempts)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[notify.routes]]\nname = "x"\nchannel = "sms"\nto = ["+1"]\n', "is not configured"),
        ('[notify.webhook]\nurl = "http://x"\n', "secret"),
        ('[notify.smtp]\nhost = "h"\nsender = "a@b"\n[[notify.routes]]\nname = "m"\nchannel = "email"\n', "no recipients"),
        ('[[notify.routes]]\nname = "x"\nchannel = "pager"\n', "channel"),
        ('[notify.sms]\nurl = "http://x"\ntoken = "t"\n[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\n'
         'to = ["+254700000001", "0700 000 002"]\n', "'0700 000 002' is not an international number"),
        ('[notify.smtp]\nhost = "h"\nsender = "a@b"\n[[notify.routes]]\nname = "m"\nchannel = "email"\n'
         'to = ["warden at reserve.example"]\n', "is not an e-mail address"),
        ('[notify.sms]\nurl = "http://x"\ntoken = "t"\nsender = "Tembo Control Room"\n',
         "'Tembo Control Room' is neither an alphanumeric sender id"),
        ('[notify.sms]\nurl = "http://x"\ntoken = "t"\nsender = "Témbo"\n', "'Témbo' is neither"),
        ('[notify.sms]\nurl = "http://x"\ntoken = "t"\n[[notify.routes]]\nname = "d"\nchannel = "sms"\n'
         'to = ["+4915100000001"]\ntimezone = "Europe/Bonn"\n', "unknown time zone 'Europe/Bonn'"),
    ],
    ids=["route-without-channel", "webhook-without-secret", "email-without-recipients", "unknown-channel",
         "sms-number-without-country-code", "email-without-its-at", "sms-sender-too-long-for-a-phone",
         "sms-sender-with-an-accent", "route-in-an-unknown-time-zone"],
)
def test_broken_notification_settings_are_refused_with_the_reason(tmp_path, text, says):
    path = tmp_path / "r.toml"
    path.write_text(text)

    with pytest.raises(InvalidRequest, match=says):
        read_rules_file(str(path))


def test_nothing_leaves_the_machine_without_notification_settings(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))
        assert bridge.notifications(viewer=ADMIN) == [] and bridge.flush_notifications().sent == 0


def test_only_admins_read_the_outbox_whose_payloads_carry_exact_positions(tmp_path):
    with b.fresh_bridge(f"sqlite:///{tmp_path / 'tembo.db'}") as bridge:
        with pytest.raises(Forbidden):
            bridge.notifications(viewer=b.RANGER)
        assert bridge.notifications(viewer=ADMIN) == []


def test_an_unanswered_fence_exit_is_raised_to_high_on_earthranger_and_reaches_the_high_priority_route(
    sqlite_url, tmp_path, earthranger
):
    stand_in, url = earthranger
    gateway = SmsGateway(token=SMS_TOKEN)
    routes = (
        er_route() +
        DUTY_SMS_AT_HIGH
    )
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", er_url=url, sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.register_animal("collar-01", "Naserian")
            rb.park_and_farm(bridge)
            rb.ingest_track(bridge, [(0, 308_000, 9_702_000), (60, 311_000, 9_702_000)], start=T)
            (alert,) = bridge.open_alerts(viewer=b.RANGER)
            assert (alert.alert_type, alert.priority) == ("geofence_exit", 200)
            bridge.flush_notifications(now=wall())
            assert gateway.messages == []  # medium: not for the duty officer's phone
            (event_id, event), = stand_in.events.items()
            assert (event["priority"], event["title"]) == (200, "MEDIUM Left the reserve: Naserian")

            bridge.run_rules(now=alert.time + timedelta(minutes=59))
            assert bridge.alert(alert.alert_id, viewer=b.RANGER).priority == 200
            bridge.run_rules(now=alert.time + timedelta(minutes=61))  # nobody acknowledged a medium alert in 60 min
            report = bridge.flush_notifications(now=wall())
            escalated = bridge.alert(alert.alert_id, viewer=b.RANGER)
            history = bridge.alert_events(alert.alert_id, viewer=b.RANGER)

    assert report.failed == 0 and stand_in.problems == []
    assert escalated.priority == 300
    (step,) = [e.detail for e in history if e.action == "escalated"]
    assert (step["level"], step["priority_from"], step["priority_to"]) == (1, 200, 300)
    patches = [r for r in stand_in.requests if r["method"] == "PATCH"]
    assert [p["path"] for p in patches] == [f"/api/v1.0/activity/event/{event_id}"]
    assert patches[0]["body"]["priority"] == 300 and patches[0]["body"]["state"] == "new"
    assert stand_in.events[event_id]["priority"] == 300
    assert stand_in.events[event_id]["title"] == "HIGH Left the reserve: Naserian [escalated]"
    (text,) = gateway.messages
    assert text["text"].startswith("HIGH Left the reserve: Naserian [escalated]")


def fixes_of_two_collars(bridge, minutes):
    bridge.register_animal("collar-01", "Naserian")
    bridge.register_animal("collar-02", "Lemayian")
    for device_id, first in (("collar-01", 1), ("collar-02", 1)):
        track = [(m, 305_000 + 100 * i, 9_705_000) for i, m in enumerate(minutes[device_id])]
        for body in rb.fix_uplinks(device_id, T, track, first_f_cnt=first):
            bridge.ingest_tts_uplink(body)


def test_earthranger_gets_fixes_as_lists_of_observations_one_post_per_batch(sqlite_url, tmp_path, earthranger):
    stand_in, url = earthranger
    rules_path = write_rules(tmp_path / "r.toml", er_url=url, er_extra="observations_per_post = 2\n")
    with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
        fixes_of_two_collars(bridge, {"collar-01": [0, 60, 120], "collar-02": [0, 60]})
        report = bridge.flush_notifications(now=wall())
        again = bridge.flush_notifications(now=wall(3600))
        states = {n.state for n in bridge.notifications(viewer=ADMIN)}

    assert (report.sent, report.failed, again.sent) == (5, 0, 0) and states == {"sent"}
    assert stand_in.problems == []
    posts = [r for r in stand_in.requests if r["path"] == "/api/v1.0/sensors/generic/tembo/status"]
    assert [p["observations"] for p in posts] == [2, 2, 1]
    assert all(isinstance(p["body"], list) for p in posts)
    assert sorted(stand_in.observations) == sorted(
        (device_id, (T + timedelta(minutes=m)).isoformat())
        for device_id, minutes in (("collar-01", (0, 60, 120)), ("collar-02", (0, 60)))
        for m in minutes
    )


def _hear_collar_01(bridge, fixes: list[tuple[int, int, int]], first_f_cnt: int = 1) -> None:
    """collar-01's fixes (minutes after T, lat and lon in 1e-5 degrees) heard in that order."""
    for body in rb.fix_uplinks("collar-01", T, fixes, first_f_cnt=first_f_cnt):
        assert bridge.ingest_tts_uplink(body).ok


def _flush_until_done(bridge) -> dict[tuple[str, str], int]:
    """Send the outbox pass after pass, an hour apart (a fix waits for its collar's change of wearer, and that
    change for the fixes queued before it); how many rows ended in each (kind, state)."""
    for hours in range(4):
        bridge.flush_notifications(now=wall(3600 * hours))
    return dict(Counter((n.kind, n.state) for n in bridge.notifications(viewer=ADMIN)))


def _subjects_by_minute(stand_in) -> dict[int, str]:
    """The EarthRanger subject each observation was sent under, by its minute after T."""
    return {int((datetime.fromisoformat(at) - T).total_seconds() // 60): item["subject_name"]
            for (_, at), item in stand_in.observations.items()}


def _collar_01_lives_through(bridge, wearers: dict[str, str], steps: list[tuple]) -> dict[str, int]:
    """Register each animal with the collar it wears, then take the steps in order: ("fix", minute) collar-01
    heard fixing on an animal (100 m on each hour), ("bench", minute) heard fixing on the workshop bench,
    ("off", animal, minute) taken off that animal, ("fit", animal, minute) fitted to it from the bench,
    ("move", animal, minute) moved to it from the animal wearing it. Each step's minutes are after T; the
    animals' ids, by name."""
    animals = {name: bridge.register_animal(device_id, name).animal_id for name, device_id in wearers.items()}
    heard = 0
    for what, *rest in steps:
        if what in ("fix", "bench"):
            (minute,) = rest
            where = (305_000 + 100 * (minute // 60), 9_705_000) if what == "fix" else (310_000, 9_700_000)
            heard += 1
            _hear_collar_01(bridge, [(minute, *where)], first_f_cnt=heard)
        elif what == "off":
            bridge.take_off_collar(animals[rest[0]], viewer=TECHNICIAN, removed_at=T + timedelta(minutes=rest[1]))
        else:
            bridge.fit_collar(animals[rest[0]], "collar-01", viewer=TECHNICIAN, move=what == "move",
                              fitted_at=T + timedelta(minutes=rest[1]))
    return animals


# collar-01's stories: who wore it, what befell it (`_collar_01_lives_through`), how many fixes and changes of
# wearer EarthRanger got, and the subject it showed each fix on, by minute. Tito does the fitting.
COLLAR_01_STORIES = [
    # Tito took the collar off Naserian at 01:30; on the workshop bench it fixed itself at 02:00 and 03:00.
    # EarthRanger shows her fixes, and no subject named after the collar on the bench.
    pytest.param({"Naserian": "collar-01"},
                 [("fix", 0), ("fix", 60), ("off", "Naserian", 90), ("bench", 120), ("bench", 180)],
                 (2, 1), {0: "Naserian", 60: "Naserian"},
                 id="naserians_fixes_and_no_subject_named_after_her_collar_on_the_workshop_bench"),
    # Tito moved collar-01 from Naserian to Kito at 01:30; the collar's flash then gave up Naserian's 01:00
    # fix, heard with Kito's first ones. Two changes of wearer: collar-01 to Kito, Kito's collar-02 to stock.
    pytest.param({"Naserian": "collar-01", "Kito": "collar-02"},
                 [("fix", 0), ("move", "Kito", 90), ("fix", 120), ("fix", 60), ("fix", 180)],
                 (4, 2), {0: "Naserian", 60: "Naserian", 120: "Kito", 180: "Kito"},
                 id="naserians_backlog_heard_after_the_swap_under_her_name_not_kitos"),
    # Tito took the collar off Naserian at 01:30; on the bench it sent her 01:00 fix late, with its own 02:00
    # fix. EarthRanger gets her fix under her name, and nothing of the bench.
    pytest.param({"Naserian": "collar-01"},
                 [("fix", 0), ("off", "Naserian", 90), ("bench", 120), ("fix", 60)],
                 (2, 1), {0: "Naserian", 60: "Naserian"},
                 id="naserians_fix_from_before_her_collar_came_off_heard_from_the_bench"),
    # The collar came off Naserian at 01:30 and went from the bench onto Kito at 02:30; its 02:00 fix on the
    # bench was heard only then. Three changes of wearer: collar-01 into stock, then onto Kito, and Kito's
    # collar-02 into stock.
    pytest.param({"Naserian": "collar-01", "Kito": "collar-02"},
                 [("fix", 0), ("off", "Naserian", 90), ("fit", "Kito", 150), ("fix", 180), ("bench", 120)],
                 (2, 3), {0: "Naserian", 180: "Kito"},
                 id="nothing_of_the_collars_days_on_the_bench_heard_after_it_went_on_kito"),
]


@pytest.mark.parametrize("wearers, steps, sent, shown_on", COLLAR_01_STORIES)
def test_earthranger_shows_each_fix_of_a_collar_on_the_animal_that_wore_it_then(
    sqlite_url, tmp_path, earthranger, wearers, steps, sent, shown_on
):
    stand_in, url = earthranger
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        _collar_01_lives_through(bridge, wearers, steps)
        rows = _flush_until_done(bridge)

    assert rows == {("position", "sent"): sent[0], ("assignment", "sent"): sent[1]} and stand_in.problems == []
    assert _subjects_by_minute(stand_in) == shown_on


def test_earthranger_gets_the_fix_a_new_collar_took_before_its_logged_fitting_on_kito(
    sqlite_url, tmp_path, earthranger
):
    # Tito logged the new collar-01 on Kito at 01:30, but it was on her and fixing by 01:00; the 01:00 fix,
    # from before any fitting the herd register knows, is filed under Kito and reaches EarthRanger as hers.
    stand_in, url = earthranger
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        kito = _collar_01_lives_through(bridge, {"Kito": "collar-02"},
                                        [("fit", "Kito", 90), ("fix", 60), ("fix", 120)])["Kito"]
        rows = _flush_until_done(bridge)
        filed = [p.time for p in bridge.tracks(animal_ids=[kito], viewer=b.RANGER).get(kito, [])]

    assert filed == [T + timedelta(minutes=60), T + timedelta(minutes=120)]
    # collar-01 onto Kito, and her collar-02 into stock
    assert rows == {("position", "sent"): 2, ("assignment", "sent"): 2} and stand_in.problems == []
    assert _subjects_by_minute(stand_in) == {60: "Kito", 120: "Kito"}
    assert stand_in.drawn_on("collar-01", (T + timedelta(minutes=60)).isoformat()) == ["Kito"]


def _swap_collar_01_to_kito_at_01_30(bridge, stand_in, *, kito_heard_on_earthranger: bool = True) -> None:
    """Naserian wore collar-01 and EarthRanger drew its 00:00 fix on her (Kito's own collar-02 heard too,
    unless not); Tito moved collar-01 to Kito at 01:30; it then sent 02:00 and 03:00, and Naserian's 01:00
    from its flash."""
    bridge.register_animal("collar-01", "Naserian")
    kito = bridge.register_animal("collar-02", "Kito").animal_id
    _hear_collar_01(bridge, [(0, 305_000, 9_705_000)])
    if kito_heard_on_earthranger:
        for body in rb.fix_uplinks("collar-02", T, [(0, 306_000, 9_706_000)]):
            assert bridge.ingest_tts_uplink(body).ok
    assert bridge.flush_notifications(now=wall()).failed == 0
    bridge.fit_collar(kito, "collar-01", viewer=TECHNICIAN, move=True, fitted_at=T + timedelta(minutes=90))
    _hear_collar_01(bridge, [(120, 305_200, 9_705_000), (180, 305_300, 9_705_000), (60, 305_100, 9_705_000)],
                    first_f_cnt=2)


def _assignments_of_collar_01(stand_in) -> list[tuple[str, str]]:
    """collar-01's assignments on EarthRanger as (subject name, start), oldest first."""
    source = stand_in.sources["collar-01"]["id"]
    return [(stand_in.subjects[a["subject"]]["name"], a["assigned_range"]["lower"])
            for a in stand_in.subject_sources if a["source"] == source]


def _posted_before_assignment(stand_in) -> list[str]:
    """The times of collar-01's fixes posted to EarthRanger before its assignment to a new wearer was made."""
    posted = []
    for request in stand_in.requests:
        if request["path"].endswith("/sources/") and request["method"] == "POST":
            return posted
        if request["path"].endswith("/status") and "body" in request:
            items = request["body"] if isinstance(request["body"], list) else [request["body"]]
            posted += [i["recorded_at"] for i in items if i["manufacturer_id"] == "collar-01"]
    return posted


def test_earthranger_draws_collar_01s_fixes_after_the_swap_on_kito_not_on_naserian(
    sqlite_url, tmp_path, earthranger
):
    # Rangers on EarthRanger saw Naserian walking where Kito was: EarthRanger kept the collar's source on the
    # subject it first heard. Tembo now assigns the source to Kito's subject from 01:30, before any fix of
    # Kito's goes, and Naserian's 01:00 fix heard late stays hers.
    stand_in, url = earthranger
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        _swap_collar_01_to_kito_at_01_30(bridge, stand_in)
        first = bridge.flush_notifications(now=wall())
        second = bridge.flush_notifications(now=wall(3600))
        rows = {n.kind: n for n in bridge.notifications(viewer=ADMIN)}
        unsent = bridge.notifications(viewer=ADMIN, state="pending")

    swap = (T + timedelta(minutes=90)).isoformat()
    assert stand_in.problems == [] and first.failed == second.failed == 0 and unsent == []
    assert _assignments_of_collar_01(stand_in) == [("Naserian", "0001-01-01T00:00:00+00:00"), ("Kito", swap)]
    assert all(at < swap for at in _posted_before_assignment(stand_in))
    assert "Kito" in stand_in.drawn_on("collar-01", (T + timedelta(minutes=120)).isoformat())
    assert stand_in.drawn_on("collar-01", (T + timedelta(minutes=60)).isoformat()) == ["Naserian"]
    assert rows["assignment"].state == "sent" and rows["assignment"].payload["animal"] == "Kito"
    assert rows["assignment"].payload["previous"] == "Naserian"


@pytest.mark.parametrize("answer", [500, 404], ids=["site-failing", "subject-gone-since-looked-up"])
def test_kitos_fixes_wait_while_earthranger_fails_her_assignment_and_go_once_it_is_made(
    sqlite_url, tmp_path, earthranger, answer
):
    # EarthRanger answers 500 to the assignment (or 404: Kito's subject removed between look-up and post):
    # it is tried again later, and none of Kito's fixes goes before it.
    stand_in, url = earthranger
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        _swap_collar_01_to_kito_at_01_30(bridge, stand_in)
        stand_in.refuse_assignments.append(answer)
        failing = bridge.flush_notifications(now=wall())
        waiting = {n.payload["time"] for n in bridge.notifications(viewer=ADMIN, state="pending")
                   if n.kind == "position"}
        bridge.flush_notifications(now=wall(3600))
        bridge.flush_notifications(now=wall(7200))
        states = {(n.kind, n.state) for n in bridge.notifications(viewer=ADMIN)}

    swap = T + timedelta(minutes=90)
    assert failing.retried >= 1 and stand_in.problems == []
    # the failing site holds up the channel's pass, Naserian's late fix with it
    assert waiting >= {(T + timedelta(minutes=m)).isoformat() for m in (120, 180)}
    assert states == {("position", "sent"), ("assignment", "sent")}
    assert _assignments_of_collar_01(stand_in)[-1] == ("Kito", swap.isoformat())
    assert all(at < swap.isoformat() for at in _posted_before_assignment(stand_in))


def test_an_assignment_earthranger_refuses_is_failed_with_its_reason_and_holds_kitos_fixes_until_retried(
    sqlite_url, tmp_path, earthranger
):
    # EarthRanger refuses the assignment (400): the row is failed with EarthRanger's answer, Kito's fixes are
    # not sent under Naserian's name meanwhile, and the administrator's retry sends both in order.
    stand_in, url = earthranger
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        _swap_collar_01_to_kito_at_01_30(bridge, stand_in)
        stand_in.refuse_assignments.append(400)
        bridge.flush_notifications(now=wall())
        bridge.flush_notifications(now=wall(3600))
        (refused,) = [n for n in bridge.notifications(viewer=ADMIN, state="failed")]
        held = [n for n in bridge.notifications(viewer=ADMIN, state="pending")]
        bridge.retry_notifications(viewer=ADMIN, channel="earthranger")
        bridge.flush_notifications(now=wall(7200))
        bridge.flush_notifications(now=wall(10800))
        states = {(n.kind, n.state) for n in bridge.notifications(viewer=ADMIN)}

    assert refused.kind == "assignment" and "HTTP 400" in refused.last_error
    assert {n.payload["time"] for n in held} == {(T + timedelta(minutes=m)).isoformat() for m in (120, 180)}
    assert states == {("position", "sent"), ("assignment", "sent")}
    assert _assignments_of_collar_01(stand_in)[-1][0] == "Kito"


def test_a_site_whose_next_link_loops_keeps_kitos_change_of_wearer_waiting_with_the_reason_and_makes_no_second_kito(
    sqlite_url, tmp_path, earthranger
):
    # The reserve has 250 elephants named after Kito (EarthRanger lists them all when asked for her: its
    # `name` matches a part of a name) and its every `next` link names page 2 again: the change of wearer
    # waits with the reason an administrator reads, Kito's fixes wait with it, and once the site pages
    # properly both go, and Kito still has one subject.
    stand_in, url = earthranger
    for number in range(250):
        stand_in._new_subject(f"Kito's kin {number:03d}", "elephant")
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        _swap_collar_01_to_kito_at_01_30(bridge, stand_in)
        stand_in.page_style = "repeat"
        bridge.flush_notifications(now=wall())
        waiting = {(n.kind, n.payload.get("animal")): n for n in bridge.notifications(viewer=ADMIN, state="pending")}
        stand_in.page_style = "page"
        bridge.flush_notifications(now=wall(3600))
        bridge.flush_notifications(now=wall(7200))
        states = {(n.kind, n.state) for n in bridge.notifications(viewer=ADMIN)}

    assert "page already read" in waiting["assignment", "Kito"].last_error and ("position", "Kito") in waiting
    assert states == {("position", "sent"), ("assignment", "sent")} and stand_in.problems == []
    assert [s["name"] for s in stand_in.subjects.values()].count("Kito") == 1
    assert _assignments_of_collar_01(stand_in)[-1] == ("Kito", (T + timedelta(minutes=90)).isoformat())


def test_earthranger_gets_a_subject_made_for_kito_when_it_never_heard_of_her(sqlite_url, tmp_path, earthranger):
    # Kito had no collar EarthRanger heard: her subject is made (an elephant), then the collar assigned to it.
    stand_in, url = earthranger
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        _swap_collar_01_to_kito_at_01_30(bridge, stand_in, kito_heard_on_earthranger=False)
        bridge.flush_notifications(now=wall())
        bridge.flush_notifications(now=wall(3600))

    made = [r for r in stand_in.requests if r["method"] == "POST" and r["path"] == "/api/v1.0/subjects/"]
    assert [r["body"]["name"] for r in made] == ["Kito"] and made[0]["body"]["subject_subtype"] == "elephant"
    assert _assignments_of_collar_01(stand_in)[-1] == ("Kito", (T + timedelta(minutes=90)).isoformat())
    assert stand_in.problems == []


def test_a_collar_taken_off_to_stock_asks_earthranger_nothing_new_and_its_next_wearer_gets_it(
    sqlite_url, tmp_path, earthranger
):
    # The collar came off Naserian at 01:30 into stock, and went on Kito at 02:30: EarthRanger gets no
    # assignment for its time on the bench, and Kito's from 02:30.
    stand_in, url = earthranger
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        naserian = bridge.register_animal("collar-01", "Naserian").animal_id
        kito = bridge.register_animal("collar-02", "Kito").animal_id
        _hear_collar_01(bridge, [(0, 305_000, 9_705_000)])
        bridge.flush_notifications(now=wall())
        bridge.take_off_collar(naserian, viewer=TECHNICIAN, removed_at=T + timedelta(minutes=90))
        bridge.fit_collar(kito, "collar-01", viewer=TECHNICIAN, fitted_at=T + timedelta(minutes=150))
        _hear_collar_01(bridge, [(180, 305_300, 9_705_000)], first_f_cnt=2)
        bridge.flush_notifications(now=wall())
        bridge.flush_notifications(now=wall(3600))
        rows = [n for n in bridge.notifications(viewer=ADMIN) if n.kind == "assignment"]

    # collar-01 into stock then onto Kito, and Kito's own collar-02 into stock
    assert sorted((n.payload["device_id"], n.payload["animal"] or "stock", n.state) for n in rows) == [
        ("collar-01", "Kito", "sent"), ("collar-01", "stock", "sent"), ("collar-02", "stock", "sent")]
    assert _assignments_of_collar_01(stand_in) == [("Naserian", "0001-01-01T00:00:00+00:00"),
                                                   ("Kito", (T + timedelta(minutes=150)).isoformat())]
    assert "Kito" in stand_in.drawn_on("collar-01", (T + timedelta(minutes=180)).isoformat())


def test_a_list_earthranger_refuses_is_sent_fix_by_fix_so_one_refused_collar_holds_up_no_other(
    sqlite_url, tmp_path, earthranger
):
    stand_in, url = earthranger
    stand_in.refuse_sources.add("collar-02")
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", er_url=url)) as bridge:
        fixes_of_two_collars(bridge, {"collar-01": [0, 60], "collar-02": [30]})
        report = bridge.flush_notifications(now=wall())
        failed = bridge.notifications(viewer=ADMIN, state="failed")

    assert (report.sent, report.failed) == (2, 1)
    assert [p["observations"] for p in stand_in.requests] == [3, 1, 1, 1]
    assert {key[0] for key in stand_in.observations} == {"collar-01"}
    (refused,) = failed
    assert refused.payload["device_id"] == "collar-02" and "HTTP 400" in refused.last_error


def test_duty_officer_is_not_told_nobody_answered_an_alert_a_ranger_acknowledged_while_the_sms_waited(
    sqlite_url, tmp_path, earthranger
):
    stand_in, url = earthranger
    gateway = SmsGateway(token=SMS_TOKEN, refuse_first=1)  # the gateway's mobile link is down at first
    routes = (
        er_route("raised", "escalated", "acknowledged") +
        DUTY_SMS_AT_HIGH
    )
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", er_url=url, sms_url=sms.url, routes=routes,
                                 er_extra="send_positions = false\n")
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.register_animal("collar-01", "Naserian")
            (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("collar_drop", seq=1), f_cnt=1)).alert_ids
            assert bridge.flush_notifications(now=wall()).sent == 1  # EarthRanger's event, at 200
            bridge.run_rules(now=T + timedelta(minutes=61))  # nobody answered a medium alert in 60 min
            first = bridge.flush_notifications(now=wall())  # EarthRanger patched; the SMS gateway refuses
            bridge.acknowledge_alert(alert_id, Viewer("ranger.amani", "ranger"))  # Amani takes it meanwhile
            later = bridge.flush_notifications(now=wall(120))
            history = [e.action for e in bridge.alert_events(alert_id, viewer=b.RANGER)]
            withdrawn = bridge.notifications(viewer=ADMIN, state="withdrawn")

    assert (first.sent, first.retried) == (1, 1)
    assert gateway.messages == []  # the duty officer's phone stays quiet: a ranger has it
    assert (later.sent, later.withdrawn, later.failed) == (1, 1, 0)  # EarthRanger told of the acknowledgement
    (sms_row,) = withdrawn
    assert sms_row.route == "duty-sms" and "acknowledged by ranger.amani" in sms_row.last_error
    assert "notification_withdrawn" in history
    (event,) = stand_in.events.values()
    assert event["state"] == "active" and stand_in.problems == []


def test_a_poaching_alert_resolved_while_the_sms_gateway_was_down_wakes_nobody_but_reaches_earthranger(
    sqlite_url, tmp_path, earthranger
):
    stand_in, url = earthranger
    gateway = SmsGateway(token=SMS_TOKEN, refuse_first=1)
    routes = (
        er_route("raised", "resolved") +
        DUTY_SMS_AT_HIGH
    )
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", er_url=url, sms_url=sms.url, routes=routes,
                                 er_extra="send_positions = false\n")
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            night_s = int(NIGHT.timestamp())
            uplink = b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=night_s), f_cnt=1)
            (alert_id,) = bridge.ingest_tts_uplink(uplink).alert_ids
            first = bridge.flush_notifications(now=wall())  # EarthRanger's event; the SMS gateway refuses
            bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "false_alarm", "herd at the dam")
            later = bridge.flush_notifications(now=wall(120))

    assert (first.sent, first.retried) == (1, 1)
    assert gateway.messages == []
    assert (later.sent, later.withdrawn) == (1, 1)
    (event,) = stand_in.events.values()
    assert (event["event_type"], event["state"]) == ("tembo_poaching_risk", "resolved")


def test_a_ranger_taken_off_the_duty_sms_gets_no_alert_queued_before_the_restart_that_removed_him(
    sqlite_url, tmp_path
):
    gateway = SmsGateway(token=SMS_TOKEN, refuse_first=1)
    duty = ('[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = [{phones}]\n'
            'types = ["poaching_risk"]\n')
    with serve_app_in_thread(gateway.app()) as sms:
        before = write_rules(tmp_path / "before.toml", sms_url=sms.url,
                             routes=duty.format(phones='"+254700000001", "+254700000002"'))
        with b.fresh_bridge(sqlite_url, rules_path=before) as bridge:
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
            first = bridge.flush_notifications(now=wall())  # the gateway refuses: both wait
        # Ranger 2 leaves the reserve: his number comes off the route and the bridge restarts.
        after = write_rules(tmp_path / "after.toml", sms_url=sms.url,
                            routes=duty.format(phones='"+254700000001"'))
        with b.fresh_bridge(sqlite_url, rules_path=after) as bridge:
            later = bridge.flush_notifications(now=wall(400))
            withdrawn = bridge.notifications(viewer=ADMIN, state="withdrawn")
            four_days_on = utc_now() + timedelta(days=4)
            bridge.clock = lambda: four_days_on  # old enough for the visitor kiosk to read the alert's history
            (alert,) = bridge.alerts(viewer=b.RANGER)
            kiosk_history = bridge.alert_events(alert.alert_id, viewer=Viewer("kiosk", "visitor"))

    assert (first.sent, first.retried) == (0, 1)
    assert [m["to"] for m in gateway.messages] == ["+254700000001"]
    assert (later.sent, later.withdrawn) == (1, 1)
    assert [(n.recipient, "no longer" in n.last_error) for n in withdrawn] == [("+254700000002", True)]
    assert "notification_withdrawn" in [e.action for e in kiosk_history]
    assert "+25470000000" not in json.dumps([e.detail for e in kiosk_history])  # nobody's number, in no field


@pytest.mark.parametrize("first_frame", ["status", "join", "mac_commands_only"])
def test_earthranger_and_the_control_room_hear_that_a_collar_reported_offline_is_heard_again(
    sqlite_url, tmp_path, earthranger, first_frame
):
    stand_in, url = earthranger
    receiver = WebhookReceiver(secret=HOOK_SECRET.encode())
    routes = (
        er_route("raised", "resolved", "auto_resolved") +
        '[[notify.routes]]\nname = "control-room"\nchannel = "webhook"\nactions = ["raised", "auto_resolved"]\n'
    )
    with serve_app_in_thread(receiver.app()) as hook:
        rules_path = write_rules(tmp_path / "r.toml", er_url=url, hook_url=hook.url, routes=routes,
                                 er_extra="send_positions = false\n")
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.register_animal("collar-01", "Naserian")
            bridge.ingest_tts_uplink(b.tts_uplink(b.settings(status_interval_s=3 * 3600), f_cnt=1, received_at=T))
            (alert_id,) = bridge.run_rules(now=T + timedelta(hours=6, minutes=16))  # two status reports missed
            assert bridge.flush_notifications(now=wall()).sent == 2
            back = T + timedelta(hours=8)  # the mast is up again: the collar's first frame comes through
            bridge.ingest_tts_uplink({
                "status": lambda: b.tts_uplink(b.status(time_s=int(back.timestamp())), f_cnt=2, received_at=back),
                "join": lambda: b.tts_join(received_at=back),  # back from a brown-out, it rejoins first
                "mac_commands_only": lambda: b.tts_uplink((0, bytes([0x03, 0x07])), f_cnt=2, received_at=back),
            }[first_frame]())
            later = bridge.flush_notifications(now=wall())
            closed = bridge.alert(alert_id, viewer=b.RANGER)

    assert (closed.state, closed.verdict) == ("resolved", "true")
    assert later.sent == 2
    (event,) = stand_in.events.values()
    assert (event["event_type"], event["state"]) == ("tembo_offline", "resolved") and stand_in.problems == []
    assert [(d["body"]["alert_type"], d["body"]["action"], d["body"]["state"]) for d in receiver.deliveries] == [
        ("offline", "raised", "new"), ("offline", "auto_resolved", "resolved")]


def test_a_poaching_alert_held_as_unconvincing_then_corroborated_wakes_the_duty_officer_before_any_escalation(
    sqlite_url, tmp_path, monkeypatch
):
    from sqlalchemy import select

    from lora_bridge.store.tables import Alert, AlertEvent

    dead = f"http://127.0.0.1:{free_port()}"
    routes = DUTY_SMS_AT_HIGH
    with b.fresh_bridge(sqlite_url, rules_path=write_rules(tmp_path / "r.toml", sms_url=dead, routes=routes)) as bridge:
        bridge.register_animal("collar-01", "Naserian")
        start = T - timedelta(minutes=20)  # fixes 20 and 10 minutes before the alert and 5 after: grazing
        for body in rb.fix_uplinks("collar-01", start, [(0, 305_000, 9_705_000), (10, 305_020, 9_705_000),
                                                        (25, 305_040, 9_705_000)]):
            bridge.ingest_tts_uplink(body)
        lat, lon = rb.lat_lon(305_020, 9_705_000)
        uplink = b.tts_uplink(b.alert("poaching_risk", seq=1, lat=lat, lon=lon), f_cnt=10)
        (alert_id,) = bridge.ingest_tts_uplink(uplink).alert_ids
        assert bridge.alert(alert_id, viewer=b.RANGER).priority == 0  # held: slow on both sides, nobody woken
        with bridge.db.write() as session:  # half an hour goes by
            for row in [*session.scalars(select(Alert)), *session.scalars(select(AlertEvent))]:
                if isinstance(row, Alert):
                    row.created_at -= timedelta(minutes=30)
                else:
                    row.at -= timedelta(minutes=30)
        for body in rb.fix_uplinks("collar-01", start, [(28, 305_640, 9_705_000)], first_f_cnt=4):
            bridge.ingest_tts_uplink(body)  # 600 m in 3 minutes: she ran after all
        assert bridge.alert(alert_id, viewer=b.RANGER).priority == 300
        in_a_minute = utc_now() + timedelta(minutes=1)
        monkeypatch.setattr("lora_bridge.service.utc_now", lambda: in_a_minute)
        bridge.run_rules()  # the timer, on the wall clock

        history = [e.action for e in bridge.alert_events(alert_id, viewer=b.RANGER)]
        duty = [n.payload["action"] for n in bridge.notifications(viewer=ADMIN) if n.route == "duty-sms"]

    assert "escalated" not in history  # nobody had been told yet: nobody failed to answer
    assert duty == ["raised"]


def test_earthranger_shows_a_poaching_alert_corroboration_let_go_as_high_and_the_duty_officer_is_told(
    sqlite_url, tmp_path, earthranger
):
    stand_in, url = earthranger
    gateway = SmsGateway(token=SMS_TOKEN)
    routes = (er_route() +
              DUTY_SMS_AT_HIGH)
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", er_url=url, sms_url=sms.url, routes=routes,
                                 er_extra="send_positions = false\n")
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.register_animal("collar-01", "Naserian")
            start = T - timedelta(minutes=20)  # grazing slowly before and after the alert: held at 0
            for body in rb.fix_uplinks("collar-01", start, [(0, 305_000, 9_705_000), (10, 305_020, 9_705_000),
                                                            (25, 305_040, 9_705_000)]):
                bridge.ingest_tts_uplink(body)
            lat, lon = rb.lat_lon(305_020, 9_705_000)
            (alert_id,) = bridge.ingest_tts_uplink(
                b.tts_uplink(b.alert("poaching_risk", seq=1, lat=lat, lon=lon), f_cnt=10)).alert_ids
            assert bridge.flush_notifications(now=wall()).sent == 1  # EarthRanger's event, at INFO
            for body in rb.fix_uplinks("collar-01", start, [(28, 305_640, 9_705_000)], first_f_cnt=4):
                bridge.ingest_tts_uplink(body)  # 600 m in 3 minutes: she ran after all
            bridge.run_rules(now=T + timedelta(minutes=9))
            bridge.flush_notifications(now=wall())
            bridge.run_rules(now=T + timedelta(minutes=9, seconds=5))  # the timer's next pass queues nothing more
            again = bridge.flush_notifications(now=wall())
            alert = bridge.alert(alert_id, viewer=b.RANGER)

    assert alert.priority == 300
    (event,) = stand_in.events.values()
    assert (event["priority"], event["title"]) == (300, "HIGH Possible poaching: Naserian (confidence 0.82)")
    assert [m["text"].splitlines()[0] for m in gateway.messages] == ["HIGH Possible poaching: Naserian (confidence 0.82)"]
    assert again.sent == 0 and stand_in.problems == []


def test_the_duty_officers_sms_goes_at_once_while_a_backlog_of_fixes_waits_for_an_unreachable_earthranger(
    sqlite_url, tmp_path
):
    gateway = SmsGateway(token=SMS_TOKEN)
    unreachable = f"http://127.0.0.1:{free_port()}"  # the reserve's internet link is down: EarthRanger too
    routes = DUTY_SMS_AT_HIGH
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", er_url=unreachable, sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            for n in range(50):  # a night of fixes from the herd, five to an uplink: 250 for EarthRanger
                device_id = f"collar-{n % 10:02d}"
                fixes = tuple((60 * k, -2.5 + 0.001 * n, 37.5 + 0.001 * k) for k in range(5))
                bridge.ingest_tts_uplink(b.tts_uplink(b.positions(time_s=b.T0_S + 300 * n, fixes=fixes),
                                                      device_id=device_id, f_cnt=n + 1))
            poaching = b.alert("poaching_risk", seq=1, time_s=int(NIGHT.timestamp()))
            bridge.ingest_tts_uplink(b.tts_uplink(poaching, device_id="collar-07", f_cnt=99))
            bridge.flush_notifications(now=wall())  # the timer's first pass after the alert

    assert [m["to"] for m in gateway.messages] == ["+254700000001"]


def test_the_duty_officer_gets_one_sms_when_a_backup_locks_the_store_just_as_the_gateway_takes_it(
    sqlite_url, tmp_path
):
    import sqlite3
    import threading

    gateway = SmsGateway(token=SMS_TOKEN)
    backup = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0.1, check_same_thread=False)

    def a_backup_locks_the_store_for_a_second() -> None:
        backup.execute("BEGIN IMMEDIATE")
        threading.Timer(1.0, backup.rollback).start()

    routes = DUTY_SMS_AT_HIGH
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path, sqlite_busy_timeout_ms=100) as bridge:
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=int(NIGHT.timestamp())),
                                                  f_cnt=1))
            gateway.on_send = a_backup_locks_the_store_for_a_second
            first = bridge.flush_notifications(now=wall())
            gateway.on_send = None
            time.sleep(1.5)  # the backup is done
            later = bridge.flush_notifications(now=wall(3600))  # long after the row's lease
            (row,) = bridge.notifications(viewer=ADMIN)
    backup.close()

    assert [m["to"] for m in gateway.messages] == ["+254700000001"]
    assert (first.sent, later.sent, row.state) == (1, 0, "sent")


def test_a_receiver_whose_url_carries_its_credentials_never_has_them_written_to_the_log(sqlite_url, tmp_path, caplog):
    import logging

    # The control room's receiver is down; its URL carries a password and a key, as many SMS gateways'.
    dead = f"http://ops:receiver-password@127.0.0.1:{free_port()}"
    routes = '[[notify.routes]]\nname = "control-room"\nchannel = "webhook"\n'
    rules_path = write_rules(tmp_path / "r.toml", hook_url=dead, routes=routes)
    with_key = (tmp_path / "r.toml").read_text().replace('/hook"', '/hook?api_key=gateway-key"')
    (tmp_path / "r.toml").write_text(with_key)
    with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge, caplog.at_level(logging.WARNING):
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
        report = bridge.flush_notifications(now=wall())
        kept = [n.last_error or "" for n in bridge.notifications(viewer=ADMIN)]
    logged = "\n".join(r.getMessage() for r in caplog.records)

    assert report.retried >= 1 and "notification not delivered" in logged
    assert "ops:***@127.0.0.1" in logged and "api_key=***" in logged
    for text in (logged, *kept):
        assert "receiver-password" not in text and "gateway-key" not in text


class BridgeDied(BaseException):
    """The bridge process ending (power cut, OOM kill) at a chosen point: nothing after it runs."""


def test_earthranger_shows_one_event_for_a_poaching_alert_when_the_bridge_died_just_after_creating_it(
    store_url, tmp_path, earthranger, monkeypatch
):
    # EarthRanger answered 201 for the poaching alert's event, and the bridge died before it wrote down
    # that it was sent. After the restart the outbox sends the alert again: the duty officer on
    # EarthRanger must still see one event for it (and the later steps must move that event).
    stand_in, url = earthranger
    alert_id, rules_path = _a_poaching_alert_whose_event_earthranger_made_as_the_bridge_died(
        store_url, tmp_path, url, monkeypatch, actions=("raised", "acknowledged")
    )
    assert len(stand_in.events) == 1  # EarthRanger has it

    _restart_and_acknowledge(store_url, rules_path, alert_id)

    assert stand_in.problems == []
    (event_id, event), = stand_in.events.items()
    assert [(r["method"], r["path"]) for r in stand_in.requests].count(("POST", "/api/v1.0/activity/events")) == 1
    assert (event["event_details"]["tembo_alert_id"], event["state"]) == (alert_id, "active")


def _a_poaching_alert_whose_event_earthranger_made_as_the_bridge_died(
    store_url, tmp_path, url, monkeypatch, actions: tuple[str, ...] = ("raised",), er_extra: str = ""
) -> tuple[int, str]:
    """A rules file routing `actions` to EarthRanger at url, and a poaching alert raised on a bridge that dies
    between EarthRanger's 201 for its event and marking the row sent; the alert's id and the rules file."""
    rules_path = write_rules(tmp_path / "r.toml", er_url=url, routes=er_route(*actions), er_extra=er_extra)
    with b.fresh_bridge(store_url, rules_path=rules_path) as bridge:
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1)).alert_ids
        _die_after_earthranger_creates_the_event(bridge, monkeypatch)
    return alert_id, rules_path


def _restart_and_acknowledge(store_url, rules_path, alert_id: int) -> None:
    """The bridge restarted past the row's lease sends its outbox, a ranger takes the alert, and the outbox
    is sent again: nothing is left waiting."""
    with b.fresh_bridge(store_url, rules_path=rules_path) as bridge:
        bridge.flush_notifications(now=wall(400))
        bridge.acknowledge_alert(alert_id, Viewer("ranger.amani", "ranger"))
        bridge.flush_notifications(now=wall(400))
        assert bridge.notifications(viewer=ADMIN, state="pending") == []


def _die_after_earthranger_creates_the_event(bridge, monkeypatch) -> None:
    """Send the outbox once, the bridge dying between EarthRanger's 201 and marking the row sent."""

    def die(*args, **kwargs):
        raise BridgeDied

    with monkeypatch.context() as patched:
        patched.setattr("lora_bridge.notify.outbox._sent", die)
        with pytest.raises(BridgeDied):
            bridge.flush_notifications(now=wall())


def _a_busy_night_on_earthranger(stand_in, events: int) -> None:
    """Events the site's rangers and its other integrations report after the alert, as EarthRanger keeps them."""
    for minute in range(1, events + 1):
        stand_in.events[f"ranger-report-{minute}"] = {
            "event_type": "carcass_rep", "title": "Carcass", "time": (T + timedelta(minutes=minute)).isoformat(),
            "priority": 200, "state": "new", "event_details": {"species": "elephant"},
        }


@pytest.mark.parametrize("page_style", ["page", "cursor"])
def test_earthranger_shows_one_event_for_a_retried_poaching_alert_when_a_page_of_events_came_in_since(
    sqlite_url, tmp_path, earthranger, monkeypatch, page_style
):
    # The bridge died after EarthRanger's 201 for the poaching alert's event; by the restart the site's
    # rangers had reported 150 events since (a busy night: a page and a half of EarthRanger's answer,
    # newest first), so the alert's event is on the second page. The site sits behind a reverse proxy and
    # writes its inside address into its `next` links. The duty officer must still see one event.
    stand_in, url = earthranger
    stand_in.page_style = page_style
    stand_in.link_root = "http://er-web.internal:8000"
    alert_id, rules_path = _a_poaching_alert_whose_event_earthranger_made_as_the_bridge_died(
        sqlite_url, tmp_path, url, monkeypatch, actions=("raised", "acknowledged")
    )
    _a_busy_night_on_earthranger(stand_in, 150)

    _restart_and_acknowledge(sqlite_url, rules_path, alert_id)

    assert stand_in.problems == []
    ours = [e for e in stand_in.events.values() if e["event_details"].get("tembo_alert_id") == alert_id]
    assert [e["state"] for e in ours] == ["active"]  # one event, moved by the ranger's acknowledgement
    pages = [r["query"] for r in stand_in.requests if r["method"] == "GET"]
    assert len(pages) == 2 and (page_style in pages[1])


@pytest.mark.parametrize("page_style", ["broken", "missing"])
def test_a_retried_poaching_alert_waits_rather_than_doubles_its_earthranger_event_when_the_list_cannot_be_paged(
    sqlite_url, tmp_path, earthranger, monkeypatch, page_style
):
    # As above, but the site's answer cannot be read to its end: its `next` names no page (or it gives
    # none, though its `count` says 150 events came in since). Tembo cannot tell whether the alert's event
    # exists: it waits and tries again rather than give the rangers a second one, and finds it once the
    # site pages properly again.
    stand_in, url = earthranger
    alert_id, rules_path = _a_poaching_alert_whose_event_earthranger_made_as_the_bridge_died(
        sqlite_url, tmp_path, url, monkeypatch
    )
    _a_busy_night_on_earthranger(stand_in, 150)
    stand_in.page_style = page_style

    with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
        assert bridge.flush_notifications(now=wall(400)).retried == 1
        (waiting,) = [n for n in bridge.notifications(viewer=ADMIN, state="pending") if n.alert_id == alert_id]
        assert "EarthRanger" in waiting.last_error
        stand_in.page_style = "page"
        bridge.flush_notifications(now=wall(400 + 130))
        assert [n.state for n in bridge.notifications(viewer=ADMIN) if n.alert_id == alert_id] == ["sent"]

    ours = [e for e in stand_in.events.values() if e["event_details"].get("tembo_alert_id") == alert_id]
    assert len(ours) == 1
    assert [(r["method"], r["path"]) for r in stand_in.requests].count(("POST", "/api/v1.0/activity/events")) == 1


@pytest.mark.parametrize("status", [429, 503], ids=["throttled", "maintenance"])
def test_a_poaching_alert_reaches_earthranger_after_the_hour_earthranger_asked_tembo_to_wait(
    sqlite_url, tmp_path, earthranger, status
):
    # EarthRanger throttles the reserve's account (429, `Retry-After: 3600`) or is in its maintenance hour
    # (503, `Retry-After` an HTTP-date an hour ahead) when a poaching alert is raised. Tembo waits the hour
    # it was asked to wait, rather than spend its tries every few minutes and give the alert up (failed)
    # a quarter of an hour before EarthRanger is back: the duty officer's EarthRanger gets the event.
    stand_in, url = earthranger
    an_hour = "3600" if status == 429 else email.utils.format_datetime(utc_now() + timedelta(hours=1), usegmt=True)
    stand_in.busy = (status, an_hour)
    routes = er_route("raised")
    rules_path = write_rules(tmp_path / "r.toml", er_url=url, routes=routes, er_extra="send_positions = false\n")
    with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1)).alert_ids
        for seconds in (0, 61, 200, 500, 1000, 2000):  # the outbox's passes during EarthRanger's hour
            bridge.flush_notifications(now=wall(seconds))
        assert [r["busy"] for r in stand_in.requests] == [status]  # asked once, then left alone
        stand_in.busy = None
        bridge.flush_notifications(now=wall(3601))
        assert [n.state for n in bridge.notifications(viewer=ADMIN) if n.alert_id == alert_id] == ["sent"]

    (event,) = stand_in.events.values()
    assert event["event_details"]["tembo_alert_id"] == alert_id


def _naserians_mortality_at_night_texted_and_mailed(sqlite_url, tmp_path, duty_extra: str = "") -> tuple[list, list]:
    """A mortality alert of Naserian's collar at NIGHT sent to the duty officer's phone (`DUTY_SMS` and
    `duty_extra`) and the warden's mail; what the SMS gateway and the mail server received."""
    gateway = SmsGateway(token=SMS_TOKEN)
    smtp_port = free_port()
    routes = (DUTY_SMS + duty_extra +
              '[[notify.routes]]\nname = "warden-mail"\nchannel = "email"\nto = ["warden@reserve.example"]\n')
    with serve_app_in_thread(gateway.app()) as sms, SmtpStandIn(smtp_port) as smtp:
        rules_path = write_rules(tmp_path / "r.toml", smtp_port=smtp_port, sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.register_animal("collar-01", "Naserian")
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1, time_s=int(NIGHT.timestamp())), f_cnt=1))
            assert bridge.flush_notifications(now=wall()).sent == 2
    return gateway.messages, smtp.messages


def test_the_duty_officers_night_sms_and_mail_give_the_alerts_time_in_the_reserves_own_time(sqlite_url, tmp_path):
    # A mortality alert at 23:00 UTC wakes the duty officer in an East African reserve: it is two in the
    # morning there (the collar's local time, the one its night is reckoned by). Her phone must say so,
    # not leave her to add three hours to a UTC stamp half asleep.
    (text,), (mail,) = _naserians_mortality_at_night_texted_and_mailed(sqlite_url, tmp_path, 'hours = "night"\n')

    assert NIGHT.isoformat() == "2026-03-01T23:00:00+00:00"
    assert "\nat 2026-03-02 02:00 UTC+03:00 (" in text["text"]
    body = email.message_from_bytes(mail["data"]).get_payload()
    assert "\nat 2026-03-02 02:00 UTC+03:00 (" in body


def test_the_nights_poaching_alerts_reach_earthranger_once_the_expired_token_is_renewed(sqlite_url, tmp_path, earthranger):
    # The EarthRanger service account's token expired: EarthRanger answers 401 to Tembo. A poaching alert
    # raised then must wait for the token, not be failed for good at the first 401, so that when the warden
    # on call renews it (new settings, bridge restarted) while the alert's tries last, the event reaches
    # EarthRanger.
    stand_in, url = earthranger
    stand_in.token = "renewed-service-token"  # EarthRanger no longer takes Tembo's old token
    routes = er_route("raised")
    expired = write_rules(tmp_path / "expired.toml", er_url=url, routes=routes, er_extra="send_positions = false\n")
    with b.fresh_bridge(sqlite_url, rules_path=expired) as bridge:
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1)).alert_ids
        assert bridge.flush_notifications(now=wall()).failed == 0
        (waiting,) = bridge.notifications(viewer=ADMIN, state="pending")
        assert "401" in waiting.last_error and "renew the token" in waiting.last_error

    renewed = write_rules(tmp_path / "renewed.toml", er_url=url, routes=routes, er_token="renewed-service-token",
                          er_extra="send_positions = false\n")
    with b.fresh_bridge(sqlite_url, rules_path=renewed) as bridge:
        bridge.flush_notifications(now=wall(61))
        assert [n.state for n in bridge.notifications(viewer=ADMIN)] == ["sent"]

    (event,) = stand_in.events.values()
    assert event["event_details"]["tembo_alert_id"] == alert_id


def test_the_duty_officers_sms_says_which_ranger_took_the_alert_and_her_verdict(sqlite_url, tmp_path):
    # The duty officer follows a poaching alert by SMS: raised, then taken, then resolved. "[acknowledged]"
    # alone does not tell her whom to call; the message names the ranger, and the resolution her verdict.
    gateway = SmsGateway(token=SMS_TOKEN)
    routes = (DUTY_SMS +
              'actions = ["raised", "acknowledged", "resolved"]\n')
    with _bridge_texting(sqlite_url, tmp_path, gateway, routes) as bridge:
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1)).alert_ids
        bridge.flush_notifications(now=wall())
        bridge.acknowledge_alert(alert_id, Viewer("ranger.amani", "ranger"))
        bridge.flush_notifications(now=wall())
        bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "false_alarm", "herd at the dam")
        bridge.flush_notifications(now=wall())

    raised, taken, resolved = (m["text"].split("\n") for m in gateway.messages)
    assert taken[0].endswith("[acknowledged]") and taken[1] == "taken by ranger.amani"
    assert resolved[0].endswith("[resolved]") and resolved[1] == "resolved by ranger.amani: false alarm"
    assert raised[1].startswith("at ")


def test_the_duty_officers_sms_says_a_poaching_alert_closed_because_its_collar_was_taken_off(sqlite_url, tmp_path):
    # The duty officer was woken for a poaching risk; the technician then takes the collar off Naserian (it
    # had slipped, she is fine): the close says why, not that "its condition cleared".
    gateway = SmsGateway(token=SMS_TOKEN)
    routes = (DUTY_SMS +
              'actions = ["raised", "auto_resolved"]\n')
    with _bridge_texting(sqlite_url, tmp_path, gateway, routes) as bridge:
        naserian = bridge.register_animal("collar-01", "Naserian", sex="female").animal_id
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
        bridge.flush_notifications(now=wall())
        bridge.take_off_collar(naserian, viewer=Viewer("tito", "field_technician"))
        bridge.flush_notifications(now=wall())

    _, closed = (m["text"].split("\n") for m in gateway.messages)
    assert closed[0].startswith("HIGH Possible poaching") and closed[0].endswith("[auto_resolved]")
    assert closed[1] == "closed by Tembo: collar taken off Naserian: nobody wears it"


def test_a_retried_poaching_alert_is_not_given_up_when_earthrangers_list_shrinks_while_it_is_read(
    sqlite_url, tmp_path, earthranger, monkeypatch
):
    # As the bridge reads the second page of EarthRanger's events, an EarthRanger admin purges a training
    # exercise's 60 reports: the page its `next` named is gone (404 "Invalid page."). The list changed,
    # not the alert: the row is tried again and finds the event, rather than be failed for good and leave
    # the event "new" on EarthRanger whatever the rangers do with the alert.
    stand_in, url = earthranger
    alert_id, rules_path = _a_poaching_alert_whose_event_earthranger_made_as_the_bridge_died(
        sqlite_url, tmp_path, url, monkeypatch, er_extra="send_positions = false\n"
    )
    _a_busy_night_on_earthranger(stand_in, 150)

    def purge_the_exercise() -> None:
        stand_in.after_page = None
        for minute in range(1, 61):
            del stand_in.events[f"ranger-report-{minute}"]

    stand_in.after_page = purge_the_exercise
    with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
        assert bridge.flush_notifications(now=wall(400)).failed == 0
        bridge.flush_notifications(now=wall(400 + 130))
        assert [n.state for n in bridge.notifications(viewer=ADMIN)] == ["sent"]

    ours = [e for e in stand_in.events.values() if e["event_details"].get("tembo_alert_id") == alert_id]
    assert len(ours) == 1


def test_the_duty_officers_sms_of_a_collars_mortality_alert_fits_one_text_message(sqlite_url, tmp_path):
    # A basic phone on a weak network at night may show a two-part SMS as two messages, or one half alone.
    # The alert (what, which animal, when, where, which collar) fits one message; the e-mail keeps the
    # rule's note for whoever wants it.
    (text,), (mail,) = _naserians_mortality_at_night_texted_and_mailed(sqlite_url, tmp_path)

    assert fits_one_sms(text["text"]), text["text"]
    first, when, which = text["text"].split("\n")
    assert first.startswith("HIGH Possible mortality: Naserian") and when.startswith("at 2026-03-02 02:00")
    assert which == "alert #1 collar collar-01"
    assert "\nrule: " in email.message_from_bytes(mail["data"]).get_payload()


def test_every_alert_type_tembo_raises_reads_in_a_rangers_words_on_the_phone_and_the_dashboard():
    """The collar's types and the server rules' own: none reaches a ranger as its id (`battery_critical`)."""
    from collar_firmware import codec
    from lora_bridge.domain import alerts, rules, rules_engine, rules_visits
    from lora_bridge.notify.channels import title_of
    from ranger_dashboard import views

    raised = {*codec.ALERT_TYPES, rules.LOW_BATTERY, rules.OFFLINE, rules.BATTERY_FORECAST, rules_engine.IMMOBILITY,
              rules_visits.GEOFENCE_EXIT, rules_visits.GEOFENCE_ENTER, rules_visits.GEOFENCE_FARMLAND}
    unlabelled = sorted(raised - set(alerts.ALERT_TYPE_LABELS))
    assert unlabelled == []
    for alert_type in sorted(raised):
        label = alerts.ALERT_TYPE_LABELS[alert_type]
        title = title_of({"priority": 300, "alert_type": alert_type, "animal": "Naserian", "device_id": "collar-01"})
        assert title == f"HIGH {label}: Naserian" and views.alert_type_label(alert_type) == label


def _fail_every_try(bridge, deadline_passes: int = 60) -> None:
    """Run the outbox pass after pass, each an hour later, until no row is left to try (every try spent)."""
    for hour in range(1, deadline_passes):
        bridge.flush_notifications(now=wall(3600 * hour))
        if not bridge.notifications(viewer=ADMIN, state="pending"):
            return
    raise AssertionError("rows still pending after every pass")


def test_the_nights_alerts_failed_on_an_expired_token_reach_earthranger_and_the_duty_officer_once_the_admin_retries(
    sqlite_url, tmp_path, earthranger, monkeypatch, capsys
):
    # EarthRanger's token and the SMS gateway's stayed refused all night: every try of the night's two
    # poaching alerts was spent and they were failed for good. In the morning a ranger has resolved the
    # second (a false alarm), the warden renews the tokens and runs `tembo notifications retry`: the first
    # alert reaches EarthRanger and the duty officer; the second reaches EarthRanger's record, but the duty
    # officer is not woken for an alert already closed.
    from tembo.cli import main

    stand_in, url = earthranger
    stand_in.token = "renewed-service-token"
    gateway = SmsGateway(token="renewed-sms-token")
    routes = (er_route("raised") +
              DUTY_SMS_AT_HIGH +
              'actions = ["raised"]\n')
    with serve_app_in_thread(gateway.app()) as sms:
        expired = write_rules(tmp_path / "expired.toml", er_url=url, sms_url=sms.url, routes=routes,
                              er_extra="send_positions = false\n")
        with b.fresh_bridge(sqlite_url, rules_path=expired) as bridge:
            night_s = int(NIGHT.timestamp())
            (kept,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=night_s),
                                                            f_cnt=1)).alert_ids
            (closed,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=night_s),
                                                              device_id="collar-02", f_cnt=1)).alert_ids
            _fail_every_try(bridge)
            assert [n.state for n in bridge.notifications(viewer=ADMIN)] == ["failed"] * 4
            bridge.resolve_alert(closed, b.RANGER, "false_alarm", "herd at the dam")
            with pytest.raises(Forbidden):
                bridge.retry_notifications(viewer=b.RANGER)

        gateway.token = SMS_TOKEN  # the gateway's account paid up
        renewed = write_rules(tmp_path / "renewed.toml", er_url=url, sms_url=sms.url, routes=routes,
                              er_token="renewed-service-token", er_extra="send_positions = false\n")
        monkeypatch.setenv("TEMBO_RULES_PATH", renewed)
        assert main(["notifications", "list", "--failed", "--database-url", sqlite_url]) == 0
        listed = capsys.readouterr().out
        assert "Possible poaching" in listed and "renew the token" in listed
        assert main(["notifications", "retry", "--since", "2h", "--database-url", sqlite_url]) == 0
        retried = json.loads(capsys.readouterr().out)
        assert main(["notifications", "retry", "--since", "last night", "--database-url", sqlite_url]) == 2
        assert capsys.readouterr().err.count("\n") == 1

        with b.fresh_bridge(sqlite_url, rules_path=renewed) as bridge:
            bridge.flush_notifications(now=wall())
            states = {(n.alert_id, n.channel): n.state for n in bridge.notifications(viewer=ADMIN)}
            history = [(e.action, e.actor) for e in bridge.alert_events(kept, viewer=ADMIN)]
            withdrawn = [e.detail for e in bridge.alert_events(closed, viewer=ADMIN) if e.action == "notification_withdrawn"]

    assert (len(retried["requeued"]), len(retried["withdrawn"])) == (3, 1)
    assert states == {(kept, "earthranger"): "sent", (kept, "sms"): "sent", (closed, "earthranger"): "sent",
                      (closed, "sms"): "withdrawn"}
    assert sorted(e["event_details"]["tembo_alert_id"] for e in stand_in.events.values()) == sorted([kept, closed])
    (text,) = gateway.messages
    assert text["text"].startswith("HIGH Possible poaching: ") and f"alert #{kept} " in text["text"]
    assert sum(1 for action, actor in history
               if action == "notification_requeued" and actor.startswith("console:")) == 2
    assert "resolved" in withdrawn[0]["reason"]


def test_a_retried_poaching_alert_waits_when_earthranger_refuses_the_look_up_of_its_event_and_goes_once_it_reads_it(
    sqlite_url, tmp_path, earthranger, monkeypatch
):
    # The bridge died after EarthRanger's 201 for the poaching alert's event. When the row is tried again
    # EarthRanger (mid-upgrade) answers the look-up of that event 400, "Invalid filter expression": a
    # refusal of Tembo's look-up, not of the alert. The row waits for a look-up EarthRanger reads, rather
    # than be failed for good (the warden on EarthRanger never seeing the alert move) or create a second event.
    stand_in, url = earthranger
    alert_id, rules_path = _a_poaching_alert_whose_event_earthranger_made_as_the_bridge_died(
        sqlite_url, tmp_path, url, monkeypatch, actions=("raised", "acknowledged"), er_extra="send_positions = false\n"
    )

    stand_in.refuse_lookups = 1
    with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:  # the restart, past the row's lease
        refused = bridge.flush_notifications(now=wall(400))
        (waiting,) = bridge.notifications(viewer=ADMIN, state="pending")
        bridge.flush_notifications(now=wall(400 + 3600))  # the row's next try, past its doubled wait
        bridge.acknowledge_alert(alert_id, b.RANGER)
        bridge.flush_notifications(now=wall(400 + 3600))
        assert bridge.notifications(viewer=ADMIN, state="pending") == []

    assert (refused.retried, refused.failed) == (1, 0)
    assert "400" in waiting.last_error and "look-up" in waiting.last_error
    (event,) = stand_in.events.values()
    assert (event["event_details"]["tembo_alert_id"], event["state"]) == (alert_id, "active")
    assert stand_in.problems == []


def test_a_requeued_sms_gets_every_try_again_from_its_first_wait_and_its_alert_keeps_the_tries_it_had_spent(
    sqlite_url, tmp_path
):
    # The SMS gateway's mobile link was down all night: the poaching alert's SMS spent its five tries and
    # failed. The admin requeues it in the morning while the link is still flaky: it gets five tries again,
    # the second a minute after the first (not two), and its alert's history keeps the night's five tries
    # and who queued it again.
    gateway = SmsGateway(token=SMS_TOKEN, refuse_first=1000)
    routes = DUTY_SMS
    with _bridge_texting(sqlite_url, tmp_path, gateway, routes) as bridge:
        (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1)).alert_ids
        _fail_every_try(bridge)
        tries_at_night = gateway.refused
        report = bridge.retry_notifications(viewer=ADMIN)
        first_try = wall()
        assert bridge.flush_notifications(now=first_try).retried == 1
        assert bridge.flush_notifications(now=first_try + timedelta(seconds=90)).retried == 1
        _fail_every_try(bridge)
        tries_in_the_morning = gateway.refused - tries_at_night
        (row,) = bridge.notifications(viewer=ADMIN)
        history = [(e.actor, e.detail) for e in bridge.alert_events(alert_id, viewer=ADMIN)
                   if e.action == "notification_requeued"]

    assert tries_at_night == 5 and len(report.requeued) == 1
    assert tries_in_the_morning == 5 and (row.state, row.attempts, row.tries_total) == ("failed", 5, 10)
    ((actor, detail),) = history
    assert actor == "admin.neema" and detail["tries"] == 5 and "503" in detail["failed_with"]
    assert detail["tries_total"] == 5


def test_the_nights_fixes_refused_by_earthranger_fill_its_tracks_once_the_admin_retries(
    sqlite_url, tmp_path, earthranger
):
    # EarthRanger refused Tembo's expired token all night: the collars' fixes failed with the alerts. Once
    # the token is renewed, `retry` sends the fixes too, so the animal's track on EarthRanger has no hole.
    stand_in, url = earthranger
    stand_in.token = "renewed-service-token"
    routes = er_route("raised")
    expired = write_rules(tmp_path / "expired.toml", er_url=url, routes=routes)
    renewed = write_rules(tmp_path / "renewed.toml", er_url=url, routes=routes, er_token="renewed-service-token")
    with b.fresh_bridge(sqlite_url, rules_path=expired) as bridge:
        bridge.register_animal("collar-01", "Naserian")
        for body in rb.fix_uplinks("collar-01", T, [(0, 305_000, 9_705_000), (10, 305_020, 9_705_000),
                                                      (20, 305_040, 9_705_010)]):
            bridge.ingest_tts_uplink(body)
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), device_id="collar-01", f_cnt=9))
        _fail_every_try(bridge)
        failed = bridge.notifications(viewer=ADMIN, state="failed")
    with b.fresh_bridge(sqlite_url, rules_path=renewed) as bridge:
        report = bridge.retry_notifications(viewer=ADMIN, channel="earthranger")
        drained = bridge.flush_notifications(now=wall())
        left = [n for n in bridge.notifications(viewer=ADMIN) if n.state != "sent"]

    fixes = [n for n in failed if n.kind == "position"]
    assert [n.kind for n in failed if n.kind != "position"] == ["alert"] and len(fixes) >= 3
    assert len(report.requeued) == len(failed) and drained.sent == len(failed) and left == []
    recorded = {o["recorded_at"] for o in stand_in.observations.values()}
    assert recorded == {n.payload["time"] for n in fixes}


def test_a_requeued_poaching_alert_whose_event_an_earlier_try_created_shows_once_on_earthranger(
    sqlite_url, tmp_path, earthranger, monkeypatch
):
    # The bridge died after EarthRanger's 201 for the poaching alert's event; then the site's token
    # expired and the row's every try was refused. The admin renews it and retries: the requeued row, on a
    # fresh budget, still knows it was tried and finds the event rather than create a second one.
    stand_in, url = earthranger
    routes = er_route("raised")
    alert_id, first = _a_poaching_alert_whose_event_earthranger_made_as_the_bridge_died(
        sqlite_url, tmp_path, url, monkeypatch, er_extra="send_positions = false\n"
    )
    stand_in.token = "renewed-service-token"
    with b.fresh_bridge(sqlite_url, rules_path=first) as bridge:
        _fail_every_try(bridge)
    renewed = write_rules(tmp_path / "renewed.toml", er_url=url, routes=routes, er_token="renewed-service-token",
                          er_extra="send_positions = false\n")
    with b.fresh_bridge(sqlite_url, rules_path=renewed) as bridge:
        assert len(bridge.retry_notifications(viewer=ADMIN).requeued) == 1
        assert bridge.flush_notifications(now=wall()).sent == 1

    ours = [e for e in stand_in.events.values() if e["event_details"].get("tembo_alert_id") == alert_id]
    assert len(ours) == 1


def test_duty_officers_numbers_typed_with_spaces_dashes_or_00_each_get_the_alert_once_in_e164(sqlite_url, tmp_path):
    # The warden copied the duty roster's numbers as people write them; one officer is on it twice, in
    # two spellings. Each phone gets the alert once, addressed as the gateway expects (E.164); a national
    # number without its country code is still refused, by the words it was typed with.
    gateway = SmsGateway(token=SMS_TOKEN)
    roster = '["+254 700 000 001", "+254-700-000-002", "00255 (0)754 000 003", "+254700000001"]'
    routes = f'[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = {roster}\n'
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
            assert bridge.flush_notifications(now=wall()).sent == 3
        national = write_rules(tmp_path / "n.toml", sms_url=sms.url,
                               routes='[[notify.routes]]\nname = "d"\nchannel = "sms"\nto = ["0700 000 004"]\n')

    assert sorted(m["to"] for m in gateway.messages) == ["+254700000001", "+254700000002", "+255754000003"]
    with pytest.raises(InvalidRequest, match="'0700 000 004' is not an international number"):
        read_rules_file(str(national))


def test_the_duty_officer_is_not_told_an_alert_was_closed_when_he_was_never_told_it_was_raised(
    sqlite_url, tmp_path
):
    # The gateway's mobile link dropped as a poaching alert came in; a ranger at the gate closed it as a
    # false alarm before the link was back. The duty officer hears nothing of it: neither its raise nor its
    # closing. A second alert, raised once the link was back, reaches him raised and closed.
    gateway = SmsGateway(token=SMS_TOKEN, refuse_first=1)
    routes = (DUTY_SMS +
              'actions = ["raised", "resolved", "auto_resolved"]\n')
    with _bridge_texting(sqlite_url, tmp_path, gateway, routes) as bridge:
        night_s = int(NIGHT.timestamp())
        (closed,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=night_s),
                                                          f_cnt=1)).alert_ids
        assert bridge.flush_notifications(now=wall()).retried == 1
        bridge.resolve_alert(closed, b.RANGER, "false_alarm", "herd at the dam")
        quiet = bridge.flush_notifications(now=wall(120))
        (told,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=night_s),
                                                        device_id="collar-02", f_cnt=1)).alert_ids
        bridge.flush_notifications(now=wall(120))
        bridge.resolve_alert(told, b.RANGER, "true", "snare found")
        bridge.flush_notifications(now=wall(120))

    assert (quiet.sent, quiet.withdrawn) == (0, 2)
    assert [(f"alert #{closed} " in m["text"], f"alert #{told}" in m["text"]) for m in gateway.messages] == [
        (False, True), (False, True)]
    assert "[resolved]" in gateway.messages[1]["text"]


def test_the_stork_teams_sms_gives_the_hour_its_clocks_show_the_night_summer_time_starts(sqlite_url, tmp_path):
    # A white stork study in Germany: the team's duty phone gets alerts in Europe/Berlin time. On 29 March
    # 2026 the clocks go from 02:00 to 03:00: an alert half an hour before reads 01:30, one half an hour
    # after 03:30 (a fixed offset would have said 02:30, an hour the team's clocks never showed).
    gateway = SmsGateway(token=SMS_TOKEN)
    routes = ('[[notify.routes]]\nname = "stork-duty"\nchannel = "sms"\nto = ["+4915100000001"]\n'
              'timezone = "Europe/Berlin"\n')
    change = datetime.fromisoformat("2026-03-29T01:00:00+00:00")
    with _bridge_texting(sqlite_url, tmp_path, gateway, routes) as bridge:
        for n, minutes in enumerate((-30, 30)):
            at_s = int((change + timedelta(minutes=minutes)).timestamp())
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1, time_s=at_s),
                                                  device_id=f"collar-0{n + 1}", f_cnt=1))
        assert bridge.flush_notifications(now=wall()).sent == 2

    times = sorted(line for m in gateway.messages for line in m["text"].split("\n") if line.startswith("at "))
    assert [t.split(" (")[0] for t in times] == ["at 2026-03-29 01:30 UTC+01:00", "at 2026-03-29 03:30 UTC+02:00"]


def test_a_ranger_the_warden_adds_to_the_duty_sms_gets_the_next_alert_without_a_restart(sqlite_url, tmp_path):
    # The night shift changes: the warden adds Neema's number to the duty route in the rules file while
    # the bridge runs. The next alert is queued for her too, by the bridge that had read the file before.
    gateway = SmsGateway(token=SMS_TOKEN)
    route = '[[notify.routes]]\nname = "duty-sms"\nchannel = "sms"\nto = [{}]\n'
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = tmp_path / "r.toml"
        write_rules(rules_path, sms_url=sms.url, routes=route.format('"+254700000001"'))
        with b.fresh_bridge(sqlite_url, rules_path=str(rules_path)) as bridge:
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
            write_rules(rules_path, sms_url=sms.url, routes=route.format('"+254700000001", "+254700000002"'))
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), device_id="collar-02", f_cnt=1))
            queued = [(n.alert_id, n.recipient) for n in bridge.notifications(viewer=ADMIN)]
            assert bridge.flush_notifications(now=wall()).sent == 3

    assert [recipient for _, recipient in queued] == ["+254700000001", "+254700000001", "+254700000002"]


def test_a_rules_file_broken_by_an_edit_keeps_the_running_bridge_sending_with_the_settings_it_had(
    sqlite_url, tmp_path, caplog
):
    # The warden's edit of the rules file left a typo: the running bridge says so in its log and goes on
    # with the settings it had, so the night's alerts still reach the duty officer.
    gateway = SmsGateway(token=SMS_TOKEN)
    routes = DUTY_SMS
    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = tmp_path / "r.toml"
        write_rules(rules_path, sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=str(rules_path)) as bridge:
            rules_path.write_text(rules_path.read_text().replace('channel = "sms"', 'chanel = "sms"'))
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
            assert bridge.flush_notifications(now=wall()).sent == 1

    assert len(gateway.messages) == 1
    assert any(f"rules file {rules_path} not applied" in r.getMessage() and "chanel" in r.getMessage()
               for r in caplog.records)


def test_an_sms_whose_every_send_the_bridge_dies_in_stops_after_its_tries_and_shows_every_try_after_a_retry(
    sqlite_url, tmp_path, monkeypatch
):
    # The SMS gateway takes the poaching alert's text, and each time the bridge dies before it writes that
    # down (a sender that brings the process down with it). After each restart the row is tried again: five
    # tries in its round, then it is failed with the reason, not tried at every start for ever. The admin
    # retries it in the morning: a new round of tries, and the outbox still shows every try it was given.
    gateway = SmsGateway(token=SMS_TOKEN)
    routes = DUTY_SMS

    def die(*args, **kwargs):
        raise BridgeDied

    with serve_app_in_thread(gateway.app()) as sms:
        rules_path = write_rules(tmp_path / "r.toml", sms_url=sms.url, routes=routes)
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), f_cnt=1))
        for restart in range(1, 9):  # each start, past the last try's lease
            with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge, monkeypatch.context() as patched:
                patched.setattr("lora_bridge.notify.outbox._sent", die)
                try:
                    bridge.flush_notifications(now=wall(400 * restart))
                except BridgeDied:
                    pass
        with b.fresh_bridge(sqlite_url, rules_path=rules_path) as bridge:
            bridge.flush_notifications(now=wall(400 * 9))
            (night,) = bridge.notifications(viewer=ADMIN)
            bridge.retry_notifications(viewer=ADMIN)
            bridge.flush_notifications(now=wall(400 * 10))  # the gateway takes it, and the bridge lives
            (morning,) = bridge.notifications(viewer=ADMIN)

    assert len(gateway.messages) == 6  # five in the night's round, one in the morning's
    assert (night.state, night.attempts, night.tries_total) == ("failed", 5, 5)
    assert "cut short" in night.last_error
    assert (morning.state, morning.attempts, morning.tries_total) == ("sent", 1, 6)
