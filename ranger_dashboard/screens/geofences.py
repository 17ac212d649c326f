"""Geofences page: upload the reserve's fences (GeoJSON, GeoPackage or a zipped Shapefile, any CRS,
reprojected to WGS84 by the bridge), name and classify them, preview them on the map, and send the
ones a collar can hold to the collars as virtual fences. A file that does not read, has no CRS or
is a zip without a .shp gets the bridge's sentence saying which."""

from __future__ import annotations

import pydeck as pdk
import streamlit as st

from collar_firmware.config import MAX_FENCE_POINTS, MAX_FENCES
from lora_bridge.domain import geofence_files
from lora_bridge.errors import BridgeError
from ranger_dashboard import config, data, fence_upload, map_layers, roles

KINDS = fence_upload.KINDS
FENCE_COLOURS = {
    "farmland": [190, 140, 70, 200],
    "boundary": [200, 190, 140, 230],
    "village": [230, 110, 110, 200],
    "sanctuary": [110, 200, 140, 200],
}

options = config.options()
url = options.database_url

st.title("Geofences")
st.caption(
    f"A collar holds {MAX_FENCES} fences of at most {MAX_FENCE_POINTS} corners; it alerts on leaving a "
    "boundary or sanctuary and on entering farmland or a village. The bridge checks every fence on every fix."
)

with st.form("upload", clear_on_submit=False):
    upload = st.file_uploader(
        "Fence file",
        type=[suffix.lstrip(".") for suffix in geofence_files.SUFFIXES],
        key="fence_file",
        max_upload_size=geofence_files.MAX_FILE_MB,  # the bridge's limit: a larger file is refused here, not sent
        help=f"GeoJSON, GeoPackage or a zipped Shapefile, in any CRS; at most {geofence_files.MAX_FILE_MB} MB.",
    )
    kind = st.selectbox(
        "Kind", KINDS, key="fence_kind", help="What the polygons are; a 'kind' column in the file wins."
    )
    name = st.text_input("Name", key="fence_name", placeholder="From the file's 'name' column when empty")
    replace = st.checkbox("Replace the fences stored now", key="fence_replace")
    submitted = st.form_submit_button("Import", type="primary")
if submitted:
    if upload is None:
        st.error("Choose a GeoJSON, GeoPackage or zipped Shapefile first.")
    else:
        outcome = fence_upload.import_upload(
            url, upload.getvalue(), upload.name, kind, roles.current_viewer(), name, replace
        )
        (st.success if outcome.ok else st.error)(outcome.message)

fences = data.geofences(url)
if not fences:
    st.info("No fences yet: import the reserve's boundary, farmland and villages.")
    st.stop()

layers = map_layers.geography_layers(data.geography(url))
for fence in fences:
    layers.append(
        pdk.Layer(
            "GeoJsonLayer",
            id=f"fence-{fence.geofence_id}",
            data={
                "type": "Feature",
                "geometry": fence.geometry,
                "properties": {"tooltip": f"{fence.name} ({fence.kind})"},
            },
            stroked=True,
            filled=True,
            get_fill_color=[*FENCE_COLOURS.get(fence.kind, [200, 200, 200])[:3], 60],
            get_line_color=FENCE_COLOURS.get(fence.kind, [200, 200, 200, 220]),
            line_width_units=map_layers.PIXELS,
            get_line_width=3,
            pickable=True,
        )
    )
points = [
    {"lon": lon, "lat": lat}
    for fence in fences
    for lon, lat in map_layers._coordinates(fence.geometry)  # noqa: SLF001
]
preview = pdk.Deck(
    layers=layers,
    initial_view_state=map_layers.view_state_for(map_layers.map_bounds({}, points), 640, 420),
    map_provider=None,
    tooltip={"text": "{tooltip}"},
)
preview.map_style = map_layers.NO_BASE_MAP
st.pydeck_chart(preview, height=420, key="fence-preview")

table = [
    {
        "Id": f.geofence_id,
        "Name": f.name,
        "Kind": f.kind,
        "Alerts on": f.alert_on,
        "Corners": len(list(map_layers._coordinates(f.geometry))) - 1,  # noqa: SLF001
        "From": f"{f.source_file or ''} ({f.source_crs or '?'})",
    }
    for f in fences
]
st.dataframe(table, hide_index=True)

st.subheader("Send to the collars")
labels = {f.geofence_id: f"{f.name} ({f.kind})" for f in fences}
chosen = st.multiselect("Fences", list(labels), format_func=labels.get, key="fences_to_send")
if st.button("Send to every collar", key="send_fences", disabled=not chosen):
    try:  # in the signed-in user's name, in the audit log
        queued = data.send_fences_to_collars(url, chosen, roles.current_viewer())
    except BridgeError as error:
        st.error(f"Not sent: {error}")
    else:
        st.success(
            f"{len(queued)} downlinks queued ({len(chosen)} fence(s)); collars confirm each part with an ack."
        )
