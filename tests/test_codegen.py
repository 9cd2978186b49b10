"""rfedge codegen: the students (unrolled GRU and TCN) as standalone C, compiled with the system
cc and compared byte for byte with TensorFlow Lite Micro on >= 1000 inputs each; the memory
plan, constant sharing, the TFLM format, errors, the CLI and a run directory end to end."""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
import warnings

import numpy as np
import pytest

from rfedge.errors import RfedgeError
from rfedge_codegen import analyze, build, generate, reference
from rfedge_codegen.graph import load_graph
from rfedge_codegen.testing import const as C, options as O, single_op, tensor as T
from test_kernels import require_cc, require_valgrind

INPUT_SHAPE = (14, 8, 25)     # features (C, F, T) of the default student


def _random_student(variant: str, seed: int):
    """The student with every weight random (biases, BN statistics and GRU biases included, so
    no constant is trivially zero) and int8-quantized on random windows."""
    from rfedge.models.student import build_student
    from rfedge.quant import to_int8_tflite

    rng = np.random.default_rng(seed)
    m = build_student(INPUT_SHAPE, 11, variant=variant)
    ws = []
    for w in m.weights:
        v = rng.normal(0, 0.3, w.shape)
        if "variance" in w.path:
            v = np.abs(v) + 0.5
        ws.append(v.astype(np.float32))
    m.set_weights(ws)
    X = rng.normal(0, 1, (64, 25, 8, 14)).astype(np.float32)
    return to_int8_tflite(m, X)


@pytest.fixture(scope="session")
def students():
    pytest.importorskip("tensorflow")
    return {"gru": _random_student("gru", 1), "tcn": _random_student("tcn", 2)}


@pytest.fixture(scope="session")
def compiled(students, tmp_path_factory):
    """Generated C for each student, compiled once: (tflite, report, executable, directory)."""
    require_cc()
    out = {}
    for variant, tfl in students.items():
        d = tmp_path_factory.mktemp(f"gen_{variant}")
        rep = generate(tfl, d, source=f"{variant}.tflite")
        out[variant] = (tfl, rep, build.compile_host(d), d)
    return out


def _vectors(n_in: int, zero_point: int, n: int, seed: int) -> np.ndarray:
    """Random, extreme and structured (smooth, gesture-like) int8 inputs."""
    rng = np.random.default_rng(seed)
    ext = [np.full(n_in, -128), np.full(n_in, 127), np.full(n_in, zero_point), np.where(np.arange(n_in) % 2, 127, -128)]
    ext += [rng.choice([-128, 127], n_in) for _ in range(12)]
    t = np.linspace(0, 1, 25)[:, None, None]
    smooth = []
    for _ in range(n // 2):
        f = rng.uniform(0.5, 4)
        blob = np.sin(2 * np.pi * (f * t + rng.uniform(0, 1, (1, 8, 14)))) * rng.uniform(10, 120)
        smooth.append(np.clip(np.round(blob + rng.normal(zero_point, 10)), -128, 127).reshape(-1))
    rand = rng.integers(-128, 128, (n - len(ext) - len(smooth), n_in))
    return np.concatenate([np.stack(ext), np.stack(smooth), rand]).astype(np.int8)


@pytest.mark.parametrize("variant", ["gru", "tcn"])
def test_bit_exact_with_tflm_on_1000_inputs(compiled, variant):
    tfl, rep, exe, _ = compiled[variant]
    g = load_graph(tfl)
    X = _vectors(rep["input_bytes"], g.t(g.inputs[0]).zp, 1000, seed=7)
    assert len(X) >= 1000
    ours = build.run_host(exe, X, rep["output_bytes"])
    want = reference.run(tfl, X)
    bad = np.flatnonzero((ours != want).any(axis=1))
    assert bad.size == 0, f"{bad.size} of {len(X)} vectors differ; first {bad[0]}: {ours[bad[0]]} vs {want[bad[0]]}"
    # the outputs are not degenerate: the vectors exercise the whole network
    assert len({tuple(r) for r in want}) > 50


@pytest.mark.parametrize("variant", ["gru", "tcn"])
def test_selftest_and_generated_files(compiled, variant):
    tfl, rep, exe, d = compiled[variant]
    ok, msg = build.selftest_host(exe)
    assert ok, msg
    assert msg == "selftest pass (0)"
    header = (d / "model.h").read_text()
    assert f"#define RFE_MODEL_ARENA_SIZE {rep['arena_bytes']} " in header
    assert "int rfe_model_invoke(const int8_t *in, int8_t *out);" in header
    src = (d / "model.c").read_text()
    assert "malloc" not in src and "tflite" not in src.lower().replace(".tflite", "")
    # one kernel call per op (fused blocks and views excepted), each listed in a comment
    assert len(re.findall(r"^    rfe_\w+\(", src, re.M)) >= rep["kernel_calls"]
    # the golden output in the self-test is TFLM's for the golden input
    body = re.search(r"golden_input\[\w+\] = \{(.*?)\};", (d / "model_selftest.c").read_text(), re.S).group(1)
    golden_in = np.array([int(v) for v in re.findall(r"-?\d+", body)], np.int8)
    assert reference.run(tfl, golden_in[None])[0].tolist() == rep["golden_output"]


def test_unrolled_gru_weights_are_stored_once(compiled):
    tfl, rep, _, d = compiled["gru"]
    g = load_graph(tfl)
    fc = [op for op in g.ops if op.opcode == "FULLY_CONNECTED"]
    assert len(fc) > 50                       # 25 steps x 3 matmuls, sharing 3 weight matrices
    src = (d / "model.c").read_text()
    for shape in {g.t(op.inputs[1]).shape for op in fc}:
        dims = ", ".join(map(str, shape))
        stored = re.findall(rf"/\* weights tensor \d+ '[^']*' \(INT8\[{dims}\]\) \*/\nstatic const int8_t rfe_c\d+", src)
        assert len(stored) == 1, shape
    assert rep["const_bytes"] * 4 < rep["const_bytes_before_sharing"]


@pytest.mark.parametrize("variant", ["gru", "tcn"])
def test_memory_plan_never_overlaps_live_tensors(students, variant):
    tfl = students[variant]
    g, prog, plan = analyze(tfl)
    groups = plan.groups
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            if a["start"] <= b["end"] and b["start"] <= a["end"]:     # alive at a common op
                assert a["offset"] + a["size"] <= b["offset"] or b["offset"] + b["size"] <= a["offset"], (a, b)
    assert plan.arena_bytes == max(p["offset"] + p["size"] for p in groups)
    assert plan.arena_bytes <= plan.naive_bytes
    # every activation a kernel writes has a home inside the arena or the caller's buffers
    for call in prog.calls:
        for t in call.outputs:
            p = plan.places[t]
            assert p.home in ("arena", "out")
            if p.home == "arena":
                assert p.offset + g.t(t).size <= plan.arena_bytes
    # fusion and in-place writes only ever reduce memory: the unfused plan needs at least as much
    assert plan.arena_bytes <= analyze(tfl, fuse=False)[2].arena_bytes
    assert plan.arena_bytes < reference.arena_bytes(tfl)


def test_unsupported_op_is_one_clear_error(tmp_path):
    m = single_op("HARD_SWISH", [T([1, 8], 0.1, 3)], [T([1, 8], 0.1, 3, name="hs_out")])
    with pytest.raises(RfedgeError) as e:
        generate(m, tmp_path)
    msg = str(e.value)
    assert "op 0 HARD_SWISH" in msg and "unsupported op" in msg and "'hs_out'" in msg
    assert "\n" not in msg
    assert not any(tmp_path.iterdir())        # nothing written


def test_unsupported_type_names_the_tensor(tmp_path):
    m = single_op("FULLY_CONNECTED", [T([1, 4], 0.1, 0, dtype="INT16", name="x16"), C(np.ones((2, 4), np.int8), 0.1),
                                      None], [T([1, 2], 0.1, 0, dtype="INT16")], O("FullyConnected"))
    with pytest.raises(RfedgeError, match=r"INT16.*"):
        generate(m, tmp_path)
    fmodel = single_op("ADD", [T([1, 4], None, 0, dtype="FLOAT32", name="xf"), T([1, 4], None, 0, dtype="FLOAT32")],
                       [T([1, 4], None, 0, dtype="FLOAT32")], O("Add"))
    with pytest.raises(RfedgeError, match=r"'xf'.*FLOAT32.*full-int8"):
        generate(fmodel, tmp_path)
    fused_tanh = single_op("ADD", [T([1, 4], 0.1, 0), T([1, 4], 0.1, 0)], [T([1, 4], 0.1, 0)],
                           O("Add", fusedActivationFunction=4))
    with pytest.raises(RfedgeError, match=r"op 0 ADD.*fused activation TANH"):
        generate(fused_tanh, tmp_path)


def test_float_dequantize_is_refused(tmp_path):
    from rfedge_codegen.testing import build_model

    q, f = T([1, 4], 0.1, 0), T([1, 4], dtype="FLOAT32", name="f_out")
    m = build_model([("DEQUANTIZE", [q], [f], None)])
    with pytest.raises(RfedgeError, match=r"FLOAT32"):
        generate(m, tmp_path)
    q2, f2, g2 = T([1, 4], 0.1, 0), T([1, 4], dtype="FLOAT32"), T([1, 4], dtype="FLOAT32", name="f_exp")
    m2 = build_model([("DEQUANTIZE", [q2], [f2], None), ("EXP", [f2], [g2], None),
                      ("QUANTIZE", [g2], [T([1, 4], 0.1, 0)], None)])
    with pytest.raises(RfedgeError, match=r"op 0 DEQUANTIZE.*not supported"):
        generate(m2, tmp_path)


def test_corrupt_flatbuffer_is_refused(tmp_path):
    with pytest.raises(RfedgeError, match="not a TFLite flatbuffer"):
        generate(b"\x00" * 64, tmp_path)
    with pytest.raises(RfedgeError):
        generate(b"\x10\x00\x00\x00TFL3" + b"\xff" * 40, tmp_path)


def test_tflm_format(students, tmp_path):
    tfl = students["tcn"]
    rep = generate(tfl, tmp_path, fmt="tflm")
    header = (tmp_path / "model_tflm.h").read_text()
    data = (tmp_path / "model_tflm_data.cc").read_text()
    ops = sorted({op.opcode for op in load_graph(tfl).ops})
    assert rep["op_kinds"] == ops
    assert f"tflite::MicroMutableOpResolver<RFE_MODEL_TFLM_NUM_OPS>" in header
    assert f"#define RFE_MODEL_TFLM_NUM_OPS {len(ops)}" in header
    for method in ("AddConv2D", "AddDepthwiseConv2D", "AddMaxPool2D", "AddFullyConnected", "AddMean", "AddPad",
                   "AddReshape", "AddSoftmax"):
        assert f"r.{method}()" in header
    body = data[data.index("{") + 1:data.index("};")]
    assert bytes(int(v) for v in re.findall(r"-?\d+", body)) == tfl
    assert rep["arena_bytes_tflm_host"] == reference.arena_bytes(tfl)


def test_input_quantization_matches_python(students, tmp_path):
    """rfe_model_quantize_input (normalize per channel, scale, round half to even, saturate) gives
    the bytes the Python reference feeds the model."""
    cc = require_cc()
    tfl = students["tcn"]
    g = load_graph(tfl)
    x = g.t(g.inputs[0])
    rng = np.random.default_rng(3)
    mean = rng.normal(0, 2, 14).astype(np.float32)
    std = rng.uniform(0.5, 3, 14).astype(np.float32)
    generate(tfl, tmp_path, normalization={"mean": mean, "std": std, "note": "test"})
    lib = tmp_path / "libm.so"
    subprocess.run([cc, "-std=c99", "-O2", "-shared", "-fPIC", "-I", str(tmp_path), *map(str, tmp_path.glob("*.c")),
                    "-o", str(lib)], check=True, capture_output=True)
    so = ctypes.CDLL(str(lib))
    from rfedge.codegen import quantize_inputs

    for scale in (1.0, 30.0):
        F = (rng.normal(0, scale, (20, 25, 8, 14)) + mean).astype(np.float32)
        F[0, 0, 0, :] = mean + np.float32(0.5) * np.float32(x.s) * std     # exact ties land on .5 after scaling
        want = quantize_inputs((F - mean) / std, x.s, x.zp)
        got = np.zeros_like(want)
        for i in range(len(F)):
            fi = np.ascontiguousarray(F[i].reshape(-1))
            so.rfe_model_quantize_input(fi.ctypes.data_as(ctypes.c_void_p), got[i].ctypes.data_as(ctypes.c_void_p))
        assert np.array_equal(got, want)


def test_cli_codegen_and_bench(students, tmp_path, capsys):
    require_cc()
    from rfedge.cli import main

    model = tmp_path / "tcn.tflite"
    model.write_bytes(students["tcn"])
    assert main(["codegen", str(model), "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "model.c").is_file() and (tmp_path / "c" / "model.tflite").read_bytes() == students["tcn"]
    assert main(["codegen", str(model), "--out", str(tmp_path / "t"), "--format", "tflm"]) == 0
    assert (tmp_path / "t" / "model_tflm.h").is_file()
    capsys.readouterr()
    assert main(["bench", "codegen", str(model), "--vectors", "1000", "--no-instructions", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("vectors", "mismatches", "ram_bytes", "tflm_arena_bytes", "flash_bytes", "tflite_bytes",
                "host_instructions", "tflm_host_instructions"):
        assert key in r
    assert r["vectors"] >= 1000 and r["mismatches"] == 0
    assert r["tflite_bytes"] == len(students["tcn"])
    assert r["host_instructions"] is None and r["tflm_host_instructions"] is None
    assert "not measured" in r["host_instructions_reason"]
    assert 0 < r["ram_bytes"] < r["tflm_arena_bytes"] and r["flash_bytes"] > 0


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from rfedge.cli import main

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    assert main(["codegen", str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rfedge: error: ") and "\n" not in err and "bad.tflite" in err
    assert main(["codegen", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "no such run directory" in capsys.readouterr().err


def test_instruction_count_under_callgrind(compiled):
    require_valgrind()
    tfl, rep, exe, _ = compiled["tcn"]
    X = np.random.default_rng(0).integers(-128, 128, (2, rep["input_bytes"])).astype(np.int8)
    n = build.callgrind_instructions([exe], X.tobytes(), "rfe_model_invoke", 2)
    # at least one instruction per multiply-accumulate, and far from an interpreter's overhead
    assert rep["macs"] < n < 30 * rep["macs"]


@pytest.fixture(scope="session")
def trained_like_run(tmp_path_factory):
    """A run directory as `rfedge train` leaves it (model.keras, normalizer, features, metrics)
    over a small synthetic dataset, with random weights: enough for codegen's run path."""
    pytest.importorskip("tensorflow")
    from rfedge.dsp import Normalizer
    from rfedge.features import FeatureConfig, dataset_features
    from rfedge.models.student import build_student
    from rfedge.sim.csi import synth_csi_dataset
    from rfedge.data.dataset import Dataset

    root = tmp_path_factory.mktemp("runcase")
    data = root / "data"
    synth_csi_dataset(data, overrides={"users": 2, "sessions": 1, "trials_per_class": 2})
    ds = Dataset.open(data)
    fold = ds.split("in-session")["folds"][0]
    cfg = FeatureConfig()
    X = dataset_features(ds, sorted(fold["train"])[:8], cfg)
    norm = Normalizer.fit(X)
    run = root / "run"
    run.mkdir()
    model = build_student(cfg.shape, len(ds.label_names), variant="tcn")
    with warnings.catch_warnings():   # Keras' saver trips numpy 2's __array__(copy=) deprecation
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy",
                                category=DeprecationWarning)
        model.save(run / "model.keras")
    (run / "normalizer.json").write_text(json.dumps(norm.to_dict()))
    (run / "features.json").write_text(json.dumps(cfg.to_dict()))
    (run / "metrics.json").write_text(json.dumps({"model": "student-tcn", "split": "in-session", "fold": fold["name"],
                                                  "fold_index": 0, "data_dir": str(data)}))
    return run, norm


def test_codegen_from_a_run_directory(trained_like_run, tmp_path):
    require_cc()
    from rfedge.codegen import codegen

    run, norm = trained_like_run
    rep = codegen(run, tmp_path / "out")
    out = tmp_path / "out"
    src = (out / "model.c").read_text()
    mean = re.search(r"rfe_model_norm_mean\[14\] = \{(.*?)\};", src).group(1)
    assert np.allclose([float(v.rstrip("f")) for v in mean.split(",")], norm.mean, rtol=1e-6)
    assert "first test-split window" in (out / "model_selftest.c").read_text()
    ok, msg = build.selftest_host(build.compile_host(out))
    assert ok, msg
    assert rep["input"]["shape"] == [1, 25, 8, 14]
    assert (out / "model.tflite").read_bytes()[4:8] == b"TFL3"
