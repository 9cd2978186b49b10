"""Paper 003's device firmware (rfedge.einsum_device) on the host board: the Python glue (device
features -> feature affine -> fixed-point network) is what the C computes, byte for byte; sizes,
self-test, protocol errors; the aggregator firmware; the instruction budget's arithmetic."""

from __future__ import annotations

import re
import struct
import time
from types import SimpleNamespace

import numpy as np
import pytest

from rfedge import einsum_device as ed
from rfedge import proto
from rfedge.board import DeviceError, open_board
from rfedge.boards import require_board
from rfedge.errors import RfedgeError
from rfedge.firmware import build_firmware
from test_kernels import require_cc


def random_signals(n: int, seed: int = 0) -> ed.QuantSignals:
    """Signals in the ranges of the simulator (rfid_features_fixed's table): RSS in [0, 1], unwrapped
    phase random walks within +-25 rad, AoA within +-0.35 rad; plus one constant trial (the
    features' degenerate branch) and one at the int16 limits."""
    from rfedge.rfid_features_fixed import quantize_signals

    rng = np.random.default_rng(seed)
    rss = rng.uniform(0, 1, (n, 2, 2, 35))
    phase = np.clip(np.cumsum(rng.normal(0, 1.0, (n, 2, 2, 35)), axis=-1), -25, 25)
    aoa = np.clip(np.cumsum(rng.normal(0, 0.05, (n, 2, 35)), axis=-1), -0.35, 0.35)
    rss[0], phase[0], aoa[0] = 0.5, 1.0, 0.1
    r, p, a = quantize_signals(rss, phase, aoa)
    r[1], p[1], a[1] = 32767, -32768, 32767
    r[1, :, :, ::2], p[1, :, :, ::3], a[1, :, ::2] = -32768, 32767, -32768
    return ed.QuantSignals(r, p, a)


@pytest.fixture(scope="module")
def sig():
    return random_signals(40, seed=5)


@pytest.fixture(scope="module")
def devices(sig, tmp_path_factory):
    """The three device firmwares (paper configurations, random weights standardized on ``sig``)
    running on the host board."""
    require_cc()
    out = tmp_path_factory.mktemp("einsum_dev")
    nets, devs = {}, {}
    try:
        for k in ed.SETS:
            nets[k] = ed.device_net(k, ed.fitted_random_params(k, sig.take(np.arange(2, 40)), seed=11), sig)
            gen = ed.emit_device_model(nets[k], out / k / "gen", sig.take([7]))
            fw = build_firmware("host", gen, out / k / "host")
            devs[k] = open_board("host", fw, timeout=10.0)
            devs[k].gen = gen
        yield nets, devs, out
    finally:
        for d in devs.values():
            d.close()


@pytest.mark.parametrize("name", ed.SETS)
def test_device_output_equals_the_python_glue(devices, sig, name):
    nets, devs, _ = devices
    ref = nets[name].log_posteriors(sig)
    X = ed.pack_inputs(name, sig)
    got = np.stack([ed.unpack_output(devs[name].invoke(X[i].view(np.int8))[0], nets[name].C) for i in range(len(sig))])
    np.testing.assert_array_equal(got, ref)
    # not a vacuous comparison: the posteriors vary with the input and are normalized (LSE ~ 0)
    assert len({tuple(r) for r in ref}) > len(sig) // 2
    lse = np.log2(np.sum(np.exp2(ref / 256.0), axis=1))
    assert np.all(np.abs(lse) < 0.05)


def test_model_h_sizes_and_hello(devices):
    nets, devs, _ = devices
    want_in = {"SPR": 560, "SA": 140, "WA": 140}   # 8 x 35 and 2 x 35 int16
    for k, dev in devs.items():
        h = (dev.gen / "model.h").read_text()
        assert int(re.search(r"#define RFE_MODEL_INPUT_SIZE (\d+)", h).group(1)) == want_in[k]
        assert int(re.search(r"#define RFE_MODEL_OUTPUT_SIZE (\d+)", h).group(1)) == 4 * 21
        info = dev.hello()
        assert (info.input_bytes, info.output_bytes) == (want_in[k], 84)
        assert info.output_scale == 1 / 256 and info.output_zero_point == 0
        assert info.input_scale == (0.0 if k == "SPR" else 2.0 ** -13)


def test_golden_selftest_passes_and_detects_a_wrong_golden(devices, tmp_path):
    nets, devs, out = devices
    for dev in devs.values():
        bad, count = dev.selftest()
        assert bad == 0 and count > 0
    # the same firmware with one golden output byte changed must report exactly one bad byte
    gen = tmp_path / "gen"
    ed.emit_device_model(nets["SA"], gen)
    c = (gen / "model.c").read_text()
    m = re.search(r"(rfe_dev_golden_out\[\d+\] = \{\n    )(\d+)", c)
    c = c[:m.start(2)] + str((int(m.group(2)) + 1) % 256) + c[m.end(2):]
    (gen / "model.c").write_text(c)
    with open_board("host", build_firmware("host", gen, tmp_path / "fw"), timeout=10.0) as dev:
        assert dev.selftest()[0] == 1


def test_bad_input_length_and_garbage_get_error_frames(devices, sig):
    nets, devs, _ = devices
    dev, n = devs["SA"], 140
    with pytest.raises(DeviceError) as e:    # one int16 sample past the end of the signals
        dev.request(proto.SET_INPUT, struct.pack("<I", n - 2) + b"\x01\x00" * 2)
    assert e.value.code == proto.E_ARG
    with pytest.raises(DeviceError) as e:    # INVOKE carries no payload
        dev.request(proto.INVOKE, b"\x00" * 3)
    assert e.value.code == proto.E_ARG
    dev.t.write(b"\x00\x13\x37\xff\x00")     # a garbage block: answered with an error frame
    deadline = time.monotonic() + 3.0
    item = dev._next_item(deadline)
    assert item is not None and item.is_error
    # and the device keeps serving, with the same answer as before
    x = ed.pack_inputs("SA", sig.take([3]))[0]
    np.testing.assert_array_equal(ed.unpack_output(dev.invoke(x.view(np.int8))[0], 21),
                                  nets["SA"].log_posteriors(sig.take([3]))[0])


def _kind(aff, f: int) -> str:
    """The C variant of feature f (einsum_device._affine_c)."""
    k = tuple(int(v[f]) for v in (aff.lo, aff.hi, aff.origin, aff.pre, aff.mult, aff.bias, aff.shift))
    inside = ed._affine_v(k[0], *k[2:]) >= -32767 and ed._affine_v(k[1], *k[2:]) <= 32767
    if k[0] == ed.INT32_MIN and k[1] == ed.INT32_MAX:
        return "full" if inside else "full+sat"
    return ("window" if inside else "window+sat") + ("+pre" if k[3] else "")


def _affine_of(set_name: str, a, b) -> ed.FeatureAffine:
    cols = np.array([ed._affine_constants(float(x), float(y)) for x, y in zip(a, b)], np.int64).T
    return ed.FeatureAffine(set_name, *cols)


def _exact_xq(a: float, b: float, q) -> np.ndarray:
    """sat16(rint(a q - b)) with Fractions (a, b as the float64 they are) and the distance of a q - b
    to the nearest half step."""
    from fractions import Fraction

    fa, fb = Fraction(a), Fraction(b)
    out, dist = [], []
    for v in q:
        z = fa * int(v) - fb
        r = int(np.floor(z + Fraction(1, 2)))
        out.append(min(max(r, -32767), 32767))
        dist.append(abs(float(z - np.floor(z) - Fraction(1, 2))))
    return np.array(out), np.array(dist)


@pytest.mark.parametrize("board", ["host", "qemu-rv32"])
def test_affine_kinds_on_the_device(sig, tmp_path, board):
    """Every C variant of the affine (full window with and without the clamp, bounded window with
    and without the clamp and the pre-shift, a gain above one step per LSB, a window cut by an
    int32 limit) on real device features, about a third saturated, Python and C compared; on
    qemu-rv32 with the mulh of the inline assembly."""
    import dataclasses

    if board == "host":
        require_cc()
    else:
        require_board(board)
    base = ed.device_net("SA", ed.fitted_random_params("SA", sig, seed=3), sig)
    Q = ed.device_features("SA", sig).astype(np.float64)
    med = np.median(Q, axis=0)
    spread = np.max(np.abs(Q - med), axis=0) + 1.0
    F = len(med)
    # xq spans +-(0.3 .. 6) x 32767 over the trials: unsaturated up to mostly saturated
    span = np.array([0.3, 1.5, 6.0, 0.8])[np.arange(F) % 4]
    a = span * 32767.0 / spread
    b = a * med
    # a tiny gain whose whole int32 range stays inside +-32767 (full window, no clamp)
    a[0], b[0] = 2.0 ** -17, 2.0 ** -17 * med[0]
    # a small gain with the full window and the clamp
    a[1], b[1] = 2.0 ** -13, 2.0 ** -13 * med[1]
    # a gain above one xq step per feature LSB (edges not exact: the output clamp)
    f_big = int(np.argmin(spread))
    a[f_big] = max(3.7, 3.0 * 32767.0 / spread[f_big])
    b[f_big] = a[f_big] * med[f_big]
    aff = _affine_of("SA", a, b)
    kinds = {_kind(aff, f) for f in range(F)}
    assert {"full", "full+sat", "window+pre"} <= kinds and any("window+sat" in k for k in kinds), kinds
    net = dataclasses.replace(base, aff=aff)
    xq = net.xq(sig)
    sat = np.abs(xq) == 32767
    assert 0.03 < sat.mean() < 0.6 and np.std(xq) > 100
    gen = ed.emit_device_model(net, tmp_path / "gen", sig.take([2]))
    X = ed.pack_inputs("SA", sig)
    with open_board(board, build_firmware(board, gen, tmp_path / "fw"), timeout=20.0) as dev:
        assert dev.selftest()[0] == 0
        got = np.stack([ed.unpack_output(dev.invoke(X[i].view(np.int8))[0], 21) for i in range(len(sig))])
    np.testing.assert_array_equal(got, net.log_posteriors(sig))


def test_affine_edges_extremes_and_error_bound():
    """On the constants of many gains and offsets: the int32 extremes, the window's ends and their
    neighbours; the window never changes xq (the clamped feature saturates beyond it); xq equals
    sat16(rint(a q - b)) except within 1.75 2^-sh of a half step, and then by one."""
    rng = np.random.default_rng(7)
    a = np.concatenate([2.0 ** rng.uniform(-20, 4, 60), [2.0 ** -17, 2.0 ** -9, 0.5, 1.0, 1.0 - 2 ** -20, 17.0]])
    b = np.concatenate([rng.normal(0, 1, 60) * 32767 * rng.choice([0.01, 1, 30], 60), [0, 5e4, -3e4, 0.5, 7, -1e5]])
    # offsets that put the window against an int32 limit
    b[:4] = a[:4] * np.array([-2.0 ** 31, 2.0 ** 31 - 1, -2.0 ** 31 + 1e3 / a[0], 2.0 ** 31 - 1e3 / a[1]])
    aff = _affine_of("SA", a, b)
    assert aff.full.any() and (~aff.full).any() and (aff.pre > 0).any() and (aff.shift >= ed.SH_MIN).all()
    for f in range(len(a)):
        lo, hi = int(aff.lo[f]), int(aff.hi[f])
        probe = {ed.INT32_MIN, ed.INT32_MIN + 1, -1, 0, 1, ed.INT32_MAX - 1, ed.INT32_MAX,
                 lo - 1, lo, lo + 1, hi - 1, hi, hi + 1}
        mid = (b[f] / a[f]) if abs(b[f] / a[f]) < 2 ** 31 else 0.0
        probe |= {int(np.clip(mid + d / a[f], ed.INT32_MIN, ed.INT32_MAX))
                  for d in (-40000, -32767.5, -100.25, 0, 3.5, 32766.5, 40000)}
        q = np.array(sorted(v for v in probe if ed.INT32_MIN <= v <= ed.INT32_MAX), np.int64)
        one = ed.FeatureAffine("SA", *(v[f:f + 1] for v in (aff.lo, aff.hi, aff.origin, aff.pre, aff.mult, aff.bias,
                                                            aff.shift)))
        got = ed.features_to_xq(one, q[:, None])[:, 0].astype(np.int64)
        assert np.all(np.diff(got) >= 0)                              # monotone
        want, dist = _exact_xq(float(a[f]), float(b[f]), q)
        bad = got != want
        assert np.all(np.abs(got - want) <= 1), (f, q[bad], got[bad], want[bad])
        assert np.all(dist[bad] < 1.75 * 2.0 ** -int(aff.shift[f])), (f, q[bad], dist[bad])
        # beyond the window the feature saturates: the clamp to it does not change xq
        if lo > ed.INT32_MIN:
            assert got[q == lo][0] == -32767 and np.all(got[q < lo] == -32767)
        if hi < ed.INT32_MAX:
            assert got[q == hi][0] == 32767 and np.all(got[q > hi] == 32767)
    with pytest.raises(RfedgeError, match="int32"):
        ed.features_to_xq(aff, np.full((1, len(a)), 1 << 31))


def test_feature_affine_by_hand():
    """zf = 10, x_mean = 0.5, x_scale = 2 on an SA feature with scale 2^16: a = 2^(10-16)/2 = 2^-7,
    b = 0.5 * 2^10 / 2 = 256. The full window would keep only sh = 5 < SH_FULL (M = 2^(25+sh) < 2^31),
    so a bounded one: xq saturates low for a q - b + 1/2 < -32766, i.e. q <= lo = -32510.5 * 128 - 1
    = -4161345, and high from (32766.5 + 256) * 128 = 4226880 = hi; its width (2^23) takes L = 8, then
    sh = 13 gives M = 2^-7 2^(32 + 13 - 8) = 2^30 and B = rint((a lo - b) 2^13) + 2^12
    = -32766.5078125 * 8192 + 4096 = -268419136."""
    F = 29
    fx = SimpleNamespace(name="SA", F=F, zf=10, x_mean=np.full(F, 0.5), x_scale=np.full(F, 2.0))
    aff = ed.feature_affine(fx, "SA")
    f = 28                                   # the Pearson correlation: Q16
    got = [int(v[f]) for v in (aff.lo, aff.hi, aff.origin, aff.pre, aff.mult, aff.bias, aff.shift)]
    assert got == [-4161345, 4226880, -4161345, 8, 1 << 30, -268419136, 13]
    q = np.zeros((4, F), np.int64)
    q[:, f] = [3 << 16, -(3 << 16), 0, 1]    # x = 3, -3, 0, 2^-16
    xq = ed.features_to_xq(aff, q)[:, f]
    # (x - 0.5) / 2 * 1024: 1280, -1792, -256, and -256 (2^-16 is far below one step of xq)
    assert xq.tolist() == [1280, -1792, -256, -256]
    # the window's ends and beyond, the int32 extremes
    q = np.zeros((6, F), np.int64)
    q[:, f] = [-4161345, -4161344, 4226879, 4226880, -(1 << 31), (1 << 31) - 1]
    assert ed.features_to_xq(aff, q)[:, f].tolist() == [-32767, -32766, 32766, 32767, -32767, 32767]
    with pytest.raises(RfedgeError, match="x_scale"):
        ed.feature_affine(SimpleNamespace(name="SA", F=F, zf=10, x_mean=np.zeros(F), x_scale=np.zeros(F)), "SA")


def test_feature_affine_tracks_the_float_standardization(sig):
    """Against the float definition (x / 2^s - mean) / scale * 2^zf: within one step of xq plus
    the rounding of M (2^-29 relative), wherever it does not saturate."""
    from rfedge.einsum_fixed import quantize_inputs
    from rfedge.rfid_features_fixed import to_float

    for k in ed.SETS:
        net = ed.device_net(k, ed.fitted_random_params(k, sig, seed=2), sig)
        Q = ed.device_features(k, sig)
        got = ed.features_to_xq(net.aff, Q).astype(np.int64)
        want = quantize_inputs(net.fx, to_float(k, Q)).astype(np.int64)
        assert np.max(np.abs(got - want)) <= 1


def test_aggregator_firmware_fuses_like_the_host(tmp_path):
    require_cc()
    rng = np.random.default_rng(4)
    lps = [rng.integers(-(1 << 29), 1, (30, 21)) for _ in range(3)]   # some beyond the +-2^27 clamp
    lps[0][0] = 0                                                      # a tie: the smallest class wins
    lps[1][0], lps[2][0] = 0, 0
    lab, sc = ed.fuse_scores(lps)
    assert lab[0] == 0
    # the score by hand for one trial: the sum of the clamped values
    want = sum(np.clip(a[5], -(1 << 27), 1 << 27) for a in lps)
    np.testing.assert_array_equal(sc[5], want)
    gen = ed.emit_fuser_model(3, 21, tmp_path / "gen", golden=[a[1:] for a in lps])
    X = ed.pack_fuse_input(lps)
    with open_board("host", build_firmware("host", gen, tmp_path / "fw"), timeout=10.0) as dev:
        assert dev.selftest()[0] == 0
        assert (dev.info.input_bytes, dev.info.output_bytes) == (3 * 84, 88)
        for i in range(len(X)):
            got_lab, got_sc = ed.unpack_fuse_output(dev.invoke(X[i].view(np.int8))[0], 21)
            assert got_lab == lab[i]
            np.testing.assert_array_equal(got_sc, sc[i])


def test_instruction_budget_is_four_times_paper_macs_plus_feature_ops():
    # paper 003 eqs. 12-14 for SPR (D=6, K=2, R=10, C=21): (2^7 - 2) * 10 * (2^3 + 2) + 2 * 2^6 + 10 * 21
    # = 12600 + 128 + 210; features (§VI-B1): 8 signals x 35 samples x 14 statistics + 4 x 35 correlations
    fx = SimpleNamespace(D=6, K=2, L=10, R=10, C=21, F=116)
    b = ed.instruction_budget(fx, "SPR")
    assert (b["paper_macs"], b["feature_ops"], b["instructions_max"]) == (12938, 4060, 4 * (12938 + 4060))
    # WA: (2^6 - 2) * 10 * 10 + 64 + 210 = 6474; 2 AoA x 35 x 4 db2 taps = 280
    b = ed.instruction_budget(SimpleNamespace(D=5, K=2, L=10, R=10, C=21, F=38), "WA")
    assert (b["paper_macs"], b["feature_ops"]) == (6474, 280)


def test_inputs_are_checked():
    s = random_signals(3)
    with pytest.raises(RfedgeError, match="aoa"):
        ed.pack_inputs("SA", ed.QuantSignals(s.rss, s.phase, s.aoa[:, :1]))
    with pytest.raises(RfedgeError, match="int16"):
        ed.pack_inputs("WA", ed.QuantSignals(s.rss, s.phase, s.aoa.astype(np.int32)))
    with pytest.raises(RfedgeError, match="device network"):
        ed.pack_inputs("XX", s)
    with pytest.raises(RfedgeError, match="84 output bytes"):
        ed.unpack_output(b"\x00" * 80, 21)


def test_board_option_and_junit_report(tmp_path):
    from rfedge.validate_einsum import format_einsum_summary, parse_boards, write_junit_einsum

    assert parse_boards("qemu-rv32") == ({"SPR": "qemu-rv32", "SA": "qemu-rv32", "WA": "qemu-rv32"}, None)
    assert parse_boards("SPR=qemu-m4,host,AGG=qemu-rv32") == ({"SPR": "qemu-m4", "SA": "host", "WA": "host"},
                                                             "qemu-rv32")
    with pytest.raises(RfedgeError, match="XYZ"):
        parse_boards("XYZ=host")
    budget = {"paper_macs": 3242, "feature_ops": 1015, "factor": 4, "instructions_max": 17028}
    ins = {"unit": "instructions", "min": 9e4, "median": 1e5, "p95": 1.1e5, "budget": budget,
           "within_budget": False, "budget_ratio": 1e5 / 17028}
    dev = {"board": "qemu-rv32", "selftest": {"pass": True, "mismatched_bytes": 0},
           "bit_exact": {"trials": 5, "mismatches": 0}, "instructions": ins,
           "accuracy": {"device": 0.4, "reference": 0.4, "equal": True, "float_reference": 0.4}}
    bad = {**dev, "bit_exact": {"trials": 5, "mismatches": 2}}
    s = {"run": "r", "trials": 5, "out_dir": "o", "pass": False, "budget_met": False,
         "devices": {"SPR": dev, "SA": bad, "WA": dev}, "merged": {"device": 0.6, "reference": 0.6, "equal": True},
         "aggregator": {"where": "host process", "board": None}}
    write_junit_einsum(s, tmp_path / "j.xml")
    x = (tmp_path / "j.xml").read_text()
    # 3 devices x 4 cases + merged; failures: SA's bit-exactness and the 3 budgets
    assert 'tests="13" failures="4" skipped="0"' in x
    assert "2 of 5 trials differ" in x and '<property name="budget" value="17028"/>' in x
    assert "NOT met" in format_einsum_summary(s)


def test_unaligned_buffers_take_the_copies(devices, sig, tmp_path):
    """rfe_model_invoke reads an aligned input and writes an aligned output in place and copies
    otherwise: the model's sources with a small main, every input and output offset 0..3 give the
    same bytes."""
    import subprocess

    cc = require_cc()
    nets, devs, _ = devices
    gen = devs["SA"].gen
    n = 4
    X = ed.pack_inputs("SA", sig.take(np.arange(n)))
    want = nets["SA"].log_posteriors(sig.take(np.arange(n))).astype("<i4").view(np.uint8).reshape(n, -1)
    rows = ",\n".join("{" + ",".join(str(int(v)) for v in x) + "}" for x in X)
    (tmp_path / "main.c").write_text(f"""#include <stdio.h>
#include <string.h>
#include "model.h"
static const unsigned char X[{n}][RFE_MODEL_INPUT_SIZE] = {{ {rows} }};
static union {{ int32_t w[64]; unsigned char b[256]; }} in, out;
int main(void)
{{
    int t, io, oo, i;
    for (t = 0; t < {n}; ++t)
        for (io = 0; io < 4; ++io)
            for (oo = 0; oo < 4; ++oo) {{
                memcpy(in.b + io, X[t], RFE_MODEL_INPUT_SIZE);
                rfe_model_invoke((const int8_t *)(in.b + io), (int8_t *)(out.b + oo));
                printf("%d %d %d", t, io, oo);
                for (i = 0; i < RFE_MODEL_OUTPUT_SIZE; ++i) printf(" %d", out.b[oo + i]);
                printf("\\n");
            }}
    return 0;
}}
""")
    srcs = [str(tmp_path / "main.c")] + [str(p) for p in sorted(gen.glob("*.c"))]
    exe = tmp_path / "unaligned"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(gen), "-o", str(exe), *srcs],
                   check=True, capture_output=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split("\n")
    got = [list(map(int, ln.split())) for ln in lines if ln.strip()]
    assert len(got) == n * 16
    for r in got:
        assert r[3:] == want[r[0]].tolist(), r[:3]


def test_bench_board_measures_several_trials(tmp_path):
    """`rfedge bench board` on an einsum run: one figure per device and test trial, the budget
    line (judged on qemu-rv32 only), the leaf table in use; the JSON lands in the out dir."""
    from rfedge.sim.rfid import synth_rfid_dataset
    from rfedge.validate_einsum import bench_einsum_board, format_einsum_bench

    # repetitions 16-19 are the test split
    data = synth_rfid_dataset(tmp_path / "data", overrides={"participants": 1, "repetitions": 20})
    run = ed.write_fitted_run(data, tmp_path / "run", seed=0, stream=None)
    r = bench_einsum_board(run, "host", runs=3, trials=2, out_dir=tmp_path / "bench", stream=None)
    assert r["trials"] == 2 and set(r["devices"]) == set(ed.SETS)
    for k, d in r["devices"].items():
        assert len(d["per_trial"]) == 2 and 0 < d["min"] <= d["median"] <= d["max"]
        assert d.get("within_budget") is None and d["budget"]["instructions_max"] > 0
    # the fitted run has the plain form (I0 = L = 10): SPR's table would exceed LT_MAX_BYTES
    assert {k: d["leaf_table_cells"] for k, d in r["devices"].items()} == {"SPR": 0, "SA": 256, "WA": 256}
    assert (tmp_path / "bench" / "bench_einsum_host.json").is_file()
    assert "judged on qemu-rv32 only" in format_einsum_bench(r)
