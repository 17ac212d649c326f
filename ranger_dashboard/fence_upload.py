"""What the Geofences page says about an uploaded fence file: imported (and from which CRS), or
the bridge's sentence on what is wrong with it. A plain function, so tests call it directly
(Streamlit's AppTest cannot upload a file)."""

from __future__ import annotations

from dataclasses import dataclass

from lora_bridge.access import Viewer
from lora_bridge.errors import BridgeError
from ranger_dashboard import data

KINDS = ("farmland", "boundary", "village", "sanctuary")
# What crossing a fence of each kind means: leave a boundary or sanctuary, enter farmland or a village.
ALERT_ON = {"farmland": "enter", "boundary": "exit", "village": "enter", "sanctuary": "exit"}


@dataclass(frozen=True)
class UploadOutcome:
    """Whether the file went in, and the sentence for the ranger."""

    ok: bool
    message: str


def import_upload(
    url: str, content: bytes, filename: str, kind: str, viewer: Viewer, name: str = "", replace: bool = False
) -> UploadOutcome:
    """Import a GeoJSON, GeoPackage or zipped Shapefile as fences of `kind`, named `name` when given,
    in the signed-in viewer's name (the bridge's audit log says who imported which file)."""
    if kind not in ALERT_ON:
        return UploadOutcome(False, f"Kind must be one of {', '.join(KINDS)}.")
    try:
        added = data.import_geofences(
            url, content, filename, kind, ALERT_ON[kind], replace, name.strip() or None, viewer
        )
    except BridgeError as error:  # the bridge's sentence names the file, most of them first
        reason = str(error)
        return UploadOutcome(False, reason if reason.startswith(f"{filename}:") else f"{filename}: {reason}")
    crs = added[0].source_crs if added else "?"
    return UploadOutcome(
        True, f"{len(added)} fence(s) imported from {filename} (reprojected from {crs} to WGS84)."
    )
