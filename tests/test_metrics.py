"""rfedge.metrics against sklearn.metrics and against a confusion matrix worked out by hand."""

import numpy as np
import pytest
from sklearn import metrics as skm

from rfedge.metrics import (accuracy, classification_report, confusion_matrix, macro_f1, per_class,
                            save_confusion_png)


def test_hand_made_example():
    # 3 classes; true 0 0 0 1 1 2, predicted 0 0 1 1 2 2
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    pc = per_class(cm)
    # precision: 2/2, 1/2, 1/2; recall: 2/3, 1/2, 1/1
    np.testing.assert_allclose(pc["precision"], [1.0, 0.5, 0.5])
    np.testing.assert_allclose(pc["recall"], [2 / 3, 0.5, 1.0])
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    np.testing.assert_allclose(pc["f1"], f1)
    assert pc["support"].tolist() == [3, 2, 1]
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert macro_f1(y_true, y_pred, 3) == pytest.approx(np.mean(f1))


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    g = int(rng.integers(2, 12))
    n = int(rng.integers(1, 300))
    y_true = rng.integers(0, g, n)
    # Correlated predictions, and some classes never predicted: exercises the zero-division path.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, max(g - 2, 1), n))
    labels = list(range(g))
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, g), skm.confusion_matrix(y_true, y_pred, labels=labels))
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert macro_f1(y_true, y_pred, g) == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    pc = per_class(confusion_matrix(y_true, y_pred, g))
    np.testing.assert_allclose(pc["precision"], p)
    np.testing.assert_allclose(pc["recall"], r)
    np.testing.assert_allclose(pc["f1"], f)
    np.testing.assert_array_equal(pc["support"], s)


def test_report_and_png(tmp_path):
    names = ["a", "b", "steady"]
    rep = classification_report([0, 1, 2, 2], [0, 2, 2, 2], names)
    assert rep["accuracy"] == pytest.approx(0.75)
    assert set(rep["per_class"]) == set(names)
    assert rep["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert sum(map(sum, rep["confusion_matrix"])) == 4
    out = tmp_path / "cm.png"
    save_confusion_png(rep["confusion_matrix"], names, out, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rejects_bad_labels():
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 2)
