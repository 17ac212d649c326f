"""The herd register: who an animal is (name, species, sex) and which collar it wears since when.

A collar moves between animals (a swap after a failed collar, a collar refitted to another elephant).
What a collar reported while an animal wore it stays that animal's: each fix, activity summary and
alert keeps the animal it was filed under, and a message of a collar dated before its current fitting
(a store-and-forward backlog heard after the swap) is filed under the animal that wore it then
(`wearer_at`). The collar an animal wears now is `Animal.device_id` (fitted at
`Animal.collar_fitted_at`); each collar it wore before is a `CollarFitting`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lora_bridge.domain import alerts, devices
from lora_bridge.errors import CollarWornByAnother, InvalidHerdChange, UnknownDevice
from lora_bridge.store.ids import take_id
from lora_bridge.store.tables import (
    IS_AN_ANIMAL,
    ActivitySummary,
    Alert,
    Animal,
    CollarFitting,
    Device,
    Position,
)
from lora_bridge.store.utc import as_utc

log = logging.getLogger(__name__)

SEXES = ("female", "male", "unknown")
MAX_NAME = Animal.__table__.c.name.type.length
MAX_SPECIES = Animal.__table__.c.species.type.length


@dataclass(frozen=True)
class Fitting:
    """What fitting a collar changed: the collar the animal wore before (None: none, or this one), the
    animal the collar was taken from (None: nobody wore it), and the records of the collar dated
    since the fitting that were filed under another animal and are now the fitted animal's."""

    device_id: str
    previous_collar: str | None
    taken_from: int | None
    refiled: int
    # The alerts of the previous collar closed as it went to stock (`close_alerts_of_collar_taken_off`)
    closed_alert_ids: tuple[int, ...] = ()


def checked_text(value: str, what: str, longest: int) -> str:
    """value without surrounding blanks; InvalidHerdChange when nothing is left or it is too long."""
    text = (value or "").strip()
    if not text:
        raise InvalidHerdChange(f"an animal's {what} cannot be empty")
    if len(text) > longest:
        raise InvalidHerdChange(f"an animal's {what} is at most {longest} characters, got {len(text)}")
    return text


def checked_sex(sex: str | None) -> str | None:
    """sex in lower case (None stays None); InvalidHerdChange unless it is one of SEXES."""
    if sex is None:
        return None
    value = sex.strip().lower()
    if value not in SEXES:
        raise InvalidHerdChange(f"sex is one of {', '.join(SEXES)}, got {sex[:20]!r}")
    return value


def rename(session: Session, animal: Animal, *, name: str | None = None, species: str | None = None,
           sex: str | None = None) -> dict[str, tuple[str | None, str | None]]:
    """Give animal a new name, species or sex (each when given); what changed, as (was, now)."""
    wanted = {}
    if name is not None:
        wanted["name"] = checked_text(name, "name", MAX_NAME)
    if species is not None:
        wanted["species"] = checked_text(species, "species", MAX_SPECIES)
    if sex is not None:
        wanted["sex"] = checked_sex(sex)
    changed = {}
    for field, value in wanted.items():
        was = getattr(animal, field)
        if was != value:
            setattr(animal, field, value)
            changed[field] = (was, value)
    return changed


def fit_collar(session: Session, animal: Animal, collar: str, at: datetime, *, move: bool = False) -> Fitting:
    """Fit the collar named collar (a device id or DevEUI; a collar never heard is registered) to animal
    at `at`. The animal's previous collar comes off, to stock (its alerts still open are closed); a collar
    another animal wears is taken from it only with move (else CollarWornByAnother), one in stock (taken
    off, worn by nobody: `take_off_collar`) without, and it resumes from `at` (`Device.left_stock_at`).
    Records of the collar dated at or after `at` filed under another animal (a fitting logged after the
    collar was already on) become this animal's."""
    device = _collar_or_new(session, collar)
    if animal.device_id == device.device_id:
        return Fitting(device.device_id, None, None, 0)
    wearer = session.scalars(select(Animal).where(Animal.device_id == device.device_id)).first()
    from_stock = device.taken_off_at is not None  # before its wearer's take-off below sets it
    # A collar in stock is held by the record of its time there (`devices.ensure_animal`), nobody: made now
    # when the collar was not heard in stock, so a message of that time heard later is known as the stock's.
    if from_stock and wearer is None:
        wearer = devices.ensure_animal(session, device)
    if wearer is not None and not move and not from_stock:
        raise CollarWornByAnother(
            f"collar {device.device_id} is worn by {wearer.name} (animal {wearer.id}): say move to take it "
            f"from {wearer.name}", wearer.id)
    for worn_by in (wearer, animal):
        if worn_by is not None and worn_by.collar_fitted_at is not None and at < worn_by.collar_fitted_at:
            held = (f"collar {worn_by.device_id} is in stock" if worn_by.holds_collar_in_stock
                    else f"{worn_by.name} wears collar {worn_by.device_id}")
            raise InvalidHerdChange(f"{held} since {worn_by.collar_fitted_at.isoformat()}: a fitting at "
                                    f"{at.isoformat()} would come before it")
    previous = animal.device_id
    for worn_by in (wearer, animal):
        if worn_by is not None and worn_by.device_id is not None:
            take_off(session, worn_by, at)
    session.flush()  # one collar, one wearer (animals.device_id is unique): off before it goes on
    # The animal's previous collar goes to stock: its alerts still open close as at a take-off.
    closed = close_alerts_of_collar_taken_off(session, previous, animal.name, at) if previous is not None else []
    animal.device_id = device.device_id
    animal.collar_fitted_at = at
    if from_stock:  # its silence in the workshop is no animal's
        device.left_stock_at = at
    device.taken_off_at = None  # worn again
    refiled = _refile_since(session, device.device_id, animal.id, at)
    _keep_open_alerts_apart(session, device.device_id, at)
    session.info.get(devices.ANIMALS_BY_DEVICE, {}).pop(device.device_id, None)
    # From stock (its holder is no animal: `Animal.holds_collar_in_stock`), the collar was taken from nobody.
    taken_from = wearer.id if wearer is not None and not wearer.holds_collar_in_stock else None
    log.info("collar fitted device_id=%s animal_id=%s", device.device_id, animal.id,
             extra={"device_id": device.device_id, "animal_id": animal.id, "previous_collar": previous,
                    "taken_from": taken_from, "refiled": refiled, "closed_alerts": closed})
    return Fitting(device.device_id, previous, taken_from, refiled, tuple(closed))


def register_animal(session: Session, device_id: str, name: str, species: str = devices.DEFAULT_SPECIES,
                    sex: str | None = None, *, at: datetime) -> tuple[Animal, Fitting | None]:
    """Name the animal wearing collar device_id (`devices.register_animal`), and the fitting made, if any. A
    collar in stock (`take_off_collar`) is worn by nobody: the animal is a new one, fitted with it at `at`
    (`fit_collar`), so her wear starts at the fitting, and the collar's time in stock (its silence, its
    bench fixes) stays its stock record's."""
    device = session.get(Device, device_id)
    if device is None or device.taken_off_at is None:
        return devices.register_animal(session, device_id, name, species, sex), None
    animal = Animal(id=take_id(session, Animal), name=name, species=species, sex=sex)
    session.add(animal)
    session.flush()
    fitting = fit_collar(session, animal, device.device_id, at)
    log.info("animal registered on a collar from stock device_id=%s animal_id=%s", device_id, animal.id,
             extra={"device_id": device_id, "animal_id": animal.id, "fitted_at": at.isoformat()})
    return animal, fitting


@dataclass(frozen=True)
class TakenOff:
    """What taking a collar off changed: the collar, now worn by nobody, how many of its records dated
    since it came off were filed under the animal (a take-off logged late) and are no longer its, and the
    alerts of the collar that were open and are closed by the take-off (`close_alerts_of_collar_taken_off`)."""

    device_id: str
    refiled: int
    closed_alert_ids: tuple[int, ...] = ()


def take_off_collar(session: Session, animal: Animal, at: datetime) -> TakenOff:
    """Take animal's collar off at `at` with no other fitted: the animal wears none, and the collar is worn
    by nobody from `at` until it is fitted again (its fixes raise no animal's alert: `rules_engine`).
    InvalidHerdChange when the animal wears no collar, or `at` comes before the collar went on. Records of
    the collar dated at or after `at` filed under the animal leave it, for the collar's placeholder (the
    one `devices.ensure_animal` makes for a collar nobody wears)."""
    if animal.device_id is None:
        raise InvalidHerdChange(f"{animal.name} wears no collar to take off")
    device_id = animal.device_id
    if animal.collar_fitted_at is not None and at < animal.collar_fitted_at:
        raise InvalidHerdChange(
            f"{animal.name} wears collar {device_id} since {animal.collar_fitted_at.isoformat()}: it cannot come "
            f"off at {at.isoformat()}, before it went on")
    take_off(session, animal, at)
    session.flush()  # the animal no longer wears it: a placeholder may take the collar
    refiled = 0
    if _records_since(session, device_id, at):
        placeholder = devices.ensure_animal(session, session.get(Device, device_id))
        refiled = _refile_since(session, device_id, placeholder.id, at)
    closed = close_alerts_of_collar_taken_off(session, device_id, animal.name, at)
    log.info("collar taken off device_id=%s animal_id=%s", device_id, animal.id,
             extra={"device_id": device_id, "animal_id": animal.id, "removed_at": at.isoformat(),
                    "refiled": refiled, "closed_alerts": closed})
    return TakenOff(device_id, refiled, tuple(closed))


def taken_off_reason(name: str) -> str:
    """Why Tembo closed an alert of a collar taken off `name` (the step's `reason`, docs/alerts.md)."""
    return f"collar taken off {name}: nobody wears it"


def close_alerts_of_collar_taken_off(session: Session, device_id: str, name: str, at: datetime) -> list[int]:
    """Close every open alert of the collar taken off the animal called name at `at` (those of that animal,
    and any the collar raised since `at` before the take-off was logged): nobody wears it, so a ranger has
    no animal to go to. Each keeps its history with an `auto_resolved` step saying why and when
    (`cleared_at`: the take-off); a ranger may still give it a verdict. Mortality and poaching risk are
    closed too (the rules never close them on their own): the technician holds the collar. An alert a
    previous wearer left open (`worn_until_suffix`) is hers and stays open. The closed alerts' ids."""
    closed: list[int] = []
    for alert in session.scalars(select(Alert).where(Alert.device_id == device_id, Alert.open_key.is_not(None))
                                 .order_by(Alert.id)):
        if alert.open_key != alerts.dedup_key(device_id, alert.alert_type):
            continue  # a previous wearer's
        if not alerts.close_if_still_open(session, alert, alerts.SYSTEM_ACTOR):
            continue
        alerts.record_event(session, alert, alerts.SYSTEM_ACTOR, alerts.ACTION_AUTO_RESOLVED,
                            {"reason": taken_off_reason(name), "cleared_at": at.isoformat()})
        log.info("alert closed: collar taken off alert_id=%d device_id=%s type=%s", alert.id, device_id,
                 alert.alert_type, extra={"alert_id": alert.id, "device_id": device_id, "removed_at": at.isoformat()})
        closed.append(alert.id)
    return closed


def in_stock(wearing: Wearing) -> bool:
    """True when nobody wore the collar at the time a message of it is dated: it lay in stock, held by the
    record of a collar taken off (`Animal.holds_collar_in_stock`), so what it said then raises no alert."""
    return wearing.animal.holds_collar_in_stock


def take_off(session: Session, animal: Animal, at: datetime) -> None:
    """animal's collar comes off at `at`: kept as a fitting it wore, and the animal wears none. The collar
    is worn by nobody since `at` until a fitting puts it on an animal again (`Device.taken_off_at`)."""
    session.add(CollarFitting(animal_id=animal.id, device_id=animal.device_id, fitted_at=animal.collar_fitted_at,
                              removed_at=at))
    session.info.get(devices.ANIMALS_BY_DEVICE, {}).pop(animal.device_id, None)
    collar = session.get(Device, animal.device_id)
    if collar is not None:
        collar.taken_off_at = at
    animal.device_id = None
    animal.collar_fitted_at = None


@dataclass(frozen=True)
class Wearing:
    """Who wore a collar when one of its messages was dated: the animal, and when the collar came off it
    (None: it wears the collar now). A message of a previous wearer (`until` set) is that animal's
    backlog, heard after the collar was moved: judged for her, never for the animal wearing it now."""

    animal: Animal
    until: datetime | None = None
    since: datetime | None = None  # when a previous wearer was fitted with it (None: since registered)


def wearing_at(session: Session, device_id: str, current: Animal, time: datetime) -> Wearing:
    """Who wore collar device_id at `time`: current (the one wearing it now) unless time is before
    current's fitting and another animal wore the collar then (with the time it came off her). Dated
    before every fitting known of the collar (a collar clock set wrong): current."""
    fitted_at = current.collar_fitted_at
    if fitted_at is None or time >= fitted_at:
        return Wearing(current)  # the common case: no read
    earlier = session.execute(
        select(CollarFitting.animal_id, CollarFitting.removed_at, CollarFitting.fitted_at)
        .where(CollarFitting.device_id == device_id, CollarFitting.removed_at > time)
        .where((CollarFitting.fitted_at.is_(None)) | (CollarFitting.fitted_at <= time))
        .order_by(CollarFitting.removed_at)
        .limit(1)
    ).first()
    animal = session.get(Animal, earlier.animal_id) if earlier is not None else None
    if animal is None or animal.id == current.id:
        return Wearing(current)
    return Wearing(animal, as_utc(earlier.removed_at), as_utc(earlier.fitted_at) if earlier.fitted_at else None)


def unknown_wear(session: Session, device_id: str, current: Animal, time: datetime) -> tuple[datetime | None, datetime]:
    """The span around `time`, dated before current's fitting, in which the register knows no fitting of
    collar device_id (`wearing_at` gives current for it): (from the end of the fitting before it, None when
    there is none; to the start of the next one, current's fitting at the latest)."""
    ended = session.scalar(select(func.max(CollarFitting.removed_at))
                           .where(CollarFitting.device_id == device_id, CollarFitting.removed_at <= time))
    starts = session.scalar(select(func.min(CollarFitting.fitted_at))
                            .where(CollarFitting.device_id == device_id, CollarFitting.fitted_at > time))
    fitted_at = as_utc(current.collar_fitted_at)
    until = min(as_utc(starts), fitted_at) if starts is not None else fitted_at
    return (as_utc(ended) if ended is not None else None), until


def wearer_at(session: Session, device_id: str, current: Animal, time: datetime) -> Animal:
    """The animal that wore collar device_id at `time` (`wearing_at`)."""
    return wearing_at(session, device_id, current, time).animal


def worn_until_suffix(until: datetime) -> str:
    """What a previous wearer's open alerts carry after their collar's open key (`alerts.dedup_key`):
    the alert stays open for her, apart from the alerts the collar raises on its new wearer."""
    return f"~worn-until-{as_utc(until):%Y%m%dT%H%M%S}"


def open_key_of(device_id: str, alert_type: str, until: datetime | None) -> str:
    """The open key of an alert of the collar for the animal it was worn by until `until` (None: the
    animal wearing it now, the collar's own key)."""
    key = alerts.dedup_key(device_id, alert_type)
    return key if until is None else key + worn_until_suffix(until)


def collars_in_stock(session: Session) -> list[tuple[str, datetime, int | None, str | None]]:
    """The collars worn by nobody (taken off with none fitted, `Device.taken_off_at`), by collar: each as
    (device id, when it came off, the id and name of the animal it came off, None when unknown)."""
    came_off = (select(CollarFitting.device_id, CollarFitting.removed_at, Animal.id, Animal.name)
                .join(Animal, Animal.id == CollarFitting.animal_id)
                .where(IS_AN_ANIMAL).subquery())
    return [tuple(row) for row in session.execute(
        select(Device.device_id, Device.taken_off_at, came_off.c.id, came_off.c.name)
        .outerjoin(came_off, (came_off.c.device_id == Device.device_id)
                   & (came_off.c.removed_at == Device.taken_off_at))
        .where(Device.taken_off_at.is_not(None))
        .order_by(Device.device_id))]


def fittings_of(session: Session, animal_id: int) -> list[CollarFitting]:
    """The collars animal_id wore before its current one, oldest first."""
    return list(session.scalars(select(CollarFitting).where(CollarFitting.animal_id == animal_id)
                                .order_by(CollarFitting.removed_at)))


def _collar_or_new(session: Session, collar: str) -> Device:
    """The collar filed under collar (or with that DevEUI); a new collar record when none is."""
    name = (collar or "").strip()
    if not name:
        raise InvalidHerdChange("name the collar to fit (its device id or DevEUI)")
    try:
        return devices.collar_named(session, name)
    except UnknownDevice:
        if len(name) > devices.MAX_DEVICE_ID:
            raise InvalidHerdChange(f"a collar's device id is at most {devices.MAX_DEVICE_ID} characters") from None
    device = Device(device_id=name, reported_settings={})
    session.add(device)
    session.flush()
    log.info("collar registered before it was heard device_id=%s", name, extra={"device_id": name})
    return device


def _records_since(session: Session, device_id: str, at: datetime) -> bool:
    """True when the collar has a fix, summary or alert dated at or after `at`."""
    return any(session.scalar(select(table.id).where(table.device_id == device_id, table.time >= at).limit(1))
               is not None for table in (Position, ActivitySummary, Alert))


def _refile_since(session: Session, device_id: str, animal_id: int, at: datetime) -> int:
    """File the collar's fixes, summaries and alerts dated at or after `at` under animal_id; how many
    were filed under another animal."""
    refiled = 0
    for table in (Position, ActivitySummary, Alert):
        result = session.execute(
            update(table)
            .where(table.device_id == device_id, table.time >= at)
            .where((table.animal_id.is_(None)) | (table.animal_id != animal_id))
            .values(animal_id=animal_id)
            .execution_options(synchronize_session=False)
        )
        refiled += result.rowcount or 0
    return refiled


def _keep_open_alerts_apart(session: Session, device_id: str, at: datetime) -> None:
    """The collar's alerts still open from before `at` stay open for the animal that wore it (a ranger
    resolves them), but are no longer the collar's open alert of their type (`alerts.dedup_key`): an
    alert the collar raises on its new wearer is that animal's own, not a repeat of the other's."""
    session.execute(
        update(Alert)
        .where(Alert.device_id == device_id, Alert.open_key.is_not(None), Alert.time < at)
        .values(open_key=Alert.open_key + worn_until_suffix(at))
        .execution_options(synchronize_session=False)
    )
