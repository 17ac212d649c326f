"""Wire Tembo's rooms into the demo: simulated herd -> The Things Stack webhooks -> bridge -> dashboard.

`run_headless` runs the whole pipeline over real HTTP as fast as it can and returns the counts;
`run_live` paces the herd (one simulated hour per wall second by default) and starts the dashboard.
No business logic lives here: the twin, the bridge and the dashboard do the work.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from lora_bridge.server import RunningServer

log = logging.getLogger("tembo.demo")

DEMO_START = datetime(2026, 3, 1, tzinfo=UTC)
DEMO_APPLICATION = "tembo-demo"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Pipeline:
    """The demo's running parts: the herd, the bridge behind its webhook, the network-server stand-in."""

    fleet: object
    bridge: object
    webhook: RunningServer
    network: object
    secret: str


@contextmanager
def pipeline(collars: int, days: float | None, seed: int, database_url: str,
             bridge_port: int = 0, start: datetime = DEMO_START,
             outbox_worker: bool = True) -> Iterator[Pipeline]:
    """Start bridge, webhook and network-server stand-in; register the herd; stop everything after.

    Without `outbox_worker` the bridge pushes no downlink by itself: the caller flushes the outbox
    between uplinks (the headless run, whose counts must not depend on the machine's load)."""
    from lora_bridge.adapters.api import create_app
    from lora_bridge.server import serve_app_in_thread
    from lora_bridge.service import Bridge
    from lora_bridge.settings import load_settings
    from lora_bridge.store.opened_file import save_lost_files
    from simulator.fleet import Fleet
    from simulator.network_server import NetworkServerStandIn
    from simulator.reserve import demo_reserve

    fleet = Fleet(n_collars=collars, seed=seed, start=start, days=days)
    with ExitStack() as running:  # whatever started is stopped, in reverse order, even on failure
        network = NetworkServerStandIn(fleet, application_id=DEMO_APPLICATION)
        network.start()
        running.callback(network.stop)
        # The simulated herd's clock runs ahead of the wall clock on purpose (paced or as fast as it
        # can): its network-server times are believed for the whole simulated period.
        # A fresh random webhook secret for every demo run: nothing published works against it.
        ahead_s = ((days if days is not None else 365) + 1) * 86400.0
        settings = load_settings(database_url=database_url, network_server_url=network.url,
                                 network_server_api_key=network.api_key, max_clock_ahead_s=ahead_s,
                                 webhook_secret=secrets.token_urlsafe(32), outbox_worker=outbox_worker)
        bridge = running.enter_context(Bridge(settings))
        # Before the bridge closes (after the webhook stops): a store file deleted during the demo is saved.
        running.callback(save_lost_files, bridge.db.write_engine)
        webhook = serve_app_in_thread(create_app(bridge), port=bridge_port)
        running.callback(webhook.stop)
        bridge.load_geography(demo_reserve().geojson())
        for member in fleet.manifest():
            bridge.register_animal(member["device_id"], member["name"], species=member["species"],
                                   sex=member.get("sex"))
        yield Pipeline(fleet, bridge, webhook, network, settings.webhook_secret.get_secret_value())


def _post_all(p: Pipeline, uplinks: Iterator[dict], flush_downlinks: bool = False, seed: int = 0) -> int:
    """Post every uplink to the webhook as The Things Stack with its webhook's Retries ticked does: a body
    not answered 2xx goes again on its schedule, in the herd's time (`simulator.webhook_retries`; seed:
    its jitter); with `flush_downlinks`, the downlinks each one queued are pushed before the next, so a
    collar's next uplink always finds them at the network server. How many uplinks were posted first."""
    from simulator.webhook_retries import TRIES, WebhookRetries

    posted = 0
    retries = WebhookRetries(seed)

    def post(client: httpx.Client, body: dict, tries: int, at_s: float) -> None:
        reply = client.post("/uplinks/tts", content=json.dumps(body),
                            headers={"X-Tembo-Secret": p.secret, "Content-Type": "application/json"})
        if reply.status_code < 300:
            return
        device = body.get("end_device_ids", {}).get("device_id")
        log.debug("webhook answered %s for device %s (try %d of %d)", reply.status_code, device, tries, TRIES)
        if not retries.failed(body, tries, at_s) and retries.given_up == 1:
            log.warning("webhook answered %s for device %s at its last try (%d): given up, as The Things Stack "
                        "gives up on it; the demo's closing line counts the others", reply.status_code, device, TRIES)

    try:
        with httpx.Client(base_url=p.webhook.url, timeout=30) as client:
            for uplink in uplinks:
                at_s = _received_at_s(uplink)
                for body, tries in retries.due(at_s):
                    post(client, body, tries, at_s)
                post(client, uplink, 1, at_s)
                posted += 1
                if flush_downlinks:
                    p.bridge.flush_downlinks()
            # the herd's period is over: the tries still queued go as their time comes
            while (due_s := retries.next_due_s()) is not None:
                for body, tries in retries.due(due_s):
                    post(client, body, tries, due_s)
    finally:
        if retries.retried or retries.given_up:
            log.warning("the demo's network server tried %d refused uplinks again; %d were given up after %d tries "
                        "(lost, as The Things Stack loses them); %d still waited for their next try", retries.retried,
                        retries.given_up, TRIES, len(retries))
    return posted


def _received_at_s(uplink: dict) -> float:
    """When the network server received uplink (its `received_at`), in Unix seconds of the herd's clock."""
    return datetime.fromisoformat(uplink["received_at"]).timestamp()


def run_headless(collars: int = 20, days: float | None = 2, seed: int = 1,
                 database_url: str | None = None) -> dict:
    """Run herd -> webhook -> bridge as fast as possible; return the demo's counts (same seed, same counts)."""
    days = 2 if days is None else days
    with tempfile.TemporaryDirectory(prefix="tembo-demo-") as folder:
        url = database_url or f"sqlite:///{Path(folder) / 'tembo.db'}"
        with pipeline(collars, days, seed, url, outbox_worker=False) as p:
            _post_all(p, p.fleet.uplinks(), flush_downlinks=True, seed=seed)
            counts = p.bridge.counts()
            figures = {
                "uplinks_sent": p.fleet.uplinks_sent,
                "uplinks_delivered": p.fleet.uplinks_delivered,
                "uplinks_stored": counts["uplinks_stored"],
                "dead_letter": counts["dead_letter"],
                "animals": counts["animals"],
                "positions": counts["positions"],
                "activity_summaries": counts["activity_summaries"],
                "alerts": counts["alerts"],
            }
    return figures


def run_live(collars: int = 20, days: float | None = None, seed: int = 1, pace: float = 3600.0,
             port: int = 8501, bridge_port: int = 8800, database_url: str | None = None,
             address: str = "127.0.0.1", role: str | None = None) -> int:
    """The demo a new user sees: paced herd, bridge webhook and API, demo accounts with fresh random
    passwords, and the dashboard (for `role`; visitor: a kiosk without sign-in); Ctrl-C stops all."""
    from ranger_dashboard.launch import command, role_from_env
    from ranger_dashboard.roles import ANY_ROLE
    from tembo.accounts import create_demo_accounts

    for wanted, flag in ((port, "--port"), (bridge_port, "--bridge-port")):
        if not port_free(wanted):
            log.error("port %d on 127.0.0.1 is in use: stop the program holding it or pass %s", wanted, flag)
            print(f"tembo demo: port {wanted} is in use; stop the program holding it or pass {flag} N")
            return 1
    Path("var").mkdir(exist_ok=True)
    url = database_url or "sqlite:///var/tembo.db"
    if database_url is None and Path("var/tembo.db").exists():
        Path("var/tembo.db").unlink()
    # The live herd starts a day ago so the map fills at once, then runs on into the coming days.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    with pipeline(collars, days if days is not None else 365, seed, url, bridge_port=bridge_port,
                  start=start) as p:
        env = dict(os.environ, TEMBO_DATABASE_URL=url)
        role = role_from_env(role, default=ANY_ROLE)  # every demo account printed below signs in
        # Its own session: Ctrl-C reaches this launcher alone, which then stops the dashboard with
        # SIGTERM (Streamlit's server, given the terminal's SIGINT too, ended with a traceback). A
        # `kill`, a closed terminal (SIGHUP) or a service manager's stop (SIGTERM) stop the demo as
        # Ctrl-C does, and should the launcher die anyway (SIGKILL) the dashboard gets SIGTERM from
        # the kernel: it never stays behind holding its port for the next `make demo`.
        # Ctrl-C too, explicitly: a launcher started where SIGINT was ignored (a script's background
        # job, CI) inherits that and would not stop on it.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, _interrupt)
        argv = command(port, url, clock="data", refresh_s=5, address=address, role=role)
        dashboard = subprocess.Popen(_ending_with_this_process(argv), env=env, start_new_session=True)
        accounts = create_demo_accounts(p.bridge)
        shown_host = "127.0.0.1" if address in ("127.0.0.1", "0.0.0.0") else address
        print(f"Tembo demo: {collars} simulated elephants, {pace:g} simulated seconds per second")
        title = "dashboard" if role == ANY_ROLE else f"{role.replace('_', ' ')} dashboard"
        note = {ANY_ROLE: "every account below signs in and sees what its role allows",
                "visitor": "visitor kiosk: no sign-in"}.get(role, f"{role.replace('_', ' ')} and admin accounts sign in")
        print(f"  {title:<17} http://{shown_host}:{port}  ({note})")
        print(f"  bridge webhook    {p.webhook.url}/uplinks/tts  (database {url})")
        print(f"  bridge API        {p.webhook.url}/api/openapi.json  (tokens: tembo tokens create)")
        print("  demo accounts (fresh random passwords, this run only):")
        for username, account_role, password in accounts:
            print(f"    {username:<12} {account_role:<17} {password}")
        print("  Ctrl-C stops everything.")
        try:
            _post_all(p, p.fleet.uplinks(pace=pace), seed=seed)
            print("The simulated period is over; the dashboard stays up until Ctrl-C.")
            dashboard.wait()
        except KeyboardInterrupt:
            print("\nstopping Tembo demo")
        finally:
            if dashboard.poll() is None:
                dashboard.send_signal(signal.SIGTERM)
                try:
                    dashboard.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    dashboard.kill()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C, SIGTERM or SIGHUP to the demo's launcher: stop (the dashboard with it)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _ending_with_this_process(argv: list[str]) -> list[str]:
    """argv run so that it gets SIGTERM when this process dies: util-linux's `setpriv --pdeathsig`
    (Linux's PR_SET_PDEATHSIG, kept across its exec); argv as it is where there is no setpriv."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def simulate_to_file(collars: int, days: float, seed: int, out: str, network_format: str = "tts") -> int:
    """Run the twin alone and write one network JSON document per line; return how many."""
    from simulator.fleet import Fleet

    fleet = Fleet(n_collars=collars, seed=seed, start=DEMO_START, days=days)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(out, "w") as handle:
        for uplink in fleet.uplinks(network_format=network_format):
            handle.write(json.dumps(uplink) + "\n")
            count += 1
    return count
