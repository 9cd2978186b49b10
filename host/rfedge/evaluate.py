"""``rfedge evaluate --protocol paper002``: the evaluation of paper 002 §5 on one dataset.

The student and both baselines under in-session, cross-session and cross-user (every
leave-one-user-out fold) splits, plus the orientation/distance robustness of §5.3 read off the
test predictions. Every model run is an ordinary ``rfedge train`` run directory under
``OUT/runs/<model>/<split>/<fold>/`` (its training log in ``train.log``); the tables are rebuilt
from the runs' ``predictions.npz`` (the source of truth, checked against their metrics.json).

Features of every trial are computed once per evaluation (rfedge.featcache, cached under
``OUT/cache/``) and shared by all folds and models; runs train two at a time in worker processes
(rfedge.runpool) on a 2-CPU machine. The evaluation is resumable: a run whose
directory is complete and was made with the same dataset, seed, preset, recipe and features is
not retrained. Outputs: ``results.json``, ``results.md`` and ``confusion/<model>-<split>.png``
(cross-user: summed over the folds).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from rfedge.data.dataset import Dataset
from rfedge.errors import RfedgeError
from rfedge.fileio import atomic_write_json, atomic_write_text

MODELS = ("student", "cnn", "svm")
SPLITS = ("in-session", "cross-session", "cross-user")
SPLIT_TITLES = {"in-session": "In-session", "cross-session": "Cross-session", "cross-user": "Cross-user"}
DISTANCE_STEP_M = 0.1
# Issue 3's goals on the default simulated dataset (paper 002 §5.1-5.2), accuracy.
TARGETS = {("student", "in-session"): 0.97, ("student", "cross-session"): 0.92, ("student", "cross-user"): 0.88}


@dataclasses.dataclass(frozen=True)
class Preset:
    """How much of the protocol runs. ``full`` is paper 002's; ``quick`` is a smoke test."""

    name: str
    cross_user_folds: int | None      # first N leave-one-user-out folds; None: all
    max_train: int | None             # cap on a fold's training side (stratified subset)
    max_test: int | None              # cap on a fold's test side
    quick_training: bool              # rfedge.train's quick: a few epochs, fewer latency repeats

    def describe(self) -> str:
        if self.name == "full":
            return "full protocol: every fold, every trial, the full training recipe"
        from rfedge.train import QUICK_EPOCHS

        return (f"quick preset (smoke test, not paper figures): first {self.cross_user_folds} cross-user folds, "
                f"at most {self.max_train} training and {self.max_test} test trials per fold, "
                f"{QUICK_EPOCHS} epochs")


PRESETS = {"full": Preset("full", None, None, None, False), "quick": Preset("quick", 2, 400, 200, True)}


def plan_runs(ds: Dataset, preset: Preset = PRESETS["full"]) -> list[tuple[str, str]]:
    """(split, fold name) pairs of the protocol that this dataset supports."""
    have = set(ds.split_names())
    out = []
    for split in SPLITS:
        if split not in have:
            continue
        folds = [f["name"] for f in ds.split(split)["folds"]]
        if split == "cross-user" and preset.cross_user_folds is not None:
            folds = folds[:preset.cross_user_folds]
        out += [(split, f) for f in folds]
    if not out:
        raise RfedgeError(f"dataset has none of the splits {', '.join(SPLITS)}", path=ds.path)
    return out


def run_path(out, model: str, split: str, fold: str) -> Path:
    return Path(out) / "runs" / model / split / fold.replace("=", "-").replace("/", "_")


def _expected(ds: Dataset, model: str, split: str, fold: str, seed: int, preset: Preset) -> dict:
    """The metrics.json fields a reusable run must have."""
    from rfedge.train import QUICK_EPOCHS, QUICK_PATIENCE, RECIPES

    r = RECIPES.get(model, RECIPES["student"])
    epochs = QUICK_EPOCHS if preset.quick_training else r.epochs
    patience = QUICK_PATIENCE if preset.quick_training else r.patience
    want = {"model": model, "split": split, "fold": fold, "seed": seed, "data_sha256": ds.manifest.get("data_sha256"),
            "epochs": epochs, "patience": patience, "max_train": preset.max_train, "max_test": preset.max_test}
    if model != "svm":
        want["recipe"] = dataclasses.asdict(dataclasses.replace(r, epochs=epochs, patience=patience))
    return want


def completed_run(run_dir, want: dict) -> dict | None:
    """metrics.json of a complete run made as ``want`` describes, else None."""
    from rfedge.features import FeatureConfig
    from rfedge.train import PREDICTIONS_FILE

    run_dir = Path(run_dir)
    try:
        m = json.loads((run_dir / "metrics.json").read_text())
        feats = json.loads((run_dir / "features.json").read_text())
    except (OSError, ValueError):
        return None
    if not (run_dir / PREDICTIONS_FILE).is_file() or any(m.get(k) != v for k, v in want.items()):
        return None
    feats.pop("threshold", None)
    default = FeatureConfig().to_dict()
    default.pop("threshold")
    return m if feats == default else None


def _std(xs) -> float | None:
    return float(np.std(xs)) if len(xs) > 1 else None


def _distance_bins(d: np.ndarray) -> list[tuple[float, float]]:
    lo = math.floor(d.min() / DISTANCE_STEP_M + 1e-9) * DISTANCE_STEP_M
    edges = [round(lo + k * DISTANCE_STEP_M, 6) for k in range(int(math.ceil((d.max() - lo) / DISTANCE_STEP_M - 1e-9)) + 1)]
    if len(edges) < 2:
        edges.append(round(edges[0] + DISTANCE_STEP_M, 6))
    return list(zip(edges[:-1], edges[1:]))


def robustness(ds: Dataset, test_ids, y_true, y_pred) -> dict:
    """Accuracy (and trial count) per orientation and per 0.1 m distance bin (paper 002 §5.3), and
    each factor's spread (best minus worst accuracy, in percentage points)."""
    trials = ds.trials
    ids = [int(i) for i in test_ids]
    ok = np.asarray(y_true) == np.asarray(y_pred)
    out = {}
    if ids and all("orientation_deg" in trials[i] for i in ids):
        o = np.array([trials[i]["orientation_deg"] for i in ids], dtype=np.float64)
        out["orientation_deg"] = {f"{v:g}": {"accuracy": float(ok[o == v].mean()), "n": int((o == v).sum())}
                                  for v in sorted(set(o.tolist()))}
    if ids and all("distance_m" in trials[i] for i in ids):
        d = np.array([trials[i]["distance_m"] for i in ids], dtype=np.float64)
        bins = _distance_bins(d)
        dist = {}
        for k, (lo, hi) in enumerate(bins):
            sel = (d >= lo - 1e-9) & ((d < hi - 1e-9) | ((k == len(bins) - 1) & (d <= hi + 1e-9)))
            if sel.any():
                dist[f"{lo:g}-{hi:g}"] = {"accuracy": float(ok[sel].mean()), "n": int(sel.sum())}
        out["distance_m"] = dist
    for factor in list(out):
        accs = [v["accuracy"] for v in out[factor].values()]
        out[factor] = {"bins": out[factor], "spread_points": 100.0 * (max(accs) - min(accs))}
    return out


def _collect(ds: Dataset, out: Path, model: str, runs, metrics: dict) -> dict:
    """Per-split figures of one model from its runs' predictions (checked against metrics.json)."""
    from rfedge.metrics import classification_report
    from rfedge.train import load_predictions

    names = ds.label_names
    g = len(names)
    splits: dict = {}
    pooled: dict = {}
    for split, fold in runs:
        rd = run_path(out, model, split, fold)
        p = load_predictions(rd)
        m = metrics[(model, split, fold)]
        rep = classification_report(p["y_true"], p["y_pred"], names)
        truth = ds.labels[p["test_ids"]]
        if not np.array_equal(truth, p["y_true"]) or abs(rep["accuracy"] - m["accuracy"]) > 1e-9:
            raise RfedgeError("predictions.npz disagrees with the dataset labels or metrics.json; "
                              "delete the run directory to retrain it", path=rd)
        splits.setdefault(split, {"folds": {}})["folds"][fold] = {
            "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"], "n_test": rep["n_test"],
            "epochs_run": m.get("epochs_run"), "seconds": m.get("total_seconds"),
            "run": str(rd.relative_to(out))}
        pl = pooled.setdefault(split, {"ids": [], "y": [], "p": [], "cm": np.zeros((g, g), np.int64)})
        pl["ids"] += p["test_ids"].tolist()
        pl["y"] += p["y_true"].tolist()
        pl["p"] += p["y_pred"].tolist()
        pl["cm"] += np.asarray(rep["confusion_matrix"], np.int64)
    for split, s in splits.items():
        accs = [f["accuracy"] for f in s["folds"].values()]
        f1s = [f["macro_f1"] for f in s["folds"].values()]
        cm = pooled[split]["cm"]
        s.update(n_folds=len(accs), accuracy=float(np.mean(accs)), accuracy_std=_std(accs),
                 accuracy_min=float(min(accs)), accuracy_max=float(max(accs)),
                 macro_f1=float(np.mean(f1s)), macro_f1_std=_std(f1s),
                 pooled_accuracy=float(np.trace(cm) / cm.sum()), confusion_matrix=cm.tolist(),
                 robustness=robustness(ds, pooled[split]["ids"], pooled[split]["y"], pooled[split]["p"]))
    return splits


def _save_confusions(out: Path, results: dict, label_names) -> dict:
    from rfedge.metrics import save_confusion_png

    files = {}
    for model, m in results["models"].items():
        for split, s in m["splits"].items():
            f = out / "confusion" / f"{model}-{split}.png"
            how = f"summed over {s['n_folds']} folds" if s["n_folds"] > 1 else next(iter(s["folds"]))
            save_confusion_png(s["confusion_matrix"], label_names, f,
                               title=f"{model} — {split} ({how}): acc {s['pooled_accuracy']:.3f}")
            files[f"{model}/{split}"] = str(f.relative_to(out))
    return files


def _eta(seconds_by_model: dict, todo: list[str]) -> float | None:
    every = [t for ts in seconds_by_model.values() for t in ts]
    if not every:
        return None
    return sum(np.mean(seconds_by_model.get(m) or every) for m in todo)


def evaluate_paper002(data_dir, out_dir, *, models=MODELS, seed: int = 0, quick: bool = False, stream=None,
                      jobs: int | None = None) -> dict:
    """Run (or reuse) every run of the protocol and write results.json, results.md and the
    confusion PNGs under ``out_dir``. ``jobs`` runs train in parallel worker processes (default:
    the CPUs this process may use, at most 2), each with its share of TensorFlow threads; 1 trains
    in this process. Progress goes to ``stream`` (stderr); returns results.json's content."""
    from rfedge.featcache import FeatureStore, default_workers
    from rfedge.features import FeatureConfig
    from rfedge.models import MODEL_KINDS

    stream = stream or sys.stderr
    models = tuple(models)
    bad = [m for m in models if m not in MODEL_KINDS]
    if bad or not models:
        raise RfedgeError(f"unknown model(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODEL_KINDS)}")
    ds = Dataset.open(data_dir)
    if ds.kind != "csi":
        raise RfedgeError(f"the paper002 protocol needs a CSI dataset, this one is {ds.kind!r}", path=data_dir)
    cpus = default_workers(limit=None)
    jobs = max(1, int(jobs if jobs is not None else min(2, cpus)))
    preset = PRESETS["quick" if quick else "full"]
    out = Path(out_dir)
    runs = plan_runs(ds, preset)
    plan = [(m, s, f) for m in models for s, f in runs]
    t0 = time.monotonic()
    stream.write(f"evaluate paper002: {len(models)} model(s) x {len(runs)} fold runs = {len(plan)} runs, "
                 f"{jobs} at a time; {preset.describe()}\n")

    metrics: dict = {}
    todo = []
    for k, job in enumerate(plan, 1):
        m = completed_run(run_path(out, *job), _expected(ds, *job, seed, preset))
        if m is None:
            todo.append(job)
        else:
            metrics[job] = m
            stream.write(f"[{k}/{len(plan)}] {' '.join(job)}: complete run reused (accuracy {m['accuracy']:.4f})\n")
    if todo:
        # Every trial's features once, before any training: workers load them from the cache.
        FeatureStore(ds, cache_dir=out / "cache", workers=default_workers(), stream=stream).prepare(FeatureConfig())
        _train_all(ds, out, todo, plan, metrics, seed, preset, jobs, max(1, cpus // jobs), stream)

    results: dict = {"protocol": "paper002", "dataset": str(ds.path.resolve()),
                     "data_sha256": ds.manifest.get("data_sha256"), "seed": seed,
                     "preset": dataclasses.asdict(preset), "preset_description": preset.describe(),
                     "label_names": ds.label_names, "runs_trained": len(todo), "runs_reused": len(plan) - len(todo),
                     "jobs": jobs, "models": {}}
    for model in models:
        first = metrics[(model, *runs[0])]
        results["models"][model] = {
            "parameters": first["parameters"], "macs": first["macs"],
            "host_latency_ms": float(np.median([metrics[(model, *r)]["host_latency_ms_per_window"] for r in runs])),
            "splits": _collect(ds, out, model, runs, metrics)}
    results["targets"] = check_targets(results)
    results["confusion_png"] = _save_confusions(out, results, ds.label_names)
    results["seconds"] = round(time.monotonic() - t0, 1)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", format_markdown(results))
    stream.write(f"evaluate paper002: done in {results['seconds']:.0f} s ({len(todo)} runs trained, "
                 f"{len(plan) - len(todo)} reused)\n")
    return results


def _train_all(ds, out: Path, todo, plan, metrics: dict, seed: int, preset: Preset, jobs: int, threads: int,
               stream) -> None:
    """Train the runs ``todo`` (in this process, or on ``jobs`` workers), filling ``metrics``."""
    index = {job: k for k, job in enumerate(plan, 1)}
    seconds: dict = {}
    started: dict = {}

    def head(job):
        return f"[{index[job]}/{len(plan)}] {' '.join(job)}"

    def task(job):
        model, split, fold = job
        rd = run_path(out, *job)
        rd.mkdir(parents=True, exist_ok=True)
        return {"job": list(job), "log": str(rd / "train.log"), "cache_dir": str(out / "cache"),
                "kwargs": {"data_dir": str(ds.path), "out_dir": str(rd), "model": model, "split": split, "fold": fold,
                           "seed": seed, "quick": preset.quick_training, "max_train": preset.max_train,
                           "max_test": preset.max_test}}

    def on_event(kind, t, payload):
        job = tuple(t["job"])
        if kind == "start":
            started[job] = time.monotonic()
            where = f"worker {payload + 1}, " if jobs > 1 else ""
            stream.write(f"{head(job)}: training ({where}log {t['log']})\n")
        elif kind == "done":
            metrics[job] = payload
            dt = time.monotonic() - started[job]
            seconds.setdefault(job[0], []).append(dt)
            left = [j[0] for j in todo if j not in metrics]
            eta = _eta(seconds, left)
            epochs = f", {payload['epochs_run']} epochs" if payload.get("epochs_run") else ""
            stream.write(f"{head(job)}: accuracy {payload['accuracy']:.4f}{epochs}, {dt:.0f} s" +
                         (f"; ~{eta / 60 / jobs:.1f} min left" if left and eta is not None else "") + "\n")
        else:
            stream.write(f"{head(job)}: failed: {payload}\n")
        stream.flush()

    tasks = [task(job) for job in todo]
    if jobs > 1:
        from rfedge.runpool import run_tasks

        run_tasks(tasks, jobs, threads, on_event)
        return
    from rfedge.featcache import FeatureStore
    from rfedge.train import train

    store = FeatureStore(ds, cache_dir=out / "cache", stream=stream)
    for t in tasks:
        on_event("start", t, 0)
        with open(t["log"], "a") as log:
            store.stream = log
            m = train(**t["kwargs"], stream=log, features=store)
        on_event("done", t, m)


def check_targets(r: dict) -> list[dict]:
    """Issue 3's goals: the student's accuracy floors, and heavy CNN >= student > SVM per split."""
    out = []
    ms = r["models"]
    for (model, split), floor in TARGETS.items():
        s = ms.get(model, {}).get("splits", {}).get(split)
        if s:
            out.append({"goal": f"{model} {split} accuracy >= {100 * floor:g}%", "value": s["accuracy"],
                        "met": s["accuracy"] >= floor})
    if {"student", "cnn", "svm"} <= set(ms):
        for split in SPLITS:
            a = {m: ms[m]["splits"].get(split, {}).get("accuracy") for m in ("cnn", "student", "svm")}
            if None not in a.values():
                out.append({"goal": f"{split}: cnn >= student > svm",
                            "value": [a["cnn"], a["student"], a["svm"]],
                            "met": a["cnn"] >= a["student"] > a["svm"]})
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _pm(mean, std) -> str:
    return _pct(mean) + ("" if std is None else f" ± {100 * std:.1f}")


def format_markdown(r: dict) -> str:
    """results.json as Markdown, shaped like paper 002 §5."""
    models = r["models"]
    splits = [s for s in SPLITS if any(s in m["splits"] for m in models.values())]
    lines = ["# Paper 002 evaluation (§5)", "",
             f"Dataset `{r['dataset']}` (sha256 {str(r['data_sha256'])[:12]}), seed {r['seed']}, "
             f"{r['runs_trained']} runs trained ({r.get('jobs', 1)} at a time) and {r['runs_reused']} reused "
             f"in {r['seconds']:.0f} s.", "",
             f"Preset: {r['preset_description']}.", "",
             "## Accuracy and macro-F1 (%; mean ± std over folds)", "",
             "| Model | Params | MACs | Host latency (ms) | " + " | ".join(
                 f"{SPLIT_TITLES[s]} Acc | {SPLIT_TITLES[s]} F1" for s in splits) + " |",
             "|---|---:|---:|---:|" + "---:|---:|" * len(splits)]
    for name, m in models.items():
        cells = []
        for s in splits:
            x = m["splits"].get(s)
            cells += [_pm(x["accuracy"], x["accuracy_std"]), _pm(x["macro_f1"], x["macro_f1_std"])] if x else ["–", "–"]
        lines.append(f"| {name} | {m['parameters']:,} | {m['macs']:,} | {m['host_latency_ms']:.2f} | " +
                     " | ".join(cells) + " |")
    lines += ["", "Host latency: median over the runs of one window's feature extraction + inference (batch 1) on "
              "this host" + (f", measured while {r['jobs'] - 1} other run(s) trained: an upper bound."
                             if r.get("jobs", 1) > 1 else ".")]
    folds = sorted({f for m in models.values() for f in m["splits"].get("cross-user", {}).get("folds", {})},
                   key=lambda f: (len(f), f))
    if folds:
        lines += ["", "## Cross-user, per held-out user (accuracy / macro-F1, %)", "",
                  "| Fold | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
        for f in folds:
            row = []
            for m in models.values():
                x = m["splits"].get("cross-user", {}).get("folds", {}).get(f)
                row.append(f"{_pct(x['accuracy'])} / {_pct(x['macro_f1'])}" if x else "–")
            lines.append(f"| {f} | " + " | ".join(row) + " |")
        lines.append("| range | " + " | ".join(
            f"{_pct(m['splits']['cross-user']['accuracy_min'])}–{_pct(m['splits']['cross-user']['accuracy_max'])}"
            if "cross-user" in m["splits"] else "–" for m in models.values()) + " |")
    lines += ["", "## Robustness to orientation and distance (accuracy %, paper 002 §5.3)", "",
              "Spread = best minus worst condition, in percentage points (the paper: < 5 for the student)."]
    for split in ("in-session", "cross-user"):
        for factor, title in (("orientation_deg", "orientation (°)"), ("distance_m", "distance (m)")):
            rob = {n: m["splits"].get(split, {}).get("robustness", {}).get(factor) for n, m in models.items()}
            rob = {n: v for n, v in rob.items() if v}
            if not rob:
                continue
            keys = list(dict.fromkeys(k for v in rob.values() for k in v["bins"]))
            where = "in-session test" if split == "in-session" else "cross-user tests, all folds pooled"
            lines += ["", f"### By {title}, {where}", "",
                      "| Model | " + " | ".join(keys) + " | spread (pp) |", "|---|" + "---:|" * (len(keys) + 1)]
            for n, v in rob.items():
                cells = [(_pct(v["bins"][k]["accuracy"]) + f" (n={v['bins'][k]['n']})") if k in v["bins"] else "–"
                         for k in keys]
                lines.append(f"| {n} | " + " | ".join(cells) + f" | {v['spread_points']:.1f} |")
    if r.get("targets"):
        lines += ["", "## Goals (issue 3, default simulated dataset)", "", "| Goal | Value (%) | Met |", "|---|---|---|"]
        for t in r["targets"]:
            v = t["value"]
            val = " / ".join(_pct(x) for x in v) if isinstance(v, list) else _pct(v)
            lines.append(f"| {t['goal']} | {val} | {'yes' if t['met'] else 'no'} |")
    if r.get("confusion_png"):
        lines += ["", "## Confusion matrices", ""]
        lines += [f"- {k}: [`{v}`]({v})" for k, v in r["confusion_png"].items()]
    return "\n".join(lines) + "\n"
