"""rfedge.dsp against hand computations and scipy, and end-to-end properties of rfedge.features."""

import json
import warnings

import numpy as np
import pytest
import scipy.signal

from rfedge import dsp
from rfedge.errors import RfedgeError
from rfedge.features import FeatureConfig, window_features
from rfedge.sim.csi import HT20_USED
from rfedge.sim.csi_stream import synth_stream

RNG = np.random.default_rng(1234)


# ---- amplitude, phase, ratio -----------------------------------------------------------------------

def test_amplitude_is_the_modulus():
    assert np.allclose(dsp.amplitude(np.array([3 + 4j, -5j, 0j])), [5.0, 5.0, 0.0])


def _phase_shape(k):
    # Small and smooth enough that the true phase never jumps by more than π between used
    # subcarriers, so unwrapping recovers it up to a multiple of 2π.
    return 0.3 * np.cos(2 * np.pi * k / 20.0) + 0.1 * (k / 28.0) ** 3


def test_sanitize_phase_leaves_the_shape_minus_its_own_line():
    k = HT20_USED.astype(float)
    shape = _phase_shape(k)
    a = RNG.uniform(-np.pi, np.pi, (6, 1))
    b = RNG.uniform(-0.3, 0.3, (6, 1))
    amp = RNG.uniform(0.5, 2.0, (6, len(k)))
    csi = amp * np.exp(1j * (a + b * k + shape))
    # The least-squares line of the shape over k, from np.polyfit rather than the formula used.
    slope, icpt = np.polyfit(k, shape, 1)
    want = shape - (icpt + slope * k)
    got = dsp.sanitize_phase(csi, HT20_USED)
    assert np.allclose(got, want[None], atol=1e-9)
    assert np.allclose(got.mean(-1), 0.0, atol=1e-12)


def test_sanitize_phase_ignores_any_per_packet_line():
    # CFO (a) and timing slope (b) of each packet must vanish entirely, however large the slope:
    # b·56 spans several turns, which the unwrap has to follow.
    k = HT20_USED.astype(float)
    csi = RNG.uniform(0.5, 2.0, (8, len(k))) * np.exp(1j * _phase_shape(k))[None]
    a = RNG.uniform(-np.pi, np.pi, (8, 1))
    b = RNG.uniform(-1.2, 1.2, (8, 1))
    rotated = csi * np.exp(1j * (a + b * k))
    assert np.allclose(dsp.sanitize_phase(rotated, HT20_USED), dsp.sanitize_phase(csi, HT20_USED), atol=1e-9)


def test_csi_ratio_cancels_a_common_per_packet_factor_exactly():
    # paper 000: two chains of one radio share CFO, timing and AGC, a per-packet complex factor.
    A = RNG.normal(size=(5, 56)) + 1j * RNG.normal(size=(5, 56))
    B = RNG.normal(size=(5, 56)) + 1j * RNG.normal(size=(5, 56))
    c = (RNG.uniform(0.2, 5.0, (5, 1)) * np.exp(1j * RNG.uniform(-np.pi, np.pi, (5, 1))))
    assert np.allclose(dsp.csi_ratio(c * A, c * B), A / B, rtol=1e-12, atol=0)


def test_csi_ratio_reference_subcarrier():
    A = RNG.normal(size=(4, 10)) + 1j * RNG.normal(size=(4, 10))
    c = np.exp(1j * RNG.uniform(-np.pi, np.pi, (4, 1))) * 3.0
    r = dsp.csi_ratio(c * A, 3)
    assert r.shape == A.shape
    assert np.allclose(r, A / A[:, 3:4], rtol=1e-12, atol=0)
    assert np.allclose(r[:, 3], 1.0)
    # np.int64 works like int.
    assert np.array_equal(dsp.csi_ratio(A, np.int64(3)), dsp.csi_ratio(A, 3))


def test_csi_ratio_is_zero_where_the_reference_is_zero_without_warnings():
    A = np.array([[1 + 1j, 2.0, 0j], [4j, 0j, 1.0]])
    ref = np.array([[0j, 1.0, 0j], [2.0, 0j, 1j]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = dsp.csi_ratio(A, ref)
        r_sub = dsp.csi_ratio(np.array([[0j, 5.0], [1.0, 2.0]]), 0)
    assert np.allclose(r, [[0, 2.0, 0], [2j, 0, -1j]])
    assert np.allclose(r_sub, [[0, 0], [1.0, 2.0]])


# ---- resampling ------------------------------------------------------------------------------------

def test_resample_uniform_by_hand_with_edge_hold():
    t_us = np.array([0, 15_000, 20_000, 45_000])
    v = np.array([1.0, 4.0, 2.0, 8.0])
    # Grid 0, 10, ..., 50 ms: 1 | 1 + 3·10/15 | 2 | 2 + 6·10/25 | 2 + 6·20/25 | held 8.
    got = dsp.resample_uniform(v, t_us, 100.0, 6)
    assert np.allclose(got, [1.0, 3.0, 2.0, 4.4, 6.8, 8.0])
    # Starting 10 ms before the first packet holds the first value.
    assert np.allclose(dsp.resample_uniform(v, t_us, 100.0, 2, t0_us=-10_000), [1.0, 1.0])


def test_resample_uniform_complex_and_trailing_axes():
    t_us = np.array([0, 15_000, 20_000, 45_000])
    base = np.array([1.0, 4.0, 2.0, 8.0])
    want = np.array([1.0, 3.0, 2.0, 4.4, 6.8, 8.0])
    coef = np.array([[1 + 2j, -1j], [0.5, 3.0], [-2.0 + 1j, 1e-3j]])    # [3, 2]
    v = base[:, None, None] * coef[None]
    got = dsp.resample_uniform(v, t_us, 100.0, 6)
    assert got.shape == (6, 3, 2) and np.iscomplexobj(got)
    assert np.allclose(got, want[:, None, None] * coef[None])


def test_resample_uniform_needs_packets():
    with pytest.raises(RfedgeError, match="no packets"):
        dsp.resample_uniform(np.zeros((0, 3)), np.zeros(0), 100.0, 4)


# ---- Doppler band, window, STFT --------------------------------------------------------------------

def test_doppler_bins_paper_002_eq_11_by_hand():
    # f_max = f_c v_max / c = 2.437e9 · 2 / 299792458 = 16.258 Hz; m_max = floor(16.258·32/100) = 5.
    assert abs(2.437e9 * 2.0 / 299_792_458.0 - 16.258) < 1e-3
    assert dsp.doppler_bins(32, 100.0, 2.437e9, 2.0).tolist() == [1, 2, 3, 4, 5]
    assert dsp.doppler_bins(32, 100.0, 2.437e9, 2.0, include_dc=True).tolist() == [0, 1, 2, 3, 4, 5]
    # The feature segment rate 128 / 1.6 s = 80 Hz: floor(16.258·32/80) = floor(6.50) = 6.
    assert dsp.doppler_bins(32, 80.0, 2.437e9, 2.0).tolist() == [1, 2, 3, 4, 5, 6]
    # Never past Nyquist.
    assert dsp.doppler_bins(32, 100.0, 2.437e9, 100.0)[-1] == 16


@pytest.mark.parametrize("L", [8, 31, 32, 64])
def test_hann_is_scipys_periodic_hann(L):
    assert np.allclose(dsp.hann(L), scipy.signal.get_window("hann", L), atol=1e-15)


def test_stft_bins_matches_scipy_stft():
    x = RNG.normal(size=(200, 3))
    L, H = 32, 4
    bins = dsp.doppler_bins(L, 100.0, 2.437e9, 2.0)
    got = dsp.stft_bins(x, L, H, bins)
    # scipy's legacy stft scales each frame by 1 / sum(window); no boundary padding, frames at
    # 0, H, 2H, ... as ours.
    _, _, Z = scipy.signal.stft(x.T, fs=1.0, window="hann", nperseg=L, noverlap=L - H, boundary=None,
                                padded=False, detrend=False, return_onesided=True)
    want = np.abs(Z[:, bins, :] * dsp.hann(L).sum()) ** 2
    assert got.shape == (3, len(bins), 1 + (200 - L) // H) == want.shape
    assert np.allclose(got, want, rtol=1e-10, atol=1e-12)


def test_stft_bins_matches_a_direct_fft_per_frame():
    x = RNG.normal(size=(50, 2))
    L, H, bins = 16, 5, np.array([0, 2, 7])
    got = dsp.stft_bins(x, L, H, bins)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(L) / L)
    for c in range(2):
        for t in range(got.shape[2]):
            spec = np.fft.fft(x[t * H:t * H + L, c] * w)
            assert np.allclose(got[c, :, t], np.abs(spec[bins]) ** 2)


def test_stft_bins_rejects_a_short_window():
    with pytest.raises(RfedgeError, match="shorter than the STFT length"):
        dsp.stft_bins(np.zeros((10, 1)), 32, 4, np.array([1]))


def test_log_power():
    eps = 1e-3
    assert np.allclose(dsp.log_power(np.array([0.0, np.e - eps]), eps), [np.log(eps), 1.0])


def test_group_subcarriers_by_hand():
    # 10 subcarriers into 3 groups: edges round(0, 3.33, 6.67, 10) = 0, 3, 7, 10.
    a = np.arange(10.0)
    assert np.allclose(dsp.group_subcarriers(a, 3), [1.0, 4.5, 8.0])
    two = np.stack([a, 10 * a])
    assert np.allclose(dsp.group_subcarriers(two, 3), [[1.0, 4.5, 8.0], [10.0, 45.0, 80.0]])
    # 56 into 14 groups of 4.
    assert np.allclose(dsp.group_subcarriers(np.arange(56.0), 14), np.arange(14) * 4 + 1.5)


# ---- normalizer ------------------------------------------------------------------------------------

def test_normalizer_fits_per_channel_and_round_trips():
    X = RNG.normal(size=(7, 3, 2, 5)) * np.array([1.0, 5.0, 0.1])[None, :, None, None] \
        + np.array([0.0, -3.0, 10.0])[None, :, None, None]
    norm = dsp.Normalizer.fit(X)
    for c in range(3):
        assert abs(norm.mean[c] - X[:, c].mean()) < 1e-5
        assert abs(norm.std[c] - (X[:, c].std() + 1e-6)) < 1e-5
    Z = norm(X)
    assert Z.dtype == np.float32
    assert np.allclose(Z.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    assert np.allclose(Z.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    back = dsp.Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back.mean.dtype == np.float32 and np.array_equal(back.mean, norm.mean)
    assert np.array_equal(back.std, norm.std)
    assert np.array_equal(back(X), Z)


# ---- rfedge.features end to end --------------------------------------------------------------------

def _window(seed, gesture):
    """A 2.5 s receiver-0 window (complex [P, 56], t_us) from the stream simulator, AGC steps off.

    With gesture=False the whole window is the hand at rest (tremor, breathing, noise).
    """
    st = synth_stream({"agc_step_rate_hz": 0.0}, seed=seed, minutes=2.5 / 60,
                      lead_s=0.4 if gesture else 10.0, pause_s=(1.0, 1.0))
    assert bool(st.gestures) == gesture
    return st.csi, st.t_us


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(groups=7, win_len=16, hop=8, n_samples=96),
                                 FeatureConfig(segment=True, threshold=3.0)])
def test_features_shape_dtype_and_determinism(cfg):
    csi, t_us = _window(0, gesture=True)
    X = window_features(csi, t_us, cfg)
    assert X.shape == cfg.shape and X.dtype == np.float32 and np.isfinite(X).all()
    assert np.array_equal(X, window_features(csi.copy(), t_us.copy(), cfg))


def test_features_roughly_ignore_a_constant_gain():
    # What holds today (see the strict test below): a 6 dB gain moves X by well under 1 dB of power.
    for gesture in (False, True):
        csi, t_us = _window(1, gesture)
        X = window_features(csi, t_us, FeatureConfig())
        X2 = window_features(2.0 * csi, t_us, FeatureConfig())
        assert np.abs(X2 - X).max() < 0.3


def test_features_ignore_a_constant_gain_exactly():
    # log|g·H| = log g + log|H|; resampling, step removal and the activity score are linear or
    # difference-based, and the window mean is removed, so the AGC level cannot reach X.
    csi, t_us = _window(1, gesture=True)
    X = window_features(csi, t_us, FeatureConfig())
    for g in (0.5, 2.0):
        assert np.abs(window_features(g * csi, t_us, FeatureConfig()) - X).max() < 1e-4


def _with_step(csi, at, db=1.5):
    g = np.ones(len(csi))
    g[at:] = 10 ** (db / 20)
    return csi * g[:, None]


def test_features_mostly_ignore_an_agc_step_in_a_static_window():
    # A 1.5 dB AGC step halfway through a window where nothing moves: without step removal it
    # is the loudest thing in the spectrogram; with it, what is left is the error of estimating
    # the step from noisy subcarriers, far smaller.
    from rfedge.features import features_from_logamp

    cfg = FeatureConfig()
    for seed in range(3):
        csi, t_us = _window(10 + seed, gesture=False)
        stepped = _with_step(csi, len(csi) // 2)
        X = window_features(csi, t_us, cfg)
        la = np.log1p(np.abs(stepped))
        n = int(np.floor((t_us[-1] - t_us[0]) * 1e-6 * cfg.rate_hz)) + 1
        raw = features_from_logamp(dsp.resample_uniform(la, t_us, cfg.rate_hz, n), cfg)
        kept = np.abs(window_features(stepped, t_us, cfg) - X).mean()
        assert kept < 0.5 * np.abs(raw - X).mean()


def test_features_undo_an_agc_step_between_grid_instants():
    from rfedge.features import uniform_logamp

    csi, t_us = _window(20, gesture=False)
    # The packet whose interval from its predecessor has a grid instant nearest its middle: the
    # interpolated step is split in two halves there.
    t = (t_us - t_us[0]) * 1e-4                      # in grid periods
    mid = (t[1:] + t[:-1]) / 2
    frac = np.abs(mid - np.round(mid))
    p = 1 + int(np.argmin(np.where((np.arange(1, len(t)) > 50) & (np.arange(1, len(t)) < len(t) - 50)
                                   & (np.diff(t) < 1.3), frac, np.inf)))
    common = (uniform_logamp(_with_step(csi, p), t_us, 100.0) - uniform_logamp(csi, t_us, 100.0)).mean(axis=1)
    assert np.ptp(common) < 0.02   # the step is 0.173 in log-amplitude
