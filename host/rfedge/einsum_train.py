"""``rfedge train einsum``: the three per-device Einsum networks of paper 003 (§V-A, Table IV),
each on its own feature set (rfedge.rfid_features: SPR 116, SA 29, WA 38 features), fused on the
aggregator by the product of their posteriors (eq. 9): argmax_c sum_networks log P(c | x).

The run directory receives ``SPR.npz``, ``SA.npz``, ``WA.npz`` (rfedge.models.einsum_format
EinsumParams, checked against the float64 numpy reference before they are written),
``predictions.npz`` (test trial ids, true labels, every network's log posteriors),
``confusion.png`` (merged) and ``metrics.json`` — written last, so a directory with it is
complete.

Split (stated in metrics.json): ``repetition`` — repetitions 0-15 of every user, gesture and
session train, 16-19 test (80/20, every user and class on both sides); ``user=U`` — leave user U
out. Everything fitted (standardization, prior, weights) sees only the training side.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.fileio import atomic_write_json

# Paper 003 Table IV: (D, K, L, R) per device; C comes from the dataset's classes.
PAPER_TABLE_IV = {"SPR": {"D": 6, "K": 2, "L": 10, "R": 10},
                  "SA": {"D": 4, "K": 2, "L": 10, "R": 10},
                  "WA": {"D": 5, "K": 2, "L": 10, "R": 10}}
TEST_REPETITIONS = (16, 17, 18, 19)
QUICK_EPOCHS = 25          # ~75 steps on the quick training side: seconds, and well above chance
QUICK_MAX_TRAIN = 420
# Checked after export: the float32 TF forward vs the float64 reference, relative to the size of
# the log-likelihoods (see tests/test_einsum.py for the derivation of the per-sample bound).
EXPORT_CHECK_RTOL = 1e-4


def split_ids(trials, split: str = "repetition") -> tuple[np.ndarray, np.ndarray, str]:
    """(train ids, test ids, description) of ``split``: "repetition" or "user=U"."""
    if split == "repetition":
        missing = [i for i, t in enumerate(trials) if "repetition" not in t]
        if missing:
            raise RfedgeError(f"trial {missing[0]} has no 'repetition' field", field="repetition")
        rep = np.array([int(t["repetition"]) for t in trials])
        test = np.isin(rep, TEST_REPETITIONS)
        desc = (f"by repetition: repetitions {TEST_REPETITIONS[0]}-{TEST_REPETITIONS[-1]} of every user, gesture "
                f"and session test, the others train")
    elif split.startswith("user="):
        try:
            u = int(split.split("=", 1)[1])
        except ValueError:
            raise RfedgeError(f"expected user=<int>, got {split!r}", field="split") from None
        users = np.array([int(t.get("user", -1)) for t in trials])
        test = users == u
        desc = f"leave user {u} out (cross-user)"
    else:
        raise RfedgeError(f"unknown split {split!r}; expected 'repetition' or 'user=U'", field="split")
    train_ids, test_ids = np.flatnonzero(~test), np.flatnonzero(test)
    if not len(train_ids) or not len(test_ids):
        raise RfedgeError(f"split {split!r} leaves {len(train_ids)} training and {len(test_ids)} test trials",
                          field="split")
    return train_ids, test_ids, desc


def subsample(ids, labels, n: int | None, seed: int) -> np.ndarray:
    """At most ``n`` of ``ids``, every class keeping its share (quick runs)."""
    ids = np.asarray(ids)
    if n is None or n >= len(ids):
        return ids
    rng = np.random.default_rng([int(seed), 7])
    y = np.asarray(labels)[ids]
    keep = []
    for g in np.unique(y):
        pos = ids[y == g]
        keep += rng.permutation(pos)[:max(1, int(round(n * len(pos) / len(ids))))].tolist()
    return np.sort(np.asarray(keep))


def scores(y_true, y_pred, n_classes: int) -> dict:
    """Accuracy and macro precision / recall / F1 (classes with no predictions count 0)."""
    from rfedge.metrics import confusion_matrix, per_class

    cm = confusion_matrix(y_true, y_pred, n_classes)
    pc = per_class(cm)
    return {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "precision": float(pc["precision"].mean()),
            "recall": float(pc["recall"].mean()), "f1": float(pc["f1"].mean()), "confusion_matrix": cm.tolist()}


def fuse(log_posteriors) -> np.ndarray:
    """Paper 003 eq. 9: argmax of the product of posteriors = of the sum of log posteriors."""
    return np.argmax(np.sum([np.asarray(a, np.float64) for a in log_posteriors], axis=0), axis=1)


def fit_networks(sets: dict, labels, train_ids, test_ids, *, configs=PAPER_TABLE_IV, n_classes: int, seed: int = 0,
                 fit_config=None, stream=None, check_export: bool = True) -> dict:
    """Train one EinsumNetwork per feature set on ``train_ids``; score on ``test_ids``.

    Returns {name: {"net", "params", "log_posteriors" (test), "seconds", "history"}}."""
    from rfedge.models import einsum_format
    from rfedge.models.einsum import EinsumNetwork, FitConfig

    fit_config = fit_config or FitConfig()
    labels = np.asarray(labels)
    out = {}
    for name, cfg in configs.items():
        if name not in sets:
            raise RfedgeError(f"no feature set {name!r} (have {sorted(sets)})", field="configs")
        X = np.asarray(sets[name], np.float32)
        if X.ndim != 2 or len(X) != len(labels):
            raise RfedgeError(f"feature set {name} has shape {X.shape}, expected ({len(labels)}, F)", field=name)
        t0 = time.monotonic()
        if stream is not None:
            stream.write(f"einsum {name}: F={X.shape[1]}, (D,K,L,R,C)=({cfg['D']},{cfg['K']},{cfg['L']},{cfg['R']},"
                         f"{n_classes}), {len(train_ids)} training trials, {fit_config.epochs} epochs\n")
        net = EinsumNetwork(X.shape[1], cfg["D"], cfg["K"], cfg["L"], cfg["R"], n_classes, seed=seed, name=name)
        hist = net.fit_data(X[train_ids], labels[train_ids], fit_config, stream=stream,
                            every=max(1, fit_config.epochs // 4))
        params = net.to_params()
        lp = net.predict_log_posteriors(X[test_ids])
        if check_export:
            # The export is what the numpy / fixed-point / C paths run: it must be the trained net.
            ref = einsum_format.log_posteriors(params, X[test_ids[:64]])
            ll = einsum_format.log_likelihoods(params, X[test_ids[:64]])
            err = float(np.max(np.abs(ref - lp[:64])))
            if err > EXPORT_CHECK_RTOL * (1.0 + float(np.max(np.abs(ll)))):
                raise RfedgeError(f"exported network {name} disagrees with the trained one (max |log posterior "
                                  f"difference| {err:.3g})", field=name)
        out[name] = {"net": net, "params": params, "log_posteriors": lp, "seconds": time.monotonic() - t0,
                     "history": hist}
        if stream is not None:
            acc = float((lp.argmax(1) == labels[test_ids]).mean())
            stream.write(f"einsum {name}: test accuracy {acc:.4f} ({out[name]['seconds']:.1f} s)\n")
            stream.flush()
    return out


def _configure_threads():
    from rfedge.train import configure_tf_threads

    configure_tf_threads()


def train_einsum(data_dir, out_run, configs=PAPER_TABLE_IV, split: str = "repetition", seed: int = 0, *,
                 epochs: int | None = None, quick: bool = False, stream=None, features=None) -> dict:
    """Train SPR / SA / WA on ``split`` of the rfid dataset at ``data_dir``, write the run, return
    metrics.json's content. ``features``: precomputed rfedge.rfid_features.feature_sets."""
    from rfedge.metrics import save_confusion_png
    from rfedge.models import einsum_format
    from rfedge.models.einsum import FitConfig

    stream = stream or sys.stderr
    t0 = time.monotonic()
    _configure_threads()
    if features is None:
        from rfedge.rfid_features import feature_sets

        features = feature_sets(data_dir, stream=stream)
    labels = np.asarray(features.labels)
    names = list(features.label_names)
    C = len(names)
    train_ids, test_ids, desc = split_ids(features.trials, split)
    if quick:
        train_ids = subsample(train_ids, labels, QUICK_MAX_TRAIN, seed)
    fc = FitConfig()
    fc = dataclasses.replace(fc, epochs=int(epochs) if epochs else (QUICK_EPOCHS if quick else fc.epochs))
    if fc.epochs < 1:
        raise RfedgeError(f"expected epochs >= 1, got {fc.epochs}", field="epochs")
    nets = fit_networks(features, labels, train_ids, test_ids, configs=configs, n_classes=C, seed=seed,
                        fit_config=fc, stream=stream)
    y_test = labels[test_ids]
    out = Path(out_run)
    out.mkdir(parents=True, exist_ok=True)
    per = {}
    for name, r in nets.items():
        einsum_format.save(r["params"], out / f"{name}.npz")
        net = r["net"]
        per[name] = {"config": {"F": net.F, "D": net.D, "K": net.K, "L": net.L, "R": net.R, "C": net.C,
                                "leaf_mixing": net.leaf_mixing},
                     **scores(y_test, r["log_posteriors"].argmax(1), C),
                     "paper_macs": net.paper_macs(), "exact_ops": net.exact_ops(),
                     "train_seconds": round(r["seconds"], 2),
                     "final_train_accuracy": r["history"]["train_accuracy"][-1]}
    merged_pred = fuse([r["log_posteriors"] for r in nets.values()])
    merged = scores(y_test, merged_pred, C)
    merged["paper_macs"] = int(sum(p["paper_macs"]["total"] for p in per.values()))
    merged["exact_ops"] = int(sum(p["exact_ops"]["total"] for p in per.values()))
    best_single = max(p["accuracy"] for p in per.values())
    np.savez(out / "predictions.npz", test_ids=test_ids, y_true=y_test, y_merged=merged_pred,
             **{f"log_posteriors_{k}": r["log_posteriors"] for k, r in nets.items()})
    save_confusion_png(merged["confusion_matrix"], names, out / "confusion.png",
                       title=f"merged Einsum ({'+'.join(nets)}): acc {merged['accuracy']:.3f}")
    metrics = {"model": "einsum", "networks": per, "merged": merged,
               "merged_gain_over_best_single_points": 100.0 * (merged["accuracy"] - best_single),
               "fusion": "product of posteriors (paper 003 eq. 9)", "split": split, "split_description": desc,
               "n_train": int(len(train_ids)), "n_test": int(len(test_ids)), "seed": int(seed), "quick": bool(quick),
               "fit_config": dataclasses.asdict(fc), "label_names": names, "dataset": str(data_dir),
               "total_seconds": round(time.monotonic() - t0, 1)}
    atomic_write_json(out / "metrics.json", metrics)
    stream.write(f"einsum: merged accuracy {merged['accuracy']:.4f} vs best single {best_single:.4f} "
                 f"({metrics['merged_gain_over_best_single_points']:+.1f} points); run {out}\n")
    return metrics
