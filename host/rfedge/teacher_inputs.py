"""The semantic teacher's dual-path input (paper 000): CSI-ratio phase sequences and the student's
Doppler spectrogram, per trial, on the same time axis.

Path (a), geometry: at each packet, the CSI of antenna 1 over antenna 0 of the same receiver. The
two RF chains share the oscillator and the timing reference, so the per-packet random phase (CFO)
and the linear phase slope (timing/SFO) cancel in the ratio (rfedge.sim.csi, rfedge.dsp.csi_ratio)
and what remains follows the path lengths of the moving hand. We take the phase of
h1 · conj(h0) — the same phase as h1 / h0 without dividing by a faded h0 — averaged over each of
``phase_groups`` contiguous subcarrier groups (averaging the complex values, not the angles, so
a noisy subcarrier cannot wrap the group's phase), unwrap it over the packets, put it on the
uniform, time-normalized grid the student's features use (``n_samples`` samples over the window)
and reduce it to the student's STFT frames with the same Hann window, so that frame t of both
paths covers the same instants. The time mean is removed: the static phase (room, RF chain
offsets) is a property of the domain, not of the gesture.

Path (b), dynamics: exactly the student's X (rfedge.features / rfedge.featcache, antenna 0), so
teacher and student see the same Doppler spectrogram and feature distillation compares like
with like.

Phase sequences are cached next to the Doppler features when a ``cache_dir`` is given, keyed by
the dataset's content hash, the configuration and this module's source (as rfedge.featcache).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from rfedge import dsp
from rfedge.errors import RfedgeError
from rfedge.featcache import FeatureStore, OpenArrays
from rfedge.features import FeatureConfig, segment_grid, trial_receiver
from rfedge.fileio import atomic_write_bytes

DEFAULT_PHASE_GROUPS = 8


def require_two_antennas(ds) -> int:
    """The receivers' antenna count of a CSI dataset; RfedgeError unless it is at least 2."""
    if ds.kind != "csi":
        raise RfedgeError(f"the teacher needs a CSI dataset, this one is {ds.kind!r}", path=ds.path)
    shape = ds.array("csi").shape
    # [trial, receiver, antenna, packet, subcarrier, 2] with antennas; [trial, receiver, packet,
    # subcarrier, 2] for single-antenna (ESP32) datasets.
    n_ant = int(shape[2]) if len(shape) == 6 else 1
    if n_ant < 2:
        raise RfedgeError(f"the teacher needs 2 RX antennas per receiver for its CSI-ratio path; this dataset "
                          f"has {n_ant} (simulate one with --preset esp32-mirror)", path=ds.path)
    return n_ant


def _frame_weights(cfg: FeatureConfig) -> np.ndarray:
    """[T, n_samples] averaging weights: frame t is the Hann-weighted mean over the samples its STFT
    frame covers (rfedge.dsp.stft_bins' framing), so both paths share the time axis."""
    T = cfg.shape[2]
    w = dsp.hann(cfg.win_len)
    W = np.zeros((T, cfg.n_samples))
    for t in range(T):
        W[t, t * cfg.hop:t * cfg.hop + cfg.win_len] = w
    return W / W.sum(axis=1, keepdims=True)


def ratio_phase(csi: np.ndarray, t_us: np.ndarray, cfg: FeatureConfig, groups: int,
                weights: np.ndarray | None = None) -> np.ndarray:
    """One receiver's window, complex [A >= 2, P, S] with timestamps [P] µs -> phase [T, groups] float32.

    The student's time normalization without segmentation (``cfg.segment`` False: the window is
    already cut around the gesture): the whole window maps onto ``cfg.n_samples`` samples.
    """
    if csi.shape[0] < 2:
        raise RfedgeError("the teacher needs 2 RX antennas (antenna 1 / antenna 0 CSI ratio)")
    q = csi[1] * np.conj(csi[0])                                          # [P, S]
    g = dsp.group_subcarriers(q, groups)                                  # [P, G] complex mean
    ph = np.unwrap(np.angle(g), axis=0)                                   # over packets
    t = np.asarray(t_us, np.float64)
    grid = segment_grid(t, cfg)   # the student's instants, in one interpolation
    x = np.stack([np.interp(grid, t, ph[:, k]) for k in range(groups)], axis=1)   # [n_samples, G]
    W = _frame_weights(cfg) if weights is None else weights
    frames = W @ x                                                        # [T, G]
    return (frames - frames.mean(axis=0, keepdims=True)).astype(np.float32)


def _code_digest() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in ("teacher_inputs.py", "dsp.py"):
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()


def phase_key(data_sha256: str, cfg: FeatureConfig, groups: int) -> str:
    # Only the fields that shape the phase path; the threshold and Doppler band do not.
    d = {k: v for k, v in cfg.to_dict().items() if k in ("rate_hz", "n_samples", "win_len", "hop", "receiver")}
    blob = json.dumps({"what": "ratio-phase", "data": data_sha256, "cfg": d, "groups": int(groups),
                       "code": _code_digest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class TeacherInputs:
    """Both paths of a CSI dataset's trials: ``doppler(ids)`` [N, C, F, T] (the student's X) and
    ``phase(ids)`` [N, T, G]; each computed at most once per trial (and cached on disk with a
    ``cache_dir``)."""

    def __init__(self, ds, cfg: FeatureConfig | None = None, phase_groups: int = DEFAULT_PHASE_GROUPS,
                 cache_dir=None, store: FeatureStore | None = None, stream=None):
        require_two_antennas(ds)
        self.ds = ds
        self.cfg = dataclasses.replace(cfg) if cfg is not None else FeatureConfig()
        if self.cfg.segment:
            # Segmentation would cut the Doppler path to the detected activity; the phase path follows
            # the whole window, and the two would no longer share a time axis.
            raise RfedgeError("the teacher's inputs need features without activity segmentation (segment = false)")
        self.phase_groups = int(phase_groups)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.store = store if store is not None else FeatureStore(ds, cache_dir=cache_dir, stream=stream)
        self._phase: np.ndarray | None = None
        self._have: np.ndarray | None = None

    @property
    def phase_shape(self) -> tuple[int, int]:
        return (self.cfg.shape[2], self.phase_groups)

    def doppler(self, ids) -> np.ndarray:
        return self.store.features([int(i) for i in ids], self.cfg, desc="features")

    def _file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        key = phase_key(self.ds.manifest.get("data_sha256") or "", self.cfg, self.phase_groups)
        return self.cache_dir / f"ratio-phase-{key}.npy"

    def phase(self, ids) -> np.ndarray:
        n = len(self.ds)
        ids = [int(i) for i in ids]
        if self._phase is None:
            f = self._file()
            if f is not None and f.is_file():
                try:
                    P = np.load(f, allow_pickle=False)
                    if P.shape == (n,) + self.phase_shape:
                        self._phase, self._have = P, np.ones(n, bool)
                except (OSError, ValueError):
                    pass                    # unreadable: recompute and overwrite
            if self._phase is None:
                self._phase = np.zeros((n,) + self.phase_shape, np.float32)
                self._have = np.zeros(n, bool)
        need = [i for i in ids if not self._have[i]]
        if need:
            src = OpenArrays(self.ds)
            W = _frame_weights(self.cfg)
            for i in need:
                self._phase[i] = ratio_phase(*trial_receiver(src, i, self.cfg.receiver), self.cfg,
                                             self.phase_groups, W)
                self._have[i] = True
            f = self._file()
            if f is not None and self._have.all():
                buf = io.BytesIO()
                np.save(buf, self._phase, allow_pickle=False)
                atomic_write_bytes(f, buf.getvalue())
        return self._phase[ids]


@dataclasses.dataclass
class PhaseNormalizer:
    """Per-group standardization of phase sequences [N, T, G] (statistics from training trials)."""

    mean: np.ndarray   # [G]
    std: np.ndarray    # [G]

    @classmethod
    def fit(cls, P: np.ndarray) -> "PhaseNormalizer":
        return cls(P.mean(axis=(0, 1)).astype(np.float32), (P.std(axis=(0, 1)) + 1e-6).astype(np.float32))

    def __call__(self, P: np.ndarray) -> np.ndarray:
        return ((P - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "PhaseNormalizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))
