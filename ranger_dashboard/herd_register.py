"""What the Herd register page (`screens/herd.py`) shows and says: the register as a table, the
collars one animal wore, and the sentence a field technician or admin reads after renaming an animal,
fitting a collar or taking one off (done, or the bridge's reason why not). Plain functions over the bridge's views
(`HerdEntryView`, `CollarInStockView`, `AnimalView`,
`CollarWornView`), so tests call them without Streamlit; the page script runs whole
whenever it is imported.

The changes themselves go through `data.rename_animal`, `data.fit_collar` and `data.take_off_collar`, in the signed-in
viewer's name: the bridge checks the role (`manage_herd`), the values (`herd.checked_text`,
`checked_sex`, the fitting time) and keeps the change in its audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import pandas as pd

from lora_bridge.access import Viewer
from lora_bridge.domain.herd import MAX_NAME, MAX_SPECIES, SEXES
from lora_bridge.errors import BridgeError, CollarWornByAnother, Forbidden, NotFound, is_transient_store_error
from ranger_dashboard import data
from ranger_dashboard.views import COL_COLLAR, COL_NAME, COL_SPECIES, format_time, isolated

__all__ = ["MAX_NAME", "MAX_SPECIES", "SEXES"]

log = logging.getLogger(__name__)

COL_ID = "Id"
COL_SEX = "Sex"
COL_FITTED = "Fitted since (UTC)"
COL_ON = "On (UTC)"
COL_OFF = "Off (UTC)"
# The collar and since when next to the name: a phone shows the first three columns without scrolling.
REGISTER_COLUMNS = [COL_NAME, COL_COLLAR, COL_FITTED, COL_SPECIES, COL_SEX, COL_ID]
HISTORY_COLUMNS = [COL_COLLAR, COL_ON, COL_OFF]

# What the tables say where the register has no value.
NO_COLLAR = "none fitted"
SINCE_REGISTERED = "since registered"  # worn since the animal was registered, before fittings were kept
STILL_ON = "still on"
SEX_UNKNOWN = "not recorded"
# The sex choice that leaves the register's value as it is (an animal registered without one).
LEAVE_SEX = "not recorded (leave as is)"
STORE_BUSY = "the Tembo store is busy and kept nothing. Try again in a moment."
NOT_ALLOWED = "only field technicians and admins change the herd register; you read it."


@dataclass(frozen=True)
class Outcome:
    """What became of a change: `kind` "success", "info" (nothing to change) or "error", and the
    sentence for the person who asked."""

    kind: str
    message: str

    @property
    def ok(self) -> bool:
        """True when the register was changed."""
        return self.kind == "success"


def label(animal: Any) -> str:
    """How the animal list names an animal: 'Amani · collar-001', 'Kito · no collar'."""
    return f"{isolated(animal.name or str(animal.animal_id))} · {animal.device_id or 'no collar'}"


def in_register_order(animals: Iterable[Any]) -> list[Any]:
    """The animals by name, then id (numerically), as the register lists them."""
    def key(animal: Any) -> tuple[str, int, str]:
        number = str(animal.animal_id)
        return (animal.name or "").casefold(), int(number) if number.isdigit() else 0, number

    return sorted(animals, key=key)


def fitted_since(animal: Any) -> str:
    """When the collar the animal wears went on ('2026-11-25 08:40'), SINCE_REGISTERED when it wears
    one it had when registered, '' when it wears none."""
    if animal.device_id is None:
        return ""
    return format_time(animal.collar_fitted_at) if animal.collar_fitted_at is not None else SINCE_REGISTERED


def summary_line(animal: Any) -> str:
    """One animal in a line: 'Loxodonta africana · female · collar **collar-001** since 2026-11-20 07:30
    UTC' ('sex not recorded', 'since registered', 'no collar fitted')."""
    if animal.device_id is None:
        collar = "no collar fitted"
    elif animal.collar_fitted_at is None:
        collar = f"collar **{animal.device_id}** {SINCE_REGISTERED}"
    else:
        collar = f"collar **{animal.device_id}** since {format_time(animal.collar_fitted_at)} UTC"
    return f"{animal.species} · {animal.sex or 'sex ' + SEX_UNKNOWN} · {collar}"


def register_table(animals: Iterable[Any]) -> pd.DataFrame:
    """The register: per animal its name, species, sex, the collar it wears and since when, its id."""
    rows = [
        {
            COL_NAME: animal.name,
            COL_SPECIES: animal.species,
            COL_SEX: animal.sex or SEX_UNKNOWN,
            COL_COLLAR: animal.device_id or NO_COLLAR,
            COL_FITTED: fitted_since(animal),
            COL_ID: str(animal.animal_id),
        }
        for animal in in_register_order(animals)
    ]
    return pd.DataFrame(rows, columns=REGISTER_COLUMNS)


COL_STOCK_SINCE = "Off since (UTC)"
COL_CAME_OFF = "Came off"
STOCK_COLUMNS = [COL_COLLAR, COL_STOCK_SINCE, COL_CAME_OFF]
CAME_OFF_UNKNOWN = "not recorded"


def stock_table(collars: Iterable[Any]) -> pd.DataFrame:
    """The collars in stock (`CollarInStockView`), worn by nobody: the collar, since when it is off, and
    the animal it came off; by collar."""
    rows = [
        {
            COL_COLLAR: collar.device_id,
            COL_STOCK_SINCE: format_time(collar.taken_off_at),
            COL_CAME_OFF: isolated(collar.taken_off_name) if collar.taken_off_name else CAME_OFF_UNKNOWN,
        }
        for collar in sorted(collars, key=lambda c: c.device_id)
    ]
    return pd.DataFrame(rows, columns=STOCK_COLUMNS)


def stock_line(collars: Sequence[Any]) -> str:
    """'**2** collars in stock: worn by nobody, they raise no alert until fitted again'."""
    noun = "collar" if len(collars) == 1 else "collars"
    return f"**{len(collars)}** {noun} in stock: worn by nobody, they raise no alert until fitted again"


def history_table(worn: Sequence[Any]) -> pd.DataFrame:
    """The collars an animal wore (`CollarWornView`, oldest first as the bridge gives them), newest
    first: the collar, when it went on, when it came off."""
    rows = [
        {
            COL_COLLAR: collar.device_id,
            COL_ON: format_time(collar.fitted_at) if collar.fitted_at is not None else SINCE_REGISTERED,
            COL_OFF: format_time(collar.removed_at) if collar.removed_at is not None else STILL_ON,
        }
        for collar in reversed(list(worn))
    ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def counts(animals: Sequence[Any]) -> dict[str, int]:
    """How many animals the register holds, and how many wear a collar and how many none."""
    wearing = sum(1 for animal in animals if animal.device_id is not None)
    return {"animals": len(animals), "wearing": wearing, "without": len(animals) - wearing}


def counts_line(animals: Sequence[Any]) -> str:
    """'**3** animals · **2** wearing a collar · **1** without one'."""
    count = counts(animals)
    noun = "animal" if count["animals"] == 1 else "animals"
    return (f"**{count['animals']}** {noun} · **{count['wearing']}** wearing a collar · "
            f"**{count['without']}** without one")


def sex_choices(current: str | None) -> list[str]:
    """The sexes the rename form offers: SEXES, and LEAVE_SEX first for an animal without one."""
    return list(SEXES) if current in SEXES else [LEAVE_SEX, *SEXES]


def fitting_time(earlier: bool, day: date | None, at: time | None, happened: str = "went on") -> datetime | None:
    """When the collar went on (or came off: `happened`), in UTC: None (now) unless `earlier`, then `day`
    at `at` (midnight when no time is given). ValueError when `earlier` is said without a day."""
    if not earlier:
        return None
    if day is None:
        raise ValueError(f"say the day the collar {happened}, or choose Now")
    return datetime.combine(day, at or time(0, 0), tzinfo=UTC)


def _sentence(text: str) -> str:
    """text with its first letter in upper case and a full stop at its end."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _refused(action: str, error: Exception, viewer: Viewer, animal: Any) -> Outcome:
    """The sentence for a change the bridge refused (BridgeError) or could not keep (a busy store)."""
    if isinstance(error, Forbidden):
        reason = NOT_ALLOWED
    elif isinstance(error, NotFound):
        reason = f"animal {animal.animal_id} is no longer in the register (reload the page)."
    elif isinstance(error, BridgeError):
        reason = str(error)
    else:
        reason = STORE_BUSY
    log.info("herd change refused: %s", type(error).__name__,
             extra={"user": viewer.username, "animal_id": animal.animal_id, "action": action})
    return Outcome("error", f"{action}: {_sentence(reason)}")


def rename(url: str, animal: Any, viewer: Viewer, name: str, species: str, sex: str | None) -> Outcome:
    """Give `animal` (its `AnimalView`) the name, species and sex the form says (sex None or LEAVE_SEX:
    leave it), in viewer's name. An empty name or species, or one too long, is refused by the bridge
    with its reason; nothing different from the register is not sent."""
    sex = None if sex in (None, LEAVE_SEX) else sex
    wanted = {"name": (name or "").strip(), "species": (species or "").strip(), "sex": sex}
    was = {"name": animal.name, "species": animal.species, "sex": animal.sex}
    if all(value is None or value == was[field] for field, value in wanted.items()):
        return Outcome("info", f"Nothing to change: {isolated(animal.name)} is already recorded so.")
    action = f"{isolated(animal.name)} not changed"
    try:
        after = data.rename_animal(url, animal.animal_id, viewer, name=name, species=species, sex=sex)
    except Exception as error:
        if not (isinstance(error, BridgeError) or is_transient_store_error(error)):
            raise
        return _refused(action, error, viewer, animal)
    said = []
    if after.name != animal.name:
        said.append(f"{isolated(animal.name)} is now called {isolated(after.name)}")
    if after.species != animal.species:
        said.append(f"species {after.species}")
    if after.sex != animal.sex:
        said.append(f"sex {after.sex}")
    if not said:
        return Outcome("info", f"Nothing to change: {isolated(animal.name)} is already recorded so.")
    return Outcome("success", _sentence("; ".join(said)))


def fit(url: str, animal: Any, viewer: Viewer, collar: str, move: bool, fitted_at: datetime | None,
        herd: Sequence[Any]) -> Outcome:
    """Fit `collar` (a device id or DevEUI) to `animal` at `fitted_at` (None: now), in viewer's name;
    with `move`, a collar another animal of `herd` wears is taken from it. The sentence says who wears
    what now, which collar came off, and when the collar has never been heard (a mistyped id)."""
    action = f"Collar not fitted to {isolated(animal.name)}"
    if not (collar or "").strip():
        return Outcome("error", f"{action}: name the collar (its device id or DevEUI).")
    try:
        after = data.fit_collar(url, animal.animal_id, collar.strip(), viewer, move=move, fitted_at=fitted_at)
    except CollarWornByAnother as error:
        wearer = next((a for a in herd if str(a.animal_id) == str(error.wearer_id)), None)
        who = isolated(wearer.name) if wearer is not None else f"animal {error.wearer_id}"
        log.info("herd change refused: collar worn by another",
                 extra={"user": viewer.username, "animal_id": animal.animal_id, "device_id": collar.strip()})
        return Outcome("error", f"{action}: collar {collar.strip()} is worn by {who}. Tick “Take it from the "
                                f"animal wearing it” to move it to {isolated(animal.name)}; {who} then wears none.")
    except Exception as error:
        if not (isinstance(error, BridgeError) or is_transient_store_error(error)):
            raise
        return _refused(action, error, viewer, animal)
    if after.device_id == animal.device_id:
        return Outcome("info", f"Nothing to change: {isolated(animal.name)} wears collar {after.device_id} already.")
    said = [f"{isolated(after.name)} wears collar {after.device_id} since {format_time(after.collar_fitted_at)} UTC"]
    taken_from = next((a for a in herd if a.device_id == after.device_id and str(a.animal_id) != str(animal.animal_id)),
                      None)
    if taken_from is not None:
        said.append(f"taken from {isolated(taken_from.name)}, who now wears none and keeps its track and alerts")
    if animal.device_id is not None:
        said.append(f"collar {animal.device_id} came off")
    sentence = _sentence("; ".join(said))
    # a collar taken from another animal was known; its last report was on that animal, not this one
    if taken_from is None and after.last_seen is None:
        sentence += (f" Tembo has not heard collar {after.device_id} yet: it was registered as a new collar "
                     "(check the id if it should have reported).")
    return Outcome("success", sentence)


def take_off(url: str, animal: Any, viewer: Viewer, removed_at: datetime | None) -> Outcome:
    """Take `animal`'s collar off at `removed_at` (None: now) without fitting another, in viewer's name.
    The sentence says which collar came off when, that nobody wears it now and that the animal keeps what
    it reported; or the bridge's reason (no collar on, a time in the future or before the fitting)."""
    action = f"Collar not taken off {isolated(animal.name)}"
    try:
        after = data.take_off_collar(url, animal.animal_id, viewer, removed_at=removed_at)
    except Exception as error:
        if not (isinstance(error, BridgeError) or is_transient_store_error(error)):
            raise
        return _refused(action, error, viewer, animal)
    when = f"at {format_time(removed_at)} UTC" if removed_at is not None else "now"
    collar = f"collar {animal.device_id}" if animal.device_id is not None else "its collar"
    return Outcome("success", f"{_sentence(f'{collar} came off {isolated(after.name)} {when}')} Nobody wears it "
                              f"until it is fitted again: it is in stock, what it reports raises no alert and its "
                              f"alerts still open are closed; {isolated(after.name)} keeps its track and alerts.")
