"""What the collar may send, when: LoRa airtime, EU868 duty cycle, daily fair use, priorities, GNSS rate.

Airtime follows Semtech AN1200.13 ("LoRa Modem Designer's Guide") on the whole PHY frame: the
application payload plus LoRaWAN's 13 bytes (MHDR 1, FHDR 7, FPort 1, MIC 4), 8-symbol preamble,
explicit header, CRC on, coding rate 4/5, low-data-rate optimisation when a symbol lasts >= 16 ms.
All arithmetic is integer microseconds, so MicroPython and CPython agree to the microsecond.

EU868 (ETSI EN 300 220, LoRaWAN RP002): the default uplink channels lie in two 1 % sub-bands,
865.0-868.0 MHz (867.1-867.9) and 868.0-868.6 MHz (868.1, 868.3, 868.5). After a transmission of
airtime T a sub-band stays closed for T * (100 / duty_pct - 1). The collar rotates over the open
sub-band with the earliest free time, as the LoRaWAN MAC does, and never asks the modem to send into
a closed one.
"""

from collar_firmware.compat import const

_LORAWAN_OVERHEAD_BYTES = const(13)
_PREAMBLE_SYMBOLS = const(8)

# Priorities: lower is more urgent. The queue sends the most urgent ready record first.
PRIO_ALERT = const(0)
PRIO_ACK = const(1)
PRIO_STATUS = const(2)
PRIO_POSITIONS = const(3)
PRIO_SUMMARY = const(4)

# Share (percent) of the daily fair-use budget each priority may fill. Alerts are never held back by
# fair use (only by the duty-cycle law): a poaching alert matters more than a network's courtesy cap.
FAIR_USE_CAP_PCT = (None, 100, 95, 85, 75)

# EU868 sub-bands of the default uplink channel plan: (name, duty cycle in per-mille).
SUB_BANDS = (("865.0-868.0", 10), ("868.0-868.6", 10))


def airtime_us(payload_bytes, sf, bw_khz):
    """Return the time on air in microseconds of an uplink carrying payload_bytes of application data."""
    pl = payload_bytes + _LORAWAN_OVERHEAD_BYTES
    t_sym_us = (1 << sf) * 1000 // bw_khz
    de = 1 if t_sym_us >= 16000 else 0
    num = 8 * pl - 4 * sf + 28 + 16  # CRC on, explicit header
    den = 4 * (sf - 2 * de)
    if num > 0:
        payload_symbols = 8 + ((num + den - 1) // den) * 5  # coding rate 4/5
    else:
        payload_symbols = 8
    # preamble + 4.25 sync symbols + payload symbols, in quarter symbols
    return (4 * (_PREAMBLE_SYMBOLS + payload_symbols) + 17) * t_sym_us // 4


class Scheduler:
    """Duty-cycle and fair-use bookkeeping of one collar; times are Unix seconds, airtime microseconds."""

    def __init__(self, fair_use_airtime_s=30):
        self.fair_use_ms = fair_use_airtime_s * 1000
        self.band_free_ms = [0] * len(SUB_BANDS)  # ms since day_origin_s at which each band reopens
        self.day = -1
        self.day_origin_s = 0
        self.used_ms_today = 0
        self.sent_today = 0
        self.airtime_ms_total = 0
        self.sent_total = 0
        self.held_duty = 0
        self.held_fair_use = 0
        self.held_by_duty = False

    def _roll_day(self, now_s):
        day = now_s // 86400
        if day != self.day:
            # keep the bands' closing times, moved onto the new day's origin
            shift_ms = (day * 86400 - self.day_origin_s) * 1000 if self.day >= 0 else 0
            for b in range(len(self.band_free_ms)):
                left = self.band_free_ms[b] - shift_ms
                self.band_free_ms[b] = left if left > 0 else 0
            self.day = day
            self.day_origin_s = day * 86400
            self.used_ms_today = 0
            self.sent_today = 0

    def pick_band(self, now_s, airtime, priority):
        """Return the sub-band an uplink of airtime us may use now, or -1 (duty cycle or fair use)."""
        self._roll_day(now_s)
        cap = FAIR_USE_CAP_PCT[priority] if priority < len(FAIR_USE_CAP_PCT) else 75
        airtime_ms = (airtime + 999) // 1000
        self.held_by_duty = False
        if cap is not None and (self.used_ms_today + airtime_ms) * 100 > self.fair_use_ms * cap:
            self.held_fair_use += 1
            return -1
        now_ms = (now_s - self.day_origin_s) * 1000
        best = -1
        for b in range(len(SUB_BANDS)):
            if self.band_free_ms[b] <= now_ms and (best < 0 or self.band_free_ms[b] < self.band_free_ms[best]):
                best = b
        if best < 0:
            self.held_duty += 1
            self.held_by_duty = True
        return best

    def record(self, now_s, band, airtime):
        """Account one transmission of airtime us on band at now_s."""
        self._roll_day(now_s)
        airtime_ms = (airtime + 999) // 1000
        per_mille = SUB_BANDS[band][1]
        now_ms = (now_s - self.day_origin_s) * 1000
        self.band_free_ms[band] = now_ms + airtime_ms * 1000 // per_mille
        self.used_ms_today += airtime_ms
        self.sent_today += 1
        self.airtime_ms_total += airtime_ms
        self.sent_total += 1

    def next_band_free_s(self, now_s):
        """Return the Unix second at which the earliest sub-band reopens (now_s if one is open)."""
        self._roll_day(now_s)
        first = min(self.band_free_ms)
        t_s = self.day_origin_s + (first + 999) // 1000
        return t_s if t_s > now_s else now_s

    def projected_use_pct(self, now_s):
        """Return the fair-use budget (percent) today's rate of use would spend by the end of the day."""
        self._roll_day(now_s)
        elapsed_s = now_s - self.day_origin_s
        if elapsed_s < 3600:
            elapsed_s = 3600
        return self.used_ms_today * 86400 // elapsed_s * 100 // self.fair_use_ms

    def summary_factor(self, now_s):
        """Return how many summary intervals to merge into one uplink (1, 2 or 4) to stay within fair use."""
        pct = self.projected_use_pct(now_s)
        if pct > 110:
            return 4
        if pct > 80:
            return 2
        return 1


def gnss_interval_s(settings, tracking, battery_level, still_s, base_s=0):
    """Return the seconds until the next GNSS fix (adaptive rate).

    tracking: high rate after a flight or a fence crossing; battery_level: 0 ok, 1 low, 2 critical;
    still_s: how long the animal has been still (a still animal is fixed less often, up to 4x);
    base_s: the interval the behaviour asks for (fix_schedule), 0 for gnss_interval_s.
    """
    if tracking:
        return settings["tracking_gnss_interval_s"]
    interval = base_s if base_s else settings["gnss_interval_s"]
    if battery_level == 2:
        return interval * 4
    if battery_level == 1:
        interval = interval * 2
    if still_s >= 4 * 3600:
        interval = interval * 2
    return interval
