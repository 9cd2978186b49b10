"""Passive-RFID arm-gesture simulator after paper 003 (§III system and signal model, §IV setup).

Geometry (metres; the paper's 2-D frame lifted to 3-D): the reader's two-element ULA lies on the
x axis at height ``reader_height_m``, element 1 (port 1) at x = -d/2 and element 2 (port 2) at
x = +d/2, d = 0.8 λ, both patch antennas looking along +y. The participant stands ``distance_m``
away facing the reader, with two tags on the back of each hand (4 tags, distinct EPCs).

Channel per read, one antenna element at a time (the reader switches antennas periodically):

    h   = Σ_paths a_p · exp(+j 2π r_p / λ)          one-way, tag <-> element (reciprocal)
    y   = sqrt(P_tx · η_backscatter) · h² · exp(j(φ_tag + φ_port)) · exp(j·jitter) + ν

Paths are the line of sight plus NLoS paths through the room: floor, side and back walls (image
sources) and a few point scatterers per environment, each weaker than the LoS. ``a_p`` carries
the reader antenna pattern (9 dBic, 70° beamwidth), polarization loss (circular reader, linear
tag), the tag's on-body gain and its facing (a tag on the back of the hand radiates poorly
through the hand), torso shadowing and free-space spreading λ/(4π r). The phase therefore grows
as 4π·distance/λ — the convention of the reader's reported phase — and between the two elements
the LoS phase differs by 4π d sinθ/λ, so the reads follow the paper's round-trip steering vector
a_m(θ) = exp(j 4π d/λ (m-1) sinθ), with θ = atan2(q_y, q_x) - π/2 (positive toward -x).

The reader reports, per read: RSS (dBm, 0.5 dB steps), phase (12-bit, wrapped to [0, 2π), with
an optional π ambiguity), Doppler (-(1/2π)·dφ/dt = -2 ṙ/λ plus noise, 1/16 Hz steps, positive
when the tag approaches) and IQ rebuilt from RSS and phase (sqrt(mW) units). A read is missed
when the forward link cannot power the tag, when the reply is below the reader's sensitivity,
by collisions, and in bursts (a two-state Markov chain per tag and antenna).

Everything is vectorized over a block of trials (one participant, one gesture); a run is fully
determined by the preset and its seed.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfedge.data.dataset import write_dataset
from rfedge.errors import RfedgeError
from rfedge.sim.presets import apply_overrides
from rfedge.progress import Progress
from rfedge.sim import arm_gestures as ag

C_M_S = 299_792_458.0
MODEL_VERSION = 1

# Presets are data: every field can be overridden (``--set key=value``).
PRESETS: dict[str, dict] = {
    "arm21": {
        "seed": 3,
        # dataset size (paper 003 §IV: 5 participants x 21 gestures x 20 repetitions = 2,100)
        "participants": 5,
        "sessions": 1,
        "repetitions": 20,
        "gestures": [],               # subset of gesture abbreviations; empty = all 21
        "environments": 1,            # rooms; session s is recorded in room s % environments
        # read schedule
        "window_s": 3.6,              # trial window
        "slots": 128,                 # read slots per tag per antenna in the window
        # reader: Impinj Speedway R420, ETSI EN 302 208 upper band, one fixed channel by default
        "carrier_mhz": [866.9],       # several values: frequency hopping every hop_dwell_s
        "hop_dwell_s": 0.2,
        "tx_power_dbm": 30.0,
        "reader_gain_dbic": 9.0,      # Vulcan PAR90209H
        "beamwidth_deg": 70.0,
        "polarization_loss_db": 3.0,  # circular reader antenna, linear tag
        "reader_height_m": 1.25,
        "element_spacing_wl": 0.8,
        "port_phase_offset_rad": [0.0, 0.0],   # cable/port phase after calibration
        "reader_sensitivity_dbm": -84.0,
        "noise_floor_dbm": -90.0,
        "phase_jitter_rad": 0.03,
        "doppler_noise_hz": 3.0,
        "rss_step_db": 0.5,
        "phase_bits": 12,
        "doppler_step_hz": 0.0625,
        "phase_pi_ambiguity": False,
        # tags: Alien AZ-9662 (Higgs) on the back of the hand
        "tag_gain_dbi": 2.0,
        "body_detuning_db": 4.0,
        "tag_sensitivity_dbm": -18.0,
        "backscatter_loss_db": 5.0,
        "tag_back_loss_db": 12.0,     # floor of the facing gain: reading through the hand
        "torso_loss_db": 20.0,
        "link_soft_db": 1.5,          # spread of the power-up threshold between reads
        "miss_base": 0.03,            # collisions and singulation failures
        "burst_enter": 0.02,
        "burst_exit": 0.25,
        "burst_miss": 0.85,
        # room
        "floor_reflection": 0.2,
        "wall_reflection": 0.2,
        "scatterers": 3,
        "scatterer_reflection": [0.05, 0.15],
        # participants and trials
        "distance_m": 3.0,
        "lateral_jitter_m": 0.15,
        "distance_jitter_m": 0.3,
        "yaw_jitter_deg": 10.0,
        "height_m": [1.55, 1.85],
        "speed_jitter": 0.25,
        "amplitude_jitter": 0.2,
        "user_speed_jitter": 0.1,
        "user_amplitude_jitter": 0.08,
        "pose_jitter_deg": 6.0,
        "wobble_deg": 3.0,
        "two_hand_lag_s": 0.08,
        "sway_m": [0.004, 0.015],
        # ItemTest CSV output
        "csv_decimal_comma": False,
    },
}

# Lists whose length is part of their meaning (the others may have any length).
_FIXED_LEN = {"port_phase_offset_rad", "scatterer_reflection", "height_m", "sway_m"}

TAGS = (  # name, hand (0 right, 1 left), position across the back of the hand (±1)
    ("R1", 0, +1), ("R2", 0, -1), ("L1", 1, +1), ("L2", 1, -1),
)
EPCS = tuple(f"E2003412DC030118000000{i + 1:02X}" for i in range(len(TAGS)))
TIDS = tuple(f"E2003412013BF80000{0x3A41 + 7 * i:04X}{i + 1:02X}" for i in range(len(TAGS)))
READER_NAME = "SpeedwayR-10-9F-3B"
_HAND_OF_TAG = np.array([t[1] for t in TAGS])
_SIDE_OF_TAG = np.where(_HAND_OF_TAG == 0, -1.0, 1.0)   # right arm -1, left arm +1
_ACROSS_OF_TAG = np.array([t[2] for t in TAGS], dtype=np.float64)
TAG_SPACING_M = 0.05
TAG_LIFT_M = 0.012          # tag above the skin of the back of the hand


# ---- configuration -------------------------------------------------------------------------

def preset_config(preset: str = "arm21", overrides: dict | None = None, seed: int | None = None) -> dict:
    """The preset's fields with ``overrides`` applied and checked (unknown key -> RfedgeError)."""
    if preset not in PRESETS:
        raise RfedgeError(f"unknown RFID preset {preset!r}; available: {', '.join(sorted(PRESETS))}",
                          field="preset")
    cfg = apply_overrides(copy.deepcopy(PRESETS[preset]), overrides, preset, fixed_len=_FIXED_LEN)
    if seed is not None:
        cfg["seed"] = int(seed)
    _check(cfg)
    return cfg


def _check(cfg: dict) -> None:
    def need(ok, key, what):
        if not ok:
            raise RfedgeError(f"expected {what}, got {cfg[key]!r}", field=key)

    for k in ("participants", "sessions", "repetitions", "environments"):
        need(cfg[k] >= 1, k, "an integer >= 1")
    need(cfg["slots"] >= 8, "slots", "an integer >= 8")
    need(cfg["window_s"] >= 0.5, "window_s", "a window of at least 0.5 s")
    need(len(cfg["carrier_mhz"]) >= 1 and all(isinstance(f, (int, float)) and 300 < f < 3000
                                              for f in cfg["carrier_mhz"]), "carrier_mhz",
         "a list of carrier frequencies in MHz")
    bad = [g for g in cfg["gestures"] if g not in ag.BY_ABBREV]
    need(not bad, "gestures", f"gesture abbreviations from {', '.join(ag.LABEL_NAMES)}")
    need(cfg["scatterers"] >= 0, "scatterers", "an integer >= 0")
    need(1 <= cfg["phase_bits"] <= 24, "phase_bits", "1..24 bits")
    for k in ("miss_base", "burst_enter", "burst_exit", "burst_miss"):
        need(0.0 <= cfg[k] <= 1.0, k, "a probability in [0, 1]")


def gesture_list(cfg: dict) -> list[ag.Gesture]:
    names = cfg["gestures"] or list(ag.LABEL_NAMES)
    return [g for g in ag.GESTURES if g.abbrev in names]


def element_positions(cfg: dict, freq_mhz: float | None = None) -> np.ndarray:
    """[2, 3] element positions; the spacing is 0.8 λ at the first (nominal) carrier."""
    lam = C_M_S / ((freq_mhz or cfg["carrier_mhz"][0]) * 1e6)
    d = cfg["element_spacing_wl"] * lam
    h = cfg["reader_height_m"]
    return np.array([[-d / 2, 0.0, h], [d / 2, 0.0, h]])


def paper_aoa(pos, centre) -> np.ndarray:
    """θ = atan2(q_y, q_x) - π/2 of paper 003 (horizontal plane), wrapped to (-π, π]."""
    q = np.asarray(pos)[..., :2] - np.asarray(centre)[..., :2]
    th = np.arctan2(q[..., 1], q[..., 0]) - np.pi / 2
    return np.angle(np.exp(1j * th))


# ---- the room ------------------------------------------------------------------------------

@dataclass
class Environment:
    """Reflecting planes (axis, coordinate, reflection) and point scatterers of one room."""

    index: int
    planes: list = field(default_factory=list)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    point_gain: np.ndarray = field(default_factory=lambda: np.zeros(0, complex))

    def describe(self) -> dict:
        return {
            "index": self.index,
            "planes": [{"axis": "xyz"[a], "at_m": round(c, 3), "reflection": round(g, 3)} for a, c, g in self.planes],
            "scatterers": [{"xyz_m": [round(v, 3) for v in p], "reflection": [round(g.real, 4), round(g.imag, 4)]}
                           for p, g in zip(self.points.tolist(), self.point_gain)],
        }


def make_environment(cfg: dict, index: int) -> Environment:
    """A room around the setup: floor, side walls, the wall behind the participant, and point
    scatterers (furniture, metal) kept out of the participant's own space."""
    rng = np.random.default_rng([cfg["seed"], 5, index])
    width = rng.uniform(5.5, 7.5)
    back = cfg["distance_m"] + rng.uniform(2.5, 4.5)
    planes = [(2, 0.0, -cfg["floor_reflection"]),
              (0, -width / 2, -cfg["wall_reflection"] * rng.uniform(0.8, 1.2)),
              (0, width / 2, -cfg["wall_reflection"] * rng.uniform(0.8, 1.2)),
              (1, back, -cfg["wall_reflection"] * rng.uniform(0.8, 1.2))]
    n = cfg["scatterers"]
    pts = np.column_stack([rng.uniform(-width / 2 + 0.3, width / 2 - 0.3, n), rng.uniform(0.8, back - 0.3, n),
                           rng.uniform(0.2, 2.2, n)])
    near = (np.abs(pts[:, 0]) < 0.9) & (np.abs(pts[:, 1] - cfg["distance_m"]) < 1.0)
    pts[near, 0] += np.where(pts[near, 0] >= 0, 1.2, -1.2)
    lo, hi = cfg["scatterer_reflection"]
    gain = rng.uniform(lo, hi, n) * np.exp(1j * rng.uniform(0, 2 * np.pi, n))
    return Environment(index, planes, pts, gain)


# ---- propagation ---------------------------------------------------------------------------

def _norm(v):
    return np.sqrt(np.sum(v * v, axis=-1))


def _db(x):
    return 10.0 * np.log10(np.maximum(x, 1e-30))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x)))     # no overflow for large |x|


def one_way_channel(pos, normal, elem, lam, cfg: dict, env: Environment | None = None, torso_xy=None,
                    torso_radius_m: float = 0.16) -> np.ndarray:
    """Complex one-way channel between tag(s) at ``pos`` (facing ``normal``) and reader element(s)
    at ``elem``, in amplitude units (|h|² = power ratio incl. both antenna gains)."""
    g_r0 = 10 ** ((cfg["reader_gain_dbic"] - cfg["polarization_loss_db"]) / 10)
    g_t0 = 10 ** ((cfg["tag_gain_dbi"] - cfg["body_detuning_db"]) / 10)
    q = math.log(0.5) / math.log(math.cos(math.radians(cfg["beamwidth_deg"] / 2)))
    back_floor = 10 ** (-cfg["tag_back_loss_db"] / 10)

    def path(length, dir_reader, dir_tag, gamma):
        g_r = g_r0 * np.clip(dir_reader[..., 1], 1e-3, 1.0) ** q      # boresight +y
        facing = np.sum(normal * dir_tag, axis=-1)
        g_t = g_t0 * np.maximum(0.5 * (1.0 + facing), back_floor)      # cardioid: -3 dB sideways
        return gamma * np.sqrt(g_r * g_t) * lam / (4 * np.pi * length) * np.exp(2j * np.pi * length / lam)

    v = pos - elem
    r = _norm(v)
    u = v / r[..., None]
    h = path(r, u, -u, 1.0)
    if torso_xy is not None:
        h = h * 10 ** (-torso_shadow_db(pos, elem, torso_xy, torso_radius_m, cfg["torso_loss_db"]) / 20)
    if env is not None:
        for axis, coord, gamma in env.planes:
            img = np.array(np.broadcast_to(pos, np.broadcast_shapes(np.shape(pos), np.shape(elem))), dtype=float)
            img[..., axis] = 2 * coord - img[..., axis]
            w = img - elem
            L = _norm(w)
            dr = w / L[..., None]
            dt = -dr
            dt[..., axis] *= -1.0
            h = h + path(L, dr, dt, gamma)
        for p, gamma in zip(env.points, env.point_gain):
            a = p - elem
            la = _norm(a)
            b = p - pos
            lb = _norm(b)
            h = h + path(la + lb, a / la[..., None], b / lb[..., None], gamma)
    return h


def torso_shadow_db(pos, elem, torso_xy, radius_m, loss_db):
    """Extra one-way loss where the torso (a vertical cylinder) stands between element and tag."""
    e = np.asarray(elem)[..., :2]
    d = np.asarray(pos)[..., :2] - e
    c = np.asarray(torso_xy) - e
    dist = np.maximum(_norm(d), 1e-9)
    along = np.sum(c * d, axis=-1) / dist                    # torso centre along the ray, metres
    gap = _norm(c - (along / dist)[..., None] * d)
    inside = _sigmoid((radius_m - gap) / 0.02)
    between = _sigmoid((dist - along) / 0.02)               # the tag is beyond the torso centre
    return loss_db * inside * between


def simulate_reads(pos, vel, normal, antenna, freq_mhz, cfg: dict, *, env: Environment | None = None,
                   torso_xy=None, tag_phase=0.0, rng: np.random.Generator | None = None,
                   misdetect: bool = True) -> dict:
    """What the reader reports for reads of tags at ``pos`` [..., 3] moving at ``vel`` [..., 3],
    facing ``normal`` [..., 3], through element ``antenna`` (0 or 1, broadcast) at ``freq_mhz``.

    The last axis of the broadcast shape is read order (bursts of misses run along it). Without
    ``rng`` there is no noise and no miss. Returns iq (complex128, NaN where missed), rss_dbm,
    phase_rad, doppler_hz (NaN where missed), detected, and the noiseless truth: rx_dbm, fwd_dbm,
    doppler_true_hz, aoa_true_rad (cone angle asin(-u_x) seen from the array centre).
    """
    pos, vel, normal = (np.asarray(a, dtype=np.float64) for a in (pos, vel, normal))
    antenna = np.asarray(antenna)
    lam = C_M_S / (np.asarray(freq_mhz, dtype=np.float64) * 1e6)
    elems = element_positions(cfg)
    elem = elems[antenna]
    h = one_way_channel(pos, normal, elem, lam, cfg, env, torso_xy)
    p_tx = 10 ** (cfg["tx_power_dbm"] / 10)                       # mW
    eta = 10 ** (-cfg["backscatter_loss_db"] / 10)
    offs = np.asarray(cfg["port_phase_offset_rad"], dtype=np.float64)[antenna] + tag_phase
    y0 = math.sqrt(p_tx * eta) * h * h * np.exp(1j * offs)
    fwd_dbm = cfg["tx_power_dbm"] + _db(np.abs(h) ** 2)
    rx_dbm = _db(np.abs(y0) ** 2)
    los = pos - elem
    rdot = np.sum(los * vel, axis=-1) / _norm(los)
    doppler_true = -2.0 * rdot / lam
    centre = elems.mean(axis=0)
    u = (pos - centre) / _norm(pos - centre)[..., None]
    aoa = np.arcsin(np.clip(-u[..., 0], -1, 1))
    shape = np.broadcast_shapes(y0.shape, doppler_true.shape)
    y0 = np.broadcast_to(y0, shape)
    if rng is None:
        y, dop, det = y0, np.broadcast_to(doppler_true, shape), np.ones(shape, bool)
    else:
        sigma = math.sqrt(10 ** (cfg["noise_floor_dbm"] / 10) / 2)
        y = y0 * np.exp(1j * rng.normal(0, cfg["phase_jitter_rad"], shape)) + \
            sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
        dop = doppler_true + rng.normal(0, cfg["doppler_noise_hz"], shape)
        p_miss = miss_probability(np.broadcast_to(fwd_dbm, shape), np.broadcast_to(rx_dbm, shape), cfg)
        det = draw_detections(p_miss, cfg, rng) if misdetect else np.ones(shape, bool)
    rep = reader_report(y, dop, det, cfg, rng)
    rep.update(detected=det, rx_dbm=np.broadcast_to(rx_dbm, shape), fwd_dbm=np.broadcast_to(fwd_dbm, shape),
               doppler_true_hz=np.broadcast_to(doppler_true, shape), aoa_true_rad=np.broadcast_to(aoa, shape))
    return rep


def miss_probability(fwd_dbm, rx_dbm, cfg: dict) -> np.ndarray:
    """Per-read miss probability outside bursts: tag not powered, reply too weak, collision."""
    p_link = _sigmoid((cfg["tag_sensitivity_dbm"] - fwd_dbm) / cfg["link_soft_db"])
    p_rev = _sigmoid(cfg["reader_sensitivity_dbm"] - rx_dbm)
    return 1.0 - (1.0 - p_link) * (1.0 - p_rev) * (1.0 - cfg["miss_base"])


def draw_detections(p_miss, cfg: dict, rng: np.random.Generator) -> np.ndarray:
    """Detections with bursts of misses: a good/bad Markov chain along the last axis; in the bad
    state a read is also lost with probability ``burst_miss`` (body fading, interference)."""
    p_miss = np.asarray(p_miss)
    enter, leave = cfg["burst_enter"], cfg["burst_exit"]
    stay_bad = np.empty(p_miss.shape, bool)
    u = rng.random(p_miss.shape)
    bad = rng.random(p_miss.shape[:-1]) < (enter / max(enter + leave, 1e-12))
    for k in range(p_miss.shape[-1]):
        bad = np.where(bad, u[..., k] >= leave, u[..., k] < enter)
        stay_bad[..., k] = bad
    p = 1.0 - (1.0 - p_miss) * np.where(stay_bad, 1.0 - cfg["burst_miss"], 1.0)
    return rng.random(p_miss.shape) >= p


def reader_report(y, doppler_hz, detected, cfg: dict, rng: np.random.Generator | None) -> dict:
    """Quantize like the reader (RSS 0.5 dB, 12-bit phase, Doppler 1/16 Hz); IQ rebuilt from the
    reported RSS and phase, as reader software does; NaN where the read was missed."""
    rss = 10 * np.log10(np.maximum(np.abs(y) ** 2, 1e-30))
    step = cfg["rss_step_db"]
    if step > 0:
        rss = np.round(rss / step) * step
    ph = np.mod(np.angle(y), 2 * np.pi)
    if cfg["phase_pi_ambiguity"] and rng is not None:
        ph = np.mod(ph + np.pi * (rng.random(ph.shape) < 0.5), 2 * np.pi)
    levels = 2 ** cfg["phase_bits"]
    ph = np.mod(np.round(ph / (2 * np.pi) * levels), levels) * (2 * np.pi / levels)
    dstep = cfg["doppler_step_hz"]
    dop = np.round(np.asarray(doppler_hz) / dstep) * dstep if dstep > 0 else np.asarray(doppler_hz)
    iq = 10 ** (rss / 20) * np.exp(1j * ph)
    nan = ~np.asarray(detected)
    rss, ph, dop = (np.where(nan, np.nan, a) for a in (rss, ph, np.broadcast_to(dop, rss.shape)))
    iq = np.where(nan, complex(np.nan, np.nan), iq)
    return {"iq": iq, "rss_dbm": rss, "phase_rad": ph, "doppler_hz": dop}


def link_budget_dbm(distance_m: float, cfg: dict, facing_cos: float = 1.0) -> float:
    """Noiseless boresight LoS RSS at ``distance_m`` (what the free-space model predicts)."""
    lam = C_M_S / (cfg["carrier_mhz"][0] * 1e6)
    face = max(0.5 * (1 + facing_cos), 10 ** (-cfg["tag_back_loss_db"] / 10))
    one_way = (cfg["reader_gain_dbic"] - cfg["polarization_loss_db"] + cfg["tag_gain_dbi"]
               - cfg["body_detuning_db"] + _db(face) + 20 * math.log10(lam / (4 * math.pi * distance_m)))
    return cfg["tx_power_dbm"] - cfg["backscatter_loss_db"] + 2 * one_way


# ---- participants and read schedule -------------------------------------------------------

@dataclass
class Participant:
    index: int
    height_m: float
    arm_scale: float
    speed: float
    amplitude: float
    bias_deg: list          # added to (alpha, beta, gamma, rho, eps): personal style
    sway_m: float
    stance_m: list          # per session: (x, y) offset of where this person stands

    def describe(self) -> dict:
        return {"user": self.index, "height_m": round(self.height_m, 3), "arm_scale": round(self.arm_scale, 3),
                "speed": round(self.speed, 3), "amplitude": round(self.amplitude, 3),
                "bias_deg": [round(b, 2) for b in self.bias_deg], "sway_m": round(self.sway_m, 4),
                "stance_m": [[round(v, 3) for v in s] for s in self.stance_m]}


def make_participant(cfg: dict, index: int) -> Participant:
    rng = np.random.default_rng([cfg["seed"], 1, index])
    lo, hi = cfg["height_m"]
    # Stratified so that a handful of people still spans the paper's 155-185 cm.
    height = lo + (hi - lo) * (index % cfg["participants"] + rng.uniform()) / cfg["participants"]
    return Participant(
        index=index, height_m=float(height), arm_scale=float(rng.normal(1.0, 0.03)),
        speed=float(np.exp(rng.normal(0, cfg["user_speed_jitter"]))),
        amplitude=float(1.0 + rng.uniform(-1, 1) * cfg["user_amplitude_jitter"]),
        bias_deg=[float(v) for v in rng.normal(0, [4.0, 6.0, 8.0, 10.0, 4.0])],
        sway_m=float(rng.uniform(*cfg["sway_m"])),
        stance_m=[[float(rng.normal(0, 0.05)), float(rng.normal(0, 0.08))] for _ in range(cfg["sessions"])],
    )


def read_times(n: int, cfg: dict, rng: np.random.Generator) -> np.ndarray:
    """[n, tags, 2, K] read times. Each cycle the reader inventories on element 1, then on element
    2 (antenna switching); within an element's half-cycle the tags answer in a random slotted-
    ALOHA order at jittered instants, so reads are periodic per element but irregular in time."""
    K, T = cfg["slots"], len(TAGS)
    tc = cfg["window_s"] / K
    order = np.argsort(rng.random((n, K, 2, T)), axis=-1).argsort(axis=-1)   # rank of each tag
    frac = (order + rng.uniform(0.1, 0.9, (n, K, 2, T))) / T
    t = (np.arange(K)[None, :, None, None] + 0.5 * np.arange(2)[None, None, :, None] + 0.5 * frac) * tc
    return np.ascontiguousarray(t.transpose(0, 3, 2, 1))


# ---- one block of trials: one participant, one session, one gesture ------------------------

def _bt(x):
    """[n] -> [1, n, 1, 1, 1] against time arrays [3, n, tags, antennas, K]."""
    return np.asarray(x)[None, :, None, None, None]


def _trial_factors(cfg, user: Participant, gesture: ag.Gesture, session: int, n: int, rng) -> dict:
    speed = user.speed * rng.uniform(1 - cfg["speed_jitter"], 1 + cfg["speed_jitter"], n)
    dur = gesture.duration_s / speed
    latest = np.maximum(cfg["window_s"] - 0.05 - dur, 0.1)
    onset = rng.uniform(0.0, 1.0, n) * (latest - 0.1) + 0.1
    lag = np.zeros((n, 2))
    if gesture.hands == 2:
        lag[:, 1] = rng.uniform(-1, 1, n) * cfg["two_hand_lag_s"]
    sx, sy = user.stance_m[session]
    return {
        "speed": speed, "duration_s": dur, "onset_s": onset, "lag_s": lag,
        "amplitude": user.amplitude * rng.uniform(1 - cfg["amplitude_jitter"], 1 + cfg["amplitude_jitter"], n),
        "hand_amplitude": rng.uniform(0.92, 1.08, (n, 2)),
        "warp": rng.uniform(-0.35, 0.35, n),
        "pose_offset": rng.normal(0, 1, (n, 2, 5)) * np.array(
            [cfg["pose_jitter_deg"], cfg["pose_jitter_deg"], cfg["pose_jitter_deg"], 10.0, 5.0]),
        "wobble_amp": rng.uniform(0.3, 1.0, (n, 2, 2, 5)) * cfg["wobble_deg"] * np.array([1, 1, 1.2, 1.5, 1]),
        "wobble_f": rng.uniform(0.3, 1.2, (n, 2, 2)),
        "wobble_ph": rng.uniform(0, 2 * np.pi, (n, 2, 2, 5)),
        "x_m": sx + rng.uniform(-1, 1, n) * cfg["lateral_jitter_m"],
        "distance_m": cfg["distance_m"] + sy + rng.uniform(-1, 1, n) * cfg["distance_jitter_m"],
        "yaw_deg": rng.uniform(-1, 1, n) * cfg["yaw_jitter_deg"],
        "sway_f": rng.uniform(0.15, 0.4, (n, 2)),
        "sway_ph": rng.uniform(0, 2 * np.pi, (n, 2)),
    }


def tag_kinematics(cfg, user: Participant, gesture: ag.Gesture, f: dict, t, placement) -> tuple:
    """Tag positions [..., 3], velocities and back-of-hand normals at read times ``t``
    [n, tags, antennas, K]. Velocity by central difference over ±1 ms of the same kinematics."""
    dt = 1e-3
    tt = t[None] + np.array([-dt, 0.0, dt])[:, None, None, None, None]           # [3, n, T, A, K]
    hand = _HAND_OF_TAG
    bth = lambda x: np.asarray(x)[:, hand][None, :, :, None, None]               # [n, 2] -> per tag
    tau = (tt - _bt(f["onset_s"]) - bth(f["lag_s"])) / _bt(f["duration_s"])
    tau = np.clip(tau, 0.0, 1.0)
    tau = tau + _bt(f["warp"]) * tau * (1.0 - tau)                               # personal tempo
    amp = _bt(f["amplitude"]) * bth(f["hand_amplitude"])
    ang = np.empty(tt.shape + (5,))
    for h, motion in ((0, gesture.right), (1, gesture.left)):
        sel = hand == h
        ang[:, :, sel] = ag.arm_angles(motion, tau[:, :, sel], amp[:, :, sel])
    ang += f["pose_offset"][:, hand][None, :, :, None, None, :] + np.asarray(user.bias_deg)
    for c in range(2):
        ph = 2 * np.pi * f["wobble_f"][:, hand, c][None, :, :, None, None, None] * tt[..., None]
        ang += (f["wobble_amp"][:, hand, c][None, :, :, None, None, :]
                * np.sin(ph + f["wobble_ph"][:, hand, c][None, :, :, None, None, :]))
    yaw = np.deg2rad(f["yaw_deg"])
    fwd = np.stack([-np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)], -1)[None, :, None, None, None, :]
    right = np.stack([fwd[..., 1], -fwd[..., 0], fwd[..., 2]], -1)
    out = -_SIDE_OF_TAG[None, None, :, None, None, None] * right
    up = np.array([0.0, 0.0, 1.0])
    H = user.height_m
    sway = user.sway_m * np.sin(2 * np.pi * f["sway_f"][None, :, None, None, None, :] * tt[..., None]
                                + f["sway_ph"][None, :, None, None, None, :])
    torso_xy = np.stack([_bt(f["x_m"]), _bt(f["distance_m"])], -1) + sway              # [3, n, T, A, K, 2]
    shoulder = np.concatenate([torso_xy, np.full(torso_xy.shape[:-1] + (1,), 0.818 * H)], -1) + 0.129 * H * out
    seg = np.full(tt.shape, H * user.arm_scale)
    hand_p, fore, back = ag.arm_pose(ang, shoulder, fwd, out, up, 0.186 * seg, 0.185 * seg,
                                     np.broadcast_to(_SIDE_OF_TAG[None, None, :, None, None], tt.shape))
    across = np.cross(fore, back)
    across /= np.linalg.norm(across, axis=-1, keepdims=True)
    sgn = _ACROSS_OF_TAG[None, None, :, None, None, None]
    pl = placement[None, None, :, None, None, :]                                       # [T, 2] along, across
    pos = hand_p + TAG_LIFT_M * back + (0.5 * TAG_SPACING_M * sgn + pl[..., 1:2]) * across + pl[..., 0:1] * fore
    vel = (pos[2] - pos[0]) / (2 * dt)
    return pos[1], vel, back[1], torso_xy[1]


def simulate_block(cfg, env: Environment, user: Participant, gesture: ag.Gesture, session: int, n: int,
                   rng: np.random.Generator, tag_phase: np.ndarray) -> tuple[dict, dict]:
    """``n`` repetitions of one gesture by one participant: (arrays [n, tags, 2, K], factors)."""
    f = _trial_factors(cfg, user, gesture, session, n, rng)
    t = read_times(n, cfg, rng)
    placement = np.random.default_rng([cfg["seed"], 3, user.index, session]).normal(0, [0.008, 0.004], (len(TAGS), 2))
    pos, vel, normal, torso = tag_kinematics(cfg, user, gesture, f, t, placement)
    chans = np.asarray(cfg["carrier_mhz"], dtype=np.float64)
    if len(chans) > 1:
        perm = np.argsort(rng.random((n, len(chans))), axis=1)
        dwell = cfg["hop_dwell_s"]
        hop = np.floor((t + rng.uniform(0, dwell, n)[:, None, None, None]) / dwell).astype(int)
        ch = np.take_along_axis(perm, (hop % len(chans)).reshape(n, -1), axis=1).reshape(t.shape)
    else:
        ch = np.zeros(t.shape, int)
    antenna = np.arange(2)[None, None, :, None]
    tphase = tag_phase[np.arange(len(TAGS))[None, :, None, None], ch]
    rep = simulate_reads(pos, vel, normal, np.broadcast_to(antenna, t.shape), chans[ch], cfg, env=env,
                         torso_xy=torso, tag_phase=tphase, rng=rng)
    rep["t_s"] = t
    rep["frequency_mhz"] = chans[ch]
    return rep, f


# ---- the dataset ---------------------------------------------------------------------------

ARRAY_DOC = {
    "iq": "complex64 [trial, tag, antenna, slot]: reported IQ = 10^(rss/20)·exp(j·phase) in sqrt(mW); "
          "NaN+NaNj where the read was missed (see detected)",
    "detected": "bool [trial, tag, antenna, slot]: the tag answered in this read slot",
    "t_s": "float32 [trial, tag, antenna, slot]: time of the read slot in s from the window start "
           "(antennas alternate; irregular within a cycle); valid for missed slots too",
    "rss_dbm": "float32 [trial, tag, antenna, slot]: peak RSSI in dBm (0.5 dB steps); NaN where missed",
    "phase_rad": "float32 [trial, tag, antenna, slot]: reader phase in [0, 2π), grows with distance "
                 "(4π r/λ + offsets); NaN where missed",
    "doppler_hz": "float32 [trial, tag, antenna, slot]: reader Doppler, positive when the tag approaches; "
                  "NaN where missed",
    "frequency_mhz": "float32 [trial, tag, antenna, slot]: carrier of the read",
    "aoa_true_rad": "float32 [trial, tag, antenna, slot]: ground truth, not a reader output: cone angle "
                    "asin(-u_x) of the tag seen from the array centre (= paper 003's θ at array height)",
}


def synth_rfid_dataset(out, preset: str = "arm21", seed: int | None = None, write_csv: bool = False,
                       overrides: dict | None = None) -> Path:
    """Simulate the passive-RFID arm-gesture dataset into ``out`` (rfedge dataset layout) and,
    with ``write_csv``, ItemTest CSV exports of every trial under ``out/itemtest/``."""
    cfg = preset_config(preset, overrides, seed)
    gestures = gesture_list(cfg)
    label_of = {g.abbrev: i for i, g in enumerate(gestures)}
    global_index = {g: i for i, g in enumerate(ag.LABEL_NAMES)}
    users = [make_participant(cfg, u) for u in range(cfg["participants"])]
    envs = [make_environment(cfg, e) for e in range(cfg["environments"])]
    R, K, T = cfg["repetitions"], cfg["slots"], len(TAGS)
    tag_phase = np.random.default_rng([cfg["seed"], 11]).uniform(0, 2 * np.pi, (T, len(cfg["carrier_mhz"])))
    blocks = [(u, s, g) for u in range(len(users)) for s in range(cfg["sessions"]) for g in gestures]
    n = len(blocks) * R
    shape = (n, T, 2, K)
    arrays = {"iq": np.empty(shape, np.complex64), "detected": np.empty(shape, bool)}
    for k in ("t_s", "rss_dbm", "phase_rad", "doppler_hz", "frequency_mhz", "aoa_true_rad"):
        arrays[k] = np.empty(shape, np.float32)
    trials = []
    with Progress(len(blocks), f"synth rfid {preset}") as prog:
        for b, (u, s, g) in enumerate(blocks):
            env = envs[s % len(envs)]
            rng = np.random.default_rng([cfg["seed"], 2, u, s, global_index[g.abbrev]])
            rep, f = simulate_block(cfg, env, users[u], g, s, R, rng, tag_phase)
            sl = slice(b * R, (b + 1) * R)
            for k in arrays:
                arrays[k][sl] = rep[k]
            for r in range(R):
                trials.append({
                    "label": label_of[g.abbrev], "label_name": g.abbrev, "user": u, "session": s,
                    "repetition": r, "environment": env.index, "hands": g.hands,
                    "speed": round(float(f["speed"][r]), 4), "amplitude": round(float(f["amplitude"][r]), 4),
                    "onset_s": round(float(f["onset_s"][r]), 4), "duration_s": round(float(f["duration_s"][r]), 4),
                    "lateral_m": round(float(f["x_m"][r]), 4), "standing_m": round(float(f["distance_m"][r]), 4),
                    "yaw_deg": round(float(f["yaw_deg"][r]), 3),
                    "height_m": round(users[u].height_m, 3),
                    "detected_fraction": round(float(rep["detected"][r].mean()), 4),
                })
            prog.update()
    lam = C_M_S / (cfg["carrier_mhz"][0] * 1e6)
    config = {
        **cfg, "preset": preset, "model_version": MODEL_VERSION,
        "wavelength_m": lam, "element_x_m": element_positions(cfg)[:, 0].tolist(),
        "steering": "a_m(theta) = exp(j 4 pi d/lambda (m-1) sin theta), theta = atan2(q_y, q_x) - pi/2",
        "phase_convention": "reported phase = 4 pi r / lambda + tag and port offsets (mod 2 pi)",
        "tags": [{"name": nm, "epc": e, "tid": tid, "hand": ("right", "left")[h], "index": i}
                 for i, ((nm, h, _), e, tid) in enumerate(zip(TAGS, EPCS, TIDS))],
        "antenna_ports": [1, 2],
        "gesture_names": {g.abbrev: g.name for g in gestures},
        "participants_drawn": [p.describe() for p in users],
        "environments_drawn": [e.describe() for e in envs],
    }
    path = write_dataset(out, kind="rfid", label_names=[g.abbrev for g in gestures], trials=trials,
                         arrays=arrays, config=config, array_doc=ARRAY_DOC, produced_by="rfedge synth rfid")
    if write_csv:
        write_trial_csvs(Path(path), arrays, trials, cfg)
    return Path(path)


def trial_reads(arrays: dict, i: int):
    """The detected reads of trial ``i`` as ``RfidReads`` (antenna ports 1 and 2)."""
    from rfedge.io.impinj import RfidReads

    det = np.asarray(arrays["detected"][i])
    ti, ai, _ = np.nonzero(det)
    return RfidReads.from_arrays(
        t_s=np.asarray(arrays["t_s"][i])[det].astype(np.float64),
        epc=[EPCS[k] for k in ti], antenna=ai + 1,
        rss_dbm=np.asarray(arrays["rss_dbm"][i])[det].astype(np.float64),
        phase_rad=np.asarray(arrays["phase_rad"][i])[det].astype(np.float64),
        doppler_hz=np.asarray(arrays["doppler_hz"][i])[det].astype(np.float64),
        frequency_mhz=np.asarray(arrays["frequency_mhz"][i])[det].astype(np.float64),
        tid=[TIDS[k] for k in ti], hostname=[READER_NAME] * len(ti))


def write_trial_csvs(out: Path, arrays: dict, trials: list[dict], cfg: dict) -> list[Path]:
    """One ItemTest export per trial: ``out/itemtest/user<u>_session<s>/<id>_<label>_r<rep>.csv``.
    Trials of a session follow each other on the wall clock (window plus a 2 s pause)."""
    from rfedge.io.impinj import write_itemtest_csv

    base = _dt.datetime(2024, 3, 5, 10, 0, 0)
    clock: dict[tuple, int] = {}
    paths = []
    with Progress(len(trials), "write itemtest csv") as prog:
        for i, t in enumerate(trials):
            key = (t["user"], t["session"])
            j = clock.get(key, 0)
            clock[key] = j + 1
            start = base + _dt.timedelta(days=t["session"], hours=t["user"], seconds=j * (cfg["window_s"] + 2.0))
            p = out / "itemtest" / f"user{t['user']}_session{t['session']}" / \
                f"{t['id']:05d}_{t['label_name']}_r{t['repetition']:02d}.csv"
            ants = "1,2"
            comments = [f"{start.month}/{start.day}/{start.year} {(start.hour % 12) or 12}:{start.minute:02d}:"
                        f"{start.second:02d} {'PM' if start.hour >= 12 else 'AM'}",
                        f"ReaderName={READER_NAME}, AntennaIDs={ants}, ModeIndex=1002, Session=1",
                        f"rfedge trial={t['id']}, label={t['label_name']}, user={t['user']}, "
                        f"session={t['session']}, repetition={t['repetition']}"]
            write_itemtest_csv(p, trial_reads(arrays, i), start=start.isoformat(timespec="microseconds") + "+02:00",
                               comments=comments, reader_name=READER_NAME, decimal_comma=cfg["csv_decimal_comma"])
            paths.append(p)
            prog.update()
    return paths
