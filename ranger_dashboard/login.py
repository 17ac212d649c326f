"""The dashboard's login gate: who is looking, checked through the bridge's service layer.

A dashboard started with `--role visitor` is an unattended visitor-centre kiosk: nobody signs in
and every page sees as the visitor role, whatever it asks for. Any other dashboard asks for a
username and password (accounts made with `tembo users add`); the account must hold the
dashboard's role or be an admin. A sign-in is a session in the bridge (`Bridge.sign_in`): its
secret is kept in `st.session_state[SESSION_KEY]` and checked on every full run, so a signed-out,
expired, removed or re-passworded account is locked out at once. The signed-in
`lora_bridge.access.Viewer` is kept in `st.session_state[roles.VIEWER_KEY]` for the pages.
"""

from __future__ import annotations

import logging
import socket

import streamlit as st

from lora_bridge.access import ADMIN, VISITOR, Viewer
from lora_bridge.errors import AuthenticationFailed
from ranger_dashboard import data, roles
from ranger_dashboard.config import DashboardOptions

logger = logging.getLogger(__name__)

SESSION_KEY = "tembo_session"
FORM_KEY = "sign-in"


def kiosk_viewer() -> Viewer:
    """The viewer of a visitor-centre kiosk (named after the machine it runs on, for the audit log)."""
    return Viewer(f"kiosk@{socket.gethostname()}"[:64], VISITOR)


def admitted(viewer: Viewer, options: DashboardOptions) -> bool:
    """True when viewer may use a dashboard started for options.role."""
    return viewer.role in (options.role, ADMIN)


def signed_in_viewer(options: DashboardOptions) -> Viewer | None:
    """The viewer of this session: the kiosk's, or the one of a live sign-in; None when nobody is
    signed in (the caller shows `sign_in_form`)."""
    if options.role == VISITOR:
        viewer = kiosk_viewer()
        st.session_state[roles.VIEWER_KEY] = viewer
        return viewer
    secret = st.session_state.get(SESSION_KEY)
    if secret:
        try:
            viewer = data.bridge(options.database_url).viewer_for_session(secret)
        except AuthenticationFailed:
            viewer = None
        if viewer is not None and admitted(viewer, options):
            st.session_state[roles.VIEWER_KEY] = viewer
            return viewer
    st.session_state.pop(SESSION_KEY, None)
    st.session_state.pop(roles.VIEWER_KEY, None)
    return None


def sign_in_form(options: DashboardOptions) -> None:
    """The sign-in form; on success the session is kept and the app runs again."""
    st.title("Tembo")
    st.caption(f"Sign in to the {roles.role(options.role).title.lower()} dashboard.")
    with st.form(FORM_KEY):
        username = st.text_input("Username", key="sign_in_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign_in_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    try:
        viewer, secret = data.bridge(options.database_url).sign_in(username.strip(), password)
    except AuthenticationFailed:
        st.error("Wrong username or password.")
        return
    if not admitted(viewer, options):
        data.bridge(options.database_url).sign_out(secret)
        st.error(f"This dashboard is for the {options.role.replace('_', ' ')} role; your account is {viewer.role}.")
        return
    st.session_state[SESSION_KEY] = secret
    st.session_state[roles.VIEWER_KEY] = viewer
    st.session_state.pop("sign_in_password", None)
    logger.info("signed in", extra={"username": viewer.username, "role": viewer.role})
    st.rerun()


def sign_out(options: DashboardOptions) -> None:
    """End this session's sign-in and forget the viewer."""
    secret = st.session_state.pop(SESSION_KEY, None)
    viewer = st.session_state.pop(roles.VIEWER_KEY, None)
    if secret:
        data.bridge(options.database_url).sign_out(secret)
    logger.info("signed out", extra={"username": getattr(viewer, "username", None)})
