"""The .tflite flatbuffer as a small graph IR: tensors (shape, type, quantization, constant data)
and operators in execution order with their options as plain dicts.

Only subgraph 0 is read (a model with control flow has more, and is refused by the lowering).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rfedge.errors import RfedgeError

# TensorType -> numpy dtype, for the types whose constant data we may need to read.
_NP_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
             "FLOAT32": np.float32, "FLOAT16": np.float16, "BOOL": np.bool_}


def schema():
    """The generated flatbuffer schema module (LiteRT's; TensorFlow ships the same one)."""
    from rfedge.quant import _schema

    return _schema()


@dataclasses.dataclass
class Tensor:
    index: int
    name: str
    dtype: str                       # "INT8", "INT32", ...
    shape: tuple[int, ...]
    scale: np.ndarray                # float32 [n] (empty when not quantized)
    zero_point: np.ndarray           # int64 [n]
    quantized_dimension: int
    buffer: int
    data: np.ndarray | None = None   # constant contents, shaped; None for activations

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    @property
    def s(self) -> float:
        """The per-tensor scale (first scale)."""
        if len(self.scale) == 0:
            raise RfedgeError(f"tensor {self.index} '{self.name}' has no quantization parameters")
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        return int(self.zero_point[0]) if len(self.zero_point) else 0

    def describe(self) -> str:
        return f"tensor {self.index} '{self.name}' ({self.dtype}{list(self.shape)})"


@dataclasses.dataclass
class Op:
    index: int
    opcode: str                      # "FULLY_CONNECTED", ...
    version: int
    inputs: list[int]                # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    options: dict

    def describe(self) -> str:
        return f"op {self.index} {self.opcode}"


@dataclasses.dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    description: str = ""

    def t(self, i: int) -> Tensor:
        return self.tensors[i]

    def consumers(self) -> dict[int, list[int]]:
        """tensor index -> indices of the ops that read it."""
        out: dict[int, list[int]] = {}
        for op in self.ops:
            for i in op.inputs:
                if i >= 0:
                    out.setdefault(i, []).append(op.index)
        return out


def _names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _options(obj) -> dict:
    if obj is None:
        return {}
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(obj).items()}


def load_graph(tflite_bytes: bytes, *, source: str = "model") -> Graph:
    """Parse a .tflite flatbuffer into a Graph; ``source`` names it in error messages."""
    fb = schema()
    buf = bytearray(tflite_bytes)
    if len(buf) < 8 or bytes(buf[4:8]) != b"TFL3":
        raise RfedgeError("not a TFLite flatbuffer (no 'TFL3' identifier)", path=source)
    try:
        model = fb.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # a corrupt flatbuffer raises whatever the reader hits first
        raise RfedgeError(f"corrupt TFLite flatbuffer: {type(e).__name__}: {e}", path=source) from e
    if not model.subgraphs:
        raise RfedgeError("the model has no subgraph", path=source)
    if len(model.subgraphs) > 1:
        raise RfedgeError(f"the model has {len(model.subgraphs)} subgraphs (control flow: WHILE/IF/CALL_ONCE); "
                          "only single-subgraph models are supported", path=source)
    type_names = _names(fb.TensorType)
    op_names = _names(fb.BuiltinOperator)
    sg = model.subgraphs[0]

    tensors = []
    for i, t in enumerate(sg.tensors or []):
        dtype = type_names.get(t.type, f"TYPE_{t.type}")
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        qdim = int(q.quantizedDimension) if q is not None else 0
        data = None
        b = model.buffers[t.buffer] if 0 <= t.buffer < len(model.buffers or []) else None
        raw = None
        if b is not None:
            if b.data is not None and len(b.data):
                raw = np.asarray(b.data, np.uint8).tobytes()
            elif b.offset and b.offset > 1:
                raw = bytes(buf[b.offset:b.offset + b.size])
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name or "")
        if raw is not None:
            if dtype not in _NP_TYPES:
                raise RfedgeError(f"constant tensor {i} '{name}' has unsupported type {dtype}", path=source)
            data = np.frombuffer(raw, _NP_TYPES[dtype]).copy()
            if data.size != (int(np.prod(shape)) if shape else 1):
                raise RfedgeError(f"constant tensor {i} '{name}' holds {data.size} values for shape {list(shape)}",
                                  path=source)
            data = data.reshape(shape)
        tensors.append(Tensor(i, name, dtype, shape, scale, zp, qdim, int(t.buffer), data))

    ops = []
    for j, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        if code == fb.BuiltinOperator.CUSTOM:
            cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
            name = f"CUSTOM:{cc}"
        else:
            name = op_names.get(code, f"BUILTIN_{code}")
        ops.append(Op(j, name, int(oc.version), [int(x) for x in (op.inputs if op.inputs is not None else [])],
                      [int(x) for x in (op.outputs if op.outputs is not None else [])], _options(op.builtinOptions)))
    desc = model.description.decode() if isinstance(model.description, bytes) else str(model.description or "")
    return Graph(tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs], desc)
