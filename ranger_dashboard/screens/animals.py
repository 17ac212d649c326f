"""Animals page: per collared animal, last seen, battery, behaviour, firmware and model versions,
and a summary of its activity (share of time per behaviour, VeDBA)."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from ranger_dashboard import config, data, roles, selection, views

ACTIVITY_DAYS = (1, 3, 7, 14, 30)
DEFAULT_ACTIVITY_DAYS = 7

options = config.options()
url = options.database_url
role = roles.role(options.role)
now = data.now(options)
animals = sorted(data.animals(url), key=lambda a: (a.name or "", a.device_id or ""))

st.title("Animals")
if not animals:
    selection.mirror("animal", None)
    st.info("No collared animals yet.")
    st.stop()

low_battery_mv = data.low_battery_mv(url)
st.dataframe(
    views.animal_table(animals, now, low_battery_mv, show_positions=role.exact_positions), hide_index=True
)

by_id = {str(a.animal_id): a for a in animals}
animal_ids = list(by_id)
selection.restore("animal", "animal", animal_ids, default=animal_ids[0])
st.selectbox("Animal", animal_ids, key="animal", format_func=lambda animal_id: by_id[animal_id].name)
animal = by_id[st.session_state["animal"]]
selection.mirror("animal", st.session_state["animal"])

st.header(animal.name or animal.device_id)
st.caption(f"{animal.species} · collar {animal.device_id or 'none fitted'}")
columns = st.columns(5)
columns[0].metric(
    "Last seen", views.format_age(animal.last_seen, now), help=views.format_time(animal.last_seen)
)
columns[1].metric("Battery", views.format_battery(animal.battery_mv, low_battery_mv) or "unknown")
columns[2].metric("Behaviour", animal.behaviour or "unknown")
columns[3].metric("Firmware", animal.fw_version or "unknown")
columns[4].metric("Model", "unknown" if animal.model_version is None else str(animal.model_version))

st.subheader("Activity")
selection.restore("activity_days", "days", ACTIVITY_DAYS, default=DEFAULT_ACTIVITY_DAYS)
days = st.select_slider("Days up to the last report", ACTIVITY_DAYS, key="activity_days")
selection.mirror("days", days)
since = animal.last_seen - timedelta(days=days) if animal.last_seen is not None else None
frame = views.activity_frame(data.activity(url, animal.animal_id, since))
if frame.empty:
    st.info("No activity summaries from this collar yet.")
    st.stop()

shares = views.behaviour_shares(frame)
st.markdown(
    "**Time per behaviour:** "
    + " · ".join(f"{behaviour} {share:.0f} %" for behaviour, share in shares.items())
)
behaviours = list(shares.index)
st.bar_chart(
    frame[behaviours],
    x_label="Interval start (UTC)",
    y_label="Share of interval (%)",
    stack=True,
    height=260,
)
st.line_chart(
    frame[[views.VEDBA_MEAN, views.VEDBA_MAX]].rename(
        columns={views.VEDBA_MEAN: "VeDBA mean (mg)", views.VEDBA_MAX: "VeDBA max (mg)"}
    ),
    x_label="Interval start (UTC)",
    y_label="VeDBA (mg)",
    height=220,
)
