"""Audit log page (admins): who saw which positions, exact or coarse, and when; who signed in and
who changed accounts, tokens and high-value flags. Read through `Bridge.audit_log`, which refuses
every role but admin."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from lora_bridge.errors import Forbidden
from ranger_dashboard import config, data, roles, views

DAYS = (1, 7, 30, 365)

options = config.options()
viewer = roles.current_viewer()

st.title("Audit log")
try:
    st.select_slider("Days back", DAYS, value=7, key="audit_days")
    since = data.now(options, viewer) - timedelta(days=int(st.session_state["audit_days"]))
    who = st.text_input("Only this username", key="audit_user").strip() or None
    entries = data.bridge(options.database_url).audit_log(viewer=viewer, since=since, username=who, limit=2000)
except Forbidden:
    st.error("Only admins read the audit log.")
    st.stop()

if not entries:
    st.info("Nothing logged in this period.")
    st.stop()
frame = pd.DataFrame(
    {
        "When (UTC)": [views.format_time(e.at) for e in entries],
        "Who": [e.username for e in entries],
        "Role": [e.role for e in entries],
        "What": [e.action.replace("_", " ") for e in entries],
        "Positions": [e.precision or "" for e in entries],
        "Animals": [e.animals for e in entries],
        "Reads": [e.repeats for e in entries],  # reads of one viewer, kind and minute share a line
        "Last (UTC)": [views.format_time(e.last_at or e.at) for e in entries],
        "Detail": [", ".join(f"{k}={v}" for k, v in e.detail.items() if k != "animal_ids") for e in entries],
    }
)
exact = sum(e.repeats for e in entries if e.precision == "exact")
st.caption(f"{len(entries)} entries, {exact} reads of exact positions (one line per viewer, kind and minute).")
st.dataframe(frame, hide_index=True)
