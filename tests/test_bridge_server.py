"""`tembo bridge`: the webhook served by uvicorn, and what it finishes after a restart."""

from __future__ import annotations

import logging
import socket

import bridge_builders as b
import httpx
import pytest

from lora_bridge import ingest
from lora_bridge.server import RulesTimer, build_server, start_in_thread
from lora_bridge.service import open_bridge
from lora_bridge.settings import load_settings


def test_served_bridge_takes_a_tts_webhook_on_its_port(store_url, port):
    settings = load_settings(database_url=store_url, webhook_secret=b.SECRET, port=port)
    server = build_server(settings)
    try:
        with start_in_thread(server):
            url = f"http://127.0.0.1:{port}"
            health = httpx.get(f"{url}/healthz")
            reply = httpx.post(
                f"{url}/uplinks/tts", content=b.tts_uplink(b.status()), headers={"X-Tembo-Secret": b.SECRET}
            )
    finally:
        server.config.app.state.bridge.close()

    assert health.json() == {"status": "ok"}
    assert reply.status_code == 200 and reply.json()["status"] == "processed"
    with open_bridge(store_url) as reader:
        assert reader.counts()["positions"] == 1


def test_body_stored_before_a_crash_is_processed_on_restart(store_url):
    with b.fresh_bridge(store_url) as bridge:
        ingest.store_raw(bridge.db, b.tts_uplink(b.alert("mortality", seq=1)), "tts")  # then the power failed
        assert bridge.counts()["alerts"] == 0

        with open_bridge(bridge.settings.database_url) as restarted:
            report = restarted.process_pending()
            (alert,) = restarted.open_alerts(viewer=b.RANGER)

    assert (report.attempted, report.processed) == (1, 1)
    assert alert.alert_type == "mortality"


def test_logs_name_the_collar_and_frame_counter(store_url, caplog):
    with b.fresh_bridge(store_url) as bridge, caplog.at_level(logging.INFO, logger="lora_bridge"):
        bridge.ingest_tts_uplink(b.tts_uplink(b.alert("tamper", seq=6), device_id="collar-07", f_cnt=42))

    processed = [r for r in caplog.records if r.getMessage().startswith("uplink processed")]
    raised = [r for r in caplog.records if r.getMessage().startswith("alert raised")]
    assert (processed[0].device_id, processed[0].f_cnt) == ("collar-07", 42)
    assert "device_id=collar-07 f_cnt=42" in processed[0].getMessage()
    assert raised[0].alert_id == 1 and "type=tamper priority=300" in raised[0].getMessage()


def test_rules_timer_raises_offline_for_a_collar_silent_since_long_ago(store_url):
    with b.fresh_bridge(store_url) as bridge:
        bridge.ingest_tts_uplink(b.tts_uplink(b.status(), f_cnt=1))  # heard in March 2026
        timer = RulesTimer(bridge, every_s=3600)

        raised = timer.run_once()
        again = timer.run_once()

        (alert,) = bridge.open_alerts(viewer=b.RANGER)
    assert raised == [alert.alert_id] and again == []
    assert (alert.alert_type, alert.source) == ("offline", "server")


def test_a_webhook_whose_port_is_taken_says_so_instead_of_waiting_forever(store_url):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        server = build_server(load_settings(database_url=store_url, port=taken, log_level="critical", webhook_secret=b.SECRET))
        try:
            with pytest.raises(RuntimeError, match=f"127.0.0.1:{taken} did not start"):
                start_in_thread(server)
        finally:
            server.config.app.state.bridge.close()


def test_a_sender_trickling_its_body_is_cut_off_and_holds_up_no_collars_uplink(sqlite_url, port):
    # A slowloris-like client: headers promising a body, then a few bytes and silence. The Things Stack
    # itself gives up after 10 s, so a body not in by the answer's deadline is nobody's uplink.
    settings = load_settings(database_url=sqlite_url, webhook_secret=b.SECRET, port=port, webhook_answer_within_s=1)
    server = build_server(settings)
    try:
        with start_in_thread(server), socket.create_connection(("127.0.0.1", port), timeout=60) as slow:
            slow.sendall(b"POST /uplinks/tts HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
                         b"X-Tembo-Secret: " + b.SECRET.encode() + b"\r\nContent-Length: 4096\r\n\r\n{\"end_")
            other = httpx.post(f"http://127.0.0.1:{port}/uplinks/tts", content=b.tts_uplink(b.status()),
                               headers={"X-Tembo-Secret": b.SECRET}, timeout=60)
            answer = b""
            while chunk := slow.recv(4096):  # the bridge answers and closes; without it this waited for ever
                answer += chunk
    finally:
        server.config.app.state.bridge.close()

    assert other.status_code == 200 and other.json()["status"] == "processed"
    assert answer.startswith(b"HTTP/1.1 408") and b"nothing was kept" in answer
    with open_bridge(sqlite_url) as reader:
        assert reader.counts()["uplinks_stored"] == 1
