"""Updates page for field technicians: which collar runs which firmware and model, the update
campaigns with their per-collar progress and history, and the controls to start, pause, resume
and abort one (roles with MANAGE_UPDATES). Everything goes through the bridge's service layer
(Bridge.start_campaign, steer_campaign, campaigns, fleet_versions), as the HTTP API's
/api/updates routes do."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lora_bridge.access import roles as access
from ranger_dashboard import config, data, markers, roles
from ranger_dashboard.update_tables import (
    ALL_SPECIES,
    GRID_KEY,
    LINES_KEY,
    TRACKED_ONLY,
    UPDATES_READY_ID,
    collar_choices,
    collar_lines,
    delivery_line,
    history_lines,
    narrow_screen_style,
    network_group_line,
    pause_line,
    progress_frame,
    species_of,
    summary,
    target_line,
    version_lines,
    versions_frame,
)

options = config.options()
bridge = data.bridge(options.database_url)
viewer = roles.current_viewer()  # the signed-in user steers, in their own name
may_steer = viewer.may(access.MANAGE_UPDATES)

st.title("Updates")
# each table a grid on a desk, wrapping lines on a phone: a grid of six columns or of long reasons scrolls sideways
# inside itself at 390 px
st.html(narrow_screen_style())
st.subheader("Which collar runs what")
# as the role may read each collar: a late role's battery and link as of its animal's cutoff, not live
versions = bridge.fleet_versions(viewer=viewer)
with st.container(key=f"{GRID_KEY}versions"):
    st.dataframe(versions_frame(versions), hide_index=True)
with st.container(key=f"{LINES_KEY}versions"):
    st.markdown("\n".join(f"* {line}" for line in version_lines(versions)))  # "*": not a campaign's "- " lines

st.subheader("Campaigns")
campaigns = bridge.campaigns()
if not campaigns:
    st.info("No update campaign yet.")
for campaign in campaigns:
    # open while it runs or waits for the technician (paused, stopped): its steps are inside
    with st.expander(summary(campaign), expanded=campaign["state"] in ("canary", "rolling", "paused", "stopped")):
        st.caption(f"canaries {campaign['canary_pct']} %, stop above {campaign['max_canary_failures_pct']} % "
                   f"failed canaries; gates: battery ≥ {campaign['min_battery_mv']} mV, "
                   f"RSSI ≥ {campaign['min_rssi_dbm']:g} dBm, spreading factor ≤ "
                   f"SF{campaign.get('max_spreading_factor', 12)}{target_line(campaign)}; by {campaign['created_by']}")
        if campaign.get("delivery"):
            st.caption(delivery_line(campaign["delivery"]))
            if pause_line(campaign):
                st.warning(pause_line(campaign))
            if network_group_line(campaign["delivery"]):
                st.caption(network_group_line(campaign["delivery"]))
        else:
            st.caption(TRACKED_ONLY)
        # each collar a line that wraps, the reason whole: a phone shows it without scrolling sideways (a grid
        # cuts the reason at its column's edge); failed collars first, the table still a tick away on a desk
        shown = st.selectbox("Collars", collar_choices(campaign), key=f"collars-{campaign['id']}")
        st.markdown("\n".join(f"- {line}" for line in collar_lines(campaign, shown)))
        if st.checkbox("As a table", key=f"table-{campaign['id']}"):
            st.dataframe(progress_frame(campaign), hide_index=True)
        if may_steer and campaign["steps"]:  # only the steps its state allows (none once it is done or aborted)
            columns = st.columns(len(campaign["steps"]))
            for column, action in zip(columns, campaign["steps"], strict=True):
                if column.button(action.capitalize(), key=f"{action}-{campaign['id']}"):
                    try:
                        bridge.steer_campaign(campaign["id"], action, viewer.username)
                    except ValueError as err:
                        st.error(str(err))
                    else:
                        st.rerun()
        history = pd.DataFrame(campaign["history"])
        if not history.empty:
            with st.container(key=f"{GRID_KEY}history-{campaign['id']}"):
                st.dataframe(history, hide_index=True)
            with st.container(key=f"{LINES_KEY}history-{campaign['id']}"):
                st.markdown("\n\n".join(history_lines(campaign["history"])))  # a paragraph an event

if may_steer:
    st.subheader("New campaign")
    with st.form("new-campaign"):
        name = st.text_input("Name")
        image = st.file_uploader("Signed update image (tembo release): its kind and version are read from it")
        fleet = bridge.fleet_versions(viewer=viewer)
        species = st.selectbox("Species (a group: the collars its animals wear)", [ALL_SPECIES] + species_of(fleet))
        devices = st.multiselect("Collars (none: all, or the species')", [v["device_id"] for v in fleet])
        canary_pct = st.slider("Canaries (%)", 0, 100, 10)
        max_fail = st.slider("Stop when failed canaries exceed (%)", 0, 100, 20)
        min_battery = st.number_input("Minimum battery (mV)", 2500, 4200, 3400)
        min_rssi = st.number_input("Minimum RSSI (dBm)", -140.0, 0.0, -120.0, step=0.5)
        max_sf = st.slider("Highest spreading factor (SF) of a collar's last uplink", 7, 12, 12)
        if st.form_submit_button("Start"):
            if image is None:
                st.error("Choose the signed update image (the .tmbu file tembo release wrote) to start a campaign.")
            else:
                try:
                    bridge.start_campaign(image.getvalue(), user=viewer.username, name=name or image.name,
                                          devices=devices or None, canary_pct=canary_pct,
                                          max_canary_failures_pct=max_fail, min_battery_mv=int(min_battery),
                                          min_rssi_dbm=float(min_rssi), max_spreading_factor=int(max_sf),
                                          species=None if species == ALL_SPECIES else species)
                except ValueError as err:
                    st.error(str(err))
                else:
                    st.rerun()
else:
    st.caption("Starting and steering campaigns is for field technicians.")
# the page is whole: each campaign as it was read ("3:paused 2:done"), which the browser stories wait for
markers.ready(UPDATES_READY_ID, campaigns=" ".join(f"{c['id']}:{c['state']}" for c in campaigns))
