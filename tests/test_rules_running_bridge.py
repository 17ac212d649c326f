"""A warden's edit of the rules file reaches a running bridge: the next uplinks are judged by the profiles
the file holds now, alerts already raised are not raised again, and an edit that does not read keeps
the bridge on the version it had, said in its log and in its metrics, without anyone restarting it."""

from __future__ import annotations

import hashlib
import logging

import bridge_builders as b
import httpx
import rules_builders as rb
from bridge_process import bridge_process
from conftest import free_port
from test_notify_running_bridge import wait_for

from lora_bridge.rules_file import RulesFileWatch

SPOT = (305_000, 9_705_000)
TWELVE_HOURS = '[rules.default.immobility]\nduration_h = 12\n'
# The warden's edit: an elephant still for 6 h is worth a ranger's visit.
ELEPHANTS_AFTER_SIX = TWELVE_HOURS + '[rules.species."Loxodonta africana".immobility]\nduration_h = 6\n'
BROKEN = ELEPHANTS_AFTER_SIX + '[rules.species."Loxodonta africana".speed]\nmax_speed_kmh = -1\n'


def still_fixes(device_id: str, minutes: list[int], first_f_cnt: int) -> list[bytes]:
    """Positions uplinks of a collar still at SPOT (within 20 m), `minutes` after T0."""
    fixes = [(m, SPOT[0] + (15 if m % 120 else -15), SPOT[1] + 10) for m in minutes]
    return rb.fix_uplinks(device_id, b.T0, fixes, first_f_cnt)


def post_all(url: str, bodies: list[bytes]) -> None:
    for body in bodies:
        answer = httpx.post(f"{url}/uplinks/tts", headers=b.HEADERS, content=body, timeout=30)
        assert answer.status_code == 200, answer.text


def immobility_alerts(store_url: str) -> list[tuple[str, float]]:
    """(collar, duration_h of the profile it was judged by) of every immobility alert in the store."""
    from lora_bridge.service import open_bridge

    with open_bridge(store_url, rules_path=None) as bridge:
        return sorted((a.device_id, a.evidence["profile"]["duration_h"])
                      for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "immobility")


def metrics(url: str, headers: dict[str, str]) -> str:
    answer = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200
    return answer.text


def test_a_warden_tightening_the_immobility_threshold_is_heard_by_the_running_bridge_and_a_broken_edit_is_refused(
    store_url, tmp_path, monkeypatch, capfd
):
    from lora_bridge.service import open_bridge

    rules_path = tmp_path / "rules.toml"
    rules_path.write_text(TWELVE_HOURS)
    monkeypatch.setenv("TEMBO_RULES_PATH", str(rules_path))
    with open_bridge(store_url, rules_path=None) as bridge:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        bridge.register_animal("collar-02", "Lemayian", sex="male")
        admin = b.api_headers(bridge, "admin")

    with bridge_process(store_url, free_port()) as running:
        # Naserian has been still for 8 h: under 12 h, no alert.
        post_all(running.url, still_fixes("collar-01", list(range(0, 8 * 60 + 1, 60)), first_f_cnt=1))
        assert immobility_alerts(store_url) == []

        # The warden wants elephants still for 6 h visited, and adds the species' profile to the file.
        # Naserian's next fix is judged by it: the ranger gets the alert, no restart.
        rules_path.write_text(ELEPHANTS_AFTER_SIX)
        post_all(running.url, still_fixes("collar-01", [8 * 60 + 30], first_f_cnt=10))
        wait_for(lambda: immobility_alerts(store_url), "Naserian's immobility alert under the 6 h profile")
        assert immobility_alerts(store_url) == [("collar-01", 6.0)]
        applied = hashlib.sha256(rules_path.read_bytes()).hexdigest()
        assert f'tembo_rules_file_info{{sha256="{applied}"}} 1.0' in metrics(running.url, admin)
        assert "tembo_rules_file_last_reload_successful 1.0" in metrics(running.url, admin)

        # A typo in a later edit: the bridge keeps the 6 h profile, and says so in its log and its metrics.
        rules_path.write_text(BROKEN)
        post_all(running.url, still_fixes("collar-01", [9 * 60], first_f_cnt=11))
        post_all(running.url, still_fixes("collar-02", list(range(0, 7 * 60 + 1, 60)), first_f_cnt=1))
        wait_for(lambda: len(immobility_alerts(store_url)) == 2, "Lemayian's immobility alert under the kept profile")
        # Naserian's alert was raised once, whatever the edits and fixes since.
        assert immobility_alerts(store_url) == [("collar-01", 6.0), ("collar-02", 6.0)]
        scraped = metrics(running.url, admin)
        assert f'tembo_rules_file_info{{sha256="{applied}"}} 1.0' in scraped
        assert "tembo_rules_file_last_reload_successful 0.0" in scraped

    logged = capfd.readouterr().err
    refused = [line for line in logged.splitlines() if "not applied" in line]
    assert refused and str(rules_path) in refused[0] and "max_speed_kmh" in refused[0], logged[-2000:]


def test_a_caller_without_a_bridge_judges_by_the_rules_file_as_the_warden_edited_it_through_its_own_watch(tmp_path):
    """A bench or a test applies uplinks without a bridge with a watch of its own (`RulesFileWatch.of`),
    which follows the warden's edits as a bridge's does; an edit that does not read keeps the version in
    force."""
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text(REJOIN_TEN)
    watch = RulesFileWatch.of(str(rules_path))

    def elephant_rejoin_min() -> float:
        return watch.current().rules.profile_for("Loxodonta africana").fences.rejoin_min

    assert elephant_rejoin_min() == 10
    rules_path.write_text(REJOIN_TEN + '[rules.species."Loxodonta africana".fences]\nrejoin_min = 45\n')
    assert elephant_rejoin_min() == 45, "the warden's edit is heard without a restart"
    rules_path.write_text('[rules.default.fences]\nrejoin_min = -3\n')
    assert elephant_rejoin_min() == 45, "an edit that does not read keeps the version in force"


# One visit, one alert: an elephant back out of the field for less than rejoin_min is still on its visit.
REJOIN_TEN = '[rules.default.fences]\nrejoin_min = 10\n'
# The warden's edit: for elephants, two minutes out of the field ends a visit.
ELEPHANTS_REJOIN_TWO = REJOIN_TEN + '[rules.species."Loxodonta africana".fences]\nrejoin_min = 2\n'
FIELD_Y = 9_702_000


def _farmland_reports(bridge) -> list[bool]:
    """same_visit of each report of the collar's own farmland alert folded into the alert the ranger resolved."""
    (alert,) = [a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "geofence_farmland"]
    return [e.detail["same_visit"] for e in bridge.alert_events(alert.alert_id, viewer=b.RANGER)
            if e.action == "repeated" and e.detail.get("source") == "collar"]


def test_a_wardens_edit_is_read_once_by_the_running_bridge_and_the_next_fence_report_goes_by_the_version_metrics_shows(
        sqlite_url, tmp_path, monkeypatch, caplog):
    """Naserian raids the maize; the ranger resolves the bridge's farmland alert, and the collar's own alert
    of that visit, arriving late, wakes nobody. The warden makes two minutes out of a field the end of an
    elephant's visit while the bridge runs; Naserian steps out for four minutes and back, and her collar
    reports it: a new visit now. The bridge read the edit once, logged its reload once, and judged the
    collar's report by the version /metrics reports."""
    from starlette.testclient import TestClient

    from lora_bridge import rules_file
    from lora_bridge.adapters.api import create_app

    rules_path = tmp_path / "rules.toml"
    rules_path.write_text(REJOIN_TEN)
    reads: list[str | None] = []
    read = rules_file.read_rules_file

    def counted(path: str | None) -> rules_file.RulesFile:
        reads.append(path)
        return read(path)

    with b.fresh_bridge(sqlite_url, rules_path=str(rules_path), outbox_worker=False) as bridge, \
            TestClient(create_app(bridge)) as client:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        admin = b.api_headers(bridge, "admin")
        rb.park_and_farm(bridge)
        # Out of the park at 08:00, into the farm at 08:32 and 08:34: the bridge's crossing rule alerts.
        rb.ingest_track(bridge, [(0, 311_000, FIELD_Y), (30, 311_700, FIELD_Y), (32, 312_200, FIELD_Y),
                                 (34, 312_400, FIELD_Y)])
        (alert,) = [a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "geofence_farmland"]
        bridge.resolve_alert(alert.alert_id, b.RANGER, "true", note="chased out of the maize")
        # The collar's own alert of that visit arrives after the ranger's round: the same visit.
        rb.collar_fence_alert(bridge, "geofence_farmland", 35, 312_500, FIELD_Y, f_cnt=10, seq=1)
        assert _farmland_reports(bridge) == [True]

        monkeypatch.setattr(rules_file, "read_rules_file", counted)
        rules_path.write_text(ELEPHANTS_REJOIN_TWO)
        with caplog.at_level(logging.INFO, logger="lora_bridge"):
            # Out at 08:36 and 08:38, in at 08:40, where the collar raises farmland again: four minutes out.
            rb.ingest_track(bridge, [(36, 311_800, FIELD_Y), (38, 311_700, FIELD_Y), (40, 312_200, FIELD_Y)],
                            first_f_cnt=20)
            rb.collar_fence_alert(bridge, "geofence_farmland", 40, 312_200, FIELD_Y, f_cnt=23, seq=2)
            scraped = client.get("/metrics", headers=admin).text
        reports = _farmland_reports(bridge)

    in_force = hashlib.sha256(ELEPHANTS_REJOIN_TWO.encode()).hexdigest()
    assert f'tembo_rules_file_info{{sha256="{in_force}"}} 1.0' in scraped
    assert reports == [True, False], "the report after the edit is judged by the version /metrics reports"
    assert reads == [str(rules_path)], "the edit is read once"
    reloaded = [r for r in caplog.records if r.getMessage().startswith(f"rules file {rules_path} applied")]
    assert len(reloaded) == 1 and in_force in reloaded[0].getMessage(), "its reload is logged once"
