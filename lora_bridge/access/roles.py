"""Who may see and do what in Tembo: the five roles, what each may do, and how precisely each sees
where an animal is.

Poachers read leaked positions. Exact live positions are for the roles that act on them (rangers,
admins); every other role sees positions snapped to a coarse grid and held back by a delay, and a
stricter grid and delay for animals flagged high-value (a rhino, a tusker). This table is the one
source of that policy: the service layer applies it (lora_bridge.access.privacy), so the HTTP API
and the dashboard cannot differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from lora_bridge.errors import Forbidden

RANGER = "ranger"
RESEARCHER = "researcher"
FIELD_TECHNICIAN = "field_technician"
ADMIN = "admin"
VISITOR = "visitor"

# What a role may do, beyond reading positions through its precision.
READ_ANIMALS = "read_animals"  # animals, latest positions, tracks, activity (through the precision)
READ_ALERTS = "read_alerts"  # alerts and their history (delayed and coarsened like positions)
HANDLE_ALERTS = "handle_alerts"  # acknowledge, resolve with a verdict
FLAG_ANIMALS = "flag_animals"  # mark an animal high-value
MANAGE_HERD = "manage_herd"  # rename an animal, correct its species or sex, fit or move a collar
READ_DEVICES = "read_devices"  # collar health, versions, radio
READ_DOWNLINKS = "read_downlinks"
QUEUE_DOWNLINKS = "queue_downlinks"  # commands and settings for collars
READ_GEOGRAPHY = "read_geography"
EXPORT = "export"  # Movebank CSV, GeoJSON, GeoPackage (through the precision)
READ_MODELS = "read_models"  # the model registry (researchers' page)
READ_UPDATES = "read_updates"  # firmware and model update campaigns, which collar runs what
MANAGE_UPDATES = "manage_updates"  # start, pause, resume and abort update campaigns
READ_FLEET = "read_fleet"  # the fleet health page: batteries, radio, versions, lost uplinks
MANAGE_GEOFENCES = "manage_geofences"  # upload geofences and send them to collars
MANAGE_DEAD_LETTERS = "manage_dead_letters"
READ_METRICS = "read_metrics"
READ_AUDIT = "read_audit"
MANAGE_ACCOUNTS = "manage_accounts"


@dataclass(frozen=True)
class Precision:
    """How a role sees one animal's positions: snapped to a grid of `grid_m` metres (0: exact) and
    only fixes at least `delay` old."""

    grid_m: int = 0
    delay: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.grid_m < 0:
            raise ValueError(f"grid_m must be >= 0, got {self.grid_m}")
        if self.delay < timedelta(0):
            raise ValueError(f"delay must not be negative, got {self.delay}")

    @property
    def exact(self) -> bool:
        """True for exact live positions (no grid, no delay)."""
        return self.grid_m == 0 and self.delay == timedelta(0)

    def describe(self) -> str:
        """This precision in a few words ('exact, live', '5 km grid, 24 h late')."""
        if self.exact:
            return "exact, live"
        hours = self.delay.total_seconds() / 3600
        grid = f"{self.grid_m / 1000:g} km grid" if self.grid_m else "exact"
        return f"{grid}, {hours:g} h late" if hours else f"{grid}, live"


EXACT = Precision()


@dataclass(frozen=True)
class Role:
    """One kind of Tembo user: a title, how it sees animals (ordinary and high-value), what it may do."""

    name: str
    title: str
    animals: Precision
    high_value: Precision
    permissions: frozenset[str]

    def __post_init__(self) -> None:
        if self.animals.exact != self.high_value.exact:
            # One role is either exact or coarse for every animal: the audit log says which.
            raise ValueError(f"role {self.name}: exact for some animals and not for others")

    @property
    def exact_positions(self) -> bool:
        """True when this role sees exact live positions."""
        return self.animals.exact

    def precision(self, high_value: bool) -> Precision:
        """How this role sees an animal (high-value or not)."""
        return self.high_value if high_value else self.animals

    def may(self, permission: str) -> bool:
        """True when this role holds permission."""
        return permission in self.permissions

    @property
    def handles_alerts(self) -> bool:
        """True when this role acknowledges and resolves alerts."""
        return self.may(HANDLE_ALERTS)

    def describe_positions(self) -> str:
        """How this role sees positions, in one sentence for a page."""
        if self.exact_positions:
            return "Exact live positions."
        return (
            f"Positions coarsened ({self.animals.describe()}; high-value animals "
            f"{self.high_value.describe()}) — {self.title} view."
        )


_EVERYONE = frozenset({READ_ANIMALS, READ_ALERTS, READ_GEOGRAPHY})

ROLES: dict[str, Role] = {
    RANGER: Role(
        RANGER,
        "Ranger",
        animals=EXACT,
        high_value=EXACT,
        permissions=_EVERYONE
        | {HANDLE_ALERTS, FLAG_ANIMALS, READ_DEVICES, READ_DOWNLINKS, EXPORT, MANAGE_GEOFENCES},
    ),
    RESEARCHER: Role(
        RESEARCHER,
        "Researcher",
        animals=Precision(grid_m=1_000, delay=timedelta(hours=6)),
        high_value=Precision(grid_m=5_000, delay=timedelta(hours=24)),
        permissions=_EVERYONE | {READ_DEVICES, EXPORT, READ_MODELS},
    ),
    FIELD_TECHNICIAN: Role(
        FIELD_TECHNICIAN,
        "Field technician",
        animals=Precision(grid_m=1_000, delay=timedelta(hours=1)),
        high_value=Precision(grid_m=5_000, delay=timedelta(hours=24)),
        permissions=_EVERYONE
        | {READ_DEVICES, READ_DOWNLINKS, QUEUE_DOWNLINKS, READ_UPDATES, MANAGE_UPDATES, READ_FLEET, READ_METRICS,
           MANAGE_HERD},
    ),
    ADMIN: Role(
        ADMIN,
        "Admin",
        animals=EXACT,
        high_value=EXACT,
        permissions=_EVERYONE
        | {
            HANDLE_ALERTS,
            FLAG_ANIMALS,
            MANAGE_HERD,
            READ_DEVICES,
            READ_DOWNLINKS,
            QUEUE_DOWNLINKS,
            EXPORT,
            READ_MODELS,
            READ_UPDATES,
            MANAGE_UPDATES,
            READ_FLEET,
            MANAGE_GEOFENCES,
            MANAGE_DEAD_LETTERS,
            READ_METRICS,
            READ_AUDIT,
            MANAGE_ACCOUNTS,
        },
    ),
    VISITOR: Role(
        VISITOR,
        "Visitor centre",
        animals=Precision(grid_m=5_000, delay=timedelta(hours=24)),
        high_value=Precision(grid_m=10_000, delay=timedelta(hours=72)),
        permissions=_EVERYONE,
    ),
}


def role(name: str) -> Role:
    """The role called `name`; ValueError naming the known roles otherwise."""
    try:
        return ROLES[name]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; expected one of {sorted(ROLES)}") from None


@dataclass(frozen=True)
class Viewer:
    """Who asks: a signed-in user, an API token's owner, or a kiosk, with the role they act in.

    Every service method that returns animals, positions, tracks or alerts takes one as `viewer`.
    """

    username: str
    role: str

    def __post_init__(self) -> None:
        if not isinstance(self.username, str) or not self.username.strip():
            raise ValueError("a viewer needs a username")
        role(self.role)  # ValueError for an unknown role

    @property
    def policy(self) -> Role:
        """The role this viewer acts in."""
        return ROLES[self.role]

    @property
    def exact_positions(self) -> bool:
        """True when this viewer sees exact live positions."""
        return self.policy.exact_positions

    def may(self, permission: str) -> bool:
        """True when this viewer's role holds permission."""
        return self.policy.may(permission)

    def require(self, permission: str) -> None:
        """Forbidden (HTTP 403) unless this viewer's role holds permission."""
        if not self.may(permission):
            raise Forbidden(f"role {self.role!r} may not {permission.replace('_', ' ')}")


def require(viewer: Viewer, permission: str) -> None:
    """Forbidden unless viewer (a Viewer) may do permission; TypeError for anything else."""
    if not isinstance(viewer, Viewer):
        raise TypeError(f"viewer must be a lora_bridge.access.Viewer, got {type(viewer).__name__}")
    viewer.require(permission)
