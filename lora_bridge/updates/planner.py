"""How long an over-the-air update takes, and whether the law and the network allow it.

Multicast (TS005 Class C window) sends every fragment once to the whole group, on one channel
that all of them hear: the spreading factor is the slowest any collar of the group needs, and the
gateway's downlink sub-band (EU868 869.4-869.65 MHz, 10 % duty cycle) spaces fragments by
airtime / duty. The parity share comes from the loss observed per collar (the 90th percentile of
the group, so one collar in a ravine does not slow the whole herd, unless covering the worst
collar costs less than an hour of multicast, which beats a day of unicast): a collar needs about
M + 2..5 fragments of M (TS004). Collars still missing fragments after the window get unicast parity
fragments after their uplinks, within the network's fair use (10 downlinks per device per day).
A plan is refused when it cannot finish before its deadline; `Progress` records what was sent,
so an interrupted campaign resumes where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

from collar_firmware.scheduler import airtime_us
from collar_firmware.update_fec import MAX_FRAGMENTS

DOWNLINK_DUTY = 0.10  # EU868 869.4-869.65 MHz (RX2 / Class C), ETSI EN 300 220
FAIR_USE_DOWNLINKS_PER_DAY = 10  # The Things Network fair use per device
FRAGMENT_HEADER_BYTES = 3  # TS004 DataFragment: command id + index and session
MAX_PAYLOAD_BY_SF = {7: 222, 8: 222, 9: 115, 10: 51, 11: 51, 12: 51}  # EU868 DR5..DR0 (RP002)
OVERHEAD_FRAGMENTS = 4  # above M, what a TS004 decoder needs at most but rarely
UNICAST_DAY_WORTH_S = 3600  # multicast time worth spending to spare the worst collar a day of unicast
FLEET_CONFIDENCE = 0.9  # how often the planned round should serve every collar without a repair round
MIN_FRAG_SIZE = 64  # the smallest fragment weighed: below, LoRa's preamble and headers outweigh any padding saved


class PlanRefused(ValueError):
    """A plan that would break the duty cycle, the fair use or its deadline; the message says which."""


@dataclass(frozen=True)
class CollarLink:
    """What the bridge knows of one collar's link: its spreading factor and the downlink loss seen."""

    device_id: str
    sf: int
    loss: float


@dataclass(frozen=True)
class Plan:
    """A multicast session plus unicast for stragglers; times in seconds."""

    image_bytes: int
    frag_size: int
    nb_frag: int
    parity: int
    sf: int
    fragment_airtime_s: float
    spacing_s: float
    multicast_s: float
    minimum_s: float
    design_loss: float

    @property
    def fragments(self) -> int:
        return self.nb_frag + self.parity

    @property
    def ratio_to_minimum(self) -> float:
        return self.multicast_s / self.minimum_s


def fragment_airtime_s(frag_size: int, sf: int, bw_khz: int = 125) -> float:
    """Return the time on air of one DataFragment downlink."""
    return airtime_us(frag_size + FRAGMENT_HEADER_BYTES, sf, bw_khz) / 1e6


def _per_collar_z(confidence: float, collars: int) -> float:
    """The normal quantile each collar's share must meet so that all `collars` are served with
    `confidence` (independent losses: confidence ** (1 / collars) each), and never below 99 %."""
    per_collar = max(0.99, confidence ** (1.0 / max(1, collars)))
    return NormalDist().inv_cdf(min(per_collar, 0.999999))


def _needed_total(m: int, loss: float, z: float) -> int:
    """Smallest N with at least m + overhead of N fragments heard at z standard deviations (normal approx.)."""
    need = m + min(OVERHEAD_FRAGMENTS, 2 + m // 50)  # TS004 rows: about 1.2-1.8 above M on average
    if loss <= 0:
        return need
    n = need
    while True:
        mean = n * (1 - loss)
        sd = math.sqrt(n * loss * (1 - loss))
        if mean - z * sd >= need:
            return n
        n += 1


def make_plan(image_bytes: int, collars: list[CollarLink], confidence: float = FLEET_CONFIDENCE,
              deadline_s: float = 7 * 86400, duty: float = DOWNLINK_DUTY, frag_size: int | None = None) -> Plan:
    """Plan the multicast session for collars; PlanRefused when it cannot be done lawfully in time.
    The planned round is sized so that every collar of the group rebuilds the file in it with
    `confidence` (a repair round costs a status round trip; fragments the collars no longer need
    cost airtime, never delivery time). The fragment size is the one whose planned round ends
    soonest (frag_size, when given, fixes it): the largest the data rate carries unless smaller ones
    leave less padding in the last fragment or fall on a shorter LoRa frame (the model's 3,844 B go
    in 37 fragments of 104 B, 4 B padding, not 35 of 112 with 76)."""
    if not collars:
        raise PlanRefused("no collar to update")
    sf = max(c.sf for c in collars)
    losses = sorted(c.loss for c in collars)
    z = _per_collar_z(confidence, len(collars))
    largest = min(MAX_PAYLOAD_BY_SF[sf] - FRAGMENT_HEADER_BYTES, 200)
    sizes = [frag_size] if frag_size is not None else [
        size for size in range(largest, min(MIN_FRAG_SIZE, largest) - 1, -1)
        if size == largest or math.ceil(image_bytes / size) <= MAX_FRAGMENTS]
    if not all(1 <= size <= largest for size in sizes):
        raise PlanRefused(f"fragments of {frag_size} B do not fit a SF{sf} downlink (at most {largest} B)")
    plans = [_round(image_bytes, size, sf, losses, z, duty) for size in sizes]
    plan = min(plans, key=lambda p: p.multicast_s)  # the first (largest fragments) of equally quick rounds
    if plan.multicast_s > deadline_s:
        raise PlanRefused(f"{plan.fragments} fragments at SF{sf} need {plan.multicast_s / 3600:.1f} h of a "
                          f"{duty:.0%} duty cycle, beyond the deadline of {deadline_s / 3600:.1f} h")
    return plan


def _round(image_bytes: int, frag_size: int, sf: int, losses: list[float], z: float, duty: float) -> Plan:
    """The planned round with fragments of frag_size bytes: enough parity for the design loss."""
    m = math.ceil(image_bytes / frag_size)
    design = losses[min(len(losses) - 1, int(0.9 * len(losses)))]
    air = fragment_airtime_s(frag_size, sf)
    spacing = air / duty
    n = _needed_total(m, design, z)
    worst = _needed_total(m, losses[-1], z)
    if (worst - n) * spacing < UNICAST_DAY_WORTH_S:
        design, n = losses[-1], worst  # cheaper to cover the worst collar than to leave it a day of unicast
    return Plan(image_bytes, frag_size, m, n - m, sf, air, spacing, n * spacing, m * spacing, design)


def unicast_days(missing: int, loss: float, per_day: int = FAIR_USE_DOWNLINKS_PER_DAY) -> float:
    """Days of fair use a straggler needs to receive `missing` more fragments at its loss."""
    if missing <= 0:
        return 0.0
    frames = math.ceil(missing / max(1e-9, 1 - loss))
    return frames / per_day


@dataclass
class Progress:
    """What a campaign's session has sent: resume from next_fragment after an interruption."""

    plan: Plan
    next_fragment: int = 1
    sent: int = 0
    airtime_s: float = 0.0
    elapsed_s: float = 0.0
    unicast: dict[str, int] = field(default_factory=dict)

    def take(self, count: int) -> range:
        """Return the fragment numbers of the next count sends (duty cycle accounted)."""
        first = self.next_fragment
        last = min(self.plan.fragments + 1, first + count)
        done = last - first
        self.next_fragment = last
        self.sent += done
        self.airtime_s += done * self.plan.fragment_airtime_s
        self.elapsed_s += done * self.plan.spacing_s
        return range(first, last)

    def finished(self) -> bool:
        return self.next_fragment > self.plan.fragments

    def unicast_sent(self, device_id: str, frames: int) -> None:
        """Count unicast frames sent to one collar (fair use is checked per day by the caller)."""
        self.unicast[device_id] = self.unicast.get(device_id, 0) + frames
        self.sent += frames
        self.airtime_s += frames * self.plan.fragment_airtime_s
