"""Animal page: one collared animal's track, home range (minimum convex polygon and kernel density),
daily activity budget, day and night activity, speed, battery and temperature, alert history, and
its fixes to download (CSV, GeoJSON, GeoPackage, Movebank CSV). The herd's table is below.

While the store is busy (a backup holds its write lock) the page shows what it last showed this viewer
for the same animal and days (`data.LAST_ANIMALS_READ`), marked not live, its downloads off, and runs
again every `refresh_s` seconds until the store answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from lora_bridge import exports
from lora_bridge.access import roles as access_roles
from lora_bridge.domain import home_range
from ranger_dashboard import as_of, config, data, map_layers, markers, roles, selection, views

PERIOD_DAYS = (1, 3, 7, 14, 30)
DEFAULT_PERIOD_DAYS = 7
# Set by the page's run before its retry fragment, so the fragment's first run (in the page's) does nothing.
RETRY_ARMED_KEY = "_animal_page_retry_armed"

options = config.options()
url = options.database_url
viewer = roles.current_viewer()
role = roles.role(viewer.role)
LAST = data.LAST_ANIMALS_READ  # while the store is busy: what this page showed this viewer last
data.start_stale_watch()
not_live = st.container()  # said at the top once the page knows whether anything was stale
live_now = data.now(options, viewer, when_busy=LAST)
moment = as_of.control(live_now)
now = moment or live_now
animals = sorted(data.animals(url, viewer, when_busy=LAST), key=lambda a: (a.name or "", a.device_id or ""))


@st.fragment(run_every=options.refresh_s)
def retry_while_stale() -> None:
    """While the page shows answers last read, run the whole page again every `refresh_s` seconds."""
    if st.session_state.pop(RETRY_ARMED_KEY, False):
        return  # the page's own run draws it
    st.rerun(scope="app")

if not animals:
    selection.mirror("animal", None)
    st.info("No collared animals yet.")
    st.stop()

by_id = {str(a.animal_id): a for a in animals}
animal_ids = list(by_id)
selection.restore("animal", "animal", animal_ids, default=animal_ids[0])
selection.restore("activity_days", "days", PERIOD_DAYS, default=DEFAULT_PERIOD_DAYS)
top = st.columns([2, 3])
top[0].selectbox("Animal", animal_ids, key="animal", format_func=lambda animal_id: by_id[animal_id].name)
top[1].select_slider("Days up to the last report", PERIOD_DAYS, key="activity_days")
animal = by_id[st.session_state["animal"]]
days = int(st.session_state["activity_days"])
selection.mirror("animal", st.session_state["animal"])
selection.mirror("days", days)
low_battery_mv = data.low_battery_mv(url)

st.header(animal.name or animal.device_id)
st.caption(f"{animal.species} · collar {animal.device_id or 'none fitted'}")
as_of.banner(moment, "The track, activity and alerts show this animal")
end = moment or animal.last_seen or now
since = end - timedelta(days=days)
# The bridge hands out the track as the viewer's role may see it (coarse and late for some roles).
if moment is None:
    fixes = data.animal_track(url, animal.animal_id, since, viewer, when_busy=LAST)
else:  # the track ending at the moment shown
    fixes = data.track_between(url, animal.animal_id, since, moment, viewer, when_busy=LAST)
columns = st.columns(6)
if moment is None:
    columns[0].metric(
        "Last seen", views.format_age(animal.last_seen, now), help=views.format_time_utc(animal.last_seen) or None
    )
else:
    last_fix = fixes[-1].time if fixes else None
    columns[0].metric("Last fix then", views.format_age(last_fix, moment), help=views.format_time_utc(last_fix) or None)
columns[1].metric("Battery", views.format_battery(animal.battery_mv, low_battery_mv) or "unknown")
columns[2].metric(
    "Temperature", "unknown" if animal.temperature_c is None else f"{animal.temperature_c:.1f} °C"
)
columns[3].metric("Behaviour", animal.behaviour or "unknown")
columns[4].metric("Firmware", animal.fw_version or "unknown")
columns[5].metric("Model", "unknown" if animal.model_version is None else str(animal.model_version))

if moment is not None:
    st.caption("Battery, temperature, behaviour and versions: the collar's latest report.")

# ------------------------------------------------------------------ track and home range
st.subheader("Track and home range")
mcp = home_range.minimum_convex_polygon(fixes)
kde = home_range.kernel_density_range(fixes)
if fixes:
    st.pydeck_chart(
        map_layers.animal_deck(data.geography(url), fixes, [r for r in (kde, mcp) if r is not None]),
        height=360,
        key=f"animal-map-{animal.animal_id}",
    )
    ranges = [r for r in (mcp, kde) if r is not None]
    st.caption(
        f"{len(fixes)} fixes in {days} d"
        + "".join(f" · {r.method}: {r.area_km2:,.2f} km²" for r in ranges)
        + ("" if role.exact_positions else f" · {role.describe_positions()}")
    )
else:
    st.info(f"No fixes from this collar in the last {days} days.")

speed = home_range.speeds(fixes)
if not speed.empty:
    st.markdown(
        f"**Speed:** median {speed['speed_km_h'].median():.2f} km/h · "
        f"fastest {speed['speed_km_h'].max():.2f} km/h · "
        f"{speed['distance_m'].sum() / 1000:,.1f} km travelled"
    )
    st.line_chart(
        speed.set_index("time")[["speed_km_h"]], x_label="Time (UTC)", y_label="Speed (km/h)", height=200
    )

# ------------------------------------------------------------------ activity
st.subheader("Activity")
summaries = [s for s in data.activity(url, animal.animal_id, since, viewer) if moment is None or s.time < moment]
frame = views.activity_frame(summaries)
if frame.empty:
    st.info("No activity summaries from this collar yet.")
else:
    shares = views.behaviour_shares(frame)
    st.markdown(
        "**Time per behaviour:** "
        + " · ".join(f"{behaviour} {share:.0f} %" for behaviour, share in shares.items())
    )
    budget = home_range.daily_budget(summaries)
    st.bar_chart(budget, x_label="Day (UTC)", y_label="Hours", stack=True, height=240)
    device = data.device(url, animal.device_id)
    offset = home_range.utc_offset_min(device.reported_settings if device else None)
    st.caption(f"By day and by night (the collar's night, local time UTC{offset / 60:+g} h)")
    st.dataframe(home_range.day_night_activity(summaries, offset))
    st.line_chart(
        frame[[views.VEDBA_MEAN, views.VEDBA_MAX]].rename(
            columns={views.VEDBA_MEAN: "VeDBA mean (mg)", views.VEDBA_MAX: "VeDBA max (mg)"}
        ),
        x_label="Interval start (UTC)",
        y_label="VeDBA (mg)",
        height=200,
    )

# ------------------------------------------------------------------ alerts
st.subheader("Alert history")
history = [
    a
    for a in data.alerts(url, viewer, None, 500, when_busy=LAST)
    if str(a.animal_id) == str(animal.animal_id) and (moment is None or a.time <= moment)
]
if history:
    st.dataframe(views.animal_alert_table(history), hide_index=True)
else:
    st.caption("No alerts for this animal.")

stale_since = data.stale_read_at()
# ------------------------------------------------------------------ downloads
if fixes and viewer.may(access_roles.EXPORT):  # as the API: rangers, researchers and admins export
    st.subheader("Download the fixes")
    stem = f"{(animal.name or animal.device_id).replace(' ', '_')}_{days}d"
    # the Shapefile's parts inside its zip: the name transliterated, the animal's id for a name in no Latin letters
    layer = f"{exports.latin_name(animal.name or animal.device_id, f'animal_{animal.animal_id}')}_{days}d"
    files = exports.files(fixes, animal.species, viewer, stem, layer)
    # As the API's files: the species in every file, and the GeoJSON and the Shapefile's README say whether the
    # points are exact.
    for button, file in zip(st.columns(len(files)), files, strict=True):
        button.download_button(file.label, file.data, file.filename, file.media_type,
                               disabled=stale_since is not None,
                               help=f"{views.NOT_LIVE_HEADLINE}; downloads return with it."
                               if stale_since is not None else None)

with st.expander(f"The herd ({len(animals)})"):
    st.dataframe(
        views.animal_table(animals, now, low_battery_mv, show_positions=role.exact_positions), hide_index=True
    )
if stale_since is not None:
    not_live.warning(views.stale_page_message("this animal and the herd as", "the downloads", stale_since,
                                              datetime.now(UTC), options.refresh_s),
                     icon=":material/hourglass_top:")
    st.session_state[RETRY_ARMED_KEY] = True
    retry_while_stale()
markers.ready(markers.ANIMAL_READY_ID, animal=animal.animal_id, fixes=len(fixes),
              stale="live" if stale_since is None else stale_since.isoformat())
