"""The u-blox M8 GNSS driver seen from its UART: UBX frames out, NAV-PVT fixes and UTC time in."""

from __future__ import annotations

import datetime as dt

import pytest
from driver_fakes import FakeClock, FakeM8, FakeUart, nav_pvt, ubx_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from collar_firmware.hal.ublox import MAX_PAYLOAD, UbloxM8, UbxParser, checksum, config_frames, frame, unix_s

# u-blox's own example: enable NAV-PVT at rate 1 on the current port (UBX-CFG-MSG)
CFG_MSG_NAV_PVT = bytes.fromhex("b562060103000107011351")
# what the receiver answers to it (UBX-ACK-ACK for class 06, id 01)
ACK_CFG_MSG = bytes.fromhex("b5620501020006010f38")

PARK = (0.5720345, 37.5851234)
FIX_UTC = (2026, 3, 1, 9, 30, 15)


def test_ubx_checksum_matches_the_published_frames():
    assert frame(0x06, 0x01, bytes((0x01, 0x07, 0x01))) == CFG_MSG_NAV_PVT
    assert checksum(CFG_MSG_NAV_PVT[2:-2]) == (0x13, 0x51)
    assert checksum(ACK_CFG_MSG[2:-2]) == (0x0F, 0x38)


def test_receiver_is_set_to_ubx_nav_pvt_at_one_hertz_in_power_save():
    frames = config_frames()
    assert CFG_MSG_NAV_PVT in frames
    prt = frames[0]
    assert prt[2:4] == b"\x06\x00" and prt[6] == 1, "UART1"
    assert prt[6 + 12:6 + 16] == b"\x01\x00\x01\x00", "UBX in, UBX out: no NMEA chatter"
    assert frames[2] == frame(0x06, 0x08, bytes.fromhex("e80301000100")), "1000 ms, 1 cycle, GPS time"
    assert frames[3] == frame(0x06, 0x11, bytes((8, 1))), "power save mode"


def receiver(*, nak: bool = False, answer: bool = True, **kwargs):
    clock = FakeClock()
    uart = FakeUart(clock)
    m8 = FakeM8(uart, nak=nak, answer=answer)
    times: list[int] = []
    gnss = UbloxM8(uart, clock_ms=clock.now_ms, sleep_ms=clock.sleep_ms, on_time=times.append, **kwargs)
    return gnss, uart, clock, m8, times


def test_a_fix_is_read_from_nav_pvt_with_its_position_pdop_and_utc_time():
    gnss, uart, clock, m8, times = receiver()
    for second in (1, 2):  # searching: no fix yet, time not known
        uart.schedule(second * 1000, nav_pvt(fix_type=0, fix_ok=False))
    uart.schedule(3000, nav_pvt(0, 0, fix_type=0, fix_ok=False, utc=(2026, 3, 1, 9, 30, 14)))
    uart.schedule(4000, nav_pvt(*PARK, fix_type=3, utc=FIX_UTC, pdop_x100=180, h_acc_mm=4200, num_sv=11))
    fix = gnss.acquire(90)
    assert fix is not None
    lat, lon, hdop, ttff_s = fix
    assert lat == pytest.approx(PARK[0], abs=1e-7) and lon == pytest.approx(PARK[1], abs=1e-7)
    assert hdop == pytest.approx(1.8)
    assert ttff_s == 4, "the fix arrived 4 s after power-up"
    expected_s = int(dt.datetime(*FIX_UTC, tzinfo=dt.UTC).timestamp())
    assert gnss.last_time_s == expected_s
    assert times == [expected_s - 1, expected_s], "the collar's clock is told each valid UTC time"
    assert gnss.last_h_acc_mm == 4200 and gnss.last_num_sv == 11
    sent = [(cls, msg_id) for cls, msg_id, _ in m8.received]
    assert sent == [(0x06, 0x00), (0x06, 0x01), (0x06, 0x08), (0x06, 0x11), (0x02, 0x41)]
    assert m8.received[-1][2] == bytes(8) + bytes.fromhex("0600000008000000"), "backup until UART wakes it"
    assert gnss.configured and gnss.config_failures == 0


def test_a_fix_left_over_from_the_last_power_up_never_counts_again():
    gnss, uart, clock, _, _ = receiver()
    uart.feed(nav_pvt(*PARK, fix_type=3))  # sent just before the receiver went to sleep last time
    gnss.parser.feed(nav_pvt(*PARK, fix_type=3)[:40])  # and half a frame still in the parser
    uart.schedule(5000, nav_pvt(1.25, 36.5, fix_type=3))
    lat, lon, _, ttff_s = gnss.acquire(90)
    assert (lat, lon) == (1.25, 36.5)
    assert ttff_s == 5


def test_a_two_d_fix_counts_only_when_allowed_and_a_fix_without_gnss_fix_ok_never():
    gnss, uart, clock, _, _ = receiver(min_fix_type=3)
    uart.schedule(1000, nav_pvt(*PARK, fix_type=3, fix_ok=False))
    uart.schedule(2000, nav_pvt(*PARK, fix_type=2))
    uart.schedule(3000, nav_pvt(1.0, 2.0, fix_type=3))
    assert gnss.acquire(60)[:2] == (1.0, 2.0)
    gnss2, uart2, _, _, _ = receiver(min_fix_type=2)
    uart2.schedule(1000, nav_pvt(*PARK, fix_type=2))
    assert gnss2.acquire(60)[0] == pytest.approx(PARK[0])


def test_acquire_gives_up_after_its_timeout_without_sleeping_for_real():
    gnss, uart, clock, m8, _ = receiver()
    for second in range(1, 200):
        uart.schedule(second * 1000, nav_pvt(fix_type=0, fix_ok=False))
    assert gnss.acquire(30) is None
    assert 30_000 <= clock.now_ms() < 31_000, "fake milliseconds, not wall-clock time"
    assert gnss.timeouts == 1
    assert m8.received[-1][:2] == (0x02, 0x41), "the receiver goes back to sleep after a failed search"


def test_a_receiver_that_refuses_its_configuration_is_counted_and_still_used():
    gnss, uart, clock, _, _ = receiver(nak=True)
    uart.schedule(2000, nav_pvt(*PARK))
    assert gnss.acquire(90) is not None
    assert gnss.config_failures == 4 and not gnss.configured


def test_a_receiver_that_never_answers_its_configuration_still_gives_its_fix():
    gnss, uart, clock, _, _ = receiver(answer=False)
    uart.schedule(6000, nav_pvt(*PARK))
    fix = gnss.acquire(90)
    assert fix is not None and fix[3] == 6
    assert gnss.config_failures == 4


def test_a_switched_receiver_is_powered_by_its_pin_and_reconfigured_each_time():
    class Pin:
        def __init__(self) -> None:
            self.levels: list[int] = []

        def value(self, v: int) -> None:
            self.levels.append(v)

    pin = Pin()
    gnss, uart, clock, m8, _ = receiver(power_pin=pin)
    uart.schedule(1500, nav_pvt(*PARK))
    gnss.acquire(90)
    uart.schedule(clock.now_ms() + 1500, nav_pvt(*PARK))
    gnss.acquire(90)
    assert pin.levels == [1, 0, 1, 0]
    assert [c for c in m8.received if c[:2] == (0x06, 0x01)] and len(m8.received) == 8, "config after each power-up"


def test_unix_seconds_from_utc_fields():
    for when in ((1970, 1, 1, 0, 0, 0), (2000, 2, 29, 12, 0, 0), (2026, 12, 31, 23, 59, 59), (2100, 3, 1, 0, 0, 1)):
        assert unix_s(*when) == int(dt.datetime(*when, tzinfo=dt.UTC).timestamp())


# ---- the stream parser ---------------------------------------------------------------------

def frames_in(data: bytes, parser: UbxParser | None = None) -> list[tuple[int, int, bytes]]:
    parser = parser or UbxParser()
    out = []
    for b in data:
        parser.feed_byte(b)
        assert parser.n <= parser.capacity
        while parser.next_frame():
            out.append((parser.cls, parser.msg_id, bytes(parser.buf[6:6 + parser.length])))
    return out


def test_a_frame_with_a_bad_checksum_is_rejected_and_the_next_one_kept():
    good = nav_pvt(*PARK)
    bad = bytearray(good)
    bad[30] ^= 0x01
    parser = UbxParser()
    found = frames_in(bytes(bad) + good, parser)
    assert [f[:2] for f in found] == [(0x01, 0x07)]
    assert found[0][2] == good[6:-2]
    assert parser.bad_checksums == 1


def test_a_length_beyond_the_buffer_is_skipped_not_stored():
    parser = UbxParser()
    found = frames_in(b"\xb5\x62\x01\x07\xff\x7f" + bytes(50) + CFG_MSG_NAV_PVT, parser)
    assert found == [(0x06, 0x01, b"\x01\x07\x01")]
    assert parser.oversize == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_never_crashes_the_parser_and_its_buffer_stays_bounded(garbage):
    parser = UbxParser()
    frames_in(garbage, parser)
    assert parser.n <= MAX_PAYLOAD + 8
    assert len(parser.buf) == MAX_PAYLOAD + 8


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=100), st.binary(max_size=60))
def test_a_good_frame_after_garbage_or_a_cut_frame_is_still_found(garbage, cut, payload):
    good = ubx_frame(0x01, 0x07, payload)
    truncated = nav_pvt(*PARK)[:cut]
    filler = bytes(MAX_PAYLOAD + 8)  # the stream goes on (zeros hold no sync byte)
    found = frames_in(garbage + truncated + good + filler)
    assert (0x01, 0x07, payload) in found


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=MAX_PAYLOAD), max_size=6), st.integers(min_value=1, max_value=7))
def test_frames_split_across_reads_arrive_whole_and_in_order(payloads, chunk):
    stream = b"".join(ubx_frame(0x01, 0x07, p) for p in payloads)
    parser = UbxParser()
    found = []
    for i in range(0, len(stream), chunk):
        found += frames_in(stream[i:i + chunk], parser)
    assert [f[2] for f in found] == payloads
