"""Hand-made .tflite models of one op, for per-op tests against TFLite Micro (the way
tflite-micro's kernel tests build their graphs): any shapes, scales and zero points, including
the corner cases a trained model rarely produces.

    x = tensor([1, 8], scale=0.5, zero_point=-3)
    b = single_op("ADD", [x, tensor([1, 8], 0.25, 7)], [tensor([1, 8], 0.75, 0)], options=AddOptions())
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .graph import schema

_NP = {"INT8": np.int8, "INT32": np.int32, "UINT8": np.uint8, "INT16": np.int16, "FLOAT32": np.float32}


@dataclasses.dataclass
class T:
    shape: tuple
    scale: object = None          # float or list (per channel)
    zero_point: object = 0
    dtype: str = "INT8"
    data: np.ndarray | None = None   # constant contents
    qdim: int = 0
    name: str = ""


def tensor(shape, scale=None, zero_point=0, dtype="INT8", data=None, qdim=0, name="") -> T:
    return T(tuple(int(d) for d in shape), scale, zero_point, dtype, data, qdim, name)


def const(data, scale=None, zero_point=0, dtype=None, qdim=0) -> T:
    data = np.asarray(data)
    dtype = dtype or {np.dtype(np.int8): "INT8", np.dtype(np.int32): "INT32",
                      np.dtype(np.float32): "FLOAT32"}[data.dtype]
    return T(tuple(data.shape), scale, zero_point, dtype, data.astype(_NP[dtype]), qdim)


def options(kind: str, **fields):
    """An options object, e.g. options("FullyConnected", fusedActivationFunction=1)."""
    obj = getattr(schema(), kind + "OptionsT")()
    for k, v in fields.items():
        if not hasattr(obj, k):
            raise AttributeError(f"{kind}OptionsT has no field {k}")
        setattr(obj, k, v)
    return kind, obj


def single_op(opcode: str, inputs: list, outputs: list, opts=None, version: int = 1) -> bytes:
    """A one-op model; non-constant inputs become the model inputs (in order), all outputs its
    outputs.  ``inputs`` may hold None for an omitted optional input."""
    return build_model([(opcode, inputs, outputs, opts)], version=version)


def build_model(ops: list, outputs: list | None = None, version: int = 1) -> bytes:
    """A model of several ops [(opcode, inputs, outputs, options), ...] in execution order.
    Tensors are the T objects themselves (the same object = the same tensor).  Model inputs:
    the non-constant tensors no op produces; outputs: ``outputs`` or those no op reads."""
    import flatbuffers

    fb = schema()
    m = fb.ModelT()
    m.version = 3
    m.description = b"rfedge test model"
    m.operatorCodes = []
    m.buffers = [fb.BufferT()]
    tensors, index = [], {}
    codes: dict[str, int] = {}

    def add(t: T) -> int:
        if id(t) in index:
            return index[id(t)]
        tt = fb.TensorT()
        tt.shape = np.asarray(t.shape, np.int32)
        tt.type = getattr(fb.TensorType, t.dtype)
        tt.name = (t.name or f"t{len(tensors)}").encode()
        if t.scale is not None:
            q = fb.QuantizationParametersT()
            sc = np.atleast_1d(np.asarray(t.scale, np.float32))
            q.scale = sc
            q.zeroPoint = np.broadcast_to(np.atleast_1d(np.asarray(t.zero_point, np.int64)), sc.shape).copy()
            q.quantizedDimension = t.qdim
            tt.quantization = q
        if t.data is not None:
            b = fb.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(np.asarray(t.data, _NP[t.dtype])).tobytes(), np.uint8)
            tt.buffer = len(m.buffers)
            m.buffers.append(b)
        else:
            tt.buffer = 0
        tensors.append(tt)
        index[id(t)] = len(tensors) - 1
        return index[id(t)]

    produced, read, operators = set(), set(), []
    graph_inputs = []
    for opcode, ins, outs, opts in ops:
        if opcode not in codes:
            code = getattr(fb.BuiltinOperator, opcode)
            oc = fb.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = version
            codes[opcode] = len(m.operatorCodes)
            m.operatorCodes.append(oc)
        in_idx = []
        for t in ins:
            if t is None:
                in_idx.append(-1)
                continue
            new = id(t) not in index
            i = add(t)
            in_idx.append(i)
            read.add(i)
            if new and t.data is None and i not in produced:
                graph_inputs.append(i)
        out_idx = [add(t) for t in outs]
        produced.update(out_idx)
        op = fb.OperatorT()
        op.opcodeIndex = codes[opcode]
        op.inputs = np.asarray(in_idx, np.int32)
        op.outputs = np.asarray(out_idx, np.int32)
        if opts is not None:
            kind, obj = opts
            op.builtinOptionsType = getattr(fb.BuiltinOptions, kind + "Options")
            op.builtinOptions = obj
        operators.append(op)
    outs = [index[id(t)] for t in outputs] if outputs else [i for i in sorted(produced) if i not in read]
    sg = fb.SubGraphT()
    sg.tensors = tensors
    sg.inputs = np.asarray(graph_inputs, np.int32)
    sg.outputs = np.asarray(outs, np.int32)
    sg.operators = operators
    sg.name = b"main"
    m.subgraphs = [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
