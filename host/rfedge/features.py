"""From a CSI window to the model input X ∈ R^(C×F×T) (paper 002 §3.3, §4.2).

The steps, each a function in rfedge.dsp or rfedge.activity, in the order the device runs them:
log-amplitude -> uniform resampling -> AGC step removal -> activity segmentation (for long
windows; dataset trials are already cut around the gesture, as in paper 002) -> time
normalization to ``n_samples`` ->
window mean removed -> subcarrier groups -> Hann STFT at the Doppler bins -> log power.
Everything that shapes X lives in FeatureConfig, which is saved with every model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from rfedge import activity, dsp
from rfedge.progress import Progress


@dataclass
class FeatureConfig:
    rate_hz: float = 100.0        # uniform resampling rate of the raw window
    n_samples: int = 128          # samples of the time-normalized gesture segment
    segment_s: float = 2.0        # nominal segment duration: sets the Doppler bins' Hz
    segment: bool = False         # find the gesture by activity detection (streams, long windows);
                                  # False: the window is already cut around it (paper 002 §4.2)
    margin_s: float = 0.2         # kept before and after the detected activity
    groups: int = 14              # C: subcarrier groups
    win_len: int = 32             # STFT length L
    hop: int = 4                  # STFT hop H
    v_max: float = 2.0            # m/s: Doppler band |f| <= f_c v_max / c
    carrier_hz: float = 2.437e9
    eps: float = 1e-4
    threshold: float | None = None  # activity threshold; None: fitted on training data
    receiver: int = 0

    @property
    def seg_rate_hz(self) -> float:
        return self.n_samples / self.segment_s

    @property
    def bins(self) -> np.ndarray:
        return dsp.doppler_bins(self.win_len, self.seg_rate_hz, self.carrier_hz, self.v_max)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.groups, len(self.bins), 1 + (self.n_samples - self.win_len) // self.hop)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def uniform_logamp(csi: np.ndarray, t_us: np.ndarray, rate_hz: float) -> np.ndarray:
    """Log-amplitude [N, S] of a window's packets on a uniform grid, AGC steps removed."""
    # int8 magnitudes are 0 or >= 1: flooring at 0.5 keeps log finite and a gain a pure offset.
    la = np.log(np.maximum(np.abs(csi).astype(np.float64), 0.5))
    t = np.asarray(t_us, np.float64)
    n = max(int(np.floor((t[-1] - t[0]) * 1e-6 * rate_hz)) + 1, 2)
    # Steps are undone on the packets: interpolation would smear one step over two grid samples.
    return dsp.resample_uniform(activity.remove_agc_steps(la, t_us=t), t, rate_hz, n)


def gesture_segment(la: np.ndarray, cfg: FeatureConfig) -> tuple[int, int]:
    """[start, stop) samples of the gesture plus margins; the window centre when nothing moves."""
    n = len(la)
    if not cfg.segment:
        return 0, n
    seg = None
    if cfg.threshold is not None:
        seg = activity.detect_segment(activity.activity_score(la, cfg.rate_hz), cfg.threshold, cfg.rate_hz)
    if seg is None:
        half = int(cfg.segment_s * cfg.rate_hz / 2)
        return max(0, n // 2 - half), min(n, n // 2 + half)
    m = int(round(cfg.margin_s * cfg.rate_hz))
    return max(0, seg[0] - m), min(n, seg[1] + m)


def features_from_logamp(la: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    a, b = gesture_segment(la, cfg)
    seg = la[a:b]
    grid = np.linspace(0, len(seg) - 1, cfg.n_samples)
    x = np.stack([np.interp(grid, np.arange(len(seg)), seg[:, k]) for k in range(seg.shape[1])], axis=1)
    x = x - x.mean(axis=0, keepdims=True)
    g = dsp.group_subcarriers(x, cfg.groups)
    return dsp.log_power(dsp.stft_bins(g, cfg.win_len, cfg.hop, cfg.bins), cfg.eps).astype(np.float32)


def window_features(csi: np.ndarray, t_us: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """One CSI window (complex [P, S], timestamps µs [P]) -> X [C, F, T] float32."""
    return features_from_logamp(uniform_logamp(csi, t_us, cfg.rate_hz), cfg)


def trial_window(ds, i: int, receiver: int = 0):
    """(complex [P, S], t_us [P]) of trial i at a receiver of a CSI dataset (its first antenna
    when the receiver has several: the ESP32 pipeline is single-antenna)."""
    csi = ds.array("csi")
    P = int(ds.array("n_packets")[i, receiver])
    x = np.asarray(csi[i, receiver, 0, :P] if csi.ndim == 6 else csi[i, receiver, :P], dtype=np.float32)
    return x[..., 0] + 1j * x[..., 1], np.asarray(ds.array("t_us")[i, receiver, :P])


def fit_activity_threshold(ds, ids, cfg: FeatureConfig) -> float:
    """Activity threshold from training trials whose onset/duration are known (simulated data).

    Without that metadata (imported recordings) the threshold is 3x the median statistic: the
    noise floor seen by a static channel, which most samples of a gesture window still are.
    """
    scores = [activity.activity_score(uniform_logamp(*trial_window(ds, i, cfg.receiver), cfg.rate_hz), cfg.rate_hz)
              for i in ids]
    return threshold_from_scores(ds.trials, ids, scores, cfg.rate_hz)


def threshold_from_scores(trials, ids, scores, rate_hz: float) -> float:
    """The rule of ``fit_activity_threshold`` on precomputed per-trial statistics ``scores``."""
    truth = []
    for i, s in zip(ids, scores):
        t = trials[int(i)]
        if "onset_s" in t and "gesture_s" in t:
            tt = np.arange(len(s)) / rate_hz
            truth.append((tt >= t["onset_s"]) & (tt < t["onset_s"] + t["gesture_s"]))
    if len(truth) == len(scores) and any(a.any() for a in truth) and not all(a.all() for a in truth):
        return activity.fit_threshold(list(scores), truth)
    return float(3 * np.median(np.concatenate(scores)))


def dataset_features(ds, ids, cfg: FeatureConfig, desc: str = "features") -> np.ndarray:
    """X [len(ids), C, F, T] for trials ``ids`` of a CSI dataset."""
    out = np.empty((len(ids),) + cfg.shape, np.float32)
    with Progress(len(ids), desc) as p:
        for j, i in enumerate(ids):
            out[j] = window_features(*trial_window(ds, int(i), cfg.receiver), cfg)
            p.update()
    return out
