"""Lowering: each TFLite op becomes one kernel call of mcu/core with its constants computed the
way TFLite Micro's Prepare() computes them, or, for pure data movement, a view into its input
(no code, no memory) or a strided copy.

The result is a Program: a list of Calls (C statements with placeholders for tensor pointers),
the views, and the constant pool.  The memory planner then places the activation tensors and
the C emitter fills the placeholders.  Anything not supported raises one RfedgeError naming the
op, its index and the tensor at fault.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rfedge.errors import RfedgeError

from . import qmath
from .consts import ConstPool
from .graph import Graph, Op, Tensor

ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
PADDING = {0: "SAME", 1: "VALID"}

# Ops the lowering knows; anything else is refused by name.
COMPUTE_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SUB", "MUL", "LOGISTIC", "TANH",
               "SOFTMAX", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "QUANTIZE", "DEQUANTIZE")
MOVE_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SPLIT", "SPLIT_V", "UNPACK", "PACK", "STRIDED_SLICE", "SLICE",
            "CONCATENATION", "TRANSPOSE", "PAD", "PADV2")
SUPPORTED_OPS = COMPUTE_OPS + MOVE_OPS
# Kernel source files of mcu/core each C function lives in.
KERNEL_FILES = {
    "rfe_fully_connected_s8": "rfe_fully_connected_s8.c", "rfe_conv_s8": "rfe_conv_s8.c",
    "rfe_depthwise_conv_s8": "rfe_conv_s8.c", "rfe_add_s8": "rfe_add_s8.c", "rfe_sub_s8": "rfe_add_s8.c",
    "rfe_mul_s8": "rfe_mul_s8.c", "rfe_lut_s8": "rfe_activation_s8.c", "rfe_softmax_s8": "rfe_softmax_s8.c",
    "rfe_max_pool_s8": "rfe_pool_s8.c", "rfe_avg_pool_s8": "rfe_pool_s8.c", "rfe_mean_s8": "rfe_mean_s8.c",
    "rfe_copy_s8": "rfe_copy_s8.c", "rfe_fill_s8": "rfe_copy_s8.c", "rfe_dw_pw_s8": "rfe_dw_pw_s8.c",
}
KERNEL_DEPENDS = {"rfe_softmax_s8.c": ["rfe_fixedpoint.c"], "rfe_activation_s8.c": ["rfe_fixedpoint.c"],
                  "rfe_add_s8.c": ["rfe_broadcast_s8.c"], "rfe_mul_s8.c": ["rfe_broadcast_s8.c"],
                  "rfe_dw_pw_s8.c": ["rfe_conv_s8.c", "rfe_fully_connected_s8.c", "rfe_pool_s8.c"]}


@dataclasses.dataclass
class Call:
    op: Op
    kernel: str                    # main C function
    stmts: list[str]               # C statements; {i0} {o0} ... are tensor pointers
    inputs: list[int]              # activation tensors read ({i<k>} = inputs[k])
    outputs: list[int]             # tensors written ({o<k>} = outputs[k])
    params: list[tuple[str, str, dict]] = dataclasses.field(default_factory=list)   # (name, ctype, fields)
    inplace_ok: list[int] = dataclasses.field(default_factory=list)   # input positions the output may overwrite
    macs: int = 0
    scratch: int = 0               # bytes of scratch ({s0}), alive during this call only
    fused: list[Op] = dataclasses.field(default_factory=list)         # further ops this call computes


@dataclasses.dataclass
class View:
    """Output tensor `tensor` is bytes [offset, offset + size) of tensor `base`: no code."""
    op: Op
    tensor: int
    base: int
    offset: int


@dataclasses.dataclass
class Program:
    graph: Graph
    calls: list[Call]
    views: list[View]
    consts: ConstPool
    folded: list[int]              # tensors made constant at generation time

    def kernels(self) -> set[str]:
        out = set()
        for c in self.calls:
            for s in c.stmts:
                for k in KERNEL_FILES:
                    if k + "(" in s:
                        out.add(k)
        return out


def _err(op: Op, msg: str, t: Tensor | None = None) -> RfedgeError:
    where = f"{op.describe()}" + (f", {t.describe()}" if t is not None else "")
    return RfedgeError(f"{where}: {msg}")


def _fused(op: Op) -> str:
    act = ACTIVATIONS.get(int(op.options.get("fusedActivationFunction", 0) or 0), "UNKNOWN")
    if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise _err(op, f"unsupported fused activation {act}")
    return act


def _contiguous_strides(shape) -> list[int]:
    st, acc = [], 1
    for d in reversed(list(shape)):
        st.append(acc)
        acc *= int(d)
    return list(reversed(st))


def conv_padding(padding: str, in_size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """(out_size, pad_before) as TFLite computes them (ComputePaddingHeightWidth)."""
    eff = (k - 1) * dilation + 1
    out = (in_size + stride - 1) // stride if padding == "SAME" else (in_size + stride - eff) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2


class Lowering:
    def __init__(self, graph: Graph, fuse: bool = True):
        self.g = graph
        self.fuse = fuse
        self._pad_fused: dict[int, dict] = {}     # conv op -> unpadded source (a PAD folded into it)
        self._dw_fused: dict[int, tuple] = {}     # depthwise op -> (pointwise op, pool op or None)
        self._skip: set[int] = set()              # ops computed by another call
        self._identity: set[int] = set()          # DEQUANTIZE/QUANTIZE of a float round trip: plain copies
        self.consts = ConstPool()
        self.calls: list[Call] = []
        self.views: list[View] = []
        self.folded: list[int] = []
        self.graph_outputs = set(graph.outputs)

    # ---- helpers -------------------------------------------------------------------------------
    def t(self, i: int) -> Tensor:
        return self.g.tensors[i]

    def _act_tensor(self, op: Op, i: int, dtypes=("INT8",)) -> Tensor:
        t = self.t(i)
        if t.dtype not in dtypes:
            raise _err(op, f"unsupported type {t.dtype} (expected {'/'.join(dtypes)})", t)
        if t.dtype == "INT8" and len(t.scale) == 0:
            raise _err(op, "int8 tensor without quantization parameters", t)
        return t

    def _const(self, op: Op, i: int, what: str) -> Tensor:
        if i < 0:
            raise _err(op, f"missing {what}")
        t = self.t(i)
        if not t.is_const:
            raise _err(op, f"{what} must be a constant (computed shapes/weights are not supported)", t)
        return t

    def _weights(self, t: Tensor) -> str:
        # asked for at every use: the pool stores identical contents once and counts the saving
        return self.consts.add(t.data, "int8_t", f"weights {t.describe()}")

    def _wsum(self, t: Tensor, rows: np.ndarray) -> str:
        return self.consts.add(rows, "int32_t", f"row sums of {t.describe()}")

    def _bias(self, op: Op, i: int, n: int):
        if i < 0:
            return "NULL"
        b = self._const(op, i, "bias")
        if b.dtype != "INT32":
            raise _err(op, f"unsupported bias type {b.dtype} (expected INT32)", b)
        if b.size != n:
            raise _err(op, f"bias has {b.size} values for {n} output channels", b)
        return self.consts.add(b.data, "int32_t", f"bias {b.describe()}")

    def _requant(self, op: Op, x: Tensor, w: Tensor, y: Tensor, n_out: int):
        """Per-channel (or per-tensor) multipliers: double(s_in) * double(s_w) / double(s_out)."""
        if len(w.scale) not in (1, n_out):
            raise _err(op, f"weights carry {len(w.scale)} scales for {n_out} output channels", w)
        if np.any(w.zero_point != 0):
            raise _err(op, "weights must be symmetric (zero point 0)", w)
        mults, shifts = [], []
        for s in w.scale:
            m, sh = qmath.quantize_multiplier(float(x.s) * float(s) / float(y.s))
            mults.append(m)
            shifts.append(sh)
        if min(shifts) < -31 or max(shifts) > 30:
            raise _err(op, f"requantization shift out of range ({min(shifts)}..{max(shifts)})", y)
        per_channel = len(w.scale) > 1
        return (per_channel, self.consts.add(mults, "int32_t", f"multipliers of {op.describe()}"),
                self.consts.add(shifts, "int8_t", f"shifts of {op.describe()}"))

    def _add_call(self, call: Call):
        self.calls.append(call)

    # ---- compute ops ---------------------------------------------------------------------------
    def lower_fully_connected(self, op: Op):
        x = self._act_tensor(op, op.inputs[0])
        w = self._const(op, op.inputs[1], "weights")
        y = self._act_tensor(op, op.outputs[0])
        if w.dtype != "INT8":
            raise _err(op, f"unsupported weight type {w.dtype} (expected INT8)", w)
        if int(op.options.get("weightsFormat", 0) or 0) != 0:
            raise _err(op, "only the default weights format is supported", w)
        if len(w.shape) != 2:
            raise _err(op, f"weights must be 2-D, got {list(w.shape)}", w)
        n_out, n_in = w.shape
        if x.size % n_in:
            raise _err(op, f"input size {x.size} is not a multiple of {n_in}", x)
        bias = self._bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, n_out)
        # TFLM: per-tensor FC goes through GetQuantizedConvolutionMultipler, per-channel through the
        # per-channel loop; both are double products (tests/test_kernels.py pins the per-tensor case).
        per_channel, mult, shift = self._requant(op, x, w, y, n_out)
        fields = self._fc_fields(x, y, w, n_in, n_out, x.size // n_in, per_channel, bias, mult, shift, _fused(op))
        self._fc_call(op, x, y, fields)

    def _fc_fields(self, x, y, w, n_in, n_out, batches, per_channel, bias, mult, shift, act) -> dict:
        act_min, act_max = qmath.activation_range(act, y.s, y.zp)
        wdata = w.data.reshape(n_out, n_in).astype(np.int32)
        return dict(batches=batches, n_in=n_in, n_out=n_out, input_offset=-x.zp, output_offset=y.zp,
                    act_min=act_min, act_max=act_max, per_channel=int(per_channel),
                    weights=self._weights(w), bias=bias,
                    wsum=self._wsum(w, wdata.sum(axis=1)) if x.zp != 0 else "NULL", mult=mult, shift=shift)

    def _fc_call(self, op, x, y, fields):
        self._add_call(Call(op, "rfe_fully_connected_s8", ["rfe_fully_connected_s8(&{p0}, {i0}, {o0});"],
                            [x.index], [y.index], [(f"op{op.index}", "rfe_fc_params_t", fields)],
                            macs=fields["batches"] * fields["n_in"] * fields["n_out"]))

    def _conv_fields(self, op: Op, depthwise: bool):
        """("fc", fields, x) for a pointwise convolution, else ("conv", fields, x).  A PAD fused
        into this convolution (see _find_pad_fusions) replaces its input by the unpadded tensor."""
        src = self._pad_fused.get(op.index)
        x = self._act_tensor(op, op.inputs[0])
        w = self._const(op, op.inputs[1], "weights")
        y = self._act_tensor(op, op.outputs[0])
        if w.dtype != "INT8":
            raise _err(op, f"unsupported weight type {w.dtype} (expected INT8)", w)
        if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
            raise _err(op, "expected 4-D input, weights and output", x)
        nb, ih, iw, ic = x.shape
        _, oh, ow, oc = y.shape
        o = op.options
        sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
        dh, dw = int(o.get("dilationHFactor", 1) or 1), int(o.get("dilationWFactor", 1) or 1)
        padding = PADDING.get(int(o.get("padding", 0)), "?")
        if depthwise:
            _, kh, kw, wc = w.shape
            if wc != oc or oc % ic:
                raise _err(op, f"depthwise weights {list(w.shape)} do not match input {ic} / output {oc} channels", w)
        else:
            wo, kh, kw, wc = w.shape
            if wo != oc:
                raise _err(op, f"weights have {wo} output channels, the output {oc}", w)
            if wc != ic:
                raise _err(op, f"grouped convolution ({ic} input channels, weights {wc}) is not supported", w)
        out_h, pad_h = conv_padding(padding, ih, kh, sh, dh)
        out_w, pad_w = conv_padding(padding, iw, kw, sw, dw)
        if (out_h, out_w) != (oh, ow):
            raise _err(op, f"output {oh}x{ow} does not match {padding} padding ({out_h}x{out_w})", y)
        bias = self._bias(op, op.inputs[2] if len(op.inputs) > 2 else -1, oc)
        per_channel, mult, shift = self._requant(op, x, w, y, oc)
        act = _fused(op)
        if src is not None:   # read the unpadded tensor; the pad rows/columns become skipped taps
            x = self.t(src["tensor"])
            _, ih, iw, _ = src["dims"]
            pad_h += src["pad_h"]
            pad_w += src["pad_w"]
        elif not depthwise and kh == 1 and kw == 1 and sh == 1 and sw == 1 and pad_h == 0 and pad_w == 0:
            # a pointwise convolution is one fully connected layer per pixel
            w2 = dataclasses.replace(w, data=w.data.reshape(oc, ic))
            return "fc", self._fc_fields(x, y, w2, ic, oc, nb * ih * iw, per_channel, bias, mult, shift, act), x
        act_min, act_max = qmath.activation_range(act, y.s, y.zp)
        inside = (pad_h == 0 and pad_w == 0 and (oh - 1) * sh + (kh - 1) * dh < ih
                  and (ow - 1) * sw + (kw - 1) * dw < iw)
        wsum = "NULL"
        if not depthwise and inside and x.zp != 0:
            wsum = self._wsum(w, w.data.reshape(oc, -1).astype(np.int32).sum(axis=1))
        fields = dict(batches=nb, in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw,
                      stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_h=pad_h, pad_w=pad_w,
                      depth_multiplier=oc // ic if depthwise else 1, input_offset=-x.zp, output_offset=y.zp,
                      act_min=act_min, act_max=act_max, per_channel=int(per_channel), weights=self._weights(w),
                      bias=bias, wsum=wsum, mult=mult, shift=shift)
        return "conv", fields, x

    def lower_conv_2d(self, op: Op, depthwise: bool = False):
        kind, fields, x = self._conv_fields(op, depthwise)
        y = self.t(op.outputs[0])
        if kind == "fc":
            self._fc_call(op, x, y, fields)
            return
        fn = "rfe_depthwise_conv_s8" if depthwise else "rfe_conv_s8"
        f = fields
        macs = f["batches"] * f["out_h"] * f["out_w"] * f["out_c"] * f["k_h"] * f["k_w"] * (1 if depthwise else f["in_c"])
        self._add_call(Call(op, fn, [fn + "(&{p0}, {i0}, {o0});"], [x.index], [y.index],
                            [(f"op{op.index}", "rfe_conv_params_t", fields)], macs=macs))

    def lower_depthwise_conv_2d(self, op: Op):
        fused = self._dw_fused.get(op.index)
        if fused is None:
            self.lower_conv_2d(op, depthwise=True)
            return
        # DEPTHWISE_CONV_2D -> pointwise CONV_2D [-> MAX_POOL_2D along W], one output row at a time:
        # the full-size intermediate tensors never exist, only one row of each (scratch).
        pw_op, pool_op = fused
        kind, dwf, x = self._conv_fields(op, True)
        if kind != "conv":
            raise _err(op, "internal: depthwise fusion expected a depthwise kernel")
        kind, pwf, _ = self._conv_fields(pw_op, False)
        if kind != "fc":
            raise _err(pw_op, "internal: depthwise fusion expected a pointwise convolution")
        pwf = dict(pwf, batches=dwf["out_w"])
        scratch = dwf["out_w"] * dwf["out_c"]
        params = [(f"op{op.index}_dw", "rfe_conv_params_t", dwf), (f"op{pw_op.index}_pw", "rfe_fc_params_t", pwf)]
        pool_ref, last = "NULL", pw_op
        if pool_op is not None:
            poolf = self._pool_fields(pool_op)
            poolf = dict(poolf, batches=1, in_h=1, out_h=1)
            params.append((f"op{pool_op.index}_pool", "rfe_pool_params_t", poolf))
            pool_ref, last = "&{p2}", pool_op
            scratch += pwf["batches"] * pwf["n_out"]
        params.append((f"op{op.index}_fused", "rfe_dw_pw_params_t", dict(dw="&{p0}", pw="&{p1}", pool=pool_ref)))
        y = self.t(last.outputs[0])
        macs = (dwf["batches"] * dwf["out_h"] * dwf["out_w"] * dwf["out_c"] * dwf["k_h"] * dwf["k_w"]
                + dwf["batches"] * dwf["out_h"] * pwf["batches"] * pwf["n_in"] * pwf["n_out"])
        k = len(params) - 1
        self._add_call(Call(op, "rfe_dw_pw_s8", [f"rfe_dw_pw_s8(&{{p{k}}}, {{i0}}, {{o0}}, {{s0}});"], [x.index],
                            [y.index], params, macs=macs, scratch=scratch,
                            fused=[pw_op] + ([pool_op] if pool_op is not None else [])))

    def _broadcast(self, op: Op, a: Tensor, b: Tensor, y: Tensor):
        """(n, bcast fields or None, inplace-able input positions)."""
        if a.shape == b.shape:
            return y.size, None, [0, 1]
        try:
            out_shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise _err(op, f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast", b) from None
        if tuple(out_shape) != tuple(y.shape) and int(np.prod(out_shape)) != y.size:
            raise _err(op, f"output shape {list(y.shape)} is not the broadcast shape {list(out_shape)}", y)
        rank = len(out_shape)

        def strides(t):
            shp = (1,) * (rank - len(t.shape)) + tuple(t.shape)
            st = _contiguous_strides(shp)
            return [0 if shp[d] == 1 and out_shape[d] != 1 else st[d] for d in range(rank)]

        merged = _merge_dims([[int(out_shape[d]), sa, sb] for d, (sa, sb) in enumerate(zip(strides(a), strides(b)))])
        if len(merged) > 4:
            raise _err(op, f"broadcast of {list(a.shape)} with {list(b.shape)} needs more than 4 dimensions", b)
        merged = [[1, 0, 0]] * (4 - len(merged)) + merged
        fields = dict(dims=[m[0] for m in merged], a_stride=[m[1] for m in merged], b_stride=[m[2] for m in merged])
        inplace = [k for k, t in enumerate((a, b)) if t.shape == tuple(y.shape)]
        return y.size, fields, inplace

    def _binary(self, op: Op):
        a = self._act_tensor(op, op.inputs[0])
        b = self._act_tensor(op, op.inputs[1])
        y = self._act_tensor(op, op.outputs[0])
        n, bc, inplace = self._broadcast(op, a, b, y)
        return a, b, y, n, bc, inplace

    def _binary_call(self, op, fn, ctype, fields, a, b, y, n, bc, inplace):
        params = [(f"op{op.index}", ctype, fields)]
        bcarg = "NULL"
        if bc is not None:
            params.append((f"op{op.index}_bc", "rfe_bcast_t", bc))
            bcarg = "&{p1}"
        stmt = f"{fn}(&{{p0}}, {{i0}}, {{i1}}, {{o0}}, {n}, {bcarg});"
        self._add_call(Call(op, fn, [stmt], [a.index, b.index], [y.index], params, inplace_ok=inplace))

    def lower_add(self, op: Op, subtract: bool = False):
        a, b, y, n, bc, inplace = self._binary(op)
        left_shift = 20
        if subtract:   # TFLM's sub_common.cc does these in float
            twice = np.float32(2) * np.float32(max(a.s, b.s))
            r1 = float(np.float32(a.s) / twice)
            r2 = float(np.float32(b.s) / twice)
            ro = float(twice / (np.float32(1 << left_shift) * np.float32(y.s)))
        else:          # add_common.cc: double
            twice = 2 * float(max(np.float32(a.s), np.float32(b.s)))
            r1 = float(a.s) / twice
            r2 = float(b.s) / twice
            ro = twice / ((1 << left_shift) * float(y.s))
        try:
            (m1, s1), (m2, s2), (mo, so) = (qmath.quantize_multiplier_lt1(r) for r in (r1, r2, ro))
        except ValueError as e:
            raise _err(op, f"scales out of range for int8 {op.opcode}: {e}", y) from None
        act_min, act_max = qmath.activation_range(_fused(op), y.s, y.zp)
        fields = dict(in1_offset=-a.zp, in2_offset=-b.zp, output_offset=y.zp, left_shift=left_shift,
                      in1_mult=m1, in1_shift=s1, in2_mult=m2, in2_shift=s2, out_mult=mo, out_shift=so,
                      act_min=act_min, act_max=act_max)
        fn = "rfe_sub_s8" if subtract else "rfe_add_s8"
        self._binary_call(op, fn, "rfe_add_params_t", fields, a, b, y, n, bc, inplace)

    def lower_sub(self, op: Op):
        self.lower_add(op, subtract=True)

    def lower_mul(self, op: Op):
        a, b, y, n, bc, inplace = self._binary(op)
        mo, so = qmath.quantize_multiplier(float(a.s) * float(b.s) / float(y.s))
        act_min, act_max = qmath.activation_range(_fused(op), y.s, y.zp)
        fields = dict(in1_offset=-a.zp, in2_offset=-b.zp, output_offset=y.zp, out_mult=mo, out_shift=so,
                      act_min=act_min, act_max=act_max)
        self._binary_call(op, "rfe_mul_s8", "rfe_mul_params_t", fields, a, b, y, n, bc, inplace)

    def _lut_call(self, op: Op, fn_py):
        x = self._act_tensor(op, op.inputs[0])
        y = self._act_tensor(op, op.outputs[0])
        try:
            p = qmath.act_params(x.s, x.zp)
        except ValueError as e:
            raise _err(op, f"input scale out of range: {e}", x) from None
        lut = self.consts.add(qmath.lut_s8(fn_py, p), "int8_t", f"{op.opcode} table of {op.describe()}")
        self._add_call(Call(op, "rfe_lut_s8", [f"rfe_lut_s8({lut}, {{i0}}, {{o0}}, {y.size});"], [x.index],
                            [y.index], inplace_ok=[0]))

    def lower_logistic(self, op: Op):
        y = self._act_tensor(op, op.outputs[0])
        if y.zp != -128:
            raise _err(op, f"int8 LOGISTIC needs output zero point -128 (TFLM), got {y.zp}", y)
        self._lut_call(op, qmath.logistic_s8)

    def lower_tanh(self, op: Op):
        self._lut_call(op, qmath.tanh_s8)

    def lower_softmax(self, op: Op):
        x = self._act_tensor(op, op.inputs[0])
        y = self._act_tensor(op, op.outputs[0])
        if y.zp != -128 or np.float32(y.s) != np.float32(1.0 / 256):
            raise _err(op, f"int8 SOFTMAX needs output scale 1/256 and zero point -128, got {y.s}, {y.zp}", y)
        if not x.shape:
            raise _err(op, "softmax of a scalar", x)
        depth = int(x.shape[-1])
        try:
            p = qmath.softmax_params(float(op.options.get("beta", 1.0)), x.s)
        except ValueError as e:
            raise _err(op, f"input scale out of range: {e}", x) from None
        self._add_call(Call(op, "rfe_softmax_s8", [f"rfe_softmax_s8(&{{p0}}, {{i0}}, {{o0}}, {x.size // depth}, {depth});"],
                            [x.index], [y.index], [(f"op{op.index}", "rfe_softmax_params_t", p)], inplace_ok=[0]))

    def lower_quantize(self, op: Op):
        if op.index in self._identity:
            self.lower_move(op)
            return
        x, y = self.t(op.inputs[0]), self.t(op.outputs[0])
        if x.dtype != "INT8" or y.dtype != "INT8":
            raise _err(op, f"QUANTIZE from {x.dtype} to {y.dtype} is not supported (only int8 -> int8, or a "
                           "DEQUANTIZE ... QUANTIZE round trip that restores the same quantization)", x)
        # int8 -> int8 requantization (TFLM's Requantize): a function of 256 values, so a table
        mult, shift = qmath.quantize_multiplier(float(x.s) / float(y.s))
        lut = np.array([max(-128, min(127, qmath.mbqm(v - x.zp, mult, shift) + y.zp)) for v in range(-128, 128)],
                       np.int8)
        name = self.consts.add(lut, "int8_t", f"requantization table of {op.describe()}")
        self._add_call(Call(op, "rfe_lut_s8", [f"rfe_lut_s8({name}, {{i0}}, {{o0}}, {y.size});"], [x.index],
                            [y.index], inplace_ok=[0]))

    def lower_dequantize(self, op: Op):
        if op.index in self._identity:
            self.lower_move(op)
            return
        raise _err(op, "DEQUANTIZE to float is not supported (only full-int8 models; a DEQUANTIZE whose float "
                       "values only move and are QUANTIZEd back to the same scale is)", self.t(op.outputs[0]))

    def _pool_fields(self, op: Op) -> dict:
        x = self._act_tensor(op, op.inputs[0])
        y = self._act_tensor(op, op.outputs[0])
        if len(x.shape) != 4:
            raise _err(op, "expected a 4-D input", x)
        o = op.options
        nb, ih, iw, c = x.shape
        padding = PADDING.get(int(o.get("padding", 0)), "?")
        kh, kw, sh, sw = (int(o.get(k, 1)) for k in ("filterHeight", "filterWidth", "strideH", "strideW"))
        out_h, pad_h = conv_padding(padding, ih, kh, sh, 1)
        out_w, pad_w = conv_padding(padding, iw, kw, sw, 1)
        if (nb, out_h, out_w, c) != tuple(y.shape):
            raise _err(op, f"output {list(y.shape)} does not match the pooling geometry", y)
        act_min, act_max = qmath.activation_range(_fused(op), y.s, y.zp)
        return dict(batches=nb, in_h=ih, in_w=iw, channels=c, out_h=out_h, out_w=out_w, k_h=kh, k_w=kw,
                    stride_h=sh, stride_w=sw, pad_h=pad_h, pad_w=pad_w, act_min=act_min, act_max=act_max)

    def _pool(self, op: Op, fn: str):
        fields = self._pool_fields(op)
        self._add_call(Call(op, fn, [fn + "(&{p0}, {i0}, {o0});"], [op.inputs[0]], [op.outputs[0]],
                            [(f"op{op.index}", "rfe_pool_params_t", fields)]))

    def lower_max_pool_2d(self, op: Op):
        self._pool(op, "rfe_max_pool_s8")

    def lower_average_pool_2d(self, op: Op):
        self._pool(op, "rfe_avg_pool_s8")

    def lower_mean(self, op: Op):
        x = self._act_tensor(op, op.inputs[0])
        y = self._act_tensor(op, op.outputs[0])
        axis_t = self._const(op, op.inputs[1], "axis")
        rank = len(x.shape)
        axes = sorted({int(a) % rank for a in np.asarray(axis_t.data).reshape(-1)})
        axes = [a for a in axes if x.shape[a] != 1] or axes[:1]
        if not axes or axes != list(range(axes[0], axes[-1] + 1)):
            raise _err(op, f"MEAN over non-adjacent axes {axes} of {list(x.shape)} is not supported", x)
        outer = int(np.prod(x.shape[:axes[0]], dtype=np.int64))
        reduced = int(np.prod(x.shape[axes[0]:axes[-1] + 1], dtype=np.int64))
        inner = int(np.prod(x.shape[axes[-1] + 1:], dtype=np.int64))
        mult, shift = qmath.quantize_multiplier(float(x.s) / float(y.s))
        # QuantizedMeanOrSum folds 1/count into the multiplier
        n_shift = min(reduced.bit_length() - 1, 32, 31 + shift)
        mult = (mult << n_shift) // reduced
        shift -= n_shift
        fields = dict(outer=outer, reduced=reduced, inner=inner, input_zero_point=x.zp, output_zero_point=y.zp,
                      mult=mult, shift=shift)
        self._add_call(Call(op, "rfe_mean_s8", ["rfe_mean_s8(&{p0}, {i0}, {o0});"], [x.index], [y.index],
                            [(f"op{op.index}", "rfe_mean_params_t", fields)]))

    # ---- data movement -------------------------------------------------------------------------
    def _move_maps(self, op: Op) -> tuple[list[int], list[np.ndarray], int | None]:
        """(data inputs, one array of global source ids per output (-1 = fill), fill value).

        Source ids number the elements of the data inputs one after the other."""
        o = op.options
        code = op.opcode

        def ids(k, data_inputs):
            start = sum(self.t(i).size for i in data_inputs[:k])
            return np.arange(self.t(data_inputs[k]).size, dtype=np.int64).reshape(self.t(data_inputs[k]).shape) + start

        def const_ints(i, what):
            return np.asarray(self._const(op, i, what).data).astype(np.int64).reshape(-1)

        outs = [self.t(i) for i in op.outputs]
        if code in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS") or op.index in self._identity:
            data = [op.inputs[0]]
            return data, [ids(0, data).reshape(outs[0].shape)], None
        if code == "SPLIT":
            data = [op.inputs[1]]
            axis = int(const_ints(op.inputs[0], "axis")[0])
            return data, [p.reshape(t.shape) for p, t in zip(np.split(ids(0, data), len(outs), axis=axis), outs)], None
        if code == "SPLIT_V":
            data = [op.inputs[0]]
            axis = int(const_ints(op.inputs[2], "axis")[0])
            sizes = const_ints(op.inputs[1], "size_splits")
            x = ids(0, data)
            if np.any(sizes < 0):
                sizes = np.where(sizes < 0, x.shape[axis] - sizes[sizes >= 0].sum(), sizes)
            return data, [p.reshape(t.shape) for p, t in zip(np.split(x, np.cumsum(sizes)[:-1], axis=axis), outs)], None
        if code == "UNPACK":
            data = [op.inputs[0]]
            axis = int(o.get("axis", 0))
            x = ids(0, data)
            return data, [np.take(x, k, axis=axis).reshape(t.shape) for k, t in enumerate(outs)], None
        if code == "PACK":
            data = list(op.inputs)
            return data, [np.stack([ids(k, data) for k in range(len(data))], axis=int(o.get("axis", 0))).reshape(
                outs[0].shape)], None
        if code == "CONCATENATION":
            data = list(op.inputs)
            if _fused(op) != "NONE":
                raise _err(op, "CONCATENATION with a fused activation is not supported")
            return data, [np.concatenate([ids(k, data) for k in range(len(data))], axis=int(o.get("axis", 0)))
                          .reshape(outs[0].shape)], None
        if code == "TRANSPOSE":
            data = [op.inputs[0]]
            perm = const_ints(op.inputs[1], "perm")
            return data, [np.transpose(ids(0, data), perm).reshape(outs[0].shape)], None
        if code == "SLICE":
            data = [op.inputs[0]]
            begin, size = const_ints(op.inputs[1], "begin"), const_ints(op.inputs[2], "size")
            x = ids(0, data)
            sl = tuple(slice(int(b), x.shape[d] if s < 0 else int(b + s)) for d, (b, s) in enumerate(zip(begin, size)))
            return data, [x[sl].reshape(outs[0].shape)], None
        if code == "STRIDED_SLICE":
            data = [op.inputs[0]]
            x = ids(0, data)
            begin = const_ints(op.inputs[1], "begin")
            end = const_ints(op.inputs[2], "end")
            strides = const_ints(op.inputs[3], "strides") if len(op.inputs) > 3 else np.ones_like(begin)
            if int(o.get("ellipsisMask", 0) or 0) or int(o.get("newAxisMask", 0) or 0):
                raise _err(op, "STRIDED_SLICE with ellipsis or new-axis masks is not supported")
            bm, em, sm = (int(o.get(k, 0) or 0) for k in ("beginMask", "endMask", "shrinkAxisMask"))
            offset = bool(o.get("offset", False))
            sl = []
            for d in range(len(begin)):
                b, e, s = int(begin[d]), int(end[d]), int(strides[d])
                if offset:
                    e = b + e
                if sm >> d & 1:
                    sl.append(b)
                    continue
                sl.append(slice(None if bm >> d & 1 else b, None if em >> d & 1 else e, s))
            return data, [np.asarray(x[tuple(sl)]).reshape(outs[0].shape)], None
        if code in ("PAD", "PADV2"):
            data = [op.inputs[0]]
            pads = const_ints(op.inputs[1], "paddings").reshape(-1, 2)
            y = outs[0]
            fill = y.zp if y.dtype == "INT8" else 0
            if code == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
                fill = int(np.asarray(self._const(op, op.inputs[2], "constant value").data).reshape(-1)[0])
            return data, [np.pad(ids(0, data), [tuple(p) for p in pads], constant_values=-1).reshape(y.shape)], fill
        raise _err(op, "not a data-movement op")

    def lower_move(self, op: Op):
        data, maps, fill = self._move_maps(op)
        byte_types = ("INT8", "UINT8", "BOOL")
        for i in list(data) + list(op.outputs):
            t = self.t(i)
            if t.dtype not in byte_types:
                raise _err(op, f"unsupported type {t.dtype} (data movement handles 1-byte types)", t)
        for i, m in zip(op.outputs, maps):
            if m.size != self.t(i).size:
                raise _err(op, f"{m.size} elements computed for a tensor of {self.t(i).size}", self.t(i))
        # all inputs constant: fold at generation time
        if all(self.t(i).is_const for i in data):
            flat = np.concatenate([self.t(i).data.reshape(-1) for i in data])
            for i, m in zip(op.outputs, maps):
                t = self.t(i)
                vals = np.where(m >= 0, flat[np.maximum(m, 0)], fill if fill is not None else 0)
                t.data = vals.astype(flat.dtype).reshape(t.shape)
                self.folded.append(i)
            return
        if any(self.t(i).is_const for i in data):
            raise _err(op, "mixing constant and computed inputs in data movement is not supported")
        sizes = [self.t(i).size for i in data]
        starts = np.cumsum([0] + sizes)
        for i, m in zip(op.outputs, maps):
            programs = []
            for k, src in enumerate(data):
                sel = (m >= starts[k]) & (m < starts[k + 1])
                if sel.any():
                    programs.append((k, _copy_program(op, np.where(sel, m - starts[k], -1), self.t(i))))
            single = (len(data) == 1 and fill is None and len(programs) == 1 and programs[0][1] is not None
                      and programs[0][1]["len"] == self.t(i).size)
            if single and i not in self.graph_outputs:
                self.views.append(View(op, i, data[0], programs[0][1]["src_off"]))
                continue
            stmts, params = [], []
            if fill is not None and (m < 0).any():
                stmts.append(f"rfe_fill_s8({{o0}}, {int(np.int8(fill))}, {self.t(i).size});")
            ins = []
            for k, prog in programs:
                if prog is None:
                    raise _err(op, "this data movement is not a strided block copy", self.t(i))
                name = f"op{op.index}_o{op.outputs.index(i)}_c{len(params)}"
                params.append((name, "rfe_copy_t", prog))
                stmts.append(f"rfe_copy_s8(&{{p{len(params) - 1}}}, {{i{len(ins)}}}, {{o0}});")
                ins.append(data[k])
            self._add_call(Call(op, "rfe_copy_s8", stmts, ins, [i], params))

    # ---- float round trips ----------------------------------------------------------------------
    def _find_float_roundtrips(self, consumers):
        """DEQUANTIZE -> data movement in float -> QUANTIZE back to the same scale and zero point
        (the TFLite converter leaves such islands now and then, e.g. around a SPLIT).  Moving
        values changes none of them and s * (q - z) / s rounds back to q exactly, so the island
        is the same data movement on the int8 values: rewrite it as such."""
        for d in self.g.ops:
            if d.opcode != "DEQUANTIZE":
                continue
            q = self.t(d.inputs[0])
            if q.dtype != "INT8" or q.is_const or len(q.scale) != 1:
                continue
            region, moves, quants, frontier, ok = [], [], [], [d.outputs[0]], True
            while frontier and ok:
                t = frontier.pop()
                region.append(t)
                if t in self.graph_outputs or self.t(t).dtype != "FLOAT32":
                    ok = False
                    break
                for j in consumers.get(t, []):
                    op = self.g.ops[j]
                    if op.opcode in MOVE_OPS and op.inputs[0] == t or (op.opcode == "SPLIT" and op.inputs[1] == t):
                        if op not in moves:
                            moves.append(op)
                            frontier.extend(op.outputs)
                    elif op.opcode == "QUANTIZE":
                        y = self.t(op.outputs[0])
                        if y.dtype != "INT8" or len(y.scale) != 1 or y.scale[0] != q.scale[0] or y.zp != q.zp:
                            ok = False
                        quants.append(op)
                    else:
                        ok = False
            if not ok:
                continue
            for t in region:
                ten = self.t(t)
                ten.dtype, ten.scale, ten.zero_point = "INT8", q.scale.copy(), q.zero_point.copy()
            self._identity.add(d.index)
            self._identity.update(op.index for op in quants)

    # ---- fusion -------------------------------------------------------------------------------
    def _single_consumer(self, t: int, consumers) -> Op | None:
        c = consumers.get(t, [])
        if len(c) != 1 or t in self.graph_outputs:
            return None
        return self.g.ops[c[0]]

    def _find_pad_fusions(self, consumers):
        """PAD -> (RESHAPE)* -> CONV_2D / DEPTHWISE_CONV_2D, padding only the convolution's
        spatial axes with the input zero point: the convolution reads the unpadded tensor and
        skips the padded taps, which contribute (zero_point + input_offset) * w = 0 in TFLM too."""
        for p in self.g.ops:
            if p.opcode not in ("PAD", "PADV2"):
                continue
            chain, t = [p], p.outputs[0]
            k = self._single_consumer(t, consumers)
            while k is not None and k.opcode in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS") and k.inputs[0] == t:
                chain.append(k)
                t = k.outputs[0]
                k = self._single_consumer(t, consumers)
            if k is None or k.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D") or k.inputs[0] != t:
                continue
            x, tt = self.t(p.inputs[0]), self.t(t)
            if x.is_const or x.dtype != "INT8" or tt.dtype != "INT8" or len(tt.shape) != 4:
                continue
            if x.s != tt.s or x.zp != tt.zp:
                continue
            try:
                _, maps, fill = self._move_maps(p)
            except RfedgeError:
                continue
            if fill != tt.zp:
                continue
            m = maps[0].reshape(tt.shape)
            n, h, w, c = tt.shape
            filled = m < 0
            rows = filled.all(axis=(0, 2, 3))
            cols = filled.all(axis=(0, 1, 3))
            ph = int(np.argmin(rows)) if not rows.all() else h
            ah = int(np.argmin(rows[::-1])) if not rows.all() else 0
            pw = int(np.argmin(cols)) if not cols.all() else w
            aw = int(np.argmin(cols[::-1])) if not cols.all() else 0
            h2, w2 = h - ph - ah, w - pw - aw
            if h2 <= 0 or w2 <= 0 or n * h2 * w2 * c != x.size:
                continue
            inner = m[:, ph:ph + h2, pw:pw + w2, :]
            rest = m.copy()
            rest[:, ph:ph + h2, pw:pw + w2, :] = -1
            if not np.array_equal(inner.reshape(-1), np.arange(x.size)) or (rest >= 0).any():
                continue
            self._skip.update(op.index for op in chain)
            self._pad_fused[k.index] = {"tensor": x.index, "dims": (n, h2, w2, c), "pad_h": ph, "pad_w": pw}

    def _find_dw_fusions(self, consumers):
        """DEPTHWISE_CONV_2D -> 1x1 CONV_2D [-> MAX_POOL_2D pooling W only] with nothing else
        reading the intermediates: computed one output row at a time (rfe_dw_pw_s8)."""
        for a in self.g.ops:
            if a.opcode != "DEPTHWISE_CONV_2D" or a.index in self._skip:
                continue
            b = self._single_consumer(a.outputs[0], consumers)
            if b is None or b.opcode != "CONV_2D" or b.inputs[0] != a.outputs[0] or b.index in self._pad_fused:
                continue
            w, y = self.t(b.inputs[1]), self.t(b.outputs[0])
            o = b.options
            if (len(w.shape) != 4 or w.shape[1:3] != (1, 1) or int(o.get("strideH", 1)) != 1
                    or int(o.get("strideW", 1)) != 1 or len(y.shape) != 4):
                continue
            c = self._single_consumer(b.outputs[0], consumers)
            pool = None
            if c is not None and c.opcode == "MAX_POOL_2D" and c.inputs[0] == b.outputs[0]:
                po = c.options
                if int(po.get("filterHeight", 1)) == 1 and int(po.get("strideH", 1)) == 1:
                    pool = c
            self._dw_fused[a.index] = (b, pool)
            self._skip.add(b.index)
            if pool is not None:
                self._skip.add(pool.index)

    # ---- driver --------------------------------------------------------------------------------
    def run(self) -> Program:
        g = self.g
        if not g.inputs or not g.outputs:
            raise RfedgeError("the model has no input or no output tensor")
        for i in g.inputs + g.outputs:
            t = g.t(i)
            if t.dtype != "INT8":
                raise RfedgeError(f"model {'input' if i in g.inputs else 'output'} {t.describe()} is {t.dtype}; "
                                  "only full-int8 models are supported (quantize with int8 input and output)")
        consumers = g.consumers()
        self._find_float_roundtrips(consumers)
        if self.fuse:
            self._find_pad_fusions(consumers)
            self._find_dw_fusions(consumers)
        for op in g.ops:
            if op.index in self._skip:
                continue
            if op.opcode not in SUPPORTED_OPS:
                first = next((g.t(i) for i in op.outputs if i >= 0), None)
                raise _err(op, f"unsupported op {op.opcode} (supported: {', '.join(SUPPORTED_OPS)})", first)
            if op.opcode in MOVE_OPS:
                self.lower_move(op)
            else:
                getattr(self, "lower_" + op.opcode.lower())(op)
        return Program(g, self.calls, self.views, self.consts, self.folded)


def _merge_dims(dims: list[list[int]]) -> list[list[int]]:
    """[count, stride_a, stride_b] per dimension, outermost first: drops size-1 dimensions and
    merges neighbours that both inputs step through contiguously."""
    merged: list[list[int]] = []
    for d in dims:
        if d[0] == 1:
            continue
        if merged and merged[-1][1] == d[0] * d[1] and merged[-1][2] == d[0] * d[2]:
            merged[-1] = [merged[-1][0] * d[0], d[1], d[2]]
        else:
            merged.append(list(d))
    return merged


def _copy_program(op: Op, m: np.ndarray, out: Tensor) -> dict | None:
    """rfe_copy_t fields moving the elements m >= 0 of one source into the output, or None when
    they are not a strided block."""
    pos = np.argwhere(m >= 0)
    lo, hi = pos.min(axis=0), pos.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    sub = m[box]
    if (sub < 0).any() or sub.size != len(pos):
        return None
    shape = sub.shape
    origin = int(sub.reshape(-1)[0])
    dst_st = _contiguous_strides(out.shape)
    src_st = []
    for d in range(sub.ndim):
        if shape[d] > 1:
            idx = [0] * sub.ndim
            idx[d] = 1
            src_st.append(int(sub[tuple(idx)]) - origin)
        else:
            src_st.append(0)
    grid = origin + sum(np.arange(shape[d]).reshape([-1 if e == d else 1 for e in range(sub.ndim)]) * src_st[d]
                        for d in range(sub.ndim)) if sub.ndim else np.int64(origin)
    if not np.array_equal(np.broadcast_to(grid, shape), sub):
        return None
    dst_off = int(sum(int(lo[d]) * dst_st[d] for d in range(sub.ndim)))
    merged = _merge_dims([[int(shape[d]), src_st[d], dst_st[d]] for d in range(sub.ndim)])
    length = 1
    if merged and merged[-1][1] == 1 and merged[-1][2] == 1:
        length = merged.pop()[0]
    if len(merged) > 4:
        return None
    merged = [[1, 0, 0]] * (4 - len(merged)) + merged
    return dict(count=[d[0] for d in merged], src_stride=[d[1] for d in merged], dst_stride=[d[2] for d in merged],
                len=length, src_off=origin, dst_off=dst_off)


def lower(graph: Graph, fuse: bool = True) -> Program:
    return Lowering(graph, fuse).run()


def op_counts(graph: Graph) -> dict[str, int]:
    out: dict[str, int] = {}
    for op in graph.ops:
        out[op.opcode] = out.get(op.opcode, 0) + 1
    return dict(sorted(out.items()))
