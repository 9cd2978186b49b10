"""``rfedge evaluate --protocol paper003`` and ``rfedge train einsum``: quick runs write the
tables and the run files; costs follow paper 003's formulas; bad input is one clear error."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")

from rfedge import cli  # noqa: E402
from rfedge.einsum_train import fuse, split_ids  # noqa: E402
from rfedge.errors import RfedgeError  # noqa: E402
from rfedge.evaluate_rfid import evaluate_paper003, feature_ops, mlp_macs, rf_cost  # noqa: E402
from rfedge.models import einsum_format  # noqa: E402
from rfedge.sim.rfid import synth_rfid_dataset  # noqa: E402

# One participant, every gesture, the 20 repetitions the repetition split needs: 420 trials.
SMALL = dict(participants=1, repetitions=20)


@pytest.fixture(scope="module")
def rfid_ds(tmp_path_factory):
    return synth_rfid_dataset(tmp_path_factory.mktemp("rfid") / "ds", overrides=SMALL, seed=5)


@pytest.fixture(scope="module")
def quick_eval(rfid_ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return out, evaluate_paper003(rfid_ds, out, seed=0, quick=True)


def test_quick_evaluate_writes_the_tables(quick_eval):
    out, r = quick_eval
    md = (out / "results.md").read_text()
    for title in ("Table I", "Table III", "Table IV", "Table VII"):
        assert title in md
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["protocol"] == "paper003" and on_disk["quick"] is True
    assert "repetitions 16-19" in on_disk["split"]
    methods = on_disk["repetition_split"]["methods"]
    assert set(methods) == {"einsum", "rf", "svm", "mlp"}
    for m in methods.values():
        assert set(m) == {"SPR", "SA", "WA", "merged"}
        for s in m.values():
            assert 0.0 <= s["accuracy"] <= 1.0 and np.sum(s["confusion_matrix"]) == on_disk["repetition_split"]["n_test"]
    for png in on_disk["confusion_png"].values():
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # even the quick preset's Einsum networks learn: chance is 1/21
    assert methods["einsum"]["merged"]["accuracy"] >= 5 / 21
    g = on_disk["goal"]
    assert g["met"] == (min(g["gains_points"].values()) >= 10.0)
    # the merged Einsum row's numbers are the ones in Table I
    acc = methods["einsum"]["merged"]["accuracy"]
    assert f"| **Merged Einsum Networks** | {100 * acc:.2f} |" in md


def test_costs_follow_the_papers_formulas(quick_eval):
    _, r = quick_eval
    c = r["costs"]
    # §VI-B1 with the dataset's signals: 2 tags x 2 antennas x {RSS, phase}, 2 AoA, 35 samples.
    assert c["feature_ops"]["SPR"]["total"] == 8 * 35 * 14 + 4 * 35 == 4060
    assert c["feature_ops"]["SA"]["total"] == 2 * 35 * 14 + 35 == 1015
    assert c["feature_ops"]["WA"]["total"] == 2 * 35 * 4 == 280
    assert c["feature_ops"]["total"] == 5355                 # Table III
    assert c["einsum_paper_total"] == 22_654                 # Table IV (C = 21 classes here too)
    assert c["rf"]["per_forest"]["total"] == 8241 and c["rf"]["total"] == 24_723   # Table V
    # MLP layers from the fitted models (Table VI's sizes)
    per = c["mlp"]["per_network"]
    assert per["SPR"]["layers"] == [116, 128, 21] and per["SPR"]["macs"] == 17_536
    assert per["SA"]["macs"] == 1_600 and per["WA"]["macs"] == 7_552
    assert c["mlp"]["total"] == 26_688
    t7 = {t["model"]: t for t in r["table7"]}
    e = t7["Merged Einsum Networks (eqs. 12-14)"]
    assert e["total_cost"] == 22_654 + 5355
    assert e["accuracy"] == r["repetition_split"]["methods"]["einsum"]["merged"]["accuracy"]


def test_cost_helpers_by_hand():
    assert rf_cost(100, 10, 21) == {"traversal": 2000, "leaf_normalization": 4100, "aggregation": 2121,
                                    "argmax": 20, "total": 8241}
    assert mlp_macs([29, 32, 21]) == 29 * 32 + 32 * 21
    f = feature_ops(8, 4, 2, 35, 14, 4)
    assert (f["SPR"]["total"], f["SA"]["total"], f["WA"]["total"], f["total"]) == (4060, 1015, 280, 5355)


def test_train_einsum_cli_writes_a_run(rfid_ds, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "einsum", "--data", str(rfid_ds), "--out", str(run), "--quick", "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert "merged (product of posteriors)" in printed and "12,938 MACs" in printed
    m = json.loads((run / "metrics.json").read_text())
    assert m["split"] == "repetition" and m["fit_config"]["epochs"] == 2
    with np.load(run / "predictions.npz") as z:
        test_ids = z["test_ids"]
        lps = [z[f"log_posteriors_{k}"] for k in ("SPR", "SA", "WA")]
        y_merged = z["y_merged"]
    _, want_test, _ = split_ids(json.loads((rfid_ds / "manifest.json").read_text())["trials"], "repetition")
    assert np.array_equal(test_ids, want_test)
    # The fusion is eq. 9 and the exported networks reproduce the stored posteriors.
    assert np.array_equal(y_merged, fuse(lps))
    assert np.array_equal(y_merged, einsum_format.fuse_log_posteriors(lps))
    from rfedge.rfid_features import feature_sets

    fs = feature_sets(rfid_ds)
    for k, lp in zip(("SPR", "SA", "WA"), lps):
        p = einsum_format.load(run / f"{k}.npz")
        assert p.F == fs[k].shape[1]
        np.testing.assert_allclose(einsum_format.log_posteriors(p, fs[k][test_ids]), lp, atol=1e-3)
    assert m["merged"]["accuracy"] == pytest.approx(float((y_merged == fs.labels[test_ids]).mean()))


def test_evaluate_cli_dispatches_paper003(monkeypatch, capsys, quick_eval):
    import rfedge.evaluate_rfid as ev

    _, r = quick_eval
    seen = {}

    def fake(data, out, seed, quick):
        seen.update(data=data, out=out, seed=seed, quick=quick)
        return r

    monkeypatch.setattr(ev, "evaluate_paper003", fake)
    assert cli.main(["evaluate", "--protocol", "paper003", "--data", "D", "--out", "O", "--quick", "--seed", "3"]) == 0
    assert seen == {"data": "D", "out": "O", "seed": 3, "quick": True}
    assert "Table IV" in capsys.readouterr().out
    assert cli.main(["evaluate", "--protocol", "paper999", "--data", "D", "--out", "O"]) == 1
    assert "paper003" in capsys.readouterr().err


def test_bad_split_and_feature_sets_are_one_error_naming_the_field(rfid_ds, tmp_path):
    from rfedge.einsum_train import fit_networks
    from rfedge.rfid_features import feature_sets

    trials = [{"user": 0}, {"user": 1}]
    with pytest.raises(RfedgeError, match="field 'repetition'"):
        split_ids(trials, "repetition")
    with pytest.raises(RfedgeError, match="field 'split'"):
        split_ids(trials, "user=7")
    with pytest.raises(RfedgeError, match="field 'split'"):
        split_ids(trials, "by-moon")
    fs = feature_sets(rfid_ds)
    y = fs.labels
    # a depth the feature set cannot fill: F = 29 < 2^5
    with pytest.raises(RfedgeError, match="field 'D'"):
        fit_networks(fs, y, np.arange(10), np.arange(10, 20), configs={"SA": dict(D=5, K=2, L=2, R=1)}, n_classes=21)
    with pytest.raises(RfedgeError, match="field 'SA'"):
        fit_networks({"SA": fs["SA"][:-1]}, y, np.arange(10), np.arange(10, 20),
                     configs={"SA": dict(D=2, K=2, L=2, R=1)}, n_classes=21)
