"""The collar's position buffer: fixes waiting to leave as one `positions` uplink (bounded, no allocation).

Fixes are kept as (seconds after the first, lat raw, lon raw) in arrays made once; `payload()`
encodes them; the buffer is emptied only by `clear()`, once the uplink is queued, so a flash write
that fails sends them at the next wake instead of losing them.
"""

from array import array

from collar_firmware import codec, config, geo
from collar_firmware.compat import const

MAX_DT_S = const(65535)  # a fix's offset from the first is a u16 on the wire


class PositionBuffer:
    """Up to config.MAX_POSITIONS_PER_UPLINK fixes; n is how many are held."""

    def __init__(self):
        self.n = 0
        self.t0_s = 0
        self.dt_s = array("H", [0] * config.MAX_POSITIONS_PER_UPLINK)
        self.lat = array("i", [0] * config.MAX_POSITIONS_PER_UPLINK)
        self.lon = array("i", [0] * config.MAX_POSITIONS_PER_UPLINK)

    def too_old_for(self, now):
        """Return True when a fix at now could not be carried beside the ones held."""
        return self.n > 0 and now - self.t0_s > MAX_DT_S

    def add(self, now, lat, lon):
        """Hold a fix (raw units); a full buffer (only while flash writes keep failing) drops it."""
        i = self.n
        if i >= config.MAX_POSITIONS_PER_UPLINK:
            return
        if i == 0:
            self.t0_s = now
        self.dt_s[i] = now - self.t0_s
        self.lat[i] = lat
        self.lon[i] = lon
        self.n = i + 1

    def payload(self):
        """Return the `positions` uplink payload of the fixes held."""
        fixes = []
        for i in range(self.n):
            fixes.append({"dt_s": self.dt_s[i], "lat": self.lat[i] / geo.LAT_UNITS_PER_DEG,
                          "lon": self.lon[i] / geo.LON_UNITS_PER_DEG})
        return codec.encode("positions", {"time_s": self.t0_s, "fixes": fixes})

    def clear(self):
        """Forget the fixes held (call once their uplink is queued)."""
        self.n = 0
