"""Helpers of the collar tests: a small world around one real Collar whose every input a test sets.

`CollarWorld` wires `collar_firmware.main.Collar` to the simulated HAL of `simulator.hal_sim`, with
sources the test changes between steps: the behaviour (an accelerometer signal of known VeDBA),
the collar's orientation, the position, the battery, the temperature and the gateway coverage.
"""

from __future__ import annotations

from collar_firmware import codec, geo
from collar_firmware.main import Collar
from simulator.hal_sim import SimFlash, make_hal
from simulator.scripted import synth_window

START_S = 1772323200  # 2026-03-01 00:00 UTC (03:00 in the reserve)
NOON_S = START_S + 9 * 3600  # 12:00 East Africa Time
NIGHT_S = START_S + 20 * 3600  # 23:00 East Africa Time

PARK_CENTRE = (0.572, 37.585)
DEG_PER_KM_LAT = 1000 / geo.METRES_PER_DEGREE
DEG_PER_KM_LON = 1000 / geo.metres_per_degree_lon(PARK_CENTRE[0])

# accelerometer signals: behaviour -> (amplitude mg, noise mg, phase step); VeDBA ~3, ~11, ~60, ~140,
# ~535 mg. "still" is a carcass (the sensor's noise only), "sleep" an elephant asleep (breathing sway).
SIGNALS = {"still": (0, 4, 0), "sleep": (14, 4, 2), "forage": (70, 40, 10), "walk": (170, 50, 20),
           "run": (650, 160, 40)}


def km(north_km: float, east_km: float) -> tuple[float, float]:
    """Return (lat, lon) north_km and east_km from the park centre."""
    return (PARK_CENTRE[0] + north_km * DEG_PER_KM_LAT, PARK_CENTRE[1] + east_km * DEG_PER_KM_LON)


def square_km(south: float, west: float, north: float, east: float) -> list[dict]:
    """Return the corners of a box (km from the centre) as codec fence points."""
    return [dict(zip(("lat", "lon"), km(n, e), strict=True))
            for n, e in ((south, west), (south, east), (north, east), (north, west))]


def fence_downlink(fence_id: int, kind: str, points: list[dict], first_index: int = 0, last: int = 1) -> bytes:
    """Return the port 32 payload carrying points of a virtual fence."""
    return codec.encode("fence", {"fence_id": fence_id, "kind": kind, "last": last, "spare": 0,
                                  "first_index": first_index, "points": points})


class CollarWorld:
    """One real collar in a world the test controls; run_for(seconds) lives through it."""

    def __init__(self, start_s: int = START_S, settings: dict | None = None, sf: int = 7,
                 flash: SimFlash | None = None, reset_cause: str = "power_on", keys=None) -> None:
        self.behaviour = "forage"
        self.gravity_mg = (80, -150, -975)  # worn: the collar's z axis points down the neck
        self.position = km(0, 0)
        self.battery_mv = 3600
        self.temperature_dc = 320
        self.coverage = True
        self.flash = flash if flash is not None else SimFlash()
        self.settings = settings
        self._noise = 12345
        self.hal = make_hal(start_s, self, lambda t: self.position, battery=lambda t: self.battery_mv,
                            temperature=lambda t: self.temperature_dc, coverage=lambda t: self.coverage,
                            sf=sf, flash=self.flash, reset_cause=reset_cause)
        self.keys = keys  # a trust.Trust to build the collar with (None: the keys the firmware ships)
        self.collar = Collar(self.hal, settings, keys)
        self.wake_s = start_s
        self.sent: list[tuple[int, int, bytes, bool, bool]] = []

    # the accelerometer source
    def fill(self, t_s: int, n: int, rate_hz: int, buf) -> int:
        amp, noise, step = SIGNALS[self.behaviour]
        self._noise = synth_window(buf, n, amp, noise, step, self.gravity_mg, self._noise, 0)
        return n

    @property
    def now_s(self) -> int:
        return self.hal.clock.now_s()

    def run_for(self, seconds: int) -> None:
        """Step the collar through the next seconds of simulated time."""
        self.run_until(self.wake_s + seconds if self.wake_s > self.now_s else self.now_s + seconds)

    def run_until(self, until_s: int) -> None:
        """Step the collar until its next wake-up is at or after until_s."""
        while self.wake_s < until_s:
            self.hal.clock.sleep_until(self.wake_s)
            self.wake_s = self.collar.step()
            self._drain()
        self.hal.clock.sleep_until(until_s)

    def _drain(self) -> None:
        self.sent.extend(self.hal.radio.uplinks)
        self.hal.radio.uplinks = []

    def downlink(self, port: int, payload: bytes) -> None:
        """Queue a downlink (heard after the collar's next uplink)."""
        self.hal.radio.push_downlink(port, payload)

    def decoded(self, message: str | None = None) -> list[dict]:
        """Return every uplink so far, decoded, with its time and flags; optionally one message type."""
        out = []
        for t_s, port, payload, confirmed, heard in self.sent:
            d = codec.decode(port, payload)
            d.update(sent_s=t_s, confirmed=confirmed, heard=heard, size=len(payload))
            if message is None or d["message"] == message:
                out.append(d)
        return out

    def alerts(self) -> list[str]:
        """Return the alert types sent so far, each once, in the order first sent."""
        seen: list[str] = []
        for d in self.decoded("alert"):
            if d["alert_type"] not in seen:
                seen.append(d["alert_type"])
        return seen

    def acks(self) -> list[dict]:
        """Return the port 31 acknowledgements sent so far."""
        return self.decoded("ack")

    def reboot(self, reset_cause: str = "power_on") -> None:
        """Power the collar off and on: same flash, fresh RAM, reset cause as given."""
        self._drain()
        keep = {k: getattr(self, k) for k in ("behaviour", "gravity_mg", "position", "battery_mv",
                                               "temperature_dc", "coverage", "sent")}
        self.__init__(self.hal.clock.now_s(), self.settings, self.hal.radio.sf, self.flash, reset_cause, self.keys)
        for k, v in keep.items():
            setattr(self, k, v)
