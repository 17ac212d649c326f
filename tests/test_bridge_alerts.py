"""Alerts as rangers work them: raised by collars and server rules, acknowledged, resolved with a verdict."""

from __future__ import annotations

import importlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import bridge_builders as b
import pytest
from sqlalchemy import event, text

from lora_bridge.access import Viewer
from lora_bridge.domain import alerts
from lora_bridge.errors import Forbidden, InvalidTransition, InvalidVerdict, UnknownAlert
from lora_bridge.store.utc import utc_now


@pytest.fixture
def bridge(store_url):
    with b.fresh_bridge(store_url) as bridge:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        yield bridge


def collar_alert(bridge, alert_type="mortality", seq=1, f_cnt=1, time_s=b.T0_S):
    return bridge.ingest_tts_uplink(b.tts_uplink(b.alert(alert_type, seq=seq, time_s=time_s), f_cnt=f_cnt))


def until_it_waits_for_the_store(bridge, step: Future, within_s: float = 60.0) -> None:
    """Return once the other thread's step waits for this thread's open write: on SQLite for its turn in the
    bridge's writer queue, on PostgreSQL for a lock (the alert's row). A step that ends first did not wait for
    the write it races, which is what these tests look for; so does one still not waiting after within_s."""
    writers = bridge.db._writers  # the store's queue of this process's SQLite writers; None on PostgreSQL
    deadline = time.monotonic() + within_s
    while True:
        if writers is not None:
            waits = writers.waiting() > 0
        else:
            with bridge.db.read() as session:
                waits = session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                            "AND wait_event_type = 'Lock'")) > 0
        if waits:
            return
        assert not step.done(), f"the step ended without waiting for the open write: {step.exception()!r}"
        assert time.monotonic() < deadline, f"the step was not waiting for the store after {within_s} s"
        threading.Event().wait(0.005)


def test_ranger_acknowledges_then_resolves_mortality_alert_with_verdict(bridge):
    (alert_id,) = collar_alert(bridge).alert_ids

    acked = bridge.acknowledge_alert(alert_id, Viewer("ranger.amani", "ranger"))
    resolved = bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "true", note="carcass found, tusks intact")

    assert (acked.state, acked.acknowledged_by) == ("acknowledged", "ranger.amani")
    assert (resolved.state, resolved.verdict, resolved.resolved_by) == ("resolved", "true", "ranger.amani")
    assert bridge.open_alerts(viewer=b.RANGER) == []
    history = [(e.actor, e.action) for e in bridge.alert_events(alert_id, viewer=b.RANGER)]
    assert history == [
        ("collar-01", "raised"),
        ("tembo", "ack_queued"),
        ("tembo", "corroborated"),  # weighed against what the bridge knows (no other data: the prior)
        ("ranger.amani", "acknowledged"),
        ("ranger.amani", "resolved"),
    ]
    assert bridge.alert_events(alert_id, viewer=b.RANGER)[-1].detail["note"] == "carcass found, tusks intact"


def test_new_alert_can_be_resolved_as_false_alarm_without_acknowledging(bridge):
    (alert_id,) = collar_alert(bridge, "collar_drop").alert_ids

    resolved = bridge.resolve_alert(alert_id, Viewer("ranger.joseph", "ranger"), "false_alarm")

    assert resolved.state == "resolved" and resolved.acknowledged_by is None
    assert bridge.alert_verdicts()["collar_drop"] == {"true": 0, "false_alarm": 1, "unknown": 0, "precision": 0.0}


def test_workflow_steps_out_of_order_are_refused(bridge):
    (alert_id,) = collar_alert(bridge).alert_ids
    bridge.acknowledge_alert(alert_id, Viewer("ranger.amani", "ranger"))

    with pytest.raises(InvalidTransition):
        bridge.acknowledge_alert(alert_id, Viewer("ranger.amani", "ranger"))
    with pytest.raises(InvalidVerdict):
        bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "maybe")
    bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "unknown")
    with pytest.raises(InvalidTransition):
        bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "true")
    with pytest.raises(UnknownAlert):
        bridge.acknowledge_alert(9999, Viewer("ranger.amani", "ranger"))
    assert bridge.alert(alert_id, viewer=b.RANGER).verdict == "unknown"


def test_repeated_collar_alert_is_one_open_alert_with_occurrences(bridge):
    first = collar_alert(bridge, "immobility", seq=1, f_cnt=1)
    again = collar_alert(bridge, "immobility", seq=2, f_cnt=2, time_s=b.T0_S + 1800)

    assert first.alert_ids == again.alert_ids
    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.occurrences, alert.priority, alert.last_time) == (2, 200, b.T0 + timedelta(minutes=30))
    assert len(bridge.downlinks()) == 2  # each collar alert is acked, so the collar stops repeating it


def test_every_repeat_of_an_open_alert_keeps_its_own_evidence(bridge):
    # The collar raises immobility three times, half an hour apart, while the ranger has not come yet.
    for n in range(3):
        collar_alert(bridge, "immobility", seq=n + 1, f_cnt=n + 1, time_s=b.T0_S + n * 1800)

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert alert.occurrences == 3
    kept = alert.evidence["occurrences"]  # the repeats after the first, each with its seq and uplink
    assert [o["time"] for o in kept] == [(b.T0 + timedelta(minutes=m)).isoformat() for m in (30, 60)]
    assert [o.get("seq") for o in kept] == [2, 3]


def test_a_repeat_of_an_open_alert_reads_no_fixes_or_behaviour_for_evidence_it_does_not_keep(bridge):
    # The first report carries the collar's last fixes and behaviour; a repeat (the collar sends it until
    # its ack arrives) keeps only its seq and uplink, so nothing is read for it.
    collar_alert(bridge, "immobility", seq=1, f_cnt=1)
    said: list[str] = []
    event.listen(bridge.db.write_engine, "before_cursor_execute",
                   lambda _c, _cur, statement, *_a: said.append(" ".join(statement.split())))
    collar_alert(bridge, "immobility", seq=2, f_cnt=2, time_s=b.T0_S + 1800)

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert alert.occurrences == 2 and "positions" in alert.evidence
    # the evidence's reads (`positions.recent_fixes`, `activity.latest`), not the rules' own track reads
    assert not [s for s in said if s.startswith("SELECT positions.time, positions.lat, positions.lon FROM positions")]
    assert not [s for s in said if s.startswith("SELECT activity_summaries.time, activity_summaries.dominant")]


def test_alert_after_resolution_opens_a_new_one(bridge):
    (first_id,) = collar_alert(bridge, "mortality", seq=1, f_cnt=1).alert_ids
    bridge.resolve_alert(first_id, Viewer("ranger.amani", "ranger"), "false_alarm")

    (second_id,) = collar_alert(bridge, "mortality", seq=2, f_cnt=2, time_s=b.T0_S + 7200).alert_ids

    assert second_id != first_id
    assert [a.alert_id for a in bridge.open_alerts(viewer=b.RANGER)] == [second_id]


def test_collar_repeating_an_alert_the_ranger_already_resolved_opens_no_second_alert(bridge):
    # The collar repeats its record (same type, seq and time) until the bridge's ack reaches it.
    (first_id,) = collar_alert(bridge, "mortality", seq=1, f_cnt=1).alert_ids
    bridge.resolve_alert(first_id, Viewer("ranger.amani", "ranger"), "true")

    repeat = collar_alert(bridge, "mortality", seq=1, f_cnt=2)

    (alert,) = bridge.alerts(viewer=b.RANGER)
    assert (alert.alert_id, alert.state, alert.verdict, alert.occurrences) == (first_id, "resolved", "true", 2)
    assert repeat.alert_ids == ()
    (event,) = [e for e in bridge.alert_events(first_id, viewer=b.RANGER) if e.action == "repeated"]
    assert (event.detail["seq"], event.detail["while"]) == (1, "resolved")
    assert bridge.alert_verdicts()["mortality"]["true"] == 1  # one alert, one verdict


def test_the_same_seq_after_the_collars_3_bit_counter_wrapped_is_a_new_alert(bridge):
    (first_id,) = collar_alert(bridge, "mortality", seq=1, f_cnt=1).alert_ids
    bridge.resolve_alert(first_id, Viewer("ranger.amani", "ranger"), "false_alarm")

    (second_id,) = collar_alert(bridge, "mortality", seq=1, f_cnt=2, time_s=b.T0_S + 30 * 3600).alert_ids

    assert second_id != first_id
    assert [a.alert_id for a in bridge.open_alerts(viewer=b.RANGER)] == [second_id]


def test_open_alerts_come_highest_priority_first(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3250), f_cnt=1))
    collar_alert(bridge, "geofence_farmland", seq=1, f_cnt=2)
    collar_alert(bridge, "mortality", seq=2, f_cnt=3)

    assert [(a.alert_type, a.priority) for a in bridge.open_alerts(viewer=b.RANGER)] == [
        ("mortality", 300),
        ("geofence_farmland", 200),
        ("low_battery", 100),
    ]


def test_low_battery_status_raises_one_server_alert_at_the_collars_own_threshold(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3310), f_cnt=1))  # the collar's level is 3300
    assert bridge.open_alerts(viewer=b.RANGER) == []
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 1800, battery_mv=3290), f_cnt=2))
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600, battery_mv=3280), f_cnt=3))

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert (alert.alert_type, alert.source, alert.priority, alert.name) == ("low_battery", "server", 100, "Naserian")
    assert alert.occurrences == 2 and alert.evidence["battery_mv"] == 3290
    assert alert.evidence["threshold_mv"] == 3300


def test_a_low_battery_the_ranger_resolved_is_not_raised_again_until_the_battery_recovered(bridge):
    ranger = Viewer("ranger.amani", "ranger")
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3250), f_cnt=1))
    (first,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.resolve_alert(first.alert_id, ranger, "true", note="collar to be replaced next patrol")

    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3 * 3600, battery_mv=3240), f_cnt=2))
    assert bridge.open_alerts(viewer=b.RANGER) == []  # the same low battery
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 6 * 3600, battery_mv=4000), f_cnt=3))
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 9 * 3600, battery_mv=3250), f_cnt=4))

    (second,) = bridge.open_alerts(viewer=b.RANGER)  # recovered (a new pack), then low again: a new one
    assert second.alert_id != first.alert_id and second.alert_type == "low_battery"


def test_ranger_finds_the_alerts_tembo_closed_itself_awaiting_a_verdict_and_a_visitor_may_not(bridge):
    ranger = Viewer("ranger.amani", "ranger")
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3250), f_cnt=1))
    (low,) = bridge.open_alerts(viewer=b.RANGER)
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3 * 3600, battery_mv=4000), f_cnt=2))
    assert bridge.open_alerts(viewer=b.RANGER) == []  # a new pack: Tembo closed it, with no verdict

    (waiting,) = bridge.alerts_awaiting_verdict(viewer=ranger)
    assert (waiting.alert_id, waiting.state, waiting.verdict, waiting.resolved_by) == (
        low.alert_id, "resolved", None, "tembo")
    assert bridge.alert_verdicts()["low_battery"]["unjudged"] == 1
    assert bridge.alert_verdicts()["low_battery"]["precision"] is None
    for role in ("visitor", "researcher", "field_technician"):
        with pytest.raises(Forbidden):
            bridge.alerts_awaiting_verdict(viewer=Viewer(f"someone.{role}", role))

    bridge.resolve_alert(waiting.alert_id, ranger, "false_alarm", note="battery was fine, a cold night")
    assert bridge.alerts_awaiting_verdict(viewer=ranger) == []
    judged = bridge.alert_verdicts()["low_battery"]
    assert (judged["false_alarm"], judged.get("unjudged", 0), judged["precision"]) == (1, 0, 0.0)


def test_ranger_sees_offline_alert_after_two_missed_status_reports_and_it_closes_when_heard(bridge):
    # The collar reports a status every 3 h: offline after 2 x 3 h + 15 min of grace.
    bridge.ingest_tts_uplink(b.tts_uplink(b.settings(status_interval_s=3 * 3600), f_cnt=1, received_at=b.T0))

    assert bridge.run_rules(now=b.T0 + timedelta(hours=6, minutes=14)) == []
    raised = bridge.run_rules(now=b.T0 + timedelta(hours=6, minutes=16))
    assert bridge.run_rules(now=b.T0 + timedelta(hours=7)) == []  # still one alert, not one per run

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert [alert.alert_id] == raised
    assert (alert.alert_type, alert.source, alert.evidence["silent_s"]) == ("offline", "server", 6 * 3600 + 960)
    assert alert.evidence["offline_after_s"] == 6 * 3600 + 900

    bridge.ingest_tts_uplink(
        b.tts_uplink(b.status(time_s=b.T0_S + 8 * 3600), f_cnt=2, received_at=b.T0 + timedelta(hours=8))
    )
    assert bridge.open_alerts(viewer=b.RANGER) == []
    closed = bridge.alert(alert.alert_id, viewer=b.RANGER)
    assert (closed.state, closed.verdict, closed.resolved_by) == ("resolved", "true", "tembo")


def test_a_silence_the_ranger_resolved_is_not_raised_again_until_the_collar_is_heard(bridge):
    bridge.ingest_tts_uplink(b.tts_uplink(b.settings(status_interval_s=3 * 3600), f_cnt=1, received_at=b.T0))
    (first_id,) = bridge.run_rules(now=b.T0 + timedelta(hours=6, minutes=16))
    bridge.resolve_alert(first_id, Viewer("ranger.amani", "ranger"), "true", note="mast down on the ridge")

    assert bridge.run_rules(now=b.T0 + timedelta(hours=7)) == []  # the same silence
    bridge.ingest_tts_uplink(
        b.tts_uplink(b.status(time_s=b.T0_S + 8 * 3600), f_cnt=2, received_at=b.T0 + timedelta(hours=8))
    )
    (second_id,) = bridge.run_rules(now=b.T0 + timedelta(hours=14, minutes=16))  # heard, then silent again

    assert second_id != first_id


def test_unknown_alert_type_from_a_newer_collar_is_still_stored(bridge):
    payload = bytearray(b.alert("mortality", seq=1)[1])
    payload[0] = (30 << 3) | 1  # alert type 30 is not in this bridge's codec table

    result = bridge.ingest_tts_uplink(b.tts_uplink((10, bytes(payload)), f_cnt=1))

    (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert result.status == "processed"
    assert (alert.alert_type, alert.priority) == ("unknown_30", 200)


def test_a_mortality_alert_from_a_collar_stamping_east_african_time_as_utc_is_escalated_when_nobody_answers(
    bridge, monkeypatch
):
    # The collar's clock was set from a laptop on local time (UTC+3): its alert is dated 3 h ahead.
    heard = utc_now()
    (alert_id,) = collar_alert(bridge, "mortality", time_s=int(heard.timestamp()) + 3 * 3600).alert_ids
    monkeypatch.setattr("lora_bridge.service.utc_now", lambda: heard + timedelta(minutes=11))

    bridge.run_rules()  # the bridge's timer, on the wall clock: nobody answered in 10 minutes

    history = [event.action for event in bridge.alert_events(alert_id, viewer=b.RANGER)]
    assert "escalated" in history


@pytest.mark.parametrize("second_step", ["acknowledge", "resolve"])
def test_two_rangers_phones_taking_one_alert_at_once_get_one_answer_kept_and_the_other_refused(store_url, second_step):
    with b.fresh_bridge(store_url) as bridge:
        (alert_id,) = collar_alert(bridge, "poaching_risk").alert_ids
        baraka = Viewer("ranger.baraka", "ranger")
        second = {
            "acknowledge": lambda: bridge.acknowledge_alert(alert_id, baraka),
            "resolve": lambda: bridge.resolve_alert(alert_id, baraka, "false_alarm"),
        }[second_step]
        with ThreadPoolExecutor(max_workers=1) as pool:
            with bridge.db.write() as session:  # Amani's resolve, in the store's hands, not yet committed
                alerts.resolve(session, alert_id, "ranger.amani", "true", "tracks of two men at the dam")
                baraka_tapped = pool.submit(second)  # Baraka's phone, the same moment
                until_it_waits_for_the_store(bridge, baraka_tapped)  # his step reaches it while Amani's is open
            with pytest.raises(InvalidTransition):
                baraka_tapped.result(timeout=30)
        kept = bridge.alert(alert_id, viewer=b.RANGER)
        history = [event.action for event in bridge.alert_events(alert_id, viewer=b.RANGER)]

    assert (kept.state, kept.verdict, kept.resolved_by) == ("resolved", "true", "ranger.amani")
    assert history.count("resolved") == 1 and "acknowledged" not in history


def test_a_ranger_whose_tap_comes_second_is_told_by_the_api_who_took_the_alert_and_with_what_verdict(bridge):
    from access_builders import CONSOLE
    from starlette.testclient import TestClient

    from lora_bridge.adapters.api import create_app

    (alert_id,) = collar_alert(bridge, "poaching_risk").alert_ids
    bridge.add_user("juma", "ranger", "juma-access-password", actor=CONSOLE)
    juma = {"Authorization": f"Bearer {bridge.create_token('juma', 'phone', actor=CONSOLE).secret}"}
    amina = b.api_headers(bridge, "ranger")  # the account "ranger-tests"
    with TestClient(create_app(bridge)) as api:
        assert api.post(f"/api/alerts/{alert_id}/acknowledge", headers=amina).status_code == 200
        second_tap = api.post(f"/api/alerts/{alert_id}/acknowledge", headers=juma)
        assert api.post(f"/api/alerts/{alert_id}/resolve", headers=amina, json={"verdict": "true"}).status_code == 200
        other_verdict = api.post(f"/api/alerts/{alert_id}/resolve", headers=juma, json={"verdict": "false_alarm"})

    assert second_tap.status_code == 400 and "acknowledged by ranger-tests" in second_tap.json()["error"]
    assert other_verdict.status_code == 400
    assert "resolved by ranger-tests, verdict true" in other_verdict.json()["error"]


def test_an_alert_a_ranger_acknowledges_while_the_timer_escalates_it_is_never_escalated_after_the_acknowledgement(
    bridge,
):
    (alert_id,) = collar_alert(bridge, "mortality").alert_ids
    with ThreadPoolExecutor(max_workers=1) as pool:
        with bridge.db.write() as session:  # Amina's acknowledgement, in the store's hands, not yet committed
            alerts.acknowledge(session, alert_id, "ranger.amina")
            timer = pool.submit(bridge.run_rules, b.T0 + timedelta(minutes=11))  # 11 min unanswered: escalate
            until_it_waits_for_the_store(bridge, timer)  # the timer's pass reaches it while hers is still open
        timer.result(timeout=30)
    history = [event.action for event in bridge.alert_events(alert_id, viewer=b.RANGER)]
    kept = bridge.alert(alert_id, viewer=b.RANGER)

    assert "escalated" not in history
    assert (kept.state, kept.priority) == ("acknowledged", 300)


def test_a_whole_patrol_report_pasted_as_a_note_on_the_dashboard_is_refused_with_the_limit_as_the_api_does(bridge):
    from lora_bridge.errors import InvalidRequest

    (alert_id,) = collar_alert(bridge, "mortality").alert_ids
    report = "Carcass found by the north dam, tusks removed. " * 100  # 4,700 characters

    with pytest.raises(InvalidRequest, match="at most 2000"):
        bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "true", report)

    assert bridge.alert(alert_id, viewer=b.RANGER).state == "new"  # nothing kept of the refused step
    bridge.resolve_alert(alert_id, Viewer("ranger.amani", "ranger"), "true", report[:2000])
    assert len(bridge.alert(alert_id, viewer=b.RANGER).note) <= 2000


def test_a_collar_whose_clock_runs_a_day_ahead_neither_holds_the_animals_place_on_the_map_nor_dates_alerts_tomorrow(
    bridge,
):
    # Naserian's collar clock was set a day ahead. At 06:00 it reports her at the dam and raises a
    # mortality alert, both dated 06:00 tomorrow; at 07:00 the network hears a true fix by the road.
    a_day_s = 24 * 3600
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + a_day_s, lat=-2.40, lon=37.40), f_cnt=1,
                                          received_at=b.T0))
    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S + a_day_s),
                                                        f_cnt=2, received_at=b.T0)).alert_ids
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3600, lat=-2.50, lon=37.50), f_cnt=3,
                                          received_at=b.T0 + timedelta(hours=1, seconds=2)))

    (newest,) = bridge.latest_positions(viewer=b.RANGER)
    alert = bridge.alert(alert_id, viewer=b.RANGER)

    assert newest.time == b.T0 + timedelta(hours=1)  # the true fix by the road, not the dam "tomorrow"
    assert (round(newest.lat, 3), round(newest.lon, 3)) == (-2.50, 37.50)
    assert alert.time == b.T0  # dated when the network heard it, not tomorrow
    assert alert.evidence["collar_time"] == (b.T0 + timedelta(days=1)).isoformat()  # the collar's claim, kept


def test_a_collar_clock_a_minute_ahead_of_the_network_is_drift_and_believed(bridge):
    # A collar a month without a fix drifts under a minute: its own time still dates the alert.
    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1, time_s=b.T0_S + 60), f_cnt=1,
                                                        received_at=b.T0)).alert_ids

    alert = bridge.alert(alert_id, viewer=b.RANGER)

    assert alert.time == b.T0 + timedelta(seconds=60) and "collar_time" not in alert.evidence


@pytest.fixture
def postgres_bridge(request, tmp_path):
    """A bridge on PostgreSQL, whose row locks (not SQLite's one writer) decide who closes an alert first."""
    from conftest import empty_store

    with empty_store("postgres", request, tmp_path / "unused.db") as url, b.fresh_bridge(url) as bridge:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        yield bridge


def ranger_resolves_between_the_rules_read_and_their_close(monkeypatch, bridge, target, verdict, note):
    """Patch target (a module attribute the rules call with the alert they read) so that Amani resolves
    the alert, committed, after the rules read it and before they close it."""
    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, name)
    taps: list[int] = []

    def read_then_amani_taps(session, *args, **kwargs):
        found = real(session, *args, **kwargs) if name == "open_alert" else args[0]
        if found is not None and not taps and found.alert_type in ("offline", "low_battery"):
            taps.append(found.id)
            bridge.resolve_alert(found.id, Viewer("ranger.amani", "ranger"), verdict, note=note)
        return found if name == "open_alert" else real(session, *args, **kwargs)

    monkeypatch.setattr(module, name, read_then_amani_taps)
    return taps


@pytest.mark.postgres
def test_a_rangers_verdict_on_an_offline_alert_stands_when_the_collar_is_heard_the_same_moment(
    postgres_bridge, monkeypatch
):
    bridge = postgres_bridge
    bridge.ingest_tts_uplink(b.tts_uplink(b.settings(status_interval_s=3 * 3600), f_cnt=1, received_at=b.T0))
    (alert_id,) = bridge.run_rules(now=b.T0 + timedelta(hours=6, minutes=16))
    # Amani resolves it from the field ("collar found on the ground"), while the collar's status of
    # 08:00 is being applied: Tembo's close must not overwrite her verdict.
    taps = ranger_resolves_between_the_rules_read_and_their_close(
        monkeypatch, bridge, "lora_bridge.domain.alerts.close_if_still_open", "false_alarm",
        "collar on the ground, mast fine")
    bridge.ingest_tts_uplink(
        b.tts_uplink(b.status(time_s=b.T0_S + 8 * 3600), f_cnt=2, received_at=b.T0 + timedelta(hours=8))
    )

    kept = bridge.alert(alert_id, viewer=b.RANGER)
    history = [event.action for event in bridge.alert_events(alert_id, viewer=b.RANGER)]
    assert taps == [alert_id]
    assert (kept.state, kept.verdict, kept.resolved_by) == ("resolved", "false_alarm", "ranger.amani")
    assert history.count("resolved") == 1


@pytest.mark.postgres
def test_a_low_battery_a_ranger_resolves_as_tembo_sees_it_recover_keeps_the_rangers_name_and_verdict(
    postgres_bridge, monkeypatch
):
    bridge = postgres_bridge
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3250), f_cnt=1))
    (low,) = bridge.open_alerts(viewer=b.RANGER)
    # A new pack: the status above the collar's level closes it, as Amani resolves it from her phone.
    taps = ranger_resolves_between_the_rules_read_and_their_close(
        monkeypatch, bridge, "lora_bridge.domain.rules_engine.auto_resolve", "true", "pack replaced at the dam")
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 3 * 3600, battery_mv=4000), f_cnt=2))

    kept = bridge.alert(low.alert_id, viewer=b.RANGER)
    history = [event.action for event in bridge.alert_events(low.alert_id, viewer=b.RANGER)]
    assert taps == [low.alert_id]
    assert (kept.state, kept.verdict, kept.resolved_by) == ("resolved", "true", "ranger.amani")
    assert "auto_resolved" not in history and bridge.open_alerts(viewer=b.RANGER) == []


@pytest.mark.parametrize("first_word", ["join", "mac_commands_only"])
def test_an_offline_alert_closes_when_the_silent_collar_rejoins_or_sends_a_mac_only_frame(bridge, first_word):
    # Naserian's collar went silent (a brown-out, a mast down); the first thing the network hears from
    # it at 08:00 is a join request, or a frame of MAC answers only (port 0): either way it is alive.
    bridge.ingest_tts_uplink(b.tts_uplink(b.settings(status_interval_s=3 * 3600), f_cnt=1, received_at=b.T0))
    (alert_id,) = bridge.run_rules(now=b.T0 + timedelta(hours=6, minutes=16))
    heard = b.T0 + timedelta(hours=8)
    body = {
        "join": lambda: b.tts_join(received_at=heard),
        "mac_commands_only": lambda: b.tts_uplink((0, bytes([0x03, 0x07])), f_cnt=2, received_at=heard),
    }[first_word]()

    result = bridge.ingest_tts_uplink(body)

    closed = bridge.alert(alert_id, viewer=b.RANGER)
    assert bridge.open_alerts(viewer=b.RANGER) == []
    assert (closed.state, closed.verdict, closed.resolved_by) == ("resolved", "true", "tembo")
    assert result.closed_alert_ids == (alert_id,)  # EarthRanger's event is resolved too (the outbox)
    assert bridge.run_rules(now=heard + timedelta(minutes=5)) == []  # heard: not offline again
    (again,) = bridge.run_rules(now=heard + timedelta(hours=6, minutes=16))  # then silent: counted from 08:00
    assert bridge.alert(again, viewer=b.RANGER).evidence["last_seen"] == heard.isoformat()
