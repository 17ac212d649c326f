"""Ids of the DOM markers the pages write once they carry everything they show: the dashboard bench
and the browser tests wait for these (never for fixed times or network idle)."""

from __future__ import annotations

import streamlit as st

MAP_READY_ID = "tembo-map-ready"
ALERTS_READY_ID = "tembo-alerts-ready"
ANIMAL_READY_ID = "tembo-animal-ready"
HERD_READY_ID = "tembo-herd-ready"


def ready(marker_id: str, **counts: object) -> None:
    """Write an invisible `<span id=marker_id data-KEY="VALUE" ...>` into the page."""
    attributes = " ".join(f'data-{key.replace("_", "-")}="{value}"' for key, value in counts.items())
    st.html(f'<span id="{marker_id}" {attributes}></span>')
