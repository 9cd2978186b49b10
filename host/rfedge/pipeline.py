"""``rfedge pipeline``: the main job, end to end on its embedded default.

simulated dataset -> student (in-session fold) -> full-int8 TFLite -> generated C -> host board
(and ``qemu-rv32`` when QEMU and the rv32 toolchain are installed) -> validation on the board ->
quantization accuracy report. Every stage is the same function its own CLI verb calls; each
writes under OUT and a stage whose output is already complete there is reused, so an interrupted
pipeline resumes where it stopped.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rfedge.data.info import dataset_summary, format_summary
from rfedge.errors import RfedgeError
from rfedge.sim.csi import synth_csi_dataset

VIRTUAL_BOARDS = ("host", "qemu-rv32")
EMULATED_VECTORS = 200
EMULATED_E2E_TRIALS = 20
EMULATED_TEST_WINDOWS = 100


def _stage(stream, t0: float, msg: str) -> None:
    stream.write(f"pipeline [{time.monotonic() - t0:6.1f} s] {msg}\n")
    stream.flush()


def _dataset(out: Path, preset: str, seed, overrides, stream, t0) -> Path:
    data_dir = out / "data"
    manifest = data_dir / "manifest.json"
    if manifest.is_file():
        c = json.loads(manifest.read_text()).get("config", {})
        if c.get("name") == preset and (seed is None or c.get("seed") == seed):
            _stage(stream, t0, f"dataset: reusing {data_dir}")
            return data_dir
        raise RfedgeError(f"holds another dataset (preset {c.get('name')!r}, seed {c.get('seed')}); "
                          f"choose another --out or remove it", path=data_dir)
    _stage(stream, t0, f"dataset: simulating preset {preset!r}")
    return Path(synth_csi_dataset(data_dir, preset=preset, seed=seed, overrides=overrides))


def run_pipeline(out="runs/pipeline", preset: str = "esp32-digits", seed: int | None = None, *,
                 boards=None, vectors: int = 1000, quick: bool = False, overrides: dict | None = None,
                 stream=None) -> dict:
    """Run every stage; returns a summary with the paths of the report and validation results.

    ``boards``: virtual boards to validate on (default: host, plus qemu-rv32 when its tools are
    installed). ``quick``: a few training epochs and 100 vectors, for smoke tests. ``overrides``:
    preset fields to change (as ``rfedge synth csi --set``).
    """
    from rfedge.boards import load_board, unavailable
    from rfedge.codegen import codegen
    from rfedge.quantize import quantize
    from rfedge.report import build_report
    from rfedge.train import train
    from rfedge.validate import validate

    stream = stream or sys.stderr
    out = Path(out)
    t0 = time.monotonic()
    data_dir = _dataset(out, preset, seed, overrides, stream, t0)
    summary = {"data": str(data_dir)}
    print(format_summary(dataset_summary(data_dir)), file=stream)

    run = out / "student"
    if (run / "metrics.json").is_file():
        _stage(stream, t0, f"train: reusing {run}")
        metrics = json.loads((run / "metrics.json").read_text())
    else:
        _stage(stream, t0, "train: student (DS-CNN + GRU), in-session split")
        metrics = train(data_dir, run, model="student", split="in-session", quick=quick, stream=stream)
    summary["float_accuracy"] = metrics["accuracy"]

    if (run / "quantize.json").is_file() and (run / "student_int8.tflite").is_file():
        _stage(stream, t0, "quantize: reusing student_int8.tflite")
        q = json.loads((run / "quantize.json").read_text())
    else:
        _stage(stream, t0, "quantize: full int8")
        q = quantize(run, stream=stream)
    summary["quantize"] = {k: {m: q[k].get(m) for m in ("accuracy", "macro_f1")}
                           for k in ("float", "int8") if isinstance(q.get(k), dict)}

    _stage(stream, t0, "codegen: C99 without interpreter")
    cg = codegen(run, run / "c", stream=stream)
    summary["codegen"] = {k: cg.get(k) for k in ("arena_bytes", "weights_bytes") if k in cg}

    if boards is None:
        boards = [b for b in VIRTUAL_BOARDS if b == "host" or unavailable(load_board(b)) is None]
        for b in VIRTUAL_BOARDS:
            if b not in boards:
                _stage(stream, t0, f"validate: skipping {b}: {unavailable(load_board(b))[0]}")
    summary["validate"] = {}
    for b in boards:
        n, e2e, windows = (100 if quick else vectors), None, None
        if b != "host":
            # An emulated board runs ~2-5 inferences/s under -icount (and the soft-float DSP ~1 window/s):
            # a sample keeps the main job within its 15 minutes; `rfedge validate` runs the full count.
            n, e2e, windows = min(n, EMULATED_VECTORS), EMULATED_E2E_TRIALS, EMULATED_TEST_WINDOWS
        _stage(stream, t0, f"validate: board {b} ({n} vectors" +
               (f" incl. {windows} test windows, {e2e} end-to-end trials)" if e2e else ")"))
        summary["validate"][b] = validate(b, run, vectors=n, e2e_trials=e2e, test_windows=windows, stream=stream)

    _stage(stream, t0, "report: float vs int8 (TFLM) vs generated C vs device")
    rep = build_report(run, stream=stream)
    report_dir = run / "report"
    summary["report"] = str(report_dir / "report.md")
    summary["seconds"] = round(time.monotonic() - t0, 1)
    _stage(stream, t0, f"done. Report: {report_dir / 'report.md'} (HTML: {report_dir / 'report.html'})")
    summary["report_json"] = rep.get("columns") if isinstance(rep, dict) else None
    return summary
