"""The codegen stage: a trained run's int8 model as standalone C (rfedge_codegen), and the
benchmark that checks it against TensorFlow Lite Micro.

``codegen(RUN, OUT)`` reads ``RUN/student_int8.tflite``, or quantizes the run's Keras model with
representative windows from its training split (rfedge.quant), and writes ``OUT/model.{h,c}``,
the self-test and the kernels.  The input normalization of the run (normalizer.json) and a
golden window from its test split go into the C.  RUN may also be a .tflite file.

``bench_codegen(RUN)`` compiles that C on the host and feeds it >= 1000 int8 inputs (test-split
windows, random vectors, extreme values and structured variants of real windows) next to TFLM,
then measures memory, flash and instructions per inference (design.md §6 budgets).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError

TFLITE_NAME = "student_int8.tflite"
# TFLM's runtime + reference kernels on rv32imc, measured on the QEMU board (design.md §3:
# "its runtime + kernels took 64-107 KB of flash"); the lower end makes our flash goal strictest.
TFLM_RUNTIME_BYTES = 64_000
TFLM_RUNTIME_SOURCE = ("design.md §3: TFLM runtime + reference kernels took 64-107 KB of flash built for rv32imc "
                       "on the QEMU board; the lower bound (64,000 B) is used")
GOALS = {"ram_ratio_max": 0.35, "flash_ratio_max": 0.65}


def _progress(stream, msg: str) -> None:
    if stream is not None:
        stream.write(f"codegen: {msg}\n")
        stream.flush()


class RunModel:
    """What a run directory (or a bare .tflite) gives the code generator."""

    def __init__(self, path, stream=None):
        self.path = Path(path)
        self.stream = stream
        self.metrics: dict = {}
        self.normalizer = None
        self.feature_cfg = None
        self._test_X = None
        self.test_ids: list[int] | None = None    # trial ids of test_inputs(), in their order
        if not self.path.exists():
            raise RfedgeError("no such run directory or .tflite file", path=self.path)
        if self.path.is_file():
            if self.path.suffix != ".tflite":
                raise RfedgeError("expected a run directory or a .tflite file", path=self.path)
            return
        mpath = self.path / "metrics.json"
        if not mpath.is_file():
            raise RfedgeError("not a complete run directory (no metrics.json); train it first", path=self.path)
        self.metrics = json.loads(mpath.read_text())
        if (self.path / "normalizer.json").is_file():
            from rfedge.dsp import Normalizer

            self.normalizer = Normalizer.from_dict(json.loads((self.path / "normalizer.json").read_text()))
        if (self.path / "features.json").is_file():
            from rfedge.features import FeatureConfig

            self.feature_cfg = FeatureConfig.from_dict(json.loads((self.path / "features.json").read_text()))

    @property
    def name(self) -> str:
        return self.metrics.get("model", self.path.stem)

    def _dataset_fold(self):
        from rfedge.data.dataset import Dataset
        from rfedge.train import select_fold

        data_dir = self.metrics.get("data_dir")
        if not data_dir or not Path(data_dir).is_dir():
            raise RfedgeError(f"the run's dataset {data_dir!r} is not available", path=self.path / "metrics.json")
        ds = Dataset.open(data_dir)
        _, fold = select_fold(ds, self.metrics.get("split", "in-session"), self.metrics.get("fold_index", 0))
        return ds, fold

    def model_input(self, which: str) -> np.ndarray:
        """Normalized model inputs [N, T, F, C] of the run's ``train`` or ``test`` trials."""
        from rfedge.features import dataset_features
        from rfedge.models.student import to_model_input

        ds, fold = self._dataset_fold()
        ids = sorted(int(i) for i in fold[which])
        if which == "test":
            self.test_ids = ids
        _progress(self.stream, f"features of {len(ids)} {which} trials")
        X = dataset_features(ds, ids, self.feature_cfg, desc=f"features ({which})")
        return to_model_input(self.normalizer(X))

    def tflite(self) -> bytes:
        if self.path.is_file():
            return self.path.read_bytes()
        p = self.path / TFLITE_NAME
        if p.is_file():
            return p.read_bytes()
        kpath = self.path / "model.keras"
        if not kpath.is_file():
            raise RfedgeError(f"the run has neither {TFLITE_NAME} nor a Keras model (model.keras) to quantize",
                              path=self.path)
        import keras

        from rfedge.quant import to_int8_tflite

        _progress(self.stream, f"no {TFLITE_NAME}: quantizing model.keras with training-split windows")
        model = keras.models.load_model(kpath, compile=False)
        return to_int8_tflite(model, self.model_input("train"))

    def test_inputs(self) -> np.ndarray | None:
        """Test-split model inputs, or None for a bare .tflite / a run without its dataset."""
        if self._test_X is None and self.metrics and self.normalizer is not None and self.feature_cfg is not None:
            try:
                self._test_X = self.model_input("test")
            except RfedgeError as e:
                _progress(self.stream, f"test windows unavailable ({e}); using synthetic vectors only")
                self._test_X = np.zeros((0,), np.float32)
        if self._test_X is None or self._test_X.size == 0:
            return None
        return self._test_X


def quantize_inputs(X: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float model inputs -> int8 as the Python reference does (round half to even, saturate)."""
    q = np.round(np.asarray(X, np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, -128, 127).astype(np.int8).reshape(len(X), -1)


def codegen(run_dir, out_dir, fmt: str = "c", *, name: str = "model", stream=None) -> dict:
    """Generate C for the run's int8 model into ``out_dir``; returns the generator's report."""
    from rfedge_codegen import generate
    from rfedge_codegen.graph import load_graph

    run = RunModel(run_dir, stream)
    tfl = run.tflite()
    source = run.path.name if run.path.is_file() else f"{run.path.name}/{TFLITE_NAME}"
    if fmt != "c":
        report = generate(tfl, out_dir, fmt=fmt, name=name, source=source)
        _progress(stream, f"wrote {', '.join(report['files'])} to {out_dir}")
        return report
    g = load_graph(tfl, source=source)
    x = g.t(g.inputs[0])
    normalization = None
    if run.normalizer is not None:
        normalization = {"mean": run.normalizer.mean.tolist(), "std": run.normalizer.std.tolist(),
                         "note": "Features come as [C][F][T]; the model input is [T][F][C] "
                                 "(x_model[t][f][c] = features[c][f][t]), so c is the last axis."}
    golden, note = None, None
    Xt = run.test_inputs()
    if Xt is not None:
        golden = quantize_inputs(Xt[:1], x.s, x.zp)[0]
        note = f"the first test-split window of run {run.path.name}"
    title = f"{run.name} int8 model" + (f" ({run.metrics.get('split')} / {run.metrics.get('fold')})" if run.metrics else "")
    report = generate(tfl, out_dir, fmt="c", name=name, source=source, title=title, normalization=normalization,
                      golden_input=golden, golden_note=note)
    Path(out_dir, f"{name}.tflite").write_bytes(tfl)
    _progress(stream, f"{report['ops']} ops -> {report['kernel_calls']} kernel calls; arena {report['arena_bytes']:,} B, "
                      f"constants {report['const_bytes']:,} B; wrote {len(report['files'])} files to {out_dir}")
    return report


def test_vectors(x_size: int, scale: float, zero_point: int, n: int, test_X: np.ndarray | None, seed: int = 0):
    """(int8 vectors [n, x_size], {source: count}): test-split windows, extreme patterns,
    structured variants of real windows (gains, offsets, noise, time shifts), uniform random."""
    rng = np.random.default_rng(seed)
    parts, counts = [], {}

    def add(kind, arr):
        arr = np.asarray(arr, np.int8).reshape(-1, x_size)
        parts.append(arr)
        counts[kind] = counts.get(kind, 0) + len(arr)

    real = None
    if test_X is not None and len(test_X):
        real = quantize_inputs(test_X, scale, zero_point)
        add("test_split", real)
    ext = [np.full(x_size, -128), np.full(x_size, 127), np.full(x_size, zero_point), np.zeros(x_size),
           np.where(np.arange(x_size) % 2, 127, -128), np.where(np.arange(x_size) % 2, -128, 127)]
    for k in range(0, x_size, max(1, x_size // 10)):   # single spikes on a floor
        for lo, hi in ((-128, 127), (127, -128)):
            v = np.full(x_size, lo)
            v[k] = hi
            ext.append(v)
    ext += [rng.choice([-128, 127], x_size) for _ in range(20)]
    add("extreme", np.stack(ext))
    if real is not None:
        n_struct = max(0, (n - sum(counts.values())) // 2)
        base = real.astype(np.float32)
        idx = rng.integers(0, len(base), n_struct)
        gain = rng.uniform(0.25, 3.0, (n_struct, 1))
        off = rng.normal(0, 20, (n_struct, 1))
        noise = rng.normal(0, 1, (n_struct, x_size)) * rng.uniform(0, 30, (n_struct, 1))
        shifted = np.stack([np.roll(base[i], int(s)) for i, s in zip(idx, rng.integers(-x_size // 4, x_size // 4, n_struct))])
        add("structured", np.clip(np.round(shifted * gain + off + noise), -128, 127))
    rest = max(0, n - sum(counts.values()))
    add("random", rng.integers(-128, 128, (rest, x_size)))
    return np.concatenate(parts), counts


_TFLM_CALLGRIND_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read())
    shape = tuple(it.get_input_details(0)["shape"])
    X = np.fromfile(sys.argv[2], np.int8).reshape(-1, *shape)
    for x in X:
        it.set_input(x, 0)
        it.invoke()
""")


def _tflm_version() -> str:
    try:
        from importlib.metadata import version

        return version("tflite-micro")
    except Exception:  # pragma: no cover
        return "unknown"


def bench_codegen(run_dir, *, n_vectors: int = 1000, instructions: bool = True, instruction_runs: int = 3,
                  stream=None) -> dict:
    """Bit-exactness against TFLM on >= n_vectors inputs, RAM, flash and instructions per inference
    (``instructions=False`` skips the callgrind runs, the slow part)."""
    from rfedge_codegen import build, reference
    from rfedge_codegen.graph import load_graph

    if build.host_cc() is None:
        raise RfedgeError("no C compiler found (set CC or install cc): the benchmark compiles the generated C")
    run = RunModel(run_dir, stream)
    result: dict = {"model": run.name, "run": str(run.path)}
    with tempfile.TemporaryDirectory(prefix="rfe_bench_") as tmp:
        gen = Path(tmp) / "gen"
        rep = codegen(run.path, gen, stream=stream)
        tfl = (gen / "model.tflite").read_bytes()
        g = load_graph(tfl)
        x = g.t(g.inputs[0])
        exe = build.compile_host(gen)
        ok, msg = build.selftest_host(exe)
        X, counts = test_vectors(x.size, x.s, x.zp, n_vectors, run.test_inputs())
        _progress(stream, f"{len(X)} vectors through the generated C and TFLM")
        ours = build.run_host(exe, X, rep["output_bytes"])
        ref = reference.run(tfl, X)
        bad = (ours != ref).any(axis=1)
        arena_tflm = reference.arena_bytes(tfl)
        size = build.object_size(gen)
        flash_limit = GOALS["flash_ratio_max"] * (len(tfl) + TFLM_RUNTIME_BYTES)
        ram = rep["arena_bytes"]   # the planner places kernel scratch inside the arena
        result.update({
            "vectors": int(len(X)),
            "mismatches": int(bad.sum()),
            "ram_bytes": int(ram),
            "tflm_arena_bytes": int(arena_tflm),
            "flash_bytes": int(size["flash_bytes"]),
            "tflite_bytes": len(tfl),
            "host_instructions": None,
            "tflm_host_instructions": None,
            "vector_sources": counts,
            "mismatched_bytes": int((ours != ref).sum()),
            "selftest": msg,
            "scratch_bytes": int(rep["scratch_bytes"]),
            "io_bytes": int(rep["input_bytes"] + rep["output_bytes"]),
            "ram_ratio": round(ram / arena_tflm, 4),
            "ram_with_io_ratio": round((ram + rep["input_bytes"] + rep["output_bytes"]) / arena_tflm, 4),
            "tflm_arena_note": "TFLM's RecordingMicroAllocator total on this x86-64 host (includes its input and output "
                               "tensors); ram_bytes excludes ours, which are the caller's buffers (see ram_with_io_ratio)",
            "flash_target": size["target"],
            "flash_detail": {k: size[k] for k in ("text", "data", "bss")},
            "const_bytes": rep["const_bytes"],
            "const_bytes_before_sharing": rep["const_bytes_before_sharing"],
            "tflm_runtime_bytes": TFLM_RUNTIME_BYTES,
            "tflm_runtime_source": TFLM_RUNTIME_SOURCE,
            "flash_limit_bytes": int(flash_limit),
            "flash_ratio": round(size["flash_bytes"] / (len(tfl) + TFLM_RUNTIME_BYTES), 4),
            "ops": rep["ops"],
            "kernel_calls": rep["kernel_calls"],
            "macs": rep["macs"],
        })
        if not ok:
            result["selftest_failed"] = True
        # instructions per inference under callgrind
        if not instructions:
            result["host_instructions_reason"] = result["tflm_host_instructions_reason"] = "not measured (--no-instructions)"
        elif shutil.which("valgrind") is None:
            result["host_instructions_reason"] = result["tflm_host_instructions_reason"] = "valgrind not installed"
        else:
            Xi = X[:instruction_runs]
            _progress(stream, f"callgrind: {len(Xi)} inferences of the generated C")
            result["host_instructions"] = build.callgrind_instructions([exe], Xi.tobytes(), "rfe_model_invoke", len(Xi))
            _progress(stream, f"callgrind: {len(Xi)} inferences of TFLM (PyPI tflite-micro {_tflm_version()})")
            script, model, vecs = Path(tmp) / "tflm_run.py", Path(tmp) / "m.tflite", Path(tmp) / "x.bin"
            script.write_text(_TFLM_CALLGRIND_SCRIPT)
            model.write_bytes(tfl)
            Xi.tofile(vecs)
            try:
                result["tflm_host_instructions"] = build.callgrind_instructions(
                    [sys.executable, script, model, vecs], b"", "tflite::micro::MicroInterpreter::Invoke()", len(Xi))
                result["tflm_host_build"] = (f"PyPI tflite-micro {_tflm_version()} (_runtime.so, reference kernels, x86-64), "
                                             "instructions inside MicroInterpreter::Invoke()")
            except RfedgeError as e:
                result["tflm_host_instructions_reason"] = f"callgrind of the TFLM Python runtime failed: {e}"
            result["host_build"] = "cc " + " ".join(build.C_FLAGS) + ", instructions inside rfe_model_invoke"
    hi, ti = result["host_instructions"], result["tflm_host_instructions"]
    result["goals"] = {
        "bit_exact": result["mismatches"] == 0,
        "ram_le_0.35_tflm_arena": result["ram_ratio"] <= GOALS["ram_ratio_max"],
        "flash_le_0.65_tflite_plus_runtime": result["flash_ratio"] <= GOALS["flash_ratio_max"],
        "fewer_instructions_than_tflm": (hi < ti) if hi is not None and ti is not None else None,
    }
    return result
