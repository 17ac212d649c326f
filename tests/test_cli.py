"""The thin `tembo` command line: what a new user types."""

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
