"""Energy model of the reference collar: mAh per day and battery life for a configuration.

Currents are datasheet figures (typical, 3.0-3.6 V, 25 C); where a datasheet gives a range, the
choice is stated. docs/energy.md lists every assumption and shows a worked example.

  nRF52840 (Nordic, Product Specification v1.x)
    sleep: System ON, RTC running, full RAM retained ....................... 3.2 uA
    active: CPU from flash at 64 MHz, DC/DC on ............................. 3.3 mA
  LIS2DW12 (ST, DS12236): low-power mode 1, 25 Hz ODR ...................... 3 uA (table: 1-4.5 uA)
  u-blox M8 (MAX-M8Q, UBX-15031506): acquisition/tracking 25 mA, backup 15 uA; on-time per fix is
    the time to fix plus SETTLE_S to let accuracy converge
  Semtech LR1110 (DS.LR1110.W.APP): TX by output power (LP PA up to +14 dBm, HP PA above),
    RX 5.4 mA; each class A uplink opens RX1 at the uplink's data rate and RX2 at SF9 (TTN),
    each kept open for RX_WINDOW_SYMBOLS symbols when nothing arrives
  Battery: 16 x LS17500 (Saft) = 57.6 Ah; USABLE_FRACTION of it at collar currents and temperatures;
    self-discharge SELF_DISCHARGE_PCT_PER_YEAR of the nominal capacity a year

MCU active time comes from measured MicroPython fuel (WebAssembly instructions) with
CYCLES_PER_FUEL CPU cycles each: an interpreter does about the same work per bytecode on a
Cortex-M4 as in WebAssembly. It is an estimate within a factor of about two; the MCU is a small
share of the budget either way.
"""

from collar_firmware.codec import payload_size
from collar_firmware.scheduler import airtime_us

MCU_SLEEP_UA = 3.2
MCU_ACTIVE_MA = 3.3
MCU_HZ = 64000000
CYCLES_PER_FUEL = 1.0
ACCEL_LP_UA = 3.0
GNSS_ACTIVE_MA = 25.0
GNSS_BACKUP_UA = 15.0
SETTLE_S = 5
RADIO_RX_MA = 5.4
RADIO_SLEEP_UA = 1.0
RX_WINDOW_SYMBOLS = 8
RX2_SF = 9
# LR1110 transmit current (mA) by output power (dBm): LP PA up to +14 dBm, HP PA above.
TX_MA_BY_DBM = ((0, 8.0), (10, 17.0), (14, 24.0), (17, 60.0), (20, 90.0), (22, 118.0))
EU868_TX_DBM = 14

BATTERY_MAH = 57600
USABLE_FRACTION = 0.85
SELF_DISCHARGE_PCT_PER_YEAR = 1.0


def tx_current_ma(tx_dbm):
    """Return the LR1110 transmit current in mA at tx_dbm (the next table step at or above it)."""
    for dbm, ma in TX_MA_BY_DBM:
        if tx_dbm <= dbm:
            return ma
    return TX_MA_BY_DBM[-1][1]


def rx_window_s(sf, bw_khz=125):
    """Return the seconds one empty RX window stays open at sf (RX_WINDOW_SYMBOLS symbols)."""
    return RX_WINDOW_SYMBOLS * (1 << sf) / (bw_khz * 1000)


def daily_mah(windows_per_day, mcu_active_s_per_day, gnss_fixes_per_day, gnss_ttff_s, uplinks_per_day,
              airtime_s_per_day, sf=7, tx_dbm=EU868_TX_DBM, downlink_airtime_s_per_day=0.0):
    """Return {component: mAh per day} and "total" for a day of the collar's life.

    windows_per_day: accelerometer windows (the sensor runs continuously in low-power mode either way);
    mcu_active_s_per_day: seconds the MCU runs; gnss_fixes_per_day, gnss_ttff_s: fixes and the mean
    time to each fix; uplinks_per_day, airtime_s_per_day: uplinks sent and their total time on air.
    """
    hours = 24.0
    active_h = mcu_active_s_per_day / 3600.0
    out = {
        "mcu_sleep": MCU_SLEEP_UA / 1000.0 * (hours - active_h),
        "mcu_active": MCU_ACTIVE_MA * active_h,
        "accelerometer": ACCEL_LP_UA / 1000.0 * hours,
        "gnss_fixes": GNSS_ACTIVE_MA * gnss_fixes_per_day * (gnss_ttff_s + SETTLE_S) / 3600.0,
        "gnss_backup": GNSS_BACKUP_UA / 1000.0 * hours,
        "radio_tx": tx_current_ma(tx_dbm) * airtime_s_per_day / 3600.0,
        "radio_rx": RADIO_RX_MA * (uplinks_per_day * (rx_window_s(sf) + rx_window_s(RX2_SF))
                                   + downlink_airtime_s_per_day) / 3600.0,
        "radio_sleep": RADIO_SLEEP_UA / 1000.0 * hours,
    }
    total = 0.0
    for k in out:
        total += out[k]
    out["total"] = total
    return out


def battery_life_years(mah_per_day, capacity_mah=BATTERY_MAH):
    """Return the years the pack lasts at mah_per_day (usable fraction and self-discharge included)."""
    usable = capacity_mah * USABLE_FRACTION
    per_year = mah_per_day * 365.25 + capacity_mah * SELF_DISCHARGE_PCT_PER_YEAR / 100.0
    return usable / per_year


def estimate(settings, sf=7, bw_khz=125, fuel_per_window=12000000, gnss_ttff_s=25):
    """Return daily_mah(...) for a settings dict without running the collar (a planning estimate).

    Counts: one window every window_every_s, a fix every gnss_interval_s, an activity summary every
    summary_interval_s (four classes), a position uplink per positions_per_uplink fixes, a status
    every status_interval_s; payload sizes come from the codec table.
    """
    day = 86400
    windows = day // settings["window_every_s"]
    fixes = day // settings["gnss_interval_s"]
    summaries = day // settings["summary_interval_s"]
    per_uplink = settings["positions_per_uplink"]
    position_uplinks = fixes // per_uplink
    statuses = day // settings["status_interval_s"]
    airtime = (summaries * airtime_us(payload_size("activity", 4), sf, bw_khz)
               + statuses * airtime_us(payload_size("status", 0), sf, bw_khz)
               + position_uplinks * airtime_us(payload_size("positions", per_uplink), sf, bw_khz)) / 1e6
    mcu_s = windows * fuel_per_window * CYCLES_PER_FUEL / MCU_HZ
    return daily_mah(windows, mcu_s, fixes, gnss_ttff_s, summaries + position_uplinks + statuses, airtime, sf)
