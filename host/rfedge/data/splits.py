"""The domain splits every stage shares, derived from per-trial metadata.

Each split is ``{"name", "factor", "doc", "folds": [{"name", "train": [ids], "test": [ids]}]}``.
Trial ids are the manifest's ``id``s. Validation for early stopping is carved out of ``train`` by
the trainer, so test trials never influence training.

A split whose factor is missing from the metadata or takes a single value is not made.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

SPLIT_FACTORS = {
    "cross-session": "session",
    "cross-user": "user",
    "cross-environment": "environment",
    "cross-orientation": "orientation_deg",
}


def _values(trials, key):
    vals = [t.get(key) for t in trials]
    if any(v is None for v in vals):
        return None
    return vals


def in_session_split(trials: list[dict], seed: int, test_fraction: float = 0.25) -> dict:
    """Random split stratified by (user, session, label): every group lands on both sides."""
    rng = np.random.default_rng([seed, 1])
    groups = defaultdict(list)
    for t in trials:
        groups[(t.get("user"), t.get("session"), t["label"])].append(t["id"])
    train, test = [], []
    for key in sorted(groups, key=repr):
        ids = np.array(sorted(groups[key]))
        rng.shuffle(ids)
        n_test = int(round(len(ids) * test_fraction))
        if len(ids) >= 2:
            n_test = min(max(n_test, 1), len(ids) - 1)
        else:
            n_test = 0
        test += ids[:n_test].tolist()
        train += ids[n_test:].tolist()
    return {
        "name": "in-session",
        "factor": None,
        "doc": f"random {int((1 - test_fraction) * 100)}/{int(test_fraction * 100)} split stratified by user, session and class",
        "folds": [{"name": "all", "train": sorted(train), "test": sorted(test)}],
    }


def leave_one_out_split(trials: list[dict], name: str, factor: str) -> dict | None:
    """One fold per value of ``factor``: test on that value, train on all others."""
    vals = _values(trials, factor)
    if vals is None or len(set(vals)) < 2:
        return None
    folds = []
    for v in sorted(set(vals)):
        folds.append({
            "name": f"{factor}={v}",
            "held_out": v,
            "train": sorted(t["id"] for t, tv in zip(trials, vals) if tv != v),
            "test": sorted(t["id"] for t, tv in zip(trials, vals) if tv == v),
        })
    return {"name": name, "factor": factor, "doc": f"leave one {factor} out", "folds": folds}


def cross_session_split(trials: list[dict]) -> dict | None:
    """Train on the earlier sessions, test on the last one (paper 002 §5.2)."""
    vals = _values(trials, "session")
    if vals is None or len(set(vals)) < 2:
        return None
    last = max(vals)
    return {
        "name": "cross-session",
        "factor": "session",
        "doc": f"train on sessions < {last}, test on session {last}",
        "folds": [{
            "name": f"session={last}",
            "held_out": last,
            "train": sorted(t["id"] for t, v in zip(trials, vals) if v != last),
            "test": sorted(t["id"] for t, v in zip(trials, vals) if v == last),
        }],
    }


def make_splits(trials: list[dict], seed: int = 0) -> dict[str, dict]:
    out = {"in-session": in_session_split(trials, seed)}
    cs = cross_session_split(trials)
    if cs:
        out["cross-session"] = cs
    for name in ("cross-user", "cross-environment", "cross-orientation"):
        s = leave_one_out_split(trials, name, SPLIT_FACTORS[name])
        if s:
            out[name] = s
    return out
