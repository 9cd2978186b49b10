"""generate(): .tflite bytes -> a directory of C, written atomically file by file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError

from . import emit_c, emit_tflm, reference
from .graph import load_graph
from .lower import lower, op_counts
from .planner import plan

FORMATS = ("c", "tflm")


def analyze(tflite_bytes: bytes, *, source: str = "model.tflite", fuse: bool = True):
    """(graph, program, plan) of a model, without writing anything."""
    g = load_graph(tflite_bytes, source=source)
    prog = lower(g, fuse)
    return g, prog, plan(prog)


def _write_atomically(files: dict[str, str | bytes], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".codegen.", dir=out_dir))
    try:
        for name, text in files.items():
            p = stage / name
            if isinstance(text, bytes):
                p.write_bytes(text)
            else:
                p.write_text(text)
        for name in files:
            os.replace(stage / name, out_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def generate(tflite_bytes: bytes, out_dir, *, fmt: str = "c", name: str = "model", source: str = "model.tflite",
             title: str | None = None, normalization: dict | None = None, golden_input=None,
             golden_note: str | None = None, fuse: bool = True) -> dict:
    """Write the model as C into ``out_dir`` and return a report (also written as ``<name>.json``).

    ``fmt="c"``: standalone C99 (``<name>.h/.c``, ``<name>_selftest.c`` and the kernels it calls).
    ``fmt="tflm"``: the flatbuffer as a C array plus the op resolver list, for TFLite Micro users.
    ``normalization``: {"mean": [C], "std": [C], "note": str} for the input's last axis.
    ``golden_input``: one int8 input for the boot self-test (default: fixed pseudo-random values);
    its expected output is computed by TFLite Micro now.
    ``fuse``: fold PADs into convolutions and run depthwise-separable blocks row by row (less RAM).
    """
    if fmt not in FORMATS:
        raise RfedgeError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not name.isidentifier():
        raise RfedgeError(f"model name {name!r} is not a C identifier")
    out_dir = Path(out_dir)
    title = title or f"int8 model {source}"
    g = load_graph(tflite_bytes, source=source)
    if fmt == "tflm":
        files, report = emit_tflm.render(g, tflite_bytes, name=name, source=source,
                                         arena_bytes=reference.arena_bytes(tflite_bytes))
        files[f"{name}.json"] = json.dumps(report, indent=2) + "\n"
        _write_atomically(files, out_dir)
        return report

    prog = lower(g, fuse)
    pl = plan(prog)
    x, y = g.t(g.inputs[0]), g.t(g.outputs[0])
    in_size = sum(g.t(i).size for i in g.inputs)
    out_size = sum(g.t(i).size for i in g.outputs)
    if golden_input is None:
        golden_input = np.random.default_rng(0).integers(-128, 128, in_size).astype(np.int8)
        golden_note = golden_note or "fixed pseudo-random int8 values (seed 0)"
    golden_input = np.asarray(golden_input, np.int8).reshape(-1)
    if golden_input.size != in_size:
        raise RfedgeError(f"golden input has {golden_input.size} values, the model input {in_size}")
    golden_output = reference.run(tflite_bytes, golden_input[None])[0]
    texts = emit_c.render(prog, pl, name=name, source=source, title=title, normalization=normalization,
                          golden_input=golden_input, golden_output=golden_output,
                          golden_note=golden_note or "given by the caller")
    kernels = [f for f in emit_c.KERNEL_HEADERS] + emit_c.kernel_files(prog)
    ksrc = emit_c.kernel_dir()
    files: dict[str, str | bytes] = dict(texts)
    for f in kernels:
        files[f] = (ksrc / f).read_text()
    report = {
        "format": "c",
        "name": name,
        "source": source,
        "files": sorted(files) + [f"{name}.json"],
        "sources": sorted(f for f in files if f.endswith(".c")),
        "ops": len(g.ops),
        "op_counts": op_counts(g),
        "kernel_calls": len(prog.calls),
        "views": len(prog.views),
        "in_place": len(pl.inplace),
        "folded_constants": len(prog.folded),
        "macs": int(sum(c.macs for c in prog.calls)),
        "arena_bytes": pl.arena_bytes,
        "arena_bytes_without_reuse": pl.naive_bytes,
        "scratch_bytes": pl.scratch_bytes,
        "input_bytes": in_size,
        "output_bytes": out_size,
        "const_bytes": prog.consts.nbytes,
        "const_bytes_before_sharing": prog.consts.requested_bytes,
        "const_arrays": len(prog.consts.arrays),
        "kernels": sorted(prog.kernels()),
        "input": {"shape": list(x.shape), "scale": float(x.s), "zero_point": x.zp},
        "output": {"shape": list(y.shape), "scale": float(y.s), "zero_point": y.zp},
        "inputs": len(g.inputs),
        "outputs": len(g.outputs),
        "golden_output": golden_output.astype(int).tolist(),
    }
    files[f"{name}.json"] = json.dumps(report, indent=2) + "\n"
    _write_atomically(files, out_dir)
    return report
