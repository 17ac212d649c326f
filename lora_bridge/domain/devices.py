"""Collars and the animals wearing them: who sent this uplink, and what it said about itself."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lora_bridge.store.tables import Animal, Device
from lora_bridge.uplink_formats import Uplink

log = logging.getLogger(__name__)

DEFAULT_SPECIES = "Loxodonta africana"

STATUS_FIELDS = (
    "battery_mv",
    "temperature_c",
    "fw_version",
    "model_version",
    "uptime_h",
    "reset_cause",
    "behaviour",
    "queue_depth",
    "errors",
)


def device_for_uplink(session: Session, uplink: Uplink, heard_at: datetime) -> Device:
    """The collar that sent uplink (created on first sight), updated with what this uplink says of it."""
    device = session.get(Device, uplink.device_id)
    if device is None:
        device = Device(device_id=uplink.device_id, first_seen=heard_at, reported_settings={})
        session.add(device)
        session.flush()
        log.info("new collar heard", extra={"device_id": uplink.device_id, "f_cnt": uplink.f_cnt})
    if device.first_seen is None:
        device.first_seen = heard_at
    device.dev_eui = uplink.dev_eui or device.dev_eui
    device.application_id = uplink.application_id or device.application_id
    device.network = uplink.source
    if device.last_seen is None or heard_at >= device.last_seen:
        device.last_seen = heard_at
        device.last_f_cnt = uplink.f_cnt
        device.last_rssi_dbm = uplink.best_rssi_dbm
        device.last_snr_db = uplink.best_snr_db
    return device


def ensure_animal(session: Session, device: Device) -> Animal:
    """The animal wearing device; a placeholder named after the collar until one is registered."""
    animal = session.scalars(select(Animal).where(Animal.device_id == device.device_id)).first()
    if animal is None:
        animal = Animal(name=device.device_id, species=DEFAULT_SPECIES, device_id=device.device_id)
        session.add(animal)
        session.flush()
    return animal


def register_animal(
    session: Session, device_id: str, name: str, species: str = DEFAULT_SPECIES, sex: str | None = None
) -> Animal:
    """Name the animal wearing device_id (creating the collar record if it was never heard)."""
    device = session.get(Device, device_id)
    if device is None:
        device = Device(device_id=device_id, reported_settings={})
        session.add(device)
        session.flush()
    animal = ensure_animal(session, device)
    animal.name = name
    animal.species = species
    animal.sex = sex
    log.info("animal registered", extra={"device_id": device_id, "animal": name})
    return animal


def status_flag_names(codec: Any) -> list[str]:
    """Names of the one-bit flags a status carries (codec.STATUS_FLAGS), spare bits left out."""
    return [row[0] for row in getattr(codec, "STATUS_FLAGS", ()) if row[0] != "spare"]


def apply_status(device: Device, fields: dict[str, Any], time: datetime, codec: Any) -> None:
    """Record what a status message says about the collar (battery, versions, behaviour, ...)."""
    if device.status_time is not None and time < device.status_time:
        return  # an older status arriving late (store-and-forward) does not overwrite a newer one
    device.status_time = time
    for name in STATUS_FIELDS:
        if name in fields:
            value = fields[name]
            if name == "fw_version" and value is not None:
                value = str(value)
            setattr(device, name, value)
    device.flags = {name: bool(fields[name]) for name in status_flag_names(codec) if name in fields}


def apply_settings(device: Device, fields: dict[str, Any]) -> None:
    """Remember the settings the collar reported (port 3)."""
    reported = dict(device.reported_settings or {})
    for key, value in fields.items():
        if key not in ("message", "port"):
            reported[key] = value
    device.reported_settings = reported
