"""The quantize stage: a trained run's Keras model as a full-int8 TFLite model, scored next to it.

``quantize(RUN)`` calibrates on windows of the training side of the run's fold (the trials the
run was trained on, features from its features.json, normalized with its normalizer.json),
converts with rfedge.quant.to_int8_tflite (per-channel weights, int8 input and output,
deterministic), runs the run's test trials through the Keras model and through TensorFlow Lite
Micro (the device's arithmetic), and writes ``RUN/student_int8.tflite`` and ``RUN/quantize.json``
(float vs int8 accuracy and macro-F1, the predictions they come from, the model's quantization).
quantize.json goes out first and in last, so a run with it has a matching .tflite.

``RunDir`` is the checked view of a run directory that this stage and ``rfedge report`` share:
every missing or corrupt file is one RfedgeError naming it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from rfedge.codegen import TFLITE_NAME  # the file name codegen reads
from rfedge.errors import RfedgeError

QUANTIZE_JSON = "quantize.json"
DEFAULT_CALIBRATION = 300
TFLM_CHUNK = 32          # windows per TFLM call, for progress lines


def say(stream, stage: str, msg: str) -> None:
    if stream is not None:
        stream.write(f"{stage}: {msg}\n")
        stream.flush()


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise RfedgeError(f"missing {what}", path=path)
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RfedgeError(f"{what} is not valid JSON ({e.msg} at line {e.lineno})", path=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RfedgeError(f"cannot read {what} ({e})", path=path) from None
    if not isinstance(obj, dict):
        raise RfedgeError(f"{what} must hold a JSON object", path=path)
    return obj


class RunDir:
    """A run directory written by ``rfedge train`` for a Keras model, checked on opening."""

    def __init__(self, path):
        from rfedge.dsp import Normalizer
        from rfedge.features import FeatureConfig

        self.path = Path(path)
        if not self.path.is_dir():
            raise RfedgeError("no such run directory" if not self.path.exists() else "not a run directory",
                              path=self.path)
        mpath = self.path / "metrics.json"
        if not mpath.is_file():
            raise RfedgeError("not a complete run directory (no metrics.json); train it first", path=self.path)
        self.metrics = _read_json(mpath, "metrics.json")
        if self.metrics.get("model") == "svm" or (self.path / "svm.pkl").is_file():
            raise RfedgeError("this run holds an SVM; int8 quantization needs a Keras model", path=self.path)
        self.model_path = self.path / "model.keras"
        if not self.model_path.is_file():
            raise RfedgeError("missing model.keras (the run's Keras model)", path=self.path)
        for key in ("data_dir", "split"):
            if not isinstance(self.metrics.get(key), str):
                raise RfedgeError(f"metrics.json has no {key!r}", path=mpath, field=key)
        try:
            self.normalizer = Normalizer.from_dict(_read_json(self.path / "normalizer.json", "normalizer.json"))
            if self.normalizer.mean.ndim != 1 or self.normalizer.mean.shape != self.normalizer.std.shape:
                raise ValueError("mean and std must be equal-length lists")
        except (KeyError, TypeError, ValueError) as e:
            raise RfedgeError(f"bad normalizer ({e})", path=self.path / "normalizer.json") from None
        try:
            self.feature_cfg = FeatureConfig.from_dict(_read_json(self.path / "features.json", "features.json"))
        except (TypeError, ValueError) as e:
            raise RfedgeError(f"bad feature configuration ({e})", path=self.path / "features.json") from None
        self._ds = self._fold = None

    @property
    def name(self) -> str:
        return str(self.metrics.get("model", self.path.name))

    @property
    def tflite_path(self) -> Path:
        return self.path / TFLITE_NAME

    @property
    def seed(self) -> int:
        return int(self.metrics.get("seed", 0))

    def dataset(self):
        """(Dataset, fold dict) of the run."""
        if self._ds is None:
            from rfedge.data.dataset import Dataset
            from rfedge.train import select_fold

            data_dir = Path(self.metrics["data_dir"])
            if not data_dir.is_dir():
                raise RfedgeError(f"the run's dataset {str(data_dir)!r} is not available",
                                  path=self.path / "metrics.json", field="data_dir")
            self._ds = Dataset.open(data_dir)
            _, self._fold = select_fold(self._ds, self.metrics["split"],
                                        self.metrics.get("fold_index", self.metrics.get("fold", 0)))
        return self._ds, self._fold

    def train_ids(self) -> list[int]:
        """The training side of the run's fold, capped as the run was (``max_train``)."""
        from rfedge.train import cap_ids

        ds, fold = self.dataset()
        return cap_ids(fold["train"], ds.labels, self.metrics.get("max_train"), self.seed)

    def calibration_ids(self, n: int) -> list[int]:
        """At most ``n`` training-side trials, each class keeping its share (seeded)."""
        from rfedge.train import cap_ids

        ds, _ = self.dataset()
        return cap_ids(self.train_ids(), ds.labels, int(n), self.seed)

    def test_ids(self) -> list[int]:
        """The run's test trials: those of its predictions.npz (checked against the dataset's
        labels), else the fold's test side capped as the run was (``max_test``)."""
        from rfedge.train import PREDICTIONS_FILE, cap_ids, load_predictions

        ds, fold = self.dataset()
        if (self.path / PREDICTIONS_FILE).is_file():
            p = load_predictions(self.path)
            ids = np.asarray(p.get("test_ids", []), np.int64)
            n = len(ds.labels)
            if ids.ndim != 1 or not len(ids) or ids.min() < 0 or ids.max() >= n:
                raise RfedgeError(f"test_ids are not trial indices of the run's dataset ({n} trials)",
                                  path=self.path / PREDICTIONS_FILE)
            if "y_true" in p and not np.array_equal(np.asarray(p["y_true"]), ds.labels[ids]):
                raise RfedgeError("y_true does not match the labels of the run's dataset",
                                  path=self.path / PREDICTIONS_FILE)
            return [int(i) for i in ids]
        return cap_ids(fold["test"], ds.labels, self.metrics.get("max_test"), self.seed)

    def windows(self, ids, desc: str) -> np.ndarray:
        """Normalized model inputs [N, T, F, C] (float32) of trials ``ids``."""
        from rfedge.features import dataset_features
        from rfedge.models.student import to_model_input

        ds, _ = self.dataset()
        X = dataset_features(ds, ids, self.feature_cfg, desc=desc)
        if X.shape[1] != len(self.normalizer.mean):
            raise RfedgeError(f"normalizer has {len(self.normalizer.mean)} channels, the features {X.shape[1]}",
                              path=self.path / "normalizer.json")
        return to_model_input(self.normalizer(X))

    def keras_model(self):
        import warnings

        import keras

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return keras.models.load_model(self.model_path, compile=False)
        except Exception as e:  # zip, JSON or HDF5 errors of a damaged file
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise RfedgeError(f"cannot load the Keras model ({type(e).__name__}: {first})",
                              path=self.model_path) from None

    def tflite(self) -> bytes:
        p = self.tflite_path
        if not p.is_file():
            raise RfedgeError(f"no {TFLITE_NAME}: run `rfedge quantize {self.path}` first", path=self.path)
        b = p.read_bytes()
        if len(b) < 8 or b[4:8] != b"TFL3":
            raise RfedgeError("not a TFLite flatbuffer (no TFL3 identifier)", path=p)
        return b


def check_model_input(model, run: RunDir) -> None:
    """The Keras model must take the run's features, time first ([T, F, C], to_model_input)."""
    C, F, T = run.feature_cfg.shape
    if tuple(model.inputs[0].shape[1:]) != (T, F, C):
        raise RfedgeError(f"the model takes {list(model.inputs[0].shape[1:])}, the run's features give "
                          f"{[T, F, C]}", path=run.model_path)


def io_quantization(tflite_bytes: bytes) -> dict:
    """{"input": {...}, "output": {...}} with shape, scale and zero point of the model's I/O."""
    from rfedge_codegen.graph import load_graph

    g = load_graph(tflite_bytes)
    out = {}
    for kind, idx in (("input", g.inputs[0]), ("output", g.outputs[0])):
        t = g.t(idx)
        out[kind] = {"shape": list(t.shape), "dtype": t.dtype.lower(), "scale": float(t.s), "zero_point": t.zp}
    return out


def keras_outputs(model, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(X, batch_size=256, verbose=0), np.float32)


def tflm_outputs(tflite_bytes: bytes, Xq: np.ndarray, *, stream=None, desc: str = "int8 (TFLM)") -> np.ndarray:
    """Raw int8 outputs [N, outputs] of TFLite Micro's reference kernels for int8 inputs [N, ...]
    (the input is refilled before every invoke), with progress lines."""
    from rfedge_codegen import reference

    from rfedge.progress import Progress

    it = reference.interpreter(tflite_bytes)
    Xq = np.asarray(Xq, np.int8).reshape(len(Xq), -1)
    parts = []
    with Progress(len(Xq), desc, stream=stream) as p:
        for a in range(0, len(Xq), TFLM_CHUNK):
            parts.append(reference.run(tflite_bytes, Xq[a:a + TFLM_CHUNK], it=it))
            p.update(len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def quantize(run_dir, *, calibration: int = DEFAULT_CALIBRATION, stream=None) -> dict:
    """Quantize the run's model, score float and int8 on its test trials, write
    ``RUN/student_int8.tflite`` and ``RUN/quantize.json``; returns the quantize.json content."""
    from rfedge import __version__
    from rfedge.codegen import quantize_inputs
    from rfedge.fileio import atomic_write_bytes, atomic_write_json
    from rfedge.metrics import classification_report
    from rfedge.quant import non_int8_tensors, op_histogram, tflite_ops, to_int8_tflite
    from rfedge.train import configure_tf_threads

    stream = stream if stream is not None else sys.stderr
    calibration = int(calibration)
    if calibration < 1:
        raise RfedgeError(f"--calibration must be >= 1 (got {calibration})")
    run = RunDir(run_dir)
    ds, fold = run.dataset()
    cal_ids = run.calibration_ids(calibration)
    test_ids = run.test_ids()
    configure_tf_threads()
    model = run.keras_model()       # every input checked before any work or output
    check_model_input(model, run)
    say(stream, "quantize", f"{run.name} on {run.metrics['split']} / {fold['name']}: {len(cal_ids)} calibration "
                            f"windows from the training side, {len(test_ids)} test windows")
    X_cal = run.windows(cal_ids, "features (calibration)")
    X_test = run.windows(test_ids, "features (test)")
    say(stream, "quantize", "converting to full int8 (per-channel weights, int8 input and output)")
    tfl = to_int8_tflite(model, X_cal, max_calibration=len(X_cal))
    io = io_quantization(tfl)

    say(stream, "quantize", f"scoring {len(test_ids)} test windows: float (Keras) and int8 (TFLite Micro)")
    f_out = keras_outputs(model, X_test)
    q_raw = tflm_outputs(tfl, quantize_inputs(X_test, io["input"]["scale"], io["input"]["zero_point"]), stream=stream)
    q_out = dequantize(q_raw, io["output"]["scale"], io["output"]["zero_point"])
    y_true = ds.labels[test_ids]
    names = ds.label_names
    y_float, y_int8 = f_out.argmax(1), q_out.argmax(1)
    rep_f, rep_q = classification_report(y_true, y_float, names), classification_report(y_true, y_int8, names)
    ops = tflite_ops(tfl)
    result = {
        "model": run.name,
        "run": str(run.path.resolve()),
        "tflite": TFLITE_NAME,
        "tflite_bytes": len(tfl),
        "tflite_sha256": hashlib.sha256(tfl).hexdigest(),
        "float": {"accuracy": rep_f["accuracy"], "macro_f1": rep_f["macro_f1"], "runtime": "Keras"},
        "int8": {"accuracy": rep_q["accuracy"], "macro_f1": rep_q["macro_f1"],
                 "runtime": "TensorFlow Lite Micro reference kernels (PyPI tflite-micro)"},
        "top1_agreement": float((y_float == y_int8).mean()) if len(y_true) else 0.0,
        "n_test": len(test_ids),
        "split": run.metrics["split"],
        "fold": fold["name"],
        "quantizer": "TFLite flatbuffer quantizer (experimental_new_quantizer=False; deterministic)",
        "calibration": {"windows": len(cal_ids), "requested": calibration,
                        "source": f"training side of fold {fold['name']!r} (stratified, seed {run.seed})",
                        "trial_ids": cal_ids},
        **io,
        "ops": op_histogram(ops),
        "n_ops": len(ops),
        "non_int8_tensors": non_int8_tensors(tfl),
        "label_names": names,
        "predictions": {"test_ids": test_ids, "y_true": y_true.tolist(), "float": y_float.tolist(),
                        "int8": y_int8.tolist()},
        "rfedge": __version__,
    }
    # quantize.json out first and in last: it always describes the .tflite next to it
    (run.path / QUANTIZE_JSON).unlink(missing_ok=True)
    atomic_write_bytes(run.tflite_path, tfl)
    atomic_write_json(run.path / QUANTIZE_JSON, result)
    fl = result["float"]
    say(stream, "quantize", f"float accuracy {fl['accuracy']:.4f} (macro-F1 {fl['macro_f1']:.4f}), "
                            f"int8 {result['int8']['accuracy']:.4f} ({result['int8']['macro_f1']:.4f}); "
                            f"wrote {run.tflite_path} ({len(tfl):,} B) and {QUANTIZE_JSON}")
    return result
