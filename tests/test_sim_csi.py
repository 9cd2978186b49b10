"""The CSI simulator: physics checks derived by hand, impairments, determinism, coverage."""

import json

import numpy as np
import pytest

from rfedge.data.dataset import Dataset
from rfedge.errors import RfedgeError
from rfedge.sim import digits
from rfedge.sim.csi import C, HT20_USED, channel_freq_hz, multipath_csi, synth_csi_dataset

SMALL = dict(users=2, sessions=2, trials_per_class=2)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return Dataset.open(synth_csi_dataset(tmp_path_factory.mktemp("csi") / "ds", overrides=SMALL))


def test_multipath_two_paths_by_hand():
    # Two paths of lengths 1.5 m and 2.0 m at 2.437 GHz: H = a1 e^{-j2πfL1/c} + a2 e^{-j2πfL2/c}.
    f = np.array([2.437e9])
    H = multipath_csi(f, np.array([1.5, 2.0]), np.array([1.0, 0.5j]))
    want = np.exp(-2j * np.pi * 2.437e9 * 1.5 / C) + 0.5j * np.exp(-2j * np.pi * 2.437e9 * 2.0 / C)
    assert H.shape == (1,)
    assert abs(H[0] - want) < 1e-9


def test_moving_path_beats_at_the_doppler_frequency():
    # paper 002 eq. 8: a path whose length grows at v m/s adds a tone at f v / c; the amplitude of
    # static + dynamic therefore beats at that frequency.
    fs, v = 100.0, 1.2
    t = np.arange(512) / fs
    f = np.array([channel_freq_hz(6)])
    L = np.stack([np.full_like(t, 1.5), 1.8 + v * t], axis=1)
    A = np.abs(multipath_csi(f, L, np.tile([1.0, 0.2], (len(t), 1))))[:, 0]
    spec = np.abs(np.fft.rfft(A - A.mean()))
    peak = np.fft.rfftfreq(len(t), 1 / fs)[np.argmax(spec)]
    assert abs(peak - v * f[0] / C) < fs / len(t)


def test_min_jerk_profile_rests_at_both_ends():
    tau = np.linspace(0, 1, 101)
    s = digits.min_jerk(tau)
    assert s[0] == 0 and s[-1] == 1
    assert np.all(np.diff(s) >= 0)
    v = np.gradient(s, tau)
    assert abs(v[0]) < 1e-3 and abs(v[-1]) < 1e-3 and abs(v[50] - 1.875) < 1e-2


def test_every_digit_curve_spans_its_box():
    for name, pts in digits.DIGIT_PATHS.items():
        c, knots = digits.digit_curve(np.array(pts, float))
        assert knots[0] == 0 and np.all(np.diff(knots) > 0)
        assert c.shape == (400, 2)
        assert np.ptp(c[:, 1]) > 0.8, name  # every digit is traced top to bottom


def test_coverage_and_factors(small):
    cfg = small.manifest["config"]
    trials = small.trials
    assert len(trials) == 2 * 2 * 2 * 11
    combos = {(t["user"], t["session"], t["label"]) for t in trials}
    assert len(combos) == 2 * 2 * 11
    for t in trials:
        assert t["orientation_deg"] in (0, 45, 90)
        assert 0.3 <= t["distance_m"] <= 0.7
        assert cfg["receivers"][0] <= t["receivers"] <= cfg["receivers"][1]
        assert t["environment"] == t["user"] % cfg["environments"]
        lo, hi = cfg["margin_s"]
        assert lo <= t["onset_s"] <= hi
        if t["label_name"] == "steady":
            assert t["gesture_s"] == 0
        else:
            assert 0.6 <= t["gesture_s"] <= 1.5 * cfg["gesture_s"][1]
            assert lo <= t["window_s"] - t["onset_s"] - t["gesture_s"] <= hi
    assert small.label_names == [*"0123456789", "steady"]
    assert cfg["subcarriers"] == HT20_USED.tolist() and len(HT20_USED) == 56


def test_impairments_show_in_the_packets(small):
    csi = np.asarray(small.array("csi"))
    t_us = np.asarray(small.array("t_us"))
    n = np.asarray(small.array("n_packets"))
    cfg = small.manifest["config"]
    nominal = np.array([round(t["window_s"] * cfg["rate_hz"]) for t in small.trials])[:, None]
    present = n > 0
    # Receivers beyond an environment's count hold nothing.
    for i, t in enumerate(small.trials):
        assert np.all(n[i, : t["receivers"]] > 0) and np.all(n[i, t["receivers"]:] == 0)
    loss = 1 - n[present].sum() / np.broadcast_to(nominal, n.shape)[present].sum()
    assert 0.01 < loss < 0.15
    periods = []
    for i, r in zip(*np.nonzero(present)):
        ts = t_us[i, r, : n[i, r]]
        assert np.all(np.diff(ts) >= 0)
        assert np.all(t_us[i, r, n[i, r]:] == -1) and not csi[i, r, n[i, r]:].any()
        periods.append(np.median(np.diff(ts)))
    assert abs(np.median(periods) - 1e6 / cfg["rate_hz"]) < 200
    # Random per-packet phase (CFO): the phase of one subcarrier is spread over the circle.
    x = csi[0, 0, : n[0, 0], 10].astype(float)
    ph = np.angle(x[:, 0] + 1j * x[:, 1])
    assert np.abs(np.mean(np.exp(1j * ph))) < 0.3
    # AGC keeps the int8 I/Q near the configured magnitude without clipping most of it.
    mag = np.abs(csi[present.any(1)].astype(float))
    assert 5 < mag[mag > 0].mean() < 60


def test_gestures_move_the_channel_more_than_steady(tmp_path):
    # The hand path is nearly frequency-flat over 20 MHz, so a gesture shows as a common amplitude
    # change across subcarriers; with AGC steps and the resting hand's fidget (a few-cm drift that
    # moves a steady trial's amplitude by ~20%) switched off it must stand well above steady.
    ds = Dataset.open(synth_csi_dataset(tmp_path / "ds", overrides={**SMALL, "agc_step_rate_hz": 0.0,
                                                                    "fidget_prob": 0.0}))
    csi = np.asarray(ds.array("csi")).astype(float)
    n = np.asarray(ds.array("n_packets"))
    fluct = {"steady": [], "gesture": []}
    for i, t in enumerate(ds.trials):
        x = csi[i, 0, : n[i, 0]]
        a = np.hypot(x[..., 0], x[..., 1])
        fluct["steady" if t["label_name"] == "steady" else "gesture"].append((a.std(0) / a.mean(0)).mean())
    assert np.median(fluct["gesture"]) > 2 * np.median(fluct["steady"])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synth_csi_dataset(tmp_path / "a", overrides=dict(users=1, sessions=1, trials_per_class=1))
    b = synth_csi_dataset(tmp_path / "b", overrides=dict(users=1, sessions=1, trials_per_class=1))
    c = synth_csi_dataset(tmp_path / "c", seed=7, overrides=dict(users=1, sessions=1, trials_per_class=1))
    for name in ("csi", "t_us", "rssi", "n_packets"):
        assert (a / "arrays" / f"{name}.npy").read_bytes() == (b / "arrays" / f"{name}.npy").read_bytes()
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert ma["trials"] == mb["trials"] and ma["data_sha256"] == mb["data_sha256"]
    assert Dataset.open(c).manifest["data_sha256"] != ma["data_sha256"]
    Dataset.open(a).verify()


def test_bad_override_is_one_clear_error_and_writes_nothing(tmp_path):
    with pytest.raises(RfedgeError, match="no field 'userz'"):
        synth_csi_dataset(tmp_path / "x", overrides={"userz": 3})
    with pytest.raises(RfedgeError, match="expected int"):
        synth_csi_dataset(tmp_path / "x", overrides={"users": "many"})
    with pytest.raises(RfedgeError, match="unknown preset"):
        synth_csi_dataset(tmp_path / "x", preset="nope")
    assert list(tmp_path.iterdir()) == []
