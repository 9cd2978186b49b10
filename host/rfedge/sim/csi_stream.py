"""A continuous CSI recording with gestures at random times, for activity detection (paper 002 §3.1).

The trial simulator (rfedge.sim.csi) cuts the world into short windows with one gesture each; a
device instead sees one long stream in which H1 (a digit being traced) alternates with H0-like
stretches. Those stretches are not perfectly still: the hand keeps its postural tremor, the torso
breathes, and between two digits the hand glides slowly from where the last digit ended to where
the next one starts (a few cm to a couple of dm at <= ``glide_mps`` peak speed). That slow
motion is exactly what an activity detector must not call a gesture.

Everything else (room, user style, static channel, receiver impairments, packet timing) is the
trial simulator's own building blocks, on receiver 0 (the main link) only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rfedge.sim import digits
from rfedge.sim.csi import _packet_times, make_environment, make_user, render_receivers, static_channel
from rfedge.sim.presets import load_preset


@dataclass
class Stream:
    """One receiver's recording: complex CSI [P, 56], device timestamps µs [P], and the truth.

    ``gestures`` are (onset_s, end_s, label) on the clock of ``t_us`` (seconds = t_us * 1e-6).
    """

    csi: np.ndarray
    t_us: np.ndarray
    gestures: list[tuple[float, float, str]]
    rate_hz: float

    @property
    def duration_s(self) -> float:
        return float(self.t_us[-1] - self.t_us[0]) * 1e-6

    def active(self, t_s: np.ndarray) -> np.ndarray:
        """Per-instant truth [len(t_s)]: True while a digit is being traced."""
        t_s = np.asarray(t_s, np.float64)
        out = np.zeros(len(t_s), bool)
        for on, end, _ in self.gestures:
            out |= (t_s >= on) & (t_s < end)
        return out


@dataclass
class _Gesture:
    label: str
    onset: float
    duration: float
    points: np.ndarray          # trial-perturbed control points (unit box)
    centre: np.ndarray          # [3] where this digit is drawn
    size: float
    u_dir: np.ndarray           # [3] drawing plane axes
    v_dir: np.ndarray
    bulge: float                # out-of-plane excursion, fraction of size
    fluency: float
    glide: tuple | None = None  # (t_start, duration, from [3]) of the glide to this digit's start

    @property
    def end(self) -> float:
        return self.onset + self.duration

    @property
    def start_point(self) -> np.ndarray:
        return self.position(np.array([self.onset]))[0]

    @property
    def end_point(self) -> np.ndarray:
        return self.position(np.array([self.end]))[0]

    def position(self, t: np.ndarray) -> np.ndarray:
        """Hand [len(t), 3]: at rest on the start point before the onset, on the end point after."""
        uv = digits.plane_trajectory(self.label, t, self.onset, self.duration, self.points, self.fluency)
        n_dir = np.cross(self.u_dir, self.v_dir)
        depth = self.size * self.bulge * np.sin(np.pi * np.clip((t - self.onset) / self.duration, 0.0, 1.0))
        return self.centre + self.size * (uv[:, :1] * self.u_dir + uv[:, 1:] * self.v_dir) + depth[:, None] * n_dir


def _plan_gestures(cfg, user, rng, minutes, pause_s, lead_s, orientation_deg, distance_m, session, glide_mps):
    """Gestures in time order, each with its own small change of place, plane and size.

    Geometry follows rfedge.sim.csi._hand_track: the hand works distance_m from the link line at
    the user's elevation, in a vertical plane at the stream's orientation (jittered per digit).
    Between two digits the hand glides from the last end point to the next start point with a
    minimum-jerk profile, whose peak speed 1.875 d / T is held to ``glide_mps``; the pause is
    lengthened when the drawn one is too short for that, with a still hold of 0.3-1 s at each end.
    """
    labels = [lab for lab in digits.LABEL_NAMES if lab != digits.STEADY]
    elev = np.deg2rad(user.elevation_deg + rng.normal(0, 4.0))
    base = np.array([rng.normal(0, 0.08), distance_m * np.cos(elev), distance_m * np.sin(elev)]) + user.stance[session]
    total = minutes * 60.0
    out, t = [], lead_s
    while True:
        dur = float(np.clip(user.duration_s * np.exp(rng.normal(0, cfg["duration_jitter"])), 0.6, 3.0))
        label = str(rng.choice(labels))
        pts = digits.perturb(user.style[label], rng, cfg["trial_sigma"])
        pts = pts @ np.array([[user.aspect, 0.0], [user.slant, 1.0]])
        th = np.deg2rad(orientation_deg + rng.normal(0, 4.0))
        g = _Gesture(
            label=label, onset=t, duration=dur, points=pts,
            # People do not draw on the same spot twice: a few cm of drift between digits.
            centre=base + rng.normal(0, 0.02, 3) * np.array([1.0, 1.0, 0.6]),
            size=user.size_m * float(np.exp(rng.normal(0, cfg["size_jitter"]))),
            u_dir=np.array([np.cos(th), np.sin(th), 0.0]), v_dir=np.array([0.0, 0.0, 1.0]),
            bulge=float(rng.normal(0.0, 0.08)), fluency=user.fluency)
        if out:
            prev = out[-1]
            p0 = prev.end_point
            glide_s = max(1.875 * float(np.linalg.norm(g.start_point - p0)) / glide_mps, 0.3)
            hold0, hold1 = rng.uniform(0.3, 1.0, 2)
            g.onset = float(prev.end + max(float(rng.uniform(*pause_s)), hold0 + glide_s + hold1))
            g.glide = (prev.end + hold0, glide_s, p0)
        if g.end > total - 0.5:
            return out, base
        out.append(g)
        t = g.end


def hand_path(gestures, t: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Hand position [len(t), 3] over the whole stream: digits joined by slow glides.

    Without any digit the hand rests at ``rest`` throughout.
    """
    hand = np.tile(np.asarray(rest, np.float64), (len(t), 1))
    for i, g in enumerate(gestures):
        lo = -np.inf if g.glide is None else g.glide[0] + g.glide[1]
        hi = np.inf if i + 1 == len(gestures) else gestures[i + 1].glide[0]
        sel = (t >= lo) & (t < hi)
        hand[sel] = g.position(t[sel])
        if g.glide is not None:
            t0, dur, p0 = g.glide
            sel = (t >= t0) & (t < t0 + dur)
            hand[sel] = p0 + digits.min_jerk((t[sel] - t0) / dur)[:, None] * (g.start_point - p0)
    return hand


def synth_stream(cfg_overrides: dict | None = None, seed: int = 0, minutes: float = 2.0, *,
                 preset: str = "esp32-digits", user: int = 0, session: int = 0, environment: int = 0,
                 pause_s: tuple[float, float] = (2.0, 6.0), lead_s: float = 3.0,
                 glide_mps: float = 0.1) -> Stream:
    """Simulate ``minutes`` of receiver-0 CSI with digits traced at random times.

    ``seed`` replaces the preset's seed, so it picks the room, the user and every draw of the
    stream; the same arguments give the same stream. Pauses between digits are uniform in
    ``pause_s``; the first digit starts ``lead_s`` in, so a detector has quiet data to learn its
    noise floor from (with ``lead_s`` >= the length, the hand rests throughout). Receiver
    impairments, AGC steps included, are the preset's. Two minutes take about a second and a
    few hundred MB (the channel is rendered in one piece so that the AGC state runs on).
    """
    cfg = load_preset(preset, cfg_overrides)
    cfg["seed"] = int(seed)
    env = make_environment(cfg, environment)
    env = dataclasses.replace(env, rx=env.rx[:1], rx_gain_db=env.rx_gain_db[:1])
    usr = make_user(cfg, user)
    rng = np.random.default_rng([cfg["seed"], 20, environment, user, session])
    trng = np.random.default_rng([cfg["seed"], 21, environment, user, session])
    orientation = float(rng.choice(cfg["orientations_deg"]))
    distance = float(rng.uniform(*cfg["distance_m"]))
    gestures, base = _plan_gestures(cfg, usr, rng, minutes, pause_s, lead_s, orientation, distance, session,
                                    glide_mps)

    t = _packet_times(cfg, trng, int(round(minutes * 60.0 * cfg["rate_hz"])))
    hand = hand_path(gestures, t, base)
    # Postural tremor on the hand, breathing sway of the torso, arm following the hand.
    f_tr = rng.uniform(6, 12, 3)
    hand = hand + cfg["tremor_m"] * np.sin(2 * np.pi * f_tr * t[:, None] + rng.uniform(0, 2 * np.pi, 3))
    elbow = base + np.array([0.0, 0.28, -0.22]) + 0.3 * (hand - base)
    forearm = 0.5 * (hand + elbow)
    torso = base + np.array([0.0, 0.45, -0.3]) + np.outer(0.004 * np.sin(2 * np.pi * 0.25 * t), [0, 1, 0])

    H0 = static_channel(cfg, env, user, session, 0)
    ht, _, t_us, _ = render_receivers(cfg, env, H0, [t], t, hand, forearm, torso, trng)
    truth = [(round(g.onset, 4), round(g.end, 4), g.label) for g in gestures]
    return Stream(csi=ht[0], t_us=t_us[0], gestures=truth, rate_hz=float(cfg["rate_hz"]))
