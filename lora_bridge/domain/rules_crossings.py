"""Which fence crossings are believed: a crossing is raised once a fix confirms it.

A track segment that crosses a fence's line (`geofences.FenceIndex.crossings`) is only a candidate: one
bad GNSS fix past the line draws two segments that cross it, out and back. As trackers do (several
positions outside before an exit alert), a crossing is believed when the fixes after it stay on the far
side: `FenceProfile.confirm_fixes` plausible fixes in a row there (the first fix past the line and the
next), or one fix at least `confirm_distance_m` past the line, further than a bad fix goes.

Each candidate gets a verdict:
- `confirmed`: raised; the evidence names the fixes that confirmed it and how far past the line each was;
- `pending`: the track ends on the far side before enough fixes arrived: judged again with the next fix;
- `lone_fix`: fewer than confirm_fixes fixes past the line, each less than confirm_distance_m past it,
  then a fix back: a bad fix or a step over the line, not raised (logged with its evidence); the
  crossing back from it is no crossing either (`return`);
- `no_fix_past`: the segment crosses the line and comes back between two fixes (a corner cut): no fix
  was ever on the far side.

All of it on plain (time, lat, lon) fixes and a FenceIndex, so a test can check each verdict by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lora_bridge.domain.geofences import ENTER, Crossing, FenceIndex
from lora_bridge.domain.rules_movement import Fix
from lora_bridge.domain.rules_profiles import FenceProfile
from lora_bridge.views import time_of

CONFIRMED = "confirmed"
PENDING = "pending"
LONE_FIX = "lone_fix"
RETURN = "return"
NO_FIX_PAST = "no_fix_past"

# Where a server crossing alert keeps its verdict's evidence, where a collar's own fence alert keeps the
# verdict on the crossing before it (`rules_engine`), and where a verdict names the fixes it rests on.
CONFIRMATION_KEY = "confirmation"
TRACK_CHECK_KEY = "track_check"
FIXES_PAST_LINE_KEY = "fixes_past_line"
BACK_AT_KEY = "back_at"


@dataclass(frozen=True)
class JudgedCrossing:
    """A candidate crossing with its verdict and the evidence behind it."""

    crossing: Crossing
    verdict: str
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)


class CrossingJudge:
    """Judges the crossings of chosen segments of one track (kept fixes in time order), remembering
    each segment's candidate crossings and each fix's place against each fence for one evaluation."""

    def __init__(self, fences: FenceIndex, profile: FenceProfile) -> None:
        self.fences = fences
        self.profile = profile
        self._crossings: dict[tuple[Fix, Fix], list[Crossing]] = {}
        self._places: dict[tuple[int, Fix], tuple[bool, float]] = {}

    def candidates(self, start: Fix, end: Fix) -> list[Crossing]:
        """The segment's crossings of any fence (remembered)."""
        key = (start, end)
        if key not in self._crossings:
            self._crossings[key] = self.fences.crossings(start, end)
        return self._crossings[key]

    def place(self, fence_id: int, fix: Fix) -> tuple[bool, float]:
        """(inside, metres to the fence's nearest line) of a fix (remembered)."""
        key = (fence_id, fix)
        if key not in self._places:
            self._places[key] = self.fences.place(fence_id, fix[1], fix[2])
        return self._places[key]

    def judge(self, track: list[Fix], segment: int) -> list[JudgedCrossing]:
        """The verdict on each fence crossing of track[segment] -> track[segment + 1]: per fence, the
        segment's net crossing (the last one, when the two fixes are on different sides) or, when both
        fixes are on the same side, every crossing as a corner cut."""
        start, end = track[segment], track[segment + 1]
        found = self.candidates(start, end)
        out: list[JudgedCrossing] = []
        for fence_id in dict.fromkeys(c.fence_id for c in found):
            mine = [c for c in found if c.fence_id == fence_id]
            side_before = self.place(fence_id, start)[0]
            side_after = self.place(fence_id, end)[0]
            if side_before == side_after:
                out.extend(JudgedCrossing(c, NO_FIX_PAST, {"reason": "out and back between two fixes"}) for c in mine)
                continue
            out.append(self._judge_net(track, segment, mine[-1]))
        return out

    def _judge_net(self, track: list[Fix], segment: int, crossing: Crossing) -> JudgedCrossing:
        fence_id, far = crossing.fence_id, crossing.direction == ENTER
        need, far_enough = self.profile.confirm_fixes, self.profile.confirm_distance_m
        # Was the animal really on this side before? A short run of fixes, none far past the line, that
        # itself began with a crossing is an excursion never confirmed: this is its way back.
        run_back = []
        i = segment
        while i >= 0 and self.place(fence_id, track[i])[0] != far and len(run_back) < need:
            run_back.append(track[i])
            i -= 1
        if len(run_back) < need and i >= 0 and all(self.place(fence_id, f)[1] < far_enough for f in run_back):
            return JudgedCrossing(crossing, RETURN, {"reason": "back from fixes past the line never confirmed"})
        # The fixes after it: how many in a row on the far side, and how far past the line.
        past: list[dict[str, Any]] = []
        j = segment + 1
        while j < len(track) and self.place(fence_id, track[j])[0] == far and len(past) < need:
            metres = self.place(fence_id, track[j])[1]
            past.append({"time": track[j][0].isoformat(), "lat": track[j][1], "lon": track[j][2],
                         "metres_past_line": round(metres, 1)})
            if metres >= far_enough:
                return JudgedCrossing(crossing, CONFIRMED, self._evidence(
                    f"a fix {metres:.0f} m past the line (at least {far_enough:.0f} m: further than a bad fix goes)",
                    past))
            j += 1
        if len(past) >= need:
            return JudgedCrossing(crossing, CONFIRMED, self._evidence(
                f"{len(past)} fixes in a row past the line", past))
        if j >= len(track):
            return JudgedCrossing(crossing, PENDING, self._evidence("waiting for the next fix", past))
        back = track[j]
        evidence = self._evidence(
            f"{len(past)} fix(es) past the line, less than {far_enough:.0f} m past it, then a fix back", past)
        evidence[BACK_AT_KEY] = {"time": back[0].isoformat(), "lat": back[1], "lon": back[2]}
        return JudgedCrossing(crossing, LONE_FIX, evidence)

    def _evidence(self, decided: str, past: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "decided": decided,
            FIXES_PAST_LINE_KEY: past,
            "profile": self.profile.model_dump(),
        }


def neighbourhood(segments: list[tuple[Fix, Fix]], changed: set[tuple[Fix, Fix]], reach: int) -> set[tuple[Fix, Fix]]:
    """The segments within `reach` segments of a changed one (their verdicts may have changed too)."""
    out: set[tuple[Fix, Fix]] = set()
    for i, segment in enumerate(segments):
        if segment in changed:
            out.update(segments[max(0, i - reach): i + reach + 1])
    return out


def judged_on(judge: CrossingJudge, track: list[Fix], keys: set[tuple[Fix, Fix]]) -> list[JudgedCrossing]:
    """Every verdict on the crossings of the track's segments that are in keys, in time order."""
    out: list[JudgedCrossing] = []
    for i in range(len(track) - 1):
        if (track[i], track[i + 1]) in keys:
            out.extend(judge.judge(track, i))
    return out


def confirmed_at(evidence: Mapping[str, Any]) -> datetime | None:
    """When a server crossing alert (its evidence) became known: the time of the newest fix that
    confirmed it. The alert is dated at the crossing, interpolated between the fixes around it, so
    earlier, by as long as the collar went unheard: a crossing 49 h back confirmed by a fix of 5 min ago
    says where the animal is now. None for an alert without a confirmation (a collar's own alert)."""
    confirmation = evidence.get(CONFIRMATION_KEY) if isinstance(evidence, Mapping) else None
    return decided_at(confirmation) if isinstance(confirmation, Mapping) else None


def decided_at(verdict: Mapping[str, Any]) -> datetime | None:
    """The time of the newest fix a crossing's verdict (its evidence) rests on: the fixes past the
    line and the fix back (None when it names none)."""
    fixes = verdict.get(FIXES_PAST_LINE_KEY)
    entries = [*(fixes if isinstance(fixes, list) else []), verdict.get(BACK_AT_KEY)]
    known = [time for entry in entries if isinstance(entry, Mapping) and (time := time_of(entry.get("time")))]
    return max(known) if known else None
