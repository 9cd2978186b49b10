"""The 21 arm gestures of paper 003 (Fig. 2) as joint-angle trajectories, and the arm kinematics.

Fig. 2 of the paper only names the gestures; the trajectories below are our reading of those names
(one-handed gestures use the right arm except LAC, the left-arm circle). They are written so that
the ambiguities a real recognizer faces survive: LD/LR, Pl/Ps, SL/SR and LRo/RR are near time
reversals of each other (alike in order-free statistics of RSS and phase), LAC/RAC are mirror
images (alike in RSS, opposite in AoA), and the two-handed gestures contain the one-handed ones.

Angles, in degrees, per arm in a mirrored body frame so that one definition serves both arms:

    alpha  shoulder elevation: 0 arm hanging, 90 horizontal, 180 overhead
    beta   shoulder azimuth of the arm's plane: 0 forward, 90 to the side (outward), < 0 across
    gamma  elbow flexion: 0 straight
    rho    forearm pronation: +90 turns the back of the hand up (palm down) when the arm points
           forward; 180 turns the back of the hand inward
    eps    wrist extension: bends the hand back, turning the back of the hand toward the forearm

A motion is either key poses joined by minimum-jerk segments, or a loop around a centre pose.
Time runs in normalized stroke time ``tau`` in [0, 1]; the hand holds the first pose before and the
last pose after the stroke.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS = ("alpha", "beta", "gamma", "rho", "eps")
REST = (6.0, 20.0, 12.0, 0.0, 0.0)


@dataclass(frozen=True)
class Loop:
    """Circular motion: ``pose = centre + radius_cos*cos(phi) + sense*radius_sin*sin(phi)`` with
    ``phi = phase0 + 360*turns*s(tau)`` and ``s`` a minimum-jerk progress."""

    centre: tuple
    radius_cos: tuple
    radius_sin: tuple
    turns: float = 1.0
    phase0_deg: float = 180.0
    sense: int = 1


@dataclass(frozen=True)
class ArmMotion:
    keys: tuple = ()          # ((tau, alpha, beta, gamma, rho, eps), ...), tau ascending 0..1
    loop: Loop | None = None


@dataclass(frozen=True)
class Gesture:
    abbrev: str
    name: str
    duration_s: float         # stroke duration at speed 1
    right: ArmMotion | None   # None: the arm rests (with sway)
    left: ArmMotion | None

    @property
    def hands(self) -> int:
        return (self.right is not None) + (self.left is not None)


def _keys(*poses):
    return ArmMotion(keys=tuple(tuple(float(v) for v in p) for p in poses))


# Key poses (alpha, beta, gamma, rho, eps).
_LATERAL = (90, 88, 5, 0, 0)
_DOWN = (8, 25, 10, 0, 0)
_FRONT = (86, 5, 8, 90, 0)
_LD = _keys((0, *_LATERAL), (1, *_DOWN))
_LF = _keys((0, *_LATERAL), (1, *_FRONT))
_LR = _keys((0, *_DOWN), (1, *_LATERAL))
_LIFT = _keys((0, 6, 15, 10, 0, 0), (1, 18, 10, 115, -30, 0))
_PULL = _keys((0, 85, 8, 5, 90, 0), (1, 40, 25, 118, 60, 0))
_PUSH = _keys((0, 40, 25, 115, 90, 45), (1, 85, 5, 5, 90, 45))     # palm leads: tag faces the body
_SWIPE_L = _keys((0, 80, 50, 30, 0, 10), (1, 80, -35, 35, 0, 10))    # toward the body's midline
_SWIPE_R = _keys((0, 80, -35, 35, 160, 10), (1, 80, 50, 30, 160, 10))


def _arm_circle(sense):
    # Extended arm sweeping a ~35-40 degree cone around a forward-outward direction, once.
    return ArmMotion(loop=Loop(centre=(75, 45, 10, 30, 0), radius_cos=(40, 0, 0, 0, 0),
                               radius_sin=(0, 35, 0, 0, 0), turns=1.0, phase0_deg=180.0, sense=sense))


def _round(sense):
    # Forearm drawing small circles in front of the chest, twice.
    return ArmMotion(loop=Loop(centre=(55, 20, 75, 60, 0), radius_cos=(15, 0, 0, 0, 0),
                               radius_sin=(0, 22, 0, 0, 0), turns=2.0, phase0_deg=90.0, sense=sense))


# sense +1 of a loop moves the hand outward at the top of the circle (in the mirrored frame, so
# the same sense on both arms is a mirror-symmetric two-handed motion).
GESTURES: tuple[Gesture, ...] = (
    Gesture("LD", "Lateral Down", 1.3, _LD, None),
    Gesture("LF", "Lateral to Front", 1.4, _LF, None),
    Gesture("LR", "Lateral Raise", 1.3, _LR, None),
    Gesture("LAC", "Left Arm Circle", 2.0, None, _arm_circle(+1)),
    Gesture("RAC", "Right Arm Circle", 2.0, _arm_circle(+1), None),
    Gesture("L", "Lift", 1.1, _LIFT, None),
    Gesture("Pl", "Pull", 1.2, _PULL, None),
    Gesture("Ps", "Push", 1.2, _PUSH, None),
    Gesture("LRo", "Left Round", 2.2, _round(-1), None),
    Gesture("RR", "Right Round", 2.2, _round(+1), None),
    Gesture("SL", "Swipe Left", 0.9, _SWIPE_L, None),
    Gesture("SR", "Swipe Right", 0.9, _SWIPE_R, None),
    Gesture("2HLD", "Two Hands Lateral Down", 1.3, _LD, _LD),
    Gesture("2HLF", "Two Hands Lateral to Front", 1.4, _LF, _LF),
    Gesture("2HLR", "Two Hands Lateral Raise", 1.3, _LR, _LR),
    Gesture("2HIC", "Two Hands Inward Circle", 2.0, _arm_circle(-1), _arm_circle(-1)),
    Gesture("2HOC", "Two Hands Outward Circle", 2.0, _arm_circle(+1), _arm_circle(+1)),
    Gesture("2HL", "Two Hands Lift", 1.1, _LIFT, _LIFT),
    Gesture("2HPl", "Two Hands Pull", 1.2, _PULL, _PULL),
    Gesture("2HPs", "Two Hands Push", 1.2, _PUSH, _PUSH),
    # Both hands circle the same way in the room: opposite senses in the mirrored frame.
    Gesture("2HR", "Two Hands Round", 2.2, _round(+1), _round(-1)),
)
LABEL_NAMES: tuple[str, ...] = tuple(g.abbrev for g in GESTURES)
BY_ABBREV = {g.abbrev: g for g in GESTURES}


def minimum_jerk(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


def arm_angles(motion: ArmMotion | None, tau, amplitude=1.0) -> np.ndarray:
    """Joint angles [..., 5] (degrees) of ``motion`` at normalized stroke times ``tau``.

    ``amplitude`` (broadcast against ``tau``) scales the excursion from the rest pose (key
    motions) or the loop radii, so a smaller gesture stays anatomically plausible.
    """
    tau = np.clip(np.asarray(tau, dtype=np.float64), 0.0, 1.0)
    amp = np.asarray(amplitude, dtype=np.float64)[..., None]
    rest = np.asarray(REST)
    if motion is None:
        return np.broadcast_to(rest, tau.shape + (5,)).copy()
    if motion.loop is not None:
        lp = motion.loop
        phi = np.deg2rad(lp.phase0_deg + 360.0 * lp.turns * minimum_jerk(tau))[..., None]
        return (np.asarray(lp.centre) + amp * (np.asarray(lp.radius_cos) * np.cos(phi)
                                               + lp.sense * np.asarray(lp.radius_sin) * np.sin(phi)))
    keys = np.asarray(motion.keys)
    kt, kp = keys[:, 0], keys[:, 1:]
    seg = np.clip(np.searchsorted(kt, tau, side="right") - 1, 0, len(kt) - 2)
    u = (tau - kt[seg]) / (kt[seg + 1] - kt[seg])
    s = minimum_jerk(u)[..., None]
    pose = kp[seg] + (kp[seg + 1] - kp[seg]) * s
    return rest + amp * (pose - rest)


# ---- kinematics ----------------------------------------------------------------------------

def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _dot(a, b):
    return np.sum(a * b, axis=-1, keepdims=True)


def _transport(v, a, b):
    """Rotate ``v`` by the smallest rotation taking unit ``a`` to unit ``b`` (Rodrigues with an
    unnormalized axis; a and b are never opposite here: the arm never points straight up)."""
    k = np.cross(a, b)
    c = _dot(a, b)
    return v * c + np.cross(k, v) + k * _dot(k, v) / (1.0 + c)


def arm_pose(angles, shoulder, fwd, out, up, upper_m, fore_m, side):
    """Forward kinematics of one arm.

    ``angles`` [..., 5] degrees; ``shoulder`` [..., 3]; ``fwd``/``out``/``up`` [..., 3] unit axes of
    the body (``out`` points away from the body on this arm's side); ``upper_m``/``fore_m`` segment
    lengths (shoulder-elbow, elbow-middle of the back of the hand); ``side`` -1 right arm, +1 left.
    Returns ``hand`` [..., 3], ``forearm`` unit [..., 3] and ``back`` unit [..., 3], the outward
    normal of the back of the hand.

    The hanging arm has its palm to the thigh: the back of the hand faces ``out`` and the elbow
    flexes forward. Raising the arm carries both directions along by the smallest rotation, which
    gives palm-down for a lateral raise and thumb-up for a forward raise, as people do.
    """
    a = np.deg2rad(angles)
    al, be, ga, rh, ep = (a[..., i:i + 1] for i in range(5))
    d_up = np.sin(al) * (np.cos(be) * fwd + np.sin(be) * out) - np.cos(al) * up
    down = -up
    flex = _transport(fwd, down, d_up)
    back = _transport(out, down, d_up)
    elbow = shoulder + upper_m[..., None] * d_up
    d_fore = np.cos(ga) * d_up + np.sin(ga) * flex
    # Elbow flexion turns about the back-of-hand axis, so ``back`` is unchanged by it.
    across = np.cross(d_fore, back)
    back = np.cos(rh) * back + side[..., None] * np.sin(rh) * across
    back = np.cos(ep) * back - np.sin(ep) * d_fore
    hand = elbow + fore_m[..., None] * d_fore
    return hand, d_fore, _unit(back)
