"""Mirrored gestures (rfedge.sim.widar_gestures) and the esp32-mirror preset's CSI simulation."""

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rfedge.data.dataset import Dataset
from rfedge.data.info import dataset_summary, format_summary
from rfedge.errors import RfedgeError
from rfedge.sim import widar_gestures as wg
from rfedge.sim.csi import synth_csi_dataset

SMALL = dict(users=2, sessions=2, trials_per_class=4, environments=2)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    return Dataset.open(synth_csi_dataset(tmp_path_factory.mktemp("mirror") / "ds", preset="esp32-mirror",
                                          overrides=SMALL))


def _path(label, seed=0):
    motion, _ = wg.class_motion_hand(label)
    rng = np.random.default_rng(seed)
    pts = wg.trial_points(wg.user_style(rng, 0.03)[motion], rng, 0.015, 0.05)
    t = np.linspace(0.0, 2.0, 201)
    return wg.hand_paths(label, t, 0.3, 1.4, pts, fluency=0.3)


def _signed_area(xy):
    # Shoelace formula: > 0 for a counter-clockwise loop, < 0 for a clockwise one.
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def test_classes_and_mirror_partners():
    names = wg.LABEL_NAMES
    assert len(names) == 13 and len(set(names)) == 13
    assert all(wg.MIRROR_INDEX[wg.MIRROR_INDEX[i]] == i for i in range(len(names)))
    for i, n in enumerate(names):
        motion, hand = wg.class_motion_hand(n)
        partner = names[wg.MIRROR_INDEX[i]]
        if hand == "both":
            assert partner == n
        else:
            assert partner != n and wg.class_motion_hand(partner) == (motion, {"left": "right", "right": "left"}[hand])
    with pytest.raises(KeyError):
        wg.class_motion_hand("wave_left_foot")


def test_left_hand_path_is_the_reflection_of_the_right_hand_path():
    for motion in wg.ONE_HAND:
        right = _path(f"{motion}_right_hand")["right"]
        left = _path(f"{motion}_left_hand")["left"]     # same seed: same style and trial draws
        assert np.allclose(left[:, 0], -right[:, 0]) and np.allclose(left[:, 1:], right[:, 1:])
        assert np.ptp(right[:, 0]) + np.ptp(right[:, 1]) > 0.3, motion   # it does move
    clap = _path("clap_both_hands")
    assert np.allclose(clap["left"], clap["right"] * wg.MIRROR)


def test_directions_as_the_user_sees_them():
    # (right, forward, up) body frame: a right-hand sweep ends to the right of where it started,
    # the right hand's slide ends to the left, its zigzag travels right; the mirror image reverses.
    for motion, sign in (("sweep", 1), ("slide", -1), ("draw_zigzag", 1)):
        r = _path(f"{motion}_right_hand")["right"]
        lft = _path(f"{motion}_left_hand")["left"]
        assert sign * (r[-1, 0] - r[0, 0]) > 0.5, motion
        assert sign * (lft[-1, 0] - lft[0, 0]) < -0.5, motion
    # Circle and triangle: clockwise with the right hand, counter-clockwise with the left, in the
    # (right, up) plane the user sees.
    for motion in ("draw_circle", "draw_triangle"):
        r = _path(f"{motion}_right_hand")["right"][:, [0, 2]]
        lft = _path(f"{motion}_left_hand")["left"][:, [0, 2]]
        assert _signed_area(r) < -0.1 and _signed_area(lft) > 0.1, motion
    # Push-pull goes out and comes back; the hand rests before and after.
    p = _path("push_pull_right_hand")["right"]
    assert p[:, 1].max() > 0.6 and abs(p[-1, 1] - p[0, 1]) < 0.05
    assert np.allclose(p[:5], p[0]) and np.allclose(p[-5:], p[-1])


def test_dataset_layout_and_label_metadata(mirror):
    m = mirror.manifest
    cfg = m["config"]
    assert mirror.label_names == wg.LABEL_NAMES
    assert cfg["gestures"] == "widar-lr" and cfg["rx_antennas"] == 2
    n_tr, r_max, n_ant, p_max, s, two = mirror.array("csi").shape
    assert (n_tr, n_ant, s, two) == (len(mirror.trials), 2, 56, 2)
    assert "antenna" in m["arrays"]["csi"]["doc"]
    mirror_of = cfg["label_mirror"]
    assert [mirror_of[mirror_of[i]] for i in range(13)] == list(range(13))
    for i, name in enumerate(mirror.label_names):
        assert mirror_of[i] == mirror.label_names.index(wg.mirror_label(name))
        assert (cfg["label_motion"][i], cfg["label_hand"][i]) == wg.class_motion_hand(name)
    for t in mirror.trials:
        assert (t["motion"], t["hand"]) == wg.class_motion_hand(t["label_name"])
    assert {t["environment"] for t in mirror.trials} == {0, 1}
    assert {"cross-user", "cross-environment"} <= set(mirror.split_names())
    text = format_summary(dataset_summary(mirror.path))
    assert "sweep_left_hand" in text and "clap_both_hands" in text


def test_antenna_ratio_cancels_the_random_packet_phase(mirror):
    # Each antenna alone has a random phase per packet (CFO); the antennas share the oscillator, so
    # the phase of H1 * conj(H0) is steady apart from the hand's small contribution.
    csi = np.asarray(mirror.array("csi")).astype(float)
    n = np.asarray(mirror.array("n_packets"))
    single, ratio = [], []
    for i in range(0, len(mirror.trials), 7):
        h = csi[i, 0, :, : n[i, 0], :, 0] + 1j * csi[i, 0, :, : n[i, 0], :, 1]     # [A, P, S]
        single.append(abs(np.mean(np.exp(1j * np.angle(h[0, :, 10])))))
        q = h[1, :, 10] * np.conj(h[0, :, 10])
        ratio.append(abs(np.mean(np.exp(1j * np.angle(q)))))
    assert np.median(single) < 0.3 and np.median(ratio) > 0.8


def _ratio_doppler(h: np.ndarray, frames: int = 6, win: int = 32) -> np.ndarray:
    """Log signed-Doppler spectrogram [frames, 8] of the CSI ratio H1/H0 averaged over subcarriers.

    The ratio removes the per-packet phase and keeps the sign of the path-length change, which
    amplitude alone cannot tell; the spectrogram's magnitude forgets the room's static phase.
    """
    z = (h[1] / np.where(h[0] == 0, 1e-3, h[0])).mean(1)
    g = np.linspace(0, len(z) - 1, 128)
    z = np.interp(g, np.arange(len(z)), z.real) + 1j * np.interp(g, np.arange(len(z)), z.imag)
    z = z - z.mean()
    starts = np.linspace(0, 128 - win, frames).astype(int)
    spec = np.array([np.abs(np.fft.fftshift(np.fft.fft(z[s:s + win] * np.hanning(win)))) ** 2 for s in starts])
    return np.log(spec.reshape(frames, 8, win // 8).sum(-1) + 1e-6)


def test_mirrored_pairs_are_told_apart_by_a_simple_classifier(mirror):
    # Same motion, other hand: per motion, a logistic regression on the CSI-ratio Doppler
    # spectrograms of every receiver, trained on session 0 and tested on session 1 (chance 0.5).
    # Measured on this 96-trial test set: 0.875 at the preset's seed (0.79 and 0.62 at seeds 1 and
    # 2: a set this small is noisy, so the seed stays fixed). On the full esp32-mirror preset the
    # same features give 0.79 in-session and 0.78 cross-user, antenna 0's amplitude alone 0.71 / 0.67.
    # Without the mirroring (left = right) the pairs would be identical and this would sit at 0.5.
    csi = np.asarray(mirror.array("csi"))
    n = np.asarray(mirror.array("n_packets"))
    trials = [t for t in mirror.trials if t["hand"] != "both"]

    def features(i):
        out = []
        for r in range(csi.shape[1]):
            if n[i, r] == 0:
                out.append(np.zeros(48))
                continue
            x = csi[i, r, :, : n[i, r]].astype(float)
            out.append(_ratio_doppler(x[..., 0] + 1j * x[..., 1]).ravel())
        return np.concatenate(out)

    X = np.array([features(t["id"]) for t in trials])
    left = np.array([t["hand"] == "left" for t in trials])
    motion = np.array([t["motion"] for t in trials])
    train = np.array([t["session"] == 0 for t in trials])
    correct = []
    for m in wg.ONE_HAND:
        k = motion == m
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
        clf.fit(X[k & train], left[k & train])
        correct.extend(clf.predict(X[k & ~train]) == left[k & ~train])
    acc = float(np.mean(correct))
    assert acc > 0.65, f"left/right accuracy {acc:.3f} on {len(correct)} test trials"


def test_multi_antenna_preset_refuses_single_antenna_logs(tmp_path):
    with pytest.raises(RfedgeError, match="rx_antennas"):
        synth_csi_dataset(tmp_path / "x", preset="esp32-mirror", write_log=True, overrides=dict(users=1))
    with pytest.raises(RfedgeError, match="unknown gesture family"):
        synth_csi_dataset(tmp_path / "x", preset="esp32-mirror", overrides=dict(gestures="letters"))
    assert list(tmp_path.iterdir()) == []


def test_digits_preset_keeps_its_layout(tmp_path):
    # The default preset must not see the new fields: same config keys, single-antenna 5-D CSI
    # (byte identity itself is the determinism test in test_sim_csi.py plus the before/after check).
    path = synth_csi_dataset(tmp_path / "d", overrides=dict(users=1, sessions=1, trials_per_class=1))
    m = json.loads((path / "manifest.json").read_text())
    assert not {"gestures", "rx_antennas", "label_mirror"} & set(m["config"])
    assert len(m["arrays"]["csi"]["shape"]) == 5
