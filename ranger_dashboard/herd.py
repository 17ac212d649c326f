"""The herd as the live map shows it at one moment: one composition for the map page
(`screens/live_map.py`) and its name tiles (`name_routes.py`), so both place and label the same
animals, in the same states, for the same moment.

The moment shown has one meaning everywhere: the "as of" moment when the ranger chose one, else the
dashboard's clock (`config.DashboardOptions.clock`): the wall clock ("wall"), or the newest report
of the herd ("data", for replays and demos; the wall clock while nothing has reported).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ranger_dashboard import map_layers, views


@dataclass(frozen=True)
class Herd:
    """The herd at `now`: one `map_layers.animal_points` record per animal with a known position,
    coloured by its state (`views.animal_states`)."""

    now: datetime
    points: list[dict[str, Any]]


def moment_shown(
    as_of: datetime | None, clock: str, animals: Iterable[Any], wall: datetime | None = None
) -> datetime:
    """The moment the herd is shown at: `as_of` when chosen; live, the wall clock (`clock` "wall")
    or the newest `last_seen` of `animals` (`clock` "data"; the wall clock when none has one)."""
    if as_of is not None:
        return as_of
    wall = wall or datetime.now(UTC)
    if clock == "wall":
        return wall
    heard = [a.last_seen for a in animals if a.last_seen is not None]
    return max(heard) if heard else wall


def compose(
    animals: Sequence[Any],
    alerts: Sequence[Any],
    positions: Sequence[Any],
    as_of: datetime | None,
    clock: str,
    wall: datetime | None = None,
) -> Herd:
    """The herd from what the bridge handed a viewer for moment `as_of` (None: live): its animals,
    the alerts open then and each animal's last position then."""
    now = moment_shown(as_of, clock, animals, wall)
    return Herd(now, map_layers.animal_points(positions, animals, now, views.animal_states(animals, alerts)))
