"""Models page (researchers): the activity models the bridge knows today — the one shipped with the
firmware and every model in the researchers' registry — with their classes and how many collars
report running each. Training, comparing and promoting happen with `tembo models` (docs/researchers.md)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ranger_dashboard import config, data

options = config.options()
url = options.database_url
models = data.model_versions(url)

st.title("Models")
st.caption(
    "Collars name their behaviours with their model's own classes. Train on your labelled data, compare "
    "fairly (leave one animal out) and promote with `tembo models train / evaluate / compare / promote`; "
    "field technicians sign and roll out the promoted model on the Updates page."
)
if not models:
    st.info("No model known to the bridge.")
    st.stop()
table = pd.DataFrame(
    [
        {
            "Model version": m["model_version"],
            "Classes": ", ".join(m["classes"]) or "unknown to this bridge",
            "Collars running it": m["collars"],
        }
        for m in models
    ]
)
st.metric("Collars reporting a model", int(table["Collars running it"].sum()))
st.dataframe(table, hide_index=True)
