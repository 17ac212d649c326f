"""Alert rules decided on the collar: mortality, poaching risk, virtual fences, collar drop, tamper, battery.

The engine is fed once per accelerometer window (`on_window`), once per GNSS fix (`on_fix`), with each
battery reading (`on_battery`) and once at start-up (`on_boot`). A rule raises its alert once, when its
condition is confirmed, by appending the alert type (index into `codec.ALERT_TYPES`) to `pending`;
it is raised again only after the condition has cleared. Thresholds come from the settings.

Rules, after the field:
- immobility / mortality: windows with VeDBA below still_vedba_mg; a single active window does not
  end a still spell (two in a row do). Suspicion after immobility_suspect_h, mortality after
  immobility_h (12 h, as Smart Parks) unless ANCHOR_FAR_FIXES fixes in a row of the spell lie beyond
  MORTALITY_RADIUS_M (a single bad fix is GNSS multipath, not movement). The spell's first fix is its
  anchor; while no other fix has agreed with it, two later fixes that agree with each other within
  GNSS_OUTLIER_M of it show the anchor was the bad fix, and they become the anchor (further away they
  show a move: a collar carried off).
  A carcass is told sooner: a living elephant, even asleep, breathes and flaps its ears, so its collar
  feels several mg of movement and its gravity shifts by a few mg from window to window; a carcass
  gives the accelerometer's own noise only, under a gravity that does not move. Windows with VeDBA at
  or below carcass_vedba_mg whose mean gravity stays within CARCASS_TILT_MG of the first of them, for
  carcass_min minutes in a row, with the spell's last fix within MORTALITY_RADIUS_M of its first, are
  a death (carcass_vedba_mg 0 turns this off: the 12 h rule alone). Some animals rest so calmly that
  their collar cannot tell them from a carcass: each time a run of such windows lasted half of
  carcass_min and the animal then moved off, the collar doubles the time it asks for (up to
  CARCASS_DOUBTS times; once that reaches immobility_h the 12 h rule alone decides for this animal).
- poaching risk: judged from the share of flight in a sliding span, not from one unbroken run. A flight
  window: the model says "run", VeDBA reaches run_vedba_mg, or the model says "walk" at fast_vedba_mg or
  more (a weak animal's gallop; no healthy walk reaches it). Flight seconds score (doubled at night, once
  more near or outside the boundary), calm seconds pay back; two flight windows in a row start tracking.
  A score of poaching_score half-minutes alerts once the last POACHING_SPAN_MIN minutes hold
  poaching_min_run_s of flight (7 of 10: a flight is sustained with short breaks; play, mock charges
  and a start at a noise last a minute or a few).
- fences: enter a farmland (or exclusion) polygon, with a hysteresis of fence_margin_m (the state flips
  when a fix is that far past the line; an animal that stays in a field's edge is in once
  FENCE_DWELL_FIXES fixes in a row lie FENCE_DWELL_M or more inside), or leave the park polygon once FENCE_CONFIRM_FIXES fixes in a
  row lie that far out (one such fix may be multipath: it starts tracking so the next fix checks it
  soon; a farmland entry is not delayed, a minute counts there). Leaving a field is confirmed the same
  way: one bad fix out of it and the next back in is one visit and one alert, not two; GNSS goes to
  tracking for tracking_minutes on each crossing.
- collar drop: still, with gravity turned more than 45 degrees from the worn orientation and the
  temperature fallen drop_temp_fall_dc below the worn level, within DROP_WINDOW_S of the spell start.
- reboots: a watchdog, brownout or lockup reset raises unexpected_reboot; a reset pin press, tamper.
- battery: three readings below low_battery_mv warn, three below critical_battery_mv are critical;
  cleared 50 mV above the threshold.
"""

from collar_firmware.compat import const

MORTALITY = const(1)
IMMOBILITY = const(2)
POACHING_RISK = const(3)
GEOFENCE_FARMLAND = const(4)
GEOFENCE_EXIT = const(5)
COLLAR_DROP = const(6)
TAMPER = const(7)
LOW_BATTERY = const(8)
BATTERY_CRITICAL = const(9)
UNEXPECTED_REBOOT = const(10)
N_ALERT_TYPES = const(11)

MORTALITY_RADIUS_M = const(100)
_ANCHOR_FAR_FIXES = const(2)  # fixes in a row beyond the radius that show a still animal has moved
GNSS_OUTLIER_M = const(800)  # the farthest a bad fix lies from the truth (the bridge's confirm_distance_m)
_CARCASS_TILT_MG = const(2)  # a carcass's mean gravity moves less than this per axis (a sleeper's more)
_CARCASS_DOUBTS = const(4)  # calm rests seen on a living animal double its carcass time at most this often
_DROP_WINDOW_S = const(3 * 3600)
_DROP_STILL_S = const(1800)
_BATTERY_CONFIRM = const(3)
BATTERY_HYSTERESIS_MV = const(50)
_MAX_GAP_S = const(120)  # running credited per window is capped (a gap is not running)
POACHING_SPAN_MIN = const(10)  # the sliding span (minutes) whose flight seconds poaching_min_run_s asks for

FENCE_PARK = const(0)
FENCE_CONFIRM_FIXES = const(2)  # fixes in a row past a line by fence_margin_m that leave the park or a field
_FENCE_DWELL_FIXES = const(3)  # fixes in a row inside a farmland line by FENCE_DWELL_M that count as in
_FENCE_DWELL_M = const(10)  # past a fix's usual error (a few metres): a raid along the field's edge
_UNKNOWN = const(2)


# Tembo's one night (local time, near the equator: sunset about 18:45, last light soon after): the
# poaching score doubles in it, and the twin's diel pattern and scenarios use the same hours.
NIGHT_START_MIN = const(18 * 60 + 30)
NIGHT_END_MIN = const(6 * 60)


def is_night(t_s, utc_offset_min):
    """Return True between NIGHT_START_MIN and NIGHT_END_MIN local time (t_s Unix seconds)."""
    local_s = (t_s + utc_offset_min * 60) % 86400
    return local_s < NIGHT_END_MIN * 60 or local_s >= NIGHT_START_MIN * 60


class RiskEngine:
    """State of every on-collar alert rule; settings is the collar's dict of settings (live)."""

    def __init__(self, settings):
        self.settings = settings
        self.active = bytearray(N_ALERT_TYPES)
        self.pending = []
        # immobility / mortality
        self.still_since_s = 0
        self.moving_windows = 0
        self.anchor_lat = 0
        self.anchor_lon = 0
        self.has_anchor = False
        self.anchor_moved = False
        self.far_fixes = 0  # fixes in a row beyond MORTALITY_RADIUS_M of the anchor
        self.anchor_fixes = 0  # fixes of the spell within MORTALITY_RADIUS_M of the anchor (itself included)
        self.other_lat = 0  # the last far fix, to be compared with the next
        self.other_lon = 0
        # carcass: since when windows show sensor noise only under an unmoving gravity (0: not now)
        self.carcass_since_s = 0
        self.carcass_x = 0
        self.carcass_y = 0
        self.carcass_z = 0
        self.carcass_doubt = 0  # calm runs this animal survived: each doubles the carcass time
        # poaching
        self.run_windows = 0  # flight windows in a row
        self.flight_slots = bytearray(POACHING_SPAN_MIN)  # flight seconds per minute of the span
        self.score = 0  # weighted running seconds
        self.last_window_s = 0
        self.tracking_until_s = 0
        self.near_boundary = False
        self.farmland_room_m = -1  # metres from the last fix to the nearest farmland it is outside (-1: none)
        # fences: state per fence slot, 1 inside, 0 outside, 2 unknown
        # (and, from bit 2 up, the fixes in a row past its line by the margin, not yet a crossing)
        self.fence_state = bytearray([_UNKNOWN] * 8)
        # collar drop: worn orientation (mg) and temperature (deci-degrees), learnt while moving
        self.worn_x = 0
        self.worn_y = 0
        self.worn_z = 0
        self.worn_temp_dc = 0
        self.worn_known = False
        # battery: 0 ok, 1 low, 2 critical
        self.battery_level = 0
        self._battery_count = 0

    def _raise(self, alert_type):
        if not self.active[alert_type]:
            self.active[alert_type] = 1
            self.pending.append(alert_type)

    def _clear(self, alert_type):
        self.active[alert_type] = 0

    def still_s(self, t_s):
        """Return how long the animal has been still at t_s (0 while it moves)."""
        return t_s - self.still_since_s if self.still_since_s else 0

    def tracking(self, t_s):
        """Return True while GNSS should run at the tracking rate."""
        return t_s < self.tracking_until_s

    def start_tracking(self, t_s, minutes):
        """Keep GNSS at the tracking rate until t_s + minutes."""
        until = t_s + minutes * 60
        if until > self.tracking_until_s:
            self.tracking_until_s = until

    # ---- accelerometer windows -----------------------------------------------------------

    def on_window(self, t_s, behaviour, vedba_mg, gx_mg, gy_mg, gz_mg, temperature_dc):
        """Feed one window: behaviour (the classifier's class name), VeDBA and mean gravity in mg, temperature."""
        s = self.settings
        last_s = self.last_window_s
        dt = t_s - last_s if last_s else 60
        if dt > _MAX_GAP_S:
            dt = _MAX_GAP_S
        self.last_window_s = t_s
        still = vedba_mg < s["still_vedba_mg"]
        self._carcass(t_s, vedba_mg, gx_mg, gy_mg, gz_mg)
        if still:
            self.moving_windows = 0
            if not self.still_since_s:
                self.still_since_s = t_s
                self.has_anchor = False
                self.anchor_moved = False
                self.far_fixes = 0
            self._check_still(t_s, gx_mg, gy_mg, gz_mg, temperature_dc)
        else:
            self.moving_windows += 1
            if self.moving_windows >= 2:
                self._moving(gx_mg, gy_mg, gz_mg, temperature_dc)
        flight = behaviour == "run" or vedba_mg >= s["run_vedba_mg"] or (behaviour == "walk"
                                                                         and vedba_mg >= s["fast_vedba_mg"])
        self._poaching(t_s, dt, flight, last_s // 60)

    def _carcass(self, t_s, vedba_mg, gx, gy, gz):
        """Follow the run of windows that look like a carcass (see the module doc)."""
        s = self.settings
        if vedba_mg > s["carcass_vedba_mg"]:
            if (self.carcass_since_s and vedba_mg >= s["still_vedba_mg"] and self.carcass_doubt < _CARCASS_DOUBTS
                    and 2 * (t_s - self.carcass_since_s) >= s["carcass_min"] * 60):
                self.carcass_doubt += 1  # it was a calm rest: this animal needs longer before it is called dead
            self.carcass_since_s = 0
            return
        if self.carcass_since_s:
            dx = gx - self.carcass_x
            dy = gy - self.carcass_y
            dz = gz - self.carcass_z
            if -_CARCASS_TILT_MG <= dx <= _CARCASS_TILT_MG and -_CARCASS_TILT_MG <= dy <= _CARCASS_TILT_MG \
                    and -_CARCASS_TILT_MG <= dz <= _CARCASS_TILT_MG:
                return
        self.carcass_since_s = t_s  # the first such window, or gravity moved: the run starts again
        self.carcass_x = gx
        self.carcass_y = gy
        self.carcass_z = gz

    def carcass_s(self, t_s):
        """Return how long the windows have looked like a carcass at t_s (0: they do not)."""
        return t_s - self.carcass_since_s if self.carcass_since_s else 0

    def carcass_need_s(self):
        """Return how long windows must look like a carcass for a death on this animal."""
        return (self.settings["carcass_min"] * 60) << self.carcass_doubt

    def _moving(self, gx, gy, gz, temperature_dc):
        self.still_since_s = 0
        self._clear(IMMOBILITY)
        self._clear(MORTALITY)
        self._clear(COLLAR_DROP)
        if self.worn_known:
            # slow average of the worn orientation and temperature
            self.worn_x += (gx - self.worn_x) // 8
            self.worn_y += (gy - self.worn_y) // 8
            self.worn_z += (gz - self.worn_z) // 8
            self.worn_temp_dc += (temperature_dc - self.worn_temp_dc) // 8
        else:
            self.worn_x = gx
            self.worn_y = gy
            self.worn_z = gz
            self.worn_temp_dc = temperature_dc
            self.worn_known = True

    def _check_still(self, t_s, gx, gy, gz, temperature_dc):
        s = self.settings
        still_s = t_s - self.still_since_s
        if (self.worn_known and _DROP_STILL_S <= still_s <= _DROP_WINDOW_S and not self.active[COLLAR_DROP]
                and self.worn_temp_dc - temperature_dc >= s["drop_temp_fall_dc"]
                and self._turned(gx, gy, gz)):
            self._raise(COLLAR_DROP)
        if self.active[COLLAR_DROP]:
            return  # a dropped collar explains the stillness: no mortality alert
        if still_s >= s["immobility_suspect_h"] * 3600:
            self._raise(IMMOBILITY)
        if self.anchor_moved:
            return
        if still_s >= s["immobility_h"] * 3600:
            self._raise(MORTALITY)
        elif (s["carcass_vedba_mg"] and self.carcass_s(t_s) >= self.carcass_need_s()
              and self.has_anchor and self.far_fixes == 0):
            self._raise(MORTALITY)  # a carcass, lying where the spell's fixes put it

    def _turned(self, gx, gy, gz):
        """Return True when gravity points more than 45 degrees away from the worn orientation (a collar on
        the ground lies on its side or upside down; the cooling that must come with it tells it from a
        lying elephant)."""
        dot = gx * self.worn_x + gy * self.worn_y + gz * self.worn_z
        if dot <= 0:
            return True
        n1 = gx * gx + gy * gy + gz * gz
        n2 = self.worn_x * self.worn_x + self.worn_y * self.worn_y + self.worn_z * self.worn_z
        return 2 * dot * dot < n1 * n2  # cos(angle)^2 < 0.5

    def _poaching(self, t_s, dt, flight, last_minute):
        s = self.settings
        slots = self.flight_slots  # flight seconds per minute of the span (sum(slots): the span's)
        minute = t_s // 60
        passed = minute - last_minute
        if passed:  # the span moves on: forget the minutes that fell out of it
            if passed < 0 or passed > POACHING_SPAN_MIN:
                passed = POACHING_SPAN_MIN
            while passed:
                slots[(minute - passed + 1) % POACHING_SPAN_MIN] = 0
                passed -= 1
        if flight:
            self.run_windows += 1
            i = minute % POACHING_SPAN_MIN
            credit = slots[i] + dt
            slots[i] = credit if credit < 255 else 255
            mult = 2 if is_night(t_s, s["utc_offset_min"]) else 1
            if self.near_boundary:
                mult += 1
            self.score += dt * mult
            if self.run_windows >= 2:
                self.start_tracking(t_s, s["tracking_minutes"])
            if self.score >= s["poaching_score"] * 30 and sum(slots) >= s["poaching_min_run_s"]:
                self._raise(POACHING_RISK)
        else:
            self.run_windows = 0
            self.score -= dt
            if self.score <= 0:
                self.score = 0
                if not self.tracking(t_s):
                    self._clear(POACHING_RISK)

    # ---- GNSS fixes ------------------------------------------------------------------------

    def _anchor(self, lat_units, lon_units, agreeing):
        self.anchor_lat = lat_units
        self.anchor_lon = lon_units
        self.has_anchor = True
        self.anchor_fixes = agreeing
        self.far_fixes = 0
        self.anchor_moved = False

    def on_fix(self, t_s, lat_units, lon_units, fences, distance_m):
        """Feed one fix (int24 units); fences: list of complete geo.Fence; distance_m: geo.distance_m."""
        if self.still_since_s:
            if not self.has_anchor:
                self._anchor(lat_units, lon_units, 1)
            else:
                away = distance_m(self.anchor_lat, self.anchor_lon, lat_units, lon_units)
                if away <= MORTALITY_RADIUS_M:
                    self.far_fixes = 0
                    self.anchor_fixes += 1
                elif (self.anchor_fixes == 1 and self.far_fixes and away <= GNSS_OUTLIER_M
                      and distance_m(self.other_lat, self.other_lon, lat_units, lon_units) <= MORTALITY_RADIUS_M):
                    self._anchor(lat_units, lon_units, 2)  # the lone anchor was the bad fix
                else:
                    # one bad fix (multipath: tens to hundreds of metres off) does not prove the animal moved
                    self.far_fixes += 1
                    self.other_lat = lat_units
                    self.other_lon = lon_units
                    if self.far_fixes >= _ANCHOR_FAR_FIXES:
                        self.anchor_moved = True
        margin = self.settings["fence_margin_m"]
        room = -1
        near = False
        any_park = False
        outside_park = False
        in_farmland = False
        for i in range(len(fences)):
            f = fences[i]
            inside = f.contains(lat_units, lon_units)
            d = f.edge_distance_m(lat_units, lon_units)
            state = self.fence_state[i] & 3
            past = 0
            if state == _UNKNOWN:
                state = 1 if f.kind == FENCE_PARK else 0
            if (1 if inside else 0) != state and d >= margin:
                past = (self.fence_state[i] >> 2) + 1
                if past >= FENCE_CONFIRM_FIXES or (inside and f.kind != FENCE_PARK):
                    state = 1 if inside else 0
                    past = 0
                else:  # leaving a field is confirmed too: one bad fix out must not end the visit
                    self.start_tracking(t_s, 1)  # the next fix soon: a crossing, or one bad fix?
            elif inside and not state and f.kind != FENCE_PARK and d >= _FENCE_DWELL_M:
                past = (self.fence_state[i] >> 2) + 1  # in the field, shallower than the margin
                if past >= _FENCE_DWELL_FIXES:
                    state = 1
                    past = 0
            self.fence_state[i] = state | (past << 2)
            if f.kind == FENCE_PARK:
                any_park = True
                if not state:
                    outside_park = True
                if not inside or d <= self.settings["boundary_near_m"]:
                    near = True
            elif state:  # farmland, and exclusion zones (villages, water points) alike
                in_farmland = True
            elif room < 0 or d < room:
                room = d
        self.near_boundary = near
        self.farmland_room_m = room
        tracking_min = self.settings["tracking_minutes"]
        if in_farmland:
            if not self.active[GEOFENCE_FARMLAND]:
                self.start_tracking(t_s, tracking_min)
            self._raise(GEOFENCE_FARMLAND)
        else:
            self._clear(GEOFENCE_FARMLAND)
        if any_park and outside_park:
            if not self.active[GEOFENCE_EXIT]:
                self.start_tracking(t_s, tracking_min)
            self._raise(GEOFENCE_EXIT)
        else:
            self._clear(GEOFENCE_EXIT)

    def in_farmland(self):
        """Return True while the last fix put the animal in farmland."""
        return bool(self.active[GEOFENCE_FARMLAND])

    def outside_park(self):
        """Return True while the last fix put the animal outside the park."""
        return bool(self.active[GEOFENCE_EXIT])

    def forget_fences(self):
        """Reset the fence states (fences were replaced)."""
        self.farmland_room_m = -1
        for i in range(len(self.fence_state)):
            self.fence_state[i] = _UNKNOWN
        self._clear(GEOFENCE_FARMLAND)
        self._clear(GEOFENCE_EXIT)

    # ---- power and start-up --------------------------------------------------------------

    def on_battery(self, battery_mv):
        """Feed one battery reading in mV."""
        s = self.settings
        if battery_mv < s["critical_battery_mv"]:
            level = 2
        elif battery_mv < s["low_battery_mv"]:
            level = 1
        else:
            level = 0
        if level > self.battery_level:
            self._battery_count += 1
            if self._battery_count >= _BATTERY_CONFIRM:
                self._battery_count = 0
                self.battery_level = level
                self._raise(LOW_BATTERY)  # the warning always comes first
                if level == 2:
                    self._raise(BATTERY_CRITICAL)
        elif level < self.battery_level:
            threshold = s["critical_battery_mv"] if self.battery_level == 2 else s["low_battery_mv"]
            if battery_mv >= threshold + BATTERY_HYSTERESIS_MV:
                self._battery_count += 1
                if self._battery_count >= _BATTERY_CONFIRM:
                    self._battery_count = 0
                    self.battery_level -= 1
                    self._clear(BATTERY_CRITICAL)
                    if self.battery_level == 0:
                        self._clear(LOW_BATTERY)
            else:
                self._battery_count = 0
        else:
            self._battery_count = 0

    def shift_time(self, jump_s):
        """The clock was set forward by jump_s: move the engine's remembered instants with it."""
        if self.still_since_s:
            self.still_since_s += jump_s
        if self.carcass_since_s:
            self.carcass_since_s += jump_s
        if self.last_window_s:
            self.last_window_s += jump_s
        for i in range(POACHING_SPAN_MIN):  # a set clock: the span starts again
            self.flight_slots[i] = 0
        if self.tracking_until_s:
            self.tracking_until_s += jump_s

    def on_boot(self, reset_cause):
        """Feed the cause of the last reset (codec.RESET_CAUSES name)."""
        if reset_cause in ("watchdog", "brownout", "lockup"):
            self._raise(UNEXPECTED_REBOOT)
        elif reset_cause == "pin":
            self._raise(TAMPER)
