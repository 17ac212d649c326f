"""When a command or setting whose push answer was cut off is given up on, sooner than a push the network
server took.

A push the network server answered waits `downlink_unconfirmed_after_uplinks` (3) of the collar's uplinks
for word of its delivery: the server may hold other downlinks of the collar before it, and a class A collar
hears one downlink in the receive windows after each uplink. A push whose answer was cut off
(`network_server.AnswerCutOff`) may never have reached the server at all: a ranger's tracking command for a
poaching alert then waited three uplinks (up to three of the collar's status intervals) before it went
again. The collar's own uplinks tell sooner: had the server queued it, it went in the windows after the
collar's first uplink since the push (after one more for each downlink of the collar still waiting at the
network before it), and the collar acks a command or setting on port 31 in its next uplink. So a cut-off
push with no ack and no delivery report is given up on after 2 uplinks, plus one for each of the collar's
downlinks pushed before it that still await word; never later than any other push.
"""

from __future__ import annotations

from typing import Protocol

# What `last_error` of a push whose answer was cut off begins with (the outbox writes it).
CUT_OFF_REASON = "answer cut off: "
# The uplink in whose receive windows a queued downlink goes, and the one that carries the collar's ack.
UPLINKS_TO_HEAR_AND_ACK = 2


class PushRead(Protocol):
    """What the rule reads of a pushed downlink (a `Downlink`, or a row of its columns)."""

    @property
    def last_error(self) -> str | None: ...

    @property
    def network_state(self) -> str | None: ...


def cut_off_reason(why: str) -> str:
    """The `last_error` of a push whose answer was cut off, why: it may be queued at the network."""
    return f"{CUT_OFF_REASON}{why}; it may be queued at the network"


def was_cut_off(row: PushRead) -> bool:
    """Whether row's push had its answer cut off and the network has said nothing of it since."""
    return row.network_state is None and (row.last_error or "").startswith(CUT_OFF_REASON)


def uplinks_to_wait(row: PushRead, waiting_before: int, usual: int) -> int:
    """How many of the collar's uplinks since its push row waits for word of its delivery: usual, or for
    a cut-off push, the uplinks that would have carried it and its ack (waiting_before: the collar's
    downlinks pushed before it that still await word, each heard one uplink earlier), at most usual.
    `downlinks.unconfirmed_due` asks it of each pushed downlink, with waiting_before read with it."""
    if not was_cut_off(row):
        return usual
    return min(usual, UPLINKS_TO_HEAR_AND_ACK + waiting_before)
