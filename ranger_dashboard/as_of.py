"""The "as of" moment the live map, the Alerts page and the Animal page show.

A slider in the sidebar runs from `SPAN` before the dashboard's 'now' to 'now' in steps of `STEP`;
at its right end the pages are live (they follow new reports), anywhere else they show the reserve
as it stood then: each animal's last position at that moment, tracks ending there, the alerts open
then. The moment is kept for the session (`st.session_state[AS_OF_KEY]`, None when live) and in
the URL (`?at=2026-11-30T14:00`), so a link shows the same moment.

What a viewer sees at a moment is decided by the bridge (`Bridge.positions_at`, `Bridge.alerts_at`,
`Bridge.tracks(until=...)`): a role with a delay never sees past its cutoff, whatever moment is chosen.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

# The chosen moment for the session: None (live) or an aware UTC datetime.
AS_OF_KEY = "as_of"
SLIDER_KEY = "as_of_slider"
PARAM = "at"
_MIRRORED = "_mirrored_at"
STEP = timedelta(hours=1)
SPAN = timedelta(days=30)
URL_FORMAT = "%Y-%m-%dT%H:%M"


def slider_range(now: datetime) -> tuple[datetime, datetime]:
    """(first, last) moment of the slider for `now`: `last` is `now` rounded up to a whole STEP (the
    live end), `first` SPAN before it."""
    now = now.astimezone(UTC)
    floor = now.replace(minute=0, second=0, microsecond=0)
    last = floor if floor == now else floor + STEP
    return last - SPAN, last


def parse(text: str | None) -> datetime | None:
    """A moment from the URL ('2026-11-30T14:00', UTC), or None when absent or not a time."""
    if not text:
        return None
    try:
        return datetime.strptime(text, URL_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def current() -> datetime | None:
    """The session's chosen moment, None when live."""
    value = st.session_state.get(AS_OF_KEY)
    return value if isinstance(value, datetime) else None


def _restore_from_url() -> None:
    raw = st.query_params.get(PARAM)
    if raw is not None and raw != st.session_state.get(_MIRRORED):
        st.session_state[AS_OF_KEY] = parse(raw)
        st.session_state[_MIRRORED] = raw


def _mirror(value: datetime | None) -> None:
    if value is None:
        st.session_state.pop(_MIRRORED, None)
        if PARAM in st.query_params:
            del st.query_params[PARAM]
        return
    text = value.strftime(URL_FORMAT)
    st.session_state[_MIRRORED] = text
    if st.query_params.get(PARAM) != text:
        st.query_params[PARAM] = text


def _slid(last: datetime) -> None:
    """The ranger moved the slider: its right end (`last`) is live, anywhere else that moment."""
    moment = st.session_state[SLIDER_KEY].replace(tzinfo=UTC)
    st.session_state[AS_OF_KEY] = None if moment >= last else moment


def control(now: datetime) -> datetime | None:
    """The "As of" slider in the sidebar; the chosen moment, or None when it stands at 'now' (live)."""
    _restore_from_url()
    first, last = slider_range(now)
    chosen = current()
    if chosen is not None:
        chosen = min(max(chosen, first), last)
        if chosen >= last:
            chosen = None
    st.session_state[AS_OF_KEY] = chosen
    # The widget works in naive UTC and is set from the session's moment before every run, so a
    # live session stays live when 'now' moves on (a move of the slider lands in `_slid` first).
    st.session_state[SLIDER_KEY] = (chosen or last).replace(tzinfo=None)
    with st.sidebar:
        st.slider(
            "As of (UTC)",
            min_value=first.replace(tzinfo=None),
            max_value=last.replace(tzinfo=None),
            step=STEP,
            format="MMM D, HH:mm",
            key=SLIDER_KEY,
            on_change=_slid,
            args=(last,),
            help="Show the reserve as it was at this moment: positions, tracks ending here, alerts "
            "open then. At the right end the pages are live.",
        )
        if chosen is not None:
            st.button("Back to live", key="as_of_live", on_click=go_live, icon=":material/update:")
    _mirror(chosen)
    return chosen


def go_live() -> None:
    """Back to live: the pages follow new reports again."""
    st.session_state[AS_OF_KEY] = None
    _mirror(None)


def banner(moment: datetime | None, what: str) -> None:
    """Say, above a page's content, that it shows `what` as of `moment` (nothing when live)."""
    if moment is not None:
        st.info(
            f"{what} as of **{moment:%Y-%m-%d %H:%M} UTC**, not live. Move the sidebar's "
            "\"As of\" slider to its right end, or press \"Back to live\", to follow new reports.",
            icon=":material/history:",
        )
