"""What the figures about alerts tell a role that sees alerts late: nothing before its alert list does.

A collar's alert is answered at once by an `ack_alert` downlink, and a ranger acknowledges and
resolves it over the API; a field technician or a researcher sees the alert an hour or more late
(a day for a high-value animal, three for a visitor), so neither the technician's Prometheus scrape
and downlink list nor anyone's alert precision may move for it before then."""

from __future__ import annotations

from datetime import UTC, timedelta

import bridge_builders as b
import pytest
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def bridge_store(sqlite_url):  # the scrape reads the same counts on both stores
    return sqlite_url


def scrape(client, headers: dict[str, str]) -> dict[str, float]:
    """Each sample of a /metrics answer: its name and labels -> its value."""
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_field_technician_scraping_metrics_does_not_learn_a_poaching_alert_was_just_raised_and_handled(client, bridge):
    now = bridge.clock().astimezone(UTC).replace(microsecond=0)
    bridge.register_animal("collar-01", "Tusker", high_value=True)
    technician, ranger, admin = (b.api_headers(bridge, role) for role in ("field_technician", "ranger", "admin"))
    heard = client.post("/uplinks/tts", headers=b.HEADERS, content=b.tts_uplink(
        b.status(int(now.timestamp()) - 120), received_at=now.replace(second=0) - timedelta(minutes=2)))
    assert heard.json()["status"] == "processed"
    before = scrape(client, technician)

    raised = client.post("/uplinks/tts", headers=b.HEADERS, content=b.tts_uplink(
        b.alert("poaching_risk", seq=3, time_s=int(now.timestamp())), f_cnt=2, received_at=now))
    assert raised.json()["status"] == "processed"
    (alert,) = client.get("/api/alerts", headers=ranger).json()
    assert client.post(f"/api/alerts/{alert['alert_id']}/acknowledge", headers=ranger).status_code == 200
    after = scrape(client, technician)

    assert client.get("/api/alerts", headers=technician).json() == []  # a day before its list shows it
    assert {name: value for name, value in after.items() if "downlinks" in name or "acknowledge" in name} == {
        name: value for name, value in before.items() if "downlinks" in name or "acknowledge" in name}
    assert after["tembo_uplinks_stored[]"] == before["tembo_uplinks_stored[]"] + 1  # the scrape goes on counting
    seen_by_admin = scrape(client, admin)  # the admin sees alerts live: its gauges count the ack
    assert seen_by_admin["tembo_downlinks_queued[]"] + seen_by_admin["tembo_downlinks_sent[]"] == 1
    assert any("acknowledge" in name for name in seen_by_admin)


def test_visitor_kiosk_and_researcher_do_not_learn_from_the_precision_table_of_a_poaching_alert_resolved_just_now(
        client, bridge):
    now = bridge.clock().astimezone(UTC).replace(microsecond=0)
    bridge.register_animal("collar-01", "Tusker", high_value=True)
    ranger = b.api_headers(bridge, "ranger")
    raised = client.post("/uplinks/tts", headers=b.HEADERS, content=b.tts_uplink(
        b.alert("poaching_risk", seq=3, time_s=int(now.timestamp()) - 600), received_at=now - timedelta(minutes=10)))
    assert raised.json()["status"] == "processed"
    (alert,) = client.get("/api/alerts", headers=ranger).json()
    resolved = client.post(f"/api/alerts/{alert['alert_id']}/resolve", headers=ranger,
                           json={"verdict": "true", "note": "snare found"})
    assert resolved.status_code == 200

    def precision(role: str) -> dict:
        answer = client.get("/api/alerts/precision", headers=b.api_headers(bridge, role))
        assert answer.status_code == 200
        return answer.json()

    assert precision("ranger")["poaching_risk"]["true"] == 1
    for role in ("visitor", "researcher", "field_technician"):
        assert client.get("/api/alerts?state=all", headers=b.api_headers(bridge, role)).json() == []
        assert precision(role) == {}, f"a {role} read of the poaching alert in the precision table"
    # Two days on, the researcher's list shows the alert resolved (a day late for a high-value animal),
    # and its precision counts it; the visitor's, three days late, not yet.
    bridge.clock = lambda: now + timedelta(days=2)
    assert precision("researcher")["poaching_risk"] == {"true": 1, "false_alarm": 0, "unknown": 0, "precision": 1.0}
    assert precision("visitor") == {}


def test_field_technician_does_not_learn_from_the_downlink_list_that_a_farmland_alert_repeated_just_now(client, bridge):
    # Amani's collar reported entering farmland three hours ago: the technician, an hour late, sees
    # the alert. Her collar repeats it while she stays (a new seq each time), and Tembo answers each
    # with an ack_alert downlink queued the moment it is heard: listed at once, the repeat's ack had
    # told the technician that she is in the farmland now.
    now = bridge.clock().astimezone(UTC).replace(microsecond=0)
    bridge.register_animal("collar-01", "Amani")
    technician, ranger = b.api_headers(bridge, "field_technician"), b.api_headers(bridge, "ranger")
    for f_cnt, seq, heard in ((1, 1, now - timedelta(hours=3)), (2, 2, now - timedelta(minutes=1))):
        posted = client.post("/uplinks/tts", headers=b.HEADERS, content=b.tts_uplink(
            b.alert("geofence_farmland", seq=seq, time_s=int(heard.timestamp())), f_cnt=f_cnt, received_at=heard))
        assert posted.json()["status"] == "processed"
    (alert,) = client.get("/api/alerts", headers=technician).json()
    assert alert["alert_type"] == "geofence_farmland" and alert["occurrences"] == 1  # as it stood an hour ago

    def acks(headers: dict[str, str]) -> list[int]:
        answer = client.get("/api/downlinks", headers=headers)
        assert answer.status_code == 200
        return [d["seq"] for d in answer.json() if d["command"] == "ack_alert" and d["alert_id"] == alert["alert_id"]]

    assert acks(ranger) == [1, 2]
    assert 2 not in acks(technician)
    bridge.clock = lambda: now + timedelta(hours=2)  # an hour after the repeat, the technician reads its ack
    assert acks(technician) == [1, 2]
