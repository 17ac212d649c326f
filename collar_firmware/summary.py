"""The activity summary a collar builds over summary_interval_s: windows per class and VeDBA.

`start(now, interval_s)` opens an interval aligned on the settings' base interval; `add(...)` counts
a window; `payload(model_version, n_classes)` encodes the `activity` uplink, or None without windows.
"""

from array import array

from collar_firmware import codec, config
from collar_firmware.compat import const

_MAX_INTERVAL_S = const(14400)  # interval_min is one byte on the wire


class Summary:
    """One activity interval being counted."""

    def __init__(self):
        self.start_s = 0
        self.end_s = 0
        self.class_windows = array("H", [0] * config.MAX_CLASSES)
        self.windows = 0
        self.vedba_sum = 0
        self.vedba_max = 0

    def start(self, now, base_s, factor):
        """Open the interval holding now: base_s times factor (halved until it fits the wire)."""
        while factor > 1 and base_s * factor > _MAX_INTERVAL_S:
            factor //= 2
        start = now - now % base_s
        self.start_s = start
        self.end_s = start + base_s * factor
        for i in range(config.MAX_CLASSES):
            self.class_windows[i] = 0
        self.windows = 0
        self.vedba_sum = 0
        self.vedba_max = 0

    def add(self, class_index, vedba_mg, vedba_max_mg):
        """Count one window of class class_index."""
        self.class_windows[class_index] += 1
        self.windows += 1
        self.vedba_sum += vedba_mg
        if vedba_max_mg > self.vedba_max:
            self.vedba_max = vedba_max_mg

    def payload(self, model_version, n_classes):
        """Return the `activity` payload of the interval, or None when no window was counted."""
        windows = self.windows
        if not windows:
            return None
        shares = []
        for i in range(n_classes):
            half_pct = (200 * self.class_windows[i] + windows // 2) // windows
            shares.append(half_pct / 2)  # the codec carries percent in half-percent steps
        vmean = self.vedba_sum // windows
        return codec.encode("activity", {
            "time_s": self.start_s,
            "interval_min": (self.end_s - self.start_s) // 60,
            "model_version": model_version,
            "vedba_mean_mg": vmean if vmean < 65535 else 65535,
            "vedba_max_mg": self.vedba_max if self.vedba_max < 65535 else 65535,
            "shares": shares,
        })
