"""Guessing is slowed: repeated wrong passwords (for one username or from one address) and repeated
bad API tokens lock out for a growing time, audited, until it passes or an admin unlocks; sign-in
sessions end when the account's role changes; the audit log counts reads per minute and is pruned
after its retention period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bridge_builders as b
import pytest
from starlette.testclient import TestClient

from lora_bridge.access import ADMIN, Viewer, throttle
from lora_bridge.adapters.api import create_app
from lora_bridge.errors import AuthenticationFailed, TooManyAttempts
from lora_bridge.service import open_bridge
from tembo.cli import main

CONSOLE = Viewer("console:tests", ADMIN)
START = datetime(2026, 6, 1, 12, 0, 5, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
WRONG = "tusks-and-more-tusks"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def bridge_at(url: str, clock: Clock, **settings):
    bridge = open_bridge(url, **settings)
    bridge.clock = clock
    return bridge


def fail(bridge, username: str, times: int, client: str | None = None) -> list[type]:
    """Sign in with a wrong password `times` times; the kinds of error each attempt got."""
    kinds = []
    for _ in range(times):
        with pytest.raises(AuthenticationFailed) as refused:
            bridge.sign_in(username, WRONG, client=client)
        kinds.append(type(refused.value))
    return kinds


def test_wrong_passwords_lock_a_username_out_for_longer_each_time_known_or_not(store_url):
    clock = Clock()
    with bridge_at(store_url, clock) as bridge:
        bridge.add_user("amina", "ranger", PASSWORD, actor=CONSOLE)
        free = throttle.FREE_FAILURES[throttle.USER]
        assert fail(bridge, "amina", free) == [AuthenticationFailed] * free
        assert fail(bridge, "mallory", free) == [AuthenticationFailed] * free  # no such account: the same

        for username, password in (("amina", PASSWORD), ("mallory", PASSWORD)):
            with pytest.raises(TooManyAttempts) as locked:
                bridge.sign_in(username, password)  # even the right password waits
            assert str(locked.value) == "too many failed attempts: try again in 30 s"
            assert locked.value.retry_after_s == 30

        clock.advance(seconds=31)
        assert fail(bridge, "amina", free) == [AuthenticationFailed] * free  # the second lock, twice as long
        clock.advance(seconds=31)
        with pytest.raises(TooManyAttempts) as longer:
            bridge.sign_in("amina", PASSWORD)
        assert longer.value.retry_after_s == 29
        clock.advance(seconds=30)
        viewer, _ = bridge.sign_in("amina", PASSWORD)
        assert viewer == Viewer("amina", "ranger")
        assert [row.key for row in bridge.lockouts(viewer=CONSOLE)] == ["mallory"]  # a right password clears

        log = bridge.audit_log(viewer=CONSOLE)
        locks = [(e.username, e.detail["scope"]) for e in log if e.action == "sign_in_locked"]
        assert locks == [("amina", "user"), ("mallory", "user"), ("amina", "user")][::-1]
        assert sum(e.action == "sign_in_failed" for e in log) == 3 * free


def test_lock_lengths_double_up_to_an_hour():
    assert [throttle.lock_length(n).total_seconds() for n in (1, 2, 3, 4, 8)] == [30, 60, 120, 240, 3600]
    assert throttle.lock_length(20) == throttle.LONGEST_LOCK


def test_one_address_guessing_many_names_is_locked_and_others_are_not(sqlite_url):
    clock = Clock()
    with bridge_at(sqlite_url, clock) as bridge:
        bridge.add_user("amina", "ranger", PASSWORD, actor=CONSOLE)
        free = throttle.FREE_FAILURES[throttle.CLIENT]
        for n in range(free):
            fail(bridge, f"guess{n}", 1, client="10.0.0.66")
        with pytest.raises(TooManyAttempts):
            bridge.sign_in("amina", PASSWORD, client="10.0.0.66")
        viewer, _ = bridge.sign_in("amina", PASSWORD, client="10.0.0.7")
        assert viewer.username == "amina"

        assert bridge.unlock(actor=CONSOLE, client="10.0.0.66") == 1
        viewer, _ = bridge.sign_in("amina", PASSWORD, client="10.0.0.66")
        actions = [e.action for e in bridge.audit_log(viewer=CONSOLE)]
        assert "unlocked" in actions and "sign_in_locked" in actions


def test_an_admin_unlocks_a_username_from_the_command_line(sqlite_url, capsys):
    clock = Clock()
    with bridge_at(sqlite_url, clock) as bridge:
        bridge.add_user("amina", "ranger", PASSWORD, actor=CONSOLE)
        fail(bridge, "amina", throttle.FREE_FAILURES[throttle.USER])
    assert main(["users", "lockouts", "--database-url", sqlite_url]) == 0
    assert "amina" in capsys.readouterr().out
    assert main(["users", "unlock", "amina", "--database-url", sqlite_url]) == 0
    assert "amina: unlocked" in capsys.readouterr().out
    with bridge_at(sqlite_url, clock) as bridge:
        viewer, _ = bridge.sign_in("amina", PASSWORD)
        assert viewer.username == "amina"
        unlocked = [e for e in bridge.audit_log(viewer=CONSOLE) if e.action == "unlocked"]
        assert unlocked[0].username.startswith("console:") and unlocked[0].detail["username"] == "amina"
    assert main(["users", "unlock", "--database-url", sqlite_url]) == 1  # nothing named


def test_an_address_sending_bad_api_tokens_gets_429_until_it_passes_or_is_unlocked(sqlite_url):
    clock = Clock()
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.clock = clock
        bridge.add_user("amina", "ranger", PASSWORD, actor=CONSOLE)
        token = bridge.create_token("amina", "patrol tablet", actor=CONSOLE).secret
        client = TestClient(create_app(bridge))  # requests come from the address "testclient"
        good = {"Authorization": f"Bearer {token}"}
        bad = {"Authorization": "Bearer tembo_not-a-real-token"}
        assert client.get("/api/me", headers=good).status_code == 200
        statuses = [client.get("/api/me", headers=bad).status_code for _ in range(throttle.FREE_FAILURES["token_client"])]
        assert statuses == [401] * len(statuses)
        locked = client.get("/api/me", headers=good)
        assert locked.status_code == 429
        assert locked.headers["Retry-After"] == "30"
        assert [e.detail["client"] for e in bridge.audit_log(viewer=CONSOLE) if e.action == "token_client_locked"] == [
            "testclient"
        ]
        clock.advance(seconds=30)
        assert client.get("/api/me", headers=good).status_code == 200
        for _ in range(throttle.FREE_FAILURES["token_client"]):
            client.get("/api/me", headers=bad)
        assert client.get("/api/me", headers=good).status_code == 429
        bridge.unlock(actor=CONSOLE, client="testclient")
        assert client.get("/api/me", headers=good).status_code == 200


def test_a_role_change_ends_the_accounts_sign_ins_and_old_role_tokens(sqlite_url, capsys):
    clock = Clock()
    with bridge_at(sqlite_url, clock) as bridge:
        bridge.add_user("juma", "ranger", PASSWORD, actor=CONSOLE)
        _, secret = bridge.sign_in("juma", PASSWORD, client="10.0.0.7")
        token = bridge.create_token("juma", "tablet", actor=CONSOLE).secret
        assert bridge.viewer_for_session(secret) == Viewer("juma", "ranger")
        [live] = bridge.sessions(viewer=CONSOLE)
        assert (live.username, live.role, live.client, live.last_seen_at) == ("juma", "ranger", "10.0.0.7", START)
        clock.advance(minutes=5)
        bridge.viewer_for_session(secret)
        assert bridge.sessions(viewer=CONSOLE)[0].last_seen_at == START + timedelta(minutes=5)
    assert main(["users", "role", "juma", "--role", "researcher", "--database-url", sqlite_url]) == 0
    assert "juma is now researcher" in capsys.readouterr().out
    with bridge_at(sqlite_url, clock) as bridge:
        with pytest.raises(AuthenticationFailed):
            bridge.viewer_for_session(secret)
        with pytest.raises(AuthenticationFailed):
            bridge.viewer_for_token(token)
        [ended] = bridge.sessions(viewer=CONSOLE, include_ended=True)
        assert ended.end_reason == "role_changed"
        changed = [e for e in bridge.audit_log(viewer=CONSOLE) if e.action == "role_changed"]
        assert changed[0].detail == {"username": "juma", "old_role": "ranger", "role": "researcher", "sessions_ended": 1}
        _, again = bridge.sign_in("juma", PASSWORD)
        assert bridge.viewer_for_session(again) == Viewer("juma", "researcher")
    assert main(["users", "signout", "juma", "--database-url", sqlite_url]) == 0
    assert "1 sign-in(s) of juma ended" in capsys.readouterr().out
    with bridge_at(sqlite_url, clock) as bridge:
        with pytest.raises(AuthenticationFailed):
            bridge.viewer_for_session(again)
    assert main(["users", "sessions", "--all", "--database-url", sqlite_url]) == 0
    listing = capsys.readouterr().out
    assert "role_changed" in listing and "revoked" in listing and "researcher" in listing and secret not in listing and again not in listing


def test_dashboard_refreshes_add_one_audit_row_per_viewer_kind_and_minute(store_url):
    clock = Clock()
    ranger = Viewer("amina", "ranger")
    with bridge_at(store_url, clock) as bridge:
        bridge.register_animal("collar-01", "Amani")
        bridge.register_animal("collar-02", "Tusker")
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(lat=-2.5, lon=37.5), device_id="collar-01", f_cnt=1))
        for _ in range(4):  # four refreshes within one minute
            bridge.latest_positions(viewer=ranger)
            bridge.animals(viewer=ranger)
            clock.advance(seconds=10)
        bridge.latest_positions(viewer=Viewer("rose", "researcher"))
        clock.advance(seconds=30)  # the next minute
        bridge.latest_positions(viewer=ranger)
        log = bridge.audit_log(viewer=CONSOLE)
    reads = [(e.username, e.action, e.repeats, e.at.minute) for e in log if e.precision is not None]
    assert reads == [
        ("amina", "latest_positions", 1, 1),
        ("rose", "latest_positions", 1, 0),
        ("amina", "animals", 4, 0),
        ("amina", "latest_positions", 4, 0),
    ]
    first = next(e for e in log if e.action == "latest_positions" and e.repeats == 4)
    assert first.at == START and first.last_at == START + timedelta(seconds=30)
    assert (first.animals, first.detail["animal_ids"]) == (1, ["1"])  # Amani, the one animal with a fix


def test_audit_lines_older_than_the_retention_period_are_deleted(store_url):
    clock = Clock()
    with bridge_at(store_url, clock, audit_retention_days=30) as bridge:
        bridge.add_user("amina", "ranger", PASSWORD, actor=CONSOLE)
        fail(bridge, "mallory", 1)
        clock.advance(days=20)
        bridge.latest_positions(viewer=Viewer("amina", "ranger"))
        bridge.sign_in("amina", PASSWORD)
        clock.advance(days=15)
        assert bridge.prune_audit_log() == 2  # the account's creation and the failed sign-in, 35 days old
        assert [e.action for e in bridge.audit_log(viewer=CONSOLE)] == ["signed_in", "latest_positions"]
        assert bridge.lockouts(viewer=CONSOLE) == [], "a failure long past is forgotten"
        assert len(bridge.sessions(viewer=CONSOLE, include_ended=True)) == 1  # expired 15 days ago: kept
        clock.advance(days=30)
        assert bridge.prune_audit_log() == 2
        assert bridge.sessions(viewer=CONSOLE, include_ended=True) == []
        assert bridge.prune_audit_log() == 0
