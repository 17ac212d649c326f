"""Tembo's hardware abstraction layer: the small classes a real board and the simulator both implement.

A collar is built from one `Hal` bundle. Each interface raises OSError when the hardware does not
answer; the main loop counts such errors and goes on.
"""

import io


class Clock:
    """Wall clock of the collar (GNSS-disciplined on a real board)."""

    def now_s(self):
        """Return Unix seconds UTC (int)."""
        raise NotImplementedError

    def sleep_until(self, t_s):
        """Sleep (lowest power) until Unix second t_s."""
        raise NotImplementedError

    def reset_cause(self):
        """Return why the MCU last started: 'power_on', 'watchdog', 'brownout', 'software', 'pin'."""
        return "power_on"

    def set_time_s(self, t_s):
        """Set the clock to Unix second t_s (a TS003 clock-sync answer on port 202)."""
        raise NotImplementedError


class IMU:
    """FIFO accelerometer (LIS2DW12 on the reference collar)."""

    def configure(self, rate_hz, range_g):
        """Set output data rate (Hz) and full scale (2, 4, 8, 16 g)."""
        raise NotImplementedError

    def read_fifo(self, buf):
        """Fill array('h') buf with interleaved x, y, z in milli-g; return samples (triples) written."""
        raise NotImplementedError


class GNSS:
    """GNSS receiver (u-blox M8 on the reference collar)."""

    def acquire(self, timeout_s):
        """Power up, try for a fix; return (lat_deg, lon_deg, hdop, ttff_s) or None on timeout."""
        raise NotImplementedError


class Radio:
    """LoRaWAN modem (Semtech LR1110 on the reference collar).

    TS005 multicast (optional; collar_firmware/multicast.py uses it only when supports_class_c()
    exists and returns True, so a radio without it stays in Class A and holds no group):
        supports_class_c() -> True when the stack can hold multicast groups and listen in Class C.
        multicast_group(group, mc_addr, key_encrypted, min_fcount, max_fcount) -> bool: give the
            stack group 0..3 (McGroupSetupReq: its address, its McKey wrapped with the collar's
            McKEKey, the frame counters it accepts). The stack unwraps it (McKey =
            aes128_encrypt(McKEKey, key_encrypted)) and derives McAppSKey / McNwkSKey; the collar's
            Python never sees a key.
        multicast_delete(group): forget group 0..3.
        set_class_c(frequency_hz, data_rate): listen continuously (a TS005 Class C window); OSError
            when the modem refuses.
        set_class_a(): listen only after uplinks again; OSError when the modem refuses.
    They are described here, not defined, so the boot heap does not carry them (docs/updates.md).

    TS004 v2.0.0's data block MIC (optional; collar_firmware/update_install.py uses it only when derive_key exists,
    and the collar then announces PackageVersion 2). The LR1110's crypto engine holds the LoRaWAN root key (the
    1.0.x GenAppKey, the 1.1 AppKey) and every key derived from it; the collar's Python names keys, never sees one:
        derive_key(src_key, dst_key, nonce): store aes128_encrypt(src_key, nonce) under dst_key (the LR11xx
            driver's lr11xx_crypto_derive_key: "app_key" -> "data_block_int_key" with 0x30 | pad16); OSError
            when the engine refuses.
        aes_encrypt(key, data) -> bytes: data (whole 16-byte blocks, at most 256 bytes) enciphered block by
            block with key (lr11xx_crypto_aes_encrypt_01). The MIC's AES-CMAC is chained over it a block at a
            time: lr11xx_crypto_compute_aes_cmac takes at most 256 bytes and keeps no state between calls.
    """

    def send(self, port, payload, confirmed):
        """Send payload on port; return True when sent (and acknowledged if confirmed)."""
        raise NotImplementedError

    def receive(self):
        """Return (port, payload) of a downlink heard after the last send (Class A: on the collar's own address,
        unicast), or None. A frame heard on a multicast group in a Class C window goes to
        Collar.fuota_downlink(port, payload, group) with its McGroupID: TS004 needs to know which."""
        return None

    def data_rate(self):
        """Return (spreading_factor, bandwidth_khz) in use."""
        return (7, 125)


class Power:
    """Battery and temperature sensing."""

    def battery_mv(self):
        """Return battery voltage in mV."""
        raise NotImplementedError

    def temperature_dc(self):
        """Return collar temperature in deci-degrees C."""
        raise NotImplementedError


class Storage:
    """Flash records that survive reboot and power loss.

    A write may be cut by a power loss; readers protect themselves with checksums. The store-and-
    forward queue (queue.py) keeps one record per key "q00".."q95"; settings, fences and the alert
    counter live under config.KEY_SETTINGS, KEY_FENCES and KEY_STATE; the model blob under "model".
    """

    def read(self, key):
        """Return the bytes stored under key, or None."""
        raise NotImplementedError

    def write(self, key, data):
        """Store data under key (replace)."""
        raise NotImplementedError

    def open(self, key):
        """Return the record under key as a readable binary file (the caller closes it); None or OSError
        when there is none. The classifier reads a model from it a record at a time; this default hands
        out the record's bytes."""
        data = self.read(key)
        return None if data is None else io.BytesIO(data)

    def mirror(self, key, other):
        """Make the record under other hold what the record under key holds, written only when they
        differ (a board compares and copies them a few bytes at a time, with no copy on the heap)."""
        data = self.read(key)
        if data != self.read(other):
            self.write(other, data)


class Watchdog:
    """Hardware watchdog: resets the MCU unless fed in time. The main loop feeds it in one place."""

    def feed(self):
        """Restart the watchdog's countdown."""
        raise NotImplementedError


class Crypto:
    """Hardware signature check (the nRF52840's CryptoCell-310 through nrf_cc310 / Oberon)."""

    def ed25519_verify(self, public_key, message, signature):
        """Return True when signature (64 bytes) is public_key's (32 bytes) Ed25519 signature of message."""
        raise NotImplementedError


class Hal:
    """The bundle a Collar is built from; watchdog, fuota and crypto are optional (None when absent).

    fuota, when given, has handle(port, payload) and receives downlinks on ports 200-202; crypto,
    when given, is a Crypto that verifies signatures in hardware (else the collar's pure-Python
    ed25519 module does, a few steps per wake-up).
    """

    def __init__(self, clock, imu, gnss, radio, power, storage, watchdog=None, fuota=None, crypto=None):
        self.clock = clock
        self.imu = imu
        self.gnss = gnss
        self.radio = radio
        self.power = power
        self.storage = storage
        self.watchdog = watchdog
        self.fuota = fuota
        self.crypto = crypto
