"""An alert's evidence on the Alerts page: the animal's track before and after the alert, its
behaviour around it, its collar's battery. Drawn with Streamlit from the bridge's views."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import streamlit as st
from pyproj import Geod

from ranger_dashboard import data, map_layers, roles, views

GEOD = Geod(ellps="WGS84")


def track_length_m(fixes: list[Any]) -> float:
    """Length of a track along the WGS84 ellipsoid, in metres."""
    if len(fixes) < 2:
        return 0.0
    return float(GEOD.line_length([p.lon for p in fixes], [p.lat for p in fixes]))


def alert_evidence(url: str, alert: Any, role: roles.Role, window: timedelta, now: datetime) -> None:
    """Track before/after (roles with exact positions only), behaviour and battery around `alert`,
    up to `now` at the latest (the moment the page shows)."""
    viewer = roles.current_viewer()
    start, end = alert.time - window, min(alert.time + window, max(now, alert.time))
    hours = window.total_seconds() / 3600
    if role.exact_positions:
        fixes = data.track_between(url, str(alert.animal_id), start, end, viewer)
        before = [p for p in fixes if p.time <= alert.time]
        after = [p for p in fixes if p.time >= alert.time]
        if fixes:
            raised = (alert.lat, alert.lon) if alert.lat is not None and alert.lon is not None else None
            st.pydeck_chart(
                map_layers.evidence_deck(data.geography(url), before, after, raised),
                height=300,
                key=f"evidence-map-{alert.alert_id}",
            )
            st.caption(
                f"Track {hours:g} h before (amber, {len(before)} fixes, {track_length_m(before):,.0f} m) "
                f"and after (cyan, {len(after)} fixes, {track_length_m(after):,.0f} m) the alert; "
                "white ring: where it was raised."
            )
        else:
            st.caption(f"No fixes within {hours:g} h of the alert.")
    else:
        st.caption(f"The track is withheld from the {role.title.lower()} view.")

    frame = views.activity_frame(
        data.activity(url, str(alert.animal_id), start, viewer, until=end)
    )
    if not frame.empty:
        shares = views.behaviour_shares(frame)
        st.markdown(
            f"**Behaviour within {hours:g} h:** "
            + " · ".join(f"{behaviour} {share:.0f} %" for behaviour, share in shares.items())
        )
        st.bar_chart(frame[list(shares.index)], y_label="Share of interval (%)", stack=True, height=180)
    if not role.exact_positions:  # the collar as it had reported by the role's cutoff, like its fixes
        animal = data.animal(url, str(alert.animal_id), viewer)
        if animal is not None:
            battery = views.format_battery(animal.battery_mv, data.low_battery_mv(url)) or "unknown"
            st.markdown(
                f"**Collar as reported by the {role.title.lower()} view's delay:** battery {battery}"
                + (f" · {animal.temperature_c:.1f} °C" if animal.temperature_c is not None else "")
                + f" · last heard {views.format_age(animal.last_seen, now)}"
            )
        return
    collar = data.device(url, alert.device_id)  # the collar alone: no other animal's place is read or logged
    if collar is not None:
        battery = views.format_battery(collar.battery_mv, data.low_battery_mv(url)) or "unknown"
        trend = data.battery_trend(url, collar.device_id)
        slope = trend.get("slope_mv_per_day") if trend else None
        st.markdown(
            f"**Collar now:** battery {battery}"
            + (f" ({slope:+.1f} mV/day)" if isinstance(slope, int | float) else "")
            + (f" · {collar.temperature_c:.1f} °C" if collar.temperature_c is not None else "")
            + f" · last heard {views.format_age(collar.last_seen, now)}"
        )
