"""Downlinks: a collar alert is answered with a port-32 ack_alert that the outbox pushes to the network server.

These tests work the outbox by hand (`flush_downlinks`, no background worker) so each push is visible
at a known point; tests/test_bridge_outbox.py covers the worker."""

from __future__ import annotations

import bridge_builders as b
import pytest

from collar_firmware import codec
from lora_bridge.errors import InvalidCommand, UnknownDevice


@pytest.fixture
def bridge(store_url, network):
    with b.pushing_to(network, store_url) as bridge:
        yield bridge


def test_collar_alert_gets_ack_alert_downlink_pushed_to_the_things_stack(bridge, network):
    result = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=5), f_cnt=7))
    assert network.pushes == [], "the webhook request itself pushes nothing"

    assert bridge.flush_downlinks() == 1
    (push,) = network.pushes
    assert (push["network"], push["application_id"], push["device_id"], push["f_port"]) == (
        "tts", b.APPLICATION_ID, "collar-01", 32
    )
    assert push["payload"] == codec.encode("ack_alert", {"alert_type": "poaching_risk", "seq": 5})
    assert codec.decode(32, push["payload"]) == {
        "message": "ack_alert", "port": 32, "alert_type": "poaching_risk", "seq": 5
    }
    (downlink,) = bridge.downlinks()
    assert (downlink.state, downlink.alert_id, downlink.attempts) == ("sent", result.alert_ids[0], 1)
    actions = [e.action for e in bridge.alert_events(result.alert_ids[0], viewer=b.RANGER)]
    assert actions == ["raised", "ack_queued", "corroborated", "ack_sent"]


def test_collar_ack_of_the_downlink_marks_it_acknowledged(bridge, network):
    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=2), f_cnt=1)).alert_ids

    bridge.ingest_tts_uplink(b.tts_uplink(b.ack("ack_alert", "ok", time_s=b.T0_S + 60), f_cnt=2))

    (downlink,) = bridge.downlinks()
    assert downlink.state == "acknowledged"
    assert bridge.alert_events(alert_id, viewer=b.RANGER)[-1].action == "collar_confirmed_ack"


def test_chirpstack_collar_gets_its_ack_through_the_chirpstack_queue(bridge, network):
    bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.alert("tamper", seq=1), f_cnt=3))
    bridge.flush_downlinks()

    (push,) = network.pushes
    assert (push["network"], push["dev_eui"], push["f_port"]) == ("chirpstack", b.dev_eui_of("collar-01").lower(), 32)
    assert codec.decode(32, push["payload"])["alert_type"] == "tamper"


def test_refused_push_stays_queued_and_goes_out_when_the_network_is_back(bridge, network):
    network.refuse = True
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))
    assert bridge.flush_downlinks() == 0
    (waiting,) = bridge.downlinks()
    assert (waiting.state, waiting.attempts) == ("queued", 1)
    assert "503" in waiting.last_error

    network.refuse = False
    assert bridge.flush_downlinks() == 1

    (sent,) = bridge.downlinks()
    assert (sent.state, sent.attempts, len(network.pushes)) == ("sent", 2, 1)


def test_wrong_api_key_is_reported_on_the_downlink(store_url, network):
    with b.fresh_bridge(store_url, network_server_url=network.url, network_server_api_key="wrong",
                        outbox_worker=False) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=1), f_cnt=1))
        bridge.flush_downlinks()
        (downlink,) = bridge.downlinks()

    assert downlink.state == "queued" and "401" in downlink.last_error
    assert network.pushes == []


def test_without_a_network_server_ack_alert_waits_in_the_queue(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=4), f_cnt=1))
        bridge.flush_downlinks()
        (downlink,) = bridge.downlinks()

    assert (downlink.state, downlink.command, downlink.seq, downlink.f_port) == ("queued", "ack_alert", 4, 32)
    assert bytes.fromhex(downlink.payload_hex) == codec.encode("ack_alert", {"alert_type": "mortality", "seq": 4})


def test_ranger_can_ask_a_collar_for_tracking_mode(bridge, network):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))

    queued = bridge.queue_command("collar-01", "tracking", {"minutes": 120})
    bridge.flush_downlinks()

    assert queued.state == "queued"
    assert [d.state for d in bridge.downlinks()] == ["sent"]
    assert codec.decode(32, network.pushes[0]["payload"]) == {"message": "tracking", "port": 32, "minutes": 120}


def test_command_the_codec_cannot_send_is_refused(bridge, network):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))

    with pytest.raises(InvalidCommand):
        bridge.queue_command("collar-01", "status", {})
    with pytest.raises(InvalidCommand):
        bridge.queue_command("collar-01", "tracking", {"minutes": 10**6})
    with pytest.raises(UnknownDevice):
        bridge.queue_command("collar-99", "reboot")
    assert bridge.downlinks() == [] and network.pushes == []


def test_settings_change_goes_out_on_port_3(bridge, network):
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))

    bridge.queue_command("collar-01", "settings", {"gnss_interval_s": 1800})
    bridge.flush_downlinks()

    (push,) = network.pushes
    assert push["f_port"] == 3
    assert codec.decode(3, push["payload"])["gnss_interval_s"] == 1800


def test_collar_repeating_an_alert_gets_one_waiting_ack_not_one_per_repeat(store_url):
    with b.fresh_bridge(store_url, outbox_worker=False) as bridge:
        for f_cnt in (1, 2, 3):
            bridge.ingest_tts_uplink(
                b.tts_uplink(b.alert("immobility", seq=4, time_s=b.T0_S + 600 * f_cnt), f_cnt=f_cnt)
            )
        (downlink,) = bridge.downlinks()
        (alert,) = bridge.open_alerts(viewer=b.RANGER)

    assert (downlink.state, downlink.seq, alert.occurrences) == ("queued", 4, 3)


def test_a_network_server_outage_leaves_acks_queued_and_the_next_flush_sends_them(bridge, network):
    network.refuse = True
    for seq in range(3):  # three collars' alerts while the network server is down
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=seq), f_cnt=seq + 1,
                                              device_id=f"collar-0{seq + 1}"))
    assert bridge.flush_downlinks() == 0
    attempts = sorted(d.attempts for d in bridge.downlinks())
    assert attempts == [0, 0, 1], "the first refusal ends the flush: no hammering of a server that is down"

    network.refuse = False
    assert bridge.flush_downlinks() == 3

    assert {d.state for d in bridge.downlinks()} == {"sent"}
    assert len(network.pushes) == 3


def chirpstack_join_now(dev_eui: str) -> bytes:
    """ChirpStack v4's `join` event (integration.proto JoinEvent, tests/network_fixtures.py) of the collar
    dev_eui, dated now: after what the bridge pushed before it."""
    import json

    import network_fixtures as nf

    from lora_bridge.store.utc import utc_now

    join = nf.CHIRPSTACK["join"].copy()
    join["deviceInfo"]["devEui"] = dev_eui.lower()
    join["time"] = utc_now().isoformat()
    return json.dumps(join).encode()


def test_a_chirpstack_collar_that_rejoins_gets_again_the_ack_chirpstack_flushed_on_its_join(bridge, network):
    # The ack waits in ChirpStack's device queue (no txack yet: the collar has not opened a receive window);
    # the collar reboots and joins again. ChirpStack flushes the device's queue on activation (its device
    # profile's `flush_queue_on_activate`) and tells nobody: the ack would never come. Tembo pushes it again.
    bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.alert("mortality", seq=1), f_cnt=3))
    assert bridge.flush_downlinks() == 1
    joined = bridge.ingest_network_message("chirpstack", "join", chirpstack_join_now(b.dev_eui_of("collar-01")))
    (waiting,) = bridge.downlinks()
    assert (waiting.state, waiting.network_state) == ("queued", "invalidated")
    assert "flushed the collar's queue when it joined" in waiting.last_error
    assert list(joined.downlink_ids) == [waiting.downlink_id], "the outbox is not woken for it"

    assert bridge.flush_downlinks() == 1
    (sent,) = bridge.downlinks()
    assert [codec.decode(32, push["payload"])["alert_type"] for push in network.pushes] == ["mortality", "mortality"]
    assert (sent.state, sent.network_state, sent.last_error) == ("sent", "queued", None)


def test_a_chirpstack_collar_that_rejoins_after_its_ack_went_on_air_does_not_get_it_twice(bridge, network):
    import json

    import network_fixtures as nf

    bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.alert("mortality", seq=1), f_cnt=3))
    bridge.flush_downlinks()
    txack = nf.CHIRPSTACK["txack"].copy()  # ChirpStack sent queue item q-1 (the ack) to the collar
    txack["deviceInfo"]["devEui"], txack["queueItemId"] = b.dev_eui_of("collar-01").lower(), "q-1"
    bridge.ingest_network_message("chirpstack", "txack", json.dumps(txack).encode())
    bridge.ingest_network_message("chirpstack", "join", chirpstack_join_now(b.dev_eui_of("collar-01")))

    assert bridge.flush_downlinks() == 0
    (sent,) = bridge.downlinks()
    assert (sent.state, sent.network_state, len(network.pushes)) == ("sent", "sent", 1)


def collar_reports_status(bridge, *f_cnts: int, network: str = "tts") -> None:
    """The collar sends a status uplink with each frame counter, ten minutes apart, through The Things
    Stack or ChirpStack: the uplinks after which an unheard downlink counts as unconfirmed."""
    for f_cnt in f_cnts:
        status = b.status(time_s=b.T0_S + 600 * f_cnt)
        if network == "chirpstack":
            bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(status, f_cnt=f_cnt))
        else:
            bridge.ingest_tts_uplink(b.tts_uplink(status, f_cnt=f_cnt))


def reboot_goes_unconfirmed(bridge, network: str = "tts") -> None:
    """A technician's reboot of collar-01 is pushed after its first uplink, and the collar sends three
    more with no port-31 ack and no report from the network: the reboot then reads unconfirmed."""
    if network == "chirpstack":
        bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.status(), f_cnt=1))
    else:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
    bridge.queue_command("collar-01", "reboot", {})
    bridge.flush_downlinks()
    collar_reports_status(bridge, 2, 3, 4, network=network)
    bridge.flush_downlinks()


def test_a_rangers_ack_the_network_never_reports_on_is_shown_unconfirmed_and_goes_again_until_the_collar_confirms(
    bridge, network
):
    # The Things Stack's webhook here has no downlink event messages enabled (they are optional: docs,
    # integrations/other-integrations/pubsub/message-types): the ack of the mortality alert is pushed and
    # nothing is ever said of it. The collar is class A: each of its uplinks opens the receive windows the
    # ack goes in, and it answers a downlink on port 31 in a later one. Three uplinks and no answer: the
    # ack is not shown delivered any more but unconfirmed, with why, and it goes again; the collar's
    # answer to it settles both.
    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1)).alert_ids
    assert bridge.flush_downlinks() == 1
    collar_reports_status(bridge, 2, 3)
    assert bridge.flush_downlinks() == 0
    assert [d.state for d in bridge.downlinks()] == ["sent"], "two uplinks: it may still be on its way"

    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 2400), f_cnt=4))
    assert bridge.flush_downlinks() == 1
    first, again = bridge.downlinks()
    assert (first.state, again.state, again.alert_id) == ("unconfirmed", "sent", alert_id)
    assert "no port-31 ack from the collar in 3 uplinks" in first.last_error
    assert f"pushed again as downlink {again.downlink_id}" in first.last_error
    assert [p["payload"] for p in network.pushes] == [codec.encode("ack_alert", {"alert_type": "mortality",
                                                                                  "seq": 3})] * 2
    unconfirmed = [e.detail for e in bridge.alert_events(alert_id, viewer=b.RANGER) if e.action == "ack_unconfirmed"]
    assert [(d["downlink_id"], d["resent_as"]) for d in unconfirmed] == [(first.downlink_id, again.downlink_id)]

    bridge.ingest_tts_uplink(b.tts_uplink(b.ack("ack_alert", "ok", time_s=b.T0_S + 3000), f_cnt=5))
    collar_reports_status(bridge, 6, 7, 8)
    assert bridge.flush_downlinks() == 0
    assert [d.state for d in bridge.downlinks()] == ["acknowledged", "acknowledged"]
    assert len(network.pushes) == 2


def test_a_reboot_the_network_never_reports_on_is_shown_unconfirmed_and_not_sent_again(bridge, network):
    # A reboot twice is not a reboot once: unconfirmed, the technician sees why, and the bridge does not
    # send it again by itself.
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))
    bridge.queue_command("collar-01", "reboot", {})
    assert bridge.flush_downlinks() == 1
    collar_reports_status(bridge, 2, 3, 4)

    assert bridge.flush_downlinks() == 0
    (reboot,) = bridge.downlinks()
    assert reboot.state == "unconfirmed"
    assert "not sent again (not a command that may go twice)" in reboot.last_error
    assert len(network.pushes) == 1


def test_a_collar_that_sends_nothing_after_its_ack_was_pushed_keeps_it_waiting_at_the_network(bridge, network):
    # No uplink, no receive window: a class A collar cannot have had it yet. It is not unconfirmed.
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1))
    bridge.flush_downlinks()
    bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600), f_cnt=1, device_id="collar-02"))

    assert bridge.flush_downlinks() == 0
    assert [d.state for d in bridge.downlinks()] == ["sent"]


def test_a_collar_that_hears_no_downlink_at_all_gets_its_ack_again_three_times_not_all_its_fair_use(bridge, network):
    # Its receiver is broken: every copy of the ack goes unconfirmed. After three copies the bridge stops
    # sending more on its own, and says so; the rest of the collar's fair-use day stays for other commands.
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1))
    bridge.flush_downlinks()
    f_cnt = 1
    for _round in range(5):
        for _ in range(3):
            f_cnt += 1
            bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), f_cnt=f_cnt))
        bridge.flush_downlinks()

    rows = bridge.downlinks()
    assert len(network.pushes) == 4 and [d.state for d in rows] == ["unconfirmed"] * 4
    assert "not sent again (unconfirmed 3 times already)" in rows[-1].last_error


def test_a_collar_heard_once_since_its_ack_was_pushed_has_it_unconfirmed_after_the_time_bound(store_url, network):
    # A collar that sends rarely: one uplink since the push and the time bound passed (set short here)
    with b.pushing_to(network, store_url, downlink_unconfirmed_after_s=0.001) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1))
        bridge.flush_downlinks()
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(time_s=b.T0_S + 600), f_cnt=2))
        bridge.flush_downlinks()
        rows = bridge.downlinks()

    assert [d.state for d in rows] == ["unconfirmed", "sent"]
    assert "in 1 uplink since it was pushed" in rows[0].last_error


def uplink_counts_of(bridge) -> list[str]:
    """The statements counting a collar's uplinks since a push (`downlinks.unconfirmed_due`) that the
    bridge's store runs from now on, on its read and write engines (the list fills as they run)."""
    from sqlalchemy import event

    said: list[str] = []

    def keep(_conn, _cursor, statement: str, *_args) -> None:
        if "count(raw_uplinks.id)" in statement:
            said.append(statement)

    for engine in {id(e): e for e in (bridge.db.read_engine, bridge.db.write_engine)}.values():
        event.listen(engine, "before_cursor_execute", keep)
    return said


def test_an_outbox_pass_counts_each_waiting_ack_s_uplinks_once_not_again_to_mark_it(bridge, network):
    # The outbox reads which pushed downlinks are due to go unconfirmed without the write lock (a pass
    # with none due takes none), then marks them under it: the uplinks of each were counted in both.
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1))
    bridge.queue_command("collar-01", "tracking", {"minutes": 60})
    assert bridge.flush_downlinks() == 2
    collar_reports_status(bridge, 2, 3, 4)

    counts = uplink_counts_of(bridge)
    assert bridge.flush_downlinks() == 1
    assert [d.state for d in bridge.downlinks()] == ["unconfirmed", "unconfirmed", "sent"]
    assert len(counts) == 1, "the two pushed downlinks' uplinks counted in one statement, not again to mark them"


def test_a_collar_ack_that_arrives_while_the_outbox_reads_what_is_due_keeps_its_downlink_acknowledged(
    bridge, network, monkeypatch
):
    # The collar's port-31 ack of the alert's ack is stored just after the outbox read it as due to go
    # unconfirmed, before the outbox marks it: it is acknowledged, no copy goes, and the alert's history
    # does not say unconfirmed.
    from lora_bridge.domain import downlinks

    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1)).alert_ids
    bridge.flush_downlinks()
    collar_reports_status(bridge, 2, 3, 4)
    read, arrived = downlinks.unconfirmed_due, []

    def read_then_the_ack_arrives(session, **when):
        due = read(session, **when)
        if not arrived:  # once, after the first read
            arrived.append(bridge.ingest_tts_uplink(b.tts_uplink(b.ack("ack_alert", "ok", time_s=b.T0_S + 3000), f_cnt=5)))
        return due

    monkeypatch.setattr(downlinks, "unconfirmed_due", read_then_the_ack_arrives)
    assert bridge.flush_downlinks() == 0

    (ack,) = bridge.downlinks()
    assert ack.state == "acknowledged" and len(network.pushes) == 1
    actions = [e.action for e in bridge.alert_events(alert_id, viewer=b.RANGER)]
    assert "ack_unconfirmed" not in actions and actions[-1] == "collar_confirmed_ack"


def tts_report(kind: str, pushed: dict) -> bytes:
    """The Things Stack's `kind` message (downlink_ack, downlink_nack; Data Formats, tests/network_fixtures.py)
    of the downlink the bridge pushed: its port, bytes and correlation ids as the network echoes them."""
    import base64
    import json

    import network_fixtures as nf

    report = nf.TTS[kind].copy()
    report["end_device_ids"].update(device_id="collar-01", application_ids={"application_id": b.APPLICATION_ID},
                                    dev_eui=b.dev_eui_of("collar-01"))
    report[kind].update(f_port=pushed["f_port"], frm_payload=base64.b64encode(pushed["payload"]).decode(),
                        correlation_ids=list(pushed["correlation_ids"]))
    return json.dumps(report).encode()


def test_a_reboot_shown_unconfirmed_reads_delivered_when_the_things_stack_reports_its_ack_late(bridge, network):
    # The downlink_ack of the reboot comes after the collar's third uplink (a webhook retried late): the
    # collar's radio confirmed it, so the technician sees it delivered, as a `sent` reboot with that
    # report, not unconfirmed with a reason that no longer holds; more uplinks do not undo it.
    reboot_goes_unconfirmed(bridge)
    assert [d.state for d in bridge.downlinks()] == ["unconfirmed"]

    bridge.ingest_network_message("tts", "downlink_ack", tts_report("downlink_ack", network.pushes[0]))
    collar_reports_status(bridge, 5, 6, 7)
    assert bridge.flush_downlinks() == 0
    (reboot,) = bridge.downlinks()
    assert (reboot.state, reboot.network_state, reboot.last_error) == ("sent", "acked", None)
    assert len(network.pushes) == 1


def test_an_unconfirmed_ack_chirpstack_reports_acknowledged_late_reads_delivered_and_a_late_nack_keeps_it_unconfirmed(
    bridge, network
):
    # ChirpStack's `ack` event says whether the collar acknowledged a confirmed queue item. The first
    # ack of the alert went unconfirmed and went again; ChirpStack then reports the first acknowledged
    # (delivered: `sent` with network state acked) and the copy not acknowledged in time (a nack: it
    # stays as it was, and ChirpStack's discard puts it back in Tembo's queue as for any sent row).
    dev_eui = b.dev_eui_of("collar-01")
    bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.alert("mortality", seq=1), f_cnt=1))
    bridge.flush_downlinks()
    collar_reports_status(bridge, 2, 3, 4, network="chirpstack")
    assert bridge.flush_downlinks() == 1
    first, again = bridge.downlinks()
    assert (first.state, again.state) == ("unconfirmed", "sent")

    bridge.ingest_network_message("chirpstack", "ack", b.chirpstack_ack(dev_eui, "q-1", acknowledged=True))
    bridge.ingest_network_message("chirpstack", "ack", b.chirpstack_ack(dev_eui, "q-2", acknowledged=False))
    first, again = bridge.downlinks()
    assert (first.state, first.network_state, first.last_error) == ("sent", "acked", None)
    assert (again.state, again.network_state) == ("queued", "nacked")


def test_a_late_nack_of_an_unconfirmed_reboot_leaves_it_unconfirmed_and_tells_the_technician_the_network_resends_it(
    bridge, network
):
    # The Things Stack's downlink_nack: the reboot went on air and the collar's radio did not acknowledge
    # it; TTS puts it back in the collar's queue and sends it again by itself. The technician reads that,
    # not "the network server said nothing" beside a nacked network state; its later ack reads delivered.
    reboot_goes_unconfirmed(bridge)

    bridge.ingest_network_message("tts", "downlink_nack", tts_report("downlink_nack", network.pushes[0]))
    (reboot,) = bridge.downlinks()
    assert (reboot.state, reboot.network_state) == ("unconfirmed", "nacked")
    assert "said nothing" not in reboot.last_error
    assert "reported at " in reboot.last_error
    assert "did not acknowledge it (downlink_nack): it went on air, and The Things Stack sends it again by itself" \
        in reboot.last_error
    assert reboot.last_error.startswith("unconfirmed: no port-31 ack from the collar in 3 uplinks")
    assert reboot.last_error.endswith("not sent again (not a command that may go twice)")

    bridge.ingest_network_message("tts", "downlink_nack", tts_report("downlink_nack", network.pushes[0]))
    assert bridge.downlinks()[0].last_error.count("did not acknowledge") == 1, "a second nack says it once"
    bridge.ingest_network_message("tts", "downlink_ack", tts_report("downlink_ack", network.pushes[0]))
    (reboot,) = bridge.downlinks()
    assert (reboot.state, reboot.network_state, reboot.last_error) == ("sent", "acked", None)
    assert len(network.pushes) == 1


def test_the_things_stacks_resend_of_an_unconfirmed_reboot_it_nacked_spends_the_collars_fair_use_day(store_url, network):
    # After its late downlink_nack The Things Stack sends the unconfirmed reboot again by itself and says
    # so (downlink_sent): that went on air too. With two downlinks a day, a settings change then waits.
    with b.pushing_to(network, store_url, downlinks_per_device_per_day=2) as bridge:
        reboot_goes_unconfirmed(bridge)
        for kind in ("downlink_nack", "downlink_sent"):
            bridge.ingest_network_message("tts", kind, tts_report(kind, network.pushes[0]))
        bridge.queue_command("collar-01", "settings", {"gnss_interval_s": 900})
        assert bridge.flush_downlinks() == 0
        states = [(d.command, d.state, d.network_state) for d in bridge.downlinks()]

    assert states == [("reboot", "unconfirmed", "sent"), ("settings", "queued", None)]
    assert len(network.pushes) == 1


def test_an_unconfirmed_reboot_chirpstack_reports_not_acknowledged_says_it_was_dropped_and_a_rejoin_does_not_resend_it(
    bridge, network
):
    # ChirpStack's `ack` event with `acknowledged` false (proto3 JSON leaves it out): the confirmed queue
    # item went on air and timed out without the collar's acknowledgement, and ChirpStack dropped it. The
    # reboot stays unconfirmed for the technician (the collar may have it, its answer lost; a reboot
    # twice is not a reboot once), and its reason says what ChirpStack reported. ChirpStack holds it no
    # more, so the collar's next join flushes nothing of it: it is not pushed again by the join either.
    unconfirmed_chirpstack_reboot(bridge)
    dev_eui = b.dev_eui_of("collar-01")

    bridge.ingest_network_message("chirpstack", "ack", b.chirpstack_ack(dev_eui, "q-1", acknowledged=False))
    (reboot,) = bridge.downlinks()
    assert (reboot.state, reboot.network_state) == ("unconfirmed", "nacked")
    assert "said nothing" not in reboot.last_error
    assert "did not acknowledge it in time (ChirpStack ack, acknowledged false): it went on air and ChirpStack " \
        "dropped it from the queue" in reboot.last_error
    assert reboot.last_error.endswith("not sent again (not a command that may go twice)")

    joined = bridge.ingest_network_message("chirpstack", "join", chirpstack_join_now(dev_eui))
    assert bridge.flush_downlinks() == 0
    (after,) = bridge.downlinks()
    assert (after.state, after.network_state, after.last_error) == ("unconfirmed", "nacked", reboot.last_error)
    assert list(joined.downlink_ids) == [] and len(network.pushes) == 1


def test_an_unconfirmed_ack_chirpstack_reports_not_acknowledged_keeps_its_copy_going_and_says_why(bridge, network):
    # The first ack of the alert went unconfirmed and its copy was pushed; ChirpStack then reports the
    # first not acknowledged. The copy is the one that goes: no third push, and the first says both.
    dev_eui = b.dev_eui_of("collar-01")
    bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.alert("mortality", seq=1), f_cnt=1))
    bridge.flush_downlinks()
    collar_reports_status(bridge, 2, 3, 4, network="chirpstack")
    assert bridge.flush_downlinks() == 1

    bridge.ingest_network_message("chirpstack", "ack", b.chirpstack_ack(dev_eui, "q-1", acknowledged=False))
    assert bridge.flush_downlinks() == 0
    first, again = bridge.downlinks()
    assert (first.state, first.network_state, again.state) == ("unconfirmed", "nacked", "sent")
    assert "ChirpStack dropped it from the queue" in first.last_error
    assert first.last_error.endswith(f"pushed again as downlink {again.downlink_id}")
    assert len(network.pushes) == 2


def test_an_alerts_ack_reported_acked_late_is_not_pushed_again_by_its_waiting_copy(bridge, network):
    # The ack went unconfirmed while the network server refused pushes, so its copy waits in Tembo's
    # queue; then The Things Stack's late downlink_ack says the collar got the first. The copy is
    # superseded by it and does not spend another downlink of the collar's fair-use day.
    bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1))
    bridge.flush_downlinks()
    collar_reports_status(bridge, 2, 3, 4)
    network.refuse = True
    bridge.flush_downlinks()
    first, copy = bridge.downlinks()
    assert (first.state, copy.state) == ("unconfirmed", "queued")

    bridge.ingest_network_message("tts", "downlink_ack", tts_report("downlink_ack", network.pushes[0]))
    network.refuse = False
    assert bridge.flush_downlinks() == 0
    first, copy = bridge.downlinks()
    assert (first.state, first.network_state) == ("sent", "acked")
    assert (copy.state, copy.superseded_by) == ("superseded", first.downlink_id)
    assert len(network.pushes) == 1


def ack_steps(bridge, alert_id: int) -> list[tuple[str, str | None]]:
    """The steps of the alert's history about the collar's ack after it was sent, with their reasons."""
    return [(e.action, e.detail.get("reason")) for e in bridge.alert_events(alert_id, viewer=b.RANGER)
            if e.action in ("ack_unconfirmed", "ack_delivered", "ack_requeued")]


def test_an_alerts_history_that_said_its_ack_unconfirmed_says_it_was_delivered_when_the_network_reports_it_late(
    bridge, network
):
    # The ranger read "unconfirmed" in the alert's history; The Things Stack's downlink_ack then comes late:
    # the collar got it. The history says so too, in her words, not only the downlink's state.
    (alert_id,) = bridge.ingest_tts_uplink(b.tts_uplink(b.alert("mortality", seq=3), f_cnt=1)).alert_ids
    bridge.flush_downlinks()
    collar_reports_status(bridge, 2, 3, 4)
    bridge.flush_downlinks()

    bridge.ingest_network_message("tts", "downlink_ack", tts_report("downlink_ack", network.pushes[0]))
    steps = ack_steps(bridge, alert_id)
    assert [action for action, _ in steps] == ["ack_unconfirmed", "ack_delivered"]
    assert steps[1][1] == "The network now reports that the collar did hear that its alert arrived."
    (delivered,) = [e.detail for e in bridge.alert_events(alert_id, viewer=b.RANGER) if e.action == "ack_delivered"]
    assert (delivered["downlink_id"], delivered["network_state"]) == (bridge.downlinks()[0].downlink_id, "acked")


def test_an_alerts_ack_unconfirmed_four_times_goes_once_more_when_the_collar_rejoins_and_its_history_says_so(
    bridge, network
):
    # The collar heard none of four acks (the bridge stopped sending copies); then it joins its ChirpStack
    # network again, which flushes its queue on the join. The ack goes once in the new session, not once
    # for each unconfirmed copy, and the alert's history, which said "unconfirmed", says it goes again.
    dev_eui = b.dev_eui_of("collar-01")
    (alert_id,) = bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.alert("mortality", seq=3), f_cnt=1)).alert_ids
    bridge.flush_downlinks()
    for first in (2, 5, 8, 11):
        collar_reports_status(bridge, first, first + 1, first + 2, network="chirpstack")
        bridge.flush_downlinks()
    assert [d.state for d in bridge.downlinks()] == ["unconfirmed"] * 4 and len(network.pushes) == 4

    joined = bridge.ingest_network_message("chirpstack", "join", chirpstack_join_now(dev_eui))
    rows = bridge.downlinks()
    (again,) = [d for d in rows if d.state == "queued"]
    assert list(joined.downlink_ids) == [again.downlink_id]
    assert all(f"its copy, downlink {again.downlink_id}, goes instead" in d.last_error for d in rows if d != again)
    assert bridge.flush_downlinks() == 1 and len(network.pushes) == 5

    steps = ack_steps(bridge, alert_id)
    assert [action for action, _ in steps] == ["ack_unconfirmed"] * 4 + ["ack_requeued"]
    assert steps[-1][1] == ("The collar reconnected to the network, which dropped the message telling it its "
                            "alert arrived; Tembo is sending it again.")
    assert "it was sent 4 times, and the collar may not be hearing the network" in steps[-2][1]


def unconfirmed_chirpstack_reboot(bridge) -> None:
    """A ChirpStack collar's reboot pushed and left unconfirmed: three uplinks since, no txack, no answer."""
    reboot_goes_unconfirmed(bridge, network="chirpstack")
    assert [d.state for d in bridge.downlinks()] == ["unconfirmed"]


def test_an_unconfirmed_reboot_chirpstack_flushed_on_the_collars_join_goes_again_in_the_new_session(bridge, network):
    # ChirpStack never sent the reboot (no txack): it waited in the device queue, and the collar's
    # silence was the network's. The join flushes that queue; like a `sent` row it goes back to Tembo's
    # queue and is pushed again, and the technician reads why.
    unconfirmed_chirpstack_reboot(bridge)
    joined = bridge.ingest_network_message("chirpstack", "join", chirpstack_join_now(b.dev_eui_of("collar-01")))
    (reboot,) = bridge.downlinks()
    assert (reboot.state, reboot.network_state) == ("queued", "invalidated")
    assert "flushed the collar's queue when it joined" in reboot.last_error
    assert "it was unconfirmed, and goes again in the new session" in reboot.last_error
    assert list(joined.downlink_ids) == [reboot.downlink_id]

    assert bridge.flush_downlinks() == 1
    assert [codec.decode(32, push["payload"])["message"] for push in network.pushes] == ["reboot", "reboot"]
    assert bridge.downlinks()[0].state == "sent"


def test_an_unconfirmed_ack_flushed_on_the_collars_join_goes_again_once_by_its_copy(bridge, network):
    # The ack went unconfirmed and its copy was pushed; ChirpStack flushes both on the join. The copy
    # goes again in the new session, the first one not beside it: one ack, not two.
    bridge.ingest_chirpstack_uplink(b.chirpstack_uplink(b.alert("mortality", seq=1), f_cnt=1))
    bridge.flush_downlinks()
    collar_reports_status(bridge, 2, 3, 4, network="chirpstack")
    bridge.flush_downlinks()
    bridge.ingest_network_message("chirpstack", "join", chirpstack_join_now(b.dev_eui_of("collar-01")))

    first, copy = bridge.downlinks()
    assert (first.state, first.network_state, copy.state) == ("unconfirmed", "invalidated", "queued")
    assert f"its copy, downlink {copy.downlink_id}, goes instead" in first.last_error
    assert bridge.flush_downlinks() == 1
    assert len(network.pushes) == 3


def test_an_unconfirmed_reboot_that_went_on_air_is_not_sent_again_when_the_things_stack_invalidates_its_queue(
    bridge, network
):
    # The Things Stack nacked the reboot late (it went on air; the collar may have it, its answer lost) and
    # then dropped the collar's queue at a new session (downlink_queue_invalidated, naming it). A reboot
    # twice is not a reboot once: it is not sent again by itself, and the technician reads why.
    import json

    reboot_goes_unconfirmed(bridge)
    bridge.ingest_network_message("tts", "downlink_nack", tts_report("downlink_nack", network.pushes[0]))
    invalidated = json.loads(tts_report("downlink_sent", network.pushes[0]))
    invalidated["downlink_queue_invalidated"] = {"downlinks": [invalidated.pop("downlink_sent")], "last_f_cnt_down": 1}
    bridge.ingest_network_message("tts", "downlink_queue_invalidated", json.dumps(invalidated).encode())

    assert bridge.flush_downlinks() == 0
    (reboot,) = bridge.downlinks()
    assert (reboot.state, reboot.network_state) == ("unconfirmed", "invalidated")
    assert "invalidated the collar's downlink queue" in reboot.last_error
    assert "not sent again (it went on air once" in reboot.last_error
    assert len(network.pushes) == 1


def test_an_unconfirmed_reboot_the_things_stack_never_sent_goes_again_when_it_invalidates_its_queue(bridge, network):
    import json

    reboot_goes_unconfirmed(bridge)
    invalidated = json.loads(tts_report("downlink_sent", network.pushes[0]))
    invalidated["downlink_queue_invalidated"] = {"downlinks": [invalidated.pop("downlink_sent")], "last_f_cnt_down": 1}
    bridge.ingest_network_message("tts", "downlink_queue_invalidated", json.dumps(invalidated).encode())

    assert bridge.flush_downlinks() == 1
    (reboot,) = bridge.downlinks()
    assert (reboot.state, len(network.pushes)) == ("sent", 2)
