"""Downlinks the collar understands: settings TLV on port 3, commands on port 32, answered on port 31.

`handle(port, payload, target)` decodes with the codec table, checks every value against
`codec.SETTINGS` before anything changes, and calls one method of target (the Collar). It never
raises: whatever arrives, it returns (on_port, cmd, result), the fields of the port 31 `ack` uplink,
where result indexes `codec.ACK_RESULTS` (0 ok). A malformed or unknown downlink changes nothing.
"""

from collar_firmware import codec
from collar_firmware.compat import const

SETTINGS_PORT = const(3)
COMMAND_PORT = const(32)

ACK_OK = const(0)
ACK_UNKNOWN_COMMAND = const(1)
ACK_MALFORMED = const(2)
ACK_OUT_OF_RANGE = const(3)
ACK_UNKNOWN_SETTING = const(4)
ACK_BUSY = const(5)
ACK_REFUSED = const(6)


def _settings_error(message):
    """Map a codec error about a settings TLV to an ack result."""
    if "unknown setting" in message:
        return ACK_UNKNOWN_SETTING
    if "out of range" in message:
        return ACK_OUT_OF_RANGE
    return ACK_MALFORMED


def check_settings(values):
    """Return ACK_OK when the settings are consistent with each other, else ACK_OUT_OF_RANGE."""
    low = values.get("low_battery_mv")
    critical = values.get("critical_battery_mv")
    if low is not None and critical is not None and critical >= low:
        return ACK_OUT_OF_RANGE
    if values.get("immobility_suspect_h", 0) > values.get("immobility_h", 48):
        return ACK_OUT_OF_RANGE
    if values.get("window_s", 0) > values.get("window_every_s", 3600):
        return ACK_OUT_OF_RANGE
    return ACK_OK


def handle(port, payload, target):
    """Apply one downlink to target; return (on_port, cmd, result) for the port 31 ack."""
    cmd = payload[0] if port == COMMAND_PORT and len(payload) else 0
    try:
        if port == SETTINGS_PORT:
            return port, 0, _settings(payload, target)
        if port == COMMAND_PORT:
            return port, cmd, _command(payload, target)
        return port, cmd, ACK_UNKNOWN_COMMAND
    except Exception:
        # a target method failed half way: report it, the collar goes on
        return port, cmd, ACK_REFUSED


def _settings(payload, target):
    if len(payload) == 0:
        return ACK_MALFORMED
    try:
        values = codec.decode_settings(payload)
    except codec.CodecError as exc:
        return _settings_error(str(exc))
    return target.apply_settings(values)


def _command(payload, target):
    if len(payload) == 0:
        return ACK_MALFORMED
    try:
        msg = codec.decode(COMMAND_PORT, payload)
    except codec.CodecError as exc:
        return ACK_UNKNOWN_COMMAND if "unknown version or command" in str(exc) else ACK_MALFORMED
    name = msg["message"]
    if name == "ack_alert":
        return target.ack_alert(codec.ALERT_TYPES.index(msg["alert_type"])
                                if msg["alert_type"] in codec.ALERT_TYPES else 31, msg["seq"])
    if name == "request_status":
        return target.request_status()
    if name == "reboot":
        return target.request_reboot()
    if name == "tracking":
        return target.start_tracking(msg["minutes"])
    if name == "clear_fences":
        return target.clear_fences()
    if name == "fence":
        return _fence(msg, target)
    if name == "request_settings":
        return target.request_settings()
    return ACK_UNKNOWN_COMMAND


def _fence(msg, target):
    points = msg["points"]
    if msg["kind"] not in codec.FENCE_KINDS:
        return ACK_OUT_OF_RANGE
    lats = []
    lons = []
    for p in points:
        lats.append(p["lat"])
        lons.append(p["lon"])
    return target.fence_part(msg["fence_id"], codec.FENCE_KINDS.index(msg["kind"]), msg["first_index"],
                             lats, lons, msg["last"])
