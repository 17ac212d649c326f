"""The thin `tembo` command line: what a new user types."""

import json
import subprocess
import sys

from tembo.cli import build_parser, main

SUBCOMMANDS = ("demo", "simulate", "bridge", "dashboard", "models", "release", "bench")


def _tembo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tembo.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    done = _tembo("--help")
    assert done.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name}" in done.stdout


def test_unknown_benchmark_exits_with_usage_error_and_names_the_known_ones(capsys):
    assert main(["bench", "no-such-bench", "--json"]) == 2
    assert "collar" in capsys.readouterr().err


def test_headless_demo_options_parse_as_the_readme_says():
    args = build_parser().parse_args(["demo", "--headless", "--collars", "20", "--days", "2", "--seed", "1"])
    assert (args.headless, args.collars, args.days, args.seed) == (True, 20, 2.0, 1)


def test_researcher_sees_what_the_shipped_model_costs_on_the_collar(capsys):
    from pathlib import Path

    import collar_firmware

    assert main(["models", "budget"]) == 0
    figures = json.loads(capsys.readouterr().out)
    blob = Path(collar_firmware.__file__).with_name("default_model.bin")
    assert figures["blob_bytes"] == blob.stat().st_size
    assert figures["trees"] >= 1 and figures["max_depth"] <= 8


def test_researcher_gets_a_clear_error_for_a_corrupt_blob(tmp_path, capsys):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model")
    assert main(["models", "budget", str(bad)]) == 1
    assert "truncated" in capsys.readouterr().err


def test_researcher_scores_the_shipped_model_on_the_twins_labelled_animals(capsys):
    assert main(["models", "evaluate", "simulated:1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["applicable"] and result["classes"] == ["rest", "forage", "walk", "run"]
    assert set(result["per_animal_accuracy"]) == {"animal-01", "animal-02", "animal-03", "animal-04"}
    assert result["windows"] == 4 * 3 * 4 * 3  # animals x bouts x behaviours x 10 s windows in a 30 s bout
    assert result["macro_f1"] > 0.8


def test_live_demo_says_which_port_is_taken_instead_of_crashing(capsys):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert main(["demo", "--port", str(taken), "--bridge-port", "0"]) == 1
    assert f"port {taken} is in use" in capsys.readouterr().out


def _dashboard_store(monkeypatch, *args: str) -> str:
    """The --database-url that `tembo dashboard ARGS` hands the Streamlit app (nothing is started)."""
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda command: started.append(command) or 0)
    assert main(["dashboard", *args]) == 0
    command = started[0]
    return command[command.index("--database-url") + 1]


def test_dashboard_reads_the_store_the_bridge_writes_when_the_environment_names_it(monkeypatch, tmp_path):
    from lora_bridge.settings import load_settings

    url = f"sqlite:///{tmp_path / 'reserve.db'}"
    monkeypatch.setenv("TEMBO_DATABASE_URL", url)
    assert load_settings().database_url == url  # what `tembo bridge` writes to
    assert _dashboard_store(monkeypatch) == url


def test_dashboard_reads_the_store_named_in_the_tembo_config_file(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'control-room.db'}"
    config = tmp_path / "tembo.toml"
    config.write_text(f'[bridge]\ndatabase_url = "{url}"\n')
    monkeypatch.delenv("TEMBO_DATABASE_URL", raising=False)
    monkeypatch.setenv("TEMBO_CONFIG", str(config))
    assert _dashboard_store(monkeypatch) == url


def test_dashboard_database_url_option_beats_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TEMBO_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    chosen = f"sqlite:///{tmp_path / 'chosen.db'}"
    assert _dashboard_store(monkeypatch, "--database-url", chosen) == chosen


def test_bridge_migrate_takes_the_database_url_given_before_or_after_the_command_word(tmp_path, capsys):
    # An operator's `tembo bridge --database-url URL migrate` had migrated the embedded ./var store instead.
    before, after = tmp_path / "before.db", tmp_path / "after.db"

    assert main(["bridge", "--database-url", f"sqlite:///{before}", "migrate"]) == 0
    assert main(["bridge", "migrate", "--database-url", f"sqlite:///{after}"]) == 0

    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [report["database"] for report in reports] == [f"sqlite:///{before}", f"sqlite:///{after}"]
    assert before.exists() and after.exists()


def test_operator_gives_the_bridge_one_mqtt_login_per_tts_application(monkeypatch, tmp_path):
    import lora_bridge.server

    served = []
    monkeypatch.setattr(lora_bridge.server, "serve", lambda settings: served.append(settings))
    north = "mqtts://tembo-north@kws:NNSXS.NORTHKEY@eu1.cloud.thethings.industries:8883"
    south = "mqtts://tembo-south@kws:NNSXS.SOUTHKEY@eu1.cloud.thethings.industries:8883"

    code = main(["bridge", "--database-url", f"sqlite:///{tmp_path / 'store.db'}", "--mqtt", north, "--mqtt", south])
    (settings,) = served

    assert code == 0
    assert (settings.mqtt_url, settings.mqtt_more_urls) == (north, [south])
    assert "NORTHKEY" not in repr(settings) and "SOUTHKEY" not in repr(settings)


def test_a_command_run_without_verbose_after_a_verbose_one_in_the_same_process_logs_only_warnings(
    tmp_path, caplog
):
    """`-v` is the command's own: a process that ran `tembo -v ...` before (a script calling main, the
    test suite) had kept INFO for every later command, whose one-line refusals then came with the
    store's migration log above them."""
    assert main(["-v", "bridge", "migrate", "--database-url", f"sqlite:///{tmp_path / 'first.db'}"]) == 0
    assert "store migrated" in caplog.text  # the verbose run tells it
    caplog.clear()

    assert main(["bridge", "migrate", "--database-url", f"sqlite:///{tmp_path / 'second.db'}"]) == 0

    assert "store migrated" not in caplog.text


def test_technician_without_the_venv_on_path_runs_python_m_tembo_as_the_tembo_command():
    done = subprocess.run([sys.executable, "-m", "tembo", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tembo ")
    for name in SUBCOMMANDS:
        assert f"    {name}" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "tembo", "bench", "no-such-bench", "--json"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "collar" in refused.stderr
