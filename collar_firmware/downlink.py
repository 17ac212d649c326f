"""Downlinks the collar understands: settings TLV on port 3, commands on port 32, answered on port 31.

`handle(port, payload, target)` decodes with the codec table, checks every value against
`codec.SETTINGS` before anything changes, and calls one method of target (the Collar). It never
raises: whatever arrives, it returns (on_port, cmd, result), the fields of the port 31 `ack` uplink,
where result indexes `codec.ACK_RESULTS` (0 ok). A malformed or unknown downlink changes nothing.
"""

from collar_firmware import codec

SETTINGS_PORT = codec.SETTINGS_PORT
COMMAND_PORT = codec.port_of("ack_alert")

# Ack results, read from the codec table (the wire codes live there only).
ACK_OK = codec.ack_code("ok")
ACK_UNKNOWN_COMMAND = codec.ack_code("unknown_command")
ACK_MALFORMED = codec.ack_code("malformed")
ACK_OUT_OF_RANGE = codec.ack_code("out_of_range")
ACK_REFUSED = codec.ack_code("refused")

# The tracking command is bounded like the tracking_minutes setting it overrides.
_TRACKING_ROW = codec.setting("tracking_minutes")


def _error_code(exc):
    """Map a CodecError to its ack result through the reason it carries."""
    reason = getattr(exc, "reason", "malformed")
    return codec.ack_code(reason) if reason in codec.ACK_RESULTS else ACK_MALFORMED


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
    if values.get("gnss_move_interval_s", 0) > values.get("gnss_rest_interval_s", 86400):
        return ACK_OUT_OF_RANGE  # smart fixes: moving is fixed at least as often as resting
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
        return _error_code(exc)
    return target.apply_settings(values)


def _command(payload, target):
    if len(payload) == 0:
        return ACK_MALFORMED
    try:
        msg = codec.decode(COMMAND_PORT, payload, "down")
    except codec.CodecError as exc:
        return _error_code(exc)
    name = msg["message"]
    if name == "ack_alert":
        alert_type = msg["alert_type"]
        if alert_type not in codec.ALERT_TYPES:
            return ACK_OUT_OF_RANGE  # an alert id this firmware never raises: nothing to stop
        return target.ack_alert(codec.alert_id(alert_type), msg["seq"])
    if name == "request_status":
        return target.request_status()
    if name == "reboot":
        return target.request_reboot()
    if name == "tracking":
        minutes = msg["minutes"]
        if minutes < _TRACKING_ROW[3] or minutes > _TRACKING_ROW[4]:
            return ACK_OUT_OF_RANGE  # 65535 minutes would be 45 days of high-rate GNSS
        return target.start_tracking(minutes)
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
