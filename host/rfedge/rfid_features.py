"""The three per-device feature sets of paper 003 (§IV-C, §VI-B1) from the signals of
rfedge.rfid_dsp: SPR (116), SA (29) and WA (38) features per trial.

Every function works on the last axis of its input (the 35 samples of a signal) and is
vectorized over all leading axes (trials, tags, antennas); results are float32.

``stats14(x)`` — the 14 statistics, in this order, of a signal x_0..x_{n-1} (n >= 1). Written so
they can be recomputed in fixed point on the device; all sums run over the n samples:

   0 mode      centre of the most populated bin of the B-bin histogram (B = HIST_BINS = 10) of
               equal bins spanning [min, max]: bin of x is b = floor((x - min) * B / (max - min)),
               and x = max goes to bin B-1 (numpy.histogram's closed last bin). Ties go to the
               lowest bin. mode = min + (b + 0.5) * (max - min) / B. Constant signal: all samples
               fall in bin 0, mode = min.
   1 median    the 0.5 quantile, rule below
   2 Q1        the 0.25 quantile. Quantile q of the sorted s_0 <= ... <= s_{n-1}: with
               h = q (n - 1), i = floor(h): s_i + (h - i) (s_{i+1} - s_i) (s_i when i = n - 1);
               numpy's default "linear" method
   3 Q3        the 0.75 quantile
   4 mean      m = Σ x / n
   5 max
   6 min
   7 range     max - min
   8 variance  m2 = Σ (x - m)^2 / n (population, ddof 0)
   9 std       sqrt(m2)
  10 m3        third central moment Σ (x - m)^3 / n
  11 kurtosis  Fisher (excess) kurtosis m4 / m2^2 - 3 with m4 = Σ (x - m)^4 / n; equals
               scipy.stats.kurtosis(x, fisher=True, bias=True)
  12 skewness  m3 / m2^1.5; equals scipy.stats.skew(x, bias=True)
  13 entropy   Shannon entropy in nats of the histogram of the mode: -Σ_b p_b ln p_b over the
               bins with p_b = count_b / n > 0 (0 for a constant signal, ln B at most)

Constant signals (max == min, hence m2 = 0): kurtosis and skewness are 0 by convention (scipy
gives NaN); every other statistic is finite by its definition. No output is NaN or inf for
finite input; non-finite input is an error.

``pearson(a, b)`` — Σ (a - ā)(b - b̄) / sqrt(Σ (a - ā)^2 · Σ (b - b̄)^2), clipped to [-1, 1];
0 when either input is constant.

Feature sets (see ``feature_names`` for the exact order and names):

  SPR (116): stats14 of the 8 signals in the order tag, antenna, {rss, phase} (tag-major), then
             4 Pearson correlations rss vs phase per (tag, antenna), same order
  SA  (29):  stats14 of AoA of tag 1, then of tag 2, then Pearson(AoA1, AoA2)
  WA  (38):  single-level db2 DWT approximation coefficients of AoA of tag 1 then tag 2,
             pywt.dwt(x, "db2", mode="symmetric"): half-sample symmetric extension (x_{-1} = x_0,
             ...), which gives floor((35 + 4 - 1) / 2) = 19 coefficients; "periodization" would
             give 18
"""

from __future__ import annotations

import numpy as np
import pywt

from rfedge.errors import RfedgeError

HIST_BINS = 10          # histogram of mode and entropy: 3.5 samples per bin at n = 35
STAT_NAMES = ("mode", "median", "q1", "q3", "mean", "max", "min", "range", "variance", "std",
              "m3", "kurtosis", "skewness", "entropy")
WAVELET = "db2"
DWT_MODE = "symmetric"
SET_NAMES = ("SPR", "SA", "WA")


def _finite(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise RfedgeError(f"expected {what} with at least one sample on the last axis, got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise RfedgeError(f"expected finite {what}, got NaN or inf")
    return x


def histogram(x, bins: int = HIST_BINS) -> np.ndarray:
    """Counts [..., bins] of the equal-width histogram of each signal between its min and max
    (the rule of the module docstring)."""
    x = _finite(x, "signals")
    lo = x.min(axis=-1, keepdims=True)
    span = x.max(axis=-1, keepdims=True) - lo
    b = np.floor((x - lo) * (bins / np.where(span > 0, span, 1.0))).astype(np.int64)
    b = np.clip(b, 0, bins - 1)
    return (b[..., None] == np.arange(bins)).sum(axis=-2)


def stats14(x) -> np.ndarray:
    """The 14 statistics of the module docstring of each signal: [..., n] -> [..., 14] float32."""
    x = _finite(x, "signals")
    n = x.shape[-1]
    lo, hi = x.min(axis=-1), x.max(axis=-1)
    span = hi - lo
    counts = histogram(x)
    b = np.argmax(counts, axis=-1)                     # first maximum: ties -> lowest bin
    mode = lo + (b + 0.5) * span / HIST_BINS
    p = counts / n
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75], axis=-1)
    mean = x.mean(axis=-1)
    d = x - mean[..., None]
    m2 = np.mean(d ** 2, axis=-1)
    m3 = np.mean(d ** 3, axis=-1)
    m4 = np.mean(d ** 4, axis=-1)
    flat = (span == 0) | (m2 <= 0)
    safe = np.where(flat, 1.0, m2)
    kurt = np.where(flat, 0.0, m4 / safe ** 2 - 3.0)
    skew = np.where(flat, 0.0, m3 / safe ** 1.5)
    out = np.stack([mode, med, q1, q3, mean, hi, lo, span, m2, np.sqrt(m2), m3, kurt, skew, entropy], axis=-1)
    return out.astype(np.float32)


def pearson(a, b) -> np.ndarray:
    """Pearson correlation along the last axis ([..., n] x [..., n] -> [...]); 0 when either
    signal is constant."""
    a = _finite(a, "signals")
    b = _finite(b, "signals")
    if a.shape != b.shape:
        raise RfedgeError(f"expected two signal arrays of one shape, got {list(a.shape)} and {list(b.shape)}")
    da = a - a.mean(axis=-1, keepdims=True)
    db = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt(np.sum(da * da, axis=-1) * np.sum(db * db, axis=-1))
    r = np.where(den > 0, np.sum(da * db, axis=-1) / np.where(den > 0, den, 1.0), 0.0)
    return np.clip(r, -1.0, 1.0).astype(np.float32)


def _shape(x, want: tuple, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != len(want) + 1 or x.shape[1:-1] != want[:-1] or x.shape[-1] < 2:
        raise RfedgeError(f"expected {what} of shape [N, {', '.join(map(str, want[:-1]))}, samples], "
                          f"got {list(x.shape)}")
    return x


def spr_features(rss, phase) -> np.ndarray:
    """SPR: rss, phase [N, 2 tags, 2 antennas, n] -> [N, 116] float32."""
    rss = _shape(rss, (2, 2, 0), "rss")
    phase = _shape(phase, (2, 2, 0), "phase")
    if rss.shape != phase.shape:
        raise RfedgeError(f"expected rss and phase of one shape, got {list(rss.shape)} and {list(phase.shape)}")
    sig = np.stack([rss, phase], axis=3)                    # [N, tag, antenna, {rss, phase}, n]
    st = stats14(sig).reshape(len(rss), -1)                 # tag, antenna, signal, statistic
    corr = pearson(rss, phase).reshape(len(rss), -1)        # tag, antenna
    return np.concatenate([st, corr], axis=1).astype(np.float32)


def sa_features(aoa) -> np.ndarray:
    """SA: aoa [N, 2 tags, n] -> [N, 29] float32."""
    aoa = _shape(aoa, (2, 0), "aoa")
    st = stats14(aoa).reshape(len(aoa), -1)
    return np.concatenate([st, pearson(aoa[:, 0], aoa[:, 1])[:, None]], axis=1).astype(np.float32)


def wa_features(aoa) -> np.ndarray:
    """WA: aoa [N, 2 tags, n] -> [N, 2 * floor((n + 3) / 2)] float32 (38 for n = 35)."""
    aoa = _shape(aoa, (2, 0), "aoa")
    ca, _ = pywt.dwt(_finite(aoa, "aoa"), WAVELET, mode=DWT_MODE, axis=-1)
    return ca.reshape(len(aoa), -1).astype(np.float32)


def feature_names(set_name: str, tags=("R1", "L1"), n_samples: int = 35) -> list[str]:
    """Names of the columns of feature set ``set_name`` ("SPR", "SA", "WA") in order."""
    tags = list(tags)
    if set_name == "SPR":
        sigs = [f"{t}_a{a}_{s}" for t in tags for a in (1, 2) for s in ("rss", "phase")]
        return ([f"{s}_{st}" for s in sigs for st in STAT_NAMES]
                + [f"{t}_a{a}_pearson_rss_phase" for t in tags for a in (1, 2)])
    if set_name == "SA":
        return [f"{t}_aoa_{st}" for t in tags for st in STAT_NAMES] + [f"pearson_aoa_{tags[0]}_{tags[1]}"]
    if set_name == "WA":
        n = pywt.dwt_coeff_len(n_samples, pywt.Wavelet(WAVELET).dec_len, DWT_MODE)
        return [f"{t}_aoa_{WAVELET}_a{k}" for t in tags for k in range(n)]
    raise RfedgeError(f"expected a feature set name from {list(SET_NAMES)}, got {set_name!r}")


class FeatureSets(dict):
    """{"SPR": [N, 116], "SA": [N, 29], "WA": [N, 38]} float32, plus, as attributes:
    ``labels`` int64 [N], ``label_names``, ``trials`` (the manifest's per-trial metadata, e.g.
    "user", "repetition"), ``names`` {set: column names}, ``tags`` and ``signals`` (the
    rfedge.rfid_dsp.RfidSignals the features were computed from)."""


def features_from_signals(signals) -> dict:
    """{"SPR", "SA", "WA"} arrays of an rfedge.rfid_dsp.RfidSignals (or anything with rss, phase,
    aoa attributes of its shapes)."""
    return {"SPR": spr_features(signals.rss, signals.phase), "SA": sa_features(signals.aoa),
            "WA": wa_features(signals.aoa)}


def feature_sets(dataset_dir, cache: bool = True, tags=None, stream=None) -> FeatureSets:
    """The three feature sets of every trial of an rfid dataset (path or open Dataset).

    The signal processing result is cached by rfedge.rfid_dsp.dataset_signals (``cache``); the
    features themselves take milliseconds and are recomputed."""
    from rfedge import rfid_dsp
    from rfedge.data.dataset import Dataset

    ds = dataset_dir if isinstance(dataset_dir, Dataset) else Dataset.open(dataset_dir)
    tags = tuple(tags or rfid_dsp.DEFAULT_TAGS)
    if len(tags) != 2:
        raise RfedgeError(f"expected two tags (one per hand), got {list(tags)}", field="tags")
    sig = rfid_dsp.dataset_signals(ds, tags=tags, cache=cache, stream=stream)
    out = FeatureSets(features_from_signals(sig))
    out.labels = ds.labels
    out.label_names = list(ds.label_names)
    out.trials = ds.trials
    out.names = {k: feature_names(k, tags, sig.aoa.shape[-1]) for k in SET_NAMES}
    out.tags = tags
    out.signals = sig
    return out
