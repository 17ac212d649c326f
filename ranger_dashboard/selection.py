"""Selections a ranger makes, mirrored to the URL (`st.query_params`) so a link can be shared.

A page calls `restore` before drawing its widget and `mirror` after it, so the address bar always
says what is selected. The URL wins when it says something the page did not write itself: on the
first run of a session, and after a link (a shared one, or "Show on the live map") changed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

RANGER_KEY = "ranger"


def _mirrored_key(param: str) -> str:
    return f"_mirrored_{param}"


def restore(key: str, param: str, options: Sequence[Any], default: Any = None) -> None:
    """Set widget `key` from query parameter `param` when the URL says something new, or when the
    session has no valid value yet.

    Values are compared as strings (the URL has nothing else); an unknown value gives `default`.
    """
    raw = st.query_params.get(param)
    by_text = {str(option): option for option in options}
    url_changed = raw is not None and raw != st.session_state.get(_mirrored_key(param)) and raw in by_text
    if url_changed:
        st.session_state[key] = by_text[raw]
    elif key not in st.session_state or st.session_state[key] not in options:
        st.session_state[key] = by_text.get(raw, default) if raw is not None else default
    if st.session_state[key] not in options:
        st.session_state[key] = options[0] if options else None


def mirror(param: str, value: Any) -> None:
    """Write `value` to query parameter `param`; remove the parameter for None or ''."""
    if value is None or value == "":
        st.session_state.pop(_mirrored_key(param), None)
        if param in st.query_params:
            del st.query_params[param]
        return
    st.session_state[_mirrored_key(param)] = str(value)
    if st.query_params.get(param) != str(value):
        st.query_params[param] = str(value)


def ranger_name() -> str:
    """The name the ranger typed in the sidebar, stripped; '' when none."""
    return str(st.session_state.get(RANGER_KEY) or "").strip()
