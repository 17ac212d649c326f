"""Accounts, sign-in sessions and API tokens: secrets never stored, revoked things refused, the
`tembo users` / `tembo tokens` command lines, and a webhook that never runs without a secret."""

from __future__ import annotations

import io
import logging
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import bridge_builders as b
import pytest

from lora_bridge.access import ADMIN, Viewer
from lora_bridge.access.passwords import verify_password
from lora_bridge.adapters.api import create_app
from lora_bridge.errors import AuthenticationFailed, Forbidden, InvalidRequest, TooManyAttempts
from lora_bridge.service import open_bridge
from lora_bridge.settings import DEMO_WEBHOOK_SECRET, InsecureSettings, load_settings
from lora_bridge.store.utc import utc_now
from tembo.cli import main

CONSOLE = Viewer("console:tests", ADMIN)


def store_bytes(url: str) -> bytes:
    """Every byte of a SQLite store (its file and write-ahead log)."""
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_a_password_is_stored_only_as_its_scrypt_hash(sqlite_url):
    with open_bridge(sqlite_url) as bridge:
        bridge.add_user("amina", "ranger", "correct horse battery staple", actor=CONSOLE)
        viewer, secret = bridge.sign_in("amina", "correct horse battery staple")
    rows = sqlite3.connect(sqlite_url.removeprefix("sqlite:///")).execute(
        "SELECT password_hash FROM user_accounts").fetchall()

    assert viewer == Viewer("amina", "ranger")
    assert rows[0][0].startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse battery staple", rows[0][0])
    assert b"correct horse battery staple" not in store_bytes(sqlite_url)
    assert secret.encode() not in store_bytes(sqlite_url)


def test_wrong_passwords_and_unknown_names_get_the_same_answer_and_are_audited(sqlite_url):
    with open_bridge(sqlite_url) as bridge:
        bridge.add_user("amina", "ranger", "correct horse battery staple", actor=CONSOLE)
        with pytest.raises(AuthenticationFailed) as wrong:
            bridge.sign_in("amina", "tusks-and-more")
        with pytest.raises(AuthenticationFailed) as unknown:
            bridge.sign_in("mallory", "tusks-and-more")
        log = bridge.audit_log(viewer=CONSOLE)
        with pytest.raises(InvalidRequest):
            bridge.add_user("juma", "ranger", "short", actor=CONSOLE)
        with pytest.raises(Forbidden):
            bridge.add_user("juma", "admin", "long enough password", actor=Viewer("amina", "ranger"))

    assert str(wrong.value) == str(unknown.value) == "wrong username or password"
    assert [(e.username, e.action) for e in log[:2]] == [("mallory", "sign_in_failed"), ("amina", "sign_in_failed")]


def test_a_sign_in_ends_with_sign_out_a_new_password_or_the_account(sqlite_url):
    with open_bridge(sqlite_url) as bridge:
        bridge.add_user("amina", "ranger", "correct horse battery staple", actor=CONSOLE)
        _, first = bridge.sign_in("amina", "correct horse battery staple")
        _, second = bridge.sign_in("amina", "correct horse battery staple")
        assert bridge.viewer_for_session(first) == Viewer("amina", "ranger")
        bridge.sign_out(first)
        with pytest.raises(AuthenticationFailed):
            bridge.viewer_for_session(first)
        bridge.set_password("amina", "another long password", actor=CONSOLE)
        with pytest.raises(AuthenticationFailed):
            bridge.viewer_for_session(second)
        _, third = bridge.sign_in("amina", "another long password")
        bridge.clock = lambda: utc_now() + timedelta(hours=13)
        with pytest.raises(AuthenticationFailed):
            bridge.viewer_for_session(third)


def test_api_tokens_are_hashed_at_rest_and_refused_once_revoked_expired_or_orphaned(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.add_user("amina", "ranger", "correct horse battery staple", actor=CONSOLE)
        bridge.add_user("juma", "ranger", "another long password", actor=CONSOLE)
        kept = bridge.create_token("amina", "control room wall", actor=CONSOLE)
        revoked = bridge.create_token("amina", "old laptop", actor=CONSOLE)
        expiring = bridge.create_token("amina", "one day", expires_at=utc_now() + timedelta(days=1), actor=CONSOLE)
        public = bridge.create_token("amina", "lobby screen", role="visitor", actor=CONSOLE)
        orphan = bridge.create_token("juma", "juma's phone", actor=CONSOLE)
        with pytest.raises(InvalidRequest):
            bridge.create_token("amina", "escalation", role="admin", actor=CONSOLE)

        bridge.revoke_token(revoked.view.token_id, actor=CONSOLE)
        bridge.remove_user("juma", actor=CONSOLE)
        assert bridge.viewer_for_token(kept.secret) == Viewer("amina", "ranger")
        assert bridge.viewer_for_token(public.secret) == Viewer("amina", "visitor")
        for refused in (revoked, orphan):
            with pytest.raises(AuthenticationFailed):
                bridge.viewer_for_token(refused.secret)
        bridge.clock = lambda: utc_now() + timedelta(days=2)
        with pytest.raises(AuthenticationFailed, match="expired"):
            bridge.viewer_for_token(expiring.secret)
        listed = {t.name: t for t in bridge.tokens(viewer=CONSOLE)}

    stored = store_bytes(sqlite_url)
    assert all(t.secret.encode() not in stored for t in (kept, revoked, expiring, public, orphan))
    assert listed["old laptop"].revoked_at is not None and listed["control room wall"].last_used_at is not None
    assert listed["control room wall"].prefix == kept.secret[:12] and "secret" not in repr(kept.view)
    assert kept.secret not in repr(kept) and kept.secret not in str(kept.view)


def test_a_revoked_token_is_refused_by_the_api(sqlite_url):
    from starlette.testclient import TestClient

    with b.fresh_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:
        bridge.add_user("amina", "ranger", "correct horse battery staple", actor=CONSOLE)
        made = bridge.create_token("amina", "tablet", actor=CONSOLE)
        headers = {"Authorization": f"Bearer {made.secret}"}
        before = client.get("/api/positions/latest", headers=headers)
        bridge.revoke_token(made.view.token_id, actor=CONSOLE)
        after = client.get("/api/positions/latest", headers=headers)

    assert (before.status_code, after.status_code) == (200, 401)
    assert after.json() == {"error": "API token revoked"}


def test_operator_manages_users_and_tokens_from_the_command_line(sqlite_url, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse battery staple\n"))
    assert main(["users", "add", "amina", "--role", "ranger", "--password-stdin", "--database-url", sqlite_url]) == 0
    assert main(["users", "add", "rose", "--role", "researcher", "--generate", "--database-url", sqlite_url]) == 0
    generated = capsys.readouterr().out.split("password: ")[1].split()[0]
    assert main(["users", "list", "--database-url", sqlite_url]) == 0
    listed = capsys.readouterr().out
    assert main(["tokens", "create", "--owner", "amina", "--name", "earthranger sync", "--expires-days", "30",
                 "--database-url", sqlite_url]) == 0
    secret = capsys.readouterr().out.split("secret: ")[1].split()[0]
    assert main(["tokens", "list", "--database-url", sqlite_url]) == 0
    tokens = capsys.readouterr().out
    assert main(["tokens", "revoke", "1", "--database-url", sqlite_url]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["users", "passwd", "amina", "--password-stdin", "--database-url", sqlite_url]) == 1
    assert "at least 10 characters" in capsys.readouterr().err
    assert main(["users", "remove", "rose", "--database-url", sqlite_url]) == 0

    assert "amina" in listed and "researcher" in listed and generated not in listed
    assert "earthranger sync" in tokens and secret not in tokens and secret[:12] in tokens
    with open_bridge(sqlite_url) as bridge:
        assert bridge.sign_in("amina", "correct horse battery staple")[0].role == "ranger"
        with pytest.raises(AuthenticationFailed):
            bridge.viewer_for_token(secret)
        assert [u.username for u in bridge.users(viewer=CONSOLE)] == ["amina"]
        actors = {e.username for e in bridge.audit_log(viewer=CONSOLE) if e.action == "token_created"}
    assert all(actor.startswith("console:") for actor in actors)


def test_a_password_never_appears_on_the_command_line_or_in_the_log(sqlite_url):
    done = subprocess.run(
        [sys.executable, "-m", "tembo.cli", "-v", "users", "add", "ada", "--role", "admin", "--password-stdin",
         "--database-url", sqlite_url],
        input="an admin's long password\n", capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "long password" not in done.stdout + done.stderr
    assert "account added" in done.stderr  # logged, with who and what, without the password


def test_webhook_refuses_to_start_without_a_secret_or_with_a_published_one(sqlite_url, monkeypatch, caplog):
    monkeypatch.delenv("TEMBO_WEBHOOK_SECRET", raising=False)
    for secret in (None, "", "   ", DEMO_WEBHOOK_SECRET, "tembo-dev-secret"):
        with open_bridge(sqlite_url, webhook_secret=secret) as bridge, pytest.raises(InsecureSettings) as refused:
            create_app(bridge)
        assert "TEMBO_WEBHOOK_SECRET" in str(refused.value)

    with caplog.at_level(logging.WARNING), open_bridge(sqlite_url, allow_demo_secret=True) as bridge:
        create_app(bridge)
    assert any("INSECURE" in r.getMessage() for r in caplog.records)
    assert load_settings(allow_demo_secret=True).webhook_secret_bytes() == DEMO_WEBHOOK_SECRET.encode()
    assert load_settings().webhook_secret_bytes() == b""


def test_tembo_bridge_says_why_it_will_not_start_without_a_secret(sqlite_url, monkeypatch, capsys):
    monkeypatch.delenv("TEMBO_WEBHOOK_SECRET", raising=False)
    assert main(["bridge", "--database-url", sqlite_url, "--port", "0"]) == 2
    assert "refusing to start" in capsys.readouterr().err


def test_an_empty_secret_in_force_accepts_no_uplink(sqlite_url):
    from starlette.testclient import TestClient

    with b.fresh_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:
        bridge.settings.webhook_secret = None  # changed under a running app
        answer = client.post("/uplinks/tts", content=b.tts_uplink(b.status()), headers={"X-Tembo-Secret": ""})
        counts = bridge.counts()
    assert answer.status_code == 401 and counts["uplinks_stored"] == 0


def test_a_ranger_whose_phone_capitalises_her_name_signs_in_and_a_lock_counts_every_spelling(sqlite_url):
    with b.fresh_bridge(sqlite_url) as bridge:
        bridge.add_user("amina", "ranger", "a long ranger password", actor=CONSOLE)

        viewer, _ = bridge.sign_in("Amina ", "a long ranger password")
        assert viewer.username == "amina"
        for spelling in ("Amina", "AMINA", "amina", "aMina", "Amina"):
            with pytest.raises(AuthenticationFailed):
                bridge.sign_in(spelling, "a wrong guess")
        with pytest.raises(TooManyAttempts):
            bridge.sign_in("amina", "a long ranger password")


def test_field_technician_reads_fleet_health_while_a_backup_holds_the_stores_write_lock(sqlite_url):
    # Every API request wrote its token's last use: while another program held SQLite's write lock
    # (a backup, `sqlite3 .backup`), /metrics and /api/devices answered 500 after the busy timeout.
    from starlette.testclient import TestClient

    # And each request waited the store's whole busy timeout (10 s) for its stamp: it waits 0.2 s, once
    # a minute, counted on a clock that moves only while the bridge waits for the lock.
    from test_bridge_durability import WaitingClock

    from lora_bridge.store import write_lock

    with b.fresh_bridge(sqlite_url) as bridge, TestClient(create_app(bridge)) as client:
        headers = b.api_headers(bridge, "field_technician")
        assert client.get("/api/me", headers=headers).status_code == 200  # used once: its last use stamped
        backup = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        backup.execute("BEGIN IMMEDIATE")
        waits = WaitingClock()
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(write_lock, "time", waits)
                bridge.clock = lambda: utc_now() + timedelta(minutes=5)  # a stamp is due again
                answers = [client.get(route, headers=headers) for route in ("/api/me", "/api/devices", "/metrics")]
        finally:
            backup.execute("ROLLBACK")
            backup.close()
        waited_s = waits.now - WaitingClock().now
        bridge.clock = lambda: utc_now() + timedelta(minutes=7)  # a minute after the try: due again
        later = client.get("/api/me", headers=headers)
        (token,) = [t for t in bridge.tokens(viewer=CONSOLE) if t.owner == "field-technician-tests"]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert 0.19 <= waited_s <= 0.21, "one try of 0.2 s for the three requests, not 10 s each"
    assert later.status_code == 200 and token.last_used_at > utc_now() + timedelta(minutes=6)  # stamped once it could
