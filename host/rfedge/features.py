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
    cross_antenna: bool = False   # + 4 handedness channels from the receiver's 2 antennas
                                  # (rfedge.handedness; host-side only, no device DSP)

    def __post_init__(self):
        if self.cross_antenna and self.segment:
            from rfedge.errors import RfedgeError

            raise RfedgeError("FeatureConfig: cross_antenna channels follow the whole window; they need "
                              "segment = false", field="cross_antenna")

    @property
    def seg_rate_hz(self) -> float:
        return self.n_samples / self.segment_s

    @property
    def bins(self) -> np.ndarray:
        return dsp.doppler_bins(self.win_len, self.seg_rate_hz, self.carrier_hz, self.v_max)

    @property
    def shape(self) -> tuple[int, int, int]:
        from rfedge.handedness import CHANNELS

        C = self.groups + (CHANNELS if self.cross_antenna else 0)
        return (C, len(self.bins), 1 + (self.n_samples - self.win_len) // self.hop)

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
    """One CSI window (complex [P, S], timestamps µs [P]) -> X [C, F, T] float32 (the amplitude
    channels: cross_antenna channels need every antenna, see ``trial_features``)."""
    if cfg.cross_antenna:
        raise ValueError("window_features takes one antenna; use trial_features for cross_antenna configs")
    return features_from_logamp(uniform_logamp(csi, t_us, cfg.rate_hz), cfg)


def segment_grid(t_us: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The instants (µs) of the ``n_samples`` time-normalized samples of a window without
    segmentation: resampled at ``rate_hz`` from its first packet over floor(duration rate) + 1
    samples, stretched onto n_samples (what features_from_logamp does, as times)."""
    t = np.asarray(t_us, np.float64)
    n_uni = max(int(np.floor((t[-1] - t[0]) * 1e-6 * cfg.rate_hz)) + 1, 2)
    return t[0] + np.linspace(0, n_uni - 1, cfg.n_samples) * (1e6 / cfg.rate_hz)


def trial_receiver(ds, i: int, receiver: int = 0):
    """(complex [A, P, S], t_us [P]) of trial i at a receiver, all its antennas."""
    from rfedge.errors import RfedgeError

    csi = ds.array("csi")
    if csi.ndim != 6:
        raise RfedgeError("this CSI dataset has one antenna per receiver; cross-antenna features need 2 "
                          "(simulate one with --preset esp32-mirror)", field="cross_antenna")
    P = int(ds.array("n_packets")[i, receiver])
    if P < 2:
        raise RfedgeError(f"trial {i}: receiver {receiver} has {P} packets; features need at least 2",
                          field="receiver")
    x = np.asarray(csi[i, receiver, :, :P], dtype=np.float32)
    return x[..., 0] + 1j * x[..., 1], np.asarray(ds.array("t_us")[i, receiver, :P])


def receiver_features(csi: np.ndarray, t_us: np.ndarray, cfg: FeatureConfig, la: np.ndarray | None = None) -> np.ndarray:
    """One receiver's window, complex [A, P, S] (all antennas) -> X [C, F, T] float32: antenna
    0's amplitude channels, then the handedness channels when ``cfg.cross_antenna``. ``la``:
    antenna 0's uniform_logamp, if at hand."""
    if la is None:
        la = uniform_logamp(csi[0], t_us, cfg.rate_hz)
    x = features_from_logamp(la, cfg)
    if not cfg.cross_antenna:
        return x
    from rfedge.handedness import handedness_channels

    return np.concatenate([x, handedness_channels(csi, t_us, cfg)])


def trial_features(ds, i: int, cfg: FeatureConfig, la: np.ndarray | None = None) -> np.ndarray:
    """X [C, F, T] float32 of trial i of a CSI dataset (``la``: its uniform_logamp, if at hand)."""
    if not cfg.cross_antenna:
        if la is None:
            la = uniform_logamp(*trial_window(ds, i, cfg.receiver), cfg.rate_hz)
        return features_from_logamp(la, cfg)
    return receiver_features(*trial_receiver(ds, i, cfg.receiver), cfg, la)


def antennas(ds) -> int:
    """Antennas per receiver of a CSI dataset."""
    shape = ds.array("csi").shape
    return int(shape[2]) if len(shape) == 6 else 1


FEATURE_CHOICES = ("auto", "amplitude", "cross-antenna")


def config_for(ds, choice: str = "auto", model: str | None = None) -> FeatureConfig:
    """The FeatureConfig of a model of this dataset. Its receiver is the dataset's
    ``config.model_receiver`` (default 0). ``choice``: "amplitude" (the device DSP's channels),
    "cross-antenna" (+ the handedness channels of rfedge.handedness: they tell mirrored gestures
    apart where the amplitude cannot; host-side only) or "auto": cross-antenna where the receivers
    have 2 antennas, except for the hand-crafted SVM (its per-frame energy/entropy statistics are
    for log-power channels)."""
    from rfedge.errors import RfedgeError

    if choice not in FEATURE_CHOICES:
        raise RfedgeError(f"unknown feature set {choice!r}; choose one of {', '.join(FEATURE_CHOICES)}", field="features")
    two = ds.kind == "csi" and antennas(ds) >= 2
    if choice == "cross-antenna" and not two:
        raise RfedgeError("cross-antenna features need 2 antennas per receiver; this dataset has 1 (simulate one "
                          "with --preset esp32-mirror)", path=ds.path, field="features")
    # the dataset's recommended receiver (esp32-mirror: one off the link's mirror axis)
    receiver = int((ds.manifest.get("config") or {}).get("model_receiver", 0))
    return FeatureConfig(receiver=receiver,
                         cross_antenna=choice == "cross-antenna" or (choice == "auto" and two and model != "svm"))


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
            out[j] = trial_features(ds, int(i), cfg)
            p.update()
    return out
