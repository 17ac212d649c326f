"""Smart fixes: the collar's own behaviour output decides when a GNSS position is worth its energy.

GNSS is most of the collar's energy (docs/energy.md), and a fixed schedule spends it badly: a resting
elephant's hourly fixes repeat one point while a walking one's lose its path. With `gnss_adaptive` set,
the interval follows the behaviour the classifier reports (smoothed):
- rest ("rest" class, or any still class): every gnss_rest_interval_s;
- walk or run: every gnss_move_interval_s;
- anything else (foraging): every gnss_forage_interval_s (a forager meanders: its path bends most);
and a change from one of these three states to another takes a fix at once (the corner of the path),
unless the last fix is younger than gnss_min_gap_s. Near farmland the next fix comes before the
animal could have walked in (the distance from the last fix to the nearest farmland fence at a brisk
APPROACH_MM_PER_S walk, never sooner than gnss_min_gap_s), so a raid is told within minutes of the
first step into the field. Every bound is a setting (port 3 TLV), so a downlink sets them; tracking,
low battery and long stillness apply on top as before (scheduler).
"""

from collar_firmware.compat import const

_STATE_REST = const(0)
_STATE_BASE = const(1)
_STATE_MOVE = const(2)
_APPROACH_MM_PER_S = const(1500)  # an elephant walks 0.7-1.2 m/s; faster is a run, and a run tracks


def state_of(classes, idx):
    """Return the fix state (STATE_REST, STATE_BASE or STATE_MOVE) of class index idx of classes."""
    if idx < 0 or idx >= len(classes):
        return _STATE_BASE
    name = classes[idx]
    if name == "rest" or name == "still" or name == "sleep":
        return _STATE_REST
    if name == "walk" or name == "run":
        return _STATE_MOVE
    return _STATE_BASE


def base_interval_s(settings, state):
    """Return the interval (s) of state before tracking and battery rules, from the settings."""
    if not settings["gnss_adaptive"]:
        return settings["gnss_interval_s"]
    if state == _STATE_REST:
        return settings["gnss_rest_interval_s"]
    if state == _STATE_MOVE:
        return settings["gnss_move_interval_s"]
    return settings["gnss_forage_interval_s"]


class FixSchedule:
    """The adaptive part of the GNSS schedule of one collar; settings is the collar's live dict."""

    def __init__(self, settings):
        self.settings = settings
        self.state = _STATE_BASE
        self.changes = 0

    def on_behaviour(self, now_s, classes, idx, last_fix_s):
        """Feed the smoothed class of a window; return True when a fix is due now (a change of state)."""
        state = state_of(classes, idx)
        if state == self.state:
            return False
        self.state = state
        if not self.settings["gnss_adaptive"]:
            return False
        self.changes += 1
        return now_s - last_fix_s >= self.settings["gnss_min_gap_s"]

    def interval_s(self):
        """Return the interval (s) to the next scheduled fix in the current state."""
        return base_interval_s(self.settings, self.state)

    def fence_cap_s(self, room_m):
        """Return the longest wait (s) before the next fix with the nearest farmland room_m metres away,
        or 0 for no limit (not adaptive, or no farmland fence)."""
        if not self.settings["gnss_adaptive"] or room_m < 0:
            return 0
        cap = room_m * 1000 // _APPROACH_MM_PER_S
        floor = self.settings["gnss_min_gap_s"]
        return cap if cap > floor else floor
