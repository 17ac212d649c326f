"""A herd's poaching and mortality alerts heard at once are weighed against fixes and activity summaries
read once for the batch (`domain.corroboration_reads`), not four statements an alert: the same
verdicts, rows, alerts and downlinks as each alert reading its own."""

from __future__ import annotations

import bridge_builders as b
import pytest
from conftest import empty_store
from test_bridge_batch_equivalence import TABLES, stored

from lora_bridge.domain import rules_engine
from lora_bridge.group_commit import Submission

HERD = [f"tembo-{n:02d}" for n in range(12)]
HOUR_S = 3600


def _earlier(collar: int) -> list[bytes]:
    """A collar's status, fixes and activity before the alerts: the even collars ran, the odd ones grazed,
    all of them within a few hundred metres of each other."""
    device_id, step = HERD[collar], (0.004 if collar % 2 == 0 else 0.0001)
    lat, lon = -2.5 + collar * 0.0005, 37.5
    fixes = tuple((dt, lat + n * step, lon + n * step) for n, dt in enumerate((0, 300, 600)))
    running = (10.0, 10.0, 10.0, 70.0) if collar % 2 == 0 else (60.0, 30.0, 8.0, 2.0)
    return [
        b.tts_uplink(b.status(lat=lat, lon=lon), device_id=device_id, f_cnt=1),
        b.tts_uplink(b.positions(b.T0_S + 600, fixes), device_id=device_id, f_cnt=2),
        b.tts_uplink(b.activity(b.T0_S + 600, running), device_id=device_id, f_cnt=3),
    ]


def _delivery() -> list[bytes]:
    """Every collar's poaching alert at once, the first two also a mortality alert; the last collar's of
    six hours later (a second window of the batch's reads, where no fix or summary lies)."""
    bodies = [b.tts_uplink(b.alert("poaching_risk", seq=1, time_s=b.T0_S + (900 if n < len(HERD) - 1 else 6 * HOUR_S),
                                   lat=-2.5 + n * 0.0005, lon=37.5), device_id=collar, f_cnt=4)
              for n, collar in enumerate(HERD)]
    bodies += [b.tts_uplink(b.alert("mortality", seq=2, time_s=b.T0_S + 960), device_id=collar, f_cnt=5)
               for collar in HERD[:2]]
    return bodies


def _reads_of(said: list[str], table: str) -> int:
    return sum(f"FROM {table} " in statement and "newest_" not in statement and "context_" not in statement
               and "tracks." not in statement for statement in said)


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_herd_alerting_at_once_is_weighed_against_one_read_of_its_fixes_and_summaries(
        engine, request, tmp_path, monkeypatch):
    earlier = [body for collar in range(len(HERD)) for body in _earlier(collar)]
    dumps, reads, verdicts = [], [], []
    for name, around in (("each", lambda *_args: None), ("together", rules_engine._around_alerts)):
        monkeypatch.setattr(rules_engine, "_around_alerts", around)
        with empty_store(engine, request, tmp_path / f"{name}.db") as url, b.fresh_bridge(url) as bridge:
            bridge.ingest_batch([Submission("tts", None, body) for body in earlier])
            said = b.statements_of(bridge)
            bridge.ingest_batch([Submission("tts", None, body) for body in _delivery()])
            alarms = sum(statement.startswith("SELECT alerts.device_id") for statement in said)
            reads.append((_reads_of(said, "positions"), _reads_of(said, "activity_summaries"), alarms, len(said)))
            dumps.append(stored(bridge))
            verdicts.append({(a.device_id, a.alert_type, a.time): (a.priority, a.evidence.get("corroboration"))
                             for a in bridge.alerts(viewer=b.RANGER)})

    each, together = verdicts
    assert together == each
    weighed = [verdict["factors"] for _, verdict in each.values()]
    assert len(weighed) == len(HERD) + 2
    # the witnesses spoke (the herd for: its mates alarmed too), so what is compared is not a row of silences
    weights = {witness: {factor["weight"] for factors in weighed for factor in factors if factor["witness"] == witness}
               for witness in ("positions", "behaviour", "herd")}
    for witness in ("positions", "behaviour"):
        assert min(weights[witness]) < 0 < max(weights[witness]), witness
    assert max(weights["herd"]) > 0
    # each alert: its fixes, the herd's fixes, its summaries and its herd mates', and a poaching alert its
    # mates' poaching alerts (the six-hours-later one has no mates: no read of theirs); together: one read
    # of each table for the batch
    weighed_alone = len(HERD) + 2
    assert reads[0][:3] == (2 * weighed_alone, 2 * weighed_alone - 1, len(HERD) - 1)
    assert reads[1][:3] == (1, 1, 1)
    assert reads[0][3] - reads[1][3] == sum(reads[0][:3]) - sum(reads[1][:3])
    for name in TABLES:
        assert dumps[1][name] == dumps[0][name], name
