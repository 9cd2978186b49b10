"""rfedge.handedness: the inter-antenna cross-spectrum channels, checked against a two-antenna
channel built by hand (a static path plus one reflector moving at a known Doppler and angle), and
their plumbing through FeatureConfig / the feature store."""

from __future__ import annotations

import numpy as np
import pytest

from rfedge.errors import RfedgeError
from rfedge.features import FeatureConfig, config_for, dataset_features, trial_features
from rfedge.handedness import CHANNELS, cross_spectrum, handedness_channels
from rfedge.sim.csi import synth_csi_dataset

RATE = 100.0


def two_antenna_window(psi: float, sigma: float = 0.4, doppler_hz: float = -6.0, d: float = 0.15, cfo: bool = True,
                       gain: float = 1.0, P: int = 200, S: int = 56, seed: int = 0):
    """Complex [2, P, S] CSI and timestamps: static paths S0 = 1, S1 = 0.8 e^{j sigma} (flat over the
    subcarriers), a reflector d e^{j 2 pi f t} on antenna 0 and d e^{j 2 pi f t} e^{j psi} on antenna
    1 (psi: its angle-of-arrival phase), and, with ``cfo``, a random phase per packet common to both."""
    rng = np.random.default_rng(seed)
    t = np.arange(P) / RATE
    dyn = d * np.exp(2j * np.pi * doppler_hz * t)
    h0 = np.ones(P) + dyn
    h1 = 0.8 * np.exp(1j * sigma) + dyn * np.exp(1j * psi)
    h = np.stack([h0, h1])[:, :, None] * np.ones(S)[None, None, :] * gain
    if cfo:
        h = h * np.exp(1j * rng.uniform(-np.pi, np.pi, P))[None, :, None]
    return h * 40.0, t * 1e6


CFG = FeatureConfig(cross_antenna=True)


def hand_bin(C):
    """Index into [+bins, -bins] of the strongest bin (summed over frames)."""
    return int(np.argmax(np.abs(C).sum(axis=1)))


def first_order(psi, sigma, ratio):
    """arg C in the hand's bin to first order in d: with h0 = S0 + D, h1 = S1 + D e^{j psi}, S0 = 1,
    |G0| ~ 1 + Re D and G1 ~ S1 + D (e^{j psi} - S1 / 2) + conj(D) S1 / 2, so at D's frequency
    C ~ conj(d / 2) d (e^{j psi} - S1 / 2) and, referenced, e^{j (psi - sigma)} - |S1| / 2 (``ratio``)."""
    return np.angle(np.exp(1j * (psi - sigma)) - ratio)


@pytest.mark.parametrize("psi", [0.9, -0.9, 2.0])
def test_phase_in_the_hand_bin_follows_its_angle_relative_to_the_static_field(psi):
    csi, t = two_antenna_window(psi)
    C = cross_spectrum(csi, t, CFG)
    F = len(CFG.bins)
    assert C.shape == (2 * F, CFG.shape[2])
    k = hand_bin(C)
    # -6 Hz over a 2 s window stretched to the nominal 2 s segment: bin -3 (2 Hz per bin)
    assert k == F + list(CFG.bins).index(3)
    got = np.angle(C[k].sum())
    assert abs(np.angle(np.exp(1j * (got - first_order(psi, 0.4, 0.4))))) < 0.05


def test_mirror_images_have_opposite_phase_and_cfo_and_gain_cancel():
    a = handedness_channels(*two_antenna_window(0.7, sigma=0.0), CFG)
    b = handedness_channels(*two_antenna_window(-0.7, sigma=0.0), CFG)
    assert a.shape == (CHANNELS, len(CFG.bins), CFG.shape[2]) and a.dtype == np.float32
    # to first order the mirrored reflector gives the complex conjugate: Re equal, Im opposite
    assert np.allclose(a[0::2], b[0::2], atol=2e-3) and np.allclose(a[1::2], -b[1::2], atol=2e-3)
    assert np.abs(a[1::2]).max() > 0.05, "the angle shows"
    # the per-packet common phase and the gain of the board cancel exactly
    c = handedness_channels(*two_antenna_window(0.7, sigma=0.0, cfo=False, gain=0.5, seed=3), CFG)
    assert np.allclose(a, c, atol=1e-6)


def test_a_weak_reference_antenna_swaps_roles():
    """Antenna 0 in a fade (its static path weaker than antenna 1's): the channels are computed with
    antenna 1 as the reference and conjugated back, so the result keeps the antenna-1-over-antenna-0
    convention."""
    csi, t = two_antenna_window(0.9)
    faded = csi[::-1].copy()           # the hand at -0.9 and the static at -0.4 relative to antenna 0...
    faded[0] *= 0.2                    # ...which is 5x weaker than antenna 1
    C = cross_spectrum(faded, t, CFG)
    got = np.angle(C[hand_bin(C)].sum())
    # referenced to the strong antenna, conjugated: -arg(e^{j 0.5} - 0.4) (first_order, mirrored)
    assert abs(np.angle(np.exp(1j * (got + first_order(0.9, 0.4, 0.4))))) < 0.05


def test_bad_inputs():
    csi, t = two_antenna_window(0.5)
    with pytest.raises(RfedgeError, match="antennas >= 2"):
        cross_spectrum(csi[:1], t, CFG)
    with pytest.raises(RfedgeError, match="segment"):
        FeatureConfig(cross_antenna=True, segment=True)
    assert FeatureConfig(cross_antenna=True).shape[0] == FeatureConfig().shape[0] + CHANNELS


def test_feature_config_choices_and_the_store(tmp_path):
    from rfedge.data.dataset import Dataset
    from rfedge.featcache import FeatureStore

    mirror = Dataset.open(synth_csi_dataset(tmp_path / "m", preset="esp32-mirror",
                                            overrides=dict(users=1, sessions=1, trials_per_class=1)))
    digits = Dataset.open(synth_csi_dataset(tmp_path / "d", overrides=dict(users=1, sessions=1, trials_per_class=1)))
    assert config_for(mirror).cross_antenna and not config_for(mirror, model="svm").cross_antenna
    assert config_for(mirror).receiver == 1 and config_for(digits).receiver == 0
    assert not config_for(mirror, "amplitude").cross_antenna and not config_for(digits).cross_antenna
    with pytest.raises(RfedgeError, match="2 antennas"):
        config_for(digits, "cross-antenna")
    with pytest.raises(RfedgeError, match="unknown feature set"):
        config_for(mirror, "phase")
    cfg = config_for(mirror)
    ids = list(range(4))
    X = dataset_features(mirror, ids, cfg)
    amp = dataset_features(mirror, ids, FeatureConfig(receiver=cfg.receiver))
    assert X.shape == (4,) + cfg.shape and np.array_equal(X[:, :cfg.groups], amp)
    assert np.array_equal(X[1], trial_features(mirror, 1, cfg))
    assert np.array_equal(FeatureStore(mirror, cache_dir=tmp_path / "c").features(ids, cfg), X)
    with pytest.raises(RfedgeError, match="one antenna"):
        trial_features(digits, 0, FeatureConfig(cross_antenna=True))


def test_mirror_preset_has_a_receiver_off_the_mirror_axis():
    """Receiver 0 closes the main link symmetrically: a hand and its mirror image through the
    user's midline (x -> -x) have the same path length there. The receiver models read
    (model_receiver) is off that axis in every environment."""
    from rfedge.sim.csi import _bistatic_len, make_environment
    from rfedge.sim.presets import load_preset

    cfg = load_preset("esp32-mirror")
    r = int(cfg["model_receiver"])
    assert r >= 1
    hands = np.array([[0.17, 0.45, 0.35], [0.12, 0.3, 0.5], [0.2, 0.6, 0.3]])
    mirrored = hands * np.array([-1.0, 1.0, 1.0])
    for e in range(cfg["environments"]):
        env = make_environment(cfg, e)
        assert env.receivers > r
        a, b = (sum(_bistatic_len(p, env.tx, env.rx)) for p in (hands, mirrored))   # d_tx + d_rx [R, 3]
        assert np.allclose(a[0], b[0]), "receiver 0 cannot tell the hands apart"
        assert np.all(np.abs(a[r] - b[r]) > 0.02), f"environment {e}: receiver {r} sees the hands' paths differ"
