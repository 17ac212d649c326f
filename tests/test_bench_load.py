"""The bridge bench's load process (`lora_bridge.bench_load`): it posts as a network server's webhook
client does and reads every answer HTTP/1.1 allows, so the bench counts what the bridge said."""

from __future__ import annotations

import json
import socketserver
import threading
import time

import pytest

from lora_bridge.adapters.webhook import SECRET_HEADER
from lora_bridge.bench_load import NO_ANSWER, drive


def _answer(status: int, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


# What the stand-in webhook answers to each body (the body names its answer).
ANSWERS = {
    b'{"n": "plain"}': _answer(202, b'{"intake_id": 7}', "Content-Length: 16", "Content-Type: application/json"),
    b'{"n": "chunked"}': _answer(202, _chunked(b'{"raw_upl', b'ink_id": 8}'), "Transfer-Encoding: chunked"),
    b'{"n": "closing"}': _answer(200, b'{"raw_uplink_id": 9}', "Content-Length: 20", "Connection: close"),
    b'{"n": "refused"}': _answer(400, b'{"detail": "no"}', "content-length: 16"),
    b'{"n": "garbled"}': b"SMTP 220 hello\r\n\r\n",
}


class _Webhook(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.connections += 1
        while True:
            line = self.rfile.readline()
            if not line:
                return
            headers = {}
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers["content-length"]))
            self.server.seen.append((line.split()[1], headers.get(SECRET_HEADER.lower()), body))
            self.server.arrived.append(time.time())
            if body == b'{"n": "dropped"}':
                return  # the connection ends without an answer
            answer = ANSWERS[body]
            self.wfile.write(answer)
            if b"Connection: close" in answer or answer.startswith(b"SMTP"):
                return


@pytest.fixture
def webhook():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Webhook)
    server.daemon_threads = True
    server.connections, server.seen, server.arrived = 0, [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_bench_load_counts_each_answer_as_the_webhook_gave_it_and_reconnects_when_a_connection_ends(webhook, tmp_path):
    names = ["plain", "chunked", "closing", "plain", "dropped", "refused", "garbled", "plain"]
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_bytes(b"\n".join(json.dumps({"n": n}).encode() for n in names))

    said = drive(f"http://127.0.0.1:{webhook.server_address[1]}", SECRET_HEADER, "s3cret", str(bodies), connections=1)

    assert said["statuses"] == [202, 202, 200, 202, NO_ANSWER, 400, NO_ANSWER, 202]
    assert said["raw_ids"] == [7, 8, 9, 7, None, None, None, 7]
    # a new connection after the server's "Connection: close", after the dropped one, after the garbled answer
    assert webhook.connections == 4
    assert {(path, secret) for path, secret, _ in webhook.seen} == {(b"/uplinks/tts", "s3cret")}
    assert [json.loads(body)["n"] for _, _, body in webhook.seen] == names
    assert all(latency > 0 for latency in said["latencies_ms"]) and said["cpu_s"] > 0


def test_bench_load_spreads_the_bodies_over_its_connections_each_posted_once(webhook, tmp_path):
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_bytes(b"\n".join([b'{"n": "plain"}'] * 40))

    said = drive(f"http://127.0.0.1:{webhook.server_address[1]}", SECRET_HEADER, "s3cret", str(bodies), connections=4)

    assert said["statuses"] == [202] * 40 and len(webhook.seen) == 40
    assert webhook.connections == 4


def test_bench_load_offered_at_a_rate_posts_each_body_when_it_is_due_and_times_it_from_then(webhook, tmp_path):
    # The network server's pace, not the answers': 20 bodies at 50 per second take about 0.38 s however
    # quickly the webhook answers, and a body is never posted before it is due.
    bodies = tmp_path / "bodies.jsonl"
    bodies.write_bytes(b"\n".join([b'{"n": "plain"}'] * 20))

    said = drive(f"http://127.0.0.1:{webhook.server_address[1]}", SECRET_HEADER, "s3cret", str(bodies), connections=2, rate=50.0)

    assert said["statuses"] == [202] * 20
    due = [said["started_wall"] + i / 50 for i in range(20)]
    assert said["sent_wall"] == pytest.approx(due, abs=1e-6)
    # the k-th body to arrive came no sooner than the k-th was due (a millisecond for the clocks' reads)
    assert all(arrived >= when - 0.001 for arrived, when in zip(sorted(webhook.arrived), due, strict=True))
    assert said["elapsed_s"] >= 19 / 50
    assert all(latency > 0 for latency in said["latencies_ms"])
