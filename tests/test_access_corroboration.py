"""A collar's mortality or poaching alert as the roles with a delay see it: the bridge weighs it again
as the fixes and behaviour after it arrive ("moved 900 m after the alert: alive"), so a weighing made
after a role's cutoff tells it how the animal moved since."""

from __future__ import annotations

from datetime import timedelta

import bridge_builders as b
import rules_builders as rb

from lora_bridge.access import RANGER, RESEARCHER, Viewer
from lora_bridge.store.utc import utc_now


def test_a_researcher_does_not_learn_from_the_mortality_alerts_weighing_that_the_animal_walked_off_since(sqlite_url):
    # The bridge stamps its weighings with the wall clock: its own clock stands there too.
    now = utc_now().replace(microsecond=0)
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.clock = lambda: now
        bridge.register_animal("collar-01", "Naserian", sex="female")
        start = now - timedelta(hours=9)
        # Still for two hours, the collar's mortality alert 7 h ago; then fixes 6.5 h and 5.5 h ago, the
        # last 900 m away: after the researcher's 6 h cutoff.
        rb.ingest_track(bridge, [(minutes, 305_000, 9_702_000) for minutes in (0, 30, 60, 90, 120)], start=start)
        rb.collar_fence_alert(bridge, "mortality", 120, 305_000, 9_702_000, f_cnt=20, start=start)
        researcher = Viewer("rose", RESEARCHER)
        (before,) = bridge.alerts(viewer=researcher)
        rb.ingest_track(bridge, [(150, 305_100, 9_702_000), (210, 305_900, 9_702_000)], first_f_cnt=30, start=start)

        (ranger_sees,) = bridge.alerts(viewer=Viewer("amina", RANGER))
        weighing = ranger_sees.evidence["corroboration"]
        assert (ranger_sees.priority, weighing["held"]) == (0, True)
        assert "moved 900 m after the alert: alive" in [factor["reason"] for factor in weighing["factors"]]

        (seen,) = bridge.alerts(viewer=researcher)
        assert (seen.priority, seen.evidence) == (before.priority, before.evidence), \
            "weighed on a fix of 5.5 h ago: she walked 900 m since the alert"
        assert "corroborated" not in [step.action for step in bridge.alert_events(seen.alert_id, viewer=researcher)]

        bridge.clock = lambda: now + timedelta(hours=6, minutes=1)  # the weighings are as old as the delay
        (later,) = bridge.alerts(viewer=researcher)
        assert (later.priority, later.evidence["corroboration"]["held"]) == (0, True)
