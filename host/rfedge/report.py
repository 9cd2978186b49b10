"""``rfedge report RUN``: what quantization and code generation did to a trained run's accuracy.

Columns, each a named source scoring the run's test trials:

- ``float``: the Keras model (``RUN/model.keras``);
- ``int8_tflm``: ``RUN/student_int8.tflite`` on TensorFlow Lite Micro's reference kernels (the
  PyPI ``tflite-micro`` runtime, its input refilled before every invoke): the device's arithmetic;
- ``c``: the same model as standalone C (rfedge_codegen), compiled with the host's C compiler and
  run on the same int8 inputs (skipped, with the reason, when there is no compiler).

- ``device_<board>``: one per board the run was validated on (``rfedge validate`` leaves the raw
  outputs of the test trials it ran in ``RUN/device/<board>/test_outputs.npz``): every test window,
  or the sample an emulated board was given, matched by trial id; a board that ran another model
  is listed as unavailable with the reason.

``report.json`` keeps the columns as a list of named sources. For each: accuracy, macro-F1, per-class figures, the confusion matrix
(PNG) and its predictions; for each non-float column, the agreement metrics STM32Cube.AI's
validation reports between its outputs and the float outputs (RMSE, MAE, L2r, MEAN, STD, NSE,
COS; ``AGREEMENT_DEFINITIONS``); for pairs of integer columns, how many outputs are identical.
Per-layer error: every Keras layer whose output has an int8 tensor in the .tflite (matched by
name, see ``layer_tensors``) is compared, dequantized, with the float activation.

Outputs in ``OUT`` (default ``RUN/report``), written as a whole: ``report.md``, ``report.html``
(self-contained: PNGs embedded), ``report.json``, ``outputs.npz`` (test ids, labels and each
column's raw outputs), ``confusion_<column>.png`` and ``layer_error.png``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import io
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.quantize import RunDir, check_model_input, dequantize, io_quantization, keras_outputs, say, tflm_outputs

REPORT_DIR = "report"
OUTPUTS_FILE = "outputs.npz"
LAYER_PNG = "layer_error.png"
DEFAULT_LAYER_WINDOWS = 32

# STM32Cube.AI's (ST Edge AI Core's) validation metrics, with r the reference (float) outputs and
# p the compared outputs (dequantized), both flattened over all windows and classes, e = p - r.
AGREEMENT_DEFINITIONS = {
    "rmse": "root mean square error: sqrt(mean(e²))",
    "mae": "mean absolute error: mean(|e|)",
    "l2r": "L2 relative error: ||p − r||₂ / ||r||₂",
    "mean": "arithmetic mean of the error: mean(e)",
    "std": "standard deviation of the error: std(e)",
    "nse": "Nash–Sutcliffe efficiency: 1 − Σe² / Σ(r − mean(r))² (1 = identical)",
    "cos": "cosine similarity: (r · p) / (||r||₂ ||p||₂)",
}
AGREEMENT_SCOPE = ("r = float (Keras) outputs, p = the column's outputs dequantized with the output scale and "
                   "zero point, both flattened over all test windows × classes; e = p − r")

COLUMN_TITLES = {"float": "float (Keras)", "int8_tflm": "int8 (TFLM)", "c": "generated C (host)",
                 "device": "device"}


def agreement(reference, compared) -> dict:
    """STM32Cube.AI's metrics between reference outputs r and compared outputs p (any shapes of
    equal size; see AGREEMENT_DEFINITIONS). Degenerate denominators give NaN (JSON: null)."""
    r = np.asarray(reference, np.float64).ravel()
    p = np.asarray(compared, np.float64).ravel()
    if r.shape != p.shape:
        raise ValueError(f"reference has {r.size} values, compared {p.size}")
    if not r.size:
        return {k: float("nan") for k in AGREEMENT_DEFINITIONS}
    e = p - r
    nr, np_, ss = np.linalg.norm(r), np.linalg.norm(p), float(((r - r.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt(np.mean(e ** 2))),
        "mae": float(np.mean(np.abs(e))),
        "l2r": float(np.linalg.norm(e) / nr) if nr > 0 else float("nan"),
        "mean": float(e.mean()),
        "std": float(e.std()),
        "nse": float(1.0 - (e ** 2).sum() / ss) if ss > 0 else float("nan"),
        "cos": float(r @ p / (nr * np_)) if nr > 0 and np_ > 0 else float("nan"),
    }


def integer_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """How two integer columns' raw outputs [N, G] compare: identical windows, differing values."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    diff = np.abs(a - b)
    return {"windows": int(len(a)), "identical_windows": int((diff == 0).all(axis=1).sum()),
            "identical_fraction": float((diff == 0).all(axis=1).mean()) if len(a) else 1.0,
            "differing_values": int((diff != 0).sum()), "max_abs_diff_lsb": int(diff.max(initial=0)),
            "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0}


# ---- per-layer error ---------------------------------------------------------------------------

def _name_pattern(layer_name: str):
    # Keras 3 numbers the layers' name scopes in the exported graph: "ds1_dw" -> "ds1_dw_1".
    return re.compile(rf"^{re.escape(layer_name)}(_\d+)?$")


def _output_layer_name(model) -> str:
    try:
        return model.outputs[0]._keras_history[0].name
    except (AttributeError, IndexError, TypeError):  # pragma: no cover - Keras internals moved
        return model.layers[-1].name


def layer_tensors(tflite_bytes: bytes, model) -> list[dict]:
    """For each layer of ``model`` (in order), the int8 tensor of the .tflite holding its output.

    TFLite names an op's output after the TensorFlow ops it came from, ';'-joined when ops were
    fused (``.../ds1_relu_1/Relu;.../ds1_bn_1/...;.../ds1_pw_1/convolution``). A tensor belongs to
    the latest layer (in model order) its name mentions: the fused conv → BN → ReLU output is
    the ReLU's, and the conv and BN are reported as fused into it. Of a layer's tensors the last
    one computed with the layer's output shape (batch 1) is taken, e.g. the GRU's final state of
    its unrolled steps. The graph input belongs to the input layer, the graph output to the
    model's output layer. Layers without such a tensor (folded reshapes, identity dropout) get a
    ``note`` instead.
    """
    from rfedge_codegen.graph import load_graph

    g = load_graph(tflite_bytes)
    names = [layer.name for layer in model.layers]
    pats = [_name_pattern(n) for n in names]
    out_layer = names.index(_output_layer_name(model)) if _output_layer_name(model) in names else len(names) - 1
    owned: dict[int, list[tuple[int, int, str]]] = {}
    fused_into: dict[int, int] = {}
    for t_idx in g.inputs:
        for k, layer in enumerate(model.layers):
            if type(layer).__name__ == "InputLayer":
                owned.setdefault(k, []).append((-1, t_idx, "input"))
    for j, op in enumerate(g.ops):
        for t_idx in op.outputs:
            t = g.t(t_idx)
            if t.dtype != "INT8":
                continue
            parts = {c for chunk in t.name.split(";") for c in chunk.split("/")}
            hits = sorted({k for k, p in enumerate(pats) if any(p.match(c) for c in parts)})
            if t_idx in g.outputs:
                hits = sorted(set(hits) | {out_layer})
            if not hits:
                continue
            owned.setdefault(hits[-1], []).append((j, t_idx, op.opcode))
            for k in hits[:-1]:
                fused_into.setdefault(k, hits[-1])
    rows = []
    for k, layer in enumerate(model.layers):
        shape = tuple(int(d) for d in layer.output.shape[1:])
        row = {"layer": layer.name, "class": type(layer).__name__, "shape": list(shape)}
        fits = [(j, ti, opc) for j, ti, opc in owned.get(k, []) if tuple(g.t(ti).shape) == (1,) + shape]
        if fits:
            j, ti, opc = fits[-1]
            t = g.t(ti)
            row.update({"tensor": t.name, "tensor_index": int(ti), "op": opc, "op_index": int(j),
                        "scale": float(t.s), "zero_point": t.zp})
        elif k in fused_into:
            row["note"] = f"fused into {names[fused_into[k]]}"
        elif owned.get(k):
            row["note"] = "no int8 tensor of the layer's output shape"
        else:
            row["note"] = "no int8 tensor (folded away or an identity at inference)"
        rows.append(row)
    return rows


def layer_errors(tflite_bytes: bytes, model, X: np.ndarray, Xq: np.ndarray) -> tuple[list[dict], dict]:
    """Per-layer error between float activations (``model`` on float inputs X) and int8 ones
    (the .tflite on the quantized inputs Xq, dequantized), over the windows given.

    Intermediate tensors come from TensorFlow Lite Micro itself (``kPreserveAllTensors``), so they
    are the device's values; LiteRT's reference kernels differ from TFLM by ±1 LSB on some
    windows of the unrolled GRU."""
    import keras

    from rfedge_codegen.reference import _runtime

    rows = layer_tensors(tflite_bytes, model)
    mapped = [r for r in rows if "tensor_index" in r]
    info = {"windows": int(len(X)), "runtime": "TensorFlow Lite Micro reference kernels, kPreserveAllTensors"}
    if not mapped or not len(X):
        return rows, info
    probe = keras.Model(model.inputs, [model.get_layer(r["layer"]).output for r in mapped])
    acts = probe.predict(X, batch_size=256, verbose=0)
    if len(mapped) == 1:
        acts = [acts]
    rt = _runtime()
    try:
        it = rt.Interpreter.from_bytes(bytes(tflite_bytes), intrepreter_config=rt.InterpreterConfig.kPreserveAllTensors)
    except Exception as e:  # the binding raises RuntimeError/ValueError with TFLM's message
        raise RfedgeError(f"TFLite Micro cannot load the model: {str(e).strip()[-300:]}") from e
    shape = tuple(it.get_input_details(0)["shape"])
    q = {r["tensor_index"]: [] for r in mapped}
    for x in np.asarray(Xq, np.int8):
        it.set_input(np.ascontiguousarray(x.reshape(shape)), 0)   # refilled before every invoke
        it.invoke()
        for ti in q:
            q[ti].append(np.asarray(it.GetTensor(ti, 0)["tensor_data"]).copy())
    for r, a in zip(mapped, acts):
        deq = dequantize(np.stack(q[r["tensor_index"]]).reshape(len(X), -1), r["scale"], r["zero_point"])
        fl = np.asarray(a, np.float32).reshape(len(X), -1)
        m = agreement(fl, deq)
        r.update({k: m[k] for k in ("rmse", "mae", "l2r", "cos")})
        r["rmse_lsb"] = m["rmse"] / r["scale"]
        r["float_range"] = [float(fl.min()), float(fl.max())]
    return rows, info


# ---- the report --------------------------------------------------------------------------------

def _column(name: str, y_true, outputs, label_names, *, runtime: str, float_outputs=None,
            scale=None, zero_point=None) -> dict:
    from rfedge.metrics import classification_report

    probs = outputs if scale is None else dequantize(outputs, scale, zero_point)
    y_pred = np.asarray(probs).argmax(1)
    rep = classification_report(y_true, y_pred, label_names)
    col = {"name": name, "title": COLUMN_TITLES.get(name, name), "available": True, "runtime": runtime,
           "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"], "n": int(len(y_true)),
           "confusion_matrix": rep["confusion_matrix"], "per_class": rep["per_class"],
           "confusion_png": f"confusion_{name}.png", "y_pred": y_pred.tolist(),
           "output_dtype": "float32" if scale is None else "int8"}
    if float_outputs is not None:
        col["vs_float"] = agreement(float_outputs, probs)
        col["vs_float"]["top1_agreement"] = float((np.asarray(float_outputs).argmax(1) == y_pred).mean())
    return col


def _c_outputs(tfl: bytes, Xq: np.ndarray, out_size: int, stream) -> tuple[np.ndarray | None, str]:
    """(raw int8 outputs of the generated C compiled on the host, description) or (None, reason)."""
    from rfedge_codegen import build, generate

    cc = build.host_cc()
    if cc is None:
        return None, "skipped: no C compiler found (set CC or install cc)"
    with tempfile.TemporaryDirectory(prefix="rfe_report_") as tmp:
        say(stream, "report", f"generating C and compiling it with {cc}")
        rep = generate(tfl, tmp, source="student_int8.tflite", golden_input=Xq[0] if len(Xq) else None,
                       golden_note="the first test window of the report")
        exe = build.compile_host(tmp)
        ok, msg = build.selftest_host(exe)
        if not ok:
            raise RfedgeError(f"the generated C failed its self-test: {msg}")
        y = build.run_host(exe, Xq, out_size)
    return y, f"rfedge_codegen C ({rep['kernel_calls']} kernel calls), {cc} {' '.join(build.C_FLAGS)}, host"


def device_columns(run_path: Path, tfl: bytes, test_ids) -> list[dict]:
    """One column per board the run was validated on (``rfedge validate``: RUN/device/<board>/
    test_outputs.npz): the device's raw outputs for the report's test trials it ran — all of them,
    or the sample an emulated board was given — matched by trial id. A board that ran another
    model (a re-quantized run) gives an unavailable column with the reason, never stale numbers."""
    from rfedge.validate import TEST_OUTPUTS

    cols = []
    want = hashlib.sha256(tfl).hexdigest()[:16]
    pos = {int(t): k for k, t in enumerate(test_ids)}
    for f in sorted((Path(run_path) / "device").glob(f"*/{TEST_OUTPUTS}")):
        board = f.parent.name
        d = {"name": f"device_{board}", "title": f"device ({board})", "outputs": None}
        try:
            with np.load(f, allow_pickle=False) as z:
                ids, out, mhash = z["test_ids"], z["outputs"], str(z["model_hash"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            cols.append({**d, "reason": f"unreadable {f}: {e}"})
            continue
        if mhash != want:
            cols.append({**d, "reason": f"validated model {mhash}, the run's model is {want}: run `rfedge validate` again"})
            continue
        keep = [(pos[int(t)], k) for k, t in enumerate(ids) if int(t) in pos]
        if not keep:
            cols.append({**d, "reason": f"none of the {len(ids)} trials the board ran is a test trial of this report"})
            continue
        keep.sort()
        vj = {}
        vpath = f.parent / "validate.json"
        if vpath.is_file():
            try:
                vj = json.loads(vpath.read_text())
            except ValueError:
                vj = {}
        dev = vj.get("device") or {}
        what = f"{board} firmware {dev.get('firmware', '')}".strip()
        sample = f"{len(keep)} of {len(test_ids)} test windows" if len(keep) < len(test_ids) else "all test windows"
        cols.append({**d, "outputs": out[[k for _, k in keep]], "index": np.array([p for p, _ in keep]),
                     "runtime": f"{what} via rfedge validate ({sample}); outputs read back over the serial protocol"})
    return cols


def build_report(run_dir, out_dir=None, *, layer_windows: int = DEFAULT_LAYER_WINDOWS, c_column: bool = True,
                 stream=None) -> dict:
    """Compute the report for a quantized run and write it to ``out_dir`` (default RUN/report);
    returns report.json's content (NaN as None)."""
    from rfedge import __version__
    from rfedge.codegen import quantize_inputs
    from rfedge.fileio import atomic_directory
    from rfedge.quant import non_int8_tensors
    from rfedge.train import configure_tf_threads

    stream = stream if stream is not None else sys.stderr
    run = RunDir(run_dir)
    tfl = run.tflite()
    out = Path(out_dir) if out_dir is not None else run.path / REPORT_DIR
    _check_out(out, run.path)
    ds, fold = run.dataset()
    test_ids = run.test_ids()
    if not test_ids:
        raise RfedgeError("the run has no test trials", path=run.path)
    iq = io_quantization(tfl)
    configure_tf_threads()
    model = run.keras_model()       # every input checked before any work or output
    check_model_input(model, run)
    X = run.windows(test_ids, "features (test)")
    Xq = quantize_inputs(X, iq["input"]["scale"], iq["input"]["zero_point"])
    y_true = ds.labels[test_ids]
    names = ds.label_names

    say(stream, "report", f"{run.name}: {len(test_ids)} test windows through Keras, TFLite Micro and the generated C")
    f_out = keras_outputs(model, X)
    s, z = iq["output"]["scale"], iq["output"]["zero_point"]
    columns = [_column("float", y_true, f_out, names, runtime="Keras (model.keras), float32")]
    outputs = {"float": f_out}
    q_tflm = tflm_outputs(tfl, Xq, stream=stream)
    outputs["int8_tflm"] = q_tflm
    columns.append(_column("int8_tflm", y_true, q_tflm, names, float_outputs=f_out, scale=s, zero_point=z,
                           runtime="TensorFlow Lite Micro reference kernels (PyPI tflite-micro), input refilled "
                                   "before every invoke"))
    integer_pairs = []
    if c_column:
        q_c, how = _c_outputs(tfl, Xq, q_tflm.shape[1], stream)
    else:
        q_c, how = None, "skipped: not requested (--no-c)"
    if q_c is None:
        columns.append({"name": "c", "title": COLUMN_TITLES["c"], "available": False, "reason": how})
        say(stream, "report", f"generated C column {how}")
    else:
        outputs["c"] = q_c
        columns.append(_column("c", y_true, q_c, names, float_outputs=f_out, scale=s, zero_point=z, runtime=how))
        integer_pairs.append({"a": "int8_tflm", "b": "c", **integer_agreement(q_tflm, q_c)})

    for d in device_columns(run.path, tfl, test_ids):
        if d["outputs"] is None:
            columns.append({"name": d["name"], "title": d["title"], "available": False, "reason": d["reason"]})
            say(stream, "report", f"{d['title']}: {d['reason']}")
            continue
        idx = d["index"]
        outputs[d["name"]] = d["outputs"]
        outputs[d["name"] + "_test_ids"] = np.asarray(test_ids, np.int64)[idx]
        col = _column(d["name"], y_true[idx], d["outputs"], names, float_outputs=f_out[idx], scale=s, zero_point=z,
                      runtime=d["runtime"])
        col["title"] = d["title"]
        columns.append(col)
        integer_pairs.append({"a": "int8_tflm", "b": d["name"], "b_title": d["title"],
                              **integer_agreement(q_tflm[idx], d["outputs"])})

    n_layer = min(int(layer_windows), len(X))
    say(stream, "report", f"per-layer error on {n_layer} test windows")
    layers, layer_info = layer_errors(tfl, model, X[:n_layer], Xq[:n_layer]) if n_layer > 0 else ([], {"windows": 0})

    report = {
        "title": f"Quantization report: {run.name} ({run.metrics['split']} / {fold['name']})",
        "run": str(run.path.resolve()),
        "model": run.name,
        "split": run.metrics["split"],
        "fold": fold["name"],
        "n_test": len(test_ids),
        "label_names": names,
        "tflite": {"file": run.tflite_path.name, "bytes": len(tfl),
                   "sha256": hashlib.sha256(tfl).hexdigest(),
                   "non_int8_tensors": non_int8_tensors(tfl), **iq},
        "columns": columns,
        "agreement_definitions": AGREEMENT_DEFINITIONS,
        "agreement_scope": AGREEMENT_SCOPE,
        "integer_agreement": integer_pairs,
        "layers": layers,
        "layer_error": {**layer_info, "definition": "float activation of the Keras layer vs the int8 tensor mapped to "
                                                    "it, dequantized ((q − zero_point) × scale), over the first "
                                                    f"{n_layer} test windows; rmse_lsb = rmse / scale"},
        "outputs_file": OUTPUTS_FILE,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rfedge": __version__,
    }
    with atomic_directory(out) as stage:
        _write(report, outputs, test_ids, y_true, stage)
    say(stream, "report", f"wrote {out}/report.md, report.html, report.json and {len(list(out.glob('*.png')))} PNGs")
    return _json_safe(report)


def _check_out(out: Path, run_path: Path) -> None:
    """The report directory is replaced as a whole: refuse anything that is not one."""
    o, r = out.resolve(), run_path.resolve()
    if o == r or o in r.parents:
        raise RfedgeError("the report directory would replace the run directory; choose another --out", path=out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "report.json").is_file())):
        raise RfedgeError("exists and is not a report directory (no report.json); choose another --out", path=out)


def _write(report: dict, outputs: dict, test_ids, y_true, d: Path) -> None:
    from rfedge.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
    from rfedge.metrics import save_confusion_png

    buf = io.BytesIO()
    np.savez(buf, test_ids=np.asarray(test_ids, np.int64), y_true=np.asarray(y_true, np.int64),
             **{k: np.asarray(v) for k, v in outputs.items()})
    atomic_write_bytes(d / OUTPUTS_FILE, buf.getvalue())
    for col in report["columns"]:
        if col["available"]:
            save_confusion_png(col["confusion_matrix"], report["label_names"], d / col["confusion_png"],
                               title=f"{col['title']}: acc {col['accuracy']:.3f}, macro-F1 {col['macro_f1']:.3f}")
    if any("l2r" in r for r in report["layers"]):
        save_layer_png(report["layers"], d / LAYER_PNG, title=report["title"])
        report["layer_png"] = LAYER_PNG
    atomic_write_json(d / "report.json", _json_safe(report))
    atomic_write_text(d / "report.md", render_markdown(report))
    atomic_write_text(d / "report.html", render_html(report, d))


def _json_safe(obj):
    """NaN/inf -> None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def save_layer_png(layers: list[dict], path, title: str = "") -> None:
    """Horizontal bars of each mapped layer's L2 relative error (log scale), cosine in the label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rfedge.metrics import write_figure_png

    rows = [r for r in layers if "l2r" in r]
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.6))
    try:
        vals = [max(r["l2r"], 1e-6) if np.isfinite(r["l2r"]) else 1e-6 for r in rows]
        ys = np.arange(len(rows))[::-1]
        ax.barh(ys, vals, color="#4c72b0")
        ax.set_yticks(ys, [f"{r['layer']} ({r['op']})" for r in rows], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("L2 relative error ||q − f|| / ||f||  (float vs int8 activation)")
        for y, v, r in zip(ys, vals, rows):
            ax.text(v, y, f"  cos {r['cos']:.4f}", va="center", fontsize=7)
        ax.set_xlim(min(vals) / 2, max(vals) * 8)
        if title:
            ax.set_title(title, fontsize=9)
    except BaseException:
        plt.close(fig)
        raise
    write_figure_png(fig, path)


# ---- rendering ---------------------------------------------------------------------------------

def _f(v, nd=4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    if isinstance(v, float) and v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.3e}"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _tables(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) of every table, shared by the Markdown and HTML renderings."""
    cols = report["columns"]
    t = []
    rows = []
    for c in cols:
        if c["available"]:
            rows.append([c["title"], _f(c["accuracy"]), _f(c["macro_f1"]), str(c["n"]), c["runtime"]])
        else:
            rows.append([c["title"], "—", "—", "—", c["reason"]])
    t.append(("Accuracy on the test split", ["column", "accuracy", "macro-F1", "windows", "runtime / note"], rows))
    keys = list(AGREEMENT_DEFINITIONS) + ["top1_agreement"]
    rows = [[c["title"]] + [_f(c["vs_float"].get(k)) for k in keys] for c in cols if c.get("vs_float")]
    t.append(("Agreement with the float outputs", ["column"] + [k.upper() if k != "top1_agreement" else "top-1 agree"
                                                                for k in keys], rows))
    rows = [[f"{COLUMN_TITLES.get(p['a'], p['a'])} vs {p.get('b_title') or COLUMN_TITLES.get(p['b'], p['b'])}",
             f"{p['identical_windows']}/{p['windows']} ({100 * p['identical_fraction']:.1f}%)",
             str(p["differing_values"]), str(p["max_abs_diff_lsb"]), _f(p["top1_agreement"])]
            for p in report["integer_agreement"]]
    t.append(("Integer columns compared byte for byte",
              ["pair", "identical windows", "differing values", "max |diff| (LSB)", "top-1 agree"], rows))
    rows = []
    for r in report["layers"]:
        if "l2r" in r:
            rows.append([r["layer"], r["class"], r["op"], _f(r["scale"], 6), _f(r["rmse"]), _f(r["rmse_lsb"], 2),
                         _f(r["l2r"]), _f(r["cos"])])
        else:
            rows.append([r["layer"], r["class"], "—", "—", "—", "—", "—", r.get("note", "")])
    t.append(("Per-layer error (float vs int8 activations)",
              ["layer", "Keras class", "TFLite op", "scale", "RMSE", "RMSE (LSB)", "L2r", "COS / note"], rows))
    return t


def render_markdown(report: dict) -> str:
    tf = report["tflite"]
    lines = [f"# {report['title']}", "",
             f"Run `{report['run']}`, {report['n_test']} test windows; model `{tf['file']}` ({tf['bytes']:,} B, "
             f"sha256 {tf['sha256'][:16]}…), input scale {tf['input']['scale']:.6g} / zero point "
             f"{tf['input']['zero_point']}, output scale {tf['output']['scale']:.6g} / zero point "
             f"{tf['output']['zero_point']}; non-int8 tensors: {len(tf['non_int8_tensors'])}.", ""]
    tables = _tables(report)
    for k, (heading, header, rows) in enumerate(tables):
        lines += [f"## {heading}", ""]
        if k == 1:
            lines += [f"Metrics as STM32Cube.AI's validation defines them; {report['agreement_scope']}:", ""]
            lines += [f"- **{key.upper()}**: {text}" for key, text in report["agreement_definitions"].items()]
            lines += ["- **top-1 agree**: fraction of windows whose predicted class equals the float model's", ""]
        if k == 3:
            lines += [report["layer_error"].get("definition", ""),
                      f"Intermediate tensors: {report['layer_error'].get('runtime', 'n/a')}.", ""]
        if rows:
            lines += ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
        else:
            lines.append("(none)")
        lines.append("")
        if k == 0:
            for c in report["columns"]:
                if c["available"]:
                    lines.append(f"![confusion matrix, {c['title']}]({c['confusion_png']})")
            lines.append("")
        if k == 3 and report.get("layer_png"):
            lines += [f"![per-layer error]({report['layer_png']})", ""]
    lines += [f"Raw outputs of every column: `{report['outputs_file']}`; all figures: `report.json`.", ""]
    return "\n".join(lines)


def _img(d: Path, name: str, alt: str) -> str:
    data = base64.b64encode((Path(d) / name).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(report: dict, d: Path) -> str:
    """A self-contained page (PNGs embedded as data URIs) from the same tables as the Markdown."""
    e = html.escape
    tf = report["tflite"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(report['title'])}</title>",
             "<style>body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
             "text-align:left;font-size:.9rem}th{background:#f3f3f3}img{max-width:100%;margin:.3rem}"
             "code{background:#f3f3f3;padding:0 .2rem}</style></head><body>",
             f"<h1>{e(report['title'])}</h1>",
             f"<p>Run <code>{e(report['run'])}</code>, {report['n_test']} test windows; model "
             f"<code>{e(tf['file'])}</code> ({tf['bytes']:,} B), input scale {tf['input']['scale']:.6g} / zero point "
             f"{tf['input']['zero_point']}, output scale {tf['output']['scale']:.6g} / zero point "
             f"{tf['output']['zero_point']}; non-int8 tensors: {len(tf['non_int8_tensors'])}.</p>"]
    for k, (heading, header, rows) in enumerate(_tables(report)):
        parts.append(f"<h2>{e(heading)}</h2>")
        if k == 1:
            parts.append(f"<p>Metrics as STM32Cube.AI's validation defines them; "
                         f"{e(report['agreement_scope'])}:</p><ul>")
            parts += [f"<li><b>{e(key.upper())}</b>: {e(text)}</li>"
                      for key, text in report["agreement_definitions"].items()]
            parts.append("<li><b>top-1 agree</b>: fraction of windows whose predicted class equals the float "
                         "model's</li></ul>")
        if k == 3:
            parts.append(f"<p>{e(report['layer_error'].get('definition', ''))}. Intermediate tensors: "
                         f"{e(str(report['layer_error'].get('runtime', 'n/a')))}.</p>")
        if rows:
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        else:
            parts.append("<p>(none)</p>")
        if k == 0:
            parts.append("<div>" + "".join(_img(d, c["confusion_png"], f"confusion matrix, {c['title']}")
                                           for c in report["columns"] if c["available"]) + "</div>")
        if k == 3 and report.get("layer_png"):
            parts.append(_img(d, report["layer_png"], "per-layer error"))
    parts.append(f"<p>Raw outputs of every column: <code>{e(report['outputs_file'])}</code>; all figures: "
                 "<code>report.json</code>.</p></body></html>")
    return "\n".join(parts) + "\n"


def format_summary(report: dict) -> str:
    """A few lines for the terminal."""
    lines = [report["title"]]
    for c in report["columns"]:
        if not c["available"]:
            lines.append(f"  {c['title']:<22} {c['reason']}")
            continue
        s = f"  {c['title']:<22} accuracy {c['accuracy']:.4f}  macro-F1 {c['macro_f1']:.4f}"
        if c.get("vs_float"):
            v = c["vs_float"]
            s += f"  vs float: RMSE {_f(v['rmse'])} MAE {_f(v['mae'])} L2r {_f(v['l2r'])} COS {_f(v['cos'])}"
        lines.append(s)
    for p in report["integer_agreement"]:
        lines.append(f"  {p['a']} vs {p['b']}: {p['identical_windows']}/{p['windows']} windows identical, "
                     f"max |diff| {p['max_abs_diff_lsb']} LSB")
    worst = sorted((r for r in report["layers"] if "l2r" in r and r["l2r"] is not None and np.isfinite(r["l2r"])),
                   key=lambda r: -r["l2r"])[:3]
    if worst:
        lines.append("  largest per-layer L2r: " + ", ".join(f"{r['layer']} {r['l2r']:.4f}" for r in worst))
    return "\n".join(lines)
