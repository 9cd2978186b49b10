"""Hand trajectories of a Widar3.0-like gesture vocabulary, done with the left or the right hand.

Six one-hand motions, each performed with either hand, plus a two-hand clap::

    push_pull      push the hand forward and pull it back
    sweep          a horizontal outward arc (right hand: left to right)
    slide          a low, straight inward slide, palm down (right hand: right to left)
    draw_circle    a circle in the vertical plane in front (right hand: clockwise)
    draw_zigzag    a horizontal zigzag (right hand: left to right)
    draw_triangle  a triangle from its top corner (right hand: clockwise)
    clap           both hands meet in front of the chest

The left-hand version of a motion is the mirror image of the right-hand one through the body's
sagittal plane: the hand works on the other side of the body and every left/right direction
(sweep, slide, zigzag) and turning sense (circle, triangle) flips. So ``sweep_right_hand`` and
``sweep_left_hand`` are a mirrored pair, and the clap is its own mirror image.

Paths are given in the body frame of the right hand, (right, forward, up), in units of the
user's gesture size (``size_m``), relative to the hand's rest point. A user's style perturbs the
control points once per motion (the same style for both hands, mirrored); each trial perturbs
them again a little. Timing is minimum-jerk over arc length, as for the digits
(rfedge.sim.digits): the hand starts and ends at rest, and slows down at corners and reversals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rfedge.sim import digits
from rfedge.sim.digits import arc_progress

HANDS = ("left", "right")
MIRROR = np.array([-1.0, 1.0, 1.0])   # (right, forward, up) -> reflection through the sagittal plane


@dataclass(frozen=True)
class Motion:
    points: tuple            # control points (right, forward, up) of the right hand, size units
    tempo: float             # duration relative to the user's mean gesture duration
    smooth: bool             # False: the hand stops at every control point (reversals, corners)
    both_hands: bool = False


def _circle(n=8, r=0.5):
    # Clockwise as the user sees it (right = +x, up = +y on the user's view): angle decreasing from
    # the top. Closed: the last point is the first.
    a = np.pi / 2 - 2 * np.pi * np.arange(n + 1) / n
    return tuple((r * np.cos(x), 0.0, r * np.sin(x)) for x in a)


MOTIONS: dict[str, Motion] = {
    "push_pull": Motion(((0.0, -0.3, 0.0), (0.0, 0.5, 0.02), (0.0, -0.3, 0.0)), tempo=0.85, smooth=False),
    "sweep": Motion(((-0.5, 0.2, 0.0), (-0.15, 0.45, 0.03), (0.25, 0.45, 0.03), (0.6, 0.2, 0.0)),
                    tempo=0.8, smooth=True),
    "slide": Motion(((0.5, 0.1, -0.25), (0.0, 0.15, -0.27), (-0.5, 0.1, -0.25)), tempo=0.8, smooth=True),
    "draw_circle": Motion(_circle(), tempo=1.15, smooth=True),
    "draw_zigzag": Motion(((-0.5, 0.0, 0.25), (-0.25, 0.0, -0.25), (0.0, 0.0, 0.25), (0.25, 0.0, -0.25),
                           (0.5, 0.0, 0.25)), tempo=1.2, smooth=False),
    "draw_triangle": Motion(((0.0, 0.0, 0.5), (0.45, 0.0, -0.3), (-0.45, 0.0, -0.3), (0.0, 0.0, 0.5)),
                            tempo=1.2, smooth=False),
    # The right hand's part of the clap; the left hand does the mirror image at the same time.
    "clap": Motion(((0.6, 0.05, 0.0), (0.04, 0.1, 0.0), (0.6, 0.05, 0.0)), tempo=0.7, smooth=False,
                   both_hands=True),
}

ONE_HAND = [m for m, spec in MOTIONS.items() if not spec.both_hands]
LABEL_NAMES = [f"{m}_{h}_hand" for m in ONE_HAND for h in HANDS] + ["clap_both_hands"]


def class_motion_hand(label: str) -> tuple[str, str]:
    """(motion, hand) of a class name: ('sweep', 'left'), ('clap', 'both')."""
    if label == "clap_both_hands":
        return "clap", "both"
    for h in HANDS:
        suffix = f"_{h}_hand"
        if label.endswith(suffix) and label[: -len(suffix)] in MOTIONS:
            return label[: -len(suffix)], h
    raise KeyError(f"not a widar-lr gesture class: {label!r}")


def mirror_label(label: str) -> str:
    """The class of the same motion done with the other hand (the clap is its own mirror)."""
    motion, hand = class_motion_hand(label)
    if hand == "both":
        return label
    return f"{motion}_{'right' if hand == 'left' else 'left'}_hand"


MIRROR_INDEX = [LABEL_NAMES.index(mirror_label(n)) for n in LABEL_NAMES]


def user_style(rng: np.random.Generator, sigma: float) -> dict[str, np.ndarray]:
    """Per-user control points of every motion (right-hand frame): one style shared by both hands."""
    return {m: np.array(spec.points) + rng.normal(0.0, sigma, (len(spec.points), 3))
            for m, spec in MOTIONS.items()}


def trial_points(style_points: np.ndarray, rng: np.random.Generator, sigma: float, slant: float) -> np.ndarray:
    """A trial's control points: the user's style, perturbed again, with the user's slant.

    The slant shears the vertical drawing plane (right += slant * up), as in handwriting.
    """
    p = style_points + rng.normal(0.0, sigma, style_points.shape)
    return p + np.outer(p[:, 2], [slant, 0.0, 0.0])


def right_hand_path(motion: str, t: np.ndarray, onset: float, duration: float, points: np.ndarray,
                    fluency: float) -> np.ndarray:
    """Offset [len(t), 3] of the right hand from its rest point, (right, forward, up), size units.

    The rest point is the first control point: before the onset the hand waits there, after the
    end it rests at the last point. Motions with reversals or corners stop at every control
    point whatever the user's fluency (a hand cannot turn back without stopping).
    """
    curve, knot_arc = digits.digit_curve(points)
    s = arc_progress((t - onset) / duration, knot_arc, fluency if MOTIONS[motion].smooth else 0.0)
    idx = s / knot_arc[-1] * (len(curve) - 1)
    i0 = np.clip(np.floor(idx).astype(int), 0, len(curve) - 1)
    i1 = np.minimum(i0 + 1, len(curve) - 1)
    w = (idx - i0)[:, None]
    return (curve[i0] * (1 - w) + curve[i1] * w) - points[0]


def hand_paths(label: str, t: np.ndarray, onset: float, duration: float, points: np.ndarray,
               fluency: float) -> dict[str, np.ndarray]:
    """Body-frame offsets of each moving hand, {'left'|'right': [len(t), 3]}, size units.

    ``points`` are the trial's right-hand control points of the label's motion. A left-hand
    class is the right-hand path reflected through the sagittal plane; the clap moves both.
    """
    motion, hand = class_motion_hand(label)
    right = right_hand_path(motion, t, onset, duration, points, fluency)
    if hand == "right":
        return {"right": right}
    if hand == "left":
        return {"left": right * MIRROR}
    return {"right": right, "left": right * MIRROR}


def hand_start(label: str, points: np.ndarray) -> dict[str, np.ndarray]:
    """Where each moving hand starts, relative to its rest point's reference (size units)."""
    motion, hand = class_motion_hand(label)
    p0 = np.asarray(points[0], dtype=float)
    if hand == "both":
        return {"right": p0, "left": p0 * MIRROR}
    return {hand: p0 if hand == "right" else p0 * MIRROR}

