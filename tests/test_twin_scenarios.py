"""The digital twin's scenarios, network and scoring, as a ranger and a researcher rely on them."""

from __future__ import annotations

import json
import math
import time
import tomllib
from datetime import UTC, datetime

import pytest

from collar_firmware import scheduler
from simulator import scenario as scenarios
from simulator.network import Network, PathLossModel, Uplink
from simulator.reserve import demo_reserve
from tembo import twin

QUICK = scenarios.SCENARIO_DIR / "quick.toml"


def _quick_data() -> dict:
    return tomllib.loads(QUICK.read_text())


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d["herd"].update(count=0), "herd.count"),
        (lambda d: d["herd"].update(count="many"), "herd.count"),
        (lambda d: d.update(duration="soon"), "duration"),
        (lambda d: d["events"][0].update(kind="meteor"), "events[0].kind"),
        (lambda d: d["events"][0].update(collar=99), "events[0].collar"),
        (lambda d: d["events"][1].pop("duration"), "events[1].duration"),
        (lambda d: d["events"][7].update(gateway="tembo-gw-nowhere"), "events[7].gateway"),
        (lambda d: d["herd"].update(settings={"gnss_interval_s": 5}), "herd.settings.gnss_interval_s"),
        (lambda d: d["herd"].update(settings={"warp_drive": 1}), "herd.settings.warp_drive"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d.update(reserve={"centre": [37.5, 0.5], "boundary_km": [[0, 0], [1, 0]]}), "reserve.boundary_km"),
        (lambda d: d["events"][0].update(at="40d"), "events[0].at"),
    ],
)
def test_researcher_sees_which_key_of_a_broken_scenario_is_wrong(change, key):
    data = _quick_data()
    change(data)
    with pytest.raises(scenarios.ScenarioError) as err:
        scenarios.parse_scenario(data, source="broken.toml")
    assert f"broken.toml: {key}:" in str(err.value)


def test_a_file_that_is_not_toml_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(scenarios.ScenarioError, match="bad.toml: not valid TOML"):
        scenarios.load_scenario(bad)


def test_the_shipped_scenarios_load():
    quick, standard, wall = (scenarios.load_scenario(n) for n in ("quick", "standard", "wall2014"))
    assert quick.count == 6 and {e.kind for e in quick.events} == set(scenarios.EVENT_KINDS)
    assert standard.count == 50 and standard.days == 30
    assert wall.movebank_file is not None


def test_replay_scenario_runs_on_the_projects_own_track_when_the_data_file_is_absent(tmp_path):
    data = tomllib.loads((scenarios.SCENARIO_DIR / "wall2014.toml").read_text())
    data["herd"]["movebank_file"] = "absent.csv.gz"
    scenario = scenarios.parse_scenario(data, source="wall.toml", base_dir=tmp_path)
    fleet = scenarios.fleet(scenario, until_s=scenario.start_s + 3 * 3600)
    assert [m["name"] for m in fleet.manifest()] == ["Tembo walker"]
    assert sum(1 for _ in fleet.deliveries()) > 0


def test_same_seed_same_uplinks_byte_for_byte(tmp_path):
    outs = []
    for run in range(2):
        out = tmp_path / f"run{run}.jsonl"
        summary = twin.simulate("quick", to=str(out), until="4h")
        assert summary["messages_sent"] > 20
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_chirpstack_json_of_the_twin_is_accepted_by_the_bridge(tmp_path):
    from lora_bridge.service import open_bridge

    out = tmp_path / "cs.jsonl"
    twin.simulate("quick", to=str(out), until="2h", network_format="chirpstack")
    lines = out.read_text().splitlines()
    with open_bridge(f"sqlite:///{tmp_path / 'b.db'}") as bridge:
        results = [bridge.ingest_chirpstack_uplink(line.encode()) for line in lines]
    assert results and all(r.status in ("processed", "duplicate") for r in results)


def test_path_loss_follows_the_log_distance_formula():
    model = PathLossModel(exponent=2.7)
    assert model.mean_rssi_dbm(1000.0) - model.mean_rssi_dbm(10_000.0) == pytest.approx(27.0)
    assert model.noise_floor_dbm(125_000) == pytest.approx(-174 + 10 * math.log10(125_000) + 6.0)
    net = Network(demo_reserve(), seed=1)
    hq = demo_reserve().gateway("tembo-gw-hq")
    near = net.spreading_factor(hq.lon, hq.lat + 0.005)
    far = net.spreading_factor(hq.lon + 0.4, hq.lat + 0.4)
    assert near == 7 and far > near  # ADR: the link margin buys the fastest data rate near a mast


def test_duty_cycle_closes_a_sub_band_for_ninety_nine_times_the_airtime():
    sched = scheduler.Scheduler()
    airtime = scheduler.airtime_us(24, 12, 125)
    now = 1772323200
    band = sched.pick_band(now, airtime, scheduler.PRIO_STATUS)
    sched.record(now, band, airtime)
    closed_s = math.ceil(airtime / 1e6 * 100) - 1  # T * (100 / 1 % - 1), rounded up to the ms
    assert sched.next_band_free_s(now) == now  # the other 1 % sub-band is still open
    other = sched.pick_band(now, airtime, scheduler.PRIO_STATUS)
    sched.record(now, other, airtime)
    assert sched.pick_band(now + closed_s - 2, airtime, scheduler.PRIO_STATUS) < 0
    assert sched.pick_band(now + closed_s + 1, airtime, scheduler.PRIO_STATUS) >= 0


def _uplink(dev: str, t_s: float, lon: float, lat: float) -> Uplink:
    return Uplink(device_id=dev, dev_eui=dev, f_port=2, f_cnt=1, payload=bytes(20), time_s=t_s, lat=lat, lon=lon,
                  spreading_factor=9)


def test_two_collars_on_one_channel_at_once_collide_unless_one_is_much_stronger():
    reserve = demo_reserve()
    hq = reserve.gateway("tembo-gw-hq")
    net = Network([hq], seed=3, loss_probability=0.0, path_loss=PathLossModel(shadowing_sigma_db=0.0))
    a = _uplink("A", 100.0, hq.lon + 0.03, hq.lat)
    b = _uplink("B", 100.1, hq.lon + 0.031, hq.lat)  # as far away: no capture
    freq, heard_a = net.hear(a)
    assert heard_a and net.collide(a, freq, heard_a) == heard_a
    _, heard_b = net.hear(b)
    assert net.collide(b, freq, heard_b) == []
    c = _uplink("C", 100.2, hq.lon + 0.001, hq.lat)  # next to the mast: 6 dB stronger, captured
    _, heard_c = net.hear(c)
    assert net.collide(c, freq, heard_c) == heard_c


def test_gateway_outage_and_coverage_hole_silence_the_collar():
    reserve = demo_reserve()
    hq = reserve.gateway("tembo-gw-hq")
    net = Network([hq], seed=3, loss_probability=0.0, path_loss=PathLossModel(shadowing_sigma_db=0.0))
    net.add_outage("tembo-gw-hq", 1000, 2000)
    assert net.hear(_uplink("A", 1500.0, hq.lon + 0.01, hq.lat))[1] == []
    assert net.hear(_uplink("A", 2500.0, hq.lon + 0.01, hq.lat))[1]
    net.add_hole([(hq.lon, hq.lat - 0.1), (hq.lon + 0.1, hq.lat - 0.1), (hq.lon + 0.1, hq.lat + 0.1),
                  (hq.lon, hq.lat + 0.1)], 0, 10_000)
    assert net.hear(_uplink("A", 3000.0, hq.lon + 0.05, hq.lat))[1] == []
    with pytest.raises(ValueError, match="no gateway"):
        net.add_outage("tembo-gw-atlantis", 0, 1)


def test_until_takes_an_offset_or_a_time():
    quick = scenarios.load_scenario("quick")
    assert twin.parse_until("2h", quick) == quick.start_s + 7200
    assert twin.parse_until("2026-03-01T18:00:00Z", quick) == int(datetime(2026, 3, 1, 18, tzinfo=UTC).timestamp())
    with pytest.raises(scenarios.ScenarioError, match="--until"):
        twin.parse_until("whenever", quick)


@pytest.mark.mqtt
def test_twin_publishes_tts_uplinks_on_the_topics_the_things_stack_uses(mosquitto, tmp_path):
    import threading
    from urllib.parse import urlparse

    import paho.mqtt.client as mqtt

    from lora_bridge.service import open_bridge

    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    parts = urlparse(mosquitto.url)
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.username_pw_set(parts.username, parts.password)
    listener.on_message = lambda client, userdata, msg: got.append((msg.topic, msg.payload))
    listener.on_subscribe = lambda *args: subscribed.set()
    listener.connect(parts.hostname, parts.port)
    listener.subscribe("v3/+/devices/+/up", qos=0)
    listener.loop_start()
    try:
        assert subscribed.wait(10)
        summary = twin.simulate("quick", to=mosquitto.url, until="1h")
        deadline = time.monotonic() + 10
        while len(got) < summary["messages_sent"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.loop_stop()
        listener.disconnect()
    assert len(got) == summary["messages_sent"] > 0
    assert all(topic.startswith("v3/tembo-demo@ttn/devices/tembo-collar-") and topic.endswith("/up")
               for topic, _ in got)
    with open_bridge(f"sqlite:///{tmp_path / 'b.db'}") as bridge:
        results = [bridge.ingest_tts_uplink(body) for _, body in got]
    assert all(r.status in ("processed", "duplicate") for r in results)


def test_simulate_command_names_an_unknown_scenario_and_exits_2(capsys):
    from tembo.cli import main

    assert main(["simulate", "no-such-scenario"]) == 2
    err = capsys.readouterr().err
    assert "no-such-scenario.toml: no such scenario file" in err and "quick" in err


def test_simulate_command_writes_the_scenario_and_prints_a_summary(tmp_path, capsys):
    from tembo.cli import main

    out = tmp_path / "quick.jsonl"
    assert main(["simulate", "quick", "--to", str(out), "--until", "1h", "--format", "chirpstack"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = out.read_text().splitlines()
    assert summary["messages_sent"] == len(lines) > 0 and summary["format"] == "chirpstack"
    assert all("deduplicationId" in json.loads(line) for line in lines)


def test_score_counts_recall_precision_and_delay_per_alert_type_by_hand():
    from simulator.scoring import SeenAlert, TruthEvent, score

    t0 = 1_772_323_200
    events = [TruthEvent("c1", "poaching_chase", ("poaching_risk",), t0, t0 + 1800),
              TruthEvent("c2", "poaching_chase", ("poaching_risk",), t0 + 7200, t0 + 9000)]
    alerts = [SeenAlert(1, "c1", "poaching_risk", t0 + 360, t0 + 420),  # 7 minutes after the chase began
              SeenAlert(2, "c3", "poaching_risk", t0 + 400, t0 + 400),  # no chase there: a false alarm
              SeenAlert(3, "c4", "offline", t0, t0, source="server")]
    figures = score(alerts, events, t0 + 86400)
    chase = figures["poaching_risk"]
    assert (chase["recall"], chase["precision"], chase["median_delay_min"]) == (0.5, 0.5, 7.0)
    assert chase["recall_within_goal_delay"] == 0.5  # caught in 7 of the goal's 15 minutes
    late = score([SeenAlert(1, "c1", "poaching_risk", t0 + 1200, t0 + 1260)], events[:1], t0 + 86400)
    assert late["poaching_risk"]["recall"] == 1.0 and late["poaching_risk"]["recall_within_goal_delay"] == 0.0
    assert late["poaching_risk"]["goal_met"] is False, "a chase caught after 20 minutes misses the 15-minute goal"
    assert late["poaching_risk"]["missed"][0]["cause"] == "raised after the goal's 15 minutes"
    assert chase["goal_met"] is False
    assert [m["device_id"] for m in chase["missed"]] == ["c2"]
    assert chase["false"][0]["device_id"] == "c3" and "collar rule" in chase["false"][0]["cause"]
    assert figures["offline"]["false_by_source"] == {"server": 1}
    assert figures["geofence_exit"]["goal_met"] is None, "nothing happened, nothing raised: not measured"


def test_a_missed_event_names_its_likely_cause_from_what_the_collar_reported():
    from collar_firmware import codec
    from simulator.scoring import CollarReports, TruthEvent, score

    reports = CollarReports()
    summary = codec.encode("activity", {"time_s": 1000, "interval_min": 15, "model_version": 1,
                                        "vedba_mean_mg": 90, "vedba_max_mg": 300, "shares": [10.0, 20.0, 70.0, 0.0]})
    reports.note("c1", codec.port_of("activity"), summary)
    reports.note("c1", codec.port_of("activity"), summary)  # a duplicate delivery counts once
    chase = TruthEvent("c1", "poaching_chase", ("poaching_risk",), 1200, 2400)
    field_visit = TruthEvent("c2", "farmland_entry", ("geofence_farmland",), 1200, 1560)
    figures = score([], [chase, field_visit], 10_000, reports)
    assert "model: the collar saw almost no running" in figures["poaching_risk"]["missed"][0]["cause"]
    assert "walk 70 %" in figures["poaching_risk"]["missed"][0]["cause"]
    assert "fix schedule: no fix arrived from inside the 6-minute spell" in \
        figures["geofence_farmland"]["missed"][0]["cause"]


def test_a_farmland_visit_with_a_step_back_over_the_line_is_one_visit():
    from simulator.animals import AnimalState
    from simulator.scoring import Truth

    quick = scenarios.load_scenario("quick")
    truth = Truth(quick)
    t0 = quick.start_s
    inside = [False] * 3 + [True] * 8 + [False] * 2 + [True] * 6 + [False] * 10 + [True] * 3 + [False] * 8
    for minute, in_field in enumerate(inside):  # one window a minute
        truth.on_window("tembo-collar-09", t0 + 60 * minute,
                        AnimalState(t0 + 60 * minute, 0.5, 37.5, "forage", "forage", in_field, True))
    visits = [e for e in truth.finish(t0 + 86400, 10**9) if e.kind == "farmland_entry"]
    assert [(v.start_s - t0, v.end_s - t0) for v in visits] == [(180, 1140)], \
        "out for two minutes is the same visit; three minutes in is no visit"


def test_a_short_run_deep_into_a_field_is_a_visit_a_ranger_should_hear_of():
    from simulator.animals import AnimalState
    from simulator.scoring import Truth

    quick = scenarios.load_scenario("quick")
    reserve = quick.reserve
    lon, lat = reserve.frame.to_lonlat(*reserve.farmland_centres_xy()[0])  # far inside the field
    truth = Truth(quick)
    t0 = quick.start_s
    for minute, in_field in enumerate([False] * 2 + [True] * 3 + [False] * 10):
        truth.on_window("tembo-collar-09", t0 + 60 * minute,
                        AnimalState(t0 + 60 * minute, lat, lon, "run", "run", in_field, True))
    visits = [e for e in truth.finish(t0 + 86400, 10**9) if e.kind == "farmland_entry"]
    assert [(v.start_s - t0, v.end_s - t0) for v in visits] == [(120, 300)]


def test_the_twins_ranger_also_judges_the_alerts_tembo_closed_before_its_round(sqlite_url):
    import bridge_builders as b

    from simulator.scoring import TruthEvent

    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.register_animal("collar-01", "Naserian")
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(battery_mv=3250), f_cnt=1))
        (low,) = bridge.open_alerts(viewer=twin.RANGER)
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 1800, battery_mv=4000), f_cnt=2))
        assert bridge.open_alerts(viewer=twin.RANGER) == []  # closed by Tembo within the hour, unjudged

        failing = TruthEvent("collar-01", "battery_failure", ("low_battery",), b.T0_S - 600, None)
        assert twin._play_ranger(bridge, {}, [failing], b.T0_S + 3600) == 1

        judged = bridge.alert(low.alert_id, viewer=twin.RANGER)
        assert (judged.verdict, judged.resolved_by) == ("true", twin.RANGER.username)
        assert bridge.alert_verdicts()["low_battery"]["precision"] == 1.0
        assert bridge.alerts_awaiting_verdict(viewer=twin.RANGER) == []
