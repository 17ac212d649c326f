"""Store-and-forward queue of the collar: a bounded ring of checksummed records in flash.

Each message waiting to be sent lives in its own flash slot (key "q00".."q95", QUEUE_SLOTS of them).
A record is written once and never changed in place; sending it erases the slot. Layout, little-endian:

    0 magic 0x54 | 1 priority | 2 port | 3 flags (bit 0: confirmed) | 4..7 seq u32 | 8 length
    9.. payload | CRC-16/CCITT-FALSE over bytes 0..8+length

A record sent unconfirmed stays (flagged in RAM) until a confirmed uplink proves the link; when a
confirmed uplink goes unheard, those records are sent again, so nothing is lost to an outage the
collar had not yet noticed (the bridge drops the duplicates).

A power cut in the middle of a write leaves a slot whose CRC does not match: at start-up it is counted
and erased, and every record written before it is intact, so nothing the queue accepted is ever lost.
When the ring is full, records of the least urgent kind (activity summaries first) are thinned
oldest first (every second one per pass, see `_victim`); alerts are never dropped, only erased when
the bridge acknowledges them.
"""

import struct

from collar_firmware.compat import const, crc_hqx
from collar_firmware.config import QUEUE_SLOTS

_MAGIC = const(0x54)
_HEAD = const(9)
_FREE = const(255)
_FLAG_CONFIRMED = const(1)
_PRIO_ALERT = const(0)


def crc16(data, n):
    """Return the CRC-16/CCITT-FALSE of the first n bytes of data."""
    if crc_hqx is not None:
        return crc_hqx(memoryview(data)[:n], 0xFFFF)  # the same CRC in C, where the runtime has it
    crc = 0xFFFF
    for i in range(n):
        crc ^= data[i] << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


def _key(slot):
    return "q%02d" % slot


class Queue:
    """Bounded store-and-forward queue over a Storage back end (read(key), write(key, data))."""

    def __init__(self, storage, slots=QUEUE_SLOTS):
        self.storage = storage
        self.slots = slots
        self.prio = bytearray([_FREE] * slots)
        self.port = bytearray(slots)
        self.flags = bytearray(slots)
        self.seq = [0] * slots
        self.retry_at_s = [0] * slots  # RAM only: when a record may be tried again (alerts back off)
        self.tries = bytearray(slots)
        self.unverified = bytearray(slots)  # RAM only: sent unconfirmed, kept until a link check succeeds
        self.next_seq = 1
        self.thin_after_seq = 0  # thinning pass: records up to this seq were kept in this pass
        self.dropped = 0  # records dropped because the ring was full
        self.corrupt = 0  # torn or corrupt records found at start-up
        self.refused = 0  # records refused (ring full of alerts)
        # What a wake-up asks every minute, kept between changes of the ring so most wake-ups skip the
        # scans: how many records may go out (held, not awaiting a link check) and the earliest time
        # one of them may be tried. Every change of a slot marks them stale.
        self.waiting = 0
        self._earliest_s = 0
        self._stale = True
        self._buf = bytearray(_HEAD + 64 + 2)

    # ---- start-up ---------------------------------------------------------------------

    def load(self):
        """Rebuild the RAM index from flash; erase torn records; return the number of records kept."""
        kept = 0
        for slot in range(self.slots):
            self.prio[slot] = _FREE
            data = self.storage.read(_key(slot))
            if not data:
                continue
            if not self._valid(data):
                self.corrupt += 1
                self.storage.write(_key(slot), b"")
                continue
            self.prio[slot] = data[1]
            self.port[slot] = data[2]
            self.flags[slot] = data[3]
            seq = struct.unpack_from("<I", data, 4)[0]
            self.seq[slot] = seq
            self.retry_at_s[slot] = 0
            self.tries[slot] = 0
            self.unverified[slot] = 0
            if seq >= self.next_seq:
                self.next_seq = seq + 1
            kept += 1
        self._stale = True
        return kept

    def _refresh(self):
        n = 0
        earliest = 0
        for slot in range(self.slots):
            if self.prio[slot] != _FREE and not self.unverified[slot]:
                n += 1
                t = self.retry_at_s[slot]
                if n == 1 or t < earliest:
                    earliest = t
        self.waiting = n
        self._earliest_s = earliest
        self._stale = False

    def _valid(self, data):
        n = len(data)
        if n < _HEAD + 2 or data[0] != _MAGIC:
            return False
        length = data[8]
        if n != _HEAD + length + 2:
            return False
        return crc16(data, _HEAD + length) == data[n - 2] | (data[n - 1] << 8)

    # ---- writing ----------------------------------------------------------------------

    def put(self, prio, port, payload, confirmed):
        """Store a message; return its slot, or -1 when the ring holds only more urgent records."""
        slot = self._free_slot()
        if slot < 0:
            slot = self._victim(prio)
            if slot < 0:
                self.refused += 1
                return -1
            self.dropped += 1
        n = len(payload)
        buf = self._buf
        buf[0] = _MAGIC
        buf[1] = prio
        buf[2] = port
        buf[3] = _FLAG_CONFIRMED if confirmed else 0
        struct.pack_into("<I", buf, 4, self.next_seq)
        buf[8] = n
        buf[_HEAD:_HEAD + n] = payload
        crc = crc16(buf, _HEAD + n)
        buf[_HEAD + n] = crc & 0xFF
        buf[_HEAD + n + 1] = crc >> 8
        self.prio[slot] = _FREE  # a slot being overwritten is not valid until the write returns
        self._stale = True
        self.storage.write(_key(slot), bytes(buf[:_HEAD + n + 2]))
        self.prio[slot] = prio
        self.port[slot] = port
        self.flags[slot] = buf[3]
        self.seq[slot] = self.next_seq
        self.retry_at_s[slot] = 0
        self.tries[slot] = 0
        self.unverified[slot] = 0
        self._stale = True
        self.next_seq += 1
        return slot

    def _free_slot(self):
        for slot in range(self.slots):
            if self.prio[slot] == _FREE:
                return slot
        return -1

    def _victim(self, prio):
        """Pick the record to drop for a new one of priority prio, or -1.

        The least urgent kind goes first, and within it the history is thinned: one pass drops every
        second record from the oldest on, the next pass starts again from the oldest, so a long
        outage comes home at a coarser grain instead of losing its first days.
        """
        worst = -1
        for slot in range(self.slots):
            p = self.prio[slot]
            if p != _FREE and p != _PRIO_ALERT and p >= prio and p > worst:
                worst = p
        if worst < 0:
            return -1
        victim = self._oldest(worst, self.thin_after_seq)
        if victim < 0:
            victim = self._oldest(worst, 0)
        kept = self._oldest(worst, self.seq[victim])
        self.thin_after_seq = self.seq[kept] if kept >= 0 else 0
        return victim

    def _oldest(self, prio, after_seq):
        best = -1
        for slot in range(self.slots):
            if self.prio[slot] == prio and self.seq[slot] > after_seq:
                if best < 0 or self.seq[slot] < self.seq[best]:
                    best = slot
        return best

    def remove(self, slot):
        """Erase the record in slot (sent, or acknowledged by the bridge)."""
        self.unverified[slot] = 0
        self._stale = True
        if self.prio[slot] != _FREE:
            self.prio[slot] = _FREE
            self.storage.write(_key(slot), b"")

    def mark_unverified(self, slot):
        """The record in slot went out unconfirmed: keep it until a link check proves the link."""
        self.unverified[slot] = 1
        self._stale = True

    def hold(self, slot, until_s):
        """The record in slot may be tried again from until_s on."""
        self.retry_at_s[slot] = until_s
        self._stale = True

    def release(self, now_s):
        """Every record held beyond now_s may be tried at now_s (the clock was set back)."""
        for slot in range(self.slots):
            if self.retry_at_s[slot] > now_s:
                self.retry_at_s[slot] = now_s
        self._stale = True

    def has_unverified(self):
        """Return True when records wait for a link check."""
        for slot in range(self.slots):
            if self.unverified[slot]:
                return True
        return False

    def link_verified(self):
        """A confirmed uplink was heard: erase the records sent unconfirmed before it."""
        for slot in range(self.slots):
            if self.unverified[slot]:
                self.remove(slot)

    def link_lost(self):
        """A confirmed uplink went unheard: records sent unconfirmed since the last check go out again."""
        for slot in range(self.slots):
            self.unverified[slot] = 0
        self._stale = True

    # ---- reading ----------------------------------------------------------------------

    def next_ready(self, now_s, confirmed_only=False):
        """Return the slot of the most urgent, oldest record that may be tried at now_s, or -1."""
        if self._stale:
            self._refresh()
        if not self.waiting or self._earliest_s > now_s:
            return -1
        best = -1
        for slot in range(self.slots):
            p = self.prio[slot]
            if p == _FREE or self.retry_at_s[slot] > now_s or self.unverified[slot]:
                continue
            if confirmed_only and not self.flags[slot] & _FLAG_CONFIRMED and p != _PRIO_ALERT:
                continue
            if best < 0 or p < self.prio[best] or (p == self.prio[best] and self.seq[slot] < self.seq[best]):
                best = slot
        return best

    def next_retry_s(self, now_s):
        """Return the earliest future retry time of a held-back record, or 0 when none waits."""
        if self._stale:
            self._refresh()
        if not self.waiting:
            return 0
        if self._earliest_s > now_s:
            return self._earliest_s
        first = 0
        for slot in range(self.slots):
            t = self.retry_at_s[slot]
            if self.prio[slot] != _FREE and t > now_s and not self.unverified[slot]:
                if first == 0 or t < first:
                    first = t
        return first

    def payload(self, slot):
        """Return the payload bytes stored in slot, or None when the slot no longer reads back valid."""
        data = self.storage.read(_key(slot))
        if not data or not self._valid(data):
            self.corrupt += 1
            self.prio[slot] = _FREE
            self._stale = True
            return None
        return data[_HEAD:_HEAD + data[8]]

    def find(self, port, first_byte):
        """Return the slot of a record on port whose payload starts with first_byte, or -1."""
        for slot in range(self.slots):
            if self.prio[slot] != _FREE and self.port[slot] == port:
                data = self.storage.read(_key(slot))
                if data and len(data) > _HEAD and data[_HEAD] == first_byte:
                    return slot
        return -1

    def depth(self):
        """Return the number of records waiting."""
        n = 0
        for slot in range(self.slots):
            if self.prio[slot] != _FREE:
                n += 1
        return n

    def is_full(self):
        """Return True when no slot is free."""
        return self._free_slot() < 0
