"""``rfedge data info``: what a dataset holds, per class and per domain factor."""

from __future__ import annotations

from collections import Counter

import numpy as np

from rfedge.data.dataset import Dataset

# Domain factors shown when the metadata has them; continuous ones are binned.
FACTORS = ["user", "session", "environment", "orientation_deg", "receivers", "source"]
BINNED = {"distance_m": [0.3, 0.4, 0.5, 0.6, 0.7]}


def _bin_label(edges, v):
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo <= v < hi or (hi == edges[-1] and v == hi):
            return f"{lo:g}-{hi:g}"
    return "other"


def dataset_summary(path) -> dict:
    ds = Dataset.open(path)
    trials = ds.trials
    names = ds.label_names
    per_class = Counter(names[t["label"]] for t in trials)
    factors = {}
    for f in FACTORS:
        vals = [t.get(f) for t in trials]
        if all(v is not None for v in vals) and trials:
            factors[f] = {str(k): v for k, v in sorted(Counter(vals).items(), key=lambda kv: kv[0])}
    for f, edges in BINNED.items():
        vals = [t.get(f) for t in trials]
        if all(v is not None for v in vals) and trials:
            factors[f] = dict(sorted(Counter(_bin_label(edges, v) for v in vals).items()))
    splits = {}
    for name in ds.split_names():
        s = ds.split(name)
        splits[name] = {
            "factor": s.get("factor"),
            "folds": len(s["folds"]),
            "train": [len(fd["train"]) for fd in s["folds"]],
            "test": [len(fd["test"]) for fd in s["folds"]],
        }
    arrays = {k: {"dtype": np.dtype(v["dtype"]).name, "shape": v["shape"]} for k, v in ds.manifest["arrays"].items()}
    return {
        "path": str(ds.path),
        "kind": ds.kind,
        "trials": len(trials),
        "classes": len(names),
        "label_names": names,
        "per_class": {n: per_class.get(n, 0) for n in names},
        "factors": factors,
        "splits": splits,
        "arrays": arrays,
        "data_sha256": ds.manifest.get("data_sha256"),
        "preset": ds.manifest.get("config", {}).get("preset"),
    }


def format_summary(s: dict) -> str:
    lines = [f"{s['path']}: {s['kind']} dataset, {s['trials']} trials, {s['classes']} classes"
             + (f" (preset {s['preset']})" if s.get("preset") else "")]
    width = max((len(n) for n in s["label_names"]), default=5)
    lines.append("  per class:")
    items = list(s["per_class"].items())
    for i in range(0, len(items), 6):
        lines.append("    " + "  ".join(f"{n:>{width}} {c:>5}" for n, c in items[i:i + 6]))
    for f, counts in s["factors"].items():
        lines.append(f"  per {f}: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    lines.append("  arrays: " + ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in s["arrays"].items()))
    lines.append("  splits:")
    for name, sp in s["splits"].items():
        tr, te = sp["train"], sp["test"]
        if sp["folds"] == 1:
            lines.append(f"    {name:<18} train {tr[0]}, test {te[0]}")
        else:
            lines.append(f"    {name:<18} {sp['folds']} folds by {sp['factor']}, test {min(te)}-{max(te)} trials per fold")
    return "\n".join(lines)
