"""What the Updates page shows of the fleet's versions and the update campaigns, as plain tables and
lines built from the bridge's answers (`Bridge.fleet_versions`, `Bridge.campaigns`): kept apart from
the page script (`screens/updates.py`), which runs whole whenever it is imported."""

from __future__ import annotations

import pandas as pd


def last_update(result: dict | None) -> str:
    """Return what a collar's status says of its last update, e.g. "model 0.0.2: refused (tampered)"."""
    if not result:
        return ""
    why = "" if result["reason"] == "ok" else f" ({result['reason'].replace('_', ' ')})"
    return f"{result['kind']} {result['version']}: {result['outcome'].replace('_', ' ')}{why}"


def versions_frame(versions: list[dict]) -> pd.DataFrame:
    """Return the table of which collar runs which firmware and model, and its last update's result."""
    return pd.DataFrame(
        [{"Collar": v["device_id"], "Firmware": v["fw_version"] or "unknown",
          "Model": "unknown" if v["model_version"] is None else
          f"{v['model_version']} (fallback: its model update was refused)" if v.get("model_fallback")
          else str(v["model_version"]),
          "Last update": last_update(v.get("update")),
          "Battery (mV)": v["battery_mv"], "RSSI (dBm)": v["last_rssi_dbm"]} for v in versions],
        columns=["Collar", "Firmware", "Model", "Last update", "Battery (mV)", "RSSI (dBm)"])


def version_lines(versions: list[dict]) -> list[str]:
    """Return one markdown line per collar of `versions_frame`'s table: its name, firmware, model, last update,
    battery and RSSI, as a line that wraps (a phone shows it whole, no grid to scroll sideways)."""
    frame = versions_frame(versions)
    lines = []
    for row in frame.to_dict("records"):
        parts = [f"**{plain(row['Collar'])}**", f"firmware {plain(row['Firmware'])}", f"model {plain(row['Model'])}"]
        if row["Last update"]:
            parts.append(f"last update {plain(row['Last update'])}")
        if row["Battery (mV)"] is not None and not pd.isna(row["Battery (mV)"]):
            parts.append(f"battery {int(row['Battery (mV)'])} mV")
        if row["RSSI (dBm)"] is not None and not pd.isna(row["RSSI (dBm)"]):
            parts.append(f"RSSI {row['RSSI (dBm)']:g} dBm")
        lines.append(" · ".join(parts))
    return lines


def history_lines(history: list[dict]) -> list[str]:
    """Return one markdown line per event of a campaign's history, as its table holds them: when (UTC), the event,
    the collar it is about, and every detail whole ("why: ..."), as a line that wraps."""
    lines = []
    for e in history:
        when = pd.Timestamp(e["time"])
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        parts = [f"{when:%Y-%m-%d %H:%M} UTC", f"**{plain(e['event'].replace('_', ' '))}**"]
        if e.get("device_id"):
            parts.append(plain(e["device_id"]))
        parts += [f"{plain(str(k).replace('_', ' '))}: {plain(str(v))}" for k, v in (e.get("detail") or {}).items()]
        lines.append(" · ".join(parts))
    return lines


NARROW_PX = 640  # below this width a table is shown as wrapping lines (a 390 px phone), at and above it as a grid
GRID_KEY, LINES_KEY = "grid-", "lines-"  # the start of the container keys `narrow_screen_style` tells apart


def narrow_screen_style() -> str:
    """Return the `<style>` that shows each table of the page as its grid on a wide screen and as its lines on a
    narrow one (containers keyed GRID_KEY... and LINES_KEY..., whose class Streamlit names `st-key-<key>`)."""
    return (f"<style>@media (max-width: {NARROW_PX - 1}px) {{ [class*='st-key-{GRID_KEY}'] {{ display: none; }} }}"
            f"@media (min-width: {NARROW_PX}px) {{ [class*='st-key-{LINES_KEY}'] {{ display: none; }} }}</style>")


DELIVERY_COLUMNS = ["Packages", "Fragments missing", "Loss", "Unicast", "Unicast because"]
TRACKED_ONLY = ("Tracked only: the bridge sends nothing for this campaign (it was started without a multicast "
                "group to deliver through: TEMBO_FUOTA_MULTICAST_GROUP, or on ChirpStack TEMBO_FUOTA_MULTICAST_ADDR "
                "with TEMBO_COLLAR_KEYS_FILE); \"sending\" means the collar's result is awaited from its acks and "
                "status.")


def progress_frame(campaign: dict) -> pd.DataFrame:
    """Return one campaign's per-collar progress (stage, state, reason; with a delivery, what each
    collar still misses, the FUOTA package versions it announced, the loss it showed, the unicast fragments it got and, when it was left out
    of the multicast group's window, why it was updated by unicast)."""
    delivered = (campaign.get("delivery") or {}).get("collars", {})
    rows = []
    for c in campaign["collars"]:
        row = {"Collar": c["device_id"], "Stage": c["stage"], "State": c["state"], "Reason": c["reason"] or ""}
        if delivered:
            d = delivered.get(c["device_id"], {})
            row["Packages"] = packages_cell(d)
            row["Fragments missing"] = "" if d.get("missing") is None else d["missing"]
            row["Loss"] = "" if d.get("loss") is None else f"{d['loss']:.0%}"
            row["Unicast"] = d.get("unicast_sent", 0)
            row["Unicast because"] = d.get("unicast_reason") or ""
        rows.append(row)
    columns = ["Collar", "Stage", "State", "Reason"] + (DELIVERY_COLUMNS if delivered else [])
    return pd.DataFrame(rows, columns=columns)


UPDATES_READY_ID = "tembo-updates-ready"  # the page's DOM marker, written once it shows everything (`markers.ready`)
# a campaign's collar states, in the order a technician looks at them: what went wrong or is under way first
STATE_ORDER = ("failed", "unknown", "sending", "gated", "waiting", "skipped", "updated", "current")
ALL_COLLARS = "all"
_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|~$:"})


def plain(text: str) -> str:
    """Return text as markdown that shows it as it is (a reason may hold `_`, `*`, `:` or a network server's JSON)."""
    return text.translate(_MARKDOWN)


def collar_choices(campaign: dict) -> list[str]:
    """Return the choices of which collars to list, "failed (25)" first, then the other states a campaign's collars
    are in (STATE_ORDER), then "all (200)"."""
    counts = campaign["counts"]
    states = sorted(counts, key=lambda s: (STATE_ORDER.index(s) if s in STATE_ORDER else len(STATE_ORDER), s))
    return [f"{s} ({counts[s]})" for s in states] + [f"{ALL_COLLARS} ({sum(counts.values())})"]


def collar_lines(campaign: dict, choice: str) -> list[str]:
    """Return one markdown line per collar of the choice (`collar_choices`): its name, stage and state, the reason
    whole, and with a delivery what it still misses, the loss it showed, the unicast it got and why: read on a phone
    as on a desk, nothing cut off."""
    state = choice.rsplit(" (", 1)[0]
    delivered = (campaign.get("delivery") or {}).get("collars", {})
    lines = []
    for c in campaign["collars"]:
        if state != ALL_COLLARS and c["state"] != state:
            continue
        parts = [f"**{plain(c['device_id'])}** · {c['stage']} · {c['state']}" + (
            f": {plain(c['reason'])}" if c["reason"] else "")]
        d = delivered.get(c["device_id"], {})
        if d.get("missing"):
            parts.append(f"{d['missing']} fragments missing")
        if d.get("loss") is not None:
            parts.append(f"loss {d['loss']:.0%}")
        if d.get("unicast_sent"):
            parts.append(f"{d['unicast_sent']} by unicast")
        if d.get("unicast_reason"):
            parts.append(f"unicast because {plain(d['unicast_reason'])}")
        if packages_cell(d):
            parts.append(f"packages: {plain(packages_cell(d))}")
        lines.append(" · ".join(parts))
    return lines


def packages_cell(delivered: dict) -> str:
    """Return the FUOTA package versions a collar announced ("TS004 v2, TS005 v1"; one the bridge does not speak
    with its problem), "asked" while its answer is awaited, or "" when it was never asked."""
    shown = [f"{name} v{p['version']}" + (f" ({p['problem']})" if p.get("problem") else "")
             for name, p in sorted((delivered.get("packages") or {}).items())]
    if shown:
        return ", ".join(shown)
    return "asked" if delivered.get("version_asked_at") else ""


def delivery_line(delivery: dict | None) -> str:
    """Return one line on how the delivery over the network goes, or "" when the bridge does not deliver."""
    if not delivery:
        return ""
    return (f"Delivery: {delivery['state']}; {group_frames_said(delivery)} "
            f"({delivery['nb_frag']} data fragments of {delivery['frag_size']} B, up to #{delivery['target_fragment']}),"
            f" {delivery['airtime_s']:g} s on air at SF{delivery['sf']}, {delivery['rounds']} repair rounds; "
            f"window opens {delivery['window_opens']:%Y-%m-%d %H:%M} UTC")


def group_frames_said(delivery: dict) -> str:
    """Return how many of the group's frames the network server took: "N frames sent" only when it took them all;
    else how many it took, refused (with its last answer) and are still to push."""
    frames = delivery.get("group_frames")
    if frames is None or frames["pushed"] == delivery["sent"]:
        return f"{delivery['sent']} frames sent"
    said = f"{delivery['sent']} frames for the group: {frames['pushed']} taken by the network server"
    if frames["waiting"]:
        said += f", {frames['waiting']} to push"
    if frames["refused"]:
        said += f", {frames['refused']} REFUSED by it (it answered: {frames['refusal']})"
    return said


def pause_line(campaign: dict) -> str:
    """Return what a pause means for a paused campaign's delivery (from its `delivery_paused` event), or ""."""
    paused = [e["detail"] for e in campaign["history"] if e["event"] == "delivery_paused"]
    if campaign["state"] != "paused" or not paused:
        return ""
    last = paused[-1]
    line = f"Paused: nothing goes to the collars until Resume ({last.get('frames_held', 0)} frames held in the outbox)"
    if "window_closes" not in last:
        return line + "."
    closes = pd.Timestamp(last["window_closes"]).tz_convert("UTC")
    return (f"{line}; {last['fragments_sent']} of {last['fragments_planned']} fragments went out. The collars keep "
            f"their window open until {closes:%Y-%m-%d %H:%M} UTC and what they hold; Resume goes on from fragment "
            f"{last['fragments_sent'] + 1}, in a new window once that one has closed.")


def network_group_line(delivery: dict | None) -> str:
    """Return which network server multicast group a delivery goes through, when its campaign ended
    and what became of the group then, or "" when the bridge does not deliver."""
    group = (delivery or {}).get("network_group") or {}
    if not group.get("id"):
        return ""
    made = "made by the bridge for this campaign" if group["created"] else "the technician's, set in the bridge"
    line = f"Network multicast group {group['id']} ({made})"
    ended = delivery.get("ended_at")
    if ended is None:
        return f"{line}; campaign still open"
    line = f"{line}; campaign ended {ended:%Y-%m-%d %H:%M} UTC"
    if not group["created"]:
        return f"{line}, the group is left to the technician"
    if group["deleted_at"] is not None:
        return f"{line}, group deleted at the network server {group['deleted_at']:%Y-%m-%d %H:%M} UTC"
    tries = group["delete_attempts"]
    if group["delete_error"]:
        return (f"{line}, group NOT yet deleted at the network server after {tries} "
                f"{'try' if tries == 1 else 'tries'}: {group['delete_error']}")
    return f"{line}, group to delete at the network server"


ALL_SPECIES = "(every species)"


def species_of(fleet: list[dict]) -> list[str]:
    """Return the species of the animals wearing collars, each once: the groups a campaign may target."""
    return sorted({v["species"] for v in fleet if v.get("species")})


def target_line(campaign: dict) -> str:
    """Return "; species X" for a campaign aimed at a species' collars, else ""."""
    species = (campaign.get("target") or {}).get("species")
    return f"; species {species}" if species else ""


def summary(campaign: dict) -> str:
    """Return a one-line summary of a campaign for its heading (a firmware delta names its base: collars on
    another version are skipped)."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(campaign["counts"].items()))
    delta = f" (delta against {campaign['base_version']})" if campaign.get("base_version") else ""
    return (f"#{campaign['id']} {campaign['name']} — {campaign['kind']} {campaign['version']}{delta}: "
            f"{campaign['state']} ({counts})")
