"""ESP32 Wi-Fi CSI gesture simulator grounded in paper 002 §3.

Channel per subcarrier k and packet time t (paper 002 eqs. 3-4):

    H_k(t) = sum_static a_p e^{-j2π f_k L_p / c} + sum_dynamic a_p(t) e^{-j2π f_k L_p(t) / c} + W_k(t)

in a bistatic Tx/Rx geometry: the static paths are the line of sight and the scatterers of the
room (drifting slowly across a session), the dynamic paths are hand, forearm and torso and the hand
seen via a wall, whose lengths follow the traced digit. The ESP32 receiver then adds what real
captures show: a random common phase per packet (CFO), a random linear phase slope over
subcarriers (timing/SFO), AGC gain steps, int8 I/Q quantization, packet loss and timestamp jitter.

Each trial has its own random stream derived from (seed, trial id), so the result does not
depend on generation order.

A preset chooses the gesture family (``gestures``: "digits", the default, or "widar-lr": the
left/right-hand vocabulary of rfedge.sim.widar_gestures) and the antennas per receiver
(``rx_antennas``, default 1 as on an ESP32). With two or more, each receiver is a small linear
array like an Intel 5300's: the antennas share one oscillator and one timing reference, so the
per-packet random phase and slope are common to them and cancel in the ratio of two antennas'
CSI (the CSI-ratio of paper 000), while each RF chain keeps its own fixed phase offset and noise.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfedge.data.dataset import write_dataset
from rfedge.errors import RfedgeError
from rfedge.progress import Progress
from rfedge.sim import digits, widar_gestures
from rfedge.sim.presets import load_preset

C = 299_792_458.0
SUBCARRIER_SPACING_HZ = 312.5e3
HT20_USED = np.array([k for k in range(-28, 29) if k != 0])
LLTF_USED = np.array([k for k in range(-26, 27) if k != 0])
_ALL_K = np.arange(-28, 29)


def channel_freq_hz(channel: int) -> float:
    return 2.412e9 + 5e6 * (channel - 1) if channel < 14 else 2.484e9


@dataclass
class Environment:
    """A room: the boards, six walls (image sources of first-order reflections) and furniture."""

    index: int
    tx: np.ndarray                  # [3]
    rx: np.ndarray                  # [R, 3]
    room_lo: np.ndarray             # [3] wall planes x, y, z (low side)
    room_hi: np.ndarray             # [3] wall planes x, y, z (high side)
    wall_gamma: np.ndarray          # [6] complex reflection coefficient: x-lo, x-hi, y-lo, y-hi, z-lo, z-hi
    scat_pos: np.ndarray            # [M, 3]
    scat_gain: np.ndarray           # [M] complex
    rx_gain_db: np.ndarray          # [R]
    rx_array: np.ndarray | None = None     # [R, A, 3] antenna positions; None: one antenna at rx
    chain_phase: np.ndarray | None = None  # [R, A] fixed phase offset of each RF chain (rad)

    @property
    def receivers(self) -> int:
        return len(self.rx)

    def images(self, p: np.ndarray) -> np.ndarray:
        """Mirror images [6, ..., 3] of points p [..., 3] in the six walls."""
        out = np.repeat(p[None], 6, axis=0).astype(float)
        for w in range(6):
            axis, plane = w // 2, (self.room_lo, self.room_hi)[w % 2][w // 2]
            out[w, ..., axis] = 2 * plane - p[..., axis]
        return out


@dataclass
class User:
    index: int
    duration_s: float
    size_m: float
    slant: float
    aspect: float
    style: dict = field(default_factory=dict)      # label -> perturbed control points
    stance: list = field(default_factory=list)     # per session: offset of the gesture centre
    elevation_deg: float = 45.0                    # where the hand works, seen from the link line
    fluency: float = 0.3                           # 0: stops at every corner, 1: one smooth stroke
    hand_offset_m: float = 0.15                    # widar-lr: rest point of a hand from the body's midline


def _uniform(rng, lohi):
    return float(rng.uniform(lohi[0], lohi[1]))


# Gesture families a preset can choose with ``gestures``: their class names, in label order.
GESTURE_FAMILIES = {"digits": digits.LABEL_NAMES, "widar-lr": widar_gestures.LABEL_NAMES}


def gesture_family(cfg: dict) -> str:
    """The preset's gesture family; presets without the field are the digits of paper 002."""
    family = cfg.get("gestures", "digits")
    if family not in GESTURE_FAMILIES:
        raise RfedgeError(f"unknown gesture family {family!r}; expected one of {', '.join(GESTURE_FAMILIES)}",
                          field="gestures")
    return family


def label_names(cfg: dict) -> list[str]:
    return list(GESTURE_FAMILIES[gesture_family(cfg)])


def make_environment(cfg: dict, index: int) -> Environment:
    rng = np.random.default_rng([cfg["seed"], 1, index])
    half = cfg["link_m"] / 2
    tx = np.array([-half, 0.0, 0.0])
    n_rx = int(rng.integers(cfg["receivers"][0], cfg["receivers"][1] + 1))
    # Receiver 0 closes the main link; extra boards sit around the gesture area.
    rx = [np.array([half, 0.0, 0.0])]
    for _ in range(n_rx - 1):
        ang = rng.uniform(0.2 * np.pi, 0.8 * np.pi)
        r = rng.uniform(1.0, 1.6)
        rx.append(np.array([r * np.cos(ang), 0.5 + r * np.sin(ang) * 0.6, rng.uniform(-0.1, 0.3)]))
    # The boards stand on a table (z = 0) somewhere in a room; the user is on the +y side.
    size = np.array([rng.uniform(*cfg["room_m"][0:2]), rng.uniform(*cfg["room_m"][0:2]), rng.uniform(2.4, 3.2)])
    lo = np.array([-rng.uniform(half + 0.5, size[0] - half - 0.5), -rng.uniform(0.5, size[1] - 2.0), -0.75])
    room_lo, room_hi = lo, lo + size
    gamma = rng.uniform(*cfg["wall_gamma"], 6) * np.exp(1j * (np.pi + rng.normal(0, 0.3, 6)))
    m = int(rng.integers(cfg["scatterers"][0], cfg["scatterers"][1] + 1))
    # Furniture stands apart from the boards and the gesture area (>= 0.8 m from each).
    keep_out = np.vstack([tx, *rx, [0.0, 0.5, 0.15]])
    scat_pos = np.empty((0, 3))
    while len(scat_pos) < m:
        p = rng.uniform(room_lo + 0.2, room_hi - 0.2)
        if np.min(np.linalg.norm(keep_out - p, axis=1)) >= 0.8:
            scat_pos = np.vstack([scat_pos, p])
    scat_gain = rng.uniform(*cfg["scatterer_gain"], m) * np.exp(1j * rng.uniform(-np.pi, np.pi, m))
    env = Environment(index, tx, np.array(rx), room_lo, room_hi, gamma, scat_pos, scat_gain,
                      rx_gain_db=rng.normal(0.0, 2.0, n_rx))
    n_ant = int(cfg.get("rx_antennas", 1))
    if n_ant > 1:
        # A stream of its own, so that single-antenna presets draw exactly what they always drew.
        arng = np.random.default_rng([cfg["seed"], 8, index])
        spacing = cfg["antenna_spacing_wl"] * C / channel_freq_hz(cfg["channel"])
        area = np.array([0.0, 0.5, 0.15])   # the gesture area the boards are set up to face
        arrays, phases = [], []
        for r in range(n_rx):
            # A horizontal linear array turned broadside to the gesture area, give or take how the
            # board was put down: the hand's angle of arrival then moves the phase between antennas.
            to_area = area[:2] - env.rx[r, :2]
            heading = np.arctan2(to_area[1], to_area[0]) + np.pi / 2 + arng.normal(0.0, np.deg2rad(15.0))
            axis = np.array([np.cos(heading), np.sin(heading), 0.0])
            offs = (np.arange(n_ant) - (n_ant - 1) / 2) * spacing
            arrays.append(env.rx[r] + offs[:, None] * axis)
            phases.append(arng.uniform(-np.pi, np.pi, n_ant))
        env.rx_array, env.chain_phase = np.array(arrays), np.array(phases)
    return env


def make_user(cfg: dict, index: int) -> User:
    rng = np.random.default_rng([cfg["seed"], 2, index])
    u = User(index, duration_s=_uniform(rng, cfg["gesture_s"]), size_m=_uniform(rng, cfg["size_m"]),
             slant=float(rng.normal(0, cfg["slant_sigma"])), aspect=float(np.exp(rng.normal(0, 0.12))))
    if gesture_family(cfg) == "digits":
        for label, pts in digits.DIGIT_PATHS.items():
            u.style[label] = digits.perturb(np.array(pts, dtype=float), rng, cfg["style_sigma"])
    else:
        u.style = widar_gestures.user_style(rng, cfg["style_sigma"])
    u.elevation_deg = _uniform(rng, cfg["elevation_deg"])
    u.fluency = _uniform(rng, cfg["fluency"])
    u.stance = [rng.normal(0.0, cfg["stance_sigma_m"], 3) * np.array([1.0, 1.0, 0.4]) for _ in range(cfg["sessions"])]
    if gesture_family(cfg) == "widar-lr":
        u.hand_offset_m = _uniform(rng, cfg["hand_offset_m"])
    return u


def multipath_csi(freqs_hz: np.ndarray, lengths_m: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Channel sum_p a_p e^{-j2π f L_p / c} (paper 002 eq. 4) for paths [..., P] at freqs [K]: [..., K]."""
    freqs_hz = np.asarray(freqs_hz, dtype=np.float64)
    step = np.diff(freqs_hz)
    if len(freqs_hz) > 2 and np.allclose(step, step[0], rtol=0, atol=1e-3):
        # Evenly spaced subcarriers: e^{-j2π(f0 + kΔf)L/c} = e^{-j2π f0 L/c} (e^{-j2πΔf L/c})^k, so two
        # exponentials and a running product replace one exponential per subcarrier.
        first = np.exp(-2j * np.pi * lengths_m * (freqs_hz[0] / C))
        ratio = np.exp(-2j * np.pi * lengths_m * (step[0] / C))
        phase = np.empty(lengths_m.shape + (len(freqs_hz),), np.complex128)
        phase[..., 0] = first
        phase[..., 1:] = ratio[..., None]
        phase = np.cumprod(phase, axis=-1)
    else:
        phase = np.exp(-2j * np.pi * lengths_m[..., None] * (freqs_hz / C))
    return np.einsum("...p,...pk->...k", gains, phase)


def _bistatic_len(p: np.ndarray, tx: np.ndarray, rx: np.ndarray) -> np.ndarray:
    """Path length Tx -> p -> Rx for points p [..., 3] and receivers rx [R, 3]: [R, ...]."""
    d_tx = np.linalg.norm(p - tx, axis=-1)
    d_rx = np.linalg.norm(p[None] - rx.reshape((len(rx),) + (1,) * (p.ndim - 1) + (3,)), axis=-1)
    return d_tx[None], d_rx


def _packet_times(cfg: dict, rng: np.random.Generator, n_nominal: int) -> np.ndarray:
    """Arrival times (s) of the packets that survive loss: jittered grid, Bernoulli + burst loss."""
    period = 1.0 / cfg["rate_hz"]
    t = np.arange(n_nominal) * period + rng.normal(0.0, cfg["jitter_ms"] * 1e-3, n_nominal)
    t = np.maximum.accumulate(np.clip(t, 0.0, None))
    keep = rng.random(n_nominal) >= cfg["packet_loss"]
    for start in np.flatnonzero(rng.random(n_nominal) < cfg["burst_loss_prob"]):
        keep[start:start + int(rng.integers(2, 7))] = False
    keep[0] = True
    return t[keep]


def gesture_duration(cfg: dict, user: User, rng: np.random.Generator) -> float:
    dur = user.duration_s * float(np.exp(rng.normal(0, cfg["duration_jitter"])))
    return float(np.clip(dur, 0.6, 1.5 * cfg["gesture_s"][1]))


def trial_timing(cfg: dict, user: User, rng: np.random.Generator) -> tuple[float, float, float]:
    """(onset, gesture duration, window length) in s of a segmented trial (paper 002 §4.2).

    Trials are cut around the gesture by hand, so each window is the gesture plus a margin on
    either side that is never quite the same; steady trials get a window as long as a gesture's.
    """
    dur = gesture_duration(cfg, user, rng)
    before, after = rng.uniform(*cfg["margin_s"], 2)
    return float(before), dur, float(before + dur + after)


def _hand_track(cfg, user: User, label: str, session: int, t: np.ndarray, rng, orientation_deg: float,
                distance_m: float, onset: float | None = None, dur: float | None = None):
    """Hand, forearm and torso positions [len(t), 3] plus the gesture's onset and duration.

    Without ``onset``/``dur`` the gesture starts at a random time within ``t``.
    """
    if dur is None:
        dur = gesture_duration(cfg, user, rng)
    if onset is None:
        span = float(t[-1] - t[0]) if len(t) > 1 else dur
        onset = float(t[0]) + 0.15 + float(rng.uniform(0.0, max(span - dur - 0.3, 0.0)))
    window = float(t[-1]) if len(t) else dur
    size = user.size_m * float(np.exp(rng.normal(0, cfg["size_jitter"])))
    if label == digits.STEADY:
        pts = None
    else:
        pts = digits.perturb(user.style[label], rng, cfg["trial_sigma"])
        pts = pts @ np.array([[user.aspect, 0.0], [user.slant, 1.0]])
    uv = digits.plane_trajectory(label, t, onset, dur, pts, user.fluency)
    th = np.deg2rad(orientation_deg + rng.normal(0, 4.0))
    u_dir = np.array([np.cos(th), np.sin(th), 0.0])
    v_dir = np.array([0.0, 0.0, 1.0])
    n_dir = np.cross(u_dir, v_dir)
    # The hand works above the table, in front of and over the link: distance_m from the link line
    # at an elevation that the user's stance sets (paper 002 §4.1).
    elev = np.deg2rad(user.elevation_deg + rng.normal(0, 4.0))
    centre = np.array([rng.normal(0, 0.08), distance_m * np.cos(elev), distance_m * np.sin(elev)]) + user.stance[session]
    # The hand also moves out of the drawing plane a little, as air-writing does.
    bulge = rng.normal(0.0, 0.08) if pts is not None else 0.0
    depth = size * bulge * np.sin(np.pi * np.clip((t - onset) / dur, 0.0, 1.0))
    hand = centre + size * (uv[:, :1] * u_dir + uv[:, 1:] * v_dir) + depth[:, None] * n_dir
    # Tremor and, sometimes, a slow fidget of the resting hand.
    f_tr = rng.uniform(6, 12, 3)
    hand = hand + cfg["tremor_m"] * np.sin(2 * np.pi * f_tr * t[:, None] + rng.uniform(0, 2 * np.pi, 3))
    if rng.random() < cfg["fidget_prob"]:
        drift = rng.normal(0, 0.02, 3)
        hand = hand + drift * digits.min_jerk(t / window)[:, None]
    elbow0 = centre + np.array([0.0, 0.28, -0.22])
    elbow = elbow0 + 0.3 * (hand - centre)
    forearm = 0.5 * (hand + elbow)
    torso = centre + np.array([0.0, 0.45, -0.3]) + np.outer(0.004 * np.sin(2 * np.pi * 0.25 * t), [0, 1, 0])
    return hand, forearm, torso, onset, dur


def widar_timing(cfg: dict, user: User, motion: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """(onset, duration, window) in s of a segmented widar-lr trial: as trial_timing, with the
    motion's own tempo (a clap is quicker than a triangle)."""
    dur = gesture_duration(cfg, user, rng) * widar_gestures.MOTIONS[motion].tempo
    before, after = rng.uniform(*cfg["margin_s"], 2)
    return float(before), dur, float(before + dur + after)


def _widar_track(cfg, user: User, label: str, session: int, t: np.ndarray, rng, orientation_deg: float,
                 distance_m: float, onset: float, dur: float):
    """Body track of a widar-lr trial: ([hand tracks], [forearm tracks], torso), each [len(t), 3].

    The user faces the link at ``orientation_deg`` (0: facing it squarely; the user's right is
    then -x). The hands work in front of the chest at distance_m from the link line, the moving
    hand on its own side of the body (``hand_offset_m`` from the body's midline), so a left-hand
    gesture is the right-hand one mirrored through the user's sagittal plane.
    """
    motion, hand_used = widar_gestures.class_motion_hand(label)
    size = user.size_m * float(np.exp(rng.normal(0, cfg["size_jitter"])))
    pts = widar_gestures.trial_points(user.style[motion], rng, cfg["trial_sigma"], user.slant)
    paths = widar_gestures.hand_paths(label, t, onset, dur, pts, user.fluency)
    th = np.deg2rad(orientation_deg + rng.normal(0, 4.0))
    fwd = np.array([np.sin(th), -np.cos(th), 0.0])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    frame = np.stack([right, fwd, [0.0, 0.0, 1.0]])              # body (right, forward, up) -> world
    elev = np.deg2rad(user.elevation_deg + rng.normal(0, 4.0))
    centre = np.array([rng.normal(0, 0.08), distance_m * np.cos(elev), distance_m * np.sin(elev)]) + user.stance[session]
    offset = user.hand_offset_m * float(np.exp(rng.normal(0, 0.1)))
    f_tr = rng.uniform(6, 12, (2, 3))
    tremor_phase = rng.uniform(0, 2 * np.pi, (2, 3))
    hands, forearms = [], []
    for k, side in enumerate(("right", "left")):
        if side not in paths:
            continue
        sign = 1.0 if side == "right" else -1.0
        if hand_used == "both":
            rest = centre + size * (widar_gestures.hand_start(label, pts)[side] @ frame)
        else:
            rest = centre + sign * offset * right
        hand = rest + size * (paths[side] @ frame)
        hand = hand + cfg["tremor_m"] * np.sin(2 * np.pi * f_tr[k] * t[:, None] + tremor_phase[k])
        # The elbow hangs behind and below the hand, a little outside it, and follows it partly.
        elbow = rest - 0.28 * fwd + np.array([0.0, 0.0, -0.22]) + sign * 0.05 * right + 0.3 * (hand - rest)
        hands.append(hand)
        forearms.append(0.5 * (hand + elbow))
    if rng.random() < cfg["fidget_prob"]:
        window = float(t[-1]) if len(t) else dur
        drift = rng.normal(0, 0.02, 3) * digits.min_jerk(t / window)[:, None]
        hands = [h + drift for h in hands]
    torso = centre - 0.45 * fwd + np.array([0.0, 0.0, -0.3]) + np.outer(0.004 * np.sin(2 * np.pi * 0.25 * t), -fwd)
    return hands, forearms, torso


def static_channel(cfg: dict, env: Environment, user: int, session: int, trial_in_session: int) -> np.ndarray:
    """Channel of the room without the person's motion, per receiver: complex [R, 57] (k = -28..28),
    or per receiver antenna [R, A, 57] when the receivers are arrays.

    Scatterers move a little between sessions and drift slowly from trial to trial within one.
    """
    freqs = channel_freq_hz(cfg["channel"]) + _ALL_K * SUBCARRIER_SPACING_HZ
    srng = np.random.default_rng([cfg["seed"], 4, env.index, user, session])
    scat = env.scat_pos + srng.normal(0, cfg["session_drift_m"], env.scat_pos.shape)
    scat = scat + trial_in_session * cfg["trial_drift_m"] * srng.normal(0, 1, env.scat_pos.shape)
    sgain = env.scat_gain * np.exp(srng.normal(0, 0.1, len(scat)))
    rx = env.rx if env.rx_array is None else env.rx_array.reshape(-1, 3)   # every antenna is a receiver here
    d_tx, d_rx = _bistatic_len(scat, env.tx, rx)                               # [1, M], [R, M]
    los = np.linalg.norm(rx - env.tx, axis=1)                                  # [R]
    d_wall = np.linalg.norm(rx[:, None] - env.images(env.tx)[None], axis=-1)   # [R, 6]
    L_static = np.concatenate([los[:, None], d_wall, d_tx + d_rx], axis=1)     # [R, 1+6+M]
    a_static = np.concatenate([1.0 / los[:, None], env.wall_gamma[None] / d_wall, sgain[None] / (d_tx * d_rx)], axis=1)
    H = multipath_csi(freqs, L_static, a_static)
    return H if env.rx_array is None else H.reshape(env.rx_array.shape[:2] + (len(freqs),))


def render_receivers(cfg: dict, env: Environment, H0: np.ndarray, times: list[np.ndarray], t_all: np.ndarray,
                     hand: np.ndarray, forearm: np.ndarray, torso: np.ndarray, trng: np.random.Generator):
    """What each ESP32 receiver reports for a body track sampled at ``t_all`` (s).

    ``times[r]`` are receiver r's packet times (a subset of ``t_all``). Returns per receiver:
    HT-LTF [P, 56] and LLTF [P, 52] complex int values, timestamps in µs and RSSI
    (with receiver arrays, HT-LTF and LLTF are [A, P, 56] and [A, P, 52]).
    """
    bodies = [(hand, cfg["hand_gain"]), (forearm, cfg["forearm_gain"]), (torso, cfg["torso_gain"])]
    return render_paths(cfg, env, H0, times, t_all, bodies, [hand], trng)


def _dynamic_paths(cfg, env, rx, idx, bodies, wall_hands):
    """Lengths and gains [P, paths] of the moving body's paths to one antenna at ``rx`` [1, 3]."""
    lengths, gains = [], []
    for pts, gain in bodies:
        dt, dr = _bistatic_len(pts[idx], env.tx, rx)
        lengths.append(dt[0] + dr[0])
        gains.append(-gain / (dt[0] * dr[0]))
    # Each hand seen via each wall, before (image of Tx) and after (image of Rx) the bounce.
    tx_images = env.images(env.tx)
    for hand in wall_hands:
        h = hand[idx]
        d_h_tx = np.linalg.norm(h - env.tx, axis=-1)
        d_h_rx = np.linalg.norm(h - rx[0], axis=-1)
        for img_tx, img_rx, gam in zip(tx_images, env.images(rx[0]), env.wall_gamma):
            d1 = np.linalg.norm(h - img_tx, axis=-1)
            lengths.append(d1 + d_h_rx)
            gains.append(-cfg["hand_gain"] * gam / (d1 * d_h_rx))
            d2 = np.linalg.norm(h - img_rx, axis=-1)
            lengths.append(d_h_tx + d2)
            gains.append(-cfg["hand_gain"] * gam / (d_h_tx * d2))
    return np.stack(lengths, 1), np.stack(gains, 1)


def render_paths(cfg: dict, env: Environment, H0: np.ndarray, times: list[np.ndarray], t_all: np.ndarray,
                 bodies: list, wall_hands: list, trng: np.random.Generator):
    """render_receivers for any body: ``bodies`` are (points [len(t_all), 3], gain) of the moving
    scatterers, ``wall_hands`` the tracks whose wall reflections are strong enough to count."""
    freqs = channel_freq_hz(cfg["channel"]) + _ALL_K * SUBCARRIER_SPACING_HZ
    ht, lltf, t_us, rssi = [], [], [], []
    for r in range(env.receivers):
        idx = np.searchsorted(t_all, times[r])
        if env.rx_array is None:
            H = H0[r][None] + multipath_csi(freqs, *_dynamic_paths(cfg, env, env.rx[r:r + 1], idx, bodies, wall_hands))
            Hs = [H]
        else:
            Hs = [H0[r, a][None] + multipath_csi(freqs, *_dynamic_paths(cfg, env, env.rx_array[r, a:a + 1], idx,
                                                                       bodies, wall_hands))
                  for a in range(env.rx_array.shape[1])]
        H = Hs[0]   # [P, 57]; with an array, antenna 0 sets the RSSI the board reports
        P = len(idx)
        # Receiver: AGC normalizes the static power, then steps; noise; CFO; timing slope. One AGC,
        # oscillator and timing reference per board: common to its antennas.
        ref = float(np.sqrt(np.mean(np.abs(H0[r]) ** 2)))
        scale = cfg["amp_int8"] * np.sqrt(2) / ref * 10 ** (env.rx_gain_db[r] / 20 * 0.1)
        steps = trng.random(P) < cfg["agc_step_rate_hz"] / cfg["rate_hz"]
        agc_db = np.cumsum(steps * trng.choice([-1.0, 1.0], P) * cfg["agc_step_db"])
        g = scale * 10 ** (agc_db / 20)
        noise_sd = ref * 10 ** (-cfg["snr_db"] / 20) / np.sqrt(2)
        cfo = np.exp(1j * trng.uniform(-np.pi, np.pi, P))
        slope = trng.normal(0, cfg["sto_sigma"], P) + trng.normal(0, cfg["sto_sigma"])
        rot = cfo[:, None] * np.exp(1j * slope[:, None] * _ALL_K[None])

        def quantize(Ha, kk, chain=None):
            sel = np.searchsorted(_ALL_K, kk)
            noise = trng.normal(0, noise_sd, (P, len(kk), 2)) @ np.array([1, 1j])
            v = (Ha[:, sel] + noise) * rot[:, sel] * g[:, None]
            if chain is not None:
                v = v * np.exp(1j * chain)
            return np.clip(np.rint(v.real), -128, 127) + 1j * np.clip(np.rint(v.imag), -128, 127)

        if env.rx_array is None:
            ht.append(quantize(H, HT20_USED))
            lltf.append(quantize(H, LLTF_USED))
        else:
            ht.append(np.stack([quantize(Ha, HT20_USED, env.chain_phase[r, a]) for a, Ha in enumerate(Hs)]))
            lltf.append(np.stack([quantize(Ha, LLTF_USED, env.chain_phase[r, a]) for a, Ha in enumerate(Hs)]))
        t_us.append(np.rint(times[r] * 1e6).astype(np.int64))
        p_dbm = 20 * np.log10(np.mean(np.abs(H), axis=1)) - 48 + env.rx_gain_db[r]
        rssi.append(np.clip(np.rint(p_dbm + trng.normal(0, 1.0, P)), -100, -10).astype(np.int64))
    return ht, lltf, t_us, rssi


def simulate_trial(cfg: dict, env: Environment, user: User, label: str, session: int, trial_in_session: int,
                   trial_id: int):
    """One trial on every receiver of the environment.

    Returns (ht [R][P_r, 56] complex int, lltf [R][P_r, 52] complex int, t_us [R][P_r] int64,
    rssi [R][P_r] int, facts dict); with receiver arrays ht and lltf are [R][A, P_r, ...].
    """
    rng = np.random.default_rng([cfg["seed"], 3, trial_id])
    orientation = int(rng.choice(cfg["orientations_deg"]))
    distance = _uniform(rng, cfg["distance_m"])
    widar = gesture_family(cfg) == "widar-lr"
    if widar:
        motion, hand_used = widar_gestures.class_motion_hand(label)
        onset, dur, window = widar_timing(cfg, user, motion, rng)
    else:
        onset, dur, window = trial_timing(cfg, user, rng)
    n_nominal = int(round(window * cfg["rate_hz"]))
    H0 = static_channel(cfg, env, user.index, session, trial_in_session)
    trng = np.random.default_rng([cfg["seed"], 5, trial_id])
    times = [_packet_times(cfg, trng, n_nominal) for _ in range(env.receivers)]
    # One body track for all receivers, sampled on the union of their packet times.
    t_all = np.unique(np.concatenate(times))
    if widar:
        hands, forearms, torso = _widar_track(cfg, user, label, session, t_all, rng, orientation, distance, onset, dur)
        bodies = ([(h, cfg["hand_gain"]) for h in hands] + [(f, cfg["forearm_gain"]) for f in forearms]
                  + [(torso, cfg["torso_gain"])])
        ht, lltf, t_us, rssi = render_paths(cfg, env, H0, times, t_all, bodies, hands, trng)
    else:
        hand, forearm, torso, onset, dur = _hand_track(cfg, user, label, session, t_all, rng, orientation, distance,
                                                       onset=onset, dur=dur)
        ht, lltf, t_us, rssi = render_receivers(cfg, env, H0, times, t_all, hand, forearm, torso, trng)
    facts = {"orientation_deg": orientation, "distance_m": round(distance, 4), "window_s": round(window, 4),
             "onset_s": round(onset, 4), "gesture_s": round(dur, 4) if label != digits.STEADY else 0.0}
    if widar:
        facts.update(motion=motion, hand=hand_used)
    return ht, lltf, t_us, rssi, facts


def _trial_plan(cfg):
    """(user, session, trial_in_session, label) for every trial, in recording order."""
    plan = []
    for u in range(cfg["users"]):
        for s in range(cfg["sessions"]):
            order = np.random.default_rng([cfg["seed"], 6, u, s]).permutation(
                np.repeat(np.arange(len(label_names(cfg))), cfg["trials_per_class"]))
            for j, lab in enumerate(order):
                plan.append((u, s, j, int(lab)))
    return plan


def synth_csi_dataset(out, preset: str = "esp32-digits", seed: int | None = None, write_log: bool = False,
                      overrides: dict | None = None) -> Path:
    """Simulate a CSI gesture dataset into ``out`` (see rfedge.data.dataset for the layout)."""
    cfg = load_preset(preset, overrides)
    if seed is not None:
        cfg["seed"] = int(seed)
    gesture_family(cfg)
    if int(cfg.get("rx_antennas", 1)) < 1:
        raise RfedgeError(f"expected at least 1 antenna per receiver, got {cfg['rx_antennas']}", field="rx_antennas")
    if write_log and int(cfg.get("rx_antennas", 1)) > 1:
        raise RfedgeError(f"--write-log writes esp-csi console logs, which carry one antenna per receiver; preset "
                          f"{preset!r} has rx_antennas = {cfg['rx_antennas']}", field="rx_antennas")
    envs = [make_environment(cfg, e) for e in range(cfg["environments"])]
    users = [make_user(cfg, u) for u in range(cfg["users"])]
    plan = _trial_plan(cfg)
    out = Path(out)
    tmp_logs = sink = None
    if write_log:
        from rfedge.sim.csi_logs import LogSink

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_logs = Path(tempfile.mkdtemp(prefix=f".{out.name}.logs.", dir=out.parent))
        tmp_logs.chmod(0o755)
        sink = LogSink(tmp_logs, cfg, HT20_USED, LLTF_USED)
    try:
        path = _simulate_all(cfg, preset, plan, envs, users, out, sink, tmp_logs)
    finally:
        if tmp_logs is not None and tmp_logs.exists():
            shutil.rmtree(tmp_logs, ignore_errors=True)
    return path


def _simulate_all(cfg, preset, plan, envs, users, out, sink, tmp_logs):
    n = len(plan)
    names = label_names(cfg)
    n_ant = int(cfg.get("rx_antennas", 1))
    r_max = max(e.receivers for e in envs)
    rows = []          # (trial, receiver, ht, t_us, rssi): packed once the longest trial is known
    trials = []
    next_start = {}    # device clock of each (user, session): trials follow each other with a pause
    with Progress(n, f"synth csi {preset}") as prog:
        for i, (u, s, j, lab) in enumerate(plan):
            env = envs[u % cfg["environments"]]
            label = names[lab]
            ht, lltf, tt, rs, facts = simulate_trial(cfg, env, users[u], label, s, j, i)
            start_us = next_start.setdefault((u, s), int(np.random.default_rng([cfg["seed"], 7, u, s]).integers(1e6, 1e9)))
            next_start[(u, s)] = start_us + int((facts["window_s"] + 1.0) * 1e6)
            for r in range(env.receivers):
                rows.append((i, r, ht[r], tt[r] + start_us, rs[r]))
                if sink is not None:
                    sink.add(u, s, r, i, label, ht[r], lltf[r], tt[r] + start_us, rs[r])
            trials.append({
                "id": i, "label": lab, "label_name": label, "user": u, "session": s, "trial": j,
                "environment": env.index, "receivers": env.receivers, **facts,
                "user_speed_s": round(users[u].duration_s, 4), "user_size_m": round(users[u].size_m, 4),
                "user_slant": round(users[u].slant, 4),
            })
            prog.update()
    p_max = max(len(row[3]) for row in rows)
    # Receiver arrays add an antenna axis after the receiver; single-antenna data keeps the layout
    # every consumer of esp32 datasets reads.
    csi = np.zeros((n, r_max) + ((n_ant,) if n_ant > 1 else ()) + (p_max, len(HT20_USED), 2), np.int8)
    t_us = np.full((n, r_max, p_max), -1, np.int64)
    rssi = np.zeros((n, r_max, p_max), np.int8)
    n_packets = np.zeros((n, r_max), np.int16)
    for i, r, ht, tt, rs in rows:
        P = len(tt)
        csi[i, r, ..., :P, :, 0] = ht.real
        csi[i, r, ..., :P, :, 1] = ht.imag
        t_us[i, r, :P] = tt
        rssi[i, r, :P] = rs
        n_packets[i, r] = P
    if sink is not None:
        sink.flush()
    config = {**cfg, "preset": preset, "subcarriers": HT20_USED.tolist(), "part": "ht-ltf",
              "bandwidth_mhz": 20, "secondary_channel": 0}
    csi_doc = ("int8 [trial, receiver, packet, subcarrier, (real, imag)]: HT-LTF used subcarriers "
               "(config.subcarriers), packets beyond n_packets are zero")
    rssi_doc = "int8 [trial, receiver, packet]: RSSI in dBm"
    if n_ant > 1:
        csi_doc = ("int8 [trial, receiver, antenna, packet, subcarrier, (real, imag)]: HT-LTF used subcarriers "
                   "(config.subcarriers) at each antenna of the receiver's array (config.rx_antennas); the "
                   "antennas share packets, per-packet phase and AGC, so antenna ratios cancel them; "
                   "packets beyond n_packets are zero")
        rssi_doc = "int8 [trial, receiver, packet]: RSSI in dBm, measured on antenna 0"
    if gesture_family(cfg) == "widar-lr":
        # Per class: its mirror partner (same motion, other hand; the clap is its own), hand, motion.
        config["label_mirror"] = [names.index(widar_gestures.mirror_label(c)) for c in names]
        config["label_hand"] = [widar_gestures.class_motion_hand(c)[1] for c in names]
        config["label_motion"] = [widar_gestures.class_motion_hand(c)[0] for c in names]
    path = write_dataset(
        out, kind="csi", label_names=list(names), trials=trials,
        arrays={"csi": csi, "t_us": t_us, "rssi": rssi, "n_packets": n_packets}, config=config,
        array_doc={
            "csi": csi_doc,
            "t_us": "int64 [trial, receiver, packet]: device local_timestamp in µs, -1 past n_packets",
            "rssi": rssi_doc,
            "n_packets": "int16 [trial, receiver]: packets received (0: receiver absent in this environment)",
        },
        produced_by="rfedge synth csi",
        extra_dirs=None if sink is None else {"logs": tmp_logs})
    return Path(path)
