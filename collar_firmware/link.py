"""The confirmed-uplink state machine: is the network hearing the collar, and what to do with a record
after it was sent.

A confirmed uplink that is acknowledged proves the link (and every record sent unconfirmed before
it); one that is not starts probing with a doubling back-off. While the link is down every uplink
is confirmed, and at least every LINK_CHECK_S one is, while records await proof. Alerts repeat at
the settings' rate once heard, with a back-off while not.
"""

from collar_firmware import scheduler
from collar_firmware.compat import const

_LINK_CHECK_S = const(4 * 3600)  # a confirmed uplink at least this often while records await proof
_MAX_BACKOFF_S = const(3600)
_FIRST_BACKOFF_S = const(60)
_MAX_ALERT_TRIES = const(6)


class Link:
    """What the collar knows of its link; times are Unix seconds."""

    def __init__(self, now):
        self.ok = True
        self.verified_s = now
        self.probe_at_s = 0
        self.backoff_s = _FIRST_BACKOFF_S

    def held(self, now):
        """Return True while the link is down and the next probe is not yet due."""
        return not self.ok and now < self.probe_at_s

    def must_confirm(self, now, queue, slot):
        """Return True when the record in slot is to be sent confirmed."""
        return ((queue.flags[slot] & 1) == 1 or not self.ok
                or (now - self.verified_s >= _LINK_CHECK_S and queue.has_unverified()))

    def after_send(self, now, queue, slot, prio, confirmed, ok, alert_repeat_min):
        """Update the link and the sent record (slot of queue) after radio.send answered ok."""
        q = queue
        if confirmed:
            if ok:
                self.ok = True
                self.verified_s = now
                self.backoff_s = _FIRST_BACKOFF_S
                q.link_verified()
            else:
                self.ok = False
                self.probe_at_s = now + self.backoff_s
                self.backoff_s = min(self.backoff_s * 2, _MAX_BACKOFF_S)
                q.link_lost()
        if prio == scheduler.PRIO_ALERT:
            if ok:
                # heard by the network: repeat at the lower rate until the bridge acknowledges it
                q.tries[slot] = 0
                q.hold(slot, now + alert_repeat_min * 60)
            else:
                tries = q.tries[slot] + 1 if q.tries[slot] < _MAX_ALERT_TRIES else _MAX_ALERT_TRIES
                q.tries[slot] = tries
                q.hold(slot, now + (60 << tries))
        elif not confirmed and prio != scheduler.PRIO_ACK:
            q.mark_unverified(slot)  # data: kept until a link check (a lost ack: the bridge asks again)
        elif not confirmed:
            q.remove(slot)
        elif ok:
            q.remove(slot)
        else:
            q.hold(slot, self.probe_at_s)

    def shift_time(self, jump_s):
        """The clock jumped forward by jump_s: the last proof is as old as before."""
        self.verified_s += jump_s
