"""Store-and-forward: the flash queue keeps what it accepted through power cuts, reboots and lost coverage."""

from __future__ import annotations

import pytest
from collar_helpers import START_S, CollarWorld
from hypothesis import given, settings
from hypothesis import strategies as st

from collar_firmware.config import QUEUE_SLOTS
from collar_firmware.queue import Queue
from collar_firmware.scheduler import PRIO_ALERT, PRIO_POSITIONS, PRIO_SUMMARY
from simulator.hal_sim import PowerCut, SimFlash

HOUR = 3600


def _payload(i: int) -> bytes:
    return bytes([i & 0xFF]) * (5 + i % 20)


def _contents(flash: SimFlash) -> list[bytes]:
    q = Queue(flash)
    q.load()
    out = []
    while (slot := q.next_ready(0)) >= 0:
        out.append(bytes(q.payload(slot)))
        q.remove(slot)
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(0, 60), st.integers(0, 80))
def test_power_cut_in_the_middle_of_a_queue_write_loses_nothing_acknowledged(n_before, cut_after, keep_bytes):
    flash = SimFlash()
    q = Queue(flash)
    q.load()
    accepted = []
    in_flight = None
    flash.arm_power_cut(cut_after, keep_bytes)
    try:
        for i in range(n_before + 60):
            in_flight = _payload(i)
            if q.put(PRIO_SUMMARY, 2, in_flight, False) >= 0:
                accepted.append(in_flight)
            in_flight = None
            if i % 7 == 3 and accepted:  # some records are sent and erased meanwhile
                slot = q.next_ready(0)
                accepted.remove(bytes(q.payload(slot)))  # sent: delivered, then erased
                q.remove(slot)
    except PowerCut:
        pass
    after = _contents(flash)
    for record in accepted:
        assert record in after, "every record put() returned for survives the cut"
        after.remove(record)
    assert after in ([], [in_flight]), "nothing else, except the record whose write the cut ended"


def test_torn_record_is_counted_and_erased_at_start_up():
    flash = SimFlash()
    q = Queue(flash)
    q.put(PRIO_ALERT, 10, b"\x08" * 11, True)
    flash.arm_power_cut(0, 7)
    with pytest.raises(PowerCut):
        q.put(PRIO_SUMMARY, 2, b"\x01" * 17, False)
    q2 = Queue(flash)
    assert q2.load() == 1
    assert q2.corrupt == 1
    assert q2.depth() == 1 and q2.next_ready(0) >= 0


def test_flipped_bit_in_flash_is_caught_by_the_checksum():
    flash = SimFlash()
    q = Queue(flash)
    q.put(PRIO_POSITIONS, 4, b"\x01" * 14, False)
    key = next(iter(flash.records))
    data = bytearray(flash.records[key])
    data[12] ^= 0x10
    flash.records[key] = bytes(data)
    q2 = Queue(flash)
    assert q2.load() == 0 and q2.corrupt == 1


def test_full_queue_drops_oldest_summaries_first_and_never_alerts():
    q = Queue(SimFlash())
    q.load()
    for i in range(3):
        assert q.put(PRIO_ALERT, 10, bytes([i]) * 11, True) >= 0
    for i in range(QUEUE_SLOTS - 3):
        assert q.put(PRIO_SUMMARY, 2, bytes([100 + i]) * 17, False) >= 0
    assert q.is_full()
    q.put(PRIO_POSITIONS, 4, b"\xee" * 14, False)
    assert q.dropped == 1
    kept = _contents(q.storage)
    assert bytes([100]) * 17 not in kept, "the oldest summary went first"
    assert all(bytes([i]) * 11 in kept for i in range(3)), "alerts are never dropped"
    assert b"\xee" * 14 in kept


def test_queue_full_of_alerts_refuses_a_summary_rather_than_drop_an_alert():
    q = Queue(SimFlash(), slots=4)
    q.load()
    for i in range(4):
        q.put(PRIO_ALERT, 10, bytes([i]) * 11, True)
    assert q.put(PRIO_SUMMARY, 2, b"\x01" * 17, False) == -1
    assert q.refused == 1 and q.depth() == 4


def test_a_long_outage_comes_home_thinned_never_truncated():
    world = CollarWorld()
    world.run_for(HOUR)
    world.coverage = False
    world.run_for(30 * HOUR)
    world.reboot()  # and a reboot on the way: the backlog is in flash
    world.coverage = True
    world.run_for(8 * HOUR)
    heard = [d for d in world.decoded() if d["heard"]]
    summaries = sorted({d["time_s"] for d in heard if d["message"] == "activity"})
    positions = sorted({d["time_s"] for d in heard if d["message"] == "positions"})
    gaps = [b - a for a, b in zip(summaries, summaries[1:], strict=False)]
    assert summaries[0] < world.now_s - 37 * HOUR, "the start of the outage is still there"
    assert max(gaps) <= 2 * HOUR, "thinned evenly, no hole of a day"
    assert len(positions) >= 36, "hourly positions are kept before summaries"
    assert world.collar.queue.dropped > 0


def test_a_ten_hour_outage_is_delivered_in_full():
    world = CollarWorld()
    world.run_for(HOUR)
    world.coverage = False
    world.run_for(10 * HOUR)
    world.coverage = True
    world.run_for(4 * HOUR)
    heard = {d["time_s"] for d in world.decoded("activity") if d["heard"]}
    start = world.decoded("activity")[0]["time_s"]
    assert set(range(start, start + 14 * HOUR, 15 * 60)) - heard == set()
    assert world.collar.queue.dropped == 0


def test_out_of_coverage_collar_probes_with_backoff_not_every_minute():
    world = CollarWorld()
    world.run_for(HOUR)
    world.coverage = False
    n = len(world.sent)
    world.run_for(12 * HOUR)
    tries = len(world.sent) - n
    assert tries < 40, f"{tries} uplinks in 12 h out of coverage"
    assert world.collar.queue.depth() > 40


def test_alert_is_sent_at_once_confirmed_and_retried_with_backoff_until_heard():
    world = CollarWorld()
    world.run_for(HOUR)
    world.coverage = False
    world.battery_mv = 3200
    world.run_for(3 * HOUR)
    tries = [u[0] for u in world.sent if u[1] == 10]
    assert tries, "the alert was tried at once"
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0], "backoff grows"
    world.coverage = True
    world.run_for(2 * HOUR)
    heard = [d for d in world.decoded("alert") if d["heard"]]
    assert heard and heard[0]["alert_type"] == "low_battery"


def test_unacknowledged_alert_is_repeated_at_the_lower_rate():
    world = CollarWorld()
    world.battery_mv = 3200
    world.run_for(5 * HOUR)
    times = [d["sent_s"] for d in world.decoded("alert")]
    assert len(times) >= 4
    assert all(t2 - t1 == 60 * 60 for t1, t2 in zip(times, times[1:], strict=False)), "alert_repeat_min = 60"
    assert {d["time_s"] for d in world.decoded("alert")} == {world.decoded("alert")[0]["time_s"]}, \
        "a repeat is the same alert, not a new one"


def test_alert_outranks_a_backlog_of_summaries():
    world = CollarWorld()
    world.run_for(HOUR)
    world.coverage = False
    world.battery_mv = 3200  # the alert is raised while out of coverage, behind a growing backlog
    world.run_for(5 * HOUR)
    assert world.collar.queue.depth() > 20
    world.coverage = True
    world.run_for(2 * HOUR)
    back_s = world.now_s - 2 * HOUR
    heard = [d for d in world.decoded() if d["heard"] and d["sent_s"] >= back_s]
    assert heard[0]["message"] == "alert"


def test_collar_cut_off_mid_write_comes_back_with_its_backlog():
    world = CollarWorld()
    world.run_for(HOUR)
    world.coverage = False
    world.run_for(3 * HOUR)
    waiting = world.collar.queue.depth()
    assert waiting >= 12
    world.flash.arm_power_cut(0, 9)  # the very next flash write is torn after 9 bytes
    with pytest.raises(PowerCut):
        world.run_for(HOUR)
    world.reboot("brownout")
    assert world.collar.queue.corrupt == 1
    assert world.collar.queue.depth() >= waiting
    world.coverage = True
    world.run_for(3 * HOUR)
    heard = {d["time_s"] for d in world.decoded("activity") if d["heard"]}
    missing = set(range(START_S, START_S + 4 * HOUR, 15 * 60)) - heard
    assert len(missing) <= 1, "only the summary whose write the cut tore (never accepted) is missing"
    assert "unexpected_reboot" in world.alerts()


def test_queue_checksum_is_crc16_ccitt_false_in_c_and_bit_by_bit(monkeypatch):
    from collar_firmware import queue as queue_module

    data = bytearray(b"123456789")
    assert queue_module.crc16(data, 9) == 0x29B1  # the CRC catalogue's check value of CRC-16/CCITT-FALSE
    monkeypatch.setattr(queue_module, "crc_hqx", None)  # the collar's MicroPython has no binascii.crc_hqx
    assert queue_module.crc16(data, 9) == 0x29B1
    assert queue_module.crc16(data, 4) == queue_module.crc16(b"1234", 4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "send", "hold", "verify", "lose", "release", "reload"]),
                          st.integers(0, 255)), max_size=200))
def test_queue_answers_a_wake_up_as_a_scan_of_every_slot_would(operations):
    """What the queue keeps between changes to spare a wake-up its scans (how many records may go out,
    the earliest one may be tried) never differs from a scan of every slot, whatever mix of puts,
    sends, holds, link checks, clock steps and reboots came before."""
    flash = SimFlash()
    q = Queue(flash)
    q.load()
    for op, value in operations:
        now = value * 60
        if op == "put":
            q.put((PRIO_ALERT, PRIO_POSITIONS, PRIO_SUMMARY)[value % 3], 2, _payload(value), value % 2 == 0)
        elif op == "send" and (slot := q.next_ready(now)) >= 0:
            if value % 2:
                q.mark_unverified(slot)
            else:
                q.remove(slot)
        elif op == "hold" and (slot := q.next_ready(now)) >= 0:
            q.hold(slot, now + 60 * (1 + value % 7))
        elif op == "verify":
            q.link_verified()
        elif op == "lose":
            q.link_lost()
        elif op == "release":
            q.release(now)
        elif op == "reload":
            q = Queue(flash)
            q.load()
        for t in (0, now, now + 300, 10**9):
            live = [s for s in range(q.slots) if q.prio[s] != 255 and not q.unverified[s]]
            ready = [s for s in live if q.retry_at_s[s] <= t]
            best = min(ready, key=lambda s: (q.prio[s], q.seq[s])) if ready else -1
            later = [q.retry_at_s[s] for s in live if q.retry_at_s[s] > t]
            assert q.next_ready(t) == best
            assert q.next_retry_s(t) == (min(later) if later else 0)
