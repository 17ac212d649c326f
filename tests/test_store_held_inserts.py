"""An alert's history steps, held as plain rows and inserted together (`store.held_inserts`), are what a
ranger reads: seen by the transaction's own later reads (one that names the history only in a subquery
too), kept or taken back with a savepoint as the ORM's rows are, gone with a rolled-back transaction;
on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bridge_builders as b
import pytest
from conftest import empty_store
from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.bench import synthetic_bodies
from lora_bridge.domain import alerts
from lora_bridge.group_commit import Submission
from lora_bridge.store.tables import Alert, AlertEvent, Animal

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SEEN = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _raise(session: Session, alert_type: str = "low_battery") -> Alert:
    """An alert of alert_type of the one collar the store knows, for the animal wearing it."""
    animal = session.scalars(select(Animal)).one()
    alert, _ = alerts.raise_alert(session, device_id=animal.device_id, animal_id=animal.id, alert_type=alert_type,
                                  source=alerts.SOURCE_SERVER, time=SEEN)
    return alert


@contextmanager
def _one_alert_stored(engine: str, request: Any, tmp_path: Path) -> Iterator[tuple[Any, int]]:
    """A bridge on an empty store of engine that has heard one collar once and holds one alert of it."""
    with empty_store(engine, request, tmp_path / "tembo.db") as url, b.fresh_bridge(url) as bridge:
        bridge.ingest_batch([Submission("tts", None, synthetic_bodies(collars=1, hours=1)[0])])
        with bridge.db.write() as session:
            alert_id = _raise(session).id
        yield bridge, alert_id


def _steps(bridge: Any, alert_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    with bridge.db.read() as session:
        return [tuple(row) for row in session.execute(
            select(AlertEvent.actor, AlertEvent.action, AlertEvent.detail)
            .where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id))]


@pytest.mark.parametrize("engine", ENGINES)
def test_an_escalation_step_is_seen_by_the_offline_pass_read_that_names_the_history_in_a_subquery(
        engine, request, tmp_path):
    with _one_alert_stored(engine, request, tmp_path) as (bridge, alert_id):
        with bridge.db.write() as session:
            alert = session.get(Alert, alert_id)
            alerts.record_event(session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_ESCALATED, {"to": 300})
            # the offline pass's look for alerts not yet escalated (`Bridge.check_offline`): the history
            # only in its WHERE clause, a read the mappers name as one of alerts alone
            not_escalated = session.scalars(select(Alert.id).where(
                ~select(AlertEvent.id).where(AlertEvent.alert_id == Alert.id,
                                            AlertEvent.action == alerts.ACTION_ESCALATED).exists())).all()
            assert not_escalated == []
            alerts.record_event(session, alert, "ranger-1", alerts.ACTION_ACKNOWLEDGED)
        assert _steps(bridge, alert_id) == [
            (alerts.SYSTEM_ACTOR, alerts.ACTION_RAISED, {"source": alerts.SOURCE_SERVER, "time": SEEN.isoformat()}),
            (alerts.SYSTEM_ACTOR, alerts.ACTION_ESCALATED, {"to": 300}),
            ("ranger-1", alerts.ACTION_ACKNOWLEDGED, {}),
        ]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_step_made_before_a_savepoint_rolled_back_is_kept_and_one_made_inside_it_is_not(engine, request, tmp_path):
    with _one_alert_stored(engine, request, tmp_path) as (bridge, alert_id):
        with bridge.db.write() as session:
            alert = session.get(Alert, alert_id)
            alerts.record_event(session, alert, "ranger-1", alerts.ACTION_ACKNOWLEDGED)
            with pytest.raises(RuntimeError), session.begin_nested():
                alerts.record_event(session, alert, "ranger-2", alerts.ACTION_ASSIGNED, {"to": "ranger-2"})
                session.flush()
                raise RuntimeError("the assignment failed")
        assert [step[:2] for step in _steps(bridge, alert_id)] == [
            (alerts.SYSTEM_ACTOR, alerts.ACTION_RAISED), ("ranger-1", alerts.ACTION_ACKNOWLEDGED)]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_step_of_a_rolled_back_transaction_is_not_written_by_the_next(engine, request, tmp_path):
    with _one_alert_stored(engine, request, tmp_path) as (bridge, alert_id):
        with pytest.raises(RuntimeError), bridge.db.write() as session:
            alerts.record_event(session, session.get(Alert, alert_id), "ranger-1", alerts.ACTION_ACKNOWLEDGED)
            raise RuntimeError("the ranger's request failed")
        with bridge.db.write() as session:
            alerts.record_event(session, session.get(Alert, alert_id), "ranger-2", alerts.ACTION_ACKNOWLEDGED)
        assert [step[:2] for step in _steps(bridge, alert_id)] == [
            (alerts.SYSTEM_ACTOR, alerts.ACTION_RAISED), ("ranger-2", alerts.ACTION_ACKNOWLEDGED)]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_new_alerts_steps_are_stored_with_it(engine, request, tmp_path):
    # outside a batch foreign keys are checked statement by statement: the steps of an alert the unit of
    # work has not written yet go in after it
    with _one_alert_stored(engine, request, tmp_path) as (bridge, _):
        with bridge.db.write() as session:
            alert = _raise(session, "offline")
            alert_id = alert.id
            alerts.record_event(session, alert, "ranger-1", alerts.ACTION_ACKNOWLEDGED)
        assert [step[:2] for step in _steps(bridge, alert_id)] == [
            (alerts.SYSTEM_ACTOR, alerts.ACTION_RAISED), ("ranger-1", alerts.ACTION_ACKNOWLEDGED)]
