"""A still animal's immobility alert grows with each batch of its collar's fixes; the rules take it to
change from the row they read it as (`open_alerts.mapped`), not by reading it again by its id: the same
alert, evidence and rows as reading it again, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
import rules_builders as rb
from conftest import empty_store
from test_bridge_batch_equivalence import TABLES, stored

from lora_bridge.domain import open_alerts
from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Alert

SPOT = (309_000, 9_702_000)
STILL_H = 16  # hourly fixes within 15 m: the alert is raised after the profile's 12 h, then grows
HERD = ["tembo-01", "tembo-02"]  # judged together, as a batch of a herd's fixes is


def _read_again(session, alert):
    """open_alerts.mapped as it was: a row read again by its id."""
    return alert if isinstance(alert, Alert) else session.get(Alert, alert.id)


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_still_animals_growing_immobility_alert_is_not_read_again_each_batch(engine, request, tmp_path,
                                                                               monkeypatch):
    fixes = [(60 * h, SPOT[0] + (15 if h % 2 else -15), SPOT[1]) for h in range(STILL_H)]
    hours = list(zip(*(rb.fix_uplinks(collar, b.T0, fixes) for collar in HERD), strict=True))
    dumps, reads_by_id, evidence = [], [], []
    for name, mapped in (("again", _read_again), ("from the row", open_alerts.mapped)):
        monkeypatch.setattr(open_alerts, "mapped", mapped)
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            said = b.statements_of(bridge)
            for bodies in hours:  # a batch an hour, the herd's fixes of that hour
                bridge.ingest_batch([Submission("tts", None, body) for body in bodies])
            reads_by_id.append(sum(s.startswith("SELECT alerts.") and "WHERE alerts.id = " in s for s in said))
            dumps.append(stored(bridge))
            still = [a for a in bridge.alerts(viewer=b.RANGER) if a.alert_type == "immobility"]
            evidence.append([(a.alert_id, a.time, a.evidence) for a in still])

    again, from_the_row = evidence
    assert from_the_row == again
    assert len(again) == len(HERD)
    # raised once still for the profile's 12 hours, then grown by every batch after it
    assert {time for _, time, _ in again} == {b.T0 + timedelta(hours=12)}
    assert {grown["still_since"] for _, _, grown in again} == {b.T0.isoformat()}
    assert {grown["still_h"] for _, _, grown in again} == {STILL_H - 1.0}
    grown_batches = STILL_H - 1 - 12
    assert reads_by_id == [len(HERD) * grown_batches, 0]
    for name in TABLES:
        assert dumps[1][name] == dumps[0][name], name
