"""``rfedge bench activity``: gesture activity detection on simulated continuous streams (issue 3 item 2).

Paper 002 §3.1 separates a static channel (H0) from a dynamic one (H1) before classifying. Here
the stream detector of rfedge.activity runs on continuous recordings from
rfedge.sim.csi_stream — digits at random times, with tremor, breathing and slow glides of the
hand in between — with its threshold fitted on *training* streams (other seeds: other rooms and
users) and scored on held-out test streams: onset error of the detected gestures (median, p90)
and false alarms per minute, pooled over the test streams.
"""

from __future__ import annotations

import time

from rfedge import activity
from rfedge.sim.csi_stream import synth_stream

TRAIN_SEED0 = 1           # training streams: seeds 1, 2, ...
TEST_SEED0 = 1000         # test streams: seeds 1000, 1001, ... (never a training seed)


def pooled(per_stream: list[dict], tolerance_s: float) -> dict:
    """evaluate_detection over several streams at once: their detections and truths laid end to
    end on one timeline (gaps wider than the tolerance, so nothing matches across streams), the
    rate taken over their total duration. Onset errors are pooled over all matched gestures."""
    det, tru, t, dur = [], [], 0.0, 0.0
    for s in per_stream:
        t0 = s["t0_s"]
        det += [(a - t0 + t, b - t0 + t) for a, b in s["detections"]]
        tru += [(on - t0 + t, end - t0 + t) for on, end, _ in s["truth"]]
        t += s["duration_s"] + 2 * tolerance_s + 1.0
        dur += s["duration_s"]
    r = activity.evaluate_detection(det, tru, tolerance_s=tolerance_s, duration_s=dur)
    r["minutes"] = dur / 60.0
    return r


def bench_activity(minutes: float = 2.0, train_streams: int = 2, test_streams: int = 3, statistic: str = "doppler",
                   tolerance_s: float = 0.5, criterion: str = "events") -> dict:
    """Fit the stream threshold on ``train_streams`` simulated streams and score ``test_streams``
    others, each ``minutes`` long. Returns the figures, per stream and pooled, with the detections
    and the truth so they can be re-scored."""
    if minutes <= 0 or train_streams < 1 or test_streams < 1:
        raise ValueError("minutes must be > 0 and there must be at least one training and one test stream")
    cfg = activity.StreamConfig(statistic=statistic)
    t0 = time.monotonic()
    train = [synth_stream(seed=TRAIN_SEED0 + k, minutes=minutes) for k in range(train_streams)]
    thr = activity.fit_stream_threshold(train, rate_hz=train[0].rate_hz, cfg=cfg, criterion=criterion,
                                        tolerance_s=tolerance_s)
    t_fit = time.monotonic() - t0
    per_stream = []
    for k in range(test_streams):
        st = synth_stream(seed=TEST_SEED0 + k, minutes=minutes)
        det = activity.detect_stream(st.csi, st.t_us, thr, rate_hz=st.rate_hz, cfg=cfg)
        r = activity.evaluate_detection(det, st.gestures, tolerance_s=tolerance_s, duration_s=st.duration_s)
        per_stream.append({
            "seed": TEST_SEED0 + k, "t0_s": float(st.t_us[0]) * 1e-6, "duration_s": st.duration_s, **r,
            "detections": [[float(a), float(b)] for a, b in det],
            "truth": [[float(on), float(end), lab] for on, end, lab in st.gestures],
        })
    return {
        "statistic": statistic, "criterion": criterion, "threshold": float(thr), "tolerance_s": tolerance_s,
        "minutes_per_stream": minutes,
        "train_seeds": [TRAIN_SEED0 + k for k in range(train_streams)],
        "test_seeds": [TEST_SEED0 + k for k in range(test_streams)],
        **pooled(per_stream, tolerance_s),
        "per_stream": per_stream,
        "seconds": {"fit": round(t_fit, 2), "total": round(time.monotonic() - t0, 2)},
    }


def format_activity(r: dict) -> str:
    e = r["onset_error_s"]
    lines = [f"activity detection ({r['statistic']} statistic), threshold {r['threshold']:.3g} fitted on "
             f"{len(r['train_seeds'])} training stream(s) (seeds {', '.join(map(str, r['train_seeds']))}), "
             f"scored on {len(r['test_seeds'])} test stream(s) of {r['minutes_per_stream']:g} min "
             f"(seeds {', '.join(map(str, r['test_seeds']))}), match tolerance {r['tolerance_s']:g} s",
             f"  onset error: median {e['median']:.3f} s, p90 {e['p90']:.3f} s, mean {e['mean']:.3f} s",
             f"  false alarms: {r['false_alarms']} in {r['minutes']:.1f} min = {r['false_alarms_per_min']:.2f}/min",
             f"  gestures: {r['detected']}/{r['n_truth']} detected, {r['missed']} missed"]
    for s in r["per_stream"]:
        lines.append(f"  stream seed {s['seed']}: {s['detected']}/{s['n_truth']} detected, {s['false_alarms']} false "
                     f"alarms ({s['false_alarms_per_min']:.2f}/min), onset error median "
                     f"{s['onset_error_s']['median']:.3f} s")
    lines.append(f"  ({r['seconds']['total']:.1f} s)")
    return "\n".join(lines)
