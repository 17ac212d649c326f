"""The operator starting `tembo bridge` for a reserve: a configuration mistake is told in one line that
names the setting and where it came from, the command exits 2, and nothing starts (no traceback,
never a bridge that listens with settings it did not understand)."""

from __future__ import annotations

import pytest

from tembo.cli import main

SECRET = "a-long-random-webhook-secret-for-the-reserve"


@pytest.fixture
def operator_env(monkeypatch, tmp_path):
    """A shell with a good secret and an embedded store in tmp_path; nothing else of TEMBO_* set. The
    settings of each bridge that got as far as listening."""
    for name in ("TEMBO_CONFIG", "TEMBO_PORT", "TEMBO_MQTT_URL", "TEMBO_MQTT_MORE_URLS", "TEMBO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMBO_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TEMBO_DATABASE_URL", f"sqlite:///{tmp_path / 'reserve.db'}")
    started = []
    # The whole start runs (settings, store, timers); only the listening is left out.
    monkeypatch.setattr("uvicorn.Server.run", lambda server: started.append(server.config.app.state.bridge.settings))
    return started


def _refused(capsys, *argv: str) -> str:
    """Run tembo with argv; assert it exits 2 without a traceback; its one-line complaint."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def test_operator_whose_config_file_mistypes_a_setting_is_told_which_and_nothing_starts(
    operator_env, capsys, tmp_path, monkeypatch
):
    config = tmp_path / "tembo.toml"
    monkeypatch.setenv("TEMBO_CONFIG", str(config))

    config.write_text('[bridge]\nprot = 8080\n')
    assert "unknown setting 'prot' (did you mean 'port'?)" in _refused(capsys, "bridge")

    config.write_text('[bridge]\nrules_every_s = "hourly"\n')
    err = _refused(capsys, "bridge")
    assert f"rules_every_s (in {config})" in err and "'hourly'" in err

    # Read from [bridge] only: a setting above it had been ignored without a word.
    config.write_text('database_url = "sqlite:///elsewhere.db"\n[bridge]\nport = 8900\n')
    assert "database_url outside the [bridge] table" in _refused(capsys, "bridge")

    config.write_text("port = \n")
    assert f"the settings file {config} is not TOML" in _refused(capsys, "bridge")

    monkeypatch.setenv("TEMBO_CONFIG", str(tmp_path / "missing.toml"))
    assert "cannot be read: No such file or directory" in _refused(capsys, "bridge")
    assert operator_env == []


def test_operator_whose_environment_or_options_do_not_fit_is_told_which_variable_without_its_secret(
    operator_env, capsys, monkeypatch
):
    monkeypatch.setenv("TEMBO_PORT", "eighty")
    assert "port (TEMBO_PORT): Input should be a valid integer" in _refused(capsys, "bridge")
    monkeypatch.delenv("TEMBO_PORT")

    monkeypatch.setenv("TEMBO_MQTT_MORE_URLS", "mqtt://north:1883")
    assert "TEMBO_MQTT_MORE_URLS does not read: a list setting is a JSON list" in _refused(capsys, "bridge")
    monkeypatch.delenv("TEMBO_MQTT_MORE_URLS")

    err = _refused(capsys, "bridge", "--mqtt", "http://tembo:broker-password@broker.reserve:1883")
    assert "mqtt_url (given on the command line): an MQTT broker URL starts with mqtt://" in err
    assert "broker-password" not in err and "tembo:***@broker.reserve" in err

    err = _refused(capsys, "bridge", "--mqtt", "mqtt://tembo:broker-password@broker.reserve:18830x")
    assert "port is not a number" in err and "broker-password" not in err

    err = _refused(capsys, "bridge", "--mqtt", "mqtt://broker.reserve", "--mqtt-share-group", "tembo/workers")
    assert "mqtt_share_group (given on the command line): an MQTT share group is a name without '/'" in err
    assert operator_env == []


def test_a_good_configuration_still_starts_the_bridge(operator_env, tmp_path, monkeypatch):
    config = tmp_path / "tembo.toml"
    config.write_text('[bridge]\nport = 8900\nmqtt_share_group = "tembo"\n[dashboard]\nrole = "ranger"\n')
    monkeypatch.setenv("TEMBO_CONFIG", str(config))
    assert main(["bridge", "--port", "0"]) == 0

    # One file for everything: the settings at its top level beside the rules' and notifications' tables.
    config.write_text('mqtt_share_group = "north"\n[rules.default.immobility]\nradius_m = 100\n[notify.retry]\nbackoff_s = 60\n')
    monkeypatch.setenv("TEMBO_RULES_PATH", str(config))
    assert main(["bridge", "--port", "0"]) == 0

    assert [(s.port, s.mqtt_share_group) for s in operator_env] == [(0, "tembo"), (0, "north")]


def test_operator_who_mistypes_the_database_url_is_told_which_part_is_wrong(operator_env, capsys, tmp_path):
    from tembo.local_services import free_port

    err = _refused(capsys, "bridge", "--database-url", "postgres+psycopg//tembo:db-password@db/tembo")
    assert "does not read as one: write sqlite:///" in err and "db-password" not in err

    err = _refused(capsys, "bridge", "--database-url", "mysql+pymysql://tembo:db-password@db/tembo")
    assert "names a 'mysql' database; Tembo's store is SQLite or PostgreSQL" in err and "db-password" not in err

    err = _refused(capsys, "bridge", "--database-url", "postgresql+psycopg2://tembo:db-password@db/tembo")
    assert "its driver 'postgresql+psycopg2' is not installed here" in err

    nobody = free_port()
    url = f"postgresql+psycopg://tembo:db-password@127.0.0.1:{nobody}/tembo"
    for command in (["bridge"], ["bridge", "migrate"], ["bridge", "compact"], ["bridge", "replay"]):
        err = _refused(capsys, *command, "--database-url", url)
        assert f"no PostgreSQL answers at 127.0.0.1:{nobody}: check the host and port" in err
        assert "db-password" not in err and "tembo:***@" in err

    (tmp_path / "not-a-store.db").write_text("minutes of the reserve's board meeting\n" * 200)
    err = _refused(capsys, "bridge", "--database-url", f"sqlite:///{tmp_path / 'not-a-store.db'}")
    assert "cannot be used as the store (file is not a database)" in err
    assert operator_env == []


def test_operator_whose_database_password_holds_an_at_sign_is_told_to_encode_it_and_sees_none_of_it(
        operator_env, capsys):
    # The password ends at its first '@' when read as a URL: the bridge had looked for a PostgreSQL at
    # "ngorongoro7@db" and printed that rest of the password in its message.
    for command in (["bridge"], ["bridge", "migrate"]):
        err = _refused(capsys, *command, "--database-url", "postgresql+psycopg://tembo:kifaru@ngorongoro7@db:5432/tembo")
        assert "percent-encode the password's special characters (@ as %40" in err
        assert "ngorongoro7" not in err and "kifaru" not in err and "tembo:***@db:5432/tembo" in err
    # A URL refused for its scheme is shown back masked to its last '@', whatever the password holds.
    err = _refused(capsys, "bridge", "--database-url", "postgres+psycopg//tembo:kifaru/ngorongoro7@db/tembo")
    assert "does not read as one" in err and "ngorongoro7" not in err and "kifaru" not in err
    assert operator_env == []


def test_operator_who_rolls_tembo_back_after_an_upgrade_is_told_the_store_is_newer_and_it_is_left_as_it_was(
        operator_env, capsys, tmp_path):
    import sqlite3

    from lora_bridge.service import open_bridge
    from lora_bridge.store import migrate

    store = tmp_path / "reserve.db"
    open_bridge(f"sqlite:///{store}", webhook_secret=SECRET).close()
    with sqlite3.connect(store) as newer:  # what a newer Tembo's migration leaves
        newer.execute("UPDATE alembic_version SET version_num = '0031_fences_by_season'")
    for command in (["bridge"], ["bridge", "migrate"]):
        err = _refused(capsys, *command, "--database-url", f"sqlite:///{store}")
        assert (f"a newer Tembo migrated it to revision '0031_fences_by_season', past this Tembo's newest "
                f"({migrate.head_revision()}): run that Tembo (or a newer one) on it, or restore") in err
    with sqlite3.connect(store) as kept:
        assert kept.execute("SELECT version_num FROM alembic_version").fetchall() == [("0031_fences_by_season",)]
    assert operator_env == []


def test_operator_who_copies_a_hosting_providers_postgres_url_or_writes_two_slashes_for_sqlite_is_told_the_form(
        operator_env, capsys):
    err = _refused(capsys, "bridge", "--database-url", "postgres://tembo:kifaru@db.example.org:5432/tembo")
    assert "starts with postgres://, a name of PostgreSQL that SQLAlchemy no longer reads: write it " \
           "postgresql+psycopg://" in err and "kifaru" not in err
    err = _refused(capsys, "bridge", "migrate", "--database-url", "sqlite://var/tembo.db")
    assert "reads 'var' as a host: a SQLite URL has three slashes before a relative path (sqlite:///var/tembo.db)" in err
    assert operator_env == []


@pytest.mark.postgres
def test_operator_whose_postgresql_lacks_postgis_or_refuses_the_login_is_told_so(
    operator_env, capsys, postgres_server
):
    postgres_server.psql("CREATE ROLE reserve_bridge LOGIN PASSWORD 'reserve-db-password'")
    postgres_server.psql("CREATE DATABASE reserve_without_postgis OWNER reserve_bridge")
    try:
        server = f"127.0.0.1:{postgres_server.port}"
        bare = f"postgresql+psycopg://reserve_bridge:reserve-db-password@{server}/reserve_without_postgis"
        for command in (["bridge"], ["bridge", "migrate"]):
            err = _refused(capsys, *command, "--database-url", bare)
            assert "PostGIS is not in database 'reserve_without_postgis', and this user may not add it" in err
            assert "CREATE EXTENSION postgis" in err and "reserve-db-password" not in err

        wrong = f"postgresql+psycopg://reserve_bridge:mistyped-password@{server}/reserve_without_postgis"
        err = _refused(capsys, "bridge", "--database-url", wrong)
        assert "the server refused the login of user 'reserve_bridge'" in err and "mistyped-password" not in err

        missing = f"postgresql+psycopg://reserve_bridge:reserve-db-password@{server}/reserve_mistyped"
        assert "the server has no database 'reserve_mistyped'" in _refused(capsys, "bridge", "--database-url", missing)
        assert operator_env == []
    finally:
        postgres_server.psql("DROP DATABASE reserve_without_postgis WITH (FORCE)")
        postgres_server.psql("DROP ROLE reserve_bridge")


def test_operator_whose_webhook_secret_is_short_or_carries_a_line_end_is_refused_before_anything_listens(
    operator_env, capsys, monkeypatch
):
    monkeypatch.setenv("TEMBO_WEBHOOK_SECRET", "kws2026")  # guessed in a few thousand requests at most
    err = _refused(capsys, "bridge")
    assert "refusing to start: the webhook secret has 7 characters, fewer than 16" in err and "kws2026" not in err

    # Read from a .env file edited on Windows: no header can carry the "\r", every uplink had been a 401.
    monkeypatch.setenv("TEMBO_WEBHOOK_SECRET", "a-long-random-webhook-secret\r")
    assert "holds a control character" in _refused(capsys, "bridge")
    monkeypatch.setenv("TEMBO_WEBHOOK_SECRET", " a-long-random-webhook-secret")
    assert "begins or ends with a space" in _refused(capsys, "bridge")
    assert operator_env == []


def test_a_webhook_secret_beyond_ascii_lets_the_network_server_in(tmp_path):
    import bridge_builders as b
    from starlette.testclient import TestClient

    from lora_bridge.adapters.api import create_app

    secret = "Ngorongoro-kreter-ñyumbu-2026"  # The Things Stack sends its header value as UTF-8
    with b.fresh_bridge(f"sqlite:///{tmp_path / 'reserve.db'}", webhook_secret=secret) as bridge:
        client = TestClient(create_app(bridge))
        answer = client.post("/uplinks/tts", content=b.tts_uplink(b.status()),
                             headers={"X-Tembo-Secret": secret.encode()})
        wrong = client.post("/uplinks/tts", content=b.tts_uplink(b.status()),
                            headers={"X-Tembo-Secret": secret.replace("ñ", "n").encode()})
        stored = bridge.counts()["uplinks_stored"]
    assert (answer.status_code, wrong.status_code, stored) == (200, 401, 1)


@pytest.mark.mqtt
def test_operator_whose_broker_refuses_the_login_is_told_at_once_and_the_bridge_stops_as_it_came(
    operator_env, capsys, mosquitto
):
    import threading

    wrong = f"mqtt://{mosquitto.username}:mistyped-broker-password@{mosquitto.host}:{mosquitto.port}"
    err = _refused(capsys, "bridge", "--port", "0", "--mqtt", wrong)

    # Not "not reached within 20 s" after retrying a login that cannot pass, nor a traceback.
    assert f"the broker refused the login of '{mosquitto.username}': Not authorized" in err
    assert "mistyped-broker-password" not in err
    assert operator_env == []  # nothing listened
    assert not [t for t in threading.enumerate() if t.name in ("tembo-rules", "tembo-outbox")]


def test_a_worker_whose_broker_is_not_there_says_what_a_connection_found(tmp_path):
    from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url
    from lora_bridge.errors import BrokerUnusable
    from tembo.local_services import free_port

    nobody = free_port()
    worker = MqttIngest(lambda *args, **kwargs: None, parse_broker_url(f"mqtt://tembo:broker-pw@127.0.0.1:{nobody}"))
    with pytest.raises(BrokerUnusable) as told:
        worker.start(timeout_s=0.5)
    assert f"tembo:***@127.0.0.1:{nobody}" in str(told.value) and "Connection refused" in str(told.value)
    assert "broker-pw" not in str(told.value)


def test_operator_who_starts_a_second_durable_bridge_on_one_sqlite_store_is_told_why_it_stops(
    operator_env, capsys, monkeypatch, tmp_path
):
    from lora_bridge.intake_journal import IntakeJournal

    monkeypatch.setenv("TEMBO_WEBHOOK_ACK", "durable")
    monkeypatch.setenv("TEMBO_INTAKE_APPLIER", "thread")
    first = IntakeJournal.for_store(f"sqlite:///{tmp_path / 'reserve.db'}")  # the bridge already running
    try:
        err = _refused(capsys, "bridge", "--port", "0")
    finally:
        first.close()
    assert "is held by another bridge process: one bridge answers durably" in err
    assert operator_env == []


def test_a_bridge_restarted_while_another_program_holds_the_store_starts_and_takes_uplinks_once_it_is_free(tmp_path):
    import sqlite3

    import bridge_builders as b

    url = f"sqlite:///{tmp_path / 'reserve.db'}"
    with b.fresh_bridge(url, outbox_worker=False):
        pass  # the store as the bridge left it, at the newest revision
    other = sqlite3.connect(tmp_path / "reserve.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program's long write (a bulk import, a repair)
    try:
        # It had refused to start ("database is locked"): a store at the newest revision needs no write.
        with b.fresh_bridge(url, outbox_worker=False, sqlite_busy_timeout_ms=50) as bridge:
            other.rollback()
            answer = bridge.ingest_tts_uplink(b.tts_uplink(b.status()))
    finally:
        other.close()
    assert answer.status == "processed"


def test_operator_reading_the_log_of_a_refused_batch_sees_which_collars_uplinks_will_come_again(tmp_path, caplog):
    import logging
    import sqlite3

    import bridge_builders as b

    from lora_bridge.errors import StoreUnavailable

    url = f"sqlite:///{tmp_path / 'reserve.db'}"
    with b.fresh_bridge(url, outbox_worker=False, sqlite_busy_timeout_ms=50) as bridge:
        other = sqlite3.connect(tmp_path / "reserve.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the store takes no write now
        try:
            with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailable):
                bridge.ingest_tts_uplink(b.tts_uplink(b.status(), device_id="collar-07\nforged", f_cnt=12))
        finally:
            other.close()
    (line,) = [r.getMessage() for r in caplog.records if "store cannot take" in r.getMessage()]
    assert "collar-07\\nforged f_cnt=12" in line and "\n" not in line
    # The same line comes from a durable intake's applier, whose bodies were answered 202 long before:
    # what becomes of them is its caller's to say, not "answered as unavailable".
    assert "answered" not in line


def test_operator_who_misspells_a_variable_is_told_instead_of_running_on_the_embedded_store(
    operator_env, capsys, monkeypatch
):
    monkeypatch.delenv("TEMBO_DATABASE_URL")
    monkeypatch.setenv("TEMBO_DATABASE", "postgresql+psycopg://tembo:db-password@db.reserve/tembo")
    err = _refused(capsys, "bridge")
    assert "TEMBO_DATABASE is no setting (did you mean TEMBO_DATABASE_URL?)" in err and "db-password" not in err
    monkeypatch.delenv("TEMBO_DATABASE")

    monkeypatch.setenv("TEMBO_WEBHOOK_SECRETS", SECRET)
    assert "TEMBO_WEBHOOK_SECRETS is no setting (did you mean TEMBO_WEBHOOK_SECRET?)" in _refused(capsys, "bridge")
    assert operator_env == []


@pytest.mark.mqtt
def test_operator_who_gives_two_workers_one_client_id_is_told_why_they_keep_reconnecting(mosquitto, caplog):
    import logging
    import time

    from lora_bridge.adapters.mqtt import MqttIngest, parse_broker_url

    broker = parse_broker_url(mosquitto.url)
    first = MqttIngest(lambda *args, **kwargs: None, broker, client_id="tembo-north")
    second = MqttIngest(lambda *args, **kwargs: None, broker, client_id="tembo-north")
    told: list[str] = []
    with caplog.at_level(logging.WARNING, logger="lora_bridge.adapters.mqtt"):
        first.start()
        second.start()
        try:
            # The broker keeps only the newest connection of a client id: the two take turns for ever.
            deadline = time.monotonic() + 60
            while not told and time.monotonic() < deadline:
                told = [r.getMessage() for r in caplog.records if "taken over" in r.getMessage()]
                time.sleep(0.2)
        finally:
            second.stop()
            first.stop()
    assert told and "give each worker its own --mqtt-client-id" in told[0] and "'tembo-north'" in told[0]


def test_operator_who_names_a_revision_that_is_not_there_is_told_the_revisions(capsys, tmp_path):
    from lora_bridge.store import migrate

    url = f"sqlite:///{tmp_path / 'reserve.db'}"
    assert main(["bridge", "migrate", "--database-url", url, "--revision", "0019"]) == 2
    err = capsys.readouterr().err
    # It had said the store file "cannot be used as the store".
    assert "no revision '0019'; the revisions are 0001_baseline" in err and "cannot be used" not in err

    assert main(["bridge", "migrate", "--database-url", url, "--revision", "0010_collar_shares"]) == 0
    assert main(["bridge", "migrate", "--database-url", url]) == 0
    assert main(["bridge", "migrate", "--database-url", url, "--revision", "0010_collar_shares"]) == 2
    assert f"the store is at {migrate.head_revision()}, past 0010_collar_shares: migrate only upgrades" in (
        capsys.readouterr().err)


def test_a_bridge_refused_for_its_secret_leaves_the_store_untouched(operator_env, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TEMBO_WEBHOOK_SECRET", "short")
    err = _refused(capsys, "bridge", "--database-url", f"sqlite:///{tmp_path / 'new-reserve.db'}")
    # The store had been created and migrated first, and only then the secret refused.
    assert "fewer than 16" in err and not (tmp_path / "new-reserve.db").exists()


def test_operator_whose_rules_file_is_wrong_is_told_in_one_line_before_the_store_is_touched(
    operator_env, capsys, monkeypatch, tmp_path
):
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules.animals.Naserian.immobility]\nradius_mm = 5\n")  # radius_m misspelt
    monkeypatch.setenv("TEMBO_RULES_PATH", str(rules))
    store = tmp_path / "new-reserve.db"
    err = _refused(capsys, "bridge", "--database-url", f"sqlite:///{store}")
    assert f"rules_path (TEMBO_RULES_PATH): rules file {rules}" in err and "radius_mm" in err

    monkeypatch.setenv("TEMBO_RULES_PATH", str(tmp_path / "missing-rules.toml"))
    assert "No such file or directory" in _refused(capsys, "bridge", "--database-url", f"sqlite:///{store}")
    assert not store.exists() and operator_env == []


def test_operator_who_gives_the_network_server_without_https_is_told_before_any_ack_is_lost(operator_env, capsys,
                                                                                             monkeypatch):
    monkeypatch.setenv("TEMBO_NETWORK_SERVER_URL", "eu1.cloud.thethings.network")
    err = _refused(capsys, "bridge")
    assert "network_server_url (TEMBO_NETWORK_SERVER_URL): the network server's URL is https://HOST" in err
    monkeypatch.setenv("TEMBO_NETWORK_SERVER_URL", "https://eu1.cloud.thethings.network")
    assert main(["bridge", "--port", "0"]) == 0
    assert [s.network_server_url for s in operator_env] == ["https://eu1.cloud.thethings.network"]


def test_operator_whose_topic_filter_no_broker_takes_is_told_which_at_start(operator_env, capsys, monkeypatch):
    monkeypatch.setenv("TEMBO_MQTT_TOPICS", '["v3/#/up", "application/+/device/+/event/up"]')
    err = _refused(capsys, "bridge", "--mqtt", "mqtt://broker.reserve")
    # It had been a traceback in the MQTT thread, then "broker not reached within 20 s".
    assert "mqtt_topics (TEMBO_MQTT_TOPICS): 'v3/#/up' is no MQTT topic filter" in err

    monkeypatch.setenv("TEMBO_MQTT_TOPICS", '["v3/tembo+north/devices/+/up"]')
    assert "'v3/tembo+north/devices/+/up' is no MQTT topic filter" in _refused(capsys, "bridge", "--mqtt",
                                                                               "mqtt://broker.reserve")
    assert operator_env == []
