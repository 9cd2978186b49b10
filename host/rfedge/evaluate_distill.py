"""``rfedge evaluate --protocol paper000``: the distillation ablation of paper 000 (issue 7).

Per domain (fold 0 of the split: in-session, cross-user, cross-environment), the semantic teacher
is trained once (rfedge.distill.train_teacher) and the compact student four times
(rfedge.distill.train_distilled): alone, + soft labels, + feature distillation, full. The
results are an ablation table (rows: the variants and the teacher; columns: test accuracy per
domain), a cost table (parameters, MACs, host latency of teacher and student) and the issue's
goals, computed from the numbers:

- the distilled (full) student's cross-domain gain over "alone", averaged over the cross domains
  evaluated, is >= GOAL_CROSS_POINTS points;
- the full student's in-domain (in-session) accuracy is >= GOAL_IN_DOMAIN_RATIO of the teacher's.

A goal whose domains were not evaluated is reported as not evaluated (``met`` None).

Outputs under ``out``: results.json, results.md and the run directories
``runs/<domain>/teacher`` and ``runs/<domain>/<variant>``. A complete run of exactly the same
settings (dataset, split, fold, seed, epochs, caps; for a student also its teacher) is reused, not
retrained, so an interrupted evaluation resumes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.fileio import atomic_write_json, atomic_write_text

DOMAINS = ("in-session", "cross-user", "cross-environment")
IN_DOMAIN = "in-session"
VARIANT_ORDER = ("alone", "soft", "feature", "full")
VARIANT_TITLES = {"alone": "Student alone", "soft": "+ soft labels", "feature": "+ feature distillation",
                  "full": "Full (soft + feature)", "teacher": "Teacher"}
GOAL_CROSS_POINTS = 2.0
GOAL_IN_DOMAIN_RATIO = 0.98
# Quick (smoke) preset: the functions' quick schedules on at most this many trials per fold side.
# Accuracies are ratios of counts: a gain of exactly the goal must not fail by float rounding.
_EPS = 1e-9
QUICK_MAX_TRAIN = 200
QUICK_MAX_TEST = 100


def _finished(run_dir: Path, *, model: str, sha, split: str, fold_index: int, seed: int, epochs, max_train,
              max_test, variant: str | None = None, teacher: dict | None = None) -> dict | None:
    """metrics.json of a complete run of exactly these settings, else None."""
    mpath = run_dir / "metrics.json"
    if not mpath.is_file() or not (run_dir / "model.keras").exists():
        return None
    try:
        m = json.loads(mpath.read_text())
    except (OSError, ValueError):
        return None
    same = (m.get("model") == model and m.get("data_sha256") == sha and m.get("split") == split
            and m.get("fold_index") == fold_index and m.get("seed") == seed
            and m.get("epochs") == epochs
            and m.get("max_train") == max_train and m.get("max_test") == max_test)
    if same and variant is not None:
        d = m.get("distill") or {}
        same = (d.get("variant") == variant and teacher is not None
                and d.get("teacher_run") == str(Path(teacher["_run"]).resolve())
                and d.get("teacher_accuracy") == teacher.get("accuracy")
                and d.get("teacher_parameters") == teacher.get("parameters"))
    return m if same else None


def _summary(m: dict) -> dict:
    keys = ("accuracy", "macro_f1", "parameters", "macs", "host_latency_ms_per_window", "fold", "n_train", "n_val",
            "n_test", "epochs", "epochs_run", "best_epoch", "total_seconds")
    return {k: m.get(k) for k in keys}


def goals(domains: dict) -> dict:
    """The issue's two goals from the per-domain accuracies (``domains[d][row]["accuracy"]``)."""
    cross = [d for d in domains if d != IN_DOMAIN]
    g = {}
    if cross:
        gains = {d: 100.0 * (domains[d]["full"]["accuracy"] - domains[d]["alone"]["accuracy"]) for d in cross}
        mean = float(np.mean(list(gains.values())))
        g["cross_domain_gain"] = {"goal": f"full student's accuracy gain over the student alone, averaged over the "
                                          f"cross domains, >= {GOAL_CROSS_POINTS:g} points",
                                  "gains_points": gains, "mean_points": mean, "met": bool(mean >= GOAL_CROSS_POINTS - _EPS)}
    else:
        g["cross_domain_gain"] = {"goal": f"full student's cross-domain gain over alone >= {GOAL_CROSS_POINTS:g} "
                                          "points", "gains_points": {}, "mean_points": None, "met": None}
    if IN_DOMAIN in domains:
        t, s = domains[IN_DOMAIN]["teacher"]["accuracy"], domains[IN_DOMAIN]["full"]["accuracy"]
        ratio = float(s / t) if t > 0 else None
        g["in_domain_ratio"] = {"goal": f"full student's {IN_DOMAIN} accuracy >= {100 * GOAL_IN_DOMAIN_RATIO:g}% "
                                        "of the teacher's", "student_accuracy": s, "teacher_accuracy": t,
                                "ratio": ratio, "met": None if ratio is None else bool(ratio >= GOAL_IN_DOMAIN_RATIO - _EPS)}
    else:
        g["in_domain_ratio"] = {"goal": f"full student's {IN_DOMAIN} accuracy >= {100 * GOAL_IN_DOMAIN_RATIO:g}% "
                                        "of the teacher's", "ratio": None, "met": None}
    return g


def evaluate_paper000(data_dir, out, *, quick: bool = False, seed: int = 0, domains=DOMAINS,
                      epochs: int | None = None, cache_dir=None, stream=None) -> dict:
    """Run the paper 000 distillation ablation; write results.json and results.md under ``out``.

    ``quick``: the training functions' quick schedules on at most QUICK_MAX_TRAIN training and
    QUICK_MAX_TEST test trials per domain (a smoke test, not paper figures). ``epochs``: overrides
    the teacher's and the students' epochs (default: the functions' own). ``cache_dir``: the
    teacher inputs' cache (default ``out/cache``)."""
    from rfedge.data.dataset import Dataset
    from rfedge.distill import QUICK_EPOCHS, STUDENT_RECIPE, TEACHER_RECIPE, train_distilled, train_teacher
    from rfedge.train import select_fold

    stream = stream or sys.stderr
    t0 = time.monotonic()
    domains = tuple(domains)
    ds = Dataset.open(data_dir)
    available = list(ds.manifest.get("splits") or [])
    unknown = [d for d in domains if d not in available]
    if not domains or unknown or len(set(domains)) != len(domains):
        raise RfedgeError(f"domains {list(domains)}: unknown or repeated {unknown or list(domains)}; this dataset "
                          f"has the splits {', '.join(available)}", field="domains")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir is not None else out / "cache"
    sha = ds.manifest.get("data_sha256")
    max_train, max_test = (QUICK_MAX_TRAIN, QUICK_MAX_TEST) if quick else (None, None)
    kw = dict(fold=0, seed=int(seed), epochs=epochs, quick=bool(quick), cache_dir=cache_dir,
              max_train=max_train, max_test=max_test, stream=stream)
    per = {}
    reused = []
    for dom in domains:
        fold_index, _ = select_fold(ds, dom, 0)
        same = dict(sha=sha, split=dom, fold_index=fold_index, seed=int(seed), max_train=max_train, max_test=max_test)
        tdir = out / "runs" / dom / "teacher"
        t_epochs = int(epochs if epochs is not None else (QUICK_EPOCHS["teacher"] if quick else TEACHER_RECIPE.epochs))
        s_epochs = int(epochs if epochs is not None else (QUICK_EPOCHS["student"] if quick else STUDENT_RECIPE.epochs))
        tm = _finished(tdir, model="teacher", epochs=t_epochs, **same)
        if tm is not None:
            stream.write(f"paper000: {tdir} is complete; reused, not retrained\n")
            reused.append(str(tdir.relative_to(out)))
        else:
            stream.write(f"paper000: {dom}: training the teacher\n")
            tm = train_teacher(data_dir, tdir, split=dom, **kw)
        tm = {**tm, "_run": str(tdir)}
        rows = {"teacher": _summary(tm)}
        for v in VARIANT_ORDER:
            sdir = out / "runs" / dom / v
            sm = _finished(sdir, model="student", epochs=s_epochs, variant=v, teacher=tm, **same)
            if sm is not None:
                stream.write(f"paper000: {sdir} is complete; reused, not retrained\n")
                reused.append(str(sdir.relative_to(out)))
            else:
                stream.write(f"paper000: {dom}: training the student ({v})\n")
                sm = train_distilled(data_dir, tdir, sdir, variant=v, split=dom, **kw)
            rows[v] = _summary(sm)
        per[dom] = rows
        stream.write(f"paper000: {dom}: " + ", ".join(f"{k} {r['accuracy']:.4f}" for k, r in rows.items()) + "\n")
        stream.flush()

    first = per[domains[0]]
    costs = {name: {k: first[key][k] for k in ("parameters", "macs", "host_latency_ms_per_window")}
             for name, key in (("teacher", "teacher"), ("student", "full"))}
    # Latency is measured per run; the table shows the median over the runs of each model.
    costs["teacher"]["host_latency_ms_per_window"] = float(np.median(
        [per[d]["teacher"]["host_latency_ms_per_window"] for d in domains]))
    costs["student"]["host_latency_ms_per_window"] = float(np.median(
        [per[d][v]["host_latency_ms_per_window"] for d in domains for v in VARIANT_ORDER]))
    res = {"protocol": "paper000", "dataset": str(data_dir), "data_dir": str(Path(data_dir).resolve()),
           "data_sha256": sha, "n_trials": len(ds.labels), "label_names": list(ds.label_names),
           "seed": int(seed), "quick": bool(quick), "epochs": epochs, "max_train": max_train, "max_test": max_test,
           "domains": list(domains), "variants": list(VARIANT_ORDER), "results": per, "costs": costs,
           "goals": goals(per), "reused_runs": reused, "runs_dir": "runs"}
    res["seconds"] = round(time.monotonic() - t0, 1)
    atomic_write_json(out / "results.json", res)
    atomic_write_text(out / "results.md", format_markdown(res))
    stream.write(f"paper000: done in {res['seconds']:.0f} s; {out / 'results.md'}\n")
    return res


def _p(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _met(m) -> str:
    return "not evaluated" if m is None else ("met" if m else "not met")


def format_markdown(r: dict) -> str:
    doms = r["domains"]
    per = r["results"]
    lines = ["# Paper 000 evaluation: semantic teacher and dual distillation", "",
             f"Dataset `{r['dataset']}`: {r['n_trials']} trials, {len(r['label_names'])} classes; seed {r['seed']}; "
             f"fold 0 of each split; {r['seconds']:.0f} s."
             + (" **Quick preset: a smoke test, not paper figures.**" if r["quick"] else ""), "",
             "Folds: " + "; ".join(f"{d} {per[d]['teacher']['fold']} ({per[d]['teacher']['n_train']} train / "
                                  f"{per[d]['teacher']['n_val']} validation / {per[d]['teacher']['n_test']} test)"
                                  for d in doms) + ".", "",
             "## Ablation: test accuracy (%)", "",
             "| Model | " + " | ".join(doms) + " |", "|---|" + "---:|" * len(doms)]
    for row in (*r["variants"], "teacher"):
        lines.append(f"| {VARIANT_TITLES.get(row, row)} | " + " | ".join(_p(per[d][row]["accuracy"]) for d in doms)
                     + " |")
    lines += ["", "Macro-F1 (%): " + "; ".join(
        f"{d}: " + ", ".join(f"{k} {_p(per[d][k]['macro_f1'])}" for k in (*r["variants"], "teacher")) for d in doms)
        + "."]
    c = r["costs"]
    lines += ["", "## Cost", "",
              "| Model | Parameters | MACs | Host latency (ms/window) |", "|---|---:|---:|---:|"]
    for name in ("teacher", "student"):
        lines.append(f"| {name.capitalize()} | {c[name]['parameters']:,} | {c[name]['macs']:,} | "
                     f"{c[name]['host_latency_ms_per_window']:.2f} |")
    lines += ["", "Host latency: median over the runs of features + network, batch 1, on this machine "
                  "(reported, never asserted). The student is the same network in every variant; "
                  "the distillation projection exists only in training."]
    g = r["goals"]
    cg, ir = g["cross_domain_gain"], g["in_domain_ratio"]
    lines += ["", "## Goals (computed from the numbers above)", ""]
    if cg["mean_points"] is None:
        lines.append(f"- Goal ({cg['goal']}): no cross domain evaluated — {_met(cg['met'])}.")
    else:
        lines.append(f"- Goal ({cg['goal']}): " + ", ".join(f"{k} {v:+.2f}" for k, v in cg["gains_points"].items())
                     + f"; mean {cg['mean_points']:+.2f} points — {_met(cg['met'])}.")
    if ir.get("ratio") is None:
        lines.append(f"- Goal ({ir['goal']}): " + ("in-session not evaluated" if "teacher_accuracy" not in ir
                                                   else "teacher accuracy 0") + f" — {_met(ir['met'])}.")
    else:
        lines.append(f"- Goal ({ir['goal']}): student {_p(ir['student_accuracy'])}% / teacher "
                     f"{_p(ir['teacher_accuracy'])}% = {100 * ir['ratio']:.1f}% — {_met(ir['met'])}.")
    if r.get("reused_runs"):
        lines += ["", f"Reused finished runs (not retrained): {len(r['reused_runs'])}."]
    lines += ["", f"Run directories: `{r['runs_dir']}/<domain>/teacher` and `{r['runs_dir']}/<domain>/<variant>`."]
    return "\n".join(lines) + "\n"
