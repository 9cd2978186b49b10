"""The device's DSP (mcu/core/dsp, compiled with the host's cc) against the Python reference.

For the same raw ESP32 CSI buffers, the int8 model input the board computes must equal
rfedge.features.window_features + Normalizer + quantization (rfedge.codegen.quantize_inputs):
exactly in the default double-precision build, within +-1 LSB in the single-precision build.
The figures (share of exact values, largest difference, windows) are printed (pytest -s).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from rfedge.errors import RfedgeError
from rfedge.features import FeatureConfig
from rfedge.io.subcarriers import _LAYOUTS, decode_esp32_buffer, esp32_buffer_layout, pick_part, used_subcarriers
from rfedge.testing.device_dsp import HostDsp, encode_packets, host_cc, reference_input

pytestmark = pytest.mark.skipif(
    host_cc() is None and "cc" not in os.environ.get("RFEDGE_REQUIRE", "").split(","),
    reason="no C compiler (cc/gcc/clang): the device DSP is compiled on the host")

CFG2 = FeatureConfig(groups=7, win_len=16, hop=8, n_samples=96)


def test_a_compiler_is_there_when_required():
    if "cc" in os.environ.get("RFEDGE_REQUIRE", "").split(","):
        assert host_cc() is not None, "RFEDGE_REQUIRE=cc but no C compiler was found"


def numpy_abs_uses_fma() -> bool:
    """numpy's complex64 abs is larger * sqrt(r*r + 1), r = smaller / larger, the multiply-add fused
    on CPUs with FMA: which of the two this numpy does decides the device build to compare with."""
    r, i = np.meshgrid(np.arange(-128, 128, dtype=np.float32), np.arange(-128, 128, dtype=np.float32))
    a = np.abs((r + 1j * i).astype(np.complex64)).ravel()
    big, small = np.maximum(np.abs(r), np.abs(i)).ravel(), np.minimum(np.abs(r), np.abs(i)).ravel()
    with np.errstate(all="ignore"):
        ratio = np.where(big > 0, small / big, np.float32(0)).astype(np.float32)
    fused = big * np.sqrt((ratio.astype(np.float64) * ratio + 1).astype(np.float32))
    plain = big * np.sqrt(ratio * ratio + np.float32(1))
    if np.array_equal(fused, a):
        return True
    assert np.array_equal(plain, a), "numpy's complex64 abs follows neither known formula"
    return False


ABS_FLAGS = [] if numpy_abs_uses_fma() else ["-DRFE_DSP_ABS_NO_FMA"]


# ---- data: simulated trials as the board's buffers ---------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from rfedge.data.dataset import Dataset
    from rfedge.sim.csi import synth_csi_dataset

    return Dataset.open(synth_csi_dataset(tmp_path_factory.mktemp("dsp") / "ds", seed=11,
                                          overrides={"users": 2, "sessions": 1, "trials_per_class": 3}))


def _variants(ds, rng):
    """(int8 buffers [P, 256], t_us) windows: every trial on every receiver, plus AGC steps,
    packet loss and a 32-bit timestamp wrap on some of them."""
    csi, tt, npk = ds.array("csi"), ds.array("t_us"), ds.array("n_packets")
    out = []
    for i in range(csi.shape[0]):
        for r in range(csi.shape[1]):
            P = int(npk[i, r])
            if P < 2:
                continue
            h = csi[i, r, :P, :, 0].astype(np.float64) + 1j * csi[i, r, :P, :, 1]
            t = tt[i, r, :P].astype(np.int64)
            out.append((encode_packets(h), t))
            if (i + r) % 3 == 0:        # an AGC step of 1-3 dB somewhere in the window
                g = np.ones(P)
                g[rng.integers(P // 4, 3 * P // 4):] = 10 ** (rng.uniform(1, 3) * rng.choice([-1, 1]) / 20)
                out.append((encode_packets(np.clip(np.round(h * g[:, None]).real, -128, 127)
                                           + 1j * np.clip(np.round(h * g[:, None]).imag, -128, 127)), t))
            if (i + r) % 4 == 1:        # 20% of the packets lost
                keep = np.sort(rng.choice(P, int(P * 0.8), replace=False))
                keep[0], keep[-1] = 0, P - 1
                keep = np.unique(keep)
                out.append((encode_packets(h[keep]), t[keep]))
    return out


def _quant(X):
    from rfedge.dsp import Normalizer
    from rfedge.models.student import to_model_input

    norm = Normalizer.fit(X)
    Z = to_model_input(norm(X))
    lo, hi = float(Z.min()), float(Z.max())
    scale = (hi - lo) / 255.0               # as TFLite's full-int8 calibration would pick them
    return norm, scale, int(round(-128 - lo / scale))


@pytest.fixture(scope="module", params=[FeatureConfig(), CFG2], ids=["default", "groups7-L16"])
def reference(request, dataset):
    """Windows, normalizer, quantization and the Python reference (int8, features) of each window."""
    from rfedge.features import window_features

    cfg = request.param
    wins = _variants(dataset, np.random.default_rng(3))
    decoded = [decode_esp32_buffer(b, 0)[0] for b, _ in wins]
    X = np.stack([window_features(h, t, cfg) for h, (_, t) in zip(decoded, wins)])
    norm, scale, zp = _quant(X)
    ref = [reference_input(h, t, cfg, norm, scale, zp) for h, (_, t) in zip(decoded, wins)]
    return cfg, wins, norm, scale, zp, ref


def _compare(h, wins, ref, wrap=False):
    total = exact = feat_exact = 0
    worst = 0
    for (bufs, t), (q_ref, f_ref) in zip(wins, ref):
        if wrap:    # the same window with the ESP32's 32-bit microsecond counter wrapping inside it
            t = t - t[len(t) // 2] + (1 << 32)
        rc, q, f = h.window(bufs, t)
        assert rc == 0
        d = np.abs(q.astype(np.int32) - q_ref.astype(np.int32))
        total += d.size
        exact += int((d == 0).sum())
        worst = max(worst, int(d.max()))
        feat_exact += int((f == f_ref).sum())
    return total, exact, worst, feat_exact


@pytest.mark.parametrize("single,min_exact", [(False, 0.9999), (True, 0.99)], ids=["double", "single"])
def test_the_board_computes_the_reference_int8_input(reference, single, min_exact):
    """Double: exact in practice; single precision (the FPU of ESP32/ESP32-S3): within 1 LSB."""
    cfg, wins, norm, scale, zp, ref = reference
    with HostDsp(cfg.to_dict(), norm.to_dict(), scale, zp, single=single, extra_cflags=ABS_FLAGS) as h:
        total, exact, worst, feat_exact = _compare(h, wins, ref)
    print(f"\ndevice DSP ({'float' if single else 'double'}) vs Python, {cfg.shape}: {len(wins)} windows, "
          f"{total} int8 values, {exact / total:.6f} exact, max |diff| {worst} LSB; "
          f"float32 features bit-equal {feat_exact / total:.6f}")
    assert worst <= 1
    assert exact / total >= min_exact


def test_a_wrapping_timestamp_counter_changes_nothing(reference):
    cfg, wins, norm, scale, zp, _ = reference
    sub = wins[:10]
    ref = []
    for bufs, t in sub:
        tw = t - t[len(t) // 2] + (1 << 32)        # unwrapped: the Python reference sees int64 times
        ref.append(reference_input(decode_esp32_buffer(bufs, 0)[0], tw, cfg, norm, scale, zp))
    with HostDsp(cfg.to_dict(), norm.to_dict(), scale, zp, extra_cflags=ABS_FLAGS) as h:
        total, exact, worst, _ = _compare(h, sub, ref, wrap=True)
    assert exact == total


# ---- buffers, errors, ranges -------------------------------------------------------------------

def test_buffer_layouts_match_the_python_decoder():
    with HostDsp(FeatureConfig().to_dict(), {"mean": [0] * 14, "std": [1] * 14}, 0.05, 0) as h:
        for (L, sc) in _LAYOUTS:
            p = pick_part(esp32_buffer_layout(L, sc))
            want = used_subcarriers(p.name, p.bandwidth_mhz, sc)
            got = h.layout(L, sc)
            assert got is not None, (L, sc)
            subs, off = got
            assert np.array_equal(subs, want), (L, sc)
            # the offsets read the same values as the Python decoder
            raw = np.random.default_rng(L + sc).integers(-128, 128, L).astype(np.int8)
            c, _ = decode_esp32_buffer(raw, sc)
            assert np.array_equal(raw[off + 1].astype(np.float32), c.real), (L, sc)
            assert np.array_equal(raw[off].astype(np.float32), c.imag), (L, sc)
        for L, sc in [(200, 0), (376, 2), (380, 1), (612, 0), (256, 3)]:
            assert h.layout(L, sc) is None


def test_lltf_packets_with_an_invalid_first_word():
    """128-byte LLTF buffers (52 subcarriers); first_word_invalid zeroes subcarrier 1's slot."""
    rng = np.random.default_rng(5)
    cfg = FeatureConfig()
    P = 180
    k = used_subcarriers("lltf", 20)
    t = np.cumsum(rng.integers(8000, 12000, P)) + 10_000
    phase = rng.uniform(0, 2 * np.pi, len(k))
    amp = 40 + 20 * np.sin(2 * np.pi * 1.3 * t[:, None] * 1e-6 + phase) + rng.normal(0, 2, (P, len(k)))
    from rfedge.io.subcarriers import encode_esp32_buffers

    bufs = encode_esp32_buffers(128, 0, {"lltf": (k, amp * np.exp(1j * phase))}, clip=True)
    h_py = decode_esp32_buffer(bufs, 0, first_word_invalid=True)[0]
    assert np.all(h_py[:, list(k).index(1)] == 0)
    from rfedge.dsp import Normalizer
    from rfedge.features import window_features

    X = window_features(h_py, t, cfg)[None]
    norm, scale, zp = _quant(X)
    q_ref, f_ref = reference_input(h_py, t, cfg, norm, scale, zp)
    with HostDsp(cfg.to_dict(), norm.to_dict(), scale, zp, extra_cflags=ABS_FLAGS) as h:
        rc, q, f = h.window(bufs, t, first_word_invalid=True)
        assert rc == 0 and np.array_equal(q, q_ref) and np.array_equal(f, f_ref)
        rc, q2, _ = h.window(bufs, t, first_word_invalid=False)
        assert rc == 0 and not np.array_equal(q2, q)      # the flag is honoured, not ignored
    assert isinstance(norm, Normalizer)


def test_errors_are_reported_not_computed(reference):
    cfg, wins, norm, scale, zp, _ = reference
    bufs, t = wins[0]
    with HostDsp(cfg.to_dict(), norm.to_dict(), scale, zp) as h:
        assert h.window(np.zeros((3, 200), np.int8), [0, 10_000, 20_000])[0] == -1       # unknown layout
        assert h.window(bufs[:1], t[:1])[0] == -4                                          # one packet
        back = t.copy()
        back[5] = back[4]
        assert h.window(bufs, back)[0] == -6                                               # time stands still
        mixed = [bufs[0], bufs[1][:128]]
        assert h.window(mixed, t[:2])[0] == -2                                             # 56 then 52 tones
        many = np.repeat(bufs[:1], 600, axis=0)
        assert h.window(many, 10_000 + 1000 * np.arange(600))[0] == -3                    # > 512 packets
        assert h.window(bufs[:2], [0, 6_000_000])[0] == -5                                 # > 512 samples


def test_a_time_range_of_the_ring_is_the_window_of_those_packets(reference):
    cfg, wins, norm, scale, zp, _ = reference
    bufs, t = max(wins, key=lambda w: len(w[1]))
    a, b = len(t) // 6, len(t) - len(t) // 6
    q_ref, _ = reference_input(decode_esp32_buffer(bufs[a:b], 0)[0], t[a:b], cfg, norm, scale, zp)
    with HostDsp(cfg.to_dict(), norm.to_dict(), scale, zp, extra_cflags=ABS_FLAGS) as h:
        rc, q, _ = h.window(bufs, t, t_range=(t[a], t[b - 1]))
    assert rc == 0 and np.array_equal(q, q_ref)


def test_emitter_refuses_what_the_device_cannot_do():
    from rfedge_codegen.emit_dsp import emit_dsp_config

    with pytest.raises(RfedgeError, match="segment"):
        emit_dsp_config(FeatureConfig(segment=True, threshold=3.0).to_dict(), {"mean": [0] * 14, "std": [1] * 14}, 0.1, 0)
    with pytest.raises(RfedgeError, match="14 channels"):
        emit_dsp_config(FeatureConfig().to_dict(), {"mean": [0] * 7, "std": [1] * 7}, 0.1, 0)
    with pytest.raises(RfedgeError, match="FeatureConfig"):
        emit_dsp_config({"bogus": 1}, {"mean": [0] * 14, "std": [1] * 14}, 0.1, 0)
    text = emit_dsp_config(FeatureConfig().to_dict(), {"mean": [0.5] * 14, "std": [2] * 14}, 0.0625, -3)
    assert "#define RFE_DSP_INPUT_SCALE 0x1.0000000000000p-4f" in text
    assert "#define RFE_DSP_INPUT_ZERO_POINT (-3)" in text
    assert "#define RFE_DSP_N_BINS 8" in text and "#define RFE_DSP_N_FRAMES 25" in text


# ---- stream mode --------------------------------------------------------------------------------

def test_stream_detector_finds_the_gestures_python_finds():
    from rfedge import activity
    from rfedge.sim.csi_stream import synth_stream

    st = synth_stream(seed=5, minutes=1.0)
    bufs = encode_packets(st.csi)
    t_s, s_ref = activity.stream_score(st.csi, st.t_us, 100.0)
    cfg = FeatureConfig()
    found = 0
    with HostDsp(cfg.to_dict(), {"mean": [0] * 14, "std": [1] * 14}, 0.05, 0) as h:
        for thr in (4.0, 8.0):
            ev, s_dev = h.stream(bufs, st.t_us, thr)
            assert len(s_dev) == len(s_ref)
            assert np.allclose(s_dev, s_ref, rtol=1e-9, atol=0)
            det = activity.detect_stream(st.csi, st.t_us, thr)
            assert len(ev) == len(det)
            for (a, b), (pa, pb) in zip(ev, det):
                assert abs(a * 1e-6 - pa) < 1e-5 and abs(b * 1e-6 - pb) < 1e-5
            found += len(ev)
        # short streams: under one floor block (its own median), a few blocks, the edges
        for n in (60, 150, 700):
            _, s_ref = activity.stream_score(st.csi[:n], st.t_us[:n], 100.0)
            _, s_dev = h.stream(bufs[:n], st.t_us[:n], 3.0)
            assert len(s_dev) == len(s_ref) and np.allclose(s_dev, s_ref, rtol=1e-9, atol=0)
    assert found > 0


# ---- the same sources for the MCU boards ------------------------------------------------------------

@pytest.mark.parametrize("board", ["qemu-rv32", "qemu-m4"])
@pytest.mark.parametrize("single", [False, True], ids=["double", "single"])
def test_dsp_compiles_warning_free_for_the_mcu_boards(board, single, tmp_path):
    """-Werror with each virtual MCU board's compiler and flags (rv32imc = the ESP32-C3's ISA)."""
    import shutil
    import subprocess

    from rfedge.boards import load_board
    from rfedge.testing.device_dsp import DSP_DIR
    from rfedge_codegen.emit_dsp import write_dsp_config

    spec = load_board(board)
    cc = spec.cc.split()[0]
    if shutil.which(cc) is None:
        if any(t in os.environ.get("RFEDGE_REQUIRE", "").replace(",", " ").split() for t in ("qemu", cc)):
            pytest.fail(f"RFEDGE_REQUIRE asks for {board} but {cc} is not installed")
        pytest.skip(f"{cc} not installed (apt-get install {' '.join(spec.apt)})")
    write_dsp_config(tmp_path, FeatureConfig().to_dict(), {"mean": [0] * 14, "std": [1] * 14}, 0.05, 0)
    for src in sorted(DSP_DIR.glob("*.c")):
        cmd = spec.cc.split() + list(spec.build["cflags"]) + ["-Werror", "-ffp-contract=off", "-I", str(DSP_DIR),
                                                               "-I", str(tmp_path), "-c", str(src), "-o",
                                                               str(tmp_path / (src.stem + ".o"))]
        if single:
            cmd.append("-DRFE_DSP_SINGLE_PRECISION")
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
