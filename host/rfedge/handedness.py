"""Handedness channels: the inter-antenna cross-spectrum of the CSI's moving component, per signed
Doppler bin and STFT frame, stacked onto the student's X when ``FeatureConfig.cross_antenna`` is
set (issue 7: mirrored gestures, paper 001).

Why: a left-hand gesture and its right-hand mirror image have the same bistatic path length L(t)
at a receiver that sits on the link's symmetry axis (the esp32-mirror preset's receiver 0: Tx and
Rx on a line, the user facing its middle), so one antenna's Doppler spectrogram cannot tell the
hands apart. What differs is the direction the moving hand is seen from: its angle of arrival at
the receiver's 2-antenna array (~27 degrees of inter-antenna phase between the hands at 6 cm
spacing, measured on that preset).

Per packet (the antennas of one receiver share CFO, timing slope and AGC, which cancel here):

    G0 = |h0|                         real, one value per subcarrier group
    G1 = h1 conj(h0) / |h0|           complex: antenna 1 in antenna 0's phase reference

With h_a = S_a + D_a (static + hand), the part of G0 and G1 that rotates at the hand's Doppler f
is, to first order, D0 conj(S0)/|S0| and D1 conj(S0)/|S0| (at -f: the conjugate in G0 and
S1 conj(D0)/|S0| in G1). So per signed Doppler bin the cross-spectrum

    C(f, t) = conj(X0(f, t)) X1(f, t),    X_a: complex STFT of G_a minus its time mean,

follows the hand's angle of arrival in the bin of the hand's Doppler: with D1 = D0 e^{j psi}
(psi: the hand's inter-antenna phase, including the RF chains' fixed offset) and the static ratio
S1/S0 = r e^{j sigma}, to first order C ~ e^{j psi} - (r/2) e^{j sigma} there (the -r/2 term from
normalizing by |h0|), and the static field's phase in the mirror bin. Multiplying by
exp(-j arg mean_t G1), the static ratio that carries the same chain offset, leaves
e^{j (psi - sigma)} - r/2: a phase that no longer depends on the board's chain offset
(tests/test_handedness.py checks this on a channel built by hand). Where antenna 0's static channel is the weaker one
in a subcarrier group (a fade: the first-order picture needs a dominant static path on the
reference) the antennas swap roles in that group and the result is conjugated back.

Output on rfedge.features' grid (whole window stretched onto n_samples, Hann STFT of win_len at
hop, Doppler bins m = cfg.bins): [4, F, T] = Re C(+m), Im C(+m), Re C(-m), Im C(-m), C scaled
by its total magnitude over the window (distance and gain free) and magnitude square-root
compressed with its phase kept, so that weak bins still show their phase. Cost per window with 8
subcarrier groups: ~154k complex multiply-adds, ~1.7x the amplitude STFT.

Measured on the esp32-mirror set (in-session, 288 test trials of the 12 handed classes, an RBF-SVM
on flattened features): left/right from the amplitude spectrogram 0.52 (chance), from the
teacher's inter-antenna phase path 0.51, from these channels 0.68; 13 classes 0.46 -> 0.60 with
them added. The device DSP (mcu/core/dsp) does not compute them: a model that uses them runs on
the boards from host-computed features only.
"""

from __future__ import annotations

import numpy as np

from rfedge import activity, dsp
from rfedge.errors import RfedgeError

CHANNELS = 4
GROUPS = 8  # subcarrier groups averaged into C (the hand's path is nearly flat over 20 MHz)


def _interp(grid: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Linear interpolation of the columns of v [P, G] (real or complex) at ``grid``."""
    cols = [np.interp(grid, t, v[:, k].real) + (1j * np.interp(grid, t, v[:, k].imag) if np.iscomplexobj(v) else 0)
            for k in range(v.shape[1])]
    return np.stack(cols, axis=1)


def _stft(x: np.ndarray, win_len: int, hop: int, bins: np.ndarray) -> np.ndarray:
    """Complex Hann STFT of x [N, G] at integer (signed) bins: [G, F, T], rfedge.dsp.stft_bins' framing."""
    T = 1 + (x.shape[0] - win_len) // hop
    idx = np.arange(win_len)[None, :] + hop * np.arange(T)[:, None]
    seg = x[idx] * dsp.hann(win_len)[None, :, None]                                  # [T, L, G]
    basis = np.exp(-2j * np.pi * np.outer(np.arange(win_len), bins) / win_len)       # [L, F]
    return np.einsum("tlg,lf->gft", seg, basis)


def _cross(ref: np.ndarray, oth: np.ndarray, t: np.ndarray, grid: np.ndarray, cfg, groups: int):
    """(C [G, 2F, T], static ratio [G]) with ``ref`` as the phase and amplitude reference antenna."""
    a = np.abs(ref)
    g0 = _interp(grid, t, dsp.group_subcarriers(a, groups))
    g1 = _interp(grid, t, dsp.group_subcarriers(oth * np.conj(ref) / np.maximum(a, 0.5), groups))
    static = g1.mean(axis=0)
    m = np.asarray(cfg.bins)
    x0 = _stft(g0 - g0.mean(axis=0), cfg.win_len, cfg.hop, m)      # real input: X0(-m) = conj X0(m)
    x0 = np.concatenate([x0, np.conj(x0)], axis=1)
    x1 = _stft(g1 - static, cfg.win_len, cfg.hop, np.concatenate([m, -m]))
    return np.conj(x0) * x1, static


def cross_spectrum(csi: np.ndarray, t_us: np.ndarray, cfg, groups: int = GROUPS) -> np.ndarray:
    """One receiver's window, complex [A >= 2, P, S] with timestamps [P] µs -> C [2F, T] complex at
    bins [+cfg.bins, -cfg.bins], referenced to the static ratio, not yet normalized."""
    from rfedge.features import segment_grid

    h = np.asarray(csi)
    if h.ndim != 3 or h.shape[0] < 2:
        raise RfedgeError(f"cross-antenna features need one receiver's CSI [antennas >= 2, packets, subcarriers], "
                          f"got shape {h.shape}", field="csi")
    h0, h1 = h[0].astype(np.complex128), h[1].astype(np.complex128)
    t = np.asarray(t_us, np.float64)
    # one AGC per board: its steps, found on both antennas' log-amplitudes together, divide both
    la = np.log(np.maximum(np.abs(np.concatenate([h0, h1], axis=1)), 0.5))
    gain = np.exp(np.median(la - activity.remove_agc_steps(la, t_us=t), axis=1))
    h0, h1 = h0 / gain[:, None], h1 / gain[:, None]
    grid = segment_grid(t, cfg)
    C, static = _cross(h0, h1, t, grid, cfg, groups)
    amp = dsp.group_subcarriers(np.stack([np.abs(h0).mean(axis=0), np.abs(h1).mean(axis=0)]), groups)  # [2, G]
    swap = amp[1] > amp[0]
    if swap.any():
        Cs, ss = _cross(h1, h0, t, grid, cfg, groups)
        C = np.where(swap[:, None, None], np.conj(Cs), C)
        static = np.where(swap, np.conj(ss), static)
    C = C * np.exp(-1j * np.angle(static))[:, None, None]
    return C.mean(axis=0)


def handedness_channels(csi: np.ndarray, t_us: np.ndarray, cfg, groups: int = GROUPS) -> np.ndarray:
    """[4, F, T] float32 (the module docstring's output) for one receiver's window [A, P, S]."""
    C = cross_spectrum(csi, t_us, cfg, groups)
    C = C / (np.abs(C).sum() + 1e-12)
    C = C / np.sqrt(np.abs(C) + 1e-9)
    F = len(cfg.bins)
    return np.stack([C[:F].real, C[:F].imag, C[F:].real, C[F:].imag]).astype(np.float32)
