"""u-blox M8 GNSS receiver on a UART, speaking UBX: the reference collar's `hal.GNSS`.

Frames (u-blox 8 / M8 receiver description, UBX protocol): 0xB5 0x62, class, id, length
(u16 little-endian), payload, CK_A, CK_B (8-bit Fletcher over class..payload). The driver:
- configures the receiver once per power-up: UBX-CFG-PRT (UART1: UBX in and out, no NMEA),
  UBX-CFG-MSG (NAV-PVT every solution), UBX-CFG-RATE (1 Hz), UBX-CFG-RXM (power save mode);
- parses the stream with `UbxParser`, whose buffer never exceeds one largest frame (garbage,
  oversize lengths and bad checksums are dropped, and the parser resyncs on 0xB5 0x62);
- `acquire(timeout_s)` wakes the receiver, waits for a NAV-PVT with gnssFixOK and fixType 2 or 3,
  sends it back to sleep (a power pin, or UBX-RXM-PMREQ backup mode woken by UART activity) and
  returns (lat_deg, lon_deg, hdop, ttff_s). NAV-PVT carries no HDOP: `hdop` is its pDOP (x0.01),
  an upper bound of HDOP (PDOP^2 = HDOP^2 + VDOP^2); hAcc (mm) is kept in `last_h_acc_mm`.
- the UTC time of a NAV-PVT with validDate and validTime set is `last_time_s` (Unix seconds) and
  is handed to `on_time(time_s)`: the collar's clock discipline.
Time comes from the `clock_ms` / `sleep_ms` callables, so tests run without sleeping.
"""

from collar_firmware.compat import const, ticks_diff, ticks_ms
from collar_firmware.hal import GNSS

_SYNC1 = const(0xB5)
_SYNC2 = const(0x62)
_CLS_NAV = const(0x01)
_NAV_PVT = const(0x07)
_CLS_RXM = const(0x02)
_RXM_PMREQ = const(0x41)
_CLS_ACK = const(0x05)
_ACK_NAK = const(0x00)
_ACK_ACK = const(0x01)
_CLS_CFG = const(0x06)
_CFG_PRT = const(0x00)
_CFG_MSG = const(0x01)
_CFG_RATE = const(0x08)
_CFG_RXM = const(0x11)

_NAV_PVT_LEN = const(92)
MAX_PAYLOAD = const(100)  # the largest frame the collar keeps; longer ones are skipped
_HEADER = const(6)  # sync (2), class, id, length (2)

# NAV-PVT fields (byte offsets in the payload)
_PVT_YEAR = const(4)
_PVT_VALID = const(11)
_PVT_FIX_TYPE = const(20)
_PVT_FLAGS = const(21)
_PVT_NUM_SV = const(23)
_PVT_LON = const(24)
_PVT_LAT = const(28)
_PVT_H_ACC = const(40)
_PVT_PDOP = const(76)
_VALID_DATE = const(0x01)
_VALID_TIME = const(0x02)
_FLAG_GNSS_FIX_OK = const(0x01)

_ACK_TIMEOUT_MS = const(1000)
_POLL_MS = const(50)  # idle between UART polls
_READ_CHUNK = const(64)
_WAKE_MS = const(100)  # the receiver ignores bytes this long after a wake-up pulse
_POWER_ON_MS = const(1000)  # a switched-on receiver boots this long before it listens
_FLUSH_BYTES = const(4096)  # at most this much stale input is discarded at power-up
NOTHING = const(0)  # _pump results
_MORE = const(1)
_DONE = const(2)


def checksum(data):
    """Return (CK_A, CK_B), the UBX Fletcher checksum of data (class, id, length and payload bytes)."""
    a = 0
    b = 0
    for byte in data:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return (a, b)


def frame(cls, msg_id, payload=b""):
    """Return the whole UBX frame (sync, header, payload, checksum) as bytes."""
    n = len(payload)
    body = bytes((cls, msg_id, n & 0xFF, n >> 8)) + bytes(payload)
    ck_a, ck_b = checksum(body)
    return bytes((_SYNC1, _SYNC2)) + body + bytes((ck_a, ck_b))


def _u16(buf, at):
    return buf[at] | (buf[at + 1] << 8)


def _u32(buf, at):
    return buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)


def _i32(buf, at):
    # signed top byte: values within +-2**30 stay small ints on MicroPython (no heap)
    top = buf[at + 3]
    if top & 0x80:
        top -= 256
    return buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (top << 24)


def unix_s(year, month, day, hour, minute, second):
    """Return Unix seconds of a UTC civil date and time (proleptic Gregorian calendar)."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second


def _u16le(v):
    return bytes((v & 0xFF, (v >> 8) & 0xFF))


def _u32le(v):
    return bytes((v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, (v >> 24) & 0xFF))


def config_frames(baud=9600, power_save=True):
    """Return the UBX-CFG frames that select NAV-PVT output at 1 Hz and the power mode, in order."""
    prt = (bytes((1, 0)) + _u16le(0) + _u32le(0x08C0) + _u32le(baud)  # UART1, 8N1
           + _u16le(0x0001) + _u16le(0x0001) + _u16le(0) + _u16le(0))  # in: UBX, out: UBX
    return (
        frame(_CLS_CFG, _CFG_PRT, prt),
        frame(_CLS_CFG, _CFG_MSG, bytes((_CLS_NAV, _NAV_PVT, 1))),
        frame(_CLS_CFG, _CFG_RATE, _u16le(1000) + _u16le(1) + _u16le(1)),  # 1000 ms, GPS time
        frame(_CLS_CFG, _CFG_RXM, bytes((8, 1 if power_save else 0))),
    )


def backup_frame():
    """Return UBX-RXM-PMREQ: backup mode until UART activity wakes the receiver."""
    return frame(_CLS_RXM, _RXM_PMREQ, bytes(4) + _u32le(0) + _u32le(0x06) + _u32le(0x08))


class UbxParser:
    """Streaming UBX parser with a buffer of one largest frame (max_payload + 8 bytes).

    feed_byte(b) adds a byte; next_frame() returns True while a whole, checksummed frame sits at
    the front: its class, id and length are in cls, msg_id, length and its payload is
    buf[HEADER:HEADER + length] until the next call. Bytes before a sync pair, frames longer than
    max_payload and frames with a bad checksum are dropped; after a bad frame the parser looks
    for the next sync pair inside it, so a good frame is never lost behind a corrupt header.
    """

    def __init__(self, max_payload=MAX_PAYLOAD):
        if max_payload < 1 or max_payload > 65535:
            raise ValueError("max_payload must be 1..65535, got %r" % (max_payload,))
        self.max_payload = max_payload
        self.capacity = max_payload + 8
        self.buf = bytearray(self.capacity)
        self.n = 0  # bytes held
        self._done = 0  # bytes of the frame last returned, dropped at the next call
        self.cls = 0
        self.msg_id = 0
        self.length = 0
        self.frames = 0
        self.bad_checksums = 0
        self.oversize = 0
        self.dropped_bytes = 0

    def reset(self):
        """Forget every byte held (a new power-up: what came before is stale)."""
        self.n = 0
        self._done = 0

    def _drop(self, k):
        buf = self.buf
        n = self.n
        i = k
        while i < n:
            buf[i - k] = buf[i]
            i += 1
        self.n = n - k

    def feed_byte(self, b):
        """Add one received byte (the oldest held byte is dropped if next_frame was not called)."""
        if self._done:
            self._drop(self._done)
            self._done = 0
        if self.n == self.capacity:
            self._drop(1)
            self.dropped_bytes += 1
        self.buf[self.n] = b
        self.n += 1

    def feed(self, data):
        """Add bytes and return how many whole frames went by (their contents are not kept)."""
        frames = 0
        for b in data:
            self.feed_byte(b)
            while self.next_frame():
                frames += 1
        return frames

    def next_frame(self):
        """Return True when a whole frame with a good checksum is at the front (see the class doc)."""
        if self._done:
            self._drop(self._done)
            self._done = 0
        buf = self.buf
        while True:
            n = self.n
            k = 0
            while k < n and buf[k] != _SYNC1:
                k += 1
            if k:
                self.dropped_bytes += k
                self._drop(k)
                n = self.n
            if n < 2:
                return False
            if buf[1] != _SYNC2:
                self.dropped_bytes += 1
                self._drop(1)
                continue
            if n < _HEADER:
                return False
            length = buf[4] | (buf[5] << 8)
            if length > self.max_payload:
                self.oversize += 1
                self._drop(1)
                continue
            end = _HEADER + length
            if n < end + 2:
                return False
            a = 0
            b = 0
            i = 2
            while i < end:
                a = (a + buf[i]) & 0xFF
                b = (b + a) & 0xFF
                i += 1
            if a != buf[end] or b != buf[end + 1]:
                self.bad_checksums += 1
                self._drop(1)
                continue
            self.cls = buf[2]
            self.msg_id = buf[3]
            self.length = length
            self.frames += 1
            self._done = end + 2
            return True


class UbloxM8(GNSS):
    """u-blox M8 on a UART-like object (read(n) -> bytes | None, write(b), any() -> int).

    clock_ms: callable -> ms (wrapping like time.ticks_ms; default compat.ticks_ms); sleep_ms:
    callable(ms) idling between polls (default: none, busy polling); power_pin: optional
    machine.Pin switching the receiver's supply (else backup mode over UBX); on_time: optional
    callable(time_s) given the UTC time of each NAV-PVT with valid date and time; min_fix_type:
    2 accepts 2-D fixes, 3 only 3-D; baud, power_save: see config_frames().
    """

    def __init__(self, uart, clock_ms=None, sleep_ms=None, power_pin=None, on_time=None, min_fix_type=2,
                 baud=9600, power_save=True):
        # 1. arguments
        for name in ("read", "write", "any"):
            if not hasattr(uart, name):
                raise ValueError("uart must have read, write and any; missing %s" % name)
        if min_fix_type not in (2, 3):
            raise ValueError("min_fix_type must be 2 or 3, got %r" % (min_fix_type,))
        self.uart = uart
        self._clock_ms = clock_ms if clock_ms is not None else ticks_ms
        self._sleep_ms = sleep_ms
        self.power_pin = power_pin
        self.on_time = on_time
        self.min_fix_type = min_fix_type
        # 2. buffers and frames, once
        self.parser = UbxParser()
        self._config = config_frames(baud, power_save)
        self._backup = backup_frame()
        self.configured = False
        # what the last NAV-PVT said
        self.last_time_s = None
        self.last_fix_type = 0
        self.last_num_sv = 0
        self.last_h_acc_mm = 0
        self.last_pdop_x100 = 0
        self.last_lat_e7 = 0
        self.last_lon_e7 = 0
        self._ack_for = -1  # (class << 8) | id of the CFG frame awaiting its ACK
        self._acked = False
        self.fixes = 0
        self.timeouts = 0
        self.config_failures = 0

    # ---- power ---------------------------------------------------------------------------

    def _wait(self, ms):
        if self._sleep_ms is not None:
            self._sleep_ms(ms)

    def power_up(self):
        """Switch the receiver on (power pin high, or a byte on its RX line to leave backup mode)
        and discard what it sent before: a fix from the last power-up must never count again."""
        if self.power_pin is not None:
            self.power_pin.value(1)
            self.configured = False  # a cold receiver starts from its defaults
            self._wait(_POWER_ON_MS)
        else:
            self.uart.write(b"\xff")
            self._wait(_WAKE_MS)
        flushed = 0
        while flushed < _FLUSH_BYTES:
            waiting = self.uart.any()
            if not waiting:
                break
            self.uart.read(waiting if waiting < _READ_CHUNK else _READ_CHUNK)
            flushed += waiting
        self.parser.reset()

    def power_down(self):
        """Put the receiver to sleep (power pin low, or UBX-RXM-PMREQ backup mode)."""
        if self.power_pin is not None:
            self.power_pin.value(0)
        else:
            self.uart.write(self._backup)

    # ---- configuration -------------------------------------------------------------------

    def configure(self):
        """Send the UBX-CFG frames, each awaiting its ACK; return how many were acknowledged."""
        acked = 0
        for f in self._config:
            self.uart.write(f)
            if self._await_ack(f[2], f[3]):
                acked += 1
            else:
                self.config_failures += 1
        self.configured = acked == len(self._config)
        return acked

    def _await_ack(self, cls, msg_id):
        self._ack_for = (cls << 8) | msg_id
        self._acked = False
        start = self._clock_ms()
        while ticks_diff(self._clock_ms(), start) < _ACK_TIMEOUT_MS:
            got = self._pump()
            if got == _DONE:
                return self._acked
            if got == NOTHING:
                self._wait(_POLL_MS)
        self._ack_for = -1  # no answer: stop waiting for it
        return False

    def _pump(self):
        """Move received bytes into the parser, handling each frame; return NOTHING, MORE or DONE."""
        waiting = self.uart.any()
        if not waiting:
            return NOTHING
        data = self.uart.read(waiting if waiting < _READ_CHUNK else _READ_CHUNK)
        if not data:
            return NOTHING
        p = self.parser
        for b in data:
            p.feed_byte(b)
            while p.next_frame():
                if self._frame():
                    return _DONE
        return _MORE

    def _frame(self):
        """Handle the frame at the parser's front; return True when the wait it ends is over."""
        p = self.parser
        if p.cls == _CLS_ACK and p.length == 2:
            if self._ack_for == (p.buf[_HEADER] << 8) | p.buf[_HEADER + 1]:
                self._acked = p.msg_id == _ACK_ACK
                self._ack_for = -1
                return True
            return False
        if p.cls == _CLS_NAV and p.msg_id == _NAV_PVT and p.length == _NAV_PVT_LEN:
            return self._pvt() and self._ack_for < 0
        return False

    # ---- fixes ---------------------------------------------------------------------------

    def _pvt(self):
        """Read the NAV-PVT at the parser's front; return True when it is a usable fix."""
        p = self.parser.buf
        o = _HEADER
        valid = p[o + _PVT_VALID]
        if valid & _VALID_DATE and valid & _VALID_TIME:
            self.last_time_s = unix_s(_u16(p, o + _PVT_YEAR), p[o + 6], p[o + 7], p[o + 8], p[o + 9], p[o + 10])
            if self.on_time is not None:
                self.on_time(self.last_time_s)
        fix_type = p[o + _PVT_FIX_TYPE]
        self.last_fix_type = fix_type
        self.last_num_sv = p[o + _PVT_NUM_SV]
        self.last_h_acc_mm = _u32(p, o + _PVT_H_ACC)
        self.last_pdop_x100 = _u16(p, o + _PVT_PDOP)
        self.last_lat_e7 = _i32(p, o + _PVT_LAT)
        self.last_lon_e7 = _i32(p, o + _PVT_LON)
        return (p[o + _PVT_FLAGS] & _FLAG_GNSS_FIX_OK) != 0 and self.min_fix_type <= fix_type <= 3

    def acquire(self, timeout_s):
        """Power up, wait up to timeout_s for a fix; return (lat_deg, lon_deg, hdop, ttff_s) or None.

        hdop is NAV-PVT's pDOP (see the module doc); ttff_s counts whole seconds from power-up,
        rounded up. The receiver is put back to sleep either way.
        """
        start = self._clock_ms()
        limit_ms = int(timeout_s * 1000)
        self.power_up()
        try:
            if not self.configured:
                self.configure()
            while ticks_diff(self._clock_ms(), start) < limit_ms:
                got = self._pump()
                if got == _DONE:
                    elapsed_ms = ticks_diff(self._clock_ms(), start)
                    self.fixes += 1
                    return (self.last_lat_e7 / 10000000, self.last_lon_e7 / 10000000, self.last_pdop_x100 / 100,
                            (elapsed_ms + 999) // 1000)
                if got == NOTHING:
                    self._wait(_POLL_MS)
            self.timeouts += 1
            return None
        finally:
            self.power_down()
