"""How a delivery goes on once its first multicast round is out: the collars' fragment status decides.

After the planned fragments (`planner.make_plan`: data plus parity for the loss observed per
collar), the bridge multicasts a TS004 FragSessionStatusReq that every collar answers
(participants = 1: a silent collar is then one that missed the request, asked again); later
requests ask only the collars still missing fragments (participants = 0, `status_participants`),
the others having said they hold the image, in an answer or their ack. Each answer
says how many fragments that collar still needs (its rank deficit) when it had heard up to a given
fragment counter; with its observed loss that gives the fragments to send on:

    needed_i = ceil((missing_i + REPAIR_OVERHEAD) / (1 - loss_i))      more fragments, from its counter

The bridge decides ANSWER_WAIT_S after the request (TS004: a collar answers within
2**(BlockAckDelay + 4) s, 16 s for the BlockAckDelay 0 of our set-up, plus the uplink's way to the
bridge), not after a fixed long window: a collar whose answer comes later is asked again.
The next round multicasts parity up to the largest counter + needed_i, then asks again; a round in
which every collar says it has the file closes the multicast. A collar that still misses fragments after MAX_REPAIR_ROUNDS
is a straggler: it gets its needed_i as unicast parity fragments within fair use.

One definition for the bridge's worker (lora_bridge/domain/fuota_delivery.py) and the twin
(simulator/fuota.py), so the bench measures the decisions the bridge makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_REPAIR_ROUNDS = 3
REPAIR_OVERHEAD = 2  # fragments above a collar's rank deficit, for the odd parity row that adds nothing
MAX_LOSS = 0.9  # an observed loss above this is treated as this (the sum would not end)
STATUS_WINDOW_S = 300  # room a Class C window keeps per status round (window_timeout_log2)
BLOCK_ACK_DELAY = 0  # the set-up's Control field: TS004 collars answer a multicast request within 2**(0 + 4) s
UPLINK_LATENCY_S = 4  # from the collar's answer on air to the bridge (gateway, network server, webhook)
ANSWER_WAIT_S = (1 << (BLOCK_ACK_DELAY + 4)) + UPLINK_LATENCY_S  # the bridge decides the repair this long after
MAX_COUNTER = (1 << 14) - 1  # the fragment counter of a DataFragment is 14 bits
MAX_UNICAST_DAYS = 7  # a straggler is served by unicast (fair use: about 10 frames a day) at most this long
MAX_TIMEOUT_LOG2 = 15  # TS005 SessionTimeOut: 4 bits, the window lasts 2**TimeOut s (at most 9.1 h)


@dataclass(frozen=True)
class StatusAnswer:
    """A collar's FragSessionStatusAns: fragments still needed when it had heard up to counter."""

    device_id: str
    counter: int
    missing: int
    loss: float


def status_participants(rounds_done: int) -> int:
    """The Participants bit of a delivery's next FragSessionStatusReq: every collar answers the first
    (1: the bridge learns where each stands, and its loss); after that only collars still missing
    fragments answer (0). A collar that has its image says so once, or by its port-31 ack, not again
    in every round: a round asked again for one or two silent collars no longer costs the whole
    fleet an uplink."""
    return 1 if rounds_done == 0 else 0


def needed(missing: int, loss: float) -> int:
    """Return how many more fragments to send so a collar missing `missing` likely rebuilds the file."""
    if missing <= 0:
        return 0
    loss = min(max(loss, 0.0), MAX_LOSS)
    return math.ceil((missing + REPAIR_OVERHEAD) / (1.0 - loss))


def repair_target(answers: list[StatusAnswer], sent: int) -> int:
    """Return the fragment counter to multicast up to after these answers (sent when none needs more)."""
    target = sent
    for a in answers:
        target = max(target, a.counter + needed(a.missing, a.loss))
    return min(target, MAX_COUNTER)


def observed_loss(received: int, sent: int, prior: float) -> float:
    """Return a collar's downlink loss from what it reports having received of what was sent to it
    (the prior when nothing was sent yet)."""
    if sent <= 0:
        return prior
    return min(max(1.0 - received / sent, 0.0), MAX_LOSS)


def window_timeout_log2(nb_frag: int, spacing_s: float) -> int:
    """Return the TS005 TimeOut of the Class C window for nb_frag data fragments spaced spacing_s:
    room for as many parity fragments again (30 % loss), as much once more for the repair rounds,
    and every status window, in 4 bits. The bridge and the collars both close the window then."""
    need = 4 * nb_frag * spacing_s + (MAX_REPAIR_ROUNDS + 1) * STATUS_WINDOW_S
    k = 0
    while (1 << k) < need and k < MAX_TIMEOUT_LOG2:
        k += 1
    return k
