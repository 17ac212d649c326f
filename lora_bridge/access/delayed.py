"""The newest fix each animal had by a cutoff: what a role with a delay sees as "latest"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lora_bridge.store.tables import Animal, Position
from lora_bridge.views import PositionView


def high_value_flags(session: Session) -> dict[str, bool]:
    """Animal id (as the views name it) -> whether it is flagged high-value."""
    return {str(key): bool(flag) for key, flag in session.execute(select(Animal.id, Animal.high_value)).all()}


def latest_fixes_by(session: Session, cutoffs: Mapping[datetime, Iterable[str]]) -> list[PositionView]:
    """For each cutoff, the newest fix at or before it of each of its animal ids; ordered by name."""
    views: list[PositionView] = []
    for cutoff, animal_ids in cutoffs.items():
        keys = [int(a) for a in animal_ids]
        if not keys:
            continue
        newest = (
            select(Position.animal_id, func.max(Position.time).label("time"))
            .where(Position.time <= cutoff, Position.animal_id.in_(keys))
            .group_by(Position.animal_id)
            .subquery()
        )
        rows = session.execute(
            select(Position, Animal)
            .join(newest, (Position.animal_id == newest.c.animal_id) & (Position.time == newest.c.time))
            .join(Animal, Animal.id == Position.animal_id)
        ).all()
        seen: set[int] = set()
        for position, animal in rows:
            if animal.id in seen:  # two collars' fixes at the same instant: one is enough
                continue
            seen.add(animal.id)
            views.append(
                PositionView(
                    animal_id=str(animal.id),
                    name=animal.name,
                    device_id=position.device_id,
                    time=position.time,
                    lat=position.lat,
                    lon=position.lon,
                )
            )
    return sorted(views, key=lambda view: view.name)
