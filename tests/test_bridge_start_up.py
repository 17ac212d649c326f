"""The operator starting `tembo bridge` for a reserve: a configuration mistake is told in one line that
names the setting and where it came from, the command exits 2, and nothing starts (no traceback,
never a bridge that listens with settings it did not understand)."""

from __future__ import annotations

import pytest

from tembo.cli import main

SECRET = "a-long-random-webhook-secret-for-the-reserve"


@pytest.fixture
def operator_env(monkeypatch, tmp_path):
    """A shell with a good secret and an embedded store in tmp_path; nothing else of TEMBO_* set."""
    for name in ("TEMBO_CONFIG", "TEMBO_PORT", "TEMBO_MQTT_URL", "TEMBO_MQTT_MORE_URLS", "TEMBO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMBO_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TEMBO_DATABASE_URL", f"sqlite:///{tmp_path / 'reserve.db'}")
    started = []
    monkeypatch.setattr("lora_bridge.server.serve", lambda settings: started.append(settings))
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

    assert main(["bridge", "--mqtt", "mqtts://broker.reserve"]) == 0

    (settings,) = operator_env
    assert (settings.port, settings.mqtt_share_group, settings.mqtt_url) == (8900, "tembo", "mqtts://broker.reserve")
