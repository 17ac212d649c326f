"""Answers the dashboard keeps for a viewer, audited each time they are handed to that viewer.

The dashboard keeps answers of the bridge a while (Streamlit's `st.cache_data` in `data.py`, and
the live map's tracks and name tiles in `name_routes.cached`, read ahead while the browser loads
the map). The rule of docs/access.md holds for each of them: every view of positions is in the
audit log. So an answer is made inside `Bridge.audit_deferred` and kept with the reads it was made
from (`keep`); `hand_out` logs those reads for its viewer every time the answer leaves the
dashboard, first time or tenth, and a read ahead that no browser fetches is never logged. An answer
is kept under its viewer (username and role) and handed to nobody else: `hand_out` refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lora_bridge.access import Viewer

T = TypeVar("T")


@dataclass(frozen=True)
class Kept(Generic[T]):
    """An answer kept for `viewer`, with the reads of positions it was made from
    (`lora_bridge.access.audit.PositionsRead`, empty for an answer without positions)."""

    viewer: Viewer
    value: T
    reads: tuple[Any, ...] = ()


def keep(bridge: Any, viewer: Viewer, read: Callable[[], T]) -> Kept[T]:
    """`read()` (calls of the bridge as `viewer`), not logged yet: kept with what it read."""
    with bridge.audit_deferred() as reads:
        value = read()
    strangers = {r.viewer for r in reads} - {viewer}
    if strangers:
        raise PermissionError(f"an answer kept for {viewer.username} was read as {sorted(v.username for v in strangers)}")
    return Kept(viewer, value, tuple(reads))


def hand_out(bridge: Any, kept: Kept[T], viewer: Viewer) -> T:
    """The kept answer for `viewer`, its reads logged now in the audit log as `viewer`'s view;
    PermissionError when it was kept for someone else (or another role of the same person)."""
    if kept.viewer != viewer:
        raise PermissionError(f"an answer kept for {kept.viewer.username} ({kept.viewer.role}) is not for {viewer.username} ({viewer.role})")
    bridge.record_reads(kept.reads)
    return kept.value
