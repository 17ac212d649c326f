"""The virtual fences a collar holds: up to config.MAX_FENCES polygons, received in parts, kept in flash.

Parts arrive on port 32 (`fence` command) in order; a fence is installed when its last part closes
it. The flash record lists each complete fence as (id u8, kind u8, n u8, n x (lat i32, lon i32)),
sealed with a CRC (records.py). Results are ack codes of the codec table.
"""

from collar_firmware import config, geo, records
from collar_firmware.downlink import ACK_MALFORMED, ACK_OK, ACK_OUT_OF_RANGE


class Fences:
    """The fence slots of one collar; storage is the HAL's flash."""

    def __init__(self, storage):
        self.storage = storage
        self.slots = [None] * config.MAX_FENCES
        self._building = None

    def complete(self):
        """Return the list of complete fences."""
        out = []
        for f in self.slots:
            if f is not None and f.complete:
                out.append(f)
        return out

    def clear(self):
        """Forget every fence, in RAM and in flash; return an ack code."""
        self.slots = [None] * config.MAX_FENCES
        self._building = None
        self.save()
        return ACK_OK

    def part(self, fence_id, kind, first_index, lats, lons, last):
        """Receive points first_index.. of a fence polygon (degrees); return (ack code, installed):
        installed is True when the last part closed a fence (the caller then saves)."""
        if fence_id >= config.MAX_FENCES or first_index + len(lats) > config.MAX_FENCE_POINTS:
            return ACK_OUT_OF_RANGE, False
        if first_index == 0:
            building = geo.Fence(fence_id, kind, config.MAX_FENCE_POINTS)
        else:
            building = self._building
            if building is None or building.fence_id != fence_id or building.kind != kind \
                    or building.n != first_index:
                return ACK_MALFORMED, False
        for i in range(len(lats)):
            building.set_point(first_index + i, geo.lat_raw(lats[i]), geo.lon_raw(lons[i]))
        if not last:
            self._building = building
            return ACK_OK, False
        self._building = None
        if not building.close():
            return ACK_MALFORMED, False
        self.slots[fence_id] = building
        return ACK_OK, True

    def save(self):
        """Write the complete fences to flash."""
        data = bytearray()
        for f in self.slots:
            if f is None or not f.complete:
                continue
            data.append(f.fence_id)
            data.append(f.kind)
            data.append(f.n)
            for i in range(f.n):
                records.put_i32(data, f.lat[i])
                records.put_i32(data, f.lon[i])
        self.storage.write(config.KEY_FENCES, records.sealed(data))

    def load(self):
        """Read the fences back from flash; a torn or inconsistent record keeps what was whole."""
        data = records.unsealed(self.storage.read(config.KEY_FENCES))
        if data is None:
            return
        pos = 0
        end = len(data)
        while pos + 3 <= end:
            fence_id, kind, n = data[pos], data[pos + 1], data[pos + 2]
            pos += 3
            if fence_id >= config.MAX_FENCES or n > config.MAX_FENCE_POINTS or pos + 8 * n > end:
                return
            f = geo.Fence(fence_id, kind, config.MAX_FENCE_POINTS)
            for i in range(n):
                f.set_point(i, records.get_i32(data, pos), records.get_i32(data, pos + 4))
                pos += 8
            if f.close():
                self.slots[fence_id] = f
