"""The train stage on a tiny simulated dataset: artifacts, metrics.json content, determinism, CLI."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rfedge.data.dataset import Dataset
from rfedge.dsp import Normalizer
from rfedge.errors import RfedgeError
from rfedge.features import FeatureConfig
from rfedge.train import Recipe, augment, cap_ids, load_predictions, select_fold, time_warp, train, validation_split

METRIC_KEYS = {
    "model", "accuracy", "macro_f1", "per_class", "confusion_matrix", "label_names", "parameters", "macs",
    "host_latency_ms_per_window", "split", "fold", "fold_index", "seed", "data_sha256", "epochs_run",
    "n_train", "n_val", "n_test", "feature_shape",
}
# Timing and environment legitimately differ between two otherwise identical runs.
VOLATILE = {"host_latency_ms_per_window", "fit_seconds", "total_seconds", "versions"}


@pytest.fixture(scope="module")
def ds_dir(tmp_path_factory):
    from rfedge.sim.csi import synth_csi_dataset

    d = tmp_path_factory.mktemp("train") / "ds"
    synth_csi_dataset(d, overrides=dict(users=2, sessions=2, trials_per_class=3))
    return d


def _run(ds_dir, out, model, **kw):
    return train(ds_dir, out, model=model, quick=True, stream=io.StringIO(), **kw)


def _check_run(ds_dir, out, m, model_file):
    ds = Dataset.open(ds_dir)
    for name in (model_file, "features.json", "normalizer.json", "metrics.json", "confusion.png", "predictions.npz"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]          # no staging left behind
    on_disk = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(on_disk)
    assert on_disk["accuracy"] == m["accuracy"]
    test = ds.split("in-session")["folds"][0]["test"]
    cm = np.array(on_disk["confusion_matrix"])
    assert cm.shape == (len(ds.label_names),) * 2 and cm.sum() == len(test) == on_disk["n_test"]
    assert set(on_disk["per_class"]) == set(ds.label_names)
    assert set(on_disk["per_class"][ds.label_names[0]]) == {"precision", "recall", "f1", "support"}
    assert on_disk["data_sha256"] == ds.manifest["data_sha256"]
    assert on_disk["n_train"] + on_disk["n_val"] == len(ds.split("in-session")["folds"][0]["train"])
    assert 0.0 <= on_disk["accuracy"] <= 1.0 and on_disk["host_latency_ms_per_window"] > 0
    cfg = FeatureConfig.from_dict(json.loads((out / "features.json").read_text()))
    assert cfg.threshold is not None and list(cfg.shape) == on_disk["feature_shape"]
    Normalizer.from_dict(json.loads((out / "normalizer.json").read_text()))
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    p = load_predictions(out)
    assert p["test_ids"].tolist() == sorted(test)
    np.testing.assert_array_equal(p["y_true"], ds.labels[p["test_ids"]])
    assert np.mean(p["y_true"] == p["y_pred"]) == on_disk["accuracy"]
    cm_again = np.zeros_like(cm)
    np.add.at(cm_again, (p["y_true"], p["y_pred"]), 1)
    np.testing.assert_array_equal(cm_again, cm)
    if "proba" in p:                                      # Keras models: the argmax is the prediction
        np.testing.assert_array_equal(p["proba"].argmax(axis=1), p["y_pred"])
    return on_disk


def test_validation_split_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(4), 10)
    train_ids = list(range(0, 40, 1))
    fit, val = validation_split(train_ids, labels, seed=0)
    assert sorted(fit + val) == train_ids and not set(fit) & set(val)
    assert np.bincount(labels[val], minlength=4).tolist() == [2, 2, 2, 2]     # round(0.15 * 10)
    assert validation_split(train_ids, labels, seed=0) == (fit, val)


def test_time_warp_shift_and_identity():
    A = np.arange(2 * 5, dtype=np.float32).reshape(2, 5, 1, 1)            # [N, T, F, C]: value = frame
    np.testing.assert_allclose(time_warp(A, np.zeros(2), np.ones(2)), A)
    out = time_warp(A, np.array([1.0, -0.5]), np.ones(2))[..., 0, 0]
    np.testing.assert_allclose(out[0], [0, 0, 1, 2, 3])                   # delayed a frame, first held
    np.testing.assert_allclose(out[1], [5.5, 6.5, 7.5, 8.5, 9])            # advanced half a frame, last held


def test_augment_is_seeded_and_keeps_labels_distributions():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(16, 25, 8, 14)).astype(np.float32)
    Y = np.eye(4, dtype=np.float32)[np.arange(16) % 4]
    r = Recipe(time_stretch=0.1)
    a1, y1 = augment(A, Y, np.random.default_rng(5), r)
    a2, y2 = augment(A, Y, np.random.default_rng(5), r)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(y1, y2)
    assert a1.shape == A.shape and a1.dtype == np.float32 and not np.allclose(a1, A)
    np.testing.assert_allclose(y1.sum(axis=1), 1.0, rtol=1e-6)
    assert (y1.max(axis=1) >= 0.5).all()                                   # mixup keeps a dominant label
    off = Recipe(time_shift=0, time_stretch=0, gain=0, channel_gain=0, mixup=0)
    a0, y0 = augment(A, Y, np.random.default_rng(5), off)
    np.testing.assert_array_equal(a0, A)
    np.testing.assert_array_equal(y0, Y)


def test_cap_ids_is_a_stratified_seeded_subset():
    labels = np.repeat(np.arange(4), [40, 40, 20, 20])
    ids = list(range(0, 120))
    sub = cap_ids(ids, labels, 30, seed=0)
    assert len(sub) == 30 and set(sub) <= set(ids) and sub == sorted(sub)
    assert np.bincount(labels[sub], minlength=4).tolist() == [10, 10, 5, 5]
    assert cap_ids(ids, labels, 30, seed=0) == sub and cap_ids(ids, labels, 30, seed=1) != sub
    assert cap_ids(ids, labels, None, seed=0) == ids == cap_ids(ids, labels, 500, seed=0)


def test_shared_feature_store_gives_the_same_run(ds_dir, tmp_path):
    from rfedge.featcache import FeatureStore

    store = FeatureStore(Dataset.open(ds_dir), stream=io.StringIO())
    a = _run(ds_dir, tmp_path / "a", "svm", split="cross-user", fold=1)
    b = _run(ds_dir, tmp_path / "b", "svm", split="cross-user", fold=1, features=store)
    c = _run(ds_dir, tmp_path / "c", "svm", split="cross-user", fold=0, features=store)
    assert store.computed == len(Dataset.open(ds_dir))   # fold 0 took every trial from fold 1's pass
    assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}
    assert c["fold"] == "user=0"


def test_select_fold_by_index_and_name(ds_dir):
    ds = Dataset.open(ds_dir)
    i, f = select_fold(ds, "cross-user", "1")
    assert i == 1 and select_fold(ds, "cross-user", f["name"])[0] == 1
    with pytest.raises(RfedgeError, match="no fold"):
        select_fold(ds, "cross-user", 7)
    with pytest.raises(RfedgeError, match="no split"):
        select_fold(ds, "no-such-split", 0)


def test_svm_artifacts_and_determinism(ds_dir, tmp_path):
    a = _run(ds_dir, tmp_path / "a", "svm", seed=3)
    _check_run(ds_dir, tmp_path / "a", a, "svm.pkl")
    b = _run(ds_dir, tmp_path / "b", "svm", seed=3)
    from rfedge.models.baselines import SvmBaseline
    from rfedge.features import dataset_features

    ds = Dataset.open(ds_dir)
    cfg = FeatureConfig.from_dict(json.loads((tmp_path / "a" / "features.json").read_text()))
    X = dataset_features(ds, ds.split("in-session")["folds"][0]["test"], cfg)
    pa = SvmBaseline.load(tmp_path / "a" / "svm.pkl").predict(X)
    pb = SvmBaseline.load(tmp_path / "b" / "svm.pkl").predict(X)
    np.testing.assert_array_equal(pa, pb)
    assert a["confusion_matrix"] == b["confusion_matrix"]


def test_student_artifacts_and_determinism(ds_dir, tmp_path):
    """Same seed twice -> identical loss curves and metrics. Plain keras.utils.set_random_seed is
    enough on CPU here (no TF op-determinism switch needed for these layers)."""
    a = _run(ds_dir, tmp_path / "a", "student", seed=1)
    on_disk = _check_run(ds_dir, tmp_path / "a", a, "model.keras")
    assert on_disk["parameters"] < 150_000 and on_disk["epochs_run"] >= 1
    assert len(on_disk["history"]["val_loss"]) == on_disk["epochs_run"]
    assert on_disk["recipe"]["epochs"] == on_disk["epochs"] and on_disk["recipe"]["mixup"] > 0
    b = _run(ds_dir, tmp_path / "b", "student", seed=1)
    assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}

    import keras

    from rfedge.models.student import to_model_input

    net = keras.models.load_model(tmp_path / "a" / "model.keras")
    assert net.count_params() == on_disk["parameters"]
    norm = Normalizer.from_dict(json.loads((tmp_path / "a" / "normalizer.json").read_text()))
    X = np.zeros((1,) + tuple(on_disk["feature_shape"]), np.float32)
    assert net.predict(to_model_input(norm(X)), verbose=0).shape == (1, len(on_disk["label_names"]))


@pytest.mark.parametrize("model", ["student-tcn", "cnn"])
def test_other_keras_models_train(ds_dir, tmp_path, model):
    m = _run(ds_dir, tmp_path / model, model, epochs=2)
    _check_run(ds_dir, tmp_path / model, m, "model.keras")
    assert m["epochs_run"] <= 2


def test_retraining_replaces_the_other_model_file(ds_dir, tmp_path):
    _run(ds_dir, tmp_path, "svm")
    _run(ds_dir, tmp_path, "student-tcn", epochs=1)
    assert (tmp_path / "model.keras").is_file() and not (tmp_path / "svm.pkl").exists()


def test_bad_fold_leaves_nothing(ds_dir, tmp_path):
    with pytest.raises(RfedgeError, match="no fold"):
        _run(ds_dir, tmp_path / "run", "svm", split="in-session", fold="nope")
    assert not (tmp_path / "run").exists()


def test_cli_train_end_to_end(ds_dir, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, RFEDGE_PROGRESS="0")
    r = subprocess.run([sys.executable, "-m", "rfedge.cli", "train", "student", "--data", str(ds_dir),
                        "--split", "in-session", "--fold", "0", "--out", str(out), "--seed", "2", "--quick"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "accuracy" in r.stdout and "macro-F1" in r.stdout and "MACs" in r.stdout
    assert str(out / "metrics.json") in r.stdout
    assert "epoch 1/" in r.stderr                                   # one progress line per epoch
    assert json.loads((out / "metrics.json").read_text())["seed"] == 2

    bad = subprocess.run([sys.executable, "-m", "rfedge.cli", "train", "svm", "--data", str(ds_dir),
                          "--split", "nope", "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("rfedge: error: ") and "no split 'nope'" in bad.stderr
