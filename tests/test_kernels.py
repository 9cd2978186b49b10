"""Per-op tests of the int8 kernels (mcu/core) and of the generator's quantization math.

* tests/c/test_kernels.c: hand-derived golden vectors in C (rounding ties, saturation, zero
  points), built with UBSan/ASan when the compiler has them.
* The same integer primitives in Python (rfedge_codegen.qmath) against the same hand values.
* LOGISTIC/TANH tables computed in Python against the C fixed-point kernels, all 256 inputs.
* One-op (and a few fused multi-op) .tflite models built by hand with corner-case scales and
  zero points, generated as C and compared with TFLite Micro on every input.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rfedge_codegen import build, generate, qmath, reference
from rfedge_codegen.graph import load_graph
from rfedge_codegen.testing import build_model, const as C, options as O, single_op, tensor as T

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "mcu" / "core"


def _required(tool: str) -> bool:
    return tool in os.environ.get("RFEDGE_REQUIRE", "").replace(",", " ").split()


def require_cc() -> str:
    """The host C compiler; skips (or fails, when RFEDGE_REQUIRE names cc) without one."""
    cc = build.host_cc()
    if cc is None:
        if _required("cc"):
            pytest.fail("RFEDGE_REQUIRE=cc but no C compiler (cc) was found")
        pytest.skip("no C compiler (cc) on this machine")
    return cc


def require_valgrind() -> str:
    vg = shutil.which("valgrind")
    if vg is None:
        if _required("valgrind"):
            pytest.fail("RFEDGE_REQUIRE=valgrind but valgrind was not found")
        pytest.skip("valgrind is not installed")
    return vg


def _sanitizer_flags(cc: str, tmp: Path) -> list[str]:
    flags = ["-fsanitize=undefined,address", "-fno-sanitize-recover=all"]
    probe = tmp / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    ok = subprocess.run([cc, *flags, str(probe), "-o", str(tmp / "probe")], capture_output=True).returncode == 0
    return flags if ok else []


# ---- C golden tests ---------------------------------------------------------------------------

def test_c_kernel_goldens(tmp_path):
    cc = require_cc()
    exe = tmp_path / "test_kernels"
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g", *_sanitizer_flags(cc, tmp_path),
           "-I", str(CORE), str(REPO / "tests" / "c" / "test_kernels.c"), *map(str, sorted(CORE.glob("*.c"))),
           "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True)
    p = subprocess.run([str(exe)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().startswith("ok:") and " 0 failures" in p.stdout


# ---- the same arithmetic in Python ------------------------------------------------------------

def test_integer_primitives_hand_values():
    # SRDHM: ties go up (+0.5 -> 1, -0.5 -> 0); (-1) * (-1) saturates
    assert qmath.srdhm(1 << 15, 1 << 15) == 1
    assert qmath.srdhm(-(1 << 15), 1 << 15) == 0
    assert qmath.srdhm(-(3 << 15), 1 << 15) == -1
    assert qmath.srdhm(qmath.INT32_MIN, qmath.INT32_MIN) == qmath.INT32_MAX
    # RDBPOT: ties away from zero
    assert [qmath.rdbpot(v, 1) for v in (5, -5, 3, -3)] == [3, -3, 2, -2]
    assert [qmath.rdbpot(v, 2) for v in (6, -6, 5, -7)] == [2, -2, 1, -2]
    # double rounding: 5 * 0.25 -> round(2.5) = 3 -> round(1.5) = 2
    assert qmath.mbqm(5, 1 << 30, -1) == 2
    assert qmath.mbqm(-3, 1 << 30, 0) == -1
    assert qmath.mbqm(3, 1 << 30, 2) == 6
    assert qmath.srmpot(1 << 30, 1) == qmath.INT32_MAX
    assert qmath.srmpot(-(1 << 30) - 1, 1) == qmath.INT32_MIN


def test_quantize_multiplier_hand_values():
    assert qmath.quantize_multiplier(0.5) == (1 << 30, 0)
    assert qmath.quantize_multiplier(1.0) == (1 << 30, 1)
    assert qmath.quantize_multiplier(0.75) == (3 << 29, 0)
    assert qmath.quantize_multiplier(0.0) == (0, 0)
    assert qmath.quantize_multiplier(2.0 ** -32) == (1 << 30, -31)
    assert qmath.quantize_multiplier(2.0 ** -33) == (0, 0)            # flushed to zero below 2^-32
    # a significand that rounds up to 2^31 is halved and the exponent bumped
    assert qmath.quantize_multiplier((2 ** 31 - 0.5) / 2 ** 31) == (1 << 30, 1)
    assert qmath.quantize_multiplier((2 ** 31 - 0.75) / 2 ** 31) == (2 ** 31 - 1, 0)
    assert qmath.round_half_away(2.5) == 3 and qmath.round_half_away(-2.5) == -3


def test_activation_range_hand_values():
    assert qmath.activation_range("NONE", 0.1, 3) == (-128, 127)
    assert qmath.activation_range("RELU", 0.1, -128) == (-128, 127)
    assert qmath.activation_range("RELU", 0.1, 7) == (7, 127)
    assert qmath.activation_range("RELU6", 0.05, -10) == (-10, 110)      # 6 / 0.05 = 120
    assert qmath.activation_range("RELU6", 0.01, 0) == (0, 127)          # 600 saturates
    assert qmath.activation_range("RELU_N1_TO_1", 0.25, 2) == (-2, 6)


def test_logistic_tanh_params_hand_values():
    # scale 2^-4: 2^-4 * 2^27 = 2^23 = 0.5 * 2^24; radius = (15 << 27) >> 24 = 120
    p = qmath.act_params(2.0 ** -4, 10)
    assert p == {"input_zero_point": 10, "input_range_radius": 120, "input_multiplier": 1 << 30,
                 "input_left_shift": 24}
    assert qmath.logistic_s8(10, p) == 0                    # logistic(0) = 1/2 -> 128 - 128
    assert qmath.logistic_s8(26, p) == 59                   # logistic(1) * 256 = 187.15
    assert qmath.logistic_s8(-128, p) == -128               # below -radius
    assert qmath.tanh_s8(26, p) == 97                       # tanh(1) * 128 = 97.48
    assert qmath.tanh_s8(127, p) == 127                     # 127.99 rounds to 128, saturates


def test_softmax_hand_values():
    p = {"input_multiplier": 1 << 30, "input_left_shift": 20, "diff_min": -100}
    # four equal logits: exp(0) sums to 4.0 (2^21 in Q12.19), each output is 1/4 -> 64 - 128
    assert qmath.softmax_s8([7, 7, 7, 7], p).tolist() == [-64] * 4
    assert qmath.softmax_s8([50, -100, 50], p).tolist() == [0, -128, 0]


# ---- LOGISTIC / TANH tables (Python) against the C fixed-point kernels ------------------------

@pytest.fixture(scope="module")
def core_lib(tmp_path_factory):
    cc = require_cc()
    d = tmp_path_factory.mktemp("core")
    lib = d / "librfecore.so"
    subprocess.run([cc, "-std=c99", "-O2", "-shared", "-fPIC", "-I", str(CORE), *map(str, sorted(CORE.glob("*.c"))),
                    "-o", str(lib)], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


@pytest.mark.parametrize("scale,zero_point", [(1e-4, 0), (0.000869, 16), (0.05, -17), (0.5, 100), (2.0, -128),
                                              (2.0 ** -4, 10), (0.0117, 127)])
def test_activation_tables_match_c_kernels(core_lib, scale, zero_point):
    p = qmath.act_params(scale, zero_point)
    params = (ctypes.c_int32 * 4)(p["input_zero_point"], p["input_range_radius"], p["input_multiplier"],
                                  p["input_left_shift"])
    x = np.arange(-128, 128, dtype=np.int8)
    for c_fn, py_fn in ((core_lib.rfe_logistic_s8, qmath.logistic_s8), (core_lib.rfe_tanh_s8, qmath.tanh_s8)):
        y = np.zeros(256, np.int8)
        c_fn(params, x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p), 256)
        assert np.array_equal(y, qmath.lut_s8(py_fn, p)), py_fn.__name__


# ---- one-op models against TFLite Micro -------------------------------------------------------

def _cases() -> dict[str, bytes]:
    rng = np.random.default_rng(0)

    def w8(*shape):
        return rng.integers(-127, 128, shape).astype(np.int8)

    def b32(n, lim=5000):
        return C(rng.integers(-lim, lim, n).astype(np.int32))

    def scales(n):
        return rng.uniform(0.005, 0.03, n)

    conv = dict(dilationHFactor=1, dilationWFactor=1)
    c = {
        # FULLY_CONNECTED: per-tensor with bias and RELU over 3 batches; per-channel, zero input zp, RELU6
        "fc_per_tensor": single_op("FULLY_CONNECTED", [T([3, 16], 0.05, -7), C(w8(10, 16), 0.02), b32(10)],
                                   [T([3, 10], 0.3, 5)], O("FullyConnected", fusedActivationFunction=1)),
        "fc_per_channel": single_op("FULLY_CONNECTED", [T([1, 16], 0.05, 0), C(w8(10, 16), scales(10)), None],
                                    [T([1, 10], 0.2, -3)], O("FullyConnected", fusedActivationFunction=3)),
        # CONV_2D: SAME with stride 2; VALID with dilation; 1x1 with stride 2 (not an FC); 1x1 (an FC)
        "conv_same_s2": single_op("CONV_2D", [T([1, 7, 6, 3], 0.1, -2), C(w8(4, 3, 3, 3), scales(4)), b32(4)],
                                  [T([1, 4, 3, 4], 0.4, 10)], O("Conv2D", padding=0, strideH=2, strideW=2, **conv)),
        "conv_valid_dil2": single_op("CONV_2D", [T([1, 9, 8, 2], 0.1, 4), C(w8(3, 2, 3, 2), scales(3)), b32(3)],
                                     [T([1, 7, 4, 3], 0.3, -1)],
                                     O("Conv2D", padding=1, strideH=1, strideW=1, dilationHFactor=2, dilationWFactor=2,
                                       fusedActivationFunction=1)),
        "conv_1x1_s2": single_op("CONV_2D", [T([1, 5, 5, 4], 0.1, 4), C(w8(6, 1, 1, 4), scales(6)), b32(6)],
                                 [T([1, 3, 3, 6], 0.3, -1)], O("Conv2D", padding=0, strideH=2, strideW=2, **conv)),
        "conv_1x1": single_op("CONV_2D", [T([1, 5, 5, 4], 0.1, 4), C(w8(6, 1, 1, 4), 0.02), b32(6)],
                              [T([1, 5, 5, 6], 0.3, -1)], O("Conv2D", padding=1, strideH=1, strideW=1, **conv)),
        # DEPTHWISE_CONV_2D (TFLM needs the bias input here: it crashes without one)
        "dw_mult2_s2": single_op("DEPTHWISE_CONV_2D", [T([1, 7, 6, 3], 0.1, -2), C(w8(1, 3, 3, 6), scales(6), qdim=3),
                                                       b32(6)], [T([1, 4, 3, 6], 0.4, 10)],
                                 O("DepthwiseConv2D", padding=0, strideH=2, strideW=2, depthMultiplier=2, **conv)),
        "dw_dil2_relu6": single_op("DEPTHWISE_CONV_2D", [T([1, 9, 9, 40], 0.1, 3), C(w8(1, 3, 3, 40), scales(40), qdim=3),
                                                         b32(40)], [T([1, 9, 9, 40], 0.4, -10)],
                                   O("DepthwiseConv2D", padding=0, strideH=1, strideW=1, depthMultiplier=1,
                                     dilationHFactor=2, dilationWFactor=2, fusedActivationFunction=3)),
        # ADD / SUB / MUL: different scales, broadcasting, constant operands, fused activations
        "add_relu": single_op("ADD", [T([1, 50], 0.07, 3), T([1, 50], 0.02, -9)], [T([1, 50], 0.09, -20)],
                              O("Add", fusedActivationFunction=1)),
        "add_broadcast": single_op("ADD", [T([1, 4, 1, 3], 0.07, 3), T([1, 1, 5, 3], 0.02, -9)],
                                   [T([1, 4, 5, 3], 0.09, -20)], O("Add")),
        "sub_scalar_const": single_op("SUB", [C(np.array(127, np.int8).reshape(()), 1 / 255, -128),
                                              T([1, 30], 1 / 256, -128)], [T([1, 30], 0.0039, -128)], O("Sub")),
        "sub_equal_scales": single_op("SUB", [T([2, 30], 0.05, 0), T([2, 30], 0.05, 0)], [T([2, 30], 0.1, 0)], O("Sub")),
        "mul_broadcast_const": single_op("MUL", [T([2, 3, 4], 0.05, 1), C(w8(4), 0.01, -2)], [T([2, 3, 4], 0.002, 3)],
                                         O("Mul", fusedActivationFunction=2)),
        "mul_gate": single_op("MUL", [T([1, 64], 1 / 256, -128), T([1, 64], 1 / 128, 0)], [T([1, 64], 0.00035, -7)],
                              O("Mul")),
        # pooling: SAME with clipped windows (average divides by the taps inside), VALID
        "maxpool_relu": single_op("MAX_POOL_2D", [T([1, 5, 7, 3], 0.1, 2)], [T([1, 3, 4, 3], 0.1, 2)],
                                  O("Pool2D", padding=0, strideH=2, strideW=2, filterHeight=2, filterWidth=2,
                                    fusedActivationFunction=1)),
        "avgpool_same": single_op("AVERAGE_POOL_2D", [T([1, 5, 7, 3], 0.1, 2)], [T([1, 5, 7, 3], 0.1, 2)],
                                  O("Pool2D", padding=0, strideH=1, strideW=1, filterHeight=3, filterWidth=3)),
        "avgpool_valid": single_op("AVERAGE_POOL_2D", [T([1, 6, 6, 2], 0.1, 2)], [T([1, 3, 3, 2], 0.1, 2)],
                                   O("Pool2D", padding=1, strideH=2, strideW=2, filterHeight=2, filterWidth=2)),
        # MEAN: the TCN's time average, 4-D spatial with and without keep_dims, last axis
        "mean_time": single_op("MEAN", [T([1, 25, 32], 0.0003, -128), C(np.array([1], np.int32))],
                               [T([1, 32], 0.000138, -128)], O("Reducer", keepDims=False)),
        "mean_hw_keep": single_op("MEAN", [T([1, 5, 6, 8], 0.05, 3), C(np.array([1, 2], np.int32))],
                                  [T([1, 1, 1, 8], 0.02, -4)], O("Reducer", keepDims=True)),
        "mean_hw": single_op("MEAN", [T([2, 5, 6, 8], 0.05, 3), C(np.array([1, 2], np.int32))], [T([2, 8], 0.05, 3)],
                             O("Reducer", keepDims=False)),
        "mean_last": single_op("MEAN", [T([3, 7], 0.05, 3), C(np.array([-1], np.int32))], [T([3], 0.01, 0)],
                               O("Reducer", keepDims=False)),
        # data movement
        "pad": single_op("PAD", [T([1, 5, 3], 0.1, -7), C(np.array([[0, 0], [2, 1], [0, 3]], np.int32))],
                         [T([1, 8, 6], 0.1, -7)], O("Pad")),
        "padv2": single_op("PADV2", [T([1, 5, 3], 0.1, -7), C(np.array([[0, 0], [2, 1], [0, 3]], np.int32)),
                                     C(np.array([9], np.int8), 0.1, -7)], [T([1, 8, 6], 0.1, -7)], O("PadV2")),
        "concat": single_op("CONCATENATION", [T([2, 3, 4], 0.1, 1), T([2, 5, 4], 0.1, 1)], [T([2, 8, 4], 0.1, 1)],
                            O("Concatenation", axis=1)),
        "pack": single_op("PACK", [T([3, 4], 0.1, 1), T([3, 4], 0.1, 1)], [T([3, 2, 4], 0.1, 1)],
                          O("Pack", valuesCount=2, axis=1)),
        "transpose": single_op("TRANSPOSE", [T([2, 3, 4], 0.1, 1), C(np.array([2, 0, 1], np.int32))],
                               [T([4, 2, 3], 0.1, 1)], O("Transpose")),
        "strided_slice": single_op("STRIDED_SLICE", [T([4, 10, 3], 0.1, 1), C(np.array([1, -8, 0], np.int32)),
                                                     C(np.array([4, 9, 2], np.int32)), C(np.array([2, 3, 1], np.int32))],
                                   [T([2, 3, 2], 0.1, 1)], O("StridedSlice", beginMask=0, endMask=0, shrinkAxisMask=0)),
        "strided_slice_shrink": single_op("STRIDED_SLICE", [T([4, 10, 3], 0.1, 1), C(np.array([1, 0, 0], np.int32)),
                                                            C(np.array([2, 10, 3], np.int32)),
                                                            C(np.array([1, 1, 1], np.int32))],
                                          [T([10, 3], 0.1, 1)],
                                          O("StridedSlice", beginMask=6, endMask=6, shrinkAxisMask=1)),
        "slice": single_op("SLICE", [T([4, 10, 3], 0.1, 1), C(np.array([1, 2, 0], np.int32)),
                                     C(np.array([2, -1, 2], np.int32))], [T([2, 8, 2], 0.1, 1)], O("Slice")),
        "split_v": single_op("SPLIT_V", [T([2, 10], 0.1, 1), C(np.array([3, -1, 2], np.int32)),
                                         C(np.array([1], np.int32))],
                             [T([2, 3], 0.1, 1), T([2, 5], 0.1, 1), T([2, 2], 0.1, 1)], O("SplitV", numSplits=3)),
    }
    # QUANTIZE int8 -> int8 (TFLM's Requantize), and the float island the TFLite converter sometimes
    # leaves in the unrolled GRU: DEQUANTIZE -> SPLIT in float -> QUANTIZE back to the same scale
    c["requantize"] = single_op("QUANTIZE", [T([1, 64], 0.05, 3)], [T([1, 64], 0.02, -7)])
    c["requantize_up"] = single_op("QUANTIZE", [T([1, 64], 0.004, -128)], [T([1, 64], 0.0117, 20)])
    q, f = T([1, 12], 0.016572, -10), T([1, 12], dtype="FLOAT32")
    fa, fb, fc = (T([1, 4], dtype="FLOAT32") for _ in range(3))
    qa, qc = T([1, 4], 0.016572, -10), T([1, 4], 0.016572, -10)
    c["dequantize_roundtrip"] = build_model([
        ("DEQUANTIZE", [q], [f], None),
        ("SPLIT", [C(np.array(1, np.int32)), f], [fa, fb, fc], O("Split", numSplits=3)),
        ("QUANTIZE", [fc], [qc], None), ("QUANTIZE", [fa], [qa], None)], outputs=[qa, qc])
    # LOGISTIC / TANH over their whole input range, at tiny to large scales and extreme zero points
    for k, (s, z) in enumerate([(1e-4, 0), (0.05, -17), (0.5, 100), (2.0, -128), (0.000869, 16)]):
        c[f"logistic{k}"] = single_op("LOGISTIC", [T([1, 256], s, z)], [T([1, 256], 1 / 256, -128)])
        c[f"tanh{k}"] = single_op("TANH", [T([1, 256], s, z)], [T([1, 256], 1 / 128, 0)])
    for k, (s, z, beta) in enumerate([(0.01, 0, 1.0), (0.1, -30, 1.0), (1.0, 5, 1.0), (0.000563, -2, 1.0),
                                      (0.05, 3, 0.5)]):
        c[f"softmax{k}"] = single_op("SOFTMAX", [T([3, 11], s, z)], [T([3, 11], 1 / 256, -128)], O("Softmax", beta=beta))
    c.update(_fusion_cases(rng, w8, b32, scales))
    return c


def _fusion_cases(rng, w8, b32, scales) -> dict[str, bytes]:
    """Multi-op graphs the generator fuses: depthwise-separable blocks computed row by row, and
    PADs folded into the convolution that reads them (and a PADV2 that must not be)."""

    def ds_block(stride, padding, pool, mult=1):
        x = T([1, 9, 8, 6], 0.08, -5)
        if padding == 0:
            h, w = -(-9 // stride), -(-8 // stride)
        else:
            h, w = (9 - 3) // stride + 1, (8 - 3) // stride + 1
        d = T([1, h, w, 6 * mult], 0.05, 3)
        p = T([1, h, w, 10], 0.1, -128)
        ops = [("DEPTHWISE_CONV_2D", [x, C(w8(1, 3, 3, 6 * mult), scales(6 * mult), qdim=3), b32(6 * mult)], [d],
                O("DepthwiseConv2D", padding=padding, strideH=stride, strideW=stride, depthMultiplier=mult,
                  dilationHFactor=1, dilationWFactor=1)),
               ("CONV_2D", [d, C(w8(10, 1, 1, 6 * mult), scales(10)), b32(10)], [p],
                O("Conv2D", padding=0, strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1,
                  fusedActivationFunction=1))]
        if pool:
            kh, kw = pool
            q = T([1, -(-h // kh), -(-w // kw), 10], 0.1, -128)
            ops.append(("MAX_POOL_2D", [p], [q], O("Pool2D", padding=0, strideH=kh, strideW=kw, filterHeight=kh,
                                                  filterWidth=kw)))
        return build_model(ops)

    def pad_conv(pads, value=None, reshape=False):
        x = T([1, 6, 5, 4], 0.1, -3)
        h, w = 6 + sum(pads[1]), 5 + sum(pads[2])
        padded = T([1, h, w, 4], 0.1, -3)
        ins = [x, C(np.array(pads, np.int32))] + ([C(np.array([value], np.int8), 0.1, -3)] if value is not None else [])
        ops = [("PADV2" if value is not None else "PAD", ins, [padded], O("PadV2" if value is not None else "Pad"))]
        src = padded
        if reshape:   # the TCN's PAD -> RESHAPE -> CONV_2D chain
            flat, back = T([1, h * w, 4], 0.1, -3), T([1, h, w, 4], 0.1, -3)
            ops += [("RESHAPE", [padded, C(np.array([1, h * w, 4], np.int32))], [flat], None),
                    ("RESHAPE", [flat, C(np.array([1, h, w, 4], np.int32))], [back], None)]
            src = back
        y = T([1, h - 2, w - 2, 7], 0.2, 9)
        ops.append(("CONV_2D", [src, C(w8(7, 3, 3, 4), scales(7)), b32(7)], [y],
                    O("Conv2D", padding=1, strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1)))
        return build_model(ops)

    return {
        "fused_ds_same_pool1x2": ds_block(1, 0, (1, 2)),
        "fused_ds_stride2": ds_block(2, 0, (1, 2)),
        "fused_ds_valid_nopool": ds_block(1, 1, None),
        "fused_ds_mult2": ds_block(1, 0, (1, 2), mult=2),
        "fused_ds_pool2x2": ds_block(1, 0, (2, 2)),          # pool over H too: the pool stays separate
        "fused_pad_hw": pad_conv([[0, 0], [2, 1], [1, 1], [0, 0]]),
        "fused_pad_reshape": pad_conv([[0, 0], [2, 0], [0, 0], [0, 0]], reshape=True),
        "padv2_other_value": pad_conv([[0, 0], [1, 1], [1, 1], [0, 0]], value=9),   # not the zero point: no fusion
        "fused_padv2_zero_point": pad_conv([[0, 0], [1, 1], [1, 1], [0, 0]], value=-3),
    }


EXPECTED_KERNELS = {   # the fusions must actually happen (or not)
    "fused_ds_same_pool1x2": ["rfe_dw_pw_s8"], "fused_ds_stride2": ["rfe_dw_pw_s8"],
    "fused_ds_valid_nopool": ["rfe_dw_pw_s8"], "fused_ds_mult2": ["rfe_dw_pw_s8"],
    "fused_ds_pool2x2": ["rfe_dw_pw_s8", "rfe_max_pool_s8"], "fused_pad_hw": ["rfe_conv_s8"],
    "fused_pad_reshape": ["rfe_conv_s8"], "padv2_other_value": ["rfe_conv_s8", "rfe_copy_s8", "rfe_fill_s8"],
    "fused_padv2_zero_point": ["rfe_conv_s8"], "requantize": ["rfe_lut_s8"],
    "dequantize_roundtrip": ["rfe_copy_s8"],
}


@pytest.fixture(scope="module")
def op_models(tmp_path_factory):
    """Every case generated into one directory and compiled once into a shared library."""
    cc = require_cc()
    out = tmp_path_factory.mktemp("ops")
    cases = _cases()
    reports = {name: generate(b, out, name=name) for name, b in cases.items()}
    lib = out / "libops.so"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-I", str(out),
                    *map(str, sorted(out.glob("*.c"))), "-o", str(lib)], check=True, capture_output=True)
    return cases, reports, ctypes.CDLL(str(lib))


def _invoke_all(fn, X: np.ndarray, out_size: int) -> np.ndarray:
    Y = np.zeros((len(X), out_size), np.int8)
    for i in range(len(X)):
        fn(X[i].ctypes.data_as(ctypes.c_void_p), Y[i].ctypes.data_as(ctypes.c_void_p))
    return Y


def _corner_inputs(n_in: int, zero_points: list[int], rng, n_random: int = 250) -> np.ndarray:
    rows = [np.full(n_in, -128), np.full(n_in, 127), np.zeros(n_in), np.where(np.arange(n_in) % 2, 127, -128)]
    rows += [np.full(n_in, z) for z in zero_points]
    rows += [z + rng.integers(-2, 3, n_in) for z in zero_points]          # around the zero point
    X = np.concatenate([np.clip(np.stack(rows), -128, 127), rng.integers(-128, 128, (n_random, n_in))])
    return X.astype(np.int8)


@pytest.mark.parametrize("name", list(_cases()))
def test_op_matches_tflm(op_models, name):
    cases, reports, lib = op_models
    b, r = cases[name], reports[name]
    g = load_graph(b)
    zps = sorted({g.t(i).zp for i in g.inputs})
    X = _corner_inputs(r["input_bytes"], zps, np.random.default_rng(len(name)))
    want = reference.run(b, X)
    got = _invoke_all(getattr(lib, f"rfe_{name}_invoke"), X, r["output_bytes"])
    bad = np.flatnonzero((got != want).any(axis=1))
    assert bad.size == 0, f"{name}: {bad.size} of {len(X)} vectors differ, e.g. {got[bad[0]][:12]} vs {want[bad[0]][:12]}"
    if name in EXPECTED_KERNELS:
        assert r["kernels"] == EXPECTED_KERNELS[name]


def test_per_tensor_fc_multiplier_is_a_double_product(tmp_path):
    """TFLM computes the per-tensor FC multiplier as double(s_in) * double(s_w) / double(s_out);
    some TFLite versions round s_in * s_w to float first.  Find scales where the two disagree on
    an output and check we agree with TFLM there."""
    require_cc()
    rng = np.random.default_rng(1)
    for _ in range(20000):
        a, b = (float(np.float32(v)) for v in rng.uniform(1e-3, 0.05, 2))
        c = float(np.float32(a * b / rng.uniform(0.002, 0.01)))
        m_double = qmath.quantize_multiplier(a * b / c)
        m_float = qmath.quantize_multiplier(float(np.float32(np.float32(a) * np.float32(b))) / c)
        if m_double == m_float:
            continue
        accs = [v for v in range(int(250 / (a * b / c))) if qmath.mbqm(v, *m_double) != qmath.mbqm(v, *m_float)]
        if accs:
            break
    else:
        pytest.fail("no distinguishing scales found")
    accs = accs[:8]
    # FC with one input of value 0 and weights 1: each output's accumulator is its bias
    model = single_op("FULLY_CONNECTED", [T([1, 1], a, 0), C(np.ones((len(accs), 1), np.int8), b),
                                          C(np.array(accs, np.int32))], [T([1, len(accs)], c, -128)],
                      O("FullyConnected"))
    generate(model, tmp_path)
    got = build.run_host(build.compile_host(tmp_path), np.zeros((1, 1), np.int8), len(accs))[0]
    want = reference.run(model, np.zeros((1, 1), np.int8))[0]
    assert got.tolist() == want.tolist()
    assert got.tolist() == [min(127, qmath.mbqm(v, *m_double) - 128) for v in accs]
    assert got.tolist() != [min(127, qmath.mbqm(v, *m_float) - 128) for v in accs]


def test_mbqm_equals_its_closed_form():
    """MultiplyByQuantizedMultiplier written a second, independent way: the doubling high
    multiply is floor((x * m + 2^30) / 2^31) (ties toward +inf), the shift rounds half away
    from zero."""
    rng = np.random.default_rng(2)
    for _ in range(5000):
        x = int(rng.integers(-(1 << 20), 1 << 20))
        m = int(rng.integers(1 << 30, (1 << 31) - 1))
        s = int(rng.integers(-24, 3))
        ls, rs = max(s, 0), max(-s, 0)
        hi = ((x << ls) * m + (1 << 30)) >> 31
        want = hi if rs == 0 else (1 if hi >= 0 else -1) * ((abs(hi) + (1 << (rs - 1))) >> rs)
        assert qmath.mbqm(x, m, s) == want, (x, m, s)
