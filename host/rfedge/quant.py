"""The quantize stage: full-int8 post-training quantization of a Keras model to TFLite.

Full int8 means int8 input and output tensors and int8 weights (per-channel for convs) with int32
biases, calibrated on representative windows: what TFLM and our own C code run on the MCU.
A GRU survives this only unrolled at batch 1 (design.md §3), so the model is first rebuilt that
way (``student.inference_model``) whatever batch it was trained with.

Determinism. TensorFlow's default (MLIR) quantizer is not deterministic across processes on the
unrolled GRU: converting the same model with the same windows gave three different flatbuffers in
nine fresh processes, about half of them with a float island (DEQUANTIZE -> float SPLIT ->
QUANTIZE) at the first GRU step. Calibration is not the cause (every scale and zero point came out
identical); the MLIR quantizer's handling of a same-scale op with an unused output is: at step 0 the
state is zero, so the reset gate's slice of the input projection's SPLIT feeds nothing, and the
quantizer then sometimes wraps the SPLIT in float (tensorflow/tensorflow#61323 shows the same
wrapping for an UNPACK with unused outputs) and emits the two QUANTIZEs in either order. Within
one process repeated conversions agree; fixing PYTHONHASHSEED or disabling address-space
randomization (``setarch -R``) does not make fresh processes agree. TFLite's flatbuffer
quantizer (``experimental_new_quantizer = False``; "flatbuffer" here, the default) gave the same
bytes in nine of nine processes and never a float tensor, with the same accuracy and float-vs-int8
agreement as the MLIR quantizer's island-free result on both trained students, so it is used.
``to_int8_tflite`` also refuses a result that holds any non-int8/int32 tensor unless asked
(``allow_float=True``), naming the tensors.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings

import numpy as np

from rfedge.errors import RfedgeError

# Ops that mean the graph kept a dynamic loop or shape: they break int8 calibration or TFLM.
DYNAMIC_OPS = frozenset({"WHILE", "FILL"})


def _fixed_batch(model, batch_size: int):
    from rfedge.models.student import inference_model

    rnn = any(type(layer).__name__ in ("GRU", "LSTM", "SimpleRNN") and not layer.unroll for layer in model.layers)
    if model.inputs[0].shape[0] == batch_size and not rnn:
        return model
    return inference_model(model, batch_size=batch_size)


# "flatbuffer": TFLite's calibrate-and-quantize on the flatbuffer (deterministic, see the module
# docstring); "mlir": TensorFlow's default MLIR quantizer (not deterministic on the unrolled GRU).
QUANTIZERS = ("flatbuffer", "mlir")
# Tensor types a full-int8 model may hold: int8 activations and weights, int32 biases and shapes.
INT8_TENSOR_TYPES = frozenset({"INT8", "INT32"})


def to_int8_tflite(keras_model, representative_X: np.ndarray, batch_size: int = 1, *,
                   max_calibration: int = 300, quantizer: str = "flatbuffer", allow_float: bool = False) -> bytes:
    """Full-int8 TFLite flatbuffer of ``keras_model``, calibrated on ``representative_X``.

    ``representative_X`` is in the model's input layout (e.g. ``to_model_input(normalizer(X))``);
    at most ``max_calibration`` windows are used, spread evenly over it, in their given order.
    The same model and windows give the same bytes (``quantizer="flatbuffer"``, the default).
    Raises RfedgeError when the result holds a tensor other than int8/int32 (a float island),
    unless ``allow_float``.
    """
    import tensorflow as tf

    if quantizer not in QUANTIZERS:
        raise RfedgeError(f"unknown quantizer {quantizer!r}; choose one of {', '.join(QUANTIZERS)}")
    X = np.asarray(representative_X, dtype=np.float32)
    if len(X) == 0:
        raise RfedgeError("int8 quantization needs at least one representative window")
    model = _fixed_batch(keras_model, batch_size)
    want = tuple(model.inputs[0].shape[1:])
    if X.shape[1:] != want:
        raise RfedgeError(f"representative windows are {list(X.shape[1:])}, the model takes {list(want)}")
    idx = np.unique(np.linspace(0, len(X) - 1, min(len(X), max_calibration)).round().astype(int))

    def representative():
        for i in range(0, len(idx) - batch_size + 1, batch_size):
            yield [X[idx[i:i + batch_size]]]

    # from_keras_model goes through a SavedModel, which freezes the Keras 3 variables into
    # constants; a hand-made concrete function keeps them as resource variables (READ_VARIABLE)
    # and calibration then fails.
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    conv.experimental_new_quantizer = quantizer == "mlir"
    with _captured_output() as log:
        try:
            with warnings.catch_warnings():
                # Emitted for every int8-input model; the representative data supplies the statistics.
                warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
                out = bytes(conv.convert())
        except Exception as e:  # the converter raises assorted internal types; one line is enough
            msg = str(e).strip().splitlines()
            err = RfedgeError(f"int8 conversion failed: {msg[-1] if msg else type(e).__name__}")
            err.converter_log = log  # the full chatter, for whoever debugs it
            raise err from e
    floats = non_int8_tensors(out)
    if floats and not allow_float:
        shown = ", ".join(f"{t['name']} ({t['type']}, from {t['producer']})" for t in floats[:4])
        more = f" and {len(floats) - 4} more" if len(floats) > 4 else ""
        raise RfedgeError(f"int8 conversion ({quantizer} quantizer) left {len(floats)} non-int8 tensor(s): "
                          f"{shown}{more}")
    return out


def non_int8_tensors(tflite_bytes: bytes) -> list[dict]:
    """Tensors of any type other than int8/int32 (a float island, a float input or output), each
    as {"index", "name", "type", "producer"} with the producing op's name ("input" for graph inputs
    and constants)."""
    fb = _schema()
    model = fb.Model.GetRootAsModel(bytearray(tflite_bytes), 0)
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    ops = tflite_ops(tflite_bytes)
    out = []
    k = 0
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        producer = {}
        for j in range(sg.OperatorsLength()):
            for t in sg.Operators(j).OutputsAsNumpy():
                producer[int(t)] = f"op {j} {ops[k + j]}"
        k += sg.OperatorsLength()
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            name = types.get(t.Type(), f"TYPE_{t.Type()}")
            if name not in INT8_TENSOR_TYPES:
                out.append({"index": i, "name": t.Name().decode("utf-8", "replace"), "type": name,
                            "producer": producer.get(i, "input")})
    return out


@contextlib.contextmanager
def _captured_output():
    """Silence stdout/stderr at the file-descriptor level (the converter prints from C++ and from
    the SavedModel export it runs internally); yields a list that receives the text afterwards."""
    text: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()) as py_out:
                yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            text.append(py_out.getvalue() + tmp.read().decode("utf-8", "replace"))


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as fb
    except ImportError:  # pragma: no cover - tensorflow ships the same generated module
        from tensorflow.lite.python import schema_py_generated as fb
    return fb


def tflite_ops(tflite_bytes: bytes) -> list[str]:
    """Builtin op names of every operator in every subgraph, in execution order (e.g. "CONV_2D").

    Read straight from the flatbuffer, so no interpreter (and no op resolver) is involved.
    """
    fb = _schema()
    model = fb.Model.GetRootAsModel(bytearray(tflite_bytes), 0)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # Codes above 127 live only in BuiltinCode; the deprecated int8 field saturates at 127.
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == fb.BuiltinOperator.CUSTOM:
            codes.append("CUSTOM:" + (oc.CustomCode() or b"").decode())
        else:
            codes.append(names.get(code, f"BUILTIN_{code}"))
    ops = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        ops += [codes[sg.Operators(j).OpcodeIndex()] for j in range(sg.OperatorsLength())]
    return ops


def op_histogram(ops: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for op in ops:
        out[op] = out.get(op, 0) + 1
    return dict(sorted(out.items()))


def run_tflite(tflite_bytes: bytes, X: np.ndarray) -> np.ndarray:
    """Outputs of a batch-1 int8/float TFLite model for each window of X (float, model layout),
    dequantized to float; inputs are quantized with the model's own scale and zero point.

    Uses ai_edge_litert with the reference kernels: the MCU's arithmetic (design.md §3).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=tflite_bytes, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for x in np.asarray(X, dtype=np.float32):
        x = x[None]
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / s) + z, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"])[0]
        if out["dtype"] != np.float32:
            s, z = out["quantization"]
            y = (y.astype(np.float32) - z) * s
        res.append(y)
    return np.stack(res)
