"""Which TS004 fragmentation package version a collar's session speaks (port 201).

TS004 v2.0.0 "is not compatible with the earlier version": its FragSessionSetupReq and FragSessionStatusAns are laid
out anew (collar_firmware/codec.py's versioned rows), and the bytes of an answer do not say which layout they are
in. A collar answers in the layout of the session it was set up in (collar_firmware/update.py `frag_version`), so
the bridge reads a collar's answers on port 201 in the version of the last set-up it queued for it
(`session_version`; v2.0.0's set-up is the longer), not in what the collar's firmware could speak: a collar that
speaks v2.0.0 but was set up in v1.0.0 (no root key in the key file, or after refusing v2.0.0) answers as v1.0.0
says.
The version is kept with the collar's delivery (`fuota_collars.setup_version`, `record_setup`), where neither
retention nor a technician's clean-up of the outbox prunes it; the outbox's set-up rows are read only for
deliveries queued before that column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.store.tables import Downlink, FuotaCollar
from lora_bridge.updates.frag_v2 import PACKAGE_ID, V2  # noqa: F401 (re-exported: the port-201 facts)

V1 = 1  # TS004 v1.0.0's layouts (v2.0.0's: V2; PACKAGE_ID: TS004's PackageIdentifier, updates/frag_v2.py)
SETUP = "frag_session_setup"  # FragSessionSetupReq's codec row: its port and CID are the table's


def setup_version(payload: bytes, codec: Any) -> int:
    """The TS004 version of a queued FragSessionSetupReq (its CID first): v2.0.0's is the longer."""
    _, port, cid = codec.message(SETUP)[:3]
    return V2 if len(payload) >= codec.command_size(port, cid, "down", V2) else V1


def last_setup(session: Session, device_id: str) -> bytes | None:
    """The payload of the last FragSessionSetupReq queued for the collar (None: none ever)."""
    return session.scalar(select(Downlink.payload).where(Downlink.device_id == device_id, Downlink.command == SETUP)
                          .order_by(Downlink.id.desc()).limit(1))


def record_setup(collar: FuotaCollar, version: int, now: datetime) -> None:
    """Keep on the collar's delivery row the TS004 version of the set-up just queued for it, and when."""
    collar.setup_version = version
    collar.setup_version_at = now


def last_kept_setup(session: Session, device_id: str) -> tuple[int, int] | None:
    """(campaign id, TS004 version) of the last set-up queued for the collar as its deliveries keep them (None:
    none kept, a collar never set up or set up before the version was kept)."""
    row = session.execute(select(FuotaCollar.campaign_id, FuotaCollar.setup_version)
                          .where(FuotaCollar.device_id == device_id, FuotaCollar.setup_version.is_not(None))
                          .order_by(FuotaCollar.setup_version_at.desc(), FuotaCollar.campaign_id.desc())
                          .limit(1)).first()
    return None if row is None else (row[0], row[1])


def session_version(session: Session, device_id: str, codec: Any) -> int:
    """The TS004 version the collar's fragmentation session speaks, which its answers on port 201 are laid out in:
    that of the last set-up queued for it, as its delivery keeps it (the outbox's last set-up row for one queued
    before that; v1.0.0 when none was)."""
    kept = last_kept_setup(session, device_id)
    if kept is not None:
        return kept[1]
    payload = last_setup(session, device_id)
    return V1 if payload is None else setup_version(bytes(payload), codec)
