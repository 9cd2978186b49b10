"""``rfedge evaluate --protocol paper002``: the evaluation of paper 002 §5 on one dataset.

The student and both baselines under in-session, cross-session and cross-user (every
leave-one-user-out fold) splits, plus the orientation/distance robustness of §5.3 read off the
in-session test predictions. Every model run is an ordinary ``rfedge train`` run directory under
``OUT/runs/<model>/<split>/<fold>/``; the tables are rebuilt from their metrics.json files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from rfedge.data.dataset import Dataset
from rfedge.errors import RfedgeError
from rfedge.fileio import atomic_write_json, atomic_write_text

MODELS = ("student", "cnn", "svm")
DISTANCE_BINS = [0.3, 0.4, 0.5, 0.6, 0.7]


def _runs(ds: Dataset, quick: bool) -> list[tuple[str, str]]:
    """(split, fold name) pairs of the protocol that this dataset supports."""
    have = set(ds.split_names())
    out = []
    for split in ("in-session", "cross-session", "cross-user"):
        if split not in have:
            continue
        folds = [f["name"] for f in ds.split(split)["folds"]]
        if quick and split == "cross-user":
            folds = folds[:2]
        out += [(split, f) for f in folds]
    if not out:
        raise RfedgeError("dataset has none of the splits in-session, cross-session, cross-user", path=ds.path)
    return out


def _robustness(ds: Dataset, metrics: dict) -> dict:
    """Accuracy per orientation and per distance bin of one run's test predictions."""
    ids = metrics.get("test_ids")
    pred = metrics.get("predictions")
    if ids is None or pred is None:
        return {}
    by_id = {t["id"]: t for t in ds.trials}
    y = np.array([by_id[i]["label"] for i in ids])
    p = np.asarray(pred)
    out = {}
    if all("orientation_deg" in by_id[i] for i in ids):
        o = np.array([by_id[i]["orientation_deg"] for i in ids])
        out["orientation_deg"] = {str(v): float((p[o == v] == y[o == v]).mean()) for v in sorted(set(o.tolist()))}
    if all("distance_m" in by_id[i] for i in ids):
        d = np.array([by_id[i]["distance_m"] for i in ids])
        dist = {}
        for lo, hi in zip(DISTANCE_BINS[:-1], DISTANCE_BINS[1:]):
            sel = (d >= lo) & ((d < hi) | ((hi == DISTANCE_BINS[-1]) & (d <= hi)))
            if sel.any():
                dist[f"{lo:g}-{hi:g}"] = float((p[sel] == y[sel]).mean())
        out["distance_m"] = dist
    return out


def evaluate_paper002(data_dir, out_dir, *, models=MODELS, seed: int = 0, quick: bool = False) -> dict:
    from rfedge.train import train

    ds = Dataset.open(data_dir)
    out = Path(out_dir)
    runs = _runs(ds, quick)
    t0 = time.monotonic()
    results: dict = {"dataset": str(ds.path), "data_sha256": ds.manifest.get("data_sha256"), "seed": seed,
                     "quick": quick, "models": {}}
    for model in models:
        per_split: dict = {}
        for split, fold in runs:
            run_dir = out / "runs" / model / split / fold.replace("=", "-")
            m = train(ds.path, run_dir, model=model, split=split, fold=fold, seed=seed, quick=quick)
            entry = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "run": str(run_dir)}
            per_split.setdefault(split, {})[fold] = entry
            if split == "in-session":
                results["models"].setdefault(model, {})["robustness"] = _robustness(ds, m)
            results["models"].setdefault(model, {}).update(
                parameters=m["parameters"], macs=m["macs"], host_latency_ms=m["host_latency_ms_per_window"])
        results["models"][model]["splits"] = {
            split: {"folds": folds, "accuracy": float(np.mean([f["accuracy"] for f in folds.values()])),
                    "macro_f1": float(np.mean([f["macro_f1"] for f in folds.values()])),
                    "accuracy_min": float(min(f["accuracy"] for f in folds.values())),
                    "accuracy_max": float(max(f["accuracy"] for f in folds.values()))}
            for split, folds in per_split.items()}
    results["seconds"] = round(time.monotonic() - t0, 1)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", format_markdown(results))
    return results


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def format_markdown(r: dict) -> str:
    lines = ["# Paper 002 evaluation", "", f"Dataset `{r['dataset']}` (sha256 {str(r['data_sha256'])[:12]}), "
             f"seed {r['seed']}{', quick preset' if r['quick'] else ''}, {r['seconds']} s.", "",
             "| Model | Params | MACs | In-session Acc / F1 (%) | Cross-session Acc / F1 (%) | Cross-user Acc mean [min-max] (%) | Host latency (ms) |",
             "|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        s = m["splits"]
        ins = s.get("in-session", {})
        cs = s.get("cross-session", {})
        cu = s.get("cross-user", {})
        lines.append(
            f"| {name} | {m['parameters']:,} | {m['macs']:,} | {_pct(ins.get('accuracy'))} / {_pct(ins.get('macro_f1'))} | "
            f"{_pct(cs.get('accuracy'))} / {_pct(cs.get('macro_f1'))} | "
            f"{_pct(cu.get('accuracy'))} [{_pct(cu.get('accuracy_min'))}-{_pct(cu.get('accuracy_max'))}] | "
            f"{m['host_latency_ms']:.2f} |")
    lines += ["", "## Robustness (in-session test accuracy, %, paper 002 §5.3)", ""]
    for name, m in r["models"].items():
        rob = m.get("robustness", {})
        parts = []
        for factor, vals in rob.items():
            parts.append(f"{factor}: " + ", ".join(f"{k} → {_pct(v)}" for k, v in vals.items()))
        lines.append(f"- **{name}**: " + ("; ".join(parts) if parts else "no factor metadata"))
    return "\n".join(lines) + "\n"


def main_json(path) -> dict:
    return json.loads(Path(path).read_text())
