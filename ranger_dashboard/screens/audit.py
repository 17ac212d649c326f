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
else:
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

# Sign-in lockouts and live sign-ins: an admin lifts a lock or ends someone's sign-ins here too
# (`tembo users unlock` / `tembo users signout` on the store's machine do the same).
bridge = data.bridge(options.database_url)
st.subheader("Sign-in lockouts")
locks = [row for row in bridge.lockouts(viewer=viewer) if row.locked_until is not None]
if not locks:
    st.caption("Nobody is locked out.")
for row in locks:
    left, right = st.columns([4, 1], vertical_alignment="center")
    what = "username" if row.scope == "user" else "address"
    left.write(f"{what} **{row.key}** ({row.scope.replace('_', ' ')}) locked until "
               f"{views.format_time(row.locked_until)} UTC, lock {row.locks} in a row")
    if right.button("Unlock", key=f"unlock_{row.scope}_{row.key}"):
        if row.scope == "user":
            bridge.unlock(actor=viewer, username=row.key)
        else:
            bridge.unlock(actor=viewer, client=row.key)
        st.rerun()

st.subheader("Signed in now")
live = bridge.sessions(viewer=viewer)
st.dataframe(
    pd.DataFrame(
        {
            "Who": [s.username for s in live],
            "Role": [s.role for s in live],
            "From": [s.client or "" for s in live],
            "Signed in (UTC)": [views.format_time(s.created_at) for s in live],
            "Last seen (UTC)": [views.format_time(s.last_seen_at) if s.last_seen_at else "" for s in live],
            "Expires (UTC)": [views.format_time(s.expires_at) for s in live],
        }
    ),
    hide_index=True,
)
others = sorted({s.username for s in live} - {viewer.username})
if others:
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    chosen = left.selectbox("End every sign-in of", others, key="end_sessions_of")
    if right.button("End sign-ins", key="end_sessions"):
        bridge.end_sessions(chosen, actor=viewer)
        st.rerun()
