"""TensorFlow Lite Micro (PyPI ``tflite-micro``) as the reference: the device truth the generated
code must match byte for byte, and the arena size it needs."""

from __future__ import annotations

import re

import numpy as np

from rfedge.errors import RfedgeError


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RfedgeError("the TFLite Micro reference is not installed (pip install tflite-micro)") from e
    return runtime


def interpreter(tflite_bytes: bytes):
    try:
        return _runtime().Interpreter.from_bytes(bytes(tflite_bytes))
    except Exception as e:  # the binding raises RuntimeError/ValueError with TFLM's own message
        raise RfedgeError(f"TFLite Micro cannot load the model: {str(e).strip().splitlines()[-1] if str(e) else e}") from e


def _io_shapes(tflite_bytes: bytes, kind: str) -> list[tuple[int, ...]]:
    """Shapes of the model's inputs or outputs, read from the flatbuffer (asking TFLM for an
    index past the last one makes it log an error)."""
    from .graph import schema

    sg = schema().Model.GetRootAsModel(bytearray(tflite_bytes), 0).Subgraphs(0)
    idx = sg.InputsAsNumpy() if kind == "input" else sg.OutputsAsNumpy()
    return [tuple(int(d) for d in sg.Tensors(int(i)).ShapeAsNumpy()) if sg.Tensors(int(i)).ShapeLength() else ()
            for i in idx]


def run(tflite_bytes: bytes, X: np.ndarray, it=None) -> np.ndarray:
    """Outputs of TFLM for each int8 input vector.  X is [N, total input size] (several inputs are
    packed one after the other, as rfe_model_invoke takes them); so is the result."""
    it = it or interpreter(tflite_bytes)
    in_shapes, out_shapes = _io_shapes(tflite_bytes, "input"), _io_shapes(tflite_bytes, "output")
    sizes = [int(np.prod(s)) for s in in_shapes]
    X = np.asarray(X, np.int8).reshape(len(X), -1)
    if X.shape[1] != sum(sizes):
        raise RfedgeError(f"input vectors have {X.shape[1]} values, the model takes {sum(sizes)}")
    starts = np.cumsum([0] + sizes)
    outs = []
    for x in X:
        for k, shape in enumerate(in_shapes):   # TFLM reuses its input buffers: refill every time
            it.set_input(np.ascontiguousarray(x[starts[k]:starts[k + 1]].reshape(shape)), k)
        it.invoke()
        outs.append(np.concatenate([np.asarray(it.get_output(k)).reshape(-1) for k in range(len(out_shapes))]))
    return np.stack(outs) if outs else np.zeros((0, sum(int(np.prod(s)) for s in out_shapes)), np.int8)


def arena_bytes(tflite_bytes: bytes) -> int:
    """Bytes of TFLM's tensor arena the model used (RecordingMicroAllocator's total), this host."""
    from rfedge.quant import _captured_output

    it = interpreter(tflite_bytes)
    for k, shape in enumerate(_io_shapes(tflite_bytes, "input")):
        it.set_input(np.zeros(shape, np.int8), k)
    it.invoke()
    with _captured_output() as log:
        it.print_allocations()
    m = re.search(r"Arena allocation total (\d+) bytes", "".join(log))
    if not m:
        raise RfedgeError("TFLite Micro did not report its arena allocation")
    return int(m.group(1))
