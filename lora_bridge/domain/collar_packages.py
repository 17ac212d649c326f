"""Which LoRa Alliance FUOTA packages a collar speaks, as it said (PackageVersionReq / PackageVersionAns).

Every package answers PackageVersionReq (CID 0x00, no payload) on its own port with PackageVersionAns = CID 0x00 |
PackageIdentifier (u8) | PackageVersion (u8) (LoRaMac-node's LmhpRemoteMcastSetup.c, LmhpFragmentation.c,
LmhpClockSync.c; LoRa Basics Modem's packages): TS005 remote multicast set-up is package 2 on port 200, TS004
fragmented data block transport package 3 on port 201, TS003 clock sync package 1 on port 202. A delivery asks
a collar whose TS004 version it does not know before it sets it up (fuota_delivery._versions_known): TS004 v2.0.0's
set-up goes only to a collar that answered PackageVersion 2, and a collar naming a package or version the bridge
does not speak is failed rather than set up blindly. An answer is kept with the firmware the collar reported
when it gave it: after a firmware change the collar is asked again.

TS003 is not asked: the collar's codec table has no TS003 PackageVersionReq row (its clock sync only sends
AppTimeReq, which the bridge answers whatever the version).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collar_firmware import codec as wire
from lora_bridge.domain import downlinks, frag_package
from lora_bridge.store.tables import CollarPackage, Device, Downlink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Package:
    """A FUOTA package as the bridge speaks it: its name, port, PackageIdentifier, the versions whose layouts the
    bridge writes and reads, and the codec's PackageVersionReq row (None: the codec cannot ask it)."""

    name: str
    port: int
    identifier: int
    versions: tuple[int, ...]
    ask: str | None


MULTICAST = Package("TS005", wire.PORT_MULTICAST, 2, (1,), "mc_package_version")  # v1.0.0's McGroupSetupReq / McClassCSessionReq
FRAGMENTS = Package("TS004", wire.PORT_FRAGMENTS, frag_package.PACKAGE_ID, (frag_package.V1, frag_package.V2), "frag_package_version")
CLOCK = Package("TS003", wire.PORT_CLOCK, 1, (1,), None)
PACKAGES = {p.port: p for p in (MULTICAST, FRAGMENTS, CLOCK)}
ANSWERS = {"mc_package_version_ans": MULTICAST.port, "frag_package_version_ans": FRAGMENTS.port}  # codec rows
QUESTIONS = tuple(p.ask for p in PACKAGES.values() if p.ask is not None)  # the PackageVersionReq commands `ask` queues


def record(session: Session, device_id: str, fields: dict[str, Any], heard_at: datetime) -> CollarPackage | None:
    """Keep a collar's PackageVersionAns (its codec row's fields) as heard, a package or version the bridge does
    not speak included (`problem` says so); None for another message. A repeated answer refreshes the row."""
    port = ANSWERS.get(str(fields.get("message")))
    if port is None:
        return None
    fw_version = firmware_of(session, device_id)
    row = session.get(CollarPackage, (device_id, port))
    if row is None:
        row = CollarPackage(device_id=device_id, port=port)
        session.add(row)
    row.package_id = int(fields.get("package_id") or 0)
    row.package_version = int(fields.get("package_version") or 0)
    row.fw_version, row.heard_at = fw_version, heard_at
    trouble = problem(row)
    (log.warning if trouble else log.info)(
        "device_id=%s announces package %d version %d on port %d%s", device_id, row.package_id, row.package_version,
        port, f": {trouble}" if trouble else "", extra={"device_id": device_id})
    return row


def firmware_of(session: Session, device_id: str) -> str | None:
    """The firmware version the collar last reported (None: not yet, or no such collar)."""
    return session.scalar(select(Device.fw_version).where(Device.device_id == device_id))


def problem(row: CollarPackage) -> str | None:
    """Why the bridge cannot set a collar up in what it announced on row's port (None: it speaks it)."""
    package = PACKAGES[row.port]
    if row.package_id != package.identifier:
        return (f"answered package {row.package_id} on port {row.port}, not {package.name} "
                f"(package {package.identifier})")
    if row.package_version not in package.versions:
        return (f"speaks {package.name} version {row.package_version}; the bridge speaks "
                f"{' and '.join(str(v) for v in package.versions)}")
    return None


def announced(session: Session, device_id: str) -> dict[int, CollarPackage]:
    """What the collar announced, by port, that still holds: given under the firmware it reports now."""
    fw_version = firmware_of(session, device_id)
    return {row.port: row for row in session.scalars(select(CollarPackage).where(CollarPackage.device_id == device_id))
            if row.fw_version == fw_version}


def ask(session: Session, codec: Any, device_id: str, ports: tuple[int, ...]) -> list[Downlink]:
    """Queue PackageVersionReq on each of ports (through the outbox, class A: after the collar's next uplink)."""
    asked = [downlinks.queue_command(session, codec, device_id=device_id, command=PACKAGES[port].ask, values={})
             for port in ports if PACKAGES[port].ask is not None]
    log.info("PackageVersionReq queued device_id=%s ports=%s", device_id, list(ports), extra={"device_id": device_id})
    return asked


def view(session: Session, device_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each collar's announced packages for a technician: {device: {"TS004": {package_id, version, fw_version,
    heard_at, problem}}}."""
    shown: dict[str, dict[str, dict[str, Any]]] = {d: {} for d in device_ids}
    for row in session.scalars(select(CollarPackage).where(CollarPackage.device_id.in_(device_ids))
                               .order_by(CollarPackage.port)):
        shown[row.device_id][PACKAGES[row.port].name] = {
            "package_id": row.package_id, "version": row.package_version, "fw_version": row.fw_version,
            "heard_at": row.heard_at, "problem": problem(row)}
    return shown
