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


def test_affine_shifts_below_and_above_32_on_the_device(sig, tmp_path):
    """The C takes a 32-bit path for sh >= 32 and a 64-bit one below; trained networks give both
    (shifts 31..47 on the simulated set), the random fixture only the first. Constants spread over
    sh in [0, 62] with gains that keep xq in range, the same glue, Python and C compared."""
    import dataclasses

    require_cc()
    base = ed.device_net("SA", ed.fitted_random_params("SA", sig, seed=3), sig)
    Q = ed.device_features("SA", sig).astype(np.float64)
    med = np.median(Q, axis=0)
    g = 3000.0 / (np.max(np.abs(Q - med), axis=0) + 1.0)           # |xq| up to ~3000
    top = np.clip(29 - np.ceil(np.log2(g)), 0, 62)
    sh = np.clip(top - np.array([0, 8, 16, 24, 40])[np.arange(len(g)) % 5], 0, 62).astype(np.int64)
    mult = np.minimum(np.rint(g * 2.0 ** sh), 2 ** 30 - 1).astype(np.int64)
    bias = np.rint(-med * mult).astype(np.int64)
    aff = ed.FeatureAffine("SA", mult, bias, sh)
    assert (sh < 32).sum() >= 5 and (sh >= 32).sum() >= 5 and (sh == 0).any()
    net = dataclasses.replace(base, aff=aff)
    xq = net.xq(sig)
    assert np.mean(np.abs(xq) == 32767) < 0.1 and np.std(xq) > 100   # mostly unsaturated, not constant
    gen = ed.emit_device_model(net, tmp_path / "gen", sig.take([2]))
    X = ed.pack_inputs("SA", sig)
    with open_board("host", build_firmware("host", gen, tmp_path / "fw"), timeout=10.0) as dev:
        got = np.stack([ed.unpack_output(dev.invoke(X[i].view(np.int8))[0], 21) for i in range(len(sig))])
    np.testing.assert_array_equal(got, net.log_posteriors(sig))


def test_feature_affine_by_hand():
    """zf = 10, x_mean = 0.5, x_scale = 2 on an SA feature with scale 2^16: a = 2^(10-16)/2 = 2^-7,
    b = 0.5 * 2^10 / 2 = 256; sh = 36 (M = 2^29 < 2^30; 2^37 would reach it), B = -256 * 2^36."""
    F = 29
    fx = SimpleNamespace(name="SA", F=F, zf=10, x_mean=np.full(F, 0.5), x_scale=np.full(F, 2.0))
    aff = ed.feature_affine(fx, "SA")
    f = 28                                   # the Pearson correlation: Q16
    assert (aff.shift[f], aff.mult[f], aff.bias[f]) == (36, 1 << 29, -(1 << 44))
    q = np.zeros((4, F), np.int64)
    q[:, f] = [3 << 16, -(3 << 16), 0, 1]    # x = 3, -3, 0, 2^-16
    xq = ed.features_to_xq(aff, q)[:, f]
    # (x - 0.5) / 2 * 1024: 1280, -1792, -256, and -256 (2^-16 is far below one step of xq)
    assert xq.tolist() == [1280, -1792, -256, -256]
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
