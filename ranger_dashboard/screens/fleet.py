"""Fleet health page (field technicians): every collar's battery and how long it has left, its
last uplink against its own reporting interval, radio (RSSI, SNR, gateway), lost uplinks, and the
firmware and model it runs. One service call (`Bridge.fleet_health`) fills the page, as the
signed-in role may see it (a field technician: each collar as heard by its animal's cutoff)."""

from __future__ import annotations

import streamlit as st

from ranger_dashboard import config, data, roles, views

options = config.options()
url = options.database_url
now = data.now(options)
viewer = roles.current_viewer()
collars = data.fleet_health(url, now.replace(second=0, microsecond=0), viewer)

st.title("Fleet health")
if not viewer.exact_positions:  # the last uplink's time and gateway say where and that an animal is now
    st.caption(f"Each collar as heard by the delay of the {viewer.policy.title.lower()} view "
               f"({viewer.policy.animals.describe()}; high-value animals {viewer.policy.high_value.describe()}): "
               "its last uplink, radio, gateway and lost uplinks.")
if not collars:
    st.info("No collar has been heard yet.")
    st.stop()

table = views.fleet_health_table(collars, now, data.low_battery_mv(url))
overdue = int((table[views.COL_UPLINK_DUE] == "overdue").sum())
columns = st.columns(4)
columns[0].metric("Collars", len(collars))
columns[1].metric("Overdue", overdue, help="Silent longer than their own reporting schedule allows")
columns[2].metric("Low battery", int(table[views.COL_BATTERY].str.endswith("(low)").sum()))
versions = table.groupby([views.COL_FIRMWARE, views.COL_MODEL]).size()
columns[3].metric("Firmware / model versions", len(versions))
st.dataframe(views.style_fleet_table(table), hide_index=True)
st.caption(
    "Battery life: the date the rules' least-squares battery trend reaches the collar's low level "
    "and empty. Uplink due: the collar's status interval (as it last reported it); overdue once "
    "silent longer than the offline rule allows. Lost uplinks: gaps in the frame counter."
)
with st.expander("Collars per firmware and model version"):
    st.dataframe(versions.rename("Collars").reset_index(), hide_index=True)
