"""`tembo animals ...`: the herd register from the machine the store is on (docs/access.md).

list the animals and the collars they wear, rename one or correct its species or sex, fit a collar
to one (a swap, or with --move a collar taken from the animal that wears it), take a collar off one
without fitting another, and show the collars one wore. As `tembo users`, whoever runs these holds the store and acts as the admin
`console:<login name>`; every change is in the audit log under that name. An animal is named by its
id or by its name (when one animal has it).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from rich.table import Table

from tembo.accounts import _console, _open, _time, console_actor

if TYPE_CHECKING:
    from lora_bridge.access import Viewer
    from lora_bridge.service import Bridge


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `animals` on the tembo parser."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--database-url", default=None, help="the store (default: TEMBO_DATABASE_URL or the embedded one)")
    animals = sub.add_parser("animals", help="the herd register: list, rename, fit or take off a collar, collars an "
                                             "animal wore")
    animals_sub = animals.add_subparsers(dest="action", required=True, metavar="ACTION")
    animals_sub.add_parser("list", parents=[store], help="every animal with its species, sex and collar, then the "
                                                         "collars in stock")
    rename = animals_sub.add_parser("rename", parents=[store], help="rename an animal, or correct its species or sex")
    rename.add_argument("animal", help="the animal's id or name")
    rename.add_argument("--name", default=None, help="its new name")
    rename.add_argument("--species", default=None, help="its species (scientific name)")
    rename.add_argument("--sex", default=None, help="female, male or unknown")
    fit = animals_sub.add_parser("fit", parents=[store],
                                 help="fit a collar to an animal; its previous collar comes off, its history stays")
    fit.add_argument("animal", help="the animal's id or name")
    fit.add_argument("collar", help="the collar's device id or DevEUI (a collar never heard is registered)")
    fit.add_argument("--move", action="store_true", help="take the collar from the animal that wears it")
    fit.add_argument("--at", default=None, help="when the collar went on (ISO 8601, UTC when no offset; default now)")
    take_off = animals_sub.add_parser("take-off", parents=[store],
                                      help="take an animal's collar off without fitting another; nobody wears it then")
    take_off.add_argument("animal", help="the animal's id or name")
    take_off.add_argument("--at", default=None, help="when the collar came off (ISO 8601, UTC when no offset; "
                                                     "default now)")
    collars = animals_sub.add_parser("collars", parents=[store], help="the collars an animal wore, oldest first")
    collars.add_argument("animal", help="the animal's id or name")
    animals.set_defaults(func=run_animals)


def run_animals(args: argparse.Namespace) -> int:
    """`tembo animals ACTION`."""
    from lora_bridge.errors import BridgeError

    actor = console_actor()
    try:
        with _open(args) as bridge:
            if args.action == "list":
                table = Table("id", "name", "species", "sex", "collar", "fitted (UTC)")
                for animal in bridge.herd_register(viewer=actor):
                    table.add_row(animal.animal_id, animal.name, animal.species, animal.sex or "-",
                                  animal.device_id or "-", _time(animal.collar_fitted_at))
                _console().print(table)
                stock = bridge.collars_in_stock(viewer=actor)
                if stock:
                    in_stock = Table("collar in stock", "off since (UTC)", "came off", title="Collars in stock")
                    for collar in stock:
                        in_stock.add_row(collar.device_id, _time(collar.taken_off_at), collar.taken_off_name or "-")
                    _console().print(in_stock)
            elif args.action == "rename":
                if args.name is None and args.species is None and args.sex is None:
                    raise ValueError("say what changes: --name, --species and/or --sex")
                view = bridge.rename_animal(animal_id(bridge, actor, args.animal), viewer=actor, name=args.name,
                                            species=args.species, sex=args.sex)
                print(f"animal {view.animal_id}: {view.name}, {view.species}, {view.sex or 'sex not known'}")
            elif args.action == "fit":
                at = _when(args.at)
                view = bridge.fit_collar(animal_id(bridge, actor, args.animal), args.collar, viewer=actor,
                                         move=args.move, fitted_at=at)
                print(f"{view.name} (animal {view.animal_id}) wears collar {view.device_id} "
                      f"since {_time(view.collar_fitted_at)} UTC")
            elif args.action == "take-off":
                worn = bridge.take_off_collar(animal_id(bridge, actor, args.animal), viewer=actor,
                                              removed_at=_when(args.at))
                took = [c for c in bridge.collar_history(worn.animal_id, viewer=actor) if c.removed_at is not None][-1]
                print(f"{worn.name} (animal {worn.animal_id}) wears no collar: collar {took.device_id} came off "
                      f"at {_time(took.removed_at)} UTC")
            elif args.action == "collars":
                table = Table("collar", "fitted (UTC)", "removed (UTC)")
                for worn in bridge.collar_history(animal_id(bridge, actor, args.animal), viewer=actor):
                    table.add_row(worn.device_id, _time(worn.fitted_at) if worn.fitted_at else "registered",
                                  _time(worn.removed_at) if worn.removed_at else "still on")
                _console().print(table)
    except (BridgeError, ValueError) as error:
        print(f"tembo animals {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


def animal_id(bridge: Bridge, actor: Viewer, named: str) -> str:
    """The id of the animal named (its id, else the one animal called so); ValueError otherwise."""
    if named.isdigit():
        return named
    ids = [animal.animal_id for animal in bridge.herd_register(viewer=actor) if animal.name == named]
    if len(ids) != 1:
        raise ValueError(f"no animal called {named!r}" if not ids else
                         f"{len(ids)} animals are called {named!r}: name one by its id ({', '.join(ids)})")
    return ids[0]


def _when(text: str | None) -> datetime | None:
    """An ISO 8601 time (UTC when it says no offset), or None."""
    if text is None:
        return None
    from datetime import UTC

    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-06-01T07:30)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
