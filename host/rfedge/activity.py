"""Gesture activity detection (paper 002 §3.1): static channel H0 vs dynamic channel H1.

The statistic is the short-time mean absolute change of log-amplitude per sample, averaged over
subcarriers and divided by the noise floor: under H0 only noise moves it, under H1 the
Doppler-shifted paths do. AGC gain steps move every subcarrier by the same amount in one packet;
they are removed first so they are not taken for motion. The decision threshold is chosen on training data (``fit_threshold``).

For continuous streams (``detect_stream``) see the section at the end of this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfedge import dsp

# A common jump of all subcarriers above this (natural log of amplitude, ~0.7 dB) in one packet
# can be an AGC step; motion at gesture speeds changes the amplitude less per 10 ms sample, except
# near a fade, which is why a step must also stand out from the changes around it (below).
AGC_STEP_MIN = 0.08
# How far the median change must stand above its own noise (in standard errors of the median).
AGC_STEP_Z = 6.0
# How many times larger than the neighbouring samples' common change (per unit time) a step is:
# the gain jumps within one packet, while motion, smooth at 100 Hz, changes neighbours alike.
AGC_STEP_ISOLATION = 3.0


def remove_agc_steps(logamp: np.ndarray, min_step: float = AGC_STEP_MIN, t_us: np.ndarray | None = None) -> np.ndarray:
    """Undo AGC gain steps in log-amplitude [N, S]: uniformly sampled, or packets at ``t_us``.

    A step is a change that is (1) large, (2) common to the subcarriers — the median change is
    many standard errors from zero, the error taken from the spread (MAD) of the per-subcarrier
    changes — and (3) isolated in time: several times the common change per unit time of the
    samples on either side, scaled to its own gap. The common change, less the neighbours' trend,
    is subtracted from the step onwards. Without (3), fast motion near a fade, common to all subcarriers because the hand's
    path is nearly flat over 20 MHz, was taken for steps about once a second during gestures.

    Best done on packets (with ``t_us``) before resampling: interpolation can split a step that
    falls between two grid instants over two samples, where (3) sees neither half as isolated.
    """
    d = np.diff(logamp, axis=0)
    if len(d) == 0:
        return logamp.copy()
    med = np.median(d, axis=1)
    spread = np.median(np.abs(d - med[:, None]), axis=1)
    # Standard error of a median of S normal values: 1.2533 sigma / sqrt(S); sigma = 1.4826 MAD.
    se = 1.2533 * 1.4826 * spread / np.sqrt(d.shape[1])
    gap = np.ones(len(d)) if t_us is None else np.diff(np.asarray(t_us, np.float64))
    gap = gap / max(float(np.median(gap)), 1e-9)
    a = np.abs(med)
    rate = med / np.maximum(gap, 1e-9)
    before = np.concatenate([rate[:1], rate[:-1]]) if len(d) > 1 else rate
    after = np.concatenate([rate[1:], rate[-1:]]) if len(d) > 1 else rate
    if len(d) > 1:                       # at the ends, the one neighbour there is
        before[0], after[-1] = after[0], before[-1]
    around = np.maximum(np.abs(before), np.abs(after)) * gap
    step = (a > min_step) & (a > AGC_STEP_Z * se) & (a > AGC_STEP_ISOLATION * around)
    # The jump less the motion the neighbours show over the same gap: exact on a drifting channel.
    size = med - 0.5 * (before + after) * gap
    corr = np.concatenate([[0.0], np.cumsum(np.where(step, size, 0.0))])
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


# ---- Continuous streams: what the device runs between gestures ------------------------------------
#
# A device sees one endless stream, not windows cut around gestures: it cannot take a noise floor
# over "the whole recording", only over what it has seen. Two statistics are offered:
#
# "doppler" (default): in-band STFT power at the Doppler bins of paper 002 eq. 11 above
#   ``min_hz``, on subcarrier groups, divided by the power of the bins above the Doppler band,
#   where only noise lives (its trailing median: the floor). Skipping the lowest bin rejects the slow glides of a resting hand and
#   breathing (< ~3 Hz); grouping averages noise down before the square. With the periodic Hann
#   window, a constant leaks only into bins 0 and 1, so no mean removal is needed.
# "change": ``activity_score`` (mean |first difference| / median |second difference|), the
#   statistic that segments gesture windows, with the floor tracked instead. Per 10 ms sample the
#   gesture's change is about the size of the noise's, so it separates less well; kept for
#   comparison and for continuity with rfedge.features.


@dataclass(frozen=True)
class StreamConfig:
    statistic: str = "doppler"      # "doppler" or "change"
    floor_window_s: float = 30.0    # trailing window of the noise floor
    floor_block_s: float = 1.0      # one median per block; the device keeps window/block numbers
    smooth_s: float | None = None   # moving average of the statistic; None: 0.1 doppler, 0.2 change
    merge_gap_s: float = 0.3        # runs closer than this are one gesture (a digit pauses at corners)
    min_len_s: float = 0.3          # shorter runs are dropped (a tremor burst, a missed AGC step)
    groups: int = 14                # doppler: subcarrier groups
    win_len: int = 32               # doppler: STFT length at rate_hz
    min_hz: float = 5.0             # doppler: lowest Doppler frequency counted as gesture
    v_max: float = 2.0              # doppler: band |f| <= f_c v_max / c (paper 002 eq. 11)
    carrier_hz: float = 2.437e9

    def __post_init__(self):
        if self.statistic not in ("doppler", "change"):
            raise ValueError(f"statistic must be 'doppler' or 'change', not {self.statistic!r}")


def stream_logamp(csi: np.ndarray, t_us: np.ndarray, rate_hz: float) -> np.ndarray:
    """Log-amplitude [N, S] of a stream on the uniform grid from its first packet, AGC steps removed.

    As rfedge.features.uniform_logamp (log1p of |CSI|), except that steps are removed on the
    packets, before resampling (see ``remove_agc_steps``). Both look back one packet only.
    """
    la = np.log1p(np.abs(csi).astype(np.float64))
    t = np.asarray(t_us, np.float64)
    n = max(int(np.floor((t[-1] - t[0]) * 1e-6 * rate_hz)) + 1, 2)
    return dsp.resample_uniform(remove_agc_steps(la, t_us=t), t, rate_hz, n)


def trailing_median(x: np.ndarray, rate_hz: float, window_s: float = 30.0, block_s: float = 1.0) -> np.ndarray:
    """Per sample [N]: the median of the medians of the last completed ``block_s`` blocks of x
    within ``window_s`` — a floor a device tracks with window_s / block_s stored numbers.

    As long as motion fills well under half of any window, the median of medians ignores it and
    follows the noise as the room or the link drifts. The first block, with no past, uses its own
    median (the detector starts one block late).
    """
    n = len(x)
    blk = max(1, int(round(block_s * rate_hz)))
    keep = max(1, int(round(window_s / block_s)))
    med = np.array([np.median(x[a:a + blk]) for a in range(0, n, blk)])
    per_block = np.array([np.median(med[max(0, b - keep):b]) if b else med[0] for b in range(len(med))])
    return np.repeat(per_block, blk)[:n]


def tracked_floor(logamp: np.ndarray, rate_hz: float, window_s: float = 30.0, block_s: float = 1.0) -> np.ndarray:
    """``noise_floor``'s statistic (subcarrier-mean |second difference|) tracked per sample [N]."""
    if len(logamp) < 3:
        return np.ones(len(logamp))
    e = np.abs(np.diff(logamp, 2, axis=0)).mean(axis=1)
    e = np.concatenate([e[:1], e, e[-1:]])          # centred on the middle sample of each triple
    return np.maximum(trailing_median(e, rate_hz, window_s, block_s), 1e-6)


def doppler_band_power(logamp: np.ndarray, rate_hz: float, cfg: StreamConfig = StreamConfig(),
                       chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(in-band, out-of-band) mean power per bin [N] of the sliding Hann STFT (hop 1) of grouped
    log-amplitude, each frame assigned to its centre sample (latency win_len / 2).

    In-band: Doppler bins (paper 002 eq. 11) at or above ``min_hz``. Out-of-band: bins from two
    past the band (clear of the Hann main lobe) to below Nyquist — noise only.
    """
    L = cfg.win_len
    band = dsp.doppler_bins(L, rate_hz, cfg.carrier_hz, cfg.v_max)
    b_in = band[band * rate_hz / L >= cfg.min_hz]
    b_out = np.arange(band[-1] + 3, L // 2)
    if len(b_in) == 0 or len(b_out) == 0:
        raise ValueError(f"no Doppler or noise bins for win_len={L} at {rate_hz} Hz")
    g = dsp.group_subcarriers(logamp, cfg.groups)
    n = len(g)
    if n < L:
        raise ValueError(f"stream of {n} samples is shorter than the STFT length {L}")
    bins = np.concatenate([b_in, b_out])
    frames = n - L + 1
    p = np.empty((frames, len(bins)))
    for a in range(0, frames, chunk):
        m = min(chunk, frames - a)
        p[a:a + m] = dsp.stft_bins(g[a:a + m + L - 1], L, 1, bins).sum(axis=0).T     # [m, F]
    p_in = p[:, :len(b_in)].mean(axis=1)
    p_out = p[:, len(b_in):].mean(axis=1)
    pad = (L // 2, n - frames - L // 2)
    return np.pad(p_in, pad, mode="edge"), np.pad(p_out, pad, mode="edge")


def stream_score(csi: np.ndarray, t_us: np.ndarray, rate_hz: float = 100.0,
                 cfg: StreamConfig = StreamConfig()) -> tuple[np.ndarray, np.ndarray]:
    """(t_s [N], score [N]) of a stream; t_s is on the clock of ``t_us`` in seconds.

    Under H0 the doppler score is about 1 (in-band power equals the noise's); the change score
    sits near 0.58 (E|Δn| / E|Δ²n| = 1/sqrt(3) for white noise).
    """
    la = stream_logamp(csi, t_us, rate_hz)
    if cfg.statistic == "doppler":
        p_in, p_out = doppler_band_power(la, rate_hz, cfg)
        floor = trailing_median(p_out, rate_hz, cfg.floor_window_s, cfg.floor_block_s)
        raw = p_in / np.maximum(floor, 1e-12)
        k = max(1, int(round((0.1 if cfg.smooth_s is None else cfg.smooth_s) * rate_hz)))
        s = np.convolve(raw, np.ones(k) / k, mode="same")
    else:
        smooth = 0.2 if cfg.smooth_s is None else cfg.smooth_s
        floor = tracked_floor(la, rate_hz, cfg.floor_window_s, cfg.floor_block_s)
        s = activity_score(la, rate_hz, smooth, floor=1.0) / floor
    t_s = float(t_us[0]) * 1e-6 + np.arange(len(la)) / rate_hz
    return t_s, s


def score_runs(t_s: np.ndarray, score: np.ndarray, threshold: float, rate_hz: float,
               cfg: StreamConfig = StreamConfig()) -> list[tuple[float, float]]:
    """Merged runs of score > threshold of at least ``min_len_s``, as (start_s, end_s)."""
    runs = active_runs(score, threshold, rate_hz, cfg.merge_gap_s)
    return [(float(t_s[0] + a / rate_hz), float(t_s[0] + b / rate_hz))
            for a, b in runs if b - a >= cfg.min_len_s * rate_hz]


def detect_stream(csi: np.ndarray, t_us: np.ndarray, threshold: float, rate_hz: float = 100.0,
                  cfg: StreamConfig = StreamConfig()) -> list[tuple[float, float]]:
    """Gestures found in a stream: [(start_s, end_s)] on the clock of ``t_us`` (seconds).

    Everything is causal up to a fixed latency (half the STFT and smoothing windows, ~0.2 s, and
    ``merge_gap_s`` before an end is final), so the device can run it packet by packet.
    """
    t_s, s = stream_score(csi, t_us, rate_hz, cfg)
    return score_runs(t_s, s, threshold, rate_hz, cfg)


def _parts(stream):
    """(csi, t_us, gestures) of a Stream-like object or a tuple."""
    return (stream.csi, stream.t_us, stream.gestures) if hasattr(stream, "csi") else tuple(stream)


def _truth_mask(t_s: np.ndarray, gestures) -> np.ndarray:
    y = np.zeros(len(t_s), bool)
    for g in gestures:
        y |= (t_s >= g[0]) & (t_s < g[1])
    return y


def fit_stream_threshold(streams, rate_hz: float = 100.0, cfg: StreamConfig = StreamConfig(),
                         criterion: str = "events", tolerance_s: float = 0.5) -> float:
    """Detection threshold from training streams whose gesture intervals are known.

    ``criterion="events"``: the threshold minimizing missed gestures + false alarms summed over the
    streams (``evaluate_detection``), which is what a user notices; of the thresholds tying for
    the minimum, the geometric middle. ``"samples"``: ``fit_threshold`` on per-sample truth, which
    tends to sit low, because the slow start and end of every gesture count as active samples.
    Each stream is (csi, t_us, gestures) or a rfedge.sim.csi_stream.Stream.
    """
    scored = []
    for st in streams:
        csi, t_us, gestures = _parts(st)
        t_s, s = stream_score(csi, t_us, rate_hz, cfg)
        scored.append((t_s, s, gestures))
    if criterion == "samples":
        return fit_threshold([s for _, s, _ in scored], [_truth_mask(t, g) for t, _, g in scored])
    if criterion != "events":
        raise ValueError(f"criterion must be 'events' or 'samples', not {criterion!r}")
    allscores = np.concatenate([s for _, s, _ in scored])
    cands = np.unique(np.quantile(allscores, np.linspace(0.5, 0.999, 150)))
    cost = []
    for thr in cands:
        c = 0
        for t_s, s, gestures in scored:
            r = evaluate_detection(score_runs(t_s, s, thr, rate_hz, cfg), gestures, tolerance_s)
            c += r["missed"] + r["false_alarms"]
        cost.append(c)
    best = cands[np.asarray(cost) == min(cost)]
    return float(np.sqrt(best.min() * best.max()))


def evaluate_detection(detected, truth, tolerance_s: float = 0.5, duration_s: float | None = None) -> dict:
    """Event-level scores of detected intervals [(start_s, end_s)] against truth [(onset_s, end_s, ...)].

    Truth gestures are taken in time order; each matches the earliest unused detection that
    overlaps it once widened by ``tolerance_s`` on both sides. Every unused detection is a false
    alarm, so a gesture cut in two costs one, and two gestures merged into one detection leave one
    missed. Onset error is |detected start - true onset| over matches. ``duration_s`` (the
    recording's length, for the rate) defaults to the end of the last interval.
    """
    det = sorted((float(d[0]), float(d[1])) for d in detected)
    tru = sorted((float(g[0]), float(g[1])) for g in truth)
    used = [False] * len(det)
    errors = []
    for on, end in tru:
        for j, (a, b) in enumerate(det):
            if not used[j] and a < end + tolerance_s and b > on - tolerance_s:
                used[j] = True
                errors.append(abs(a - on))
                break
    if duration_s is None:
        duration_s = max([b for _, b in det] + [e for _, e in tru] + [0.0])
    fa = used.count(False)
    err = np.asarray(errors)
    nan = float("nan")
    return {
        "onset_error_s": {"median": float(np.median(err)) if len(err) else nan,
                          "p90": float(np.quantile(err, 0.9)) if len(err) else nan,
                          "mean": float(err.mean()) if len(err) else nan},
        "false_alarms": fa,
        "false_alarms_per_min": fa / (duration_s / 60.0) if duration_s > 0 else nan,
        "missed": len(tru) - len(errors),
        "detected": len(errors),
        "n_truth": len(tru),
    }
