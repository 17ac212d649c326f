"""The bridge under faults and operations, as a ranger and an operator meet them: a push to the network server
whose answer was cut off, what the log says when the network server refuses a push, `/metrics` while the store
refuses, and stopping the bridge (or the demo) after its store file was deleted."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bridge_builders as b
import httpx
import pytest
from bridge_process import Load, bridge_process, disk_limit_with_room, lost_and_twice, post_all, uplink_body
from starlette.testclient import TestClient
from test_bridge_outside_audit import TricklingServer

from lora_bridge.adapters.webhook import create_app
from lora_bridge.server import serve_app_in_thread
from tembo.local_services import free_port

REPO = Path(__file__).resolve().parents[1]  # the demo runs in a folder of its own, with this checkout's code


def _headers_through(server_url: str, device: str, key: str) -> dict[str, str]:
    """The webhook headers The Things Stack sends with device's uplinks: its downlinks go to server_url."""
    push = f"{server_url}/api/v3/as/applications/{b.APPLICATION_ID}/webhooks/tembo/devices/{device}/down/push"
    return dict(b.HEADERS, **{"X-Downlink-Apikey": key, "X-Downlink-Push": push,
                              "X-Downlink-Replace": push.replace("/push", "/replace")})


def _status(f_cnt: int) -> bytes:
    return b.tts_uplink(b.status(time_s=b.T0_S + 600 * f_cnt), device_id="tr-01", f_cnt=f_cnt)


def _cut_off_push_then(store_url: str, network, second_uplink: bytes, queue=None) -> dict:
    """Collar tr-01's mortality alert comes through a route whose server cuts off the answer to the ack's
    push (and, as it turns out, dropped it); the collar's next uplinks come by a working route: its first,
    then second_uplink, then one more. What the working server was pushed after each of them, and the
    downlinks' states at the end. queue(bridge): a ranger's command queued after the alert's ack."""
    trickling = TricklingServer()
    give_up = threading.Timer(20.0, trickling.release.set)  # an unbounded push fails the test, not hangs it
    give_up.start()
    pushed: list[list[str]] = []
    states: list[list[tuple[str, str]]] = []
    try:
        with serve_app_in_thread(trickling.app(), port=free_port()) as running:
            with b.fresh_bridge(store_url, outbox_worker=False, downlink_timeout_s=0.5) as bridge, \
                    TestClient(create_app(bridge)) as client:
                alert = b.tts_uplink(b.alert("poaching_risk", seq=1), device_id="tr-01", f_cnt=1)
                assert client.post("/uplinks/tts", content=alert,
                                   headers=_headers_through(running.url, "tr-01", "NNSXS.CUT")).status_code == 200
                bridge.flush_downlinks()
                if queue is not None:  # pushed in the next flush, to the same server, its answer cut off too
                    queue(bridge)
                    bridge.flush_downlinks()
                trickling.release.set()
                working = _headers_through(network.url, "tr-01", network.api_key)
                for body in (_status(2), second_uplink, _status(4)):
                    assert client.post("/uplinks/tts", content=body, headers=working).status_code == 200
                    bridge.flush_downlinks()
                    pushed.append([p["device_id"] for p in network.pushes])
                    states.append(sorted((d.command, d.state) for d in bridge.downlinks()))
    finally:
        trickling.release.set()
        give_up.cancel()
    return {"cut_off_pushes": trickling.calls, "pushed": pushed, "states": states}


def test_a_rangers_ack_whose_push_never_reached_the_network_goes_again_after_the_collars_second_uplink(
        store_url, network):
    # The first uplink since the push would have carried it in its receive windows, the second the collar's
    # port-31 ack: with neither, it never reached the collar, and it goes at once, not after a third uplink.
    seen = _cut_off_push_then(store_url, network, _status(3))

    assert seen["cut_off_pushes"] == 1
    assert seen["pushed"] == [[], ["tr-01"], ["tr-01"]], "not after the first uplink; after the second, once"
    assert seen["states"][-1] == [("ack_alert", "sent"), ("ack_alert", "unconfirmed")]


def test_a_cut_off_ack_the_collar_did_hear_is_not_sent_to_it_twice(store_url, network):
    # The cut-off push had reached the network after all: the collar heard it after its first uplink and
    # acks it in its second. Nothing goes again.
    seen = _cut_off_push_then(store_url, network, b.tts_uplink(b.ack("ack_alert"), device_id="tr-01", f_cnt=3))

    assert seen["pushed"] == [[], [], []]
    assert seen["states"][-1] == [("ack_alert", "acknowledged")]


def test_a_rangers_tracking_command_behind_a_cut_off_ack_is_given_its_own_uplink_before_it_is_given_up(
        store_url, network):
    # A ranger asks for tracking right after the alert; both pushes are cut off. At the network the ack
    # would go first (after the collar's first uplink), the command after its second, acked in its third:
    # the command is given up on (shown unconfirmed, the ranger's to send again) only after the third.
    def tracking(bridge) -> None:
        bridge.queue_command("tr-01", "tracking", {"minutes": 60})

    seen = _cut_off_push_then(store_url, network, _status(3), queue=tracking)

    assert seen["cut_off_pushes"] == 2
    assert seen["pushed"] == [[], ["tr-01"], ["tr-01"]], "the ack goes again after the second uplink"
    assert [dict(step)["tracking"] for step in seen["states"]] == ["sent", "sent", "unconfirmed"]



# What The Things Stack answers a refused push (its error JSON, docs "API > Concepts > Errors") and what
# ChirpStack v4's REST gateway answers (grpc-gateway's status JSON), as an operator would meet them.
TTS_REFUSALS = {
    400: {"code": 3, "message": "error:pkg/ttnpb:field_value (invalid value of field `frm_payload`)",
          "details": [{"namespace": "pkg/ttnpb", "name": "field_value", "correlation_id": "4f1c9e0b7d2a"}]},
    403: {"code": 7, "message": "error:pkg/auth/rights:no_application_rights (no rights for application "
                                "`tembo@ttn`)",
          "details": [{"namespace": "pkg/auth/rights", "name": "no_application_rights",
                       "correlation_id": "9a8b7c6d5e4f"}]},
    429: {"code": 8, "message": "error:pkg/ratelimit:rate_limit_exceeded (rate limit exceeded)", "details": []},
    500: {"code": 13, "message": "error:pkg/applicationserver:downlink_queue (failed to push downlink queue)",
          "details": [{"namespace": "pkg/applicationserver", "name": "downlink_queue",
                       "correlation_id": "0011aabbccdd"}]},
}
CHIRPSTACK_REFUSALS = {
    400: {"code": 3, "message": "Invalid fPort (must be > 0)", "details": []},
    403: {"code": 7, "message": "Permission denied", "details": []},
    429: {"code": 8, "message": "Too many requests", "details": []},
    500: {"code": 13, "message": "Object does not exist", "details": []},
}


class RefusingServer:
    """A network server that answers every push with status and body (JSON, or text as it is)."""

    def __init__(self, status: int, body: object) -> None:
        self.status, self.body = status, body

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        async def refuse(request) -> Response:
            content = self.body if isinstance(self.body, str) else json.dumps(self.body)
            return Response(content, status_code=self.status, media_type="application/json",
                            headers={"Retry-After": "30"} if self.status == 429 else None)

        return Starlette(routes=[Route("/{path:path}", refuse, methods=["POST"])])


def _refused_push_line(store_url: str, network: str, status: int, body: object, caplog) -> logging.LogRecord:
    """The log line of collar rf-01's alert ack pushed to a server that answers status and body."""
    with serve_app_in_thread(RefusingServer(status, body).app(), port=free_port()) as running, \
            b.fresh_bridge(store_url, network_server_url=running.url, network_server_api_key="NNSXS.KEY",
                           outbox_worker=False) as bridge:
        if network == "tts":
            bridge.ingest_tts_uplink(b.tts_uplink(b.alert("poaching_risk", seq=1), device_id="rf-01", f_cnt=1))
        else:
            bridge.ingest_network_message(
                "chirpstack", "up", b.chirpstack_uplink(b.alert("poaching_risk", seq=1), device_id="rf-01", f_cnt=1))
        with caplog.at_level(logging.WARNING, logger="lora_bridge"):
            assert bridge.flush_downlinks() == 0
    (line,) = [r for r in caplog.records if r.getMessage().startswith("downlink push failed")]
    return line


@pytest.mark.parametrize("network,status", [(n, s) for n in ("tts", "chirpstack") for s in (400, 403, 429, 500)])
def test_operator_reads_why_the_network_server_refused_a_push_with_the_collar_and_frame(
        store_url, network, status, caplog):
    body = (TTS_REFUSALS if network == "tts" else CHIRPSTACK_REFUSALS)[status]
    line = _refused_push_line(store_url, network, status, body, caplog)

    said = line.getMessage()
    assert f"network server answered {status}: {body['message']}" in said, "the server's own reason, whole"
    correlation = (body["details"] or [{}])[0].get("correlation_id")
    assert correlation is None or f"correlation_id {correlation}" in said, "what the network's operators ask for"
    assert "device_id=rf-01" in said and "f_port=32" in said
    assert (line.device_id, line.f_port) == ("rf-01", 32)


def test_a_hostile_network_server_cannot_forge_log_lines_nor_flood_the_log(store_url, caplog):
    forged = "refused\n2026-12-07 20:00:00,000 WARNING lora_bridge.outbox downlink pushed\x1b[2J" + "x" * 10_000
    line = _refused_push_line(store_url, "tts", 400, {"code": 3, "message": forged}, caplog)

    said = line.getMessage()
    assert "\n" not in said and "\x1b" not in said
    assert "refused\\n2026-12-07" in said and "\\x1b[2J" in said, "escaped, still readable"
    assert len(said) < 500, "bounded"


def test_a_proxys_page_before_the_network_server_is_logged_as_text_bounded(store_url, caplog):
    page = "<html><head><title>502 Bad Gateway</title></head><body>" + "<p>nginx</p>" * 1000 + "</body></html>"
    line = _refused_push_line(store_url, "tts", 502, page, caplog)

    assert "network server answered 502: <html><head><title>502 Bad Gateway</title>" in line.getMessage()
    assert len(line.getMessage()) < 500


# ---- stopping the bridge, and the demo, after the store file was deleted ------------------------------


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)


def _closing_lines(stderr: Path) -> list[str]:
    return [line for line in stderr.read_text().splitlines() if "since were not saved" in line]


def _first_notices(stderr: Path) -> list[str]:
    return [line for line in stderr.read_text().splitlines() if "store unavailable: the file" in line
            and "opened_file" in line]


@contextmanager
def _tembo_bridge(store: Path, port: int, stderr: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`tembo bridge` on the SQLite store at store and 127.0.0.1:port (env: TEMBO_* settings on top), its log
    in stderr; yielded once it answers /healthz, killed afterwards should it still run."""
    environment = dict(os.environ, TEMBO_WEBHOOK_SECRET=b.SECRET, PYTHONUNBUFFERED="1", **env)
    with stderr.open("wb") as log_file:
        bridge = subprocess.Popen([sys.executable, "-m", "tembo", "bridge", "--database-url", f"sqlite:///{store}",
                                   "--port", str(port)], env=environment, stderr=log_file, stdout=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _answers(f"http://127.0.0.1:{port}"), 60, "the bridge answers /healthz")
        yield bridge
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_operator_stopping_the_bridge_after_its_store_file_was_deleted_gets_a_prompt_exit_and_its_uplinks_saved(
        tmp_path, port, stop_signal):
    store = tmp_path / "tembo.db"
    stderr = tmp_path / "bridge.log"
    url = f"http://127.0.0.1:{port}"
    with _tembo_bridge(store, port, stderr) as bridge:
        load = Load()
        post_all(url, range(40), load, clients=2)
        for path in tmp_path.glob("tembo.db*"):
            path.unlink()  # a clean-up script's `rm var/tembo.db*`
        refused = Load()
        post_all(url, range(40, 50), refused, clients=2)
        started = time.monotonic()
        bridge.send_signal(stop_signal)
        returncode = bridge.wait(timeout=30)
        stop_s = time.monotonic() - started

    (saved,) = tmp_path.glob("tembo.db.saved-*")
    expected_code = {signal.SIGTERM: 0, signal.SIGINT: 130}[stop_signal]  # a service manager's stop; Ctrl-C
    assert (returncode, len(load.acknowledged()), refused.acknowledged()) == (expected_code, 40, set())
    assert stop_s < 15, "a prompt exit, not the shutdown's refused commits tried again and again"
    (closing,) = _closing_lines(stderr)
    assert f"{store} was deleted" in closing and f"saved to {saved}" in closing
    assert "writes since were not saved (their uplinks were answered 503, never acknowledged" in closing
    assert len(_first_notices(stderr)) == 1, "said once when noticed, not at each refused commit"
    assert lost_and_twice(f"sqlite:///{saved}", load.acknowledged())["lost"] == 0, "every acknowledged uplink saved"


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_a_demo_stopped_with_ctrl_c_after_its_store_was_deleted_exits_at_once_saying_where_its_herd_is_saved(
        tmp_path):
    out, err = tmp_path / "demo.out", tmp_path / "demo.log"
    with out.open("wb") as out_file, err.open("wb") as err_file:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tembo", "demo", "--collars", "5", "--port", str(free_port()),
             "--bridge-port", str(free_port())],
            cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED="1",
                                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))),
            stdout=out_file, stderr=err_file)
    store = tmp_path / "var" / "tembo.db"
    try:
        _wait_for(lambda: "Ctrl-C stops everything" in out.read_text(), 120, "the demo is up")
        _wait_for(lambda: _raw_uplinks(store) >= 20, 60, "the herd's uplinks are stored")
        for path in store.parent.glob("tembo.db*"):
            path.unlink()
        _wait_for(lambda: "webhook answered 503" in err.read_text(), 60, "an uplink refused after the deletion")
        started = time.monotonic()
        demo.send_signal(signal.SIGINT)
        returncode = demo.wait(timeout=30)
        stop_s = time.monotonic() - started
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()

    (saved,) = store.parent.glob("tembo.db.saved-*")
    assert returncode == 0 and stop_s < 15, "the first Ctrl-C stops the demo, promptly"
    (closing,) = _closing_lines(err)
    assert f"saved to {saved.relative_to(tmp_path)}" in closing
    assert _raw_uplinks(saved) >= 20, "what was stored before the deletion is in the saved copy"


def _raw_uplinks(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as reader:
            return int(reader.execute("SELECT COUNT(*) FROM raw_uplinks").fetchone()[0])
    except sqlite3.Error:
        return 0


# ---- /metrics while the store refuses, and after ------------------------------------------------------


def _scraper_headers(sqlite_url: str) -> dict[str, str]:
    """A field technician's token (a role that may scrape), made in the store before the bridge starts."""
    from lora_bridge.service import open_bridge

    with open_bridge(sqlite_url, webhook_secret=b.SECRET) as bridge:
        return b.api_headers(bridge, "field_technician")


def _scrape(url: str, headers: dict[str, str] | None) -> tuple[int, dict[str, float]]:
    """/metrics's status and its tembo_ figures (without labels)."""
    answer = httpx.get(f"{url}/metrics", headers=headers or {}, timeout=30.0)
    figures = {}
    for line in answer.text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("tembo_") and "{" not in name:
            figures[name] = float(value)
    return answer.status_code, figures


def _post(url: str, n: int) -> int:
    return httpx.post(f"{url}/uplinks/tts", content=uplink_body(n), timeout=30.0,
                      headers={"X-Tembo-Secret": b.SECRET, "Content-Type": "application/json"}).status_code


@pytest.mark.slow
def test_an_operators_scrape_tells_refusals_from_uplinks_while_another_program_holds_the_store(sqlite_url, port):
    headers = _scraper_headers(sqlite_url)
    with bridge_process(sqlite_url, port) as child:
        kept = [_post(child.url, n) for n in range(5)]
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=1.0)
        other.execute("BEGIN IMMEDIATE")  # a backup, or a second program writing, past the busy timeout
        refused = [_post(child.url, n) for n in range(5, 8)]
        while_locked = _scrape(child.url, headers)
        without_token = _scrape(child.url, None)
        other.rollback()
        other.close()
        again = _post(child.url, 8)
        after = _scrape(child.url, headers)

    assert (kept, refused, again) == ([200] * 5, [503] * 3, 200)
    status, figures = while_locked
    assert status == 200, "a scrape answers while the store refuses writes"
    assert (figures["tembo_uplinks_stored"], figures["tembo_webhook_refused_total"]) == (5, 3), \
        "refusals counted as refusals, not as stored uplinks"
    assert (figures["tembo_store_up"], figures["tembo_webhook_refusing"]) == (0, 1), "as /healthz says"
    assert figures["tembo_webhook_last_refused_timestamp_seconds"] > 0
    assert without_token[0] == 401 and without_token[1] == {}, "no figure without a token"
    status, figures = after
    assert (status, figures["tembo_uplinks_stored"], figures["tembo_webhook_refused_total"]) == (200, 6, 3)
    assert (figures["tembo_store_up"], figures["tembo_webhook_refusing"]) == (1, 0), "recovered"


@pytest.mark.slow
def test_an_operators_scrape_counts_the_uplinks_refused_on_a_full_disk(sqlite_url, port):
    headers = _scraper_headers(sqlite_url)
    limit = disk_limit_with_room(sqlite_url)
    load = Load()
    with bridge_process(sqlite_url, port, file_size_limit=limit) as full:
        post_all(full.url, range(90), load, clients=2)  # the store fills after about 20 of them
        status, figures = _scrape(full.url, headers)

    refused = sum(1 for answer in load.answers.values() if answer == 503)
    assert refused > 0, "the file-size limit was reached part way"
    assert status == 200, "a full disk still reads: the token is checked, the figures answered"
    assert figures["tembo_webhook_refused_total"] == refused
    assert figures["tembo_uplinks_stored"] == len(load.acknowledged())
    assert figures["tembo_store_up"] == 0


@pytest.mark.slow
def test_a_scrape_of_a_bridge_whose_store_was_deleted_answers_no_figure_and_counts_right_once_it_is_put_back(
        sqlite_url, port):
    headers = _scraper_headers(sqlite_url)
    store = Path(sqlite_url.removeprefix("sqlite:///"))
    with bridge_process(sqlite_url, port) as child:
        kept = [_post(child.url, n) for n in range(6)]
        for path in store.parent.glob(f"{store.name}*"):
            path.unlink()
        refused = _post(child.url, 6)
        deleted = _scrape(child.url, headers)
        deleted_without_token = _scrape(child.url, None)
    (saved,) = store.parent.glob(f"{store.name}.saved-*")
    saved.rename(store)  # the operator puts the saved store back, as the bridge's last line said
    with bridge_process(sqlite_url, port) as child:
        again = _post(child.url, 6)  # the network server's retry
        after = _scrape(child.url, headers)

    assert (kept, refused, again) == ([200] * 6, 503, 200)
    assert deleted == (503, {}), "no figure the bridge cannot check the token of"
    assert deleted_without_token == (401, {})
    status, figures = after
    assert (status, figures["tembo_uplinks_stored"], figures["tembo_store_up"]) == (200, 7, 1)


@pytest.mark.slow
def test_an_operators_scrape_shows_the_durable_intakes_backlog_while_the_store_is_held(sqlite_url, port):
    headers = _scraper_headers(sqlite_url)
    with bridge_process(sqlite_url, port, webhook_ack="durable") as child:
        other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=1.0)
        other.execute("BEGIN IMMEDIATE")  # the store is held; the journal beside it still takes bodies
        answered = [_post(child.url, n) for n in range(4)]
        _, held = _scrape(child.url, headers)
        other.rollback()
        other.close()
        _wait_for(lambda: _scrape(child.url, headers)[1].get("tembo_intake_backlog") == 0, 60, "the backlog applied")
        _, after = _scrape(child.url, headers)

    assert answered == [202] * 4
    assert (held["tembo_intake_backlog"], held["tembo_webhook_refused_total"]) == (4, 0), "kept, not refused"
    assert (after["tembo_uplinks_stored"], after["tembo_webhook_refused_total"]) == (4, 0)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_scrape_while_postgresql_is_stopped_answers_no_figure_and_counts_the_refusals_once_it_is_back(
        port):
    import tempfile

    from tembo.local_services import PostgresServer

    # Its own server, as the conftest's (a folder the postgres user may enter): this test stops it.
    with PostgresServer.started(Path(tempfile.mkdtemp(prefix="tembo-pg-"))) as server:
        url = server.create_database()
        headers = _scraper_headers(url)
        with bridge_process(url, port) as child:
            kept = [_post(child.url, n) for n in range(3)]
            server.stop()
            refused = [_post(child.url, n) for n in range(3, 5)]
            stopped = _scrape(child.url, headers)
            stopped_without_token = _scrape(child.url, None)
            _start_again(server)
            _wait_for(lambda: _post(child.url, 3) == 200, 60, "the network server's retry is kept")
            again = _post(child.url, 4)
            after = _scrape(child.url, headers)

    assert (kept, refused, again) == ([200] * 3, [503] * 2, 200)
    assert stopped == (503, {}) and stopped_without_token == (401, {})
    status, figures = after
    assert (status, figures["tembo_uplinks_stored"], figures["tembo_store_up"]) == (200, 5, 1)
    assert figures["tembo_webhook_refused_total"] >= 2, "the refusals while it was down, counted"


def _start_again(server) -> None:
    """Start a stopped PostgresServer on its data, port and socket (its `start` makes a new cluster)."""
    options = f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    command = [str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-l", str(server.folder / "server.log"),
               "-o", options, "-w", "-t", "60", "start"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=90)


@pytest.mark.slow
@pytest.mark.parametrize("applier", ["thread", "process"])
def test_an_operator_stopping_a_durable_bridge_whose_journal_was_deleted_gets_its_bodies_saved_and_applied_next_start(
        tmp_path, port, applier):
    store = tmp_path / "tembo.db"
    stderr = tmp_path / "bridge.log"
    url = f"http://127.0.0.1:{port}"
    with _tembo_bridge(store, port, stderr, TEMBO_WEBHOOK_ACK="durable", TEMBO_INTAKE_APPLIER=applier) as bridge:
        other = sqlite3.connect(str(store), timeout=1.0)
        other.execute("BEGIN IMMEDIATE")  # the store held: the bodies wait in the journal, answered 202
        answered = [_post(url, n) for n in range(3)]
        for path in tmp_path.glob("tembo.db*"):
            path.unlink()
        other.rollback()
        other.close()
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=60) == 0

    assert answered == [202] * 3
    assert not (tmp_path / "tembo.db-intake").exists()
    said = stderr.read_text()
    assert "wait in the journal for the next start" not in said, "the journal was deleted: nothing waits in it"
    (saved_journal,) = tmp_path.glob("tembo.db-intake.saved-*")
    (told,) = [line for line in said.splitlines() if f"saved to {saved_journal}" in line]
    assert f"the 3 bodies it answered 202 and the store had not applied are saved to {saved_journal}" in told
    assert f"move it to {store}-intake and start the bridge" in told

    # The operator does as told (the store's own saved copy back too) and starts the bridge again.
    for saved_store in tmp_path.glob("tembo.db.saved-*"):  # when the bridge had found the store gone too
        saved_store.rename(store)
    saved_journal.rename(tmp_path / "tembo.db-intake")
    with _tembo_bridge(store, port, tmp_path / "again.log", TEMBO_WEBHOOK_ACK="durable",
                       TEMBO_INTAKE_APPLIER=applier) as bridge:
        _wait_for(lambda: _raw_uplinks(store) == 3, 60, "the saved bodies applied")
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(timeout=60)
    figures = lost_and_twice(f"sqlite:///{store}", range(3))
    assert (figures["lost"], figures["applied_twice"]) == (0, 0), "nothing answered 202 lost, nor applied twice"
