"""The reference Tembo collar board behind the HAL: nRF52840 running MicroPython, LIS2DW12 on I2C,
u-blox M8 on a UART, an LR1110 LoRaWAN modem behind a small host protocol, the battery on an ADC
through a divider, records as files on littlefs. `make_board_hal(...)` builds the `hal.Hal`.

`machine`, `time` and `os` are imported inside make_board_hal (or passed in), so this module
imports under CPython and tests hand in fakes. Wiring, pins and what is verified where:
docs/hardware.md.

LR1110 host protocol (Tembo's own minimal framing; not Semtech's LoRa Basics Modem command set):
    request  A5 cmd len payload[len] crc8(cmd..payload)
    response 5A cmd status len payload[len] crc8(cmd..payload)
crc8: polynomial 0x07, init 0. Commands: 01 SEND (port, flags bit0 = confirmed, data),
02 RECEIVE (answers port + data, or status EMPTY), 03 DATA_RATE (answers sf, bw code 0/1/2 =
125/250/500 kHz). TS005 multicast (the modem's stack keeps the collar's McKEKey and unwraps group
keys itself; integers little-endian): 08 CAPABILITIES (answers one flags byte, bit0 = Class C and
multicast groups), 04 MC_GROUP (group, McAddr u32, McKey_encrypted 16, min u32, max u32 McFCount),
05 MC_DELETE (group), 06 CLASS_C (frequency Hz u32, data rate), 07 CLASS_A. Status: 00 OK,
01 NO_ACK, 02 BUSY, 03 NOT_JOINED, 04 TOO_LONG, 05 EMPTY, 06 UNKNOWN_COMMAND, 07 BAD_FRAME,
08 REFUSED. A modem firmware that answers CAPABILITIES with UNKNOWN_COMMAND cannot do Class C: the
driver then holds no multicast group and never leaves Class A.

LR1110 crypto engine (Lr1110CryptoModem: TS004 v2.0.0's data block MIC), over the chip's own SPI command
interface as Semtech's SWDR001 driver frames it (lr11xx_crypto_engine.c, lr11xx_hal_read): NSS low, the command
(opcode u16 big-endian, then its arguments), NSS high; once BUSY is low, NSS low and 1 + n bytes clocked out with
NOPs (0x00): Stat1 (not read), the crypto status (0 success, 1 CMAC failed, 3 invalid key id, 5 buffer size,
6 error), then the answer. 0x0503 DeriveKey (source id, destination id, nonce 16): dest = AES-128(source, nonce),
inside the chip. 0x0507 AesEncrypt01 (key id, data of 16..256 bytes, whole blocks): answers the ciphertext. Keys
by lr11xx_crypto_keys_idx_t: the root key in APP_KEY (3, written at the factory), DataBlockIntKey derived into GP1 (27).
"""

from collar_firmware.compat import const
from collar_firmware.hal import IMU, Clock, Hal, Power, Radio, Storage, Watchdog

_REQ_SOF = const(0xA5)
_RESP_SOF = const(0x5A)
_CMD_SEND = const(0x01)
_CMD_RECEIVE = const(0x02)
_CMD_DATA_RATE = const(0x03)
_CMD_MC_GROUP = const(0x04)
_CMD_MC_DELETE = const(0x05)
_CMD_CLASS_C = const(0x06)
_CMD_CLASS_A = const(0x07)
_CMD_CAPABILITIES = const(0x08)
_CAP_CLASS_C = const(0x01)
_CHUNK_BYTES = const(64)  # bytes FileStorage compares or copies at a time
_ST_OK = const(0x00)
_ST_NO_ACK = const(0x01)
_ST_BUSY = const(0x02)
_ST_NOT_JOINED = const(0x03)
_ST_TOO_LONG = const(0x04)
_ST_EMPTY = const(0x05)
_ST_UNKNOWN_COMMAND = const(0x06)
_MAX_MODEM_PAYLOAD = const(222)  # LoRaWAN application payload bound at the fastest EU868 rate
_MODEM_FRAME = const(_MAX_MODEM_PAYLOAD + 8)
BANDWIDTHS_KHZ = (125, 250, 500)
_MODEM_TIMEOUT_MS = const(8000)
_OC_DERIVE_KEY = const(0x0503)
_OC_AES_ENCRYPT_01 = const(0x0507)
_CRYPTO_MAX = const(256)  # LR11XX_CRYPTO_DATA_MAX_LENGTH
_BUSY_POLLS = const(20000)  # reads of BUSY before the chip counts as stuck (tens of ms; an AES command takes far less)
CRYPTO_KEY_IDS = {"app_key": 3, "data_block_int_key": 27}  # a confirmed uplink at SF12 with both RX windows takes about 5 s

# machine.reset_cause() constant names -> codec.RESET_CAUSES
RESET_CAUSE_NAMES = (
    ("PWRON_RESET", "power_on"),
    ("HARD_RESET", "pin"),
    ("WDT_RESET", "watchdog"),
    ("SOFT_RESET", "software"),
    ("LOCKUP_RESET", "lockup"),
    ("BROWNOUT_RESET", "brownout"),
)
_SYNCED_S = const(1600000000)  # a clock before this was never set
_SLEEP_CHUNK_MS = const(60000)  # the longest single sleep (keeps ms counters far from their wrap)


def crc8(data, start, end):
    """Return the CRC-8 (polynomial 0x07, init 0) of data[start:end]."""
    crc = 0
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def reset_cause_name(machine):
    """Return the codec reset cause for machine.reset_cause() ('unknown' when it has no name here)."""
    try:
        code = machine.reset_cause()
    except Exception:
        return "unknown"
    for attr, cause in RESET_CAUSE_NAMES:
        if getattr(machine, attr, None) == code:
            return cause
    return "unknown"


class BoardClock(Clock):
    """Unix-seconds clock from the MCU's millisecond ticks, set from GNSS time (set_time_s).

    time: the `time` module (ticks_ms, ticks_diff, sleep_ms, optionally time()); sleep_ms: what
    idles between wake-ups (machine.lightsleep on the board; time.sleep_ms by default); cause: the
    reset cause reported. A time() already past 2020 (RTC kept over a soft reset) seeds the clock.
    """

    def __init__(self, time, sleep_ms=None, cause="power_on"):
        self.time = time
        self._sleep_ms = sleep_ms if sleep_ms is not None else time.sleep_ms
        self.cause = cause
        start = 0
        if hasattr(time, "time"):
            t = int(time.time())
            start = t if t >= _SYNCED_S else 0
        self.base_s = start
        self._ms = 0
        self._last = time.ticks_ms()
        self.sets = 0

    def _tick(self):
        t = self.time.ticks_ms()
        self._ms += self.time.ticks_diff(t, self._last)
        self._last = t
        if self._ms >= 1000:
            self.base_s += self._ms // 1000
            self._ms %= 1000

    def now_s(self):
        """Return Unix seconds (small numbers until GNSS time has set the clock)."""
        self._tick()
        return self.base_s

    def set_time_s(self, t_s):
        """Set the clock to Unix second t_s (from a GNSS fix with valid date and time)."""
        self._tick()
        self.base_s = t_s
        self._ms = 0
        self.sets += 1

    def sleep_until(self, t_s):
        """Idle until Unix second t_s, in chunks of at most SLEEP_CHUNK_MS."""
        while True:
            self._tick()
            left_ms = (t_s - self.base_s) * 1000 - self._ms
            if left_ms <= 0:
                return
            self._sleep_ms(left_ms if left_ms < _SLEEP_CHUNK_MS else _SLEEP_CHUNK_MS)

    def reset_cause(self):
        """Return why the MCU last started (codec.RESET_CAUSES)."""
        return self.cause


class BoardPower(Power):
    """Battery through a resistor divider on an ADC, temperature from the accelerometer's sensor.

    adc: machine.ADC (read_u16, 0..65535 over full_scale_mv at the pin); top_kohm, bottom_kohm: the
    divider (battery - top - pin - bottom - ground); samples: readings averaged; thermometer: an
    object with temperature_dc() (the LIS2DW12).
    """

    def __init__(self, adc, thermometer, top_kohm=1000, bottom_kohm=1000, full_scale_mv=3600, samples=8):
        if top_kohm < 0 or bottom_kohm <= 0:
            raise ValueError("divider resistances must be positive, got %r / %r" % (top_kohm, bottom_kohm))
        if samples < 1:
            raise ValueError("samples must be at least 1, got %r" % (samples,))
        self.adc = adc
        self.thermometer = thermometer
        self.top_kohm = top_kohm
        self.bottom_kohm = bottom_kohm
        self.full_scale_mv = full_scale_mv
        self.samples = samples

    def battery_mv(self):
        """Return the battery voltage in mV (mean of samples readings, scaled by the divider)."""
        total = 0
        for _ in range(self.samples):
            total += self.adc.read_u16()
        pin_mv = (total // self.samples) * self.full_scale_mv // 65535
        return pin_mv * (self.top_kohm + self.bottom_kohm) // self.bottom_kohm

    def temperature_dc(self):
        """Return the collar's temperature in deci-degrees C."""
        return self.thermometer.temperature_dc()


class FileStorage(Storage):
    """Records as files under root on the board's littlefs; a write replaces atomically.

    write(key, data) writes root/key.tmp, then renames it over root/key (littlefs renames
    atomically, so a power cut leaves the old record or the new one, never half of either). A
    leftover .tmp from a cut write is removed at start-up. os: the os module (MicroPython's or
    CPython's). Keys: 1..31 characters of letters, digits, '_', '-' and '.', not starting with '.'
    nor ending in '.tmp' (the classifier keeps "model.good").
    """

    def __init__(self, root="/data", os=None):
        if os is None:
            import os
        self.os = os
        self.root = root.rstrip("/") or "/"
        try:
            os.mkdir(self.root)
        except OSError:
            pass  # exists
        for name in os.listdir(self.root):
            if name.endswith(".tmp"):
                try:
                    os.remove(self._path(name))
                except OSError:
                    pass

    def _path(self, name):
        return self.root + "/" + name if self.root != "/" else "/" + name

    def _check(self, key):
        ok = isinstance(key, str) and 0 < len(key) < 32 and key[0] != "." and not key.endswith(".tmp")
        for c in key if ok else "":
            ok = ok and (c.isalpha() or c.isdigit() or c in "_-.")
        if not ok:
            raise ValueError("storage key %r: 1..31 letters, digits, '_-.', no leading '.' nor '.tmp' end" % (key,))

    def read(self, key):
        """Return the bytes stored under key, or None."""
        self._check(key)
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except OSError:
            return None

    def open(self, key):
        """Return the file under key opened for reading; OSError when there is none."""
        self._check(key)
        return open(self._path(key), "rb")

    def mirror(self, key, other):
        """Make the file under other hold what the file under key holds, compared and then (only when
        they differ) copied a few bytes at a time, the copy replacing it atomically: the classifier keeps
        its last-good model so, with no copy of a blob on the heap."""
        self._check(key)
        self._check(other)
        path = self._path(other)
        mine = bytearray(_CHUNK_BYTES)
        theirs = bytearray(_CHUNK_BYTES)  # past a short read both keep the last equal chunk's bytes
        try:
            with open(self._path(key), "rb") as a, open(path, "rb") as b:
                while True:
                    n = a.readinto(mine)
                    if n != b.readinto(theirs) or mine != theirs:
                        break
                    if not n:
                        return
        except OSError:
            pass  # no copy yet
        tmp = path + ".tmp"
        with open(self._path(key), "rb") as src, open(tmp, "wb") as dst:
            while True:
                n = src.readinto(mine)
                if not n:
                    break
                dst.write(mine if n == _CHUNK_BYTES else memoryview(mine)[0:n])
        self._replace(tmp, path)

    def write(self, key, data):
        """Store data under key (replace, atomically)."""
        self._check(key)
        path = self._path(key)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        self._replace(tmp, path)

    def _replace(self, tmp, path):
        """Rename tmp over path."""
        try:
            self.os.rename(tmp, path)
        except OSError:
            # a filesystem whose rename does not replace (FAT): the short window of no record is
            # covered by the readers' checksums
            self.os.remove(path)
            self.os.rename(tmp, path)


class BoardWatchdog(Watchdog):
    """machine.WDT behind the HAL (started at construction; it cannot be stopped)."""

    def __init__(self, wdt):
        self.wdt = wdt

    def feed(self):
        """Restart the countdown."""
        self.wdt.feed()


class MissingDevice(IMU):
    """Stands in for a device that did not answer at start-up: every call raises OSError(reason),
    which the collar's loop counts per stage while the rest of the collar goes on."""

    def __init__(self, reason):
        self.reason = reason

    def configure(self, rate_hz, range_g):
        """Fail: the device is missing."""
        raise OSError(self.reason)

    def read_fifo(self, buf):
        """Fail: the device is missing."""
        raise OSError(self.reason)

    def temperature_dc(self):
        """Fail: the device is missing."""
        raise OSError(self.reason)


class UartModemTransport:
    """The LR1110 host protocol over a UART: exchange(request, n, response) -> response length.

    uart: machine.UART (write, any, readinto); clock_ms, ticks_diff, sleep_ms: from `time`;
    timeout_ms: how long the modem may take to answer (OSError after it).
    """

    def __init__(self, uart, clock_ms, ticks_diff, sleep_ms, timeout_ms=_MODEM_TIMEOUT_MS):
        self.uart = uart
        self._clock_ms = clock_ms
        self._ticks_diff = ticks_diff
        self._sleep_ms = sleep_ms
        self.timeout_ms = timeout_ms
        self._one = bytearray(1)

    def exchange(self, request, n, response):
        """Send request[:n]; read one response frame into response; return its length."""
        self.uart.write(memoryview(request)[:n])
        start = self._clock_ms()
        got = 0
        need = 4
        while got < need:
            if self._ticks_diff(self._clock_ms(), start) > self.timeout_ms:
                raise OSError("LR1110 modem did not answer in %d ms" % self.timeout_ms)
            if not self.uart.any():
                self._sleep_ms(5)
                continue
            if not self.uart.readinto(self._one):
                continue
            b = self._one[0]
            if got == 0 and b != _RESP_SOF:
                continue  # line noise before the frame
            response[got] = b
            got += 1
            if got == 4:
                need = 5 + response[3]
                if need > len(response):
                    raise OSError("LR1110 modem: answer of %d bytes" % need)
        return got


class Lr1110Modem(Radio):
    """LoRaWAN through the LR1110 modem (which joins and keeps the session itself).

    transport: an object with exchange(request, n, response) -> n (UartModemTransport, or a test's
    fake). send() returns False when the modem did not send (busy, not joined, too long for the
    data rate; counted in not_sent) or a confirmed uplink got no ack; a missing or garbled answer
    raises OSError, which the collar's loop counts.
    """

    def __init__(self, transport):
        if not hasattr(transport, "exchange"):
            raise ValueError("transport needs exchange()")
        self.transport = transport
        self._req = bytearray(_MODEM_FRAME)
        self._resp = bytearray(_MODEM_FRAME)
        self.not_sent = 0
        self.no_acks = 0
        self.last_status = _ST_OK
        self._caps = -1  # the modem's capability flags once asked (-1: not yet)

    def _call(self, cmd, n_payload):
        """Frame and exchange the request whose payload sits at _req[3:]; return (status, length)."""
        req = self._req
        req[0] = _REQ_SOF
        req[1] = cmd
        req[2] = n_payload
        req[3 + n_payload] = crc8(req, 1, 3 + n_payload)
        resp = self._resp
        n = self.transport.exchange(req, 4 + n_payload, resp)
        if n < 5 or resp[0] != _RESP_SOF or resp[1] != cmd or n != 5 + resp[3]:
            raise OSError("LR1110 modem: bad answer to 0x%02x" % cmd)
        if crc8(resp, 1, n - 1) != resp[n - 1]:
            raise OSError("LR1110 modem: bad CRC from 0x%02x" % cmd)
        self.last_status = resp[2]
        return resp[2], resp[3]

    def send(self, port, payload, confirmed):
        """Send payload on LoRaWAN port 1..223; return True when sent (and acked if confirmed)."""
        if not 1 <= port <= 223:
            raise ValueError("LoRaWAN port must be 1..223, got %r" % (port,))
        n = len(payload)
        if n > _MAX_MODEM_PAYLOAD:
            raise ValueError("payload of %d bytes exceeds %d" % (n, _MAX_MODEM_PAYLOAD))
        req = self._req
        req[3] = port
        req[4] = 1 if confirmed else 0
        for i in range(n):
            req[5 + i] = payload[i]
        status, _ = self._call(_CMD_SEND, n + 2)
        if status == _ST_OK:
            return True
        if status == _ST_NO_ACK:
            self.no_acks += 1
        else:
            self.not_sent += 1
        return False

    def receive(self):
        """Return (port, payload) of the downlink heard after the last uplink, or None."""
        status, n = self._call(_CMD_RECEIVE, 0)
        if status != _ST_OK or n < 1:
            return None
        resp = self._resp
        return (resp[4], bytes(resp[5:4 + n]))

    def supports_class_c(self):
        """Return True when the modem says it can hold multicast groups and listen in Class C; a
        modem that does not know the question cannot. OSError when it does not answer."""
        if self._caps < 0:
            status, n = self._call(_CMD_CAPABILITIES, 0)
            self._caps = self._resp[4] if status == _ST_OK and n >= 1 else 0
        return self._caps & _CAP_CLASS_C != 0

    def _put_u32(self, at, value):
        req = self._req
        for i in range(4):
            req[at + i] = (value >> (8 * i)) & 0xFF

    def multicast_group(self, group, mc_addr, key_encrypted, min_fcount, max_fcount):
        """Give the modem's stack group 0..3 with its wrapped McKey; return True when it took it."""
        if not 0 <= group <= 3 or len(key_encrypted) != 16 or not self.supports_class_c():
            return False
        req = self._req
        req[3] = group
        self._put_u32(4, mc_addr)
        for i in range(16):
            req[8 + i] = key_encrypted[i]
        self._put_u32(24, min_fcount)
        self._put_u32(28, max_fcount)
        status, _ = self._call(_CMD_MC_GROUP, 29)
        return status == _ST_OK

    def multicast_delete(self, group):
        """Make the modem forget group 0..3 (nothing to do on a modem without multicast)."""
        if 0 <= group <= 3 and self.supports_class_c():
            self._req[3] = group
            self._call(_CMD_MC_DELETE, 1)

    def set_class_c(self, frequency_hz, data_rate):
        """Listen continuously on frequency_hz at data_rate; OSError when the modem cannot or refuses."""
        if not self.supports_class_c():
            raise OSError("LR1110 modem cannot do Class C")
        self._put_u32(3, frequency_hz)
        self._req[7] = data_rate
        status, _ = self._call(_CMD_CLASS_C, 5)
        if status != _ST_OK:
            raise OSError("LR1110 modem: Class C refused (0x%02x)" % status)

    def set_class_a(self):
        """Back to Class A; OSError when the modem refuses (the window's owner asks again)."""
        if not self.supports_class_c():
            return  # it never left Class A
        status, _ = self._call(_CMD_CLASS_A, 0)
        if status != _ST_OK:
            raise OSError("LR1110 modem: Class A refused (0x%02x)" % status)

    def data_rate(self):
        """Return (spreading_factor, bandwidth_khz) the modem uses now."""
        status, n = self._call(_CMD_DATA_RATE, 0)
        resp = self._resp
        if status != _ST_OK or n != 2 or resp[5] >= len(BANDWIDTHS_KHZ) or not 5 <= resp[4] <= 12:
            raise OSError("LR1110 modem: no data rate (0x%02x)" % status)
        return (resp[4], BANDWIDTHS_KHZ[resp[5]])


class Lr1110CryptoModem(Lr1110Modem):
    """The LR1110 modem whose crypto engine the collar reaches over SPI (the module docstring): derive_key and
    aes_encrypt, so the collar checks a TS004 v2.0.0 data block's MIC without ever holding a key.

    spi: machine.SPI (mode 0) to the chip; nss: its chip-select pin (output, idle high); busy: its BUSY pin
    (input), polled as Semtech's HAL does. A refused command or a chip that stays busy raises OSError.
    """

    def __init__(self, transport, spi, nss, busy):
        super().__init__(transport)
        self.bus = (spi, nss, busy)
        self._io = bytearray(3 + _CRYPTO_MAX)  # the command written, then its answer read over it

    def _crypto(self, opcode, key, data, n_ans):
        """lr11xx_hal_read of opcode, key's id and data: the answer lands in _io[2:2 + n_ans]."""
        io = self._io
        n = 3 + len(data)
        io[0] = opcode >> 8
        io[1] = opcode & 0xFF
        io[2] = CRYPTO_KEY_IDS[key]
        io[3:n] = data
        spi, nss, busy = self.bus
        for answer in (False, True):
            for _ in range(_BUSY_POLLS):
                if not busy.value():
                    break
            else:
                raise OSError("LR1110 stays busy")
            nss.value(0)
            if answer:
                spi.readinto(memoryview(io)[:2 + n_ans], 0)
            else:
                spi.write(memoryview(io)[:n])
            nss.value(1)
        if io[1]:
            raise OSError("LR1110 crypto status %d" % io[1])

    def derive_key(self, src_key, dst_key, nonce):
        """lr11xx_crypto_derive_key: key dst_key = AES-128(key src_key, nonce of 16 bytes), inside the chip."""
        self._crypto(_OC_DERIVE_KEY, src_key, bytes((CRYPTO_KEY_IDS[dst_key],)) + nonce, 0)

    def aes_encrypt(self, key, data):
        """lr11xx_crypto_aes_encrypt_01: data (16..256 bytes, whole blocks) enciphered with key; return the bytes."""
        n = len(data)
        if n % 16 or not 0 < n <= _CRYPTO_MAX:
            raise ValueError("AES of %d bytes" % n)
        self._crypto(_OC_AES_ENCRYPT_01, key, data, n)
        return bytes(self._io[2:2 + n])


def make_board_hal(i2c_scl, i2c_sda, gnss_tx, gnss_rx, battery_adc, i2c_id=0, imu_address=0x19,
                   imu_low_power=True, gnss_uart_id=1, gnss_baud=9600, gnss_power=None, modem_transport=None,
                   modem_uart_id=0, modem_tx=None, modem_rx=None, modem_baud=115200,
                   divider_top_kohm=1000, divider_bottom_kohm=1000, adc_full_scale_mv=3600,
                   storage_root="/data", watchdog_ms=300000, crypto_spi=None, crypto_nss=None, crypto_busy=None,
                   machine=None, time=None, os=None):
    """Build the hal.Hal of the reference board; pins are the board revision's pin ids (docs/hardware.md).

    i2c_scl, i2c_sda: the LIS2DW12's bus (400 kHz) at imu_address, in low-power mode 1 unless
    imu_low_power is False (the energy budget, docs/energy.md, counts 3 uA for it); gnss_tx, gnss_rx: the M8's UART
    (MCU TX -> receiver RX) at gnss_baud, gnss_power: optional pin switching its supply;
    modem_transport: the LR1110's host transport, or modem_tx / modem_rx for a UartModemTransport;
    crypto_spi, crypto_nss, crypto_busy: the LR1110's SPI (a machine.SPI) and its NSS and BUSY pins, for its crypto
    engine (Lr1110CryptoModem: TS004 v2.0.0), else a modem without one (v1.0.0 only);
    battery_adc: the divider's pin; watchdog_ms: machine.WDT timeout (None: no watchdog).
    machine, time, os: the modules (imported here when None). A device that does not answer at
    start-up becomes a MissingDevice (its stage errors are counted); its reason is in hal.faults.
    """
    if machine is None:
        import machine
    if time is None:
        import time
    if modem_transport is None and (modem_tx is None or modem_rx is None):
        raise ValueError("give modem_transport, or modem_tx and modem_rx for the modem's UART")
    from collar_firmware.hal.lis2dw12 import LIS2DW12
    from collar_firmware.hal.ublox import UbloxM8

    faults = []
    sleep_ms = getattr(machine, "lightsleep", None) or time.sleep_ms
    clock = BoardClock(time, sleep_ms, reset_cause_name(machine))
    # 1. the accelerometer (before the watchdog: a slow bus must not reset the collar at boot)
    i2c = machine.I2C(i2c_id, scl=machine.Pin(i2c_scl), sda=machine.Pin(i2c_sda), freq=400000)
    try:
        imu = LIS2DW12(i2c, address=imu_address, sleep_ms=sleep_ms, low_power=imu_low_power)
    except OSError as exc:
        imu = MissingDevice(str(exc))
        faults.append(str(exc))
    # 2. GNSS: its UTC time disciplines the clock
    uart = machine.UART(gnss_uart_id, baudrate=gnss_baud, tx=machine.Pin(gnss_tx), rx=machine.Pin(gnss_rx))
    power_pin = machine.Pin(gnss_power, machine.Pin.OUT, value=0) if gnss_power is not None else None
    gnss = UbloxM8(uart, clock_ms=time.ticks_ms, sleep_ms=time.sleep_ms, power_pin=power_pin,
                   on_time=clock.set_time_s, baud=gnss_baud)
    # 3. the LoRaWAN modem
    if modem_transport is None:
        modem_uart = machine.UART(modem_uart_id, baudrate=modem_baud, tx=machine.Pin(modem_tx),
                                  rx=machine.Pin(modem_rx))
        modem_transport = UartModemTransport(modem_uart, time.ticks_ms, time.ticks_diff, time.sleep_ms)
    if crypto_spi is None:
        radio = Lr1110Modem(modem_transport)
    else:
        radio = Lr1110CryptoModem(modem_transport, crypto_spi, machine.Pin(crypto_nss, machine.Pin.OUT, value=1),
                                  machine.Pin(crypto_busy, machine.Pin.IN))
    # 4. battery and temperature, 5. flash records, 6. the watchdog, last
    power = BoardPower(machine.ADC(machine.Pin(battery_adc)), imu, divider_top_kohm, divider_bottom_kohm,
                       adc_full_scale_mv)
    storage = FileStorage(storage_root, os)
    watchdog = BoardWatchdog(machine.WDT(timeout=watchdog_ms)) if watchdog_ms else None
    hal = Hal(clock, imu, gnss, radio, power, storage, watchdog=watchdog)
    hal.faults = faults
    return hal
