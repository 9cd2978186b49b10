"""rfedge quantize: full-int8 post-training quantization of a trained run, deterministic across
processes and exactly int8; quantize.json consistent with the model and the predictions it
records; one clear error and nothing written for a missing or corrupt run.

``quantized_run`` (a tiny simulated dataset, a quick student, `rfedge quantize` run twice in
separate processes) is shared with test_report.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rfedge.cli import main
from rfedge.errors import RfedgeError

RUN_FILES = ("model.keras", "metrics.json", "normalizer.json", "features.json", "predictions.npz")
_CACHE: dict = {}


def _quantize_cli(run: Path) -> subprocess.Popen:
    env = dict(os.environ, RFEDGE_PROGRESS="0", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-m", "rfedge.cli", "quantize", str(run), "--calibration", "40"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def quantized_run(tmp_path_factory) -> dict:
    """{"data", "run", "run2", "stdout"}: a 66-trial dataset, a quick student trained on it, and
    `rfedge quantize RUN --calibration 40` run as two separate processes on two copies of the run
    (so the conversions happen in different processes). Built once per session."""
    if "run" in _CACHE:
        return _CACHE
    pytest.importorskip("tensorflow")
    pytest.importorskip("tflite_micro")
    from rfedge.sim.csi import synth_csi_dataset
    from rfedge.train import train

    root = tmp_path_factory.mktemp("quant")
    data, run, run2 = root / "data", root / "run", root / "run2"
    synth_csi_dataset(data, overrides={"users": 2, "sessions": 1, "trials_per_class": 3})
    train(data, run, model="student", quick=True, stream=io.StringIO())
    run2.mkdir()
    for f in RUN_FILES:
        shutil.copy2(run / f, run2 / f)
    procs = [_quantize_cli(run), _quantize_cli(run2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    _CACHE.update(data=data, run=run, run2=run2, stdout=outs[0][0])
    return _CACHE


@pytest.fixture(scope="module")
def qrun(tmp_path_factory):
    return quantized_run(tmp_path_factory)


def test_quantize_writes_a_full_int8_model(qrun):
    from rfedge_codegen.graph import load_graph

    from rfedge.quant import non_int8_tensors, tflite_ops

    run = qrun["run"]
    tfl = (run / "student_int8.tflite").read_bytes()
    q = json.loads((run / "quantize.json").read_text())
    assert q["tflite_sha256"] == hashlib.sha256(tfl).hexdigest() and q["tflite_bytes"] == len(tfl)
    assert non_int8_tensors(tfl) == [] and q["non_int8_tensors"] == []
    ops = tflite_ops(tfl)
    assert "DEQUANTIZE" not in ops and {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TANH"} <= set(ops)
    g = load_graph(tfl)
    x, y = g.t(g.inputs[0]), g.t(g.outputs[0])
    assert x.dtype == y.dtype == "INT8" and x.shape == (1, 25, 8, 14)
    assert q["input"] == {"shape": [1, 25, 8, 14], "dtype": "int8", "scale": pytest.approx(x.s), "zero_point": x.zp}
    for op in g.ops:   # per-channel int8 weights, int32 biases
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = g.t(op.inputs[1])
            assert w.dtype == "INT8" and w.per_channel and len(w.scale) == w.shape[-1 if op.opcode != "CONV_2D" else 0]
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                assert g.t(op.inputs[2]).dtype == "INT32"
    assert "float (Keras)" in qrun["stdout"] and "int8 (TFLM)" in qrun["stdout"]


def test_conversion_is_deterministic_across_processes(qrun):
    """Two `rfedge quantize` processes and this one convert the same model from the same windows:
    identical bytes (the MLIR quantizer gives differing bytes, sometimes with a float island)."""
    from rfedge.quant import to_int8_tflite
    from rfedge.quantize import RunDir

    a = (qrun["run"] / "student_int8.tflite").read_bytes()
    b = (qrun["run2"] / "student_int8.tflite").read_bytes()
    assert a == b
    run = RunDir(qrun["run"])
    q = json.loads((qrun["run"] / "quantize.json").read_text())
    ids = run.calibration_ids(40)
    assert ids == q["calibration"]["trial_ids"]
    X = run.windows(ids, "calibration")
    assert to_int8_tflite(run.keras_model(), X, max_calibration=len(X)) == a


def test_quantize_json_agrees_with_its_predictions_and_tflm(qrun):
    from rfedge_codegen import reference

    from rfedge.codegen import quantize_inputs
    from rfedge.metrics import accuracy, macro_f1
    from rfedge.quantize import RunDir

    run_dir = qrun["run"]
    q = json.loads((run_dir / "quantize.json").read_text())
    p = q["predictions"]
    n = len(q["label_names"])
    for col in ("float", "int8"):
        assert q[col]["accuracy"] == pytest.approx(accuracy(p["y_true"], p[col]))
        assert q[col]["macro_f1"] == pytest.approx(macro_f1(p["y_true"], p[col], n))
    assert q["top1_agreement"] == pytest.approx(np.mean(np.equal(p["float"], p["int8"])))
    # the test trials are the run's (predictions.npz), the calibration trials its training side
    train_pred = np.load(run_dir / "predictions.npz")
    assert p["test_ids"] == train_pred["test_ids"].tolist() and p["y_true"] == train_pred["y_true"].tolist()
    assert q["n_test"] == len(p["test_ids"]) == 22
    run = RunDir(run_dir)
    _, fold = run.dataset()
    cal = set(q["calibration"]["trial_ids"])
    assert cal <= set(fold["train"]) and not cal & set(p["test_ids"])
    assert q["calibration"]["windows"] == 40
    # the int8 predictions are TFLM's on the test windows, recomputed here
    tfl = (run_dir / "student_int8.tflite").read_bytes()
    X = run.windows(p["test_ids"], "test")
    out = reference.run(tfl, quantize_inputs(X, q["input"]["scale"], q["input"]["zero_point"]))
    assert out.argmax(1).tolist() == p["int8"]
    # and the float ones the run's Keras model's (the same weights that wrote predictions.npz)
    assert np.mean(np.equal(train_pred["y_pred"], p["float"])) >= 0.9


def test_non_int8_tensors_finds_a_float_island():
    from rfedge_codegen.testing import build_model, tensor as T

    from rfedge.quant import non_int8_tensors, to_int8_tflite

    q, q2 = T([1, 4], 0.5, 0), T([1, 4], 0.5, 0)
    f, f2 = T([1, 4], dtype="FLOAT32", name="island"), T([1, 4], dtype="FLOAT32")
    m = build_model([("DEQUANTIZE", [q], [f], None), ("RELU", [f], [f2], None), ("QUANTIZE", [f2], [q2], None)])
    found = non_int8_tensors(m)
    assert [(t["type"], t["producer"]) for t in found] == [("FLOAT32", "op 0 DEQUANTIZE"), ("FLOAT32", "op 1 RELU")]
    assert found[0]["name"] == "island"
    with pytest.raises(RfedgeError, match="unknown quantizer"):
        to_int8_tflite(None, np.zeros((1, 2), np.float32), quantizer="tflite")


def test_float_island_is_refused_unless_allowed(monkeypatch):
    """The refusal path: the converter's result is checked and named, not passed on."""
    keras = pytest.importorskip("keras")
    from rfedge import quant

    inp = keras.Input((4,), batch_size=1)
    m = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    fake = [{"index": 7, "name": "gru/split", "type": "FLOAT32", "producer": "op 10 SPLIT"}]
    monkeypatch.setattr(quant, "non_int8_tensors", lambda b: fake)
    with pytest.raises(RfedgeError, match=r"left 1 non-int8 tensor\(s\): gru/split \(FLOAT32, from op 10 SPLIT\)"):
        quant.to_int8_tflite(m, X)
    assert quant.to_int8_tflite(m, X, allow_float=True)[4:8] == b"TFL3"


def _copy_run(qrun, dst: Path) -> Path:
    dst.mkdir()
    for f in RUN_FILES:
        shutil.copy2(qrun["run"] / f, dst / f)
    return dst


@pytest.mark.parametrize("damage", ["missing_dir", "no_metrics", "corrupt_metrics", "no_model", "corrupt_model",
                                    "corrupt_normalizer", "bad_features", "svm", "missing_dataset",
                                    "zero_calibration"])
def test_bad_run_is_one_error_and_writes_nothing(qrun, tmp_path, capsys, damage):
    run = tmp_path / "run"
    args = []
    if damage != "missing_dir":
        _copy_run(qrun, run)
    if damage == "no_metrics":
        (run / "metrics.json").unlink()
    elif damage == "corrupt_metrics":
        (run / "metrics.json").write_text('{"model": "student", "split": ')
    elif damage == "no_model":
        (run / "model.keras").unlink()
    elif damage == "corrupt_model":
        (run / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    elif damage == "corrupt_normalizer":
        (run / "normalizer.json").write_text('{"mean": [1, 2]}')
    elif damage == "bad_features":
        (run / "features.json").write_text('{"groups": 14, "no_such_field": 1}')
    elif damage == "svm":
        m = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**m, "model": "svm"}))
    elif damage == "missing_dataset":
        m = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**m, "data_dir": str(tmp_path / "gone")}))
    elif damage == "zero_calibration":
        args = ["--calibration", "0"]
    before = sorted(p.name for p in run.iterdir()) if run.exists() else None
    assert main(["quantize", str(run), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rfedge: error: "), err
    expect = {"missing_dir": "no such run directory", "no_metrics": "no metrics.json",
              "corrupt_metrics": "metrics.json is not valid JSON", "no_model": "missing model.keras",
              "corrupt_model": "cannot load the Keras model", "corrupt_normalizer": "bad normalizer",
              "bad_features": "bad feature configuration", "svm": "holds an SVM",
              "missing_dataset": "dataset", "zero_calibration": "--calibration must be >= 1"}[damage]
    assert expect in err[0]
    after = sorted(p.name for p in run.iterdir()) if run.exists() else None
    assert after == before   # no student_int8.tflite, quantize.json or temporary file left behind
