"""Dataset format, splits and summaries."""

import json

import numpy as np
import pytest

from rfedge.data.dataset import Dataset, write_dataset
from rfedge.data.info import dataset_summary, format_summary
from rfedge.data.splits import make_splits
from rfedge.errors import RfedgeError
from rfedge.sim.csi import synth_csi_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return Dataset.open(synth_csi_dataset(tmp_path_factory.mktemp("d") / "ds",
                                          overrides=dict(users=3, sessions=2, trials_per_class=4)))


def _ids(ds):
    return {t["id"] for t in ds.trials}


def test_every_split_is_disjoint_and_complete(ds):
    assert set(ds.split_names()) == {"in-session", "cross-session", "cross-user", "cross-environment",
                                     "cross-orientation"}
    by_id = {t["id"]: t for t in ds.trials}
    for name in ds.split_names():
        s = ds.split(name)
        for fold in s["folds"]:
            tr, te = set(fold["train"]), set(fold["test"])
            assert not tr & te, (name, fold["name"])
            assert tr | te == _ids(ds), (name, fold["name"])
            assert tr and te
            if s["factor"]:
                tr_vals = {by_id[i][s["factor"]] for i in tr}
                te_vals = {by_id[i][s["factor"]] for i in te}
                assert not tr_vals & te_vals, (name, fold["name"])


def test_cross_user_has_a_fold_per_user_and_never_trains_on_the_test_user(ds):
    s = ds.split("cross-user")
    users = sorted({t["user"] for t in ds.trials})
    assert [f["held_out"] for f in s["folds"]] == users
    by_id = {t["id"]: t for t in ds.trials}
    for f in s["folds"]:
        assert all(by_id[i]["user"] == f["held_out"] for i in f["test"])
        assert all(by_id[i]["user"] != f["held_out"] for i in f["train"])


def test_cross_session_trains_early_tests_late(ds):
    f = ds.split("cross-session")["folds"][0]
    by_id = {t["id"]: t for t in ds.trials}
    assert {by_id[i]["session"] for i in f["train"]} == {0}
    assert {by_id[i]["session"] for i in f["test"]} == {1}


def test_in_session_is_stratified(ds):
    f = ds.split("in-session")["folds"][0]
    by_id = {t["id"]: t for t in ds.trials}
    key = lambda i: (by_id[i]["user"], by_id[i]["session"], by_id[i]["label"])  # noqa: E731
    assert {key(i) for i in f["train"]} == {key(i) for i in f["test"]}
    assert abs(len(f["test"]) / len(ds) - 0.25) < 0.01


def test_splits_need_a_varying_factor():
    trials = [{"id": i, "label": i % 2, "user": 0, "session": i % 2} for i in range(8)]
    s = make_splits(trials)
    assert "cross-user" not in s and "cross-environment" not in s and "cross-session" in s


def test_summary_counts(ds):
    s = dataset_summary(ds.path)
    assert s["trials"] == 3 * 2 * 4 * 11
    assert set(s["per_class"].values()) == {24}
    assert sum(s["factors"]["user"].values()) == s["trials"]
    assert s["factors"]["session"] == {"0": 132, "1": 132}
    assert s["splits"]["cross-user"]["folds"] == 3
    text = format_summary(s)
    assert "steady" in text and "cross-user" in text


def test_write_is_atomic_and_keeps_the_old_dataset(tmp_path):
    out = tmp_path / "ds"
    trials = [{"label": 0, "user": 0}, {"label": 1, "user": 1}]
    write_dataset(out, kind="csi", label_names=["a", "b"], trials=trials,
                  arrays={"x": np.arange(2, dtype=np.int8)}, config={"seed": 1})
    before = (out / "manifest.json").read_text()
    with pytest.raises(ValueError):
        write_dataset(out, kind="csi", label_names=["a", "b"], trials=[{"label": 0}, {"label": 5}],
                      arrays={"x": np.arange(2, dtype=np.int8)}, config={})
    with pytest.raises(ZeroDivisionError):
        from rfedge.fileio import atomic_directory
        with atomic_directory(out) as tmp:
            (tmp / "junk").write_text("half")
            1 / 0
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_open_rejects_bad_directories(tmp_path, ds):
    with pytest.raises(RfedgeError, match="no manifest.json"):
        Dataset.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(RfedgeError, match="not valid JSON"):
        Dataset.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(RfedgeError, match="field 'format'"):
        Dataset.open(tmp_path)
    with pytest.raises(RfedgeError, match="no split 'nope'"):
        ds.split("nope")
    with pytest.raises(RfedgeError, match="no array"):
        ds.array("nope")


def test_verify_detects_tampering(tmp_path):
    out = write_dataset(tmp_path / "ds", kind="csi", label_names=["a"], trials=[{"label": 0}],
                        arrays={"x": np.zeros(1, np.int16)}, config={})
    Dataset.open(out).verify()
    np.save(out / "arrays" / "x.npy", np.ones(1, np.int16))
    with pytest.raises(RfedgeError, match="do not match"):
        Dataset.open(out).verify()
