"""Hand trajectories of digits 0-9 traced in the air (paper 002 §4.2), plus the steady class.

Each digit is a single continuous path through control points in a unit box (x right, y up):
people tracing a digit in the air do not lift a pen, so multi-stroke digits include the
transition. A user's style perturbs the control points once per user; each trial perturbs them
again, a little. Timing follows a minimum-jerk profile over arc length, the usual model of a
point-to-point human reach, so the hand starts and ends at rest.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

DIGIT_PATHS: dict[str, list[tuple[float, float]]] = {
    "0": [(0.5, 1.0), (0.15, 0.8), (0.1, 0.5), (0.15, 0.2), (0.5, 0.0), (0.85, 0.2), (0.9, 0.5),
          (0.85, 0.8), (0.5, 1.0)],
    "1": [(0.3, 0.75), (0.5, 1.0), (0.5, 0.5), (0.5, 0.0)],
    "2": [(0.1, 0.75), (0.3, 1.0), (0.7, 1.0), (0.9, 0.75), (0.7, 0.45), (0.1, 0.0), (0.5, 0.0),
          (0.9, 0.0)],
    "3": [(0.1, 0.9), (0.5, 1.0), (0.85, 0.8), (0.45, 0.55), (0.85, 0.3), (0.5, 0.0), (0.1, 0.1)],
    "4": [(0.7, 0.0), (0.7, 1.0), (0.35, 0.65), (0.05, 0.35), (0.5, 0.35), (0.95, 0.35)],
    "5": [(0.85, 1.0), (0.2, 1.0), (0.15, 0.55), (0.6, 0.62), (0.9, 0.3), (0.55, 0.0), (0.1, 0.1)],
    "6": [(0.8, 0.95), (0.35, 0.8), (0.1, 0.3), (0.45, 0.0), (0.85, 0.25), (0.5, 0.5), (0.15, 0.35)],
    "7": [(0.1, 1.0), (0.5, 1.0), (0.9, 1.0), (0.6, 0.5), (0.35, 0.0)],
    "8": [(0.85, 0.85), (0.5, 1.0), (0.15, 0.8), (0.5, 0.5), (0.85, 0.2), (0.5, 0.0), (0.15, 0.2),
          (0.5, 0.5), (0.85, 0.85)],
    "9": [(0.85, 0.65), (0.5, 0.45), (0.15, 0.7), (0.5, 1.0), (0.85, 0.75), (0.8, 0.35), (0.6, 0.0)],
}

STEADY = "steady"
LABEL_NAMES = [*DIGIT_PATHS.keys(), STEADY]


def min_jerk(tau: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile on [0, 1]: zero velocity and acceleration at both ends."""
    tau = np.clip(tau, 0.0, 1.0)
    return tau**3 * (10 - 15 * tau + 6 * tau**2)


def perturb(points: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return points + rng.normal(0.0, sigma, size=points.shape)


def digit_curve(points: np.ndarray, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Smooth curve through control points ([m, d], any dimension d), uniform in arc length:
    ([n, d], arc length of each control point). Also the path of rfedge.sim.widar_gestures."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    knots = np.concatenate([[0.0], np.cumsum(np.maximum(seg, 1e-6))])
    spline = CubicSpline(knots, points, bc_type="natural")
    param = np.linspace(0, knots[-1], 4 * n)
    fine = spline(param)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    s = np.linspace(0, arc[-1], n)
    curve = np.stack([np.interp(s, arc, fine[:, i]) for i in range(points.shape[1])], axis=1)
    return curve, np.interp(knots, param, arc)


def arc_progress(tau: np.ndarray, knot_arc: np.ndarray, fluency: float) -> np.ndarray:
    """Arc length travelled at normalized time tau.

    Handwriting slows down at every corner: each stroke between control points gets its own
    minimum-jerk profile, with time shares growing sub-linearly with stroke length (isochrony).
    ``fluency`` blends that with one smooth profile over the whole digit (1: fully smooth).
    """
    lengths = np.diff(knot_arc)
    share = np.maximum(lengths, 1e-6) ** 0.7
    t_knots = np.concatenate([[0.0], np.cumsum(share)]) / share.sum()
    tau = np.clip(tau, 0.0, 1.0)
    i = np.clip(np.searchsorted(t_knots, tau, side="right") - 1, 0, len(lengths) - 1)
    u = (tau - t_knots[i]) / (t_knots[i + 1] - t_knots[i])
    piecewise = knot_arc[i] + lengths[i] * min_jerk(u)
    return fluency * knot_arc[-1] * min_jerk(tau) + (1 - fluency) * piecewise


def plane_trajectory(label: str, t: np.ndarray, onset: float, duration: float, points: np.ndarray | None,
                     fluency: float = 0.3) -> np.ndarray:
    """In-plane hand offset [len(t), 2] in units of the digit size, centred on the box centre.

    Before the onset and after the end the hand rests at the start/end point. ``points`` are the
    user- and trial-perturbed control points; None for the steady class.
    """
    if label == STEADY or points is None:
        return np.zeros((len(t), 2))
    curve, knot_arc = digit_curve(points)
    s = arc_progress((t - onset) / duration, knot_arc, fluency)
    idx = s / knot_arc[-1] * (len(curve) - 1)
    i0 = np.clip(np.floor(idx).astype(int), 0, len(curve) - 1)
    i1 = np.minimum(i0 + 1, len(curve) - 1)
    w = (idx - i0)[:, None]
    return (curve[i0] * (1 - w) + curve[i1] * w) - 0.5
