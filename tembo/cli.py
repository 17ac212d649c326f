"""The `tembo` command line: parse, call one function, print, exit with a meaningful code."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
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
                         port=args.port, bridge_port=args.bridge_port, database_url=args.database_url)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from tembo import demo

    count = demo.simulate_to_file(collars=args.collars, days=args.days, seed=args.seed, out=args.out,
                                  network_format=args.format)
    print(json.dumps({"uplinks_written": count, "out": args.out}))
    return 0


def _bridge_settings(args: argparse.Namespace, **options: object) -> BridgeSettings:
    """The bridge's settings with the options given on the command line (None: not given) on top."""
    from lora_bridge.settings import load_settings

    given = {"database_url": args.database_url, **options}
    return load_settings(**{key: value for key, value in given.items() if value is not None})


def _cmd_bridge(args: argparse.Namespace) -> int:
    from lora_bridge.server import serve

    serve(_bridge_settings(args, host=args.host, port=args.port))
    return 0


def _cmd_bridge_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from lora_bridge.settings import masked_database_url
    from lora_bridge.store import migrate

    settings = _bridge_settings(args)
    engine = create_engine(settings.database_url)
    try:
        before = migrate.current_revision(engine)
        after = migrate.upgrade(engine, args.revision)
    finally:
        engine.dispose()
    print(json.dumps({"database": masked_database_url(settings.database_url), "from": before, "to": after}))
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    import subprocess

    from ranger_dashboard.launch import command

    # The store the bridge writes: --database-url, else TEMBO_DATABASE_URL or TEMBO_CONFIG, else the default.
    return subprocess.call(command(args.port, _bridge_settings(args).database_url))


def _cmd_release(args: argparse.Namespace) -> int:
    print("tembo release: signed firmware and model releases are not part of this release yet",
          file=sys.stderr)
    return 2


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.name not in BENCHES:
        print(f"unknown benchmark {args.name!r}; known: {', '.join(sorted(BENCHES))}", file=sys.stderr)
        return 2
    options = {}
    for item in args.option or []:
        key, _, value = item.partition("=")
        options[key.replace("-", "_")] = json.loads(value) if value[:1] in "0123456789-[{tf" else value
    figures = _resolve(BENCHES[args.name])(**options)
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
    demo.add_argument("--database-url", default=None)
    demo.set_defaults(func=_cmd_demo)

    simulate = sub.add_parser("simulate", help="run the digital twin and write network JSON lines")
    simulate.add_argument("--collars", type=int, default=20)
    simulate.add_argument("--days", type=float, default=1.0)
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--format", choices=["tts", "chirpstack"], default="tts")
    simulate.add_argument("--out", default="var/uplinks.jsonl")
    simulate.set_defaults(func=_cmd_simulate)

    bridge = sub.add_parser("bridge", help="run the bridge service (webhook ingest, store, alerts)")
    bridge.add_argument("--database-url", default=None)
    bridge.add_argument("--host", default=None)
    bridge.add_argument("--port", type=int, default=None)
    bridge.set_defaults(func=_cmd_bridge)
    bridge_sub = bridge.add_subparsers(dest="bridge_command", metavar="COMMAND")
    migrate = bridge_sub.add_parser("migrate", help="bring the store's schema to the newest revision (Alembic)")
    migrate.add_argument("--database-url", default=None)
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=_cmd_bridge_migrate)

    dashboard = sub.add_parser("dashboard", help="run the ranger dashboard (Streamlit)")
    dashboard.add_argument("--port", type=int, default=8501)
    dashboard.add_argument("--database-url", default=None)
    dashboard.set_defaults(func=_cmd_dashboard)

    models_command.add_parser(sub)

    release = sub.add_parser("release", help="build and sign firmware and model updates")
    release.set_defaults(func=_cmd_release)

    bench = sub.add_parser("bench", help="measure: prints one JSON object of figures")
    bench.add_argument("name", help="one of: " + ", ".join(sorted(BENCHES)))
    bench.add_argument("--json", action="store_true")
    bench.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="benchmark option")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the tembo command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
