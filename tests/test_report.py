"""rfedge report: float vs int8 (TFLM) vs generated C on a quantized run. The files agree with
each other and with the raw outputs they record, TFLM and the C agree byte for byte, the
STM32Cube.AI agreement metrics match hand-computed values, and bad input is one clear error."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from rfedge.cli import main
from rfedge.errors import RfedgeError
from rfedge.report import agreement, integer_agreement
from test_quant import RUN_FILES, quantized_run


def test_agreement_metrics_by_hand():
    r, p = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]     # e = p - r = [0, 0, 0, 1]
    m = agreement(r, p)
    assert m["rmse"] == pytest.approx(0.5)                  # sqrt(1/4)
    assert m["mae"] == pytest.approx(0.25)
    assert m["l2r"] == pytest.approx(1 / math.sqrt(30))     # ||e|| = 1, ||r|| = sqrt(1+4+9+16)
    assert m["mean"] == pytest.approx(0.25)
    assert m["std"] == pytest.approx(math.sqrt(0.25 - 0.0625))
    assert m["nse"] == pytest.approx(1 - 1 / 5)             # sum (r - 2.5)^2 = 5
    assert m["cos"] == pytest.approx(34 / math.sqrt(30 * 39))
    m = agreement([[1.0, -2.0], [0.5, 0.0]], [[-1.0, 2.0], [-0.5, 0.0]])   # p = -r, any shape
    assert m["cos"] == pytest.approx(-1.0) and m["l2r"] == pytest.approx(2.0)
    assert m["mean"] == pytest.approx(0.25)                 # e = -2r, mean(r) = -0.125
    m = agreement([2.0, 2.0], [2.0, 2.0])                    # identical, constant reference
    assert m["rmse"] == m["mae"] == m["l2r"] == 0.0 and m["cos"] == pytest.approx(1.0) and math.isnan(m["nse"])
    with pytest.raises(ValueError):
        agreement([1.0, 2.0], [1.0])
    a = np.array([[1, 2, 3], [4, 5, 6]], np.int8)
    b = np.array([[1, 2, 3], [4, 7, 3]], np.int8)
    ia = integer_agreement(a, b)
    assert ia == {"windows": 2, "identical_windows": 1, "identical_fraction": 0.5, "differing_values": 2,
                  "max_abs_diff_lsb": 3, "top1_agreement": 0.5}


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    q = quantized_run(tmp_path_factory)
    out = tmp_path_factory.mktemp("report") / "rep"
    rc = main(["report", str(q["run"]), "--out", str(out), "--layer-windows", "8"])
    return q, out, rc


def test_report_files_are_consistent(reported):
    from rfedge.metrics import confusion_matrix, macro_f1

    q, out, rc = reported
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in rep["columns"]] == ["float", "int8_tflm", "c"]
    z = np.load(out / "outputs.npz")
    y = z["y_true"]
    assert len(y) == rep["n_test"] == 22
    assert z["test_ids"].tolist() == np.load(q["run"] / "predictions.npz")["test_ids"].tolist()
    s, zp = rep["tflite"]["output"]["scale"], rep["tflite"]["output"]["zero_point"]
    for c in rep["columns"]:
        assert c["available"], c
        raw = z[c["name"]]
        assert raw.dtype == (np.float32 if c["name"] == "float" else np.int8)
        y_pred = raw.argmax(1)
        assert c["y_pred"] == y_pred.tolist()
        assert c["accuracy"] == pytest.approx((y_pred == y).mean())
        assert c["macro_f1"] == pytest.approx(macro_f1(y, y_pred, len(rep["label_names"])))
        assert c["confusion_matrix"] == confusion_matrix(y, y_pred, len(rep["label_names"])).tolist()
        assert (out / c["confusion_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if c["name"] != "float":   # the STM32Cube.AI metrics, recomputed from the raw outputs
            deq = (raw.astype(np.float64) - zp) * s
            e = deq - z["float"]
            assert c["vs_float"]["rmse"] == pytest.approx(np.sqrt((e ** 2).mean()), rel=1e-5)
            assert c["vs_float"]["l2r"] == pytest.approx(np.linalg.norm(e) / np.linalg.norm(z["float"]), rel=1e-5)
    # int8 through TFLM and through the generated C: identical, window for window
    assert np.array_equal(z["int8_tflm"], z["c"])
    assert rep["integer_agreement"] == [{"a": "int8_tflm", "b": "c", "windows": 22, "identical_windows": 22,
                                         "identical_fraction": 1.0, "differing_values": 0, "max_abs_diff_lsb": 0,
                                         "top1_agreement": 1.0}]
    # the same TFLM predictions and accuracy as `rfedge quantize` recorded
    qj = json.loads((q["run"] / "quantize.json").read_text())
    assert rep["columns"][1]["y_pred"] == qj["predictions"]["int8"]
    assert rep["columns"][1]["accuracy"] == pytest.approx(qj["int8"]["accuracy"])
    assert rep["tflite"]["sha256"] == qj["tflite_sha256"] and rep["tflite"]["non_int8_tensors"] == []
    # Markdown and HTML carry the same figures; the HTML embeds its PNGs
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    acc = f"{rep['columns'][1]['accuracy']:.4f}"
    assert acc in md and acc in page
    for key in ("RMSE", "MAE", "L2R", "COS", "||p − r||₂ / ||r||₂"):
        assert key in md and key in page
    assert page.count('src="data:image/png;base64,') == 4 and 'src="confusion' not in page
    assert "![per-layer error](layer_error.png)" in md and (out / "layer_error.png").is_file()


def test_per_layer_error_maps_keras_layers(reported):
    from rfedge.quantize import RunDir

    q, out, _ = reported
    rep = json.loads((out / "report.json").read_text())
    units = RunDir(q["run"]).keras_model().get_layer("gru").units
    layers = {r["layer"]: r for r in rep["layers"]}
    assert rep["layer_error"]["windows"] == 8
    assert layers["x"]["op"] == "input" and layers["x"]["l2r"] < 0.05       # input quantization alone
    assert layers["ds1_dw"]["op"] == "DEPTHWISE_CONV_2D" and layers["ds1_relu"]["op"] == "CONV_2D"
    assert layers["ds1_pw"]["note"] == layers["ds1_bn"]["note"] == "fused into ds1_relu"
    assert layers["gru"]["op"] == "ADD" and layers["gru"]["shape"] == [units]   # the last unrolled step's state
    assert layers["head"]["op"] == "SOFTMAX"
    assert "tensor" not in layers["dropout"]
    for r in rep["layers"]:
        if "l2r" in r:   # a wrong mapping would compare unrelated activations (L2r ~ 1)
            assert 0 <= r["l2r"] < 0.3 and r["cos"] > 0.95, r


def test_no_compiler_skips_the_c_column_with_the_reason(reported, tmp_path, monkeypatch):
    q = reported[0]
    from rfedge_codegen import build

    from rfedge.report import build_report

    monkeypatch.setattr(build, "host_cc", lambda: None)
    rep = build_report(q["run"], tmp_path / "rep", layer_windows=2, stream=None)
    c = rep["columns"][2]
    assert c == {"name": "c", "title": "generated C (host)", "available": False,
                 "reason": "skipped: no C compiler found (set CC or install cc)"}
    assert rep["integer_agreement"] == []
    assert "no C compiler found" in (tmp_path / "rep" / "report.md").read_text()
    assert not (tmp_path / "rep" / "confusion_c.png").exists()
    assert "c" not in np.load(tmp_path / "rep" / "outputs.npz").files


def test_report_errors(reported, tmp_path, capsys):
    q, _, _ = reported
    run = tmp_path / "run"
    run.mkdir()
    for f in RUN_FILES:
        shutil.copy2(q["run"] / f, run / f)
    cases = [
        ([str(run)], "no student_int8.tflite: run `rfedge quantize"),
        ([str(tmp_path / "nope")], "no such run directory"),
    ]
    for args, msg in cases:
        assert main(["report", *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("rfedge: error: ") and msg in err[0], err
    (run / "student_int8.tflite").write_bytes(b"\0" * 64)
    assert main(["report", str(run)]) == 1
    assert "not a TFLite flatbuffer" in capsys.readouterr().err
    shutil.copy2(q["run"] / "student_int8.tflite", run / "student_int8.tflite")
    # the report directory is replaced as a whole: never the run itself, never a foreign directory
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for out, msg in ((run, "would replace the run directory"), (other, "is not a report directory")):
        assert main(["report", str(run), "--out", str(out)]) == 1
        assert msg in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "mine" and sorted(p.name for p in run.iterdir()) == sorted(
        RUN_FILES + ("student_int8.tflite",))
    with pytest.raises(RfedgeError, match="no such run directory"):
        from rfedge.report import build_report

        build_report(tmp_path / "missing")


def test_device_column_from_validate(reported, tmp_path):
    """`rfedge validate` on the host board leaves the test trials' raw outputs; the report turns
    them into a device column matched by trial id, equal byte for byte to TFLM's, and refuses a
    board that ran another model."""
    from test_kernels import require_cc

    from rfedge.report import build_report
    from rfedge.validate import TEST_OUTPUTS, validate

    require_cc()
    q = reported[0]
    run = tmp_path / "run"
    run.mkdir()
    for f in RUN_FILES + ("student_int8.tflite",):
        shutil.copy2(q["run"] / f, run / f)
    s = validate("host", run, vectors=200, e2e_trials=0, test_windows=10, stream=None)
    assert s["pass"] and s["accuracy"]["test_trials"] == 10
    rep = build_report(run, tmp_path / "rep", layer_windows=2, stream=None)
    dev = rep["columns"][3]
    assert dev["name"] == "device_host" and dev["available"] and dev["n"] == 10
    assert "10 of 22 test windows" in dev["runtime"]
    z = np.load(tmp_path / "rep" / "outputs.npz")
    ids = z["device_host_test_ids"].tolist()
    pos = [z["test_ids"].tolist().index(i) for i in ids]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert np.array_equal(z["device_host"], z["int8_tflm"][pos])
    assert dev["y_pred"] == z["int8_tflm"][pos].argmax(1).tolist()
    assert dev["accuracy"] == pytest.approx((z["int8_tflm"][pos].argmax(1) == z["y_true"][pos]).mean())
    pair = rep["integer_agreement"][-1]
    assert pair["b"] == "device_host" and pair["identical_windows"] == pair["windows"] == 10
    assert "device (host)" in (tmp_path / "rep" / "report.md").read_text()
    # the board ran another model: listed, with the reason, and no numbers
    npz = run / "device" / "host" / TEST_OUTPUTS
    with np.load(npz) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["model_hash"] = np.array("0" * 16)
    np.savez(npz, **arrays)
    rep = build_report(run, tmp_path / "rep2", layer_windows=2, stream=None)
    dev = rep["columns"][3]
    assert not dev["available"] and "validated model 0000000000000000" in dev["reason"]
    assert "device_host" not in np.load(tmp_path / "rep2" / "outputs.npz").files
    npz.write_bytes(b"PK\x03\x04garbage")
    rep = build_report(run, tmp_path / "rep3", layer_windows=2, stream=None)
    assert not rep["columns"][3]["available"] and "unreadable" in rep["columns"][3]["reason"]
