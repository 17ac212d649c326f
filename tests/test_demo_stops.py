"""A new user's `make demo`: every demo account it prints signs in to its dashboard, and however the
demo ends (Ctrl-C, `kill`, a closed terminal, even `kill -9` of its launcher) nothing of it stays
behind holding the dashboard's port for the next run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

TEMBO = Path(sys.executable).with_name("tembo")
STARTED = "Ctrl-C stops everything."
WAIT_S = 180  # a loaded machine starts Streamlit slowly; the test waits for what it needs, never a fixed time


@pytest.fixture
def demos():
    """The demos a test starts, killed with their process group should the test end early."""
    started: list[subprocess.Popen] = []
    yield started
    for demo in started:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


def start_demo(tmp_path: Path, demos: list[subprocess.Popen]) -> tuple[subprocess.Popen, int, Path]:
    """The live demo in its own session (as a terminal runs it), its dashboard's port and its output."""
    port, bridge_port = free_port(), free_port()
    out = tmp_path / "demo.out"
    demo = subprocess.Popen(
        [str(TEMBO), "demo", "--collars", "3", "--pace", "600", "--port", str(port), "--bridge-port", str(bridge_port),
         "--database-url", f"sqlite:///{tmp_path / 'tembo.db'}"],
        stdout=out.open("w"), stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
        env=dict(os.environ, TEMBO_DASHBOARD_ROLE=""),
        # started with SIGINT ignored, as a script's background job or CI starts it: Ctrl-C must still stop it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    demos.append(demo)
    until(lambda: STARTED in out.read_text() and listening(port), f"the demo's dashboard on {port}", demo, out)
    return demo, port, out


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def until(condition, what: str, demo: subprocess.Popen | None = None, out: Path | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if demo is not None and demo.poll() is not None:
            pytest.fail(f"the demo ended early ({demo.returncode}):\n{out.read_text() if out else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}:\n{out.read_text() if out else ''}")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_demo_stopped_by_ctrl_c_kill_or_a_closed_terminal_stops_its_dashboard(tmp_path, demos, stop):
    demo, port, out = start_demo(tmp_path, demos)
    printed = out.read_text()
    assert "every account below signs in" in printed
    assert {"ranger", "researcher", "field_technician", "admin"} <= set(printed.split())
    demo.send_signal(stop)
    assert demo.wait(timeout=WAIT_S) == 0
    until(lambda: not listening(port), f"port {port} to be free again")
    assert "stopping Tembo demo" in out.read_text() and "Traceback" not in out.read_text()


@pytest.mark.slow
def test_a_demo_whose_launcher_is_killed_outright_takes_its_dashboard_with_it(tmp_path, demos):
    demo, port, _ = start_demo(tmp_path, demos)
    demo.kill()
    demo.wait(timeout=WAIT_S)
    until(lambda: not listening(port), f"the dashboard on {port} to end with its launcher")
