"""THE wire format of Tembo: one declarative table of every uplink and downlink message.

The collar encodes with this table, the bridge decodes with it, and the JavaScript payload
formatter for The Things Stack / ChirpStack is generated from it (lora_bridge/formatter.py).
Runs unchanged on MicroPython and CPython. Spec in prose: docs/wire-format.md.

A message is (name, port, tag, direction, fields). When tag is not None the first byte of the
payload is the tag: the message version on uplink ports, the command id on port 32.

A field is (name, kind, arg):
  u8 u16 u24 u32 i8 i16 i24 i32  little-endian integer; arg = scale (value = raw / scale) or None
  lat lon                        int24; lat = raw * 90 / 2**23, lon = raw * 180 / 2**23 (degrees)
  enum                           u8 index into the tuple arg; unknown index decodes to "unknown_<n>"
  ver                            u24 semantic version "major.minor.patch"
  bits                           arg = ((name, width, enum_or_None), ...) packed MSB first, whole bytes
  list                           arg = (max_items, fields): fixed-size items until the end of payload
Port 3 (settings) is TLV: (id u8, length u8, little-endian value) per SETTINGS.
"""

# Enumerations shared by the collar, the bridge and the formatter. Append only: indices are on the wire.
BEHAVIOURS = ("rest", "forage", "walk", "run")
ALERT_TYPES = (
    "test",
    "mortality",
    "immobility",
    "poaching_risk",
    "geofence_farmland",
    "geofence_exit",
    "collar_drop",
    "tamper",
    "low_battery",
    "battery_critical",
    "unexpected_reboot",
)
RESET_CAUSES = ("power_on", "watchdog", "brownout", "software", "pin", "lockup", "unknown")
ACK_RESULTS = (
    "ok",
    "unknown_command",
    "malformed",
    "out_of_range",
    "unknown_setting",
    "busy",
    "refused",
    # why an over-the-air update was refused or undone (port-31 ack on ports 200-202)
    "unsigned",
    "tampered",
    "downgrade",
    "wrong_hardware",
    "truncated",
    "self_test_failed",
    "too_large",
    "wrong_base",  # a firmware delta built against a version the collar does not run
)
# The last over-the-air update a collar tried, as its status reports it (status version 2):
# what it was, how it ended (the reason is an ACK_RESULTS name: ok, tampered, self_test_failed, ...).
UPDATE_KINDS = ("none", "firmware", "model")
UPDATE_OUTCOMES = ("none", "installed", "refused", "rolled_back")
STATUS_FLAGS = (
    ("tracking", 1, None),
    ("in_farmland", 1, None),
    ("outside_park", 1, None),
    ("battery_low", 1, None),
    ("model_fallback", 1, None),
    ("clock_unsynced", 1, None),
    ("queue_full", 1, None),
    ("spare", 1, None),
)

# Which element of a MESSAGES row holds what (rows are plain tuples so MicroPython keeps them small).
ROW_NAME = 0
ROW_PORT = 1
ROW_TAG = 2
ROW_DIRECTION = 3
ROW_FIELDS = 4

MAX_UPLINK_BYTES = 51  # EU868 DR0-DR2 application payload
MAX_ALERT_BYTES = 11  # US915 DR0

SETTINGS_PORT = 3

# Settings carried as TLV on port 3: (id, name, kind, minimum, maximum, unit).
SETTINGS = (
    (1, "gnss_interval_s", "u32", 60, 86400, "s"),
    (2, "summary_interval_s", "u16", 300, 14400, "s"),  # activity interval_min is one byte
    (3, "status_interval_s", "u32", 900, 86400, "s"),
    (4, "accel_rate_hz", "u8", 10, 100, "Hz"),
    (5, "accel_range_g", "u8", 2, 16, "g"),
    (6, "window_s", "u8", 2, 60, "s"),
    (7, "window_every_s", "u16", 10, 3600, "s"),
    (8, "immobility_h", "u8", 1, 48, "h"),
    (9, "tracking_minutes", "u16", 0, 1440, "min"),
    (10, "fair_use_airtime_s", "u16", 1, 600, "s"),
    (11, "low_battery_mv", "u16", 2500, 4200, "mV"),
    (12, "critical_battery_mv", "u16", 2500, 4200, "mV"),
    (13, "alert_repeat_min", "u16", 5, 1440, "min"),
    (14, "confirmed_alerts", "u8", 0, 1, ""),
    (15, "tracking_gnss_interval_s", "u16", 30, 3600, "s"),
    (16, "utc_offset_min", "i16", -720, 840, "min"),
    (17, "still_vedba_mg", "u16", 5, 500, "mg"),
    (18, "run_vedba_mg", "u16", 100, 4000, "mg"),
    (19, "immobility_suspect_h", "u8", 1, 48, "h"),
    (20, "fence_margin_m", "u16", 0, 1000, "m"),
    (21, "boundary_near_m", "u16", 0, 20000, "m"),
    (22, "positions_per_uplink", "u8", 1, 5, ""),
    (23, "poaching_score", "u8", 1, 255, ""),
    (24, "drop_temp_fall_dc", "u16", 5, 200, "dC"),
    (25, "gnss_adaptive", "u8", 0, 1, ""),  # smart fixes (fix_schedule.py)
    (26, "gnss_rest_interval_s", "u32", 60, 86400, "s"),
    (27, "gnss_move_interval_s", "u32", 60, 86400, "s"),
    (28, "gnss_min_gap_s", "u16", 0, 3600, "s"),
    (29, "poaching_min_run_s", "u16", 0, 600, "s"),  # flight seconds within risk.POACHING_SPAN_MIN
    (30, "gnss_forage_interval_s", "u32", 60, 86400, "s"),
    (31, "carcass_vedba_mg", "u8", 0, 100, "mg"),  # 0: no carcass rule, mortality after immobility_h only
    (32, "carcass_min", "u16", 10, 1440, "min"),
    (33, "fast_vedba_mg", "u16", 100, 4000, "mg"),  # a "walk" this vigorous is a flight (risk.py)
)

# Kinds of virtual fence held on the collar: leaving a "park" fence or entering a "farmland" one alerts.
FENCE_KINDS = ("park", "farmland", "exclusion", "spare")

_ALERT_HEAD = ("alert", "bits", (("alert_type", 5, ALERT_TYPES), ("seq", 3, None)))

# TS004 FragSessionSetupReq's fields in v1.0.0; v2.0.0's row adds SessionCnt and the data block's MIC.
_FRAG_SETUP = (
    ("frag_session", "bits", (("rfu", 2, None), ("frag_index", 2, None), ("mc_group_bit_mask", 4, None))),
    ("nb_frag", "u16", None),
    ("frag_size", "u8", None),
    ("control", "u8", None),
    ("padding", "u8", None),
    ("descriptor", "u32", None),
)

# TS004 FragSessionStatusAns's Received&index (FragIndex 15..14 | NbFragReceived 13..0) and MissingFrag.
_FRAG_RECEIVED = (("received_and_index", "u16", None), ("missing", "u8", None))
# TS004's Status bits 7..2 in FragSessionStatusAns (both versions) and FragSessionDeleteAns: RFU | SessionDoesNotExist.
_NO_SESSION = (("rfu", 5, None), ("session_does_not_exist", 1, None))
# TS004's Param of FragSessionDeleteReq and FragDataBlockReceivedAns: RFU 6 bits | FragIndex 2 bits.
_FRAG_INDEX = (("rfu", 6, None), ("frag_index", 2, None))

# When and where, as most uplinks open (one copy in the collar's flash, not one a message).
_TIME_PLACE = (("time_s", "u32", None), ("lat", "lat", None), ("lon", "lon", None))
_TIME = _TIME_PLACE[0]

_STATUS_FIELDS = _TIME_PLACE + (
    ("fix_age_s", "u16", None),
    ("battery_mv", "u16", None),
    ("temperature_c", "i16", 10),
    ("fw_version", "ver", None),
    ("model_version", "u16", None),
    ("uptime_h", "u16", None),
    ("reset_cause", "enum", RESET_CAUSES),
    ("behaviour", "enum", BEHAVIOURS),
    ("flags", "bits", STATUS_FLAGS),
    ("queue_depth", "u8", None),
    ("errors", "u8", None),
)

MESSAGES = (
    # Version 1: collars that predate over-the-air updates; version 2 adds the last update's result.
    # Both decode as "status"; a collar encodes the last row of a name (version 2).
    ("status", 1, 1, "up", _STATUS_FIELDS),
    ("status", 1, 2, "up", _STATUS_FIELDS + (
        ("update", "bits", (("update_kind", 2, UPDATE_KINDS), ("update_outcome", 3, UPDATE_OUTCOMES),
                            ("update_spare", 3, None))),
        ("update_version", "ver", None),
        ("update_reason", "enum", ACK_RESULTS),
    )),
    ("activity", 2, 1, "up", (
        _TIME,
        ("interval_min", "u8", None),
        ("model_version", "u16", None),
        ("vedba_mean_mg", "u16", None),
        ("vedba_max_mg", "u16", None),
        ("shares", "list", (16, (("share", "u8", 2),))),
    )),
    ("positions", 4, 1, "up", (
        _TIME,
        ("fixes", "list", (5, (("dt_s", "u16", None),) + _TIME_PLACE[1:])),
    )),
    ("settings", 3, None, "both", ()),  # TLV records, see SETTINGS
    ("alert", 10, None, "up", (_ALERT_HEAD,) + _TIME_PLACE),
    ("ack", 31, None, "up", (
        _TIME,
        ("on_port", "u8", None),
        ("cmd", "u8", None),
        ("result", "enum", ACK_RESULTS),
    )),
    ("ack_alert", 32, 1, "down", (_ALERT_HEAD,)),
    ("request_status", 32, 2, "down", ()),
    ("reboot", 32, 3, "down", ()),
    ("tracking", 32, 4, "down", (("minutes", "u16", None),)),
    ("clear_fences", 32, 5, "down", ()),
    # One part of a virtual-fence polygon: points first_index.. of fence fence_id; last=1 closes it.
    ("fence", 32, 6, "down", (
        ("fence", "bits", (("fence_id", 4, None), ("kind", 2, FENCE_KINDS), ("last", 1, None),
                           ("spare", 1, None))),
        ("first_index", "u8", None),
        ("points", "list", (7, _TIME_PLACE[1:])),
    )),
    ("request_settings", 32, 7, "down", ()),
    # FUOTA in the manner of the LoRa Alliance application packages: TS005 remote multicast set-up
    # (port 200), TS004 fragmented data block transport (port 201), TS003 clock sync (port 202).
    # The tag is the package's command id (CID). Times on the air are GPS seconds, as the packages count them.
    # TS005 v1.0.0 (LoRaMac-node LmhpRemoteMcastSetup.c): McGroupIDHeader is RFU 6 bits | McGroupID
    # 2 bits (a group above 3 is refused); McKey_encrypted (16 bytes, wrapped with the collar's McKEKey)
    # travels as four little-endian words; SessionTime counts GPS seconds (gps_from_unix); TimeOut
    # is the low 4 bits (the window lasts 2**TimeOut s). Answers: McGroupSetupAns = IDerror (bit 2)
    # | McGroupID; McGroupDeleteAns = McGroupUndefined (bit 2) | McGroupID; McClassCSessionAns status
    # = StartMissed (bit 5, TS005 v2) | McGroupUndefined (4) | FreqError (3) | DRError (2) | McGroupID,
    # TimeToStart present only when no error bit is set.
    ("mc_package_version", 200, 0, "down", ()),
    ("mc_package_version_ans", 200, 0, "up", (("package_id", "u8", None), ("package_version", "u8", None))),
    # McGroupStatusReq = RFU 4 bits | ReqGroupMask 4 bits; McGroupStatusAns = RFU 1 bit | NbTotalGroups
    # 3 bits | AnsGroupMask 4 bits, then McGroupID (1) and McAddr (4) of every group in AnsGroupMask.
    ("mc_group_status", 200, 1, "down", (("req_group_mask", "u8", None),)),  # the collar ignores the RFU bits
    ("mc_group_status_ans", 200, 1, "up", (
        ("status", "bits", (("rfu", 1, None), ("nb_total_groups", 3, None), ("ans_group_mask", 4, None))),
        ("groups", "list", (4, (("group", "u8", None), ("mc_addr", "u32", None)))),
    )),
    ("mc_group_setup", 200, 2, "down", (
        ("group", "u8", None),
        ("mc_addr", "u32", None),
        ("mc_key_encrypted_0", "u32", None),
        ("mc_key_encrypted_1", "u32", None),
        ("mc_key_encrypted_2", "u32", None),
        ("mc_key_encrypted_3", "u32", None),
        ("min_mc_fcount", "u32", None),
        ("max_mc_fcount", "u32", None),
    )),
    ("mc_group_setup_ans", 200, 2, "up", (("status", "u8", None),)),
    ("mc_group_delete", 200, 3, "down", (("group", "u8", None),)),
    ("mc_group_delete_ans", 200, 3, "up", (("status", "u8", None),)),
    ("mc_class_c_session", 200, 4, "down", (
        ("group", "u8", None),
        ("session_time_gps_s", "u32", None),
        ("timeout_log2_s", "u8", None),
        ("frequency_hz100", "u24", None),
        ("data_rate", "u8", None),
    )),
    ("mc_class_c_session_ans", 200, 4, "up", (
        ("status", "u8", None),
        ("time_to_start_s", "list", (1, (("s", "u24", None),))),
    )),
    # TS004 PackageVersionReq (CID 0, no payload) and PackageVersionAns = PackageIdentifier (3: fragmented data
    # block transport) | PackageVersion (1: the collar speaks v1.0.0's layouts, which v2.0.0 says it is not
    # compatible with). It names no number of sessions: the collar's bound answers in FragSessionSetupAns.
    ("frag_package_version", 201, 0, "down", ()),
    ("frag_package_version_ans", 201, 0, "up", (("package_id", "u8", None), ("package_version", "u8", None))),
    # FragSessionSetupReq's FragSession = RFU 2 bits | FragIndex 2 bits | McGroupBitMask 4 bits (LoRaMac-node's
    # bit fields, LoRa Basics Modem's masks 0x30 and 0x0F); Control = RFU 2 | FragAlgo 3 | BlockAckDelay 3.
    # FragSessionSetupAns = FragIndex 7..6 | RFU 2 | WrongDescriptor | IndexNotSupported | NotEnoughMemory |
    # EncodingUnsupported.
    ("frag_session_setup", 201, 2, "down", _FRAG_SETUP),
    ("frag_session_setup_ans", 201, 2, "up", (("status", "u8", None),)),
    # FragSessionStatusReq = FragStatusReqParam (RFU 5 bits | FragIndex 2 bits | Participants);
    # FragSessionStatusAns = ReceivedAndIndex (FragIndex 15..14 | NbFragReceived 13..0), MissingFrag and
    # Status (RFU 5 bits | SessionDoesNotExist (bit 2, as TS004 v2.0.0 and the delete answer place it) |
    # RFU | NotEnoughMatrixMemory): a collar asked about a session it does not hold says so, never "0 missing".
    ("frag_session_status", 201, 1, "down", (
        ("param", "bits", (("rfu", 5, None), ("frag_index", 2, None), ("participants", 1, None))),
    )),
    ("frag_session_status_ans", 201, 1, "up", _FRAG_RECEIVED + (
        ("status", "bits", _NO_SESSION + (("spare", 1, None), ("not_enough_matrix_memory", 1, None))),
    )),
    # TS004 v1.0.0 (LoRaMac-node LmhpFragmentation.c): FragSessionDeleteReq = Param (RFU 6 bits |
    # FragIndex 2 bits); FragSessionDeleteAns = Status (RFU 5 bits | SessionDoesNotExist | FragIndex 2 bits).
    ("frag_session_delete", 201, 3, "down", (
        ("param", "bits", _FRAG_INDEX),
    )),
    ("frag_session_delete_ans", 201, 3, "up", (
        ("status", "bits", _NO_SESSION + _FRAG_INDEX[1:]),
    )),
    # TS004 v2.0.0 3.5 (LoRa Basics Modem's lorawan_fragmentation_package_v2.0.0.c): FragDataBlockReceivedReq,
    # sent by the collar once a v2.0.0 session's block is rebuilt and its MIC checked (only when the set-up's
    # AckReception bit asked for it) = Status (RFU 5 | MICError | FragIndex 2); FragDataBlockReceivedAns, the
    # server's acknowledgement = Param (RFU 6 | FragIndex 2). CID 4 exists in v2.0.0 only.
    ("frag_data_block_received", 201, 4, "up", (
        ("status", "bits", (("rfu", 5, None), ("mic_error", 1, None), _FRAG_INDEX[1])),
    )),
    ("frag_data_block_received_ans", 201, 4, "down", (
        ("param", "bits", _FRAG_INDEX),
    )),
    # One fragment: index_and_n = session << 14 | n (n from 1; n > nb_frag is a parity fragment).
    ("data_fragment", 201, 8, "down", (
        ("index_and_n", "u16", None),
        ("data", "list", (240, (("byte", "u8", None),))),
    )),
    # TS003 v1.0.0 (LoRaMac-node LmhpClockSync.c): AppTimeReq = DeviceTime (GPS seconds) and Param
    # (RFU 3 bits | AnsRequired | TokenReq 4 bits); AppTimeAns = TimeCorrection (signed s) and Param
    # (RFU 4 bits | TokenAns 4 bits).
    ("app_time_req", 202, 1, "up", (
        ("device_time_gps_s", "u32", None),
        ("param", "bits", (("rfu", 3, None), ("ans_required", 1, None), ("token", 4, None))),
    )),
    ("app_time_ans", 202, 1, "down", (
        ("correction_s", "i32", None),
        ("param", "bits", (("rfu", 4, None), ("token", 4, None))),
    )),
    # TS004 v2.0.0 (LoRa Basics Modem's lorawan_fragmentation_package_v2.0.0.c), which "is not compatible with the
    # earlier version": a row's sixth element is the package version it is of (a row without one is v1.0.0's, and
    # every version's where no versioned row of its name exists). Which layout a frame carries depends on the
    # version the session speaks, never on its bytes alone: decode, encode, message and command_size take it.
    # FragSessionSetupReq v2 (3.3) = v1.0.0's fields, then SessionCnt (must grow from session to session) and the
    # data block's MIC (the first 4 bytes of AES-CMAC(DataBlockIntKey, B0 | block), little-endian); Control =
    # RFU | AckReception (bit 6) | FragAlgo 3 | BlockAckDelay 3; its answer adds SessionCntReplay (bit 4).
    ("frag_session_setup", 201, 2, "down", _FRAG_SETUP + (("session_cnt", "u16", None), ("mic", "u32", None)), 2),
    # FragSessionStatusAns v2 (3.2) = Status (RFU 5 | SessionDoesNotExist | MICError | MemoryError) first, then
    # Received&index (FragIndex 15..14 | NbFragReceived 13..0) and MissingFrag only when the session exists.
    ("frag_session_status_ans", 201, 1, "up", (
        ("status", "bits", _NO_SESSION + (("mic_error", 1, None), ("memory_error", 1, None))),
        ("session", "list", (1, _FRAG_RECEIVED)),
    ), 2),
)


# FUOTA ports by package, for the collar's update module (fixed by the LoRa Alliance packages).
PORT_MULTICAST = 200
PORT_FRAGMENTS = 201
PORT_CLOCK = 202
# GPS time (TS003, TS005) against the collar's Unix clock: the GPS epoch and GPS-UTC leap seconds.
GPS_EPOCH_UNIX_S = 315964800  # 1980-01-06T00:00:00Z
GPS_UTC_LEAP_S = 18  # since 2017-01-01


def gps_from_unix(t_s):
    """Return GPS seconds modulo 2**32 of Unix second t_s (what SessionTime carries)."""
    return (t_s - GPS_EPOCH_UNIX_S + GPS_UTC_LEAP_S) & 0xFFFFFFFF


def unix_from_gps(gps_s):
    """Return the Unix second of GPS second gps_s."""
    return gps_s + GPS_EPOCH_UNIX_S - GPS_UTC_LEAP_S

_SIZES = {"u8": 1, "u16": 2, "u24": 3, "u32": 4, "i8": 1, "i16": 2, "i24": 3, "i32": 4,
          "lat": 3, "lon": 3, "enum": 1, "ver": 3}
_SIGNED = {"i8": 1, "i16": 1, "i24": 1, "i32": 1, "lat": 1, "lon": 1}
_LAT_SCALE = 8388608 / 90  # raw per degree
_LON_SCALE = 8388608 / 180


class CodecError(ValueError):
    """A payload or a value that the Tembo wire format cannot carry; the message says why.

    reason names the ACK_RESULTS entry a collar answers with ("malformed", "out_of_range",
    "unknown_setting", "unknown_command"), so nobody has to read it out of the message text.
    """

    def __init__(self, message, reason="malformed"):
        super().__init__(message)
        self.reason = reason


def _index():
    by_name = {}
    up = {}
    down = {}
    for m in MESSAGES:
        # a versioned row (TS004 v2.0.0's) is keyed by its name or tag with its version, so v1.0.0's stay the default
        v = m[5] << 8 if len(m) > 5 else 0
        key = m[0]
        if v:
            key = key, v
        elif key in by_name:
            _OLDER[key] = (by_name[key],) + _OLDER.get(key, ())
        by_name[key] = m
        key = m[2] if m[2] is None else m[2] | v
        if m[3] != "down":
            up.setdefault(m[1], {})[key] = m
        if m[3] != "up":
            down.setdefault(m[1], {})[key] = m
    return by_name, up, down


# A FUOTA request and its answer share port and command id (as in the LoRa Alliance packages):
# the direction tells them apart.
_OLDER = {}  # name -> its older versions, newest first (a message with several versions)
_BY_NAME, _UP_BY_PORT, _DOWN_BY_PORT = _index()
_SETTING_BY_ID = {s[0]: s for s in SETTINGS}
_SETTING_BY_NAME = {s[1]: s for s in SETTINGS}


def message(name, version=1):
    """Return the table row of message name in TS004 package version (its v1.0.0 row when the version has
    none of its own), or raise CodecError."""
    m = _BY_NAME.get((name, version << 8)) or _BY_NAME.get(name)
    if m is None:
        raise CodecError("unknown message " + str(name))
    return m


def field_size(field):
    """Return the bytes one field takes (a list field: its item size)."""
    kind = field[1]
    if kind == "bits":
        return sum(b[1] for b in field[2]) // 8
    if kind == "list":
        return sum(field_size(f) for f in field[2][1])
    return _SIZES[kind]


def max_size(name):
    """Return the largest payload message name can produce, in bytes."""
    m = message(name)
    if m[1] == SETTINGS_PORT:
        return sum(2 + _SIZES[s[2]] for s in SETTINGS)
    return payload_size(name, _list_bound(m))


def payload_size(name, items, version=1):
    """Return the bytes of message name (in TS004 package version) carrying items entries in its list field
    (settings excluded)."""
    m = message(name, version)
    n = 0 if m[2] is None else 1
    for f in m[4]:
        n += field_size(f) * (items if f[1] == "list" else 1)
    return n


def _list_bound(m):
    for f in m[4]:
        if f[1] == "list":
            return f[2][0]
    return 0


# ---- integers on the wire -------------------------------------------------------------

def _put_int(buf, size, signed, raw, name):
    lo = -(1 << (8 * size - 1)) if signed else 0
    hi = (1 << (8 * size - 1)) - 1 if signed else (1 << (8 * size)) - 1
    if raw < lo or raw > hi:
        raise CodecError("%s=%d out of range %d..%d" % (name, raw, lo, hi), "out_of_range")
    if raw < 0:
        raw += 1 << (8 * size)
    for _ in range(size):
        buf.append(raw & 0xFF)
        raw >>= 8


def _get_int(data, pos, size, signed):
    raw = 0
    for i in range(size - 1, -1, -1):
        raw = (raw << 8) | data[pos + i]
    if signed and raw >= 1 << (8 * size - 1):
        raw -= 1 << (8 * size)
    return raw


def _round(x):
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def _enum_raw(names, value, name):
    if isinstance(value, str):
        for i in range(len(names)):
            if names[i] == value:
                return i
        raise CodecError("%s: unknown value %s" % (name, value))
    return int(value)


def _enum_name(names, raw):
    return names[raw] if raw < len(names) else "unknown_%d" % raw


def _ver_raw(value, name):
    if isinstance(value, str):
        parts = value.split(".")
        if len(parts) != 3:
            raise CodecError("%s: version must be major.minor.patch, got %s" % (name, value))
        raw = 0
        for p in parts:
            v = int(p)
            if v < 0 or v > 255:
                raise CodecError("%s: version part %d out of 0..255" % (name, v))
            raw = (raw << 8) | v
        return raw
    return int(value)


# ---- fields ---------------------------------------------------------------------------

def _encode_field(buf, field, values):
    name, kind, arg = field
    if kind == "bits":
        acc = 0
        width = 0
        for bname, bits, names in arg:
            v = values.get(bname, 0)
            raw = _enum_raw(names, v, bname) if names else int(v)
            if raw < 0 or raw >= 1 << bits:
                raise CodecError("%s=%d does not fit %d bits" % (bname, raw, bits))
            acc = (acc << bits) | raw
            width += bits
        for i in range(width // 8 - 1, -1, -1):
            buf.append((acc >> (8 * i)) & 0xFF)
        return
    if kind == "list":
        items = values.get(name, ())
        if len(items) > arg[0]:
            raise CodecError("%s: %d items, at most %d" % (name, len(items), arg[0]))
        subfields = arg[1]
        for item in items:
            if len(subfields) == 1 and not isinstance(item, dict):
                item = {subfields[0][0]: item}
            for f in subfields:
                _encode_field(buf, f, item)
        return
    if name not in values:
        raise CodecError("missing field " + name)
    v = values[name]
    if kind == "enum":
        raw = _enum_raw(arg, v, name)
        kind = "u8"
    elif kind == "ver":
        raw = _ver_raw(v, name)
        kind = "u24"
    elif kind == "lat" or kind == "lon":
        x = float(v)
        if kind == "lat" and (x < -90 or x > 90) or kind == "lon" and (x < -180 or x > 180):
            raise CodecError("%s=%s is not a coordinate" % (name, v))
        raw = _round(x * (_LAT_SCALE if kind == "lat" else _LON_SCALE))
        if raw > 8388607:
            raw = 8388607
        if raw < -8388608:
            raw = -8388608
    elif arg:
        raw = _round(float(v) * arg)
    else:
        raw = int(v)
    _put_int(buf, _SIZES[kind], kind in _SIGNED, raw, name)


def _decode_field(data, pos, field, out):
    name, kind, arg = field
    if kind == "bits":
        size = field_size(field)
        acc = 0
        for i in range(size):
            acc = (acc << 8) | data[pos + i]
        shift = size * 8
        for bname, bits, names in arg:
            shift -= bits
            raw = (acc >> shift) & ((1 << bits) - 1)
            out[bname] = _enum_name(names, raw) if names else raw
        return pos + size
    if kind == "list":
        max_items, subfields = arg
        size = field_size(field)
        rest = len(data) - pos
        if rest % size:
            raise CodecError("%s: %d trailing bytes are not whole items of %d" % (name, rest, size))
        if rest // size > max_items:
            raise CodecError("%s: %d items, at most %d" % (name, rest // size, max_items))
        items = []
        while pos < len(data):
            item = {}
            for f in subfields:
                pos = _decode_field(data, pos, f, item)
            items.append(item[subfields[0][0]] if len(subfields) == 1 else item)
        out[name] = items
        return pos
    size = _SIZES[kind]
    raw = _get_int(data, pos, size, kind in _SIGNED)
    if kind == "enum":
        value = _enum_name(arg, raw)
    elif kind == "ver":
        value = "%d.%d.%d" % ((raw >> 16) & 0xFF, (raw >> 8) & 0xFF, raw & 0xFF)
    elif kind == "lat":
        value = raw * 90 / 8388608
    elif kind == "lon":
        value = raw * 180 / 8388608
    elif arg:
        value = raw / arg
    else:
        value = raw
    out[name] = value
    return pos + size


def _fixed_size(fields):
    n = 0
    for f in fields:
        if f[1] != "list":
            n += field_size(f)
    return n


# ---- settings TLV (port 3) ------------------------------------------------------------

def setting(key):
    """Return the SETTINGS row for an id or a name, or raise CodecError."""
    row = _SETTING_BY_ID.get(key) if isinstance(key, int) else _SETTING_BY_NAME.get(key)
    if row is None:
        raise CodecError("unknown setting " + str(key), "unknown_setting")
    return row


def encode_settings(values):
    """Encode {name: value} as TLV records in id order; values range-checked."""
    buf = bytearray()
    for sid, name, kind, lo, hi, _unit in SETTINGS:
        if name in values:
            v = int(values[name])
            if v < lo or v > hi:
                raise CodecError("%s=%d out of range %d..%d" % (name, v, lo, hi), "out_of_range")
            buf.append(sid)
            buf.append(_SIZES[kind])
            _put_int(buf, _SIZES[kind], kind in _SIGNED, v, name)
    for name in values:
        if name not in _SETTING_BY_NAME and name != "message" and name != "port":
            raise CodecError("unknown setting " + str(name), "unknown_setting")
    return bytes(buf)


def decode_settings(data):
    """Decode TLV records into {name: value}; unknown ids, bad lengths and out-of-range values raise."""
    out = {}
    pos = 0
    n = len(data)
    while pos < n:
        if pos + 2 > n:
            raise CodecError("settings: truncated record header at byte %d" % pos)
        sid = data[pos]
        length = data[pos + 1]
        pos += 2
        row = _SETTING_BY_ID.get(sid)
        if row is None:
            raise CodecError("settings: unknown setting id %d" % sid, "unknown_setting")
        size = _SIZES[row[2]]
        if length != size:
            raise CodecError("settings: %s needs %d bytes, got %d" % (row[1], size, length))
        if pos + length > n:
            raise CodecError("settings: %s truncated" % row[1])
        v = _get_int(data, pos, size, row[2] in _SIGNED)
        if v < row[3] or v > row[4]:
            raise CodecError("settings: %s=%d out of range %d..%d" % (row[1], v, row[3], row[4]), "out_of_range")
        out[row[1]] = v
        pos += length
    return out


# ---- messages -------------------------------------------------------------------------

def _fills(m, values):
    """Return True when values give every field of row m that has no default (bits and lists do)."""
    for f in m[4]:
        if f[1] != "bits" and f[1] != "list" and f[0] not in values:
            return False
    return True


def encode(name, values, version=1):
    """Encode message name from a dict of field values; return the payload bytes (port: port_of).
    version: the TS004 package version whose row to use (message).

    A message with several versions (status) is encoded as the newest one the values fill, so a
    sender that knows only the older fields still sends a valid older version."""
    m = message(name, version)
    if m[1] == SETTINGS_PORT:
        return encode_settings(values)
    if name in _OLDER and not _fills(m, values):
        for older in _OLDER[name]:
            if _fills(older, values):
                m = older
                break
    buf = bytearray()
    if m[2] is not None:
        buf.append(m[2])
    for f in m[4]:
        _encode_field(buf, f, values)
    return bytes(buf)


def port_of(name):
    """Return the LoRaWAN FPort of message name."""
    return message(name)[1]


def encode_packet(name, values):
    """Encode message name; return (port, payload bytes), the port taken from the table."""
    return message(name)[1], encode(name, values)


def tag_of(name):
    """Return the first byte (version or command id) of message name, or None when it has none."""
    return message(name)[2]


def alert_id(name):
    """Return the wire id of an alert type named in ALERT_TYPES (raise CodecError when unknown)."""
    return _index_of(ALERT_TYPES, name, "alert type")


def ack_code(name):
    """Return the wire code of an ack result named in ACK_RESULTS (raise CodecError when unknown)."""
    return _index_of(ACK_RESULTS, name, "ack result")


def _index_of(names, name, what):
    for i in range(len(names)):
        if names[i] == name:
            return i
    raise CodecError("unknown %s %s" % (what, name))


def command_size(port, cid, direction="down", version=1):
    """Return the bytes command cid takes on a FUOTA port in direction "down" or "up" (its id and fixed fields;
    0: a list field takes the rest of the payload, as a DataFragment does), or -1 when the port has no such
    command. A frame may carry several commands one after another (TS004 v1.0.0 3), and an uplink their
    answers: this says where the next one begins. version: the TS004 package version the session speaks."""
    variants = (_DOWN_BY_PORT if direction == "down" else _UP_BY_PORT).get(port, {})
    m = variants.get(cid | version << 8) or variants.get(cid)
    if m is None or m[2] is None:
        return -1
    return 0 if len(m[4]) and m[4][-1][1] == "list" else 1 + _fixed_size(m[4])


def decode(port, payload, direction=None, version=1):
    """Decode a payload heard on port; return {"message", "port", fields...} or raise CodecError.

    direction "up" or "down" picks the uplink or the downlink messages of a port that has both
    (the FUOTA ports); None reads an uplink, or a downlink on a port that carries only downlinks.
    version: the TS004 package version the collar's session speaks (its rows where they differ).
    """
    if port == SETTINGS_PORT:
        out = decode_settings(payload)
        out["message"] = "settings"
        out["port"] = port
        return out
    variants = _UP_BY_PORT.get(port) if direction != "down" else None
    if variants is None and direction != "up":
        variants = _DOWN_BY_PORT.get(port)
    if variants is None:
        raise CodecError("unknown port %d" % port, "unknown_command")
    pos = 0
    if None in variants:
        m = variants[None]
    else:
        if len(payload) < 1:
            raise CodecError("empty payload on port %d" % port)
        m = variants.get(payload[0] | version << 8) or variants.get(payload[0])
        if m is None:
            raise CodecError("port %d: unknown version or command %d" % (port, payload[0]), "unknown_command")
        pos = 1
    fields = m[4]
    need = pos + _fixed_size(fields)
    has_list = len(fields) and fields[-1][1] == "list"
    if len(payload) < need or (not has_list and len(payload) != need):
        raise CodecError("%s: %d bytes, expected %s%d" % (m[0], len(payload), "at least " if has_list else "", need))
    out = {"message": m[0], "port": port}
    for f in fields:
        pos = _decode_field(payload, pos, f, out)
    return out
