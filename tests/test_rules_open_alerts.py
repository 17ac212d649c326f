"""The open alerts a batch's rules read as rows (`domain.open_alerts`) are what a ranger's alert holds: an
alert the unit of work has changed and not written yet is read with its change, a rule that changes one
read as a row has its change stored, and a row cannot be changed by mistake; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from lora_bridge.bench import synthetic_bodies
from lora_bridge.domain import alerts, open_alerts
from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Alert, Animal

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SEEN = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OPEN_OF_COLLAR = select(*Alert.__table__.columns).where(
    Alert.device_id == bindparam("device"), Alert.open_key.is_not(None)).order_by(Alert.id)


@contextmanager
def _two_alerts_stored(engine: str, request: Any, tmp_path: Path) -> Iterator[tuple[Any, str, list[int]]]:
    """A bridge on an empty store of engine that has heard one collar once and holds two open alerts of it."""
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        bridge.ingest_batch([Submission("tts", None, synthetic_bodies(collars=1, hours=1)[0])])
        with bridge.db.write() as session:
            animal = session.scalars(select(Animal)).one()
            raised = [alerts.raise_alert(session, device_id=animal.device_id, animal_id=animal.id, alert_type=kind,
                                         source=alerts.SOURCE_SERVER, time=SEEN, evidence={"seen": 1})[0]
                      for kind in ("low_battery", "immobility")]
            session.flush()
            ids = [alert.id for alert in raised]
        yield bridge, animal.device_id, ids


def _read(session: Session, device_id: str) -> list[open_alerts.OpenAlert]:
    return open_alerts.read_open(session, OPEN_OF_COLLAR, {"device": device_id}).get(device_id, [])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_rule_that_changes_an_alert_read_as_a_row_has_its_change_stored(engine, request, tmp_path):
    with _two_alerts_stored(engine, request, tmp_path) as (bridge, device_id, ids):
        with bridge.db.write() as session:
            battery, still = _read(session, device_id)
            assert (battery.id, battery.alert_type, battery.evidence) == (ids[0], "low_battery", {"seen": 1})
            with pytest.raises(AttributeError):
                still.evidence = {"seen": 2}  # a row: a change must go through the mapped alert
            open_alerts.mapped(session, still).evidence = {"seen": 2, "still_h": 13.5}
        with bridge.db.read() as session:
            stored = {a.id: a.evidence for a in session.scalars(select(Alert))}
        assert stored == {ids[0]: {"seen": 1}, ids[1]: {"seen": 2, "still_h": 13.5}}


@pytest.mark.parametrize("engine", ENGINES)
def test_an_alert_changed_and_not_written_yet_is_read_with_its_change(engine, request, tmp_path):
    with _two_alerts_stored(engine, request, tmp_path) as (bridge, device_id, ids):
        with bridge.db.write() as session:
            held = session.get(Alert, ids[0])
            held.last_time = SEEN + timedelta(hours=2)  # the batch's collar alert repeated it, unflushed
            with session.no_autoflush:
                battery, still = _read(session, device_id)
            assert battery is held and battery.last_time == SEEN + timedelta(hours=2)
            assert not isinstance(still, Alert) and open_alerts.mapped(session, battery) is held
