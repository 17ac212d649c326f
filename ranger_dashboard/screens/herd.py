"""Herd register page: every animal with its species, sex, the collar it wears and since when; one
animal's collar history; and, for roles that may change the register (field technicians and admins,
`manage_herd`), a form to rename the animal or correct its species or sex, one to fit a collar
(a swap, or a collar moved from another animal) and one to take its collar off with no other fitted.
Everyone else reads the register. The register is read without positions (`data.herd_register`): opening
it is no view of where the animals are, and a backup holding the store does not hide it.

Reads and writes go through `data` (the bridge's service layer) in the signed-in viewer's name: the
bridge checks the role and the values and keeps each change in its audit log. A change runs in its
button's callback, before the page reads the register again, so the table shows it at once; what the
bridge said (done, or why not) is shown under the form that asked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from lora_bridge.access import roles as access
from lora_bridge.errors import is_transient_store_error
from ranger_dashboard import (
    config,
    data,
    herd_register,
    into_view,
    markers,
    navigation,
    roles,
    selection,
    views,
)

OUTCOME_KEY = "_herd_outcome"  # (form, animal id, herd_register.Outcome) said once under that form
ANSWERS_KEY = "_herd_answers_said"  # how many outcomes this session was told, to number each
RENAME, FIT, TAKE_OFF = "rename", "fit", "take_off"
NOW, EARLIER = "Now", "Earlier (UTC)"  # when the collar went on, or came off

options = config.options()
url = options.database_url
viewer = roles.current_viewer()
may_edit = viewer.may(access.MANAGE_HERD)


def read(call: Callable[..., Any], *args: Any) -> Any:
    """call(*args), or the store-busy message (and the end of this run) while the store is busy."""
    try:
        return call(*args)
    except Exception as error:
        if not is_transient_store_error(error):
            raise
        data.show_store_busy()


def keys_of(animal_id: str) -> dict[str, str]:
    """The widget keys of one animal's forms (their own, so choosing another animal starts afresh)."""
    names = ("name", "species", "sex", "collar", "move", "when", "day", "time", "off_when", "off_day", "off_time")
    return {name: f"herd_{name}_{animal_id}" for name in names}


def said(form: str, animal_id: str, outcome: herd_register.Outcome, reset: dict[str, Any]) -> None:
    """Keep `outcome` to say under `form`; once the register changed, set the form's fields to `reset`
    (set, not forgotten: the browser keeps showing what it holds for a widget whose value is dropped)."""
    st.session_state[OUTCOME_KEY] = (form, animal_id, outcome)
    if outcome.ok:
        for key, value in reset.items():
            st.session_state[key] = value


def rename(animal: Any) -> None:
    """The rename form's callback: send what it says to the bridge."""
    keys = keys_of(animal.animal_id)
    state = st.session_state
    outcome = herd_register.rename(url, animal, viewer, state.get(keys["name"], ""), state.get(keys["species"], ""),
                                   state.get(keys["sex"]))
    said(RENAME, animal.animal_id, outcome,  # as the register keeps them
         {keys["name"]: state.get(keys["name"], "").strip(), keys["species"]: state.get(keys["species"], "").strip()})


def fit(animal: Any, herd: list[Any]) -> None:
    """The fitting form's callback: fit the collar it names, now or at the time it says."""
    keys = keys_of(animal.animal_id)
    state = st.session_state
    try:
        at = herd_register.fitting_time(state.get(keys["when"]) == EARLIER, state.get(keys["day"]), state.get(keys["time"]))
    except ValueError as error:
        outcome = herd_register.Outcome("error", f"Collar not fitted to {views.isolated(animal.name)}: {error}.")
    else:
        outcome = herd_register.fit(url, animal, viewer, state.get(keys["collar"], ""), bool(state.get(keys["move"])),
                                    at, herd)
    said(FIT, animal.animal_id, outcome, {keys["collar"]: "", keys["move"]: False, keys["when"]: NOW})


def take_off(animal: Any) -> None:
    """The take-off form's callback: take the animal's collar off, now or at the time it says."""
    keys = keys_of(animal.animal_id)
    state = st.session_state
    try:
        at = herd_register.fitting_time(state.get(keys["off_when"]) == EARLIER, state.get(keys["off_day"]),
                                        state.get(keys["off_time"]), happened="came off")
    except ValueError as error:
        outcome = herd_register.Outcome("error", f"Collar not taken off {views.isolated(animal.name)}: {error}.")
    else:
        outcome = herd_register.take_off(url, animal, viewer, at)
    said(TAKE_OFF, animal.animal_id, outcome, {keys["off_when"]: NOW})


def when_it_happened(label: str, keys: dict[str, str], prefix: str = "") -> None:
    """Now or earlier (a day and a time in UTC, neither in the future) for the form whose keys are given."""
    when = st.radio(label, (NOW, EARLIER), key=keys[f"{prefix}when"], horizontal=True)
    if when == EARLIER:
        wall = datetime.now(UTC)
        moment = st.columns(2)
        moment[0].date_input("Day (UTC)", value=wall.date(), max_value=wall.date(), key=keys[f"{prefix}day"])
        moment[1].time_input("Time (UTC)", value=wall.time().replace(second=0, microsecond=0), step=60,
                             key=keys[f"{prefix}time"])


def show_outcome(form: str, animal_id: str) -> None:
    """Say, once, what became of the last change asked with `form` for this animal."""
    kept = st.session_state.get(OUTCOME_KEY)
    if kept is None or kept[:2] != (form, animal_id):
        return
    outcome = st.session_state.pop(OUTCOME_KEY)[2]
    show = {"success": st.success, "info": st.info}.get(outcome.kind, st.error)
    answer = f"herd_answer_{form}"
    with st.container(key=answer):
        show(outcome.message, icon={"success": ":material/check_circle:", "info": ":material/info:"}.get(
            outcome.kind, ":material/error:"))
    # On a phone the form's button may sit at the screen's foot: the answer is brought into view, where the
    # hand that asked is. Each answer's script is numbered, so it runs though the last one drawn there was
    # the same script (an answer that replaces the one before it in place, when the tap came mid-run).
    said = st.session_state.get(ANSWERS_KEY, 0) + 1
    st.session_state[ANSWERS_KEY] = said
    st.html(into_view.script(answer, said), unsafe_allow_javascript=True)


st.title("Herd register")
if may_edit:
    st.caption("Who each animal is and which collar it wears since when. Renaming an animal keeps its id, "
               "track and alerts; a collar fitted or moved keeps what it reported with the animal that wore it "
               "then. Every change is in the audit log under your name.")
else:
    st.caption(f"Who each animal is and which collar it wears since when. You read the register as "
               f"{viewer.policy.title.lower()}; field technicians and admins rename animals and fit or move "
               "collars.")

changed = read(data.changes, url)
animals = herd_register.in_register_order(read(data.herd_register, url, viewer, changed))
if not animals:
    st.info("No animal in the register yet: a collar heard for the first time, or `tembo animals` on the "
            "store's machine, registers one.")
    markers.ready(markers.HERD_READY_ID, animals=0, editable=str(may_edit).lower())
    st.stop()

# A short heading above the table: on a phone its toolbar floats over the right of the line above.
st.subheader("The herd")
st.dataframe(herd_register.register_table(animals), hide_index=True, key="herd_table")
# One line, not three metrics a phone stacks.
st.markdown(herd_register.counts_line(animals))

by_id = {str(a.animal_id): a for a in animals}
ids = list(by_id)
selection.restore("herd_animal", "animal", ids, default=ids[0])
st.selectbox("Animal", ids, key="herd_animal", format_func=lambda animal_id: herd_register.label(by_id[animal_id]))
animal = by_id[st.session_state["herd_animal"]]
selection.mirror("animal", animal.animal_id)
keys = keys_of(animal.animal_id)
if (st.session_state.get(OUTCOME_KEY) or (None, animal.animal_id))[1] != animal.animal_id:
    del st.session_state[OUTCOME_KEY]  # said of another animal, which is no longer shown

st.header(views.isolated(animal.name))
st.markdown(herd_register.summary_line(animal))
st.page_link(navigation.animals_page(), label="Open the animal's page", icon=":material/pets:",
             query_params={"animal": str(animal.animal_id)})

st.subheader("Collars worn")
worn = read(data.collar_history, url, animal.animal_id, viewer, changed)
if worn:
    st.dataframe(herd_register.history_table(worn), hide_index=True, key="herd_history")
else:
    st.caption("No collar fitted to this animal yet.")

if may_edit:
    st.subheader("Rename or correct")
    with st.form(f"herd_rename_{animal.animal_id}", border=True):
        st.text_input("Name", value=animal.name, key=keys["name"], max_chars=herd_register.MAX_NAME)
        st.text_input("Species", value=animal.species, key=keys["species"], max_chars=herd_register.MAX_SPECIES,
                      help="The scientific name, e.g. Loxodonta africana")
        sexes = herd_register.sex_choices(animal.sex)
        st.selectbox("Sex", sexes, index=sexes.index(animal.sex) if animal.sex in sexes else 0, key=keys["sex"])
        st.form_submit_button("Save", type="primary", icon=":material/save:", on_click=rename, args=(animal,),
                              key=f"herd_save_{animal.animal_id}")
    show_outcome(RENAME, animal.animal_id)

    st.subheader("Fit or move a collar")
    st.caption("The collar the animal wears now comes off. A collar another animal wears moves only when you "
               "say so; that animal then wears none and keeps its track and alerts.")
    st.text_input("Collar", key=keys["collar"], placeholder="device id or DevEUI, e.g. collar-004",
                  help="A collar Tembo has never heard is registered as a new collar.")
    st.checkbox("Take it from the animal wearing it", key=keys["move"])
    when_it_happened("Went on", keys)
    st.button("Fit collar", icon=":material/sensors:", on_click=fit, args=(animal, animals),
              key=f"herd_fit_{animal.animal_id}")
    show_outcome(FIT, animal.animal_id)

    if animal.device_id is not None or (st.session_state.get(OUTCOME_KEY) or ("",))[0] == TAKE_OFF:
        st.subheader("Take the collar off")
        if animal.device_id is not None:
            st.caption(f"Collar {animal.device_id} comes off with no other fitted: nobody wears it until it is "
                       "fitted again, and what it reports from then on raises no alert; its alerts still open are "
                       f"closed. {views.isolated(animal.name)} keeps its track and alerts.")
            when_it_happened("Came off", keys, prefix="off_")
            st.button("Take collar off", icon=":material/link_off:", on_click=take_off, args=(animal,),
                      key=f"herd_take_off_{animal.animal_id}")
        show_outcome(TAKE_OFF, animal.animal_id)

stock = read(data.collars_in_stock, url, viewer, changed)
if stock:  # collars taken off with none fitted: no animal, so no row of the herd (below the animal's forms)
    st.subheader("Collars in stock")
    st.dataframe(herd_register.stock_table(stock), hide_index=True, key="herd_stock")
    st.markdown(herd_register.stock_line(stock))
markers.ready(markers.HERD_READY_ID, animals=len(animals), animal=animal.animal_id, editable=str(may_edit).lower())
