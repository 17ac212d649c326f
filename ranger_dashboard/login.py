"""The dashboard's login gate: who is looking, checked through the bridge's service layer.

A dashboard started with `--role visitor` is an unattended visitor-centre kiosk: nobody signs in
and every page sees as the visitor role, whatever it asks for. Any other dashboard asks for a
username and password (accounts made with `tembo users add`); the account must hold the
dashboard's role or be an admin, or the dashboard is one for every account (`--role any`, the demo's),
where each sees what its own role allows. A sign-in is a session in the bridge (`Bridge.sign_in`): its
secret is kept in `st.session_state[SESSION_KEY]` for this browser tab and in an HttpOnly cookie
for the next page load (`session_cookie`), and checked on every full run, so a signed-out, expired,
removed, re-passworded or role-changed account is locked out at once. Repeated wrong passwords lock
a username or the browser's address out for a growing time (`lora_bridge.access.throttle`). The
signed-in `lora_bridge.access.Viewer` is kept in `st.session_state[roles.VIEWER_KEY]` for the pages.
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import streamlit as st

from lora_bridge.access import VISITOR, Viewer
from lora_bridge.errors import AuthenticationFailed, TooManyAttempts
from lora_bridge.store.utc import utc_now
from ranger_dashboard import data, roles, session_cookie
from ranger_dashboard.config import DashboardOptions

logger = logging.getLogger(__name__)

SESSION_KEY = "tembo_session"
FORM_KEY = "sign-in"
HANDOFF_KEY = "tembo_cookie_code"  # a one-time code the next run posts, so the browser gets the cookie
CLEAR_COOKIE_KEY = "tembo_clear_cookie"  # set by sign_out: the next run clears the browser's cookie
REQUESTED_PAGE_KEY = "tembo_requested_page"  # (URL path, query) a link asked for before the sign-in


def kiosk_viewer() -> Viewer:
    """The viewer of a visitor-centre kiosk (named after the machine it runs on, for the audit log)."""
    return Viewer(f"kiosk@{socket.gethostname()}"[:64], VISITOR)


def admitted(viewer: Viewer, options: DashboardOptions) -> bool:
    """True when viewer may use a dashboard started for options.role (`roles.admits`)."""
    return roles.admits(options.role, viewer.role)


def client_address() -> str | None:
    """The address this browser's requests come from, as the dashboard's server sees it:
    "localhost" for this machine (Streamlit gives no address then) and for whatever a reverse proxy
    on it forwards; None when no request is behind this run (a test harness)."""
    try:
        address = st.context.ip_address
        host = st.context.headers.get("host")
    except Exception:
        return None
    if address:
        return str(address)[:64]
    return "localhost" if host else None


def cookie_secret() -> str | None:
    """The session secret of the cookie this page was loaded with, if any."""
    try:
        value = st.context.cookies.get(session_cookie.cookie_name(st.context.headers.get("host")))
    except Exception:
        return None
    return value or None


def signed_in_viewer(options: DashboardOptions) -> Viewer | None:
    """The viewer of this session: the kiosk's, or the one of a live sign-in (kept for this tab, or
    brought back by the session cookie on a new page load); None when nobody is signed in (the
    caller shows `sign_in_form`)."""
    if options.role == VISITOR:
        viewer = kiosk_viewer()
        st.session_state[roles.VIEWER_KEY] = viewer
        return viewer
    from_cookie = False
    secret = st.session_state.get(SESSION_KEY)
    if not secret and not st.session_state.get(CLEAR_COOKIE_KEY):
        secret, from_cookie = cookie_secret(), True
    if secret:
        try:
            viewer = data.bridge(options.database_url).viewer_for_session(secret)
        except AuthenticationFailed:
            viewer = None
        if viewer is not None and admitted(viewer, options):
            st.session_state[SESSION_KEY] = secret
            st.session_state[roles.VIEWER_KEY] = viewer
            if from_cookie:
                logger.info("sign-in resumed from its cookie", extra={"username": viewer.username, "role": viewer.role})
            return viewer
        if from_cookie:  # a cookie of an ended or expired sign-in: the form has the browser drop it
            st.session_state[CLEAR_COOKIE_KEY] = True
    st.session_state.pop(SESSION_KEY, None)
    st.session_state.pop(roles.VIEWER_KEY, None)
    return None


def still_signed_in(options: DashboardOptions) -> bool:
    """True while this tab's sign-in is live and admitted as the page saw it; False once it ended
    (signed out elsewhere, ended by an admin for a lost phone, expired, its account removed or given
    another role). The self-refreshing panels (`st.fragment(run_every=...)`) rerun only themselves,
    not app.py's gate, so they ask this on every refresh and rerun the app when it says False."""
    if options.role == VISITOR:
        return True
    secret = st.session_state.get(SESSION_KEY)
    shown = st.session_state.get(roles.VIEWER_KEY)
    if not secret or shown is None:
        return False
    try:
        viewer = data.bridge(options.database_url).viewer_for_session(secret)
    except AuthenticationFailed:
        logger.info("sign-in ended while its page was open", extra={"username": shown.username, "role": shown.role})
        return False
    return viewer == shown and admitted(viewer, options)


def require_live_sign_in(options: DashboardOptions) -> None:
    """In a self-refreshing panel: rerun the whole app (whose gate shows the sign-in form) when this
    tab's sign-in has ended, before the panel reads anything."""
    if not still_signed_in(options):
        st.rerun(scope="app")


def remember_requested_page() -> None:
    """Before the sign-in form: keep the page (its URL path) and the query the browser asked for, so
    a shared link (an alert from a notification, `/alerts?alert=17`) opens once the ranger has signed
    in. The gate's runs register no page, and the run after a sign-in would land on the live map."""
    if REQUESTED_PAGE_KEY in st.session_state:
        return
    try:
        url = st.context.url
    except Exception:  # no browser behind this run (a test harness)
        url = None
    path = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] if url else ""
    st.session_state[REQUESTED_PAGE_KEY] = (path, st.query_params.to_dict())


def open_requested_page(pages: list[st.Page]) -> None:
    """Right after a sign-in: switch to the page the link asked for, with its query, when the
    viewer's role may use it (one of `pages`, registered by st.navigation in this run)."""
    requested = st.session_state.pop(REQUESTED_PAGE_KEY, None)
    if not requested:
        return
    path, query = requested
    page = next((page for page in pages if path and page.url_path == path), None)  # "": the live map
    if page is not None:
        logger.info("opening the page asked for before the sign-in", extra={"page": path})
        st.switch_page(page, query_params=query)


def sign_in_form(options: DashboardOptions) -> None:
    """The sign-in form; on success the session is kept and the app runs again."""
    st.title("Tembo")
    if options.role == roles.ANY_ROLE:
        st.caption("Sign in: each account sees what its role allows.")
    else:
        st.caption(f"Sign in to the {roles.role(options.role).title.lower()} dashboard.")
    with st.form(FORM_KEY):
        username = st.text_input("Username", key="sign_in_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign_in_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        drop_stale_cookie()
        return
    bridge = data.bridge(options.database_url)
    try:
        viewer, secret = bridge.sign_in(username.strip(), password, client=client_address())
    except TooManyAttempts as error:
        st.error(f"Too many failed sign-ins: try again in {error.retry_after_s} s, or ask an admin to unlock.")
        drop_stale_cookie()
        return
    except AuthenticationFailed:
        st.error("Wrong username or password.")
        drop_stale_cookie()
        return
    if not admitted(viewer, options):
        bridge.sign_out(secret)
        st.error(f"This dashboard is for the {options.role.replace('_', ' ')} role; your account is {viewer.role}.")
        drop_stale_cookie()
        return
    expires = bridge.session_expiry(secret)
    max_age = int((expires - utc_now()).total_seconds()) if expires else 0
    st.session_state[SESSION_KEY] = secret
    st.session_state[roles.VIEWER_KEY] = viewer
    st.session_state[HANDOFF_KEY] = session_cookie.issue(secret, max_age)
    st.session_state.pop(CLEAR_COOKIE_KEY, None)
    st.session_state.pop("sign_in_password", None)
    logger.info("signed in", extra={"username": viewer.username, "role": viewer.role})
    st.rerun()


def drop_stale_cookie() -> None:
    """After a sign-out, or when the page came with the cookie of an ended sign-in: have the browser
    drop the cookie (once). Never in the run of a successful sign-in, whose new cookie it would race."""
    if st.session_state.pop(CLEAR_COOKIE_KEY, None):
        st.html(session_cookie.sign_out_script(), unsafe_allow_javascript=True)


def keep_sign_in() -> None:
    """Right after a sign-in: have the browser fetch the session cookie (once)."""
    code = st.session_state.pop(HANDOFF_KEY, None)
    if code:
        st.html(session_cookie.handoff_script(code), unsafe_allow_javascript=True)


def sign_out(options: DashboardOptions) -> None:
    """End this session's sign-in in the bridge, forget the viewer, and clear the browser's cookie
    on the next run."""
    secret = st.session_state.pop(SESSION_KEY, None)
    viewer = st.session_state.pop(roles.VIEWER_KEY, None)
    st.session_state.pop(HANDOFF_KEY, None)
    st.session_state[CLEAR_COOKIE_KEY] = True
    if secret:
        data.bridge(options.database_url).sign_out(secret)
    logger.info("signed out", extra={"username": getattr(viewer, "username", None)})
