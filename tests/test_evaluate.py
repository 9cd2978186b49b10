"""``rfedge evaluate --protocol paper002`` on a tiny simulated dataset with the quick preset: the
tables, JSON and PNGs exist and agree with the runs' saved predictions; runs are reused on resume."""

import io
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from rfedge.data.dataset import Dataset
from rfedge.evaluate import PRESETS, _expected, completed_run, evaluate_paper002, plan_runs, robustness, run_path

MODELS = ("student", "svm")     # the CNN trains through the same Keras path as the student


@pytest.fixture(scope="module")
def ds_dir(tmp_path_factory):
    from rfedge.sim.csi import synth_csi_dataset

    d = tmp_path_factory.mktemp("evaluate") / "ds"
    synth_csi_dataset(d, overrides=dict(users=3, sessions=2, trials_per_class=2))
    return d


@pytest.fixture(scope="module")
def evaluated(ds_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "out"
    log = io.StringIO()
    r = evaluate_paper002(ds_dir, out, models=MODELS, quick=True, stream=log, jobs=2)     # worker processes
    return out, r, log.getvalue()


def test_quick_plan_is_a_subset_of_the_full_one(ds_dir):
    ds = Dataset.open(ds_dir)
    full = plan_runs(ds, PRESETS["full"])
    quick = plan_runs(ds, PRESETS["quick"])
    assert full == [("in-session", "all"), ("cross-session", "session=1"),
                    ("cross-user", "user=0"), ("cross-user", "user=1"), ("cross-user", "user=2")]
    assert quick == full[:4]


def test_results_agree_with_the_saved_predictions(ds_dir, evaluated):
    out, r, log = evaluated
    ds = Dataset.open(ds_dir)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(r))
    assert on_disk["preset"]["name"] == "quick" and "quick preset" in on_disk["preset_description"]
    assert set(on_disk["models"]) == set(MODELS) and on_disk["runs_trained"] == 8
    g = len(ds.label_names)
    for model, m in on_disk["models"].items():
        assert set(m["splits"]) == {"in-session", "cross-session", "cross-user"}
        for split, s in m["splits"].items():
            cm = np.zeros((g, g), np.int64)
            accs = []
            for fold, f in s["folds"].items():
                z = np.load(out / f["run"] / "predictions.npz")
                fold_def = next(x for x in ds.split(split)["folds"] if x["name"] == fold)
                assert z["test_ids"].tolist() == sorted(fold_def["test"])     # caps do not bite here
                np.testing.assert_array_equal(z["y_true"], ds.labels[z["test_ids"]])
                acc = float(np.mean(z["y_true"] == z["y_pred"]))
                assert f["accuracy"] == pytest.approx(acc, abs=1e-12)
                metrics = json.loads((out / f["run"] / "metrics.json").read_text())
                assert metrics["accuracy"] == pytest.approx(acc, abs=1e-12)
                np.add.at(cm, (z["y_true"], z["y_pred"]), 1)
                accs.append(acc)
            assert s["n_folds"] == len(accs) and s["accuracy"] == pytest.approx(np.mean(accs))
            assert (s["accuracy_std"] is None) == (len(accs) == 1)
            assert s["confusion_matrix"] == cm.tolist()
            assert s["pooled_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
            png = out / on_disk["confusion_png"][f"{model}/{split}"]
            assert png.read_bytes()[:4] == b"\x89PNG"
        assert len(m["splits"]["cross-user"]["folds"]) == 2
    # Progress: one line per run, with the run's log kept beside it.
    assert log.count("] student ") >= 4 and "training (worker 2, log" in log
    assert (out / "runs" / "svm" / "cross-user" / "user-1" / "train.log").read_text().startswith("train svm")


def test_robustness_is_recomputed_from_predictions_and_metadata(ds_dir, evaluated):
    out, r, _ = evaluated
    trials = Dataset.open(ds_dir).trials
    s = r["models"]["svm"]["splits"]["in-session"]
    z = np.load(out / s["folds"]["all"]["run"] / "predictions.npz")
    ok = z["y_true"] == z["y_pred"]
    orient = np.array([trials[i]["orientation_deg"] for i in z["test_ids"]])
    rob = s["robustness"]["orientation_deg"]
    for v in np.unique(orient):
        b = rob["bins"][f"{v:g}"]
        assert b["n"] == (orient == v).sum() and b["accuracy"] == pytest.approx(ok[orient == v].mean())
    accs = [b["accuracy"] for b in rob["bins"].values()]
    assert rob["spread_points"] == pytest.approx(100 * (max(accs) - min(accs)))
    dist = s["robustness"]["distance_m"]["bins"]
    assert sum(b["n"] for b in dist.values()) == len(z["test_ids"])


def test_markdown_shows_the_json_figures(evaluated):
    out, r, _ = evaluated
    md = (out / "results.md").read_text()
    for model, m in r["models"].items():
        ins = m["splits"]["in-session"]
        cu = m["splits"]["cross-user"]
        row = next(line for line in md.splitlines() if line.startswith(f"| {model} | {m['parameters']:,} |"))
        assert f"| {100 * ins['accuracy']:.1f} |" in row
        assert f"{100 * cu['accuracy']:.1f} ± {100 * cu['accuracy_std']:.1f}" in row
    assert "| user=0 |" in md and "| user=1 |" in md and "| user=2 |" not in md
    assert "quick preset" in md and "By orientation" in md and "By distance" in md
    assert "confusion/student-cross-user.png" in md


def test_resume_reuses_complete_runs_and_retrains_the_rest(ds_dir, evaluated, tmp_path):
    src, r, _ = evaluated
    out = tmp_path / "out"
    shutil.copytree(src, out)
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/metrics.json")}
    (out / "runs" / "svm" / "cross-user" / "user-0" / "metrics.json").unlink()       # an interrupted run
    again = evaluate_paper002(ds_dir, out, models=MODELS, quick=True, stream=io.StringIO(), jobs=1)  # in-process
    assert again["runs_trained"] == 1 and again["runs_reused"] == 7
    for p, t in stamp.items():
        if p.exists() and "svm/cross-user/user-0" not in str(p):
            assert p.stat().st_mtime_ns == t
    def figures(res):       # everything but the run times
        return {s: {k: ({f: {a: b for a, b in v.items() if a != "seconds"} for f, v in x.items()} if k == "folds" else x)
                    for k, x in d.items()} for s, d in res["models"]["svm"]["splits"].items()}

    assert figures(again) == figures(r)                                               # the SVM is deterministic
    # A run made with other settings is not reused.
    ds = Dataset.open(ds_dir)
    want = _expected(ds, "student", "in-session", "all", 0, PRESETS["quick"])
    rd = run_path(out, "student", "in-session", "all")
    assert completed_run(rd, want) is not None
    assert completed_run(rd, dict(want, seed=1)) is None
    assert completed_run(rd, dict(want, epochs=want["epochs"] + 1)) is None


def test_robustness_bins_by_hand():
    trials = [{"orientation_deg": o, "distance_m": d} for o, d in
              [(0, 0.31), (0, 0.45), (45, 0.52), (45, 0.7), (90, 0.69), (90, 0.3)]]
    ds = types.SimpleNamespace(trials=trials)
    rob = robustness(ds, range(6), [1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 0])
    o = rob["orientation_deg"]
    assert {k: v["accuracy"] for k, v in o["bins"].items()} == {"0": 0.5, "45": 1.0, "90": 0.0}
    assert o["spread_points"] == pytest.approx(100.0)
    d = rob["distance_m"]["bins"]
    assert {k: (v["n"], v["accuracy"]) for k, v in d.items()} == {
        "0.3-0.4": (2, 0.5), "0.4-0.5": (1, 0.0), "0.5-0.6": (1, 1.0), "0.6-0.7": (2, 0.5)}   # 0.7 in the last bin


def test_cli_evaluate(ds_dir, evaluated, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(evaluated[0], out)
    env = dict(os.environ, RFEDGE_PROGRESS="0")
    cmd = [sys.executable, "-m", "rfedge.cli", "evaluate", "--data", str(ds_dir), "--protocol", "paper002",
           "--out", str(out), "--quick", "--models", "svm"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "| svm |" in p.stdout and "results.md" in p.stdout
    assert p.stderr.count("complete run reused") == 4
    assert set(json.loads((out / "results.json").read_text())["models"]) == {"svm"}
    bad = subprocess.run(cmd[:6] + ["--protocol", "paper999", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("rfedge: error: unknown protocol")


def test_a_failed_worker_run_is_reported_with_its_reason(tmp_path):
    from rfedge.errors import RfedgeError
    from rfedge.runpool import run_tasks

    events = []
    tasks = [{"job": ["svm", "in-session", "all"], "log": str(tmp_path / "train.log"), "cache_dir": None,
              "kwargs": {"data_dir": str(tmp_path / "nope"), "out_dir": str(tmp_path / "run"), "model": "svm"}}]
    with pytest.raises(RfedgeError, match="svm in-session all: .*not a dataset directory"):
        run_tasks(tasks, jobs=2, threads_per_job=1, on_event=lambda *e: events.append(e[0]))
    assert events == ["start", "failed"]
