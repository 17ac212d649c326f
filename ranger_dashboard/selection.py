"""Selections a ranger makes, mirrored to the URL (`st.query_params`) so a link can be shared.

A page calls `restore` before drawing its widget (the URL wins on the first run of a session) and
`mirror` after it, so the address bar always says what is selected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

RANGER_KEY = "ranger"


def restore(key: str, param: str, options: Sequence[Any], default: Any = None) -> None:
    """Seed widget `key` from query parameter `param` when the session has no value for it yet.

    Values are compared as strings (the URL has nothing else); an unknown value gives `default`.
    """
    if key in st.session_state and st.session_state[key] in options:
        return
    raw = st.query_params.get(param)
    by_text = {str(option): option for option in options}
    st.session_state[key] = by_text.get(raw, default) if raw is not None else default
    if st.session_state[key] not in options:
        st.session_state[key] = options[0] if options else None


def mirror(param: str, value: Any) -> None:
    """Write `value` to query parameter `param`; remove the parameter for None or ''."""
    if value is None or value == "":
        if param in st.query_params:
            del st.query_params[param]
    elif st.query_params.get(param) != str(value):
        st.query_params[param] = str(value)


def ranger_name() -> str:
    """The name the ranger typed in the sidebar, stripped; '' when none."""
    return str(st.session_state.get(RANGER_KEY) or "").strip()
