"""`tembo models ...`: the researcher's commands (train, evaluate, compare, list, promote, export, budget).

Each action parses, calls one function of `models`, prints (JSON with --json, else a readable
summary, Rich progress on long work) and exits 0, 1 for bad data or a refused request, 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="+", metavar="DATA",
                        help="CSV files or folders, a dataset .toml, Edge Impulse .json, .cbor or CSV files, Movebank CSV, "
                             "or 'simulated[:SEED]'")
    parser.add_argument("--format", default="auto", dest="fmt",
                        choices=["auto", "csv", "movebank", "edge-impulse", "simulated"])
    parser.add_argument("--columns", help="column names: animal=ID,bout=B,time=T,x=AX,y=AY,z=AZ,label=L")
    parser.add_argument("--units", help="g, mg, m/s2 or counts:G_PER_COUNT (default g; Movebank counts:0.0027)")
    parser.add_argument("--rate", type=float, help="the data's sampling rate in Hz (checked against the time column)")
    parser.add_argument("--split-gaps", action="store_true", help="a gap inside a bout splits it (default: an error)")
    parser.add_argument("--zero", type=float, help="raw count of zero g (Movebank e-obs: 2048)")
    parser.add_argument("--hmac-key", help="Edge Impulse HMAC key to verify signed files")
    parser.add_argument("--axes", default="x,y,z", help="the collar's x,y,z from the data's axes, e.g. -y,x,z")
    parser.add_argument("--registry", help="model registry folder (default TEMBO_MODEL_REGISTRY or var/models)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _load(args: argparse.Namespace):
    from models.sources import DataOptions, load

    return load(args.data, DataOptions(fmt=args.fmt, columns=args.columns, units=args.units, rate_hz=args.rate,
                                       split_gaps=args.split_gaps, zero=args.zero,
                                       hmac_key=args.hmac_key.encode() if args.hmac_key else None))


def add_parser(sub) -> None:
    """Add `tembo models` and its actions to the tembo command's subparsers."""
    models = sub.add_parser("models", help="researcher tooling: train, evaluate, compare and ship activity models")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train, evaluate (leave-one-animal-out) and register a collar model")
    _data_arguments(train)
    train.add_argument("--window", type=int, default=10, help="window length in whole seconds (default 10)")
    train.add_argument("--overlap", type=float, default=0.0, help="share of a window the next repeats (0-0.9)")
    train.add_argument("--collar-rate", type=int, default=None,
                       help="the collar's accelerometer rate in Hz (one the LIS2DW12 offers; default 25)")
    train.add_argument("--collar-range", type=int, default=None,
                       help="the collar's accelerometer full scale in g (2, 4, 8 or 16; default 4): larger "
                            "values in the data are clipped as the collar would read them")
    train.add_argument("--budget-bytes", type=int, default=None, help="largest blob (default 16384)")
    train.add_argument("--budget-heap", type=int, default=None,
                       help="most heap loading the model may allocate, measured under MicroPython (default 24576: "
                            "what one step of the collar's loop may allocate between two collections)")
    train.add_argument("--budget-fuel", type=int, default=None, help="most MicroPython fuel per window")
    train.add_argument("--out", required=True, help="folder for blob, C header, report (never a shipped folder)")
    train.add_argument("--no-register", action="store_true", help="do not add the model to the registry")
    train.add_argument("--no-learning-curve", action="store_true")

    evaluate = actions.add_parser("evaluate", help="score a model blob or an Edge Impulse .eim on labelled data")
    _data_arguments(evaluate)
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument("--model", help="a model blob or a registered model id (default: the shipped model)")
    which.add_argument("--eim", help="an Edge Impulse Linux model file, run through edge_impulse_linux")

    listing = actions.add_parser("list", help="registered models")
    listing.add_argument("--registry")
    listing.add_argument("--json", action="store_true")

    compare = actions.add_parser("compare", help="registered models side by side")
    compare.add_argument("model_ids", nargs="+", metavar="MODEL")
    compare.add_argument("--registry")
    compare.add_argument("--json", action="store_true")

    promote = actions.add_parser("promote", help="mark a registered model for roll-out (tembo release model)")
    promote.add_argument("model_id", metavar="MODEL")
    promote.add_argument("--registry")
    promote.add_argument("--note", default="")
    promote.add_argument("--json", action="store_true")

    export = actions.add_parser("export", help="a registered model as .eim, C header or blob; data as Edge Impulse JSON")
    export.add_argument("model_id", metavar="MODEL", nargs="?", help="registered model id (or a blob file)")
    export.add_argument("--eim", help="write an Edge Impulse Linux model file here")
    export.add_argument("--c", dest="c_header", help="write an emlearn C header here")
    export.add_argument("--blob", help="write the collar blob here")
    export.add_argument("--data", nargs="+", help="labelled data to write in Edge Impulse's data acquisition format")
    export.add_argument("--edge-impulse-dir", help="folder for the Edge Impulse JSON files (with --data)")
    export.add_argument("--units", help="units of --data CSV")
    export.add_argument("--columns", help="column names of --data CSV")
    export.add_argument("--rate", type=float)
    export.add_argument("--hmac-key", help="sign the Edge Impulse files with this HMAC key (HS256)")
    export.add_argument("--registry")
    export.add_argument("--json", action="store_true")

    size = actions.add_parser("budget", help="what a model blob costs on the collar (its heap measured under MicroPython)")
    size.add_argument("blob", nargs="?", default="collar_firmware/default_model.bin")
    models.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run one `tembo models` action; return the exit code."""
    from collar_firmware.blob import ModelError
    from models.recordings import DataError
    from models.registry import RegistryError
    from models.workflow import OutputError

    try:
        return ACTIONS[args.action](args)
    except (DataError, RegistryError, OutputError, ModelError, OSError) as err:
        print(f"tembo models {args.action}: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"tembo models {args.action}: {err}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace) -> int:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from models.budget import Limits
    from models.windowing import DEFAULT_RANGE_G, DEFAULT_RATE_HZ, WindowSettings
    from models.workflow import TrainOptions, check_out_dir, summary_json, train

    check_out_dir(args.out)
    defaults = Limits()
    limits = Limits(args.budget_bytes or defaults.blob_bytes, args.budget_heap or defaults.heap_bytes,
                    args.budget_fuel or defaults.fuel_per_window)
    settings = WindowSettings(window_s=args.window, overlap=args.overlap,
                              rate_hz=args.collar_rate or DEFAULT_RATE_HZ, axes=args.axes,
                              range_g=args.collar_range or DEFAULT_RANGE_G)
    settings.check()
    loaded = _load(args)
    options = TrainOptions(settings=settings, limits=limits, seed=args.seed,
                           learning_curve=not args.no_learning_curve)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  transient=True, disable=args.json or not sys.stderr.isatty()) as progress:
        task = progress.add_task("training", total=None)
        result = train(loaded, options, args.out, registry=args.registry, register=not args.no_register,
                       progress=lambda what: progress.update(task, description=what))
    summary = summary_json(result)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(_train_text(summary))
    return 0


def _train_text(s: dict) -> str:
    lines = [f"Model v{s['model_version']} ({s.get('model_id') or 'not registered'}) -> {s['out_dir']}"]
    if s.get("warning"):
        lines.append(f"WARNING: {s['warning']}")
    lines.append(f"  evaluation      {s['cv']}, {s['folds']} folds, {s['windows']} windows")
    lines.append(f"  macro-F1        {s['macro_f1']:.3f} collar model | {s['baseline_macro_f1']:.3f} "
                 f"300-tree random forest (ratio {s['ratio']}) | field model "
                 f"{'n/a' if s['field_macro_f1'] is None else format(s['field_macro_f1'], '.3f')}")
    for name, f1 in s["per_class_f1"].items():
        lines.append(f"    {name:<14} F1 {f1:.3f}")
    lines.append(f"  collar cost     {s['blob_bytes']} B blob, {s['fuel_per_window']} fuel/window, "
                 f"{s['model_heap_bytes']} B heap to load (MicroPython); chosen {s['chosen']}")
    if s["over_budget"]:
        lines.append(f"  OVER BUDGET     {'; '.join(s['over_budget'])}")
    for reason, n in s["left_out_samples"].items():
        lines.append(f"  left out        {n} samples: {reason}")
    for note in s.get("notes") or []:
        lines.append(f"  note            {note}")
    lines.append(f"  report          {Path(s['out_dir']) / 'report.html'}")
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if args.eim:
        from models.eim import evaluate_eim

        figures = evaluate_eim(args.eim, loaded, axes=args.axes, seed=args.seed)
    else:
        from collar_firmware import classifier
        from models import registry as model_registry
        from models.field_model import evaluate_model, trained_on

        blob = _blob_of(args.model, args.registry) if args.model else classifier.read_default_blob()
        entry = model_registry.entry_of_blob(blob, args.registry)
        figures = evaluate_model(blob, loaded, args.axes, trained_on(entry.record if entry else None))
    if args.json:
        print(json.dumps(figures))
    else:
        for key in ("eim", "model_version", "labels", "classes", "cv", "folds", "windows", "macro_f1", "accuracy",
                    "per_fold_macro_f1", "applicable", "reason", "warning", "trained_on_recordings"):
            if figures.get(key) is not None:
                print(f"{key:>18}  {figures[key]}")
    return 0


def _blob_of(model: str, registry: str | None) -> bytes:
    from models import registry as model_registry

    path = Path(model)
    if path.is_file():
        return path.read_bytes()
    return model_registry.find(model, registry).blob_path.read_bytes()


def _list(args: argparse.Namespace) -> int:
    from models import registry as model_registry

    rows = model_registry.compare([e.model_id for e in model_registry.entries(args.registry)], args.registry)
    promoted = (model_registry.promoted(args.registry) or {}).get("model_id")
    for row in rows:
        row["promoted"] = row["model_id"] == promoted
    return _print_rows(rows, args.json)


def _print_rows(rows: list[dict], as_json: bool) -> int:
    if as_json:
        print(json.dumps(rows))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table()
    columns = ["model_id", "model_version", "classes", "cv", "macro_f1", "baseline_macro_f1", "windows",
               "blob_bytes", "fuel_per_window", "created_by", "created_at"] + (["promoted"] if rows and
                                                                                 "promoted" in rows[0] else [])
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*[", ".join(row[c]) if isinstance(row[c], list) else str(row[c]) for c in columns])
    Console().print(table if rows else "no registered models")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from models import registry as model_registry

    rows = model_registry.compare(args.model_ids, args.registry)
    warning = model_registry.not_comparable(rows)
    if warning:
        print(f"tembo models compare: WARNING: {warning}", file=sys.stderr)
    return _print_rows(rows, args.json)


def _promote(args: argparse.Namespace) -> int:
    from models import registry as model_registry

    record = model_registry.promote(args.model_id, args.registry, note=args.note)
    print(json.dumps(record) if args.json else
          f"promoted {record['model_id']} (model version {record['model_version']}, classes "
          f"{', '.join(record['classes'])}) for roll-out: {model_registry.registry_dir(args.registry) / 'promoted.json'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from models.workflow import check_out_dir

    for target in (args.eim, args.c_header, args.blob):
        if target:
            check_out_dir(Path(target).parent)  # never over a file Tembo ships (the signed default model)
    if args.edge_impulse_dir:
        check_out_dir(args.edge_impulse_dir)
    done: dict = {}
    if args.data:
        from models.edge_impulse import export_edge_impulse
        from models.sources import DataOptions, load

        if not args.edge_impulse_dir:
            raise ValueError("--data needs --edge-impulse-dir")
        loaded = load(args.data, DataOptions(columns=args.columns, units=args.units, rate_hz=args.rate))
        files = export_edge_impulse(loaded, args.edge_impulse_dir, args.hmac_key.encode() if args.hmac_key else None)
        done["edge_impulse_files"] = len(files)
    if args.eim or args.c_header or args.blob:
        if not args.model_id:
            raise ValueError("name a registered model (or a blob file) to export")
        blob = _blob_of(args.model_id, args.registry)
        if args.eim:
            from models.eim import export_eim

            done["eim"] = str(export_eim(blob, args.eim))
        if args.blob:
            Path(args.blob).write_bytes(blob)
            done["blob"] = args.blob
        if args.c_header:
            from models import registry as model_registry

            header = model_registry.find(args.model_id, args.registry).folder / "model.h"
            if not header.exists():
                raise ValueError(f"{args.model_id} has no C header in the registry")
            Path(args.c_header).write_text(header.read_text())
            done["c_header"] = args.c_header
    if not done:
        raise ValueError("nothing to export: give --eim, --c, --blob or --data with --edge-impulse-dir")
    print(json.dumps(done) if args.json else "\n".join(f"{k}: {v}" for k, v in done.items()))
    return 0


def _budget(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from models.budget import GC_BUDGET_BYTES, measure_heap
    from models.evaluate import budget

    blob = Path(args.blob).read_bytes()
    print(json.dumps({**asdict(budget(blob)), **measure_heap(blob), "heap_bound_bytes": GC_BUDGET_BYTES}))
    return 0


ACTIONS = {"train": _train, "evaluate": _evaluate, "list": _list, "compare": _compare, "promote": _promote,
           "export": _export, "budget": _budget}
