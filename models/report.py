"""The training report: one HTML page with plots, and figures.json with the numbers behind every plot.

Plots: confusion matrix of the collar model, per-class F1 of the three models side by side, per-animal
accuracy, feature importance, budget use, learning curve. The page also says how the folds were made
(and warns when they are not animal-independent) and what was left out of the data.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

MODEL_TITLES = {"collar": "collar model", "random_forest": "300-tree random forest", "field": "model in the field"}


def figures(result: dict) -> dict:
    """Return the data of every figure in the report, keyed by figure name."""
    models = {k: v for k, v in result["models"].items() if v.get("per_class") or k != "field"}
    classes = result["classes"]
    budget = result["budget"]
    limits = result["limits"]
    return {
        "confusion_matrix": {"model": "collar", "rows": "true class", "columns": "predicted class",
                             **result["models"]["collar"]["confusion"]},
        "per_class_f1": {"classes": classes,
                         "f1": {name: [m["per_class"].get(c, {}).get("f1") for c in classes]
                                for name, m in models.items() if m.get("per_class")}},
        "per_animal_accuracy": {name: m["per_animal_accuracy"] for name, m in models.items()
                                if m.get("per_animal_accuracy")},
        "time_budget_error_min_per_day": {name: m["time_budget_error_min_per_day"] for name, m in models.items()
                                          if m.get("time_budget_error_min_per_day")},
        "feature_importance": result["feature_importance"],
        "budget_use": {"blob_bytes": [budget["blob_bytes"], limits["blob_bytes"]],
                       "heap_bytes": [budget["load_heap_bytes"], limits["heap_bytes"]],
                       "fuel_per_window": [budget["fuel_per_window"], limits["fuel_per_window"]]},
        "learning_curve": result["learning_curve"],
        "search": result["search"],
    }


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(data: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    cm = np.asarray(data["confusion_matrix"]["matrix"])
    labels = data["confusion_matrix"]["labels"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(labels), 1 + 0.7 * len(labels)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Collar model: confusion matrix (windows, out of fold)")
    plots.append(("Confusion matrix", _png(fig)))

    f1 = data["per_class_f1"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(f1["f1"]))
    for k, (name, values) in enumerate(f1["f1"].items()):
        ax.bar(np.arange(len(f1["classes"])) + k * width, [v or 0 for v in values], width,
               label=MODEL_TITLES.get(name, name))
    ax.set_xticks(np.arange(len(f1["classes"])) + 0.4 - width / 2, f1["classes"], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 (out of fold)")
    ax.set_title("Per-class F1")
    ax.legend(fontsize=8)
    plots.append(("Per-class F1", _png(fig)))

    per_animal = data["per_animal_accuracy"]
    if per_animal:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        animals = sorted(next(iter(per_animal.values())))
        width = 0.8 / len(per_animal)
        for k, (name, values) in enumerate(per_animal.items()):
            ax.bar(np.arange(len(animals)) + k * width, [values.get(a, 0) for a in animals], width,
                   label=MODEL_TITLES.get(name, name))
        ax.set_xticks(np.arange(len(animals)) + 0.4 - width / 2, animals, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy (share of windows)")
        ax.set_title("Per-animal accuracy (held-out animal)")
        ax.legend(fontsize=8)
        plots.append(("Per-animal accuracy", _png(fig)))

    importance = sorted(data["feature_importance"].items(), key=lambda kv: kv[1])[-15:]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.barh([k for k, _ in importance], [v for _, v in importance])
    ax.set_xlabel("mean decrease in impurity (share)")
    ax.set_title("Collar model: feature importance (top 15)")
    plots.append(("Feature importance", _png(fig)))

    use = data["budget_use"]
    fig, ax = plt.subplots(figsize=(6, 2.5))
    names = list(use)
    shares = [100 * used / limit if limit else 0 for used, limit in use.values()]
    ax.barh(names, shares, color=["tab:red" if s > 100 else "tab:green" for s in shares])
    ax.axvline(100, color="black", linewidth=1)
    ax.set_xlabel("share of the collar budget (%)")
    ax.set_title("Budget use")
    plots.append(("Budget use", _png(fig)))

    curve = data["learning_curve"]
    if curve:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(curve["train_windows"], curve["macro_f1"], marker="o")
        ax.set_xlabel("training windows")
        ax.set_ylabel("macro-F1 (held-out folds)")
        ax.set_ylim(0, 1)
        ax.set_title("Learning curve of the collar model")
        plots.append(("Learning curve", _png(fig)))
    return plots


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(result: dict, out_dir: str | Path) -> Path:
    """Write report.html and figures.json into out_dir; return the HTML path."""
    out = Path(out_dir)
    data = figures(result)
    (out / "figures.json").write_text(json.dumps(data, indent=1))
    field = result["models"]["field"]
    rows = []
    for name, m in result["models"].items():
        if name == "field" and not m.get("applicable", True):
            rows.append([MODEL_TITLES[name], "does not apply", m["reason"], "", ""])
            continue
        rows.append([MODEL_TITLES[name], m["macro_f1"], m["accuracy"],
                     m["time_budget_mean_abs_error_min_per_day"],
                     result["blob_bytes"] if name == "collar" else ("-" if name == "random_forest"
                                                                      else field.get("model_version"))])
    warning = (f'<p class="warn">&#9888; {html.escape(result["warning"])}</p>' if result.get("warning") else "")
    left_out = result["data"]["left_out_samples"]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Tembo model report</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}.warn{background:#fee;padding:8px;border:1px solid #c00}"
        "</style>",
        f"<h1>Collar activity model v{result['model_version']}</h1>",
        f"<p>{result['windows']} windows of {result['settings']['window_s']} s at {result['settings']['rate_hz']} Hz "
        f"(data at {result['settings']['source_rate_hz']:.4g} Hz), overlap {result['settings']['overlap']:.0%}, "
        f"classes: {', '.join(result['classes'])}. Evaluation: <b>{result['cv']}</b>, {result['folds']} folds.</p>",
        warning,
        "<h2>Side by side (same windows, same folds)</h2>",
        _table(rows, ["model", "macro-F1", "accuracy", "time-budget error (min/day, mean abs)", "blob bytes / version"]),
        f"<p>Collar model over random forest: ratio {result['ratio']}. Chosen size: {result['chosen']}. "
        f"Over budget: {', '.join(result['over_budget']) or 'nothing'}.</p>",
        "<h2>Left out of the data</h2>",
        _table([[k, v] for k, v in left_out.items()] or [["nothing", 0]], ["reason", "samples"]),
    ]
    notes = result["data"].get("notes") or []
    if notes:  # what loading did to the data (clipped values, bouts put together, unverified signatures)
        parts += ["<h2>Notes on the data</h2>", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"]
    for title, png in _plots(data):
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    parts.append("<p>The numbers behind every plot are in figures.json beside this page.</p>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
