"""Gesture activity detection (paper 002 §3.1): static channel H0 vs dynamic channel H1.

The statistic is the short-time mean absolute change of log-amplitude per sample, averaged over
subcarriers and divided by the noise floor: under H0 only noise moves it, under H1 the
Doppler-shifted paths do. AGC gain steps
move every subcarrier by the same amount in one packet; they are removed first so they are not
taken for motion. The decision threshold is chosen on training data (``fit_threshold``).
"""

from __future__ import annotations

import numpy as np

# A common jump of all subcarriers above this (natural log of amplitude, ~0.7 dB) in one packet
# is an AGC step: motion at gesture speeds changes the amplitude far less per 10 ms sample.
AGC_STEP_MIN = 0.08


def remove_agc_steps(logamp: np.ndarray, min_step: float = AGC_STEP_MIN) -> np.ndarray:
    """Undo AGC gain steps in log-amplitude [N, S] (uniformly sampled).

    A step is a sample whose change is nearly the same on every subcarrier (median well above the
    spread) and large; the common change is subtracted from that sample onwards.
    """
    d = np.diff(logamp, axis=0)
    med = np.median(d, axis=1)
    spread = np.median(np.abs(d - med[:, None]), axis=1)
    step = (np.abs(med) > min_step) & (np.abs(med) > 4 * spread)
    corr = np.concatenate([[0.0], np.cumsum(np.where(step, med, 0.0))])
    return logamp - corr[:, None]


def noise_floor(logamp: np.ndarray) -> float:
    """Per-sample noise level of log-amplitude [N, S]: the median second difference.

    Motion at gesture speeds is smooth over 10 ms samples, so second differences are mostly
    noise; the median ignores the few samples where motion is fast.
    """
    if len(logamp) < 3:
        return 1.0
    return float(max(np.median(np.abs(np.diff(logamp, 2, axis=0)).mean(axis=1)), 1e-6))


def activity_score(logamp: np.ndarray, rate_hz: float, smooth_s: float = 0.2, floor: float | None = None) -> np.ndarray:
    """Per-sample H1 statistic [N] of log-amplitude [N, S] with AGC steps already removed.

    The mean absolute change per sample, smoothed over ``smooth_s`` and divided by the noise
    floor (of this window unless given), so one threshold serves strong and weak links alike.
    """
    d = np.abs(np.diff(logamp, axis=0)).mean(axis=1)
    d = np.concatenate([d[:1], d])
    k = max(1, int(round(smooth_s * rate_hz)))
    s = np.convolve(d, np.ones(k) / k, mode="same")
    return s / (noise_floor(logamp) if floor is None else floor)


def detect_segment(score: np.ndarray, threshold: float, rate_hz: float, merge_gap_s: float = 0.3,
                   min_len_s: float = 0.2) -> tuple[int, int] | None:
    """The main active segment [start, stop) of a window, or None when nothing exceeds the threshold.

    Runs above the threshold closer than ``merge_gap_s`` are merged (a digit pauses at corners);
    the longest merged run of at least ``min_len_s`` wins.
    """
    runs = active_runs(score, threshold, rate_hz, merge_gap_s)
    runs = [(a, b) for a, b in runs if b - a >= min_len_s * rate_hz]
    if not runs:
        return None
    return max(runs, key=lambda r: r[1] - r[0])


def active_runs(score: np.ndarray, threshold: float, rate_hz: float, merge_gap_s: float = 0.3) -> list[tuple[int, int]]:
    above = np.concatenate([[False], score > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist()))
    merged = []
    gap = merge_gap_s * rate_hz
    for a, b in runs:
        if merged and a - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def fit_threshold(scores: list[np.ndarray], active: list[np.ndarray]) -> float:
    """Threshold maximizing balanced per-sample accuracy of ``score > threshold`` vs ``active``.

    ``scores[i]`` and ``active[i]`` (bool) are per-sample statistic and ground truth of training
    window i (from the simulator's onset/duration, or hand labels for real recordings).
    """
    s = np.concatenate(scores)
    y = np.concatenate(active).astype(bool)
    if y.all() or not y.any():
        raise ValueError("fit_threshold needs both active and static samples")
    cands = np.quantile(s[~y], np.linspace(0.5, 0.999, 200))
    best, best_t = -1.0, float(cands[-1])
    for t in cands:
        pred = s > t
        bacc = 0.5 * (pred[y].mean() + (~pred[~y]).mean())
        if bacc > best:
            best, best_t = bacc, float(t)
    return best_t
