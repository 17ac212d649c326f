"""The duty-cycled life of a Tembo collar: class Collar, one `step()` per wake-up.

A step, at `hal.clock.now_s()`: feed the watchdog (the one place), collect garbage (the one place),
then, each when due: one accelerometer window (features -> classify -> smooth -> risk engine ->
activity summary), a battery reading, a GNSS fix (adaptive rate), the activity summary, new alerts,
the status; then the scheduler sends what airtime, duty cycle and fair use allow, most urgent first,
and every downlink heard is applied and acknowledged. `step()` returns the Unix second of the next
wake-up. Errors never escape: each stage is guarded, counted per stage and reported in status.

The loop ties together modules that each hold one part: settings (settings_store), fences (fences),
the position buffer (positions), the activity summary (summary), the confirmed-uplink state machine
(link), the fallback model (fallback), the flash-record format (records), the store-and-forward
queue (queue), airtime and duty cycle (scheduler), the alert rules (risk) and downlinks (downlink).

Default life: a 10 s window at 25 Hz once a minute (back to back while tracking), a fix an hour,
an activity summary every 15 minutes, a status every 6 hours and at boot.
"""

from array import array

from collar_firmware import codec, config, downlink, geo, records, risk, scheduler, settings_store, trust
from collar_firmware.compat import collect_garbage, const
from collar_firmware.fallback import ThresholdModel
from collar_firmware.fences import Fences
from collar_firmware.fix_schedule import FixSchedule
from collar_firmware.link import Link
from collar_firmware.positions import MAX_DT_S, PositionBuffer
from collar_firmware.queue import Queue
from collar_firmware.summary import Summary
from collar_firmware.update import UpdateAgent

try:
    from collar_firmware import features
except ImportError:  # a build without the feature module still tracks, alerts and reports
    features = None
try:
    from collar_firmware import classifier
except ImportError:
    classifier = None

# Error counters, one per stage (status carries their saturated sum).
ERR_IMU = const(0)
ERR_GNSS = const(1)
ERR_RADIO = const(2)
_ERR_STORAGE = const(3)
ERR_DOWNLINK = const(4)
_ERR_MODEL = const(5)
_ERR_POWER = const(6)
_ERR_OTHER = const(7)
_N_ERR = const(8)

PORT_STATUS = codec.port_of("status")
PORT_ACTIVITY = codec.port_of("activity")
PORT_POSITIONS = codec.port_of("positions")
PORT_ALERT = codec.port_of("alert")
PORT_ACK = codec.port_of("ack")
FIRST_FUOTA_PORT = codec.PORT_MULTICAST
_BATTERY_EVERY_S = const(600)
_GNSS_TIMEOUT_S = const(90)
_CLOCK_STEP_BACK_S = const(600)
_CLOCK_STEP_FORWARD_S = const(600)  # woke this much later than planned: the clock was set forward
_MAX_DT_S = MAX_DT_S


def _feature_index(name):
    if features is None:
        return -1
    try:
        return features.FEATURE_NAMES.index(name)
    except ValueError:
        return -1


_F_MEAN_X = _feature_index("mean_x_mg")
_F_MEAN_Y = _feature_index("mean_y_mg")
_F_MEAN_Z = _feature_index("mean_z_mg")
_F_VEDBA = _feature_index("vedba_mean_mg")
_F_VEDBA_MAX = _feature_index("vedba_max_mg")



class Collar:
    """One collar: hal is a hal.Hal bundle; settings (optional) overrides config.DEFAULTS at build time;
    keys (optional) is a trust.Trust, by default the public keys shipped beside the firmware."""

    def __init__(self, hal, settings=None, keys=None):
        self.hal = hal
        self.factory_settings = settings or {}
        self.boots = 0
        self.trust = keys if keys is not None else trust.shipped(getattr(hal, "crypto", None), hal.storage)
        self._boot(self._reset_cause())

    # ---- start-up ----------------------------------------------------------------------

    def _reset_cause(self):
        try:
            return self.hal.clock.reset_cause()
        except Exception:
            return "unknown"

    def _boot(self, reset_cause):
        """Bring the collar up from flash: settings, fences, queue, model, sensors, timers."""
        self.boots += 1
        self.reset_cause = reset_cause if reset_cause in codec.RESET_CAUSES else "unknown"
        self.errors = bytearray(_N_ERR)
        self.settings = settings_store.initial(self.factory_settings)
        self.queue = Queue(self.hal.storage)
        self.alert_seq = 0
        self.fence_store = Fences(self.hal.storage)
        self._guard(self._load_flash, 0, _ERR_STORAGE)
        self.sched = scheduler.Scheduler(self.settings["fair_use_airtime_s"])
        self.risk = risk.RiskEngine(self.settings)
        self.fix_plan = FixSchedule(self.settings)
        self.risk.on_boot(self.reset_cause)
        self._load_model()
        now = self._now(0)
        self.boot_s = now
        self.now_s = now
        self.planned_wake_s = 0
        self.uplinks = 0
        self.downlinks = 0
        self.link = Link(now)
        self.reboot_pending = False
        self.send_wake_s = 0
        self.behaviour = 0
        self.battery_mv = 0
        self.temperature_dc = 0
        self.fix_s = 0
        self.fix_lat = 0
        self.fix_lon = 0
        self.fix_failures = 0
        self.windows = 0
        self.next_window_s = now
        self.next_battery_s = now
        self.next_fix_s = now
        self.next_status_s = now
        self._settings_report = False
        self.summary = Summary()
        self._start_summary(now, 1)
        self.positions = PositionBuffer()
        self._configure_imu()
        self.update = UpdateAgent(self)

    def _now(self, fallback):
        try:
            return self.hal.clock.now_s()
        except Exception:
            self._count(_ERR_OTHER)
            return fallback

    def _load_flash(self, _now):
        self.queue.load()
        settings_store.load(self.hal.storage, self.settings)
        state = records.unsealed(self.hal.storage.read(config.KEY_STATE))
        if state is not None and len(state) == 1:
            self.alert_seq = state[0] & 7
        self.fence_store.load()

    def _load_model(self):
        self.model = None
        self.smoother = None
        self.model_fallback = False
        if classifier is not None and features is not None:
            try:
                model = classifier.load_model(self.hal.storage, "model", self.trust.blob_verifier())
                if model is not None:
                    self.model = model
                    self.smoother = classifier.Smoother(len(model.classes), 3)
                    # a refused stored blob means the collar runs its last good or shipped model
                    self.model_fallback = getattr(model, "refused", None) is not None
                    # the model defines the window it was trained on: the accelerometer follows it
                    self.settings["window_s"] = model.window_s
                    self.settings["accel_rate_hz"] = model.rate_hz
            except Exception:
                self._count(_ERR_MODEL)
        if self.model is None:
            self.model = ThresholdModel(self.settings)
            self.model_fallback = True
        classes = self.model.classes
        self.n_classes = len(classes) if len(classes) <= config.MAX_CLASSES else config.MAX_CLASSES
        self.feat = features.new_feature_buffer() if features is not None else None
        # the feature pass of a window (the twin may wrap it to reuse the result for a window it has seen)
        self.feature_pass = features.compute_features if features is not None else None

    def _configure_imu(self):
        rate = self.settings["accel_rate_hz"]
        n = rate * self.settings["window_s"]
        self.accel_buf = array("h", bytes(6 * n))
        try:
            self.hal.imu.configure(rate, self.settings["accel_range_g"])
        except Exception:
            self._count(ERR_IMU)

    # ---- the duty cycle ----------------------------------------------------------------

    def step(self):
        """Run one duty cycle at hal.clock.now_s(); return the Unix second to wake up next."""
        self._feed_watchdog()
        collect_garbage()  # no exception handler may be live here (see simulator/micropython_runner.py)
        if self.trust.pending is not None and not self.trust.verify_some(self.reload_model):
            self._count(_ERR_OTHER)  # a model that waited for its check loads as soon as it is verified
        self.planned_wake_s = self._cycle()
        return self.planned_wake_s

    def _feed_watchdog(self):
        watchdog = self.hal.watchdog
        if watchdog is not None:
            try:
                watchdog.feed()
            except Exception:
                self._count(_ERR_OTHER)

    def run(self, until_s):
        """Loop step() and clock.sleep_until() until the clock reaches until_s."""
        clock = self.hal.clock
        while True:
            wake_s = self.step()
            if wake_s >= until_s:
                clock.sleep_until(until_s)
                return
            clock.sleep_until(wake_s)

    def _cycle(self):
        now = self._now(self.now_s + 60)
        if now < self.now_s - _CLOCK_STEP_BACK_S:
            self._reschedule(now)  # the clock was set back (e.g. GNSS time): no timer may wait for days
        elif self.planned_wake_s and now > self.planned_wake_s + _CLOCK_STEP_FORWARD_S:
            self._rebase(now - self.planned_wake_s)  # set forward (first GNSS time after boot)
            self._reschedule(now)
        self.now_s = now
        if self.reboot_pending:
            self._boot("software")
            now = self.now_s
        if now >= self.next_window_s:
            self._guard(self._window, now, ERR_IMU)
        if now >= self.next_battery_s:
            self._guard(self._power, now, _ERR_POWER)
        if now >= self.next_fix_s:
            self._guard(self._fix, now, ERR_GNSS)
        if now >= self.summary.end_s:
            self._guard(self._summary, now, _ERR_OTHER)
        if self.risk.pending:
            self._guard(self._alerts, now, _ERR_STORAGE)
        if now >= self.next_status_s:
            self._guard(self._status, now, _ERR_OTHER)
        if self._settings_report:
            self._guard(self._report_settings, now, _ERR_OTHER)
        if self.update.busy():
            self._guard(self.update.step, now, _ERR_OTHER)
        if self.positions.n:
            self._guard(self._flush_positions, now, _ERR_OTHER)
        self._guard(self._send, now, ERR_RADIO)
        return self._next_wake(now)

    def _rebase(self, jump_s):
        """Move every remembered instant forward by jump_s: uptime, stillness and tracking do not
        count the time the clock skipped (a boot-relative clock set to GNSS time is no 12 h of rest)."""
        self.boot_s += jump_s
        self.link.shift_time(jump_s)
        if self.fix_s:
            self.fix_s += jump_s
        self.risk.shift_time(jump_s)

    def _reschedule(self, now):
        self.next_window_s = now
        self.next_battery_s = now
        self.next_fix_s = now
        if self.next_status_s > now + self.settings["status_interval_s"]:
            self.next_status_s = now
        self._start_summary(now, 1)
        self.queue.release(now)
        self.link.probe_at_s = now

    def reload_model(self):
        """Load the model again (after an update stored a new blob) and follow its window and classes."""
        self._load_model()
        self._configure_imu()
        self._start_summary(self.now_s, 1)

    def _guard(self, stage, now, err):
        try:
            stage(now)
        except Exception:
            self._count(err)

    def _count(self, err):
        if self.errors[err] < 255:
            self.errors[err] += 1

    def error_total(self):
        """Return the sum of the error counters, saturated at 255 (the status byte)."""
        total = 0
        for e in self.errors:
            total += e
        return total if total < 255 else 255

    def tracking(self):
        """Return True while GNSS and windows run at the tracking rate."""
        return self.risk.tracking(self.now_s)

    def _next_wake(self, now):
        wake = self.next_window_s
        for t in (self.next_fix_s, self.summary.end_s, self.next_status_s, self.next_battery_s):
            if t < wake:
                wake = t
        retry = self.queue.next_retry_s(now)
        if retry and retry < wake:
            wake = retry
        if self.send_wake_s and self.send_wake_s < wake:
            wake = self.send_wake_s
        window = self.update.wake_s()
        if window and window < wake:
            wake = window
        return wake if wake > now else now + 1

    # ---- sensing -----------------------------------------------------------------------

    def _window(self, now):
        s = self.settings
        self.next_window_s = now + (s["window_s"] if self.tracking() else s["window_every_s"])
        rate = s["accel_rate_hz"]
        n = self.hal.imu.read_fifo(self.accel_buf)
        if n < rate * s["window_s"] // 2:
            self._count(ERR_IMU)
            return
        feat = self.feat
        self.feature_pass(self.accel_buf, n, rate, feat)
        vedba_mg = int(feat[_F_VEDBA])
        vedba_max_mg = int(feat[_F_VEDBA_MAX])
        if self.smoother is None:
            idx = self.model.predict_vedba(vedba_mg)
        else:
            idx = self.smoother.update(self.model.predict(feat))
        if idx >= self.n_classes:
            idx = self.n_classes - 1
        self.behaviour = idx
        self.windows += 1
        if self.fix_plan.on_behaviour(now, self.model.classes, idx, self.fix_s):
            self.next_fix_s = now  # smart fixes: the corner where the behaviour changed
        self.summary.add(idx, vedba_mg, vedba_max_mg)
        try:
            self.temperature_dc = self.hal.power.temperature_dc()
        except Exception:
            self._count(_ERR_POWER)
        self.risk.on_window(now, self.model.classes[idx], vedba_mg, int(feat[_F_MEAN_X]), int(feat[_F_MEAN_Y]),
                            int(feat[_F_MEAN_Z]), self.temperature_dc)
        if self.risk.tracking(now) and self.next_fix_s > now + s["tracking_gnss_interval_s"]:
            self.next_fix_s = now  # a flight began: fix now, then at the tracking rate
            self.next_window_s = now + s["window_s"]

    def _power(self, now):
        self.next_battery_s = now + _BATTERY_EVERY_S
        self.battery_mv = self.hal.power.battery_mv()
        self.risk.on_battery(self.battery_mv)

    def _fix(self, now):
        self.next_fix_s = now + scheduler.gnss_interval_s(self.settings, self.tracking(), self.risk.battery_level,
                                                          self.risk.still_s(now), self.fix_plan.interval_s())
        fix = self.hal.gnss.acquire(_GNSS_TIMEOUT_S)
        if fix is None:
            self.fix_failures += 1
            return
        lat = geo.lat_raw(fix[0])
        lon = geo.lon_raw(fix[1])
        self.fix_s = now
        self.fix_lat = lat
        self.fix_lon = lon
        if self.positions.too_old_for(now):
            self._flush_positions(now, True)
        self.positions.add(now, lat, lon)  # full only while flash writes keep failing
        self.risk.on_fix(now, lat, lon, self.fences(), geo.distance_m)
        cap = self.fix_plan.fence_cap_s(self.risk.farmland_room_m)
        if cap and self.next_fix_s > now + cap:
            self.next_fix_s = now + cap  # smart fixes: farmland within a short walk
        if self.risk.tracking(now) and self.next_fix_s > now + self.settings["tracking_gnss_interval_s"]:
            self.next_fix_s = now + self.settings["tracking_gnss_interval_s"]

    def fences(self):
        """Return the list of complete virtual fences held on the collar."""
        return self.fence_store.complete()

    # ---- messages ----------------------------------------------------------------------

    def _start_summary(self, now, factor):
        self.summary.start(now, self.settings["summary_interval_s"], factor)

    def _summary(self, now):
        payload = self.summary.payload(self.model.version, self.n_classes)
        if payload is not None:
            self.queue.put(scheduler.PRIO_SUMMARY, PORT_ACTIVITY, payload, False)
        self._start_summary(now, self.sched.summary_factor(now))

    def _flush_positions(self, now, force=False):
        if not force and self.positions.n < self.settings["positions_per_uplink"]:
            return
        self.queue.put(scheduler.PRIO_POSITIONS, PORT_POSITIONS, self.positions.payload(), False)
        self.positions.clear()  # only once queued: fixes whose flash write failed go out at the next wake

    def _alerts(self, now):
        pending = self.risk.pending
        while pending:
            seq = self.alert_seq
            self.alert_seq = (seq + 1) & 7
            self._save_state()
            payload = codec.encode("alert", {
                "alert_type": pending[0], "seq": seq, "time_s": now,
                "lat": self.fix_lat / geo.LAT_UNITS_PER_DEG, "lon": self.fix_lon / geo.LON_UNITS_PER_DEG,
            })
            self.queue.put(scheduler.PRIO_ALERT, PORT_ALERT, payload, self.settings["confirmed_alerts"] == 1)
            pending.pop(0)  # only once queued: an alert whose flash write failed is tried at the next wake

    def _save_state(self):
        self.hal.storage.write(config.KEY_STATE, records.sealed(bytes((self.alert_seq,))))

    def status_values(self, now):
        """Return the field values of the status uplink at now (also used by tests and the simulator)."""
        fix_age = now - self.fix_s if self.fix_s else _MAX_DT_S
        uptime_h = (now - self.boot_s) // 3600
        values = {
            "time_s": now,
            "lat": self.fix_lat / geo.LAT_UNITS_PER_DEG,
            "lon": self.fix_lon / geo.LON_UNITS_PER_DEG,
            "fix_age_s": fix_age if fix_age < _MAX_DT_S else _MAX_DT_S,
            "battery_mv": self.battery_mv,
            "temperature_c": self.temperature_dc / 10,
            "fw_version": self.update.fw_version(),
            "model_version": self.model.version,
            "uptime_h": uptime_h if uptime_h < 65535 else 65535,
            "reset_cause": self.reset_cause,
            "behaviour": self.behaviour,  # the model's class index: the bridge names it by model_version
            "tracking": 1 if self.tracking() else 0,
            "in_farmland": 1 if self.risk.in_farmland() else 0,
            "outside_park": 1 if self.risk.outside_park() else 0,
            "battery_low": 1 if self.risk.battery_level else 0,
            "model_fallback": 1 if self.model_fallback else 0,
            "clock_unsynced": 1 if now < 1600000000 else 0,
            "queue_full": 1 if self.queue.is_full() else 0,
            "queue_depth": min(self.queue.depth(), 255),
            "errors": self.error_total(),
        }
        values.update(self.update.result_values())
        return values

    def _status(self, now):
        self.next_status_s = now + self.settings["status_interval_s"]
        payload = codec.encode("status", self.status_values(now))
        self.queue.put(scheduler.PRIO_STATUS, PORT_STATUS, payload, True)  # confirmed: doubles as a link check

    def _report_settings(self, now):
        self._settings_report = False
        for payload in settings_store.report_payloads(self.settings):
            self.queue.put(scheduler.PRIO_STATUS, codec.SETTINGS_PORT, payload, False)

    # ---- the air -----------------------------------------------------------------------

    def _send(self, now):
        radio = self.hal.radio
        q = self.queue
        self.send_wake_s = 0
        link = self.link
        if link.held(now):
            self.send_wake_s = link.probe_at_s
            return
        sf, bw_khz = radio.data_rate()
        for _ in range(config.MAX_SENDS_PER_WAKE):
            slot = q.next_ready(now)
            if slot < 0:
                return
            prio = q.prio[slot]
            payload = q.payload(slot)
            if payload is None:
                self._count(_ERR_STORAGE)
                continue
            airtime = scheduler.airtime_us(len(payload), sf, bw_khz)
            band = self.sched.pick_band(now, airtime, prio)
            if band < 0:
                if self.sched.held_by_duty:
                    self.send_wake_s = self.sched.next_band_free_s(now)
                return
            confirmed = link.must_confirm(now, q, slot)
            port = q.port[slot]
            try:
                ok = radio.send(port, payload, confirmed)
            except Exception:
                self._count(ERR_RADIO)
                ok = False
            self.sched.record(now, band, airtime)
            self.uplinks += 1
            link.after_send(now, q, slot, prio, confirmed, ok, self.settings["alert_repeat_min"])
            self._downlinks(now)
            if confirmed and not ok:
                return  # out of coverage: no more tries this wake

    def _downlinks(self, now):
        for _ in range(2):
            try:
                heard = self.hal.radio.receive()
            except Exception:
                self._count(ERR_RADIO)
                return
            if heard is None:
                return
            self.downlinks += 1
            port = heard[0]
            payload = bytes(heard[1])
            if port >= FIRST_FUOTA_PORT:
                if not self.update.take(port, payload, now):
                    self._count(ERR_DOWNLINK)  # a bad fragment: counted, the wake goes on sending
                continue
            on_port, cmd, result = downlink.handle(port, payload, self)
            if result:
                self._count(ERR_DOWNLINK)
            ack = codec.encode("ack", {"time_s": now, "on_port": on_port & 0xFF, "cmd": cmd, "result": result})
            self.queue.put(scheduler.PRIO_ACK, PORT_ACK, ack, False)

    # ---- what downlinks call (see downlink.py); each returns an ack result ---------------

    def apply_settings(self, values):
        """Apply range-checked settings from port 3 if they agree with each other; persist them."""
        model = self.model
        window = None if isinstance(model, ThresholdModel) else (model.window_s, model.rate_hz)
        result = settings_store.check_change(self.settings, values, window)
        if result != downlink.ACK_OK:
            return result
        imu_changed = False
        for k in values:
            if k in ("accel_rate_hz", "accel_range_g", "window_s") and self.settings[k] != values[k]:
                imu_changed = True
            self.settings[k] = values[k]
        settings_store.save(self.hal.storage, self.settings)
        self.sched.fair_use_ms = self.settings["fair_use_airtime_s"] * 1000
        if imu_changed:
            self._configure_imu()
        now = self.now_s
        if "gnss_interval_s" in values and self.next_fix_s > now + values["gnss_interval_s"]:
            self.next_fix_s = now + values["gnss_interval_s"]
        if "status_interval_s" in values and self.next_status_s > now + values["status_interval_s"]:
            self.next_status_s = now + values["status_interval_s"]
        return downlink.ACK_OK

    def ack_alert(self, alert_type, seq):
        """The bridge acknowledged alert (type, seq): stop repeating it. Idempotent."""
        slot = self.queue.find(PORT_ALERT, ((alert_type & 31) << 3) | (seq & 7))
        if slot >= 0:
            self.queue.remove(slot)
        return downlink.ACK_OK

    def queue_ack(self, port, payload):
        """Queue an answer (port 31 ack or a FUOTA answer) to send at the next chance."""
        self.queue.put(scheduler.PRIO_ACK, port, payload, False)

    def fuota_downlink(self, port, payload, group=None):
        """Take a FUOTA frame heard in a Class C window (the modem listens between wake-ups) on multicast group
        0..3, or on the collar's own address (None): the modem says which."""
        if not self.update.take(port, payload, self._now(self.now_s), group):
            self._count(ERR_DOWNLINK)

    def request_status(self):
        """Send a status at the next chance."""
        self.next_status_s = self.now_s
        return downlink.ACK_OK

    def request_settings(self):
        """Report every setting on port 3 at the next chance."""
        self._settings_report = True
        return downlink.ACK_OK

    def request_reboot(self):
        """Reboot at the next step (after the acknowledgement is queued)."""
        self.reboot_pending = True
        return downlink.ACK_OK

    def start_tracking(self, minutes):
        """Track at the high rate for minutes from now (0 stops tracking)."""
        now = self.now_s
        if minutes == 0:
            self.risk.tracking_until_s = 0
        else:
            self.risk.start_tracking(now, minutes)
            self.next_fix_s = now
            self.next_window_s = now
        return downlink.ACK_OK

    def clear_fences(self):
        """Forget every virtual fence."""
        self.risk.forget_fences()
        return self.fence_store.clear()

    def fence_part(self, fence_id, kind, first_index, lats, lons, last):
        """Receive points first_index.. of a fence polygon (degrees); install it when last is set."""
        result, installed = self.fence_store.part(fence_id, kind, first_index, lats, lons, last)
        if installed:
            self.risk.forget_fences()
            self.fence_store.save()
        return result
