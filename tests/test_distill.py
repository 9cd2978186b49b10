"""Dual distillation of the semantic teacher into the compact student (paper 000, rfedge.distill)."""

import json

import numpy as np
import pytest

from rfedge.errors import RfedgeError
from test_teacher import CHANCE, shared_teacher   # one teacher per test session, shared


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    return shared_teacher(tmp_path_factory.getbasetemp())


def test_kl_and_feature_terms_vanish_only_when_student_matches_teacher():
    from rfedge.distill import distill_loss, feature_mse, soft_kl

    rng = np.random.default_rng(0)
    t = rng.normal(size=(8, 13)).astype(np.float32)
    s = rng.normal(size=(8, 13)).astype(np.float32)
    ft = rng.normal(size=(8, 64)).astype(np.float32)
    fs = rng.normal(size=(8, 64)).astype(np.float32)
    assert abs(float(soft_kl(t, t, 4.0))) < 1e-5
    assert abs(float(soft_kl(t, t + 3.0, 4.0))) < 1e-5         # a common logit shift is the same softmax
    assert float(soft_kl(t, s, 4.0)) > 1e-3
    assert float(feature_mse(ft, ft)) == 0.0 and float(feature_mse(fs, ft)) > 1e-3
    y = np.eye(13, dtype=np.float32)[rng.integers(0, 13, 8)]
    total, ce, kd, fd = distill_loss(y, s, t, fs, ft, alpha=0.5, beta=2.0, temperature=4.0)
    np.testing.assert_allclose(float(total), float(ce) + 0.5 * float(kd) + 2.0 * float(fd), rtol=1e-5)
    # The T² factor: the KL of the softened outputs, scaled by T².
    pt = np.exp(t / 4) / np.exp(t / 4).sum(1, keepdims=True)
    ps = np.exp(s / 4) / np.exp(s / 4).sum(1, keepdims=True)
    np.testing.assert_allclose(float(kd), 16 * np.mean(np.sum(pt * np.log(pt / ps), 1)), rtol=1e-4)
    alone, ce2, _, _ = distill_loss(y, s, t, fs, ft, alpha=0.0, beta=0.0, temperature=4.0)
    assert float(alone) == pytest.approx(float(ce2))


def test_distilled_student_trains_and_converts_to_full_int8(teacher_run, tmp_path):
    from rfedge.distill import train_distilled
    from rfedge.dsp import Normalizer
    from rfedge.models.student import to_model_input
    from rfedge.quant import non_int8_tensors, to_int8_tflite, tflite_ops
    from rfedge.teacher_inputs import TeacherInputs
    from rfedge.data.dataset import Dataset
    from rfedge.features import FeatureConfig
    import keras

    data, trun, tmetrics = teacher_run
    out = tmp_path / "full"
    m = train_distilled(data, trun, out, variant="full", split="in-session", fold=0, seed=0, quick=True,
                        cache_dir=tmp_path / "cache")
    # Measured: 0.27 (14 of 52 test trials; chance 4) with this teacher and the quick schedule.
    assert m["accuracy"] > 2 * CHANCE, m["accuracy"]
    assert m["parameters"] < 150_000 and m["macs"] > 0 and m["host_latency_ms_per_window"] > 0
    assert m["distill"]["variant"] == "full" and m["distill"]["alpha"] > 0 and m["distill"]["beta"] > 0
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["accuracy"] == m["accuracy"] and on_disk["model"] == "student"
    net = keras.models.load_model(out / "model.keras", compile=False)
    # The exported student is the plain student: the training-only projection is gone.
    assert net.count_params() == m["parameters"]
    assert not any("distill" in layer.name for layer in net.layers)
    nd = Normalizer.from_dict(json.loads((out / "normalizer.json").read_text()))
    ds = Dataset.open(data)
    X = TeacherInputs(ds, FeatureConfig.from_dict(json.loads((out / "features.json").read_text()))).doppler(range(0, 208, 4))
    A = to_model_input(nd(X))
    tfl = to_int8_tflite(net, A)
    assert non_int8_tensors(tfl) == []
    assert not {"WHILE", "FILL"} & set(tflite_ops(tfl))


def test_teacher_from_another_fold_is_refused(teacher_run, tmp_path):
    from rfedge.distill import train_distilled

    data, trun, _ = teacher_run
    # A teacher trained on in-session has seen cross-session test trials: refused before training.
    with pytest.raises(RfedgeError, match="same dataset, split and fold"):
        train_distilled(data, trun, tmp_path / "x", variant="soft", split="cross-session", fold=0, quick=True)
    with pytest.raises(RfedgeError, match="unknown distillation variant"):
        train_distilled(data, trun, tmp_path / "x", variant="both", quick=True)
    assert not (tmp_path / "x").exists()
