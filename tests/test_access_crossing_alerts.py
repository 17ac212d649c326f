"""Fence crossings as the roles with a delay see them: a crossing is dated when the animal crossed the
line (interpolated along the segment), but it is only known once the fixes after it confirmed it, and
those can be minutes old while the crossing is days old."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import pytest
import rules_builders as rb

from lora_bridge.access import FIELD_TECHNICIAN, RANGER, RESEARCHER, VISITOR, Viewer
from lora_bridge.errors import UnknownAlert

NOW = b.T0 + timedelta(hours=60)
EXIT = "geofence_exit"


@pytest.fixture
def bridge(sqlite_url):
    """Naserian (an ordinary animal) seen inside the park 60 h ago, then nothing until a fix 5 min
    ago 900 m past the park's fence (far enough to confirm the crossing at once): the crossing lies
    about 49 h back, where every delayed role may read alerts, but says where she is now."""
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.clock = lambda: NOW
        bridge.register_animal("collar-01", "Naserian", sex="female")
        rb.park_and_farm(bridge)
        rb.ingest_track(bridge, [(0, 309_800, 9_702_000), (60 * 60 - 5, 310_900, 9_702_000)])
        yield bridge


def _exits(bridge, who: Viewer) -> list:
    return [alert for alert in bridge.alerts(viewer=who) if alert.alert_type == EXIT]


@pytest.mark.parametrize("role", [RESEARCHER, FIELD_TECHNICIAN, VISITOR])
def test_a_late_role_learns_an_old_fence_crossing_only_once_the_fix_that_confirmed_it_is_late_enough(bridge, role):
    (ranger_sees,) = _exits(bridge, Viewer("amina", RANGER))
    assert ranger_sees.time < NOW - timedelta(hours=48)  # dated at the crossing, as rangers want it
    late = Viewer("late.reader", role)
    delay = late.policy.animals.delay

    assert _exits(bridge, late) == [], "the exit tells a late role that she is outside the park now"
    assert late.policy.animals.delay < timedelta(hours=48)
    assert [a.animal_id for a in bridge.open_alerts(viewer=late) if a.alert_type == EXIT] == []
    (animal,) = bridge.animals(viewer=late)
    assert animal.open_alerts == 0
    with pytest.raises(UnknownAlert):
        bridge.alert(ranger_sees.alert_id, viewer=late)

    bridge.clock = lambda: NOW + delay  # the confirming fix is now as old as the role's delay
    (seen,) = _exits(bridge, late)
    assert seen.time == ranger_sees.time  # still dated at the crossing


def test_a_late_role_does_not_learn_from_a_repeat_of_an_open_alert_that_the_animal_crossed_again_and_is_out_now(
    sqlite_url,
):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.clock = lambda: NOW
        bridge.register_animal("collar-01", "Naserian", sex="female")
        rb.park_and_farm(bridge)
        start = NOW - timedelta(hours=60)
        # The collar's own exit alert 59 h ago, left open; she is back inside 57 h ago; then nothing
        # until a fix 5 min ago 900 m past the fence: a crossing about 27 h back, repeating the open alert.
        rb.ingest_track(bridge, [(0, 309_000, 9_702_000)], start=start)
        rb.collar_fence_alert(bridge, EXIT, 60, 310_500, 9_702_000, f_cnt=5, start=start)
        rb.ingest_track(bridge, [(180, 309_000, 9_702_000)], first_f_cnt=6, start=start)
        visitor = Viewer("kiosk", VISITOR)
        (before,) = _exits(bridge, visitor)

        rb.ingest_track(bridge, [(60 * 60 - 5, 310_900, 9_702_000)], first_f_cnt=7, start=start)

        (ranger_sees,) = _exits(bridge, Viewer("amina", RANGER))
        assert ranger_sees.occurrences == 2 and ranger_sees.last_time < NOW - timedelta(hours=24)
        (seen,) = _exits(bridge, visitor)
        assert (seen.occurrences, seen.last_time, seen.lat, seen.lon) == \
            (before.occurrences, before.last_time, before.lat, before.lon)
        assert [e.action for e in bridge.alert_events(seen.alert_id, viewer=visitor)] == ["raised"]

        bridge.clock = lambda: NOW + timedelta(hours=24)  # the confirming fix is now as old as the kiosk's delay
        (later,) = _exits(bridge, visitor)
        assert (later.occurrences, later.last_time) == (2, ranger_sees.last_time)
        assert "repeated" in [e.action for e in bridge.alert_events(seen.alert_id, viewer=visitor)]


def test_a_late_role_does_not_learn_from_the_collars_held_exit_alert_that_its_fix_of_now_is_back_inside(sqlite_url):
    now = b.T0 + timedelta(hours=10)
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.clock = lambda: now
        bridge.register_animal("collar-01", "Naserian", sex="female")
        rb.park_and_farm(bridge)
        start = now - timedelta(hours=8)
        # The collar's own exit alert 8 h ago from a fix 150 m outside; its next fix, 5 min ago, is back
        # inside: the bridge holds the alert (one fix past the line, then back) at priority 0.
        rb.ingest_track(bridge, [(0, 309_500, 9_702_000), (2, 309_700, 9_702_000)], start=start)
        rb.collar_fence_alert(bridge, EXIT, 4, 310_150, 9_702_000, f_cnt=3, start=start)
        researcher = Viewer("rose", RESEARCHER)
        (before,) = _exits(bridge, researcher)
        rb.ingest_track(bridge, [(8 * 60 - 5, 309_800, 9_702_000)], first_f_cnt=4, start=start)

        (ranger_sees,) = _exits(bridge, Viewer("amina", RANGER))
        assert (ranger_sees.priority, ranger_sees.evidence["track_check"]["verdict"]) == (0, "lone_fix")
        (seen,) = _exits(bridge, researcher)
        assert (seen.priority, seen.evidence) == (before.priority, before.evidence), \
            "held by a fix of 5 min ago back inside: she is in the park now"

        bridge.clock = lambda: now + timedelta(hours=6)  # the fix back is as old as the researcher's delay
        (later,) = _exits(bridge, researcher)
        assert (later.priority, later.evidence["track_check"]["verdict"]) == (0, "lone_fix")


def test_a_late_role_counts_the_bridges_crossing_of_a_visit_already_resolved_from_when_its_fixes_confirmed_it(
    sqlite_url,
):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.register_animal("collar-01", "Naserian", sex="female")
        rb.park_and_farm(bridge)
        # Into the farm at 08:31 between fixes of 08:30 and 08:32; the collar says so itself at 08:32 and
        # the ranger resolves it; the fix of 08:34, 400 m in, confirms the bridge's crossing of that visit.
        rb.ingest_track(bridge, [(0, 311_000, 9_702_000), (30, 311_700, 9_702_000), (32, 312_200, 9_702_000)])
        rb.collar_fence_alert(bridge, "geofence_farmland", 32, 312_200, 9_702_000, f_cnt=10)
        (alert,) = bridge.alerts(viewer=Viewer("amina", RANGER))
        bridge.resolve_alert(alert.alert_id, Viewer("amina", RANGER), "true")
        rb.ingest_track(bridge, [(34, 312_400, 9_702_000)], first_f_cnt=11)
        (ranger_sees,) = bridge.alerts(viewer=Viewer("amina", RANGER))
        assert ranger_sees.occurrences == 2

        researcher = Viewer("rose", RESEARCHER)
        bridge.clock = lambda: b.T0 + timedelta(hours=6, minutes=33)  # the cutoff: 08:33
        (seen,) = bridge.alerts(viewer=researcher)
        assert seen.occurrences == 1, "the crossing is known from the fix of 08:34, after the cutoff"
        assert [e.action for e in bridge.alert_events(seen.alert_id, viewer=researcher)].count("repeated") == 0

        bridge.clock = lambda: b.T0 + timedelta(hours=6, minutes=35)
        (later,) = bridge.alerts(viewer=researcher)
        assert later.occurrences == 2
