"""Default settings of the Tembo collar, firmware identity and the bounds of its memory.

Settings are plain integers keyed by the names of `codec.SETTINGS`, where their ranges live and
from where a downlink on port 3 changes them. Units are in the names.
"""

from collar_firmware.compat import const

FW_VERSION = "1.0.1"  # of the factory image; a collar updated over the air reports its boot record's
HARDWARE_ID = "tembo-nrf52840-lr1110"  # update images built for other hardware are refused

# Bounds of what the collar holds in RAM and flash (named, so tests and docs can quote them).
QUEUE_SLOTS = const(96)  # store-and-forward records in flash (about a day of summaries)
MAX_FENCES = const(4)  # virtual fences held on the collar
MAX_FENCE_POINTS = const(32)  # vertices per fence polygon
MAX_POSITIONS_PER_UPLINK = const(5)  # codec "positions" list bound
MAX_CLASSES = const(16)  # codec "activity" shares bound
MAX_SENDS_PER_WAKE = const(4)  # uplinks tried in one duty cycle

DEFAULTS = {
    "gnss_interval_s": 3600,  # hourly positions
    "summary_interval_s": 900,  # 15-minute activity summaries
    "status_interval_s": 21600,  # status every 6 h
    "accel_rate_hz": 25,
    "accel_range_g": 4,
    "window_s": 10,
    "window_every_s": 60,  # one window a minute; back to back in tracking mode
    "immobility_h": 12,  # mortality confirmed after 12 still hours (Smart Parks)
    "tracking_minutes": 60,  # high-rate GNSS after a flight or a fence crossing
    "fair_use_airtime_s": 30,  # The Things Network fair use per device per day
    "low_battery_mv": 3300,
    "critical_battery_mv": 3100,
    "alert_repeat_min": 60,
    "confirmed_alerts": 1,
    "tracking_gnss_interval_s": 120,
    "utc_offset_min": 180,  # East Africa Time: local night for the poaching score
    "still_vedba_mg": 25,
    "run_vedba_mg": 450,
    "immobility_suspect_h": 4,
    "fence_margin_m": 50,
    "boundary_near_m": 2000,
    "positions_per_uplink": 1,
    "poaching_score": 12,
    "drop_temp_fall_dc": 40,
    "gnss_adaptive": 0,  # 1: the behaviour drives the fix schedule (smart fixes, fix_schedule.py)
    "gnss_rest_interval_s": 3600,  # at rest
    "gnss_forage_interval_s": 900,  # foraging (and any class neither rest nor walk/run)
    "gnss_move_interval_s": 900,  # walking or running
    "gnss_min_gap_s": 300,  # no fix for a change of state sooner than this after the last one
    "poaching_min_run_s": 420,  # a flight, not a mock charge or play: this much of the last 10 minutes
    "fast_vedba_mg": 170,  # a "walk" at this VeDBA is a gallop the model missed (a brisk walk stays below 160)
    "carcass_vedba_mg": 6,  # windows this calm (sensor noise only, no breath) under a still gravity ...
    "carcass_min": 120,  # ... for this long are a death (risk.py); 0 mg: the immobility_h rule only
}

# Battery discharge curve of the reference pack (16 x LS17500 Li-SOCl2, 57.6 Ah): (mV, percent), falling.
BATTERY_CURVE = (
    (3650, 100),
    (3600, 90),
    (3550, 70),
    (3500, 50),
    (3450, 30),
    (3350, 15),
    (3250, 8),
    (3100, 3),
    (2900, 0),
)

# Storage keys (flash records that survive reboot).
KEY_SETTINGS = "settings"
KEY_FENCES = "fences"
KEY_STATE = "state"
KEY_VERIFIED = "verified"  # SHA-256 digests of signatures this collar has checked (trust.py)


def defaults():
    """Return a fresh dict of the default settings."""
    out = {}
    for k in DEFAULTS:
        out[k] = DEFAULTS[k]
    return out
