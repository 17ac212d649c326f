"""Running the bridge's HTTP app (webhook and API) under uvicorn (used by `tembo bridge` and the demo)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from lora_bridge.adapters.api import add_collector, create_app
from lora_bridge.adapters.mqtt import workers_from_settings
from lora_bridge.adapters.mqtt_metrics import MqttCollector
from lora_bridge.errors import log_failure
from lora_bridge.service import Bridge
from lora_bridge.settings import BridgeSettings, check_webhook_secret, load_settings
from lora_bridge.start_up_heap import freeze_start_up_heap
from lora_bridge.store.opened_file import save_lost_files

log = logging.getLogger(__name__)


def build_server(settings: BridgeSettings | None = None, bridge: Bridge | None = None) -> uvicorn.Server:
    """A uvicorn Server for the webhook and API app (not started); run it with .run() or in a thread.

    InsecureSettings when the webhook secret is empty, missing or published without the demo opt-in.
    """
    settings = settings or load_settings()
    if bridge is None:
        check_webhook_secret(settings)  # before the store is opened: nothing touched, nothing to close
        bridge = Bridge(settings)
    config = uvicorn.Config(
        create_app(bridge),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )
    return uvicorn.Server(config)


@dataclass
class RunningServer:
    """A uvicorn server running in a daemon thread of this process; `url` is where it listens."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        """Ask the server to finish and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(server: uvicorn.Server, timeout_s: float = 20.0) -> RunningServer:
    """Run server in a daemon thread; return once it accepts connections.

    RuntimeError when it stops (a port already taken) or is not up within timeout_s.
    """
    def run() -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn exits when it cannot start (e.g. cannot bind); reported below
            log.error("server on %s:%d stopped at start-up", server.config.host, server.config.port)

    freeze_start_up_heap()
    thread = threading.Thread(target=run, name="tembo-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"server on {server.config.host}:{server.config.port} did not start")
        time.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return RunningServer(server, thread, f"http://{host}:{port}")


def serve_app_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve an ASGI app on host:port (0: a free port the system picks) in a thread; see start_in_thread."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    return start_in_thread(uvicorn.Server(config))


class RulesTimer:
    """The bridge's timer, in a daemon thread; ingest never waits on an outside service.

    Every short tick (`notify_every_s`, `retry_every_s`, whichever is shorter) it works the
    notification outbox and processes bodies whose processing met an unavailable store (so they are
    applied by themselves once it is back); every `every_s` it also runs the time-driven rules
    (offline, escalation, catch-up), compacts old raw bodies and wakes the downlink outbox. A failure
    is logged with its traceback `redacted` (a store error's SQL parameters hold collars' positions)."""

    def __init__(
        self,
        bridge: Bridge,
        every_s: float,
        notify_every_s: float | None = None,
        retry_every_s: float | None = None,
    ) -> None:
        self.bridge = bridge
        self.every_s = every_s
        # The outbox is worked more often than the rules run: a poaching alert should not wait 5 minutes.
        self.notify_every_s = min(notify_every_s or bridge.settings.notify_every_s, every_s)
        self.retry_every_s = min(retry_every_s or max(1.0, bridge.settings.retry_pending_after_s), every_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tembo-rules", daemon=True)

    def run_once(self) -> list[int]:
        """Retry pending bodies, run the rules now (wall clock), compact (raw bodies, dead letters), prune the audit log, wake the downlink outbox and
        work the notification outbox; the ids of alerts raised. Errors are logged, not raised."""
        self.retry_pending()
        raised: list[int] = []
        try:
            raised = self.bridge.run_rules()
        except Exception as error:
            log_failure(log, error, "server rules failed")
        try:
            self.bridge.compact_dead_letters()  # first: a letter deleted lets its raw copies be compacted
            self.bridge.compact_raw_bodies()
        except Exception as error:
            log_failure(log, error, "raw body compaction failed")
        try:
            self.bridge.prune_audit_log()
        except Exception as error:
            log_failure(log, error, "audit log pruning failed")
        self.bridge.wake_outbox()
        self.flush_notifications()
        return raised

    def flush_notifications(self) -> None:
        """Send what the notification outbox has due. Errors are logged, not raised."""
        try:
            self.bridge.flush_notifications()
        except Exception as error:
            log_failure(log, error, "notification outbox failed")

    def retry_pending(self) -> None:
        """Process bodies stored but not yet applied (a store error came between)."""
        try:
            self.bridge.process_pending(older_than_s=self.bridge.settings.retry_pending_after_s)
        except Exception as error:
            log_failure(log, error, "pending bodies not processed")

    def start(self) -> None:
        """Start the background loop."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        next_rules = time.monotonic() + self.every_s
        while not self._stop.wait(min(self.notify_every_s, self.retry_every_s)):
            if time.monotonic() >= next_rules:
                next_rules = time.monotonic() + self.every_s
                self.run_once()
            else:
                self.retry_pending()
                self.flush_notifications()


class _Terminated(BaseException):
    """SIGTERM came: unwinds `serve` so that its clean-up runs. Uvicorn stops serving on SIGTERM and then
    raises the signal again, which Python's default handler answered by ending the process on the spot:
    the MQTT workers kept their collar shares until their leases ran out, and the durable intake's
    answered bodies stayed in its journal beside the store instead of being applied to it."""


def _terminated(_signum: int, _frame: object) -> None:
    raise _Terminated


def _interrupted(_signum: int, _frame: object) -> None:
    """Ctrl-C: KeyboardInterrupt, as Python's own handler raises it. Installed in its place so that the
    asyncio runner under uvicorn keeps to it: with Python's handler in place the runner put its own, which
    took uvicorn's raised-again SIGINT for a cancellation and, on a loaded machine, at times let the bridge
    end with 0 instead of a Ctrl-C's 130."""
    raise KeyboardInterrupt


def serve(settings: BridgeSettings | None = None, bridge: Bridge | None = None) -> None:
    """Serve the webhook until interrupted, with the rules on a timer. Ctrl-C (SIGINT, then
    KeyboardInterrupt) and SIGTERM (a service manager's stop; `serve` then returns) stop it cleanly:
    requests in flight are answered, MQTT workers give their shares back, the durable intake applies
    what it answered, the applier process ends.

    Bodies stored but not processed before a previous stop are processed first.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    previous_int = signal.signal(signal.SIGINT, _interrupted) if in_main_thread else None
    try:
        _serve(settings, bridge)
    except _Terminated:
        log.info("bridge stopped on SIGTERM")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def _serve(settings: BridgeSettings | None, bridge: Bridge | None) -> None:
    settings = settings or load_settings()
    server = build_server(settings, bridge)
    running_bridge: Bridge = server.config.app.state.bridge
    running_bridge.process_pending()
    mqtt_workers = workers_from_settings(running_bridge, settings)
    if mqtt_workers:
        add_collector(server.config.app, MqttCollector(mqtt_workers))
    if mqtt_workers or not running_bridge.applies_elsewhere():
        # This process's batches (MQTT workers, the webhook's group commit, the durable intake's applier
        # thread) start without one-time costs (`lora_bridge.warm_up`); an applier process warms itself.
        log.debug("batch path warmed up in %.0f ms", 1000 * running_bridge.warm_up())
    running_bridge.start_outbox_worker()
    rules = RulesTimer(running_bridge, settings.rules_every_s)
    rules.start()
    started: list[Any] = []
    try:
        for worker in mqtt_workers:  # BrokerUnusable: the bridge stops as it came (timers, store, applier)
            worker.start()
            started.append(worker)
        log.info("bridge listening on http://%s:%d", settings.host, settings.port)
        freeze_start_up_heap()
        server.run()
    finally:
        for worker in started:
            worker.stop()
        rules.stop()
        save_lost_files(running_bridge.db.write_engine)  # a store file deleted meanwhile: saved, and said
        running_bridge.close()
