"""Alerts page: open alerts, most urgent first; acknowledge them and resolve them with a verdict.

Every acknowledgement and resolution carries the ranger's name from the sidebar; the verdict
(true alert, false alarm, unknown) measures each alert type's precision.
"""

from __future__ import annotations

from collections import Counter

import streamlit as st

from lora_bridge.errors import BridgeError
from lora_bridge.views import AlertView
from ranger_dashboard import config, data, navigation, palette, roles, selection, views

FLASH_KEY = "alerts_flash"

options = config.options()
url = options.database_url
role = roles.role(options.role)
now = data.now(options)
alerts = views.sort_alerts(data.open_alerts(url))
by_id = {str(a.alert_id): a for a in alerts}


def alert_actions(alert: AlertView) -> None:
    """Acknowledge and resolve buttons, in the name the ranger typed in the sidebar."""
    ranger = selection.ranger_name()
    if not ranger:
        st.warning("Type your name in the sidebar to acknowledge or resolve alerts.")
    if st.button(
        "Acknowledge",
        key="acknowledge",
        disabled=not ranger or not views.can_acknowledge(alert),
        help="Tell the other rangers you are on it.",
    ):
        try:
            data.acknowledge_alert(url, alert.alert_id, ranger)
        except BridgeError as error:
            st.error(f"Could not acknowledge: {error}")
        else:
            st.session_state[FLASH_KEY] = f"Alert acknowledged by {ranger}."
            st.rerun()
    verdict_label = st.radio("Verdict", list(views.VERDICTS), key="verdict", horizontal=True)
    if st.button(
        "Resolve",
        key="resolve",
        type="primary",
        disabled=not ranger or not views.can_resolve(alert),
        help="Close the alert with your verdict.",
    ):
        try:
            data.resolve_alert(url, alert.alert_id, ranger, views.VERDICTS[verdict_label])
        except BridgeError as error:
            st.error(f"Could not resolve: {error}")
        else:
            st.session_state[FLASH_KEY] = f"Alert resolved by {ranger}: {verdict_label.lower()}."
            selection.mirror("alert", None)
            del st.session_state["alert"]
            st.rerun()


st.title("Alerts")
flash = st.session_state.pop(FLASH_KEY, None)
if flash:
    st.success(flash)


def verdict_summary() -> None:
    """How often each alert type was a true alert, from the verdicts rangers gave."""
    verdicts = data.alert_verdicts(url)
    if verdicts:
        with st.expander("Alert precision from rangers' verdicts"):
            st.dataframe(views.precision_table(verdicts), hide_index=True)


if not alerts:
    selection.mirror("alert", None)
    st.info("No open alerts.")
    verdict_summary()
    st.stop()

counts = Counter(palette.priority_step(a.priority) for a in alerts)
columns = st.columns(len(palette.PRIORITY_STEPS))
for column, step in zip(columns, palette.PRIORITY_STEPS, strict=True):
    column.metric(f"{palette.PRIORITY_LABELS[step].capitalize()} priority", counts[step])

st.dataframe(
    views.style_alert_table(views.alert_table(alerts, now, show_positions=role.exact_positions)),
    hide_index=True,
)

alert_ids = list(by_id)
selection.restore("alert", "alert", alert_ids, default=alert_ids[0])
st.selectbox("Alert", alert_ids, key="alert", format_func=lambda alert_id: views.alert_label(by_id[alert_id]))
chosen_id = st.session_state["alert"]
selection.mirror("alert", chosen_id)
alert = by_id[chosen_id]

if role.exact_positions:
    position_text = views.format_position(alert.lat, alert.lon) or "unknown"
else:
    position_text = f"withheld from the {role.title.lower()} view"

details, actions = st.columns([1, 1])
with details:
    st.subheader(views.alert_type_label(alert.alert_type))
    st.badge(
        f"{palette.priority_label(alert.priority)} priority",
        color=palette.priority_badge_colour(alert.priority),
    )
    st.markdown(
        f"**Animal:** {alert.name or alert.device_id} (collar {alert.device_id})  \n"
        f"**Raised:** {views.format_time(alert.time)} UTC, {views.format_age(alert.time, now)}  \n"
        f"**Position:** {position_text}  \n"
        f"**Priority:** {alert.priority} ({palette.priority_label(alert.priority)})  \n"
        f"**State:** {views.state_text(alert)}  \n"
        f"**Raised by:** {alert.source}" + (f" ({alert.occurrences} times)" if alert.occurrences > 1 else "")
    )

    if alert.animal_id is not None:
        st.page_link(
            navigation.live_map_page(),
            label="Show on the live map",
            icon=":material/my_location:",
            query_params={"animal": str(alert.animal_id)},
        )
    if role.exact_positions and alert.evidence:
        with st.expander("Evidence"):
            st.json(alert.evidence, expanded=2)

    history = views.alert_history_table(data.alert_events(url, alert.alert_id))
    if not history.empty:
        st.caption("History")
        st.dataframe(history, hide_index=True)

with actions:
    if role.handles_alerts:
        alert_actions(alert)
    else:
        st.info(f"The {role.title.lower()} view shows alerts; rangers acknowledge and resolve them.")

verdict_summary()
