"""The collar's settings: defaults, overrides, what flash holds, and how a port-3 change is accepted.

Settings are a plain dict keyed by the names of `codec.SETTINGS` (ranges live in the codec table).
Flash keeps them as a sealed TLV record (records.py). A change is applied only when the merged
settings agree with each other and with the model's window (downlink.check_settings).
"""

from collar_firmware import codec, config, downlink, records


def initial(factory):
    """Return the defaults overridden by the factory settings given at build time."""
    settings = config.defaults()
    for k in factory:
        settings[k] = factory[k]
    return settings


def load(storage, settings):
    """Overlay what flash holds onto settings (a torn record is ignored)."""
    body = records.unsealed(storage.read(config.KEY_SETTINGS))
    if body:
        stored = codec.decode_settings(body)
        for k in stored:
            settings[k] = stored[k]


def save(storage, settings):
    """Write settings to flash."""
    storage.write(config.KEY_SETTINGS, records.sealed(codec.encode_settings(settings)))


def check_change(settings, values, model_window):
    """Return the ack code of changing settings by values; model_window is (window_s, rate_hz) of a
    loaded model blob, or None for the threshold model (any window then)."""
    merged = {}
    for k in settings:
        merged[k] = settings[k]
    for k in values:
        merged[k] = values[k]
    result = downlink.check_settings(merged)
    if result != downlink.ACK_OK:
        return result
    if model_window is not None and (
            merged["window_s"] != model_window[0] or merged["accel_rate_hz"] != model_window[1]):
        return downlink.ACK_REFUSED  # the model was trained on its own window: send a new model instead
    return downlink.ACK_OK


def report_payloads(settings):
    """Return the port-3 payloads that report every setting, each within codec.MAX_UPLINK_BYTES."""
    out = []
    chunk = {}
    size = 0
    for row in codec.SETTINGS:
        n = 2 + codec.field_size((row[1], row[2], None))
        if size + n > codec.MAX_UPLINK_BYTES:
            out.append(codec.encode_settings(chunk))
            chunk = {}
            size = 0
        chunk[row[1]] = settings[row[1]]
        size += n
    if chunk:
        out.append(codec.encode_settings(chunk))
    return out
