"""Feature sets of paper 003 §IV-C: each statistic against numpy/scipy or a worked example, the
set layouts against their names, and the whole thing on a small simulated dataset."""

import io
import math

import numpy as np
import pytest
import pywt
from scipy import stats

from rfedge import rfid_features as F
from rfedge.errors import RfedgeError

I = {name: k for k, name in enumerate(F.STAT_NAMES)}


def reference_stats(x, bins=F.HIST_BINS):
    """The 14 statistics of one signal from numpy/scipy, one by one."""
    counts, edges = np.histogram(x, bins=bins, range=(x.min(), x.max()) if x.max() > x.min() else None)
    if x.max() == x.min():
        counts = np.zeros(bins, int)
        counts[0] = len(x)
        centres = np.full(bins, x[0])
    else:
        centres = 0.5 * (edges[:-1] + edges[1:])
    const = x.max() == x.min()
    return np.array([
        centres[np.argmax(counts)], np.median(x), np.percentile(x, 25), np.percentile(x, 75), np.mean(x),
        np.max(x), np.min(x), np.ptp(x), np.var(x), np.std(x), stats.moment(x, 3),
        0.0 if const else stats.kurtosis(x, fisher=True, bias=True),
        0.0 if const else stats.skew(x, bias=True), stats.entropy(counts),
    ])


@pytest.mark.parametrize("dist", ["normal", "exponential", "uniform", "integers"])
def test_stats14_match_numpy_and_scipy_on_random_signals(dist):
    rng = np.random.default_rng(7)
    draw = {"normal": lambda s: rng.normal(3, 2, s), "exponential": lambda s: rng.exponential(1.5, s),
            "uniform": lambda s: rng.uniform(-1, 1, s), "integers": lambda s: rng.integers(0, 6, s) * 1.0}
    x = draw[dist]((6, 4, 35))
    got = F.stats14(x)
    assert got.shape == (6, 4, 14) and got.dtype == np.float32
    for idx in np.ndindex(6, 4):
        np.testing.assert_allclose(got[idx], reference_stats(x[idx]), rtol=2e-5, atol=2e-5)


def test_histogram_mode_and_entropy_worked_example():
    # min 0, max 10, B = 10: unit bins; 10 lands in the last (closed) bin.
    x = np.array([0.0, 1.0, 1.0, 2.0, 10.0])
    np.testing.assert_array_equal(F.histogram(x), [1, 2, 1, 0, 0, 0, 0, 0, 0, 1])
    s = F.stats14(x)
    assert s[I["mode"]] == pytest.approx(1.5)                       # centre of bin [1, 2)
    assert s[I["entropy"]] == pytest.approx(-(3 * 0.2 * math.log(0.2) + 0.4 * math.log(0.4)))
    # A tie between the first and last bins goes to the first.
    t = F.stats14(np.array([0.0, 0.0, 10.0, 10.0]))
    assert t[I["mode"]] == pytest.approx(0.5) and t[I["entropy"]] == pytest.approx(math.log(2))


def test_constant_signal_gives_finite_documented_values():
    s = F.stats14(np.full(35, 3.25))
    want = dict(mode=3.25, median=3.25, q1=3.25, q3=3.25, mean=3.25, max=3.25, min=3.25, range=0, variance=0,
                std=0, m3=0, kurtosis=0, skewness=0, entropy=0)
    np.testing.assert_allclose(s, [want[k] for k in F.STAT_NAMES], atol=1e-6)


def test_two_valued_signal():
    x = np.r_[np.zeros(10), np.ones(25)]
    s = F.stats14(x)
    np.testing.assert_allclose(s, reference_stats(x), rtol=1e-5, atol=1e-6)
    assert s[I["mode"]] == pytest.approx(0.95)                      # 25 ones in the last bin
    assert s[I["kurtosis"]] == pytest.approx(stats.kurtosis(x))     # Fisher: -2 + ... for a Bernoulli
    assert s[I["entropy"]] == pytest.approx(-(10 / 35 * math.log(10 / 35) + 25 / 35 * math.log(25 / 35)))


def test_single_sample_and_bad_input():
    assert np.isfinite(F.stats14(np.array([2.0]))).all()
    with pytest.raises(RfedgeError, match="finite"):
        F.stats14(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(RfedgeError, match="at least one sample"):
        F.stats14(np.zeros((3, 0)))


def test_pearson():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2, 5, 35))
    b[1] = 2 * a[1] + 1
    r = F.pearson(a, b)
    np.testing.assert_allclose(r, [np.corrcoef(a[i], b[i])[0, 1] for i in range(5)], rtol=1e-5)
    assert r[1] == pytest.approx(1.0)
    assert F.pearson(np.ones(35), a[0]) == 0.0 and F.pearson(a[0], np.full(35, -2.0)) == 0.0
    with pytest.raises(RfedgeError, match="one shape"):
        F.pearson(a, b[:, :30])


def _signals(n=7, seed=9):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 2, 2, 35)), rng.normal(0, 3, (n, 2, 2, 35)), rng.normal(0, 0.1, (n, 2, 35))


def test_spr_layout_follows_names():
    rss, phase, _ = _signals()
    X = F.spr_features(rss, phase)
    names = F.feature_names("SPR")
    assert X.shape == (7, 116) and len(names) == 116 == len(set(names))
    col = {nm: X[:, k] for k, nm in enumerate(names)}
    np.testing.assert_allclose(col["L1_a2_phase_std"], phase[:, 1, 1].std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(col["R1_a1_rss_median"], np.median(rss[:, 0, 0], axis=1), rtol=1e-5)
    np.testing.assert_allclose(col["R1_a2_rss_q3"], np.percentile(rss[:, 0, 1], 75, axis=1), rtol=1e-5)
    np.testing.assert_allclose(col["L1_a1_pearson_rss_phase"],
                               [np.corrcoef(rss[i, 1, 0], phase[i, 1, 0])[0, 1] for i in range(7)], rtol=1e-4)
    assert names[:14] == [f"R1_a1_rss_{s}" for s in F.STAT_NAMES]


def test_sa_and_wa_layouts():
    _, _, aoa = _signals()
    SA = F.sa_features(aoa)
    assert SA.shape == (7, 29) and len(F.feature_names("SA")) == 29
    np.testing.assert_allclose(SA[:, 14:28], F.stats14(aoa[:, 1]))
    np.testing.assert_allclose(SA[:, 28], [np.corrcoef(aoa[i, 0], aoa[i, 1])[0, 1] for i in range(7)], rtol=1e-4)
    WA = F.wa_features(aoa)
    assert WA.shape == (7, 38) and len(F.feature_names("WA")) == 38
    for i in range(7):
        for j in range(2):
            ca, _ = pywt.dwt(aoa[i, j], "db2", mode="symmetric")
            assert len(ca) == 19
            np.testing.assert_allclose(WA[i, 19 * j:19 * (j + 1)], ca, rtol=1e-5, atol=1e-7)
    assert len(pywt.dwt(aoa[0, 0], "db2", mode="periodization")[0]) == 18     # why not that mode


def test_bad_shapes_and_names():
    rss, phase, aoa = _signals()
    with pytest.raises(RfedgeError, match=r"rss of shape \[N, 2, 2, samples\]"):
        F.spr_features(rss[:, :1], phase[:, :1])
    with pytest.raises(RfedgeError, match="one shape"):
        F.spr_features(rss, phase[..., :30])
    with pytest.raises(RfedgeError, match=r"aoa of shape \[N, 2, samples\]"):
        F.sa_features(aoa[:, :, None])
    with pytest.raises(RfedgeError, match="aoa of shape"):
        F.wa_features(aoa[:, :1])
    with pytest.raises(RfedgeError, match="expected a feature set name"):
        F.feature_names("XYZ")


def test_feature_sets_on_a_small_dataset(tmp_path):
    from rfedge.sim.rfid import synth_rfid_dataset

    d = synth_rfid_dataset(tmp_path / "ds", overrides={"participants": 1, "repetitions": 3})   # 63 trials
    fs = F.feature_sets(d, stream=io.StringIO())
    assert set(fs) == {"SPR", "SA", "WA"}
    for k, width in (("SPR", 116), ("SA", 29), ("WA", 38)):
        assert fs[k].shape == (63, width) and fs[k].dtype == np.float32 and np.isfinite(fs[k]).all()
        assert len(fs.names[k]) == width
    assert fs.labels.shape == (63,) and len(fs.trials) == 63 and len(fs.label_names) == 21
    np.testing.assert_array_equal(fs["WA"], F.wa_features(fs.signals.aoa))
    # The gestures differ in these features: a one-handed right-arm gesture moves the right
    # tag's AoA more than the left one's (range statistic of SA), on average.
    rng_r = fs["SA"][:, F.feature_names("SA").index("R1_aoa_range")]
    rng_l = fs["SA"][:, F.feature_names("SA").index("L1_aoa_range")]
    right_only = np.array([t["hands"] == 1 and t["label_name"] not in ("LAC",) for t in fs.trials])
    assert np.mean(rng_r[right_only]) > 2 * np.mean(rng_l[right_only])
    again = F.feature_sets(d, stream=io.StringIO())
    for k in fs:
        np.testing.assert_array_equal(again[k], fs[k])
    with pytest.raises(RfedgeError, match="two tags"):
        F.feature_sets(d, tags=("R1", "R2", "L1"))
