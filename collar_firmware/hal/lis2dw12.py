"""LIS2DW12 FIFO accelerometer on I2C: the reference collar's `hal.IMU`.

Register addresses and bit fields follow ST's LIS2DW12 datasheet (DocID030655). The chip runs in
high-performance 14-bit mode (or low-power mode 1, 12-bit) with its 32-sample FIFO in continuous
mode; `read_fifo(buf)` drains the FIFO in bursts and, when a `sleep_ms` callable is given, idles
between drains until the collar's window (len(buf) // 3 samples) is full. Samples become milli-g
by integer arithmetic with the datasheet's sensitivity (244 ug/LSB at +-2 g, x2 per range step).
Allocation-free after construction: every buffer and view is made in `__init__`.

    imu = LIS2DW12(machine.I2C(0, scl=..., sda=...), address=0x19, sleep_ms=time.sleep_ms)
    n = imu.read_fifo(buf)  # buf: array('h', 3 * samples), interleaved x, y, z in mg
"""

from collar_firmware.compat import const
from collar_firmware.hal import IMU

# Registers (datasheet section 8).
OUT_T_L = const(0x0D)
OUT_T_H = const(0x0E)
WHO_AM_I = const(0x0F)
CTRL1 = const(0x20)
CTRL2 = const(0x21)
_CTRL3 = const(0x22)
CTRL6 = const(0x25)
_STATUS = const(0x27)
OUT_X_L = const(0x28)
FIFO_CTRL = const(0x2E)
_FIFO_SAMPLES = const(0x2F)

_CHIP_ID = const(0x44)  # WHO_AM_I answer
ADDRESSES = (0x18, 0x19)  # SA0 low, SA0 high

# CTRL1: ODR[7:4] MODE[3:2] LP_MODE[1:0]
_CTRL1_MODE_HIGH_PERFORMANCE = const(0x04)  # MODE = 01: 14-bit high performance
_CTRL1_MODE_LOW_POWER_1 = const(0x00)  # MODE = 00, LP_MODE = 00: 12-bit low-power mode 1
_LOW_POWER_MAX_MHZ = const(200000)  # low-power modes top out at 200 Hz
# CTRL2: BOOT SOFT_RESET - CS_PU_DISC BDU IF_ADD_INC I2C_DISABLE SIM
_CTRL2_SOFT_RESET = const(0x40)
_CTRL2_BDU = const(0x08)
_CTRL2_IF_ADD_INC = const(0x04)
# CTRL6: BW_FILT[7:6] FS[5:4] FDS LOW_NOISE - -
_CTRL6_LOW_NOISE = const(0x04)
_CTRL6_FS_SHIFT = const(4)
# FIFO_CTRL: FMODE[7:5] FTH[4:0]
_FIFO_MODE_BYPASS = const(0x00)
_FIFO_MODE_CONTINUOUS = const(0xC0)  # FMODE = 110
# FIFO_SAMPLES: FIFO_FTH FIFO_OVR DIFF[5:0]
_FIFO_SAMPLES_OVR = const(0x40)
_FIFO_SAMPLES_DIFF = const(0x3F)

_FIFO_DEPTH = const(32)  # samples (x, y, z triples)
_SAMPLE_BYTES = const(6)
_SOFT_RESET_MS = const(5)  # the reset bit clears itself within a few microseconds; wait and poll
_SOFT_RESET_POLLS = const(10)
_EMPTY_POLLS = const(3)  # empty FIFO reads in a row before a window is given up as short

# Output data rates of high-performance mode, (milli-Hz, CTRL1 ODR code).
ODR_TABLE = (
    (12500, 0x2),
    (25000, 0x3),
    (50000, 0x4),
    (100000, 0x5),
    (200000, 0x6),
    (400000, 0x7),
    (800000, 0x8),
    (1600000, 0x9),
)
# Full scales, (g, CTRL6 FS code, sensitivity ug/LSB of the 14-bit sample).
RANGE_TABLE = (
    (2, 0, 244),
    (4, 1, 488),
    (8, 2, 976),
    (16, 3, 1952),
)


def nearest_odr(rate_hz, low_power=False):
    """Return (odr_mhz, code) of the supported output data rate nearest rate_hz (Hz, int or float)."""
    want_mhz = int(rate_hz * 1000)
    best = ODR_TABLE[0]
    for row in ODR_TABLE:
        if low_power and row[0] > _LOW_POWER_MAX_MHZ:
            break
        if abs(row[0] - want_mhz) < abs(best[0] - want_mhz):
            best = row
    return best


def _range_row(range_g):
    for row in RANGE_TABLE:
        if row[0] == range_g:
            return row
    raise ValueError("range_g must be 2, 4, 8 or 16, got %r" % (range_g,))


def _check_rate(rate_hz):
    if not isinstance(rate_hz, (int, float)) or not 1 <= rate_hz <= 1600:
        raise ValueError("rate_hz must be 1..1600 Hz, got %r" % (rate_hz,))


class LIS2DW12(IMU):
    """ST LIS2DW12 on an I2C bus (machine.I2C or any object with readfrom_mem_into / writeto_mem).

    address: 0x19 (SA0 high, the reference board) or 0x18; rate_hz: nearest supported ODR is used
    (12.5, 25, 50, 100, 200, 400, 800, 1600 Hz; `odr_mhz` says which); range_g: 2, 4, 8 or 16;
    sleep_ms: callable(ms) that idles while the FIFO fills (time.sleep_ms or machine.lightsleep on
    the board); None drains only what the FIFO holds; low_power: 12-bit low-power mode 1 (a few
    uA, rates up to 200 Hz) instead of 14-bit high performance (about 90 uA). Samples convert the
    same way in both: a 12-bit sample is a 14-bit one whose two low bits are zero. Raises
    ValueError on a bad argument and OSError naming the address when no LIS2DW12 answers.
    """

    def __init__(self, i2c, address=0x19, rate_hz=25, range_g=4, sleep_ms=None, low_power=False):
        # 1. arguments
        if address not in ADDRESSES:
            raise ValueError("address must be 0x18 or 0x19, got %r" % (address,))
        _check_rate(rate_hz)
        _range_row(range_g)
        self.i2c = i2c
        self.address = address
        self._sleep_ms = sleep_ms
        self.low_power = bool(low_power)
        self.overruns = 0  # FIFO overruns inside a window (samples lost)
        self.short_windows = 0  # windows given up with fewer samples than asked
        self.odr_mhz = 0
        self.range_g = 0
        self._sens_ug = 0
        # 2. scratch buffers, once: one register byte, a whole FIFO, a view per burst length
        self._reg = bytearray(1)
        self._two = bytearray(2)
        self._raw = bytearray(_FIFO_DEPTH * _SAMPLE_BYTES)
        raw = memoryview(self._raw)
        self._bursts = [raw[:_SAMPLE_BYTES * (k + 1)] for k in range(_FIFO_DEPTH)]
        # 3. probe
        try:
            who = self._read_reg(WHO_AM_I)
        except OSError:
            raise OSError("no LIS2DW12 answers at I2C address 0x%02x" % address) from None
        if who != _CHIP_ID:
            raise OSError("device at I2C address 0x%02x is not a LIS2DW12 (WHO_AM_I 0x%02x, want 0x44)"
                          % (address, who))
        # 4. bring the chip up
        self.reset()
        self.configure(rate_hz, range_g)

    # ---- bus ---------------------------------------------------------------------------

    def _read_reg(self, reg):
        self.i2c.readfrom_mem_into(self.address, reg, self._reg)
        return self._reg[0]

    def _write_reg(self, reg, value):
        self._reg[0] = value
        self.i2c.writeto_mem(self.address, reg, self._reg)

    def _wait(self, ms):
        if self._sleep_ms is not None:
            self._sleep_ms(ms)

    # ---- bring-up ----------------------------------------------------------------------

    def reset(self):
        """Soft-reset the chip (every register to its default) and wait until it is done."""
        self._write_reg(CTRL2, _CTRL2_SOFT_RESET)
        for _ in range(_SOFT_RESET_POLLS):
            self._wait(_SOFT_RESET_MS)
            if not self._read_reg(CTRL2) & _CTRL2_SOFT_RESET:
                return
        raise OSError("LIS2DW12 at 0x%02x stays in soft reset" % self.address)

    def configure(self, rate_hz, range_g):
        """Set the output data rate (nearest supported, see odr_mhz) and full scale (2, 4, 8, 16 g).

        Steps: 1. CTRL1 ODR + high-performance (or low-power 1) mode; 2. CTRL2 block data update +
        address auto-increment; 3. CTRL6 full scale + low noise; 4. FIFO bypass (empties it), then
        continuous.
        """
        _check_rate(rate_hz)
        row = _range_row(range_g)
        odr_mhz, odr_code = nearest_odr(rate_hz, self.low_power)
        mode = _CTRL1_MODE_LOW_POWER_1 if self.low_power else _CTRL1_MODE_HIGH_PERFORMANCE
        self._write_reg(CTRL1, (odr_code << 4) | mode)
        self._write_reg(CTRL2, _CTRL2_BDU | _CTRL2_IF_ADD_INC)
        self._write_reg(CTRL6, (row[1] << _CTRL6_FS_SHIFT) | _CTRL6_LOW_NOISE)
        self._write_reg(FIFO_CTRL, _FIFO_MODE_BYPASS)
        self._write_reg(FIFO_CTRL, _FIFO_MODE_CONTINUOUS)
        self.odr_mhz = odr_mhz
        self.range_g = range_g
        self._sens_ug = row[2]

    # ---- data --------------------------------------------------------------------------

    def fifo_level(self):
        """Return the samples waiting in the FIFO; a set overrun flag is returned as level + 64."""
        return self._read_reg(_FIFO_SAMPLES) & (_FIFO_SAMPLES_DIFF | _FIFO_SAMPLES_OVR)

    def _convert(self, count, buf, at):
        """Write the count samples of the last burst into buf from index at, in mg; return the next index.

        Each axis: little-endian 16-bit two's complement (sign-extended by xor/subtract), shifted to
        its 14 significant bits, times the sensitivity in ug/LSB, rounded to mg.
        """
        raw = self._raw
        sens = self._sens_ug
        end = count * _SAMPLE_BYTES
        i = 0
        while i < end:
            buf[at] = (((((raw[i] | (raw[i + 1] << 8)) ^ 0x8000) - 0x8000) >> 2) * sens + 500) // 1000
            buf[at + 1] = (((((raw[i + 2] | (raw[i + 3] << 8)) ^ 0x8000) - 0x8000) >> 2) * sens + 500) // 1000
            buf[at + 2] = (((((raw[i + 4] | (raw[i + 5] << 8)) ^ 0x8000) - 0x8000) >> 2) * sens + 500) // 1000
            at += 3
            i += 6
        return at

    def read_fifo(self, buf):
        """Fill array('h') buf with interleaved x, y, z in mg, oldest first; return samples written.

        Drains the FIFO with one burst per batch; with sleep_ms, idles while it refills until buf is
        full (len(buf) // 3 samples) or the FIFO stays empty EMPTY_POLLS times (counted in
        short_windows). An overrun after the first drain lost samples inside the window: counted
        in overruns (the backlog found at the start is the newest FIFO_DEPTH samples, no gap).
        """
        want = len(buf) // 3
        n = 0
        at = 0
        empty = 0
        first = True
        period_ms = 1000000 // self.odr_mhz or 1
        while n < want:
            level = self.fifo_level()
            if level & _FIFO_SAMPLES_OVR and not first:
                self.overruns += 1
            first = False
            avail = level & _FIFO_SAMPLES_DIFF
            if avail > _FIFO_DEPTH:
                avail = _FIFO_DEPTH
            if avail == 0:
                empty += 1
                if self._sleep_ms is None or empty > _EMPTY_POLLS:
                    break
                self._sleep_ms(period_ms * 4)
                continue
            empty = 0
            take = want - n
            if take > avail:
                take = avail
            self.i2c.readfrom_mem_into(self.address, OUT_X_L, self._bursts[take - 1])
            at = self._convert(take, buf, at)
            n += take
            if n < want and self._sleep_ms is not None:
                left = want - n
                if left > _FIFO_DEPTH - 4:
                    left = _FIFO_DEPTH - 4  # wake before the FIFO overruns
                self._sleep_ms(left * period_ms)
        if n < want and self._sleep_ms is not None:
            self.short_windows += 1
        return n

    def read_into(self, buf3):
        """Fill buf3 (array('h') of 3) with the newest sample in mg; return 1 (0 if the FIFO is empty)."""
        level = self.fifo_level() & _FIFO_SAMPLES_DIFF
        if level == 0:
            return 0
        # continuous mode keeps history: skip to the newest sample, then read it
        while level > 1:
            skip = level - 1 if level - 1 <= _FIFO_DEPTH else _FIFO_DEPTH
            self.i2c.readfrom_mem_into(self.address, OUT_X_L, self._bursts[skip - 1])
            level -= skip
        self.i2c.readfrom_mem_into(self.address, OUT_X_L, self._bursts[0])
        self._convert(1, buf3, 0)
        return 1

    def temperature_dc(self):
        """Return the die temperature in deci-degrees C (OUT_T: 12-bit, 16 LSB/degC, 0 = 25 degC)."""
        self.i2c.readfrom_mem_into(self.address, OUT_T_L, self._two)
        v = self._two[0] | (self._two[1] << 8)
        if v & 0x8000:
            v -= 0x10000
        return 250 + ((v >> 4) * 10 + 8) // 16
