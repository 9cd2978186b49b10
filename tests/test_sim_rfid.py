"""The RFID simulator: physics derived by hand, kinematics, determinism, coverage, CSV round trip."""

import json
import math

import numpy as np
import pytest

from rfedge.data.dataset import Dataset
from rfedge.errors import RfedgeError
from rfedge.io.impinj import read_itemtest_csv, to_series
from rfedge.sim import arm_gestures as ag
from rfedge.sim.rfid import (C_M_S, EPCS, element_positions, link_budget_dbm, paper_aoa, preset_config,
                             simulate_reads, synth_rfid_dataset)

SMALL = dict(participants=2, repetitions=3)
LAM = C_M_S / 866.9e6            # 0.345821 m at the default carrier


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return Dataset.open(synth_rfid_dataset(tmp_path_factory.mktemp("rfid") / "ds", overrides=SMALL, write_csv=True))


def _static(pos, n, cfg, antenna=(0, 1), normal=(0.0, -1.0, 0.0), rng=0, misdetect=False, **kw):
    """Reads of tags at fixed positions [P, 3]: arrays [P, len(antenna), n]."""
    pos = np.asarray(pos, dtype=float)[:, None, None, :]
    ant = np.asarray(antenna)[None, :, None]
    shape = (pos.shape[0], len(antenna), n)
    return simulate_reads(np.broadcast_to(pos, shape + (3,)), np.zeros(shape + (3,)),
                          np.broadcast_to(np.asarray(normal, float), shape + (3,)), np.broadcast_to(ant, shape),
                          866.9, cfg, rng=None if rng is None else np.random.default_rng(rng),
                          misdetect=misdetect, **kw)


# ---- physics by hand ---------------------------------------------------------------------------

def test_geometry_is_the_papers():
    cfg = preset_config()
    e = element_positions(cfg)
    # d = 0.8 λ, elements at (-d/2, 0) and (+d/2, 0) in the horizontal plane.
    assert e[:, 0].tolist() == pytest.approx([-0.4 * LAM, 0.4 * LAM])
    assert e[:, 1].tolist() == [0.0, 0.0]
    # θ = atan2(q_y, q_x) - π/2: 0 straight ahead, +30° toward -x.
    assert paper_aoa([0.0, 3.0, 0.0], [0, 0, 0]) == pytest.approx(0.0)
    assert paper_aoa([-1.5, 1.5 * math.sqrt(3), 0.0], [0, 0, 0]) == pytest.approx(math.radians(30))


def test_static_tag_phase_difference_is_the_round_trip_steering_phase():
    cfg = preset_config()
    h = cfg["reader_height_m"]
    xs = [-0.8, -0.3, 0.0, 0.4, 0.9]
    pos = [[x, 3.0, h] for x in xs]
    r = _static(pos, 200, cfg)
    diff = np.angle(np.mean(np.exp(1j * (r["phase_rad"][:, 1] - r["phase_rad"][:, 0])), axis=-1))
    for x, got in zip(xs, diff):
        theta = math.atan2(3.0, x) - math.pi / 2           # paper 003 §III-B
        want = 4 * math.pi * 0.8 * math.sin(theta)          # 4π d sinθ / λ with d = 0.8 λ
        assert abs(np.angle(np.exp(1j * (got - want)))) < 0.02, (x, got, want)
    # So the IQ of the two elements follows a_m(θ) = exp(j4πd/λ (m-1) sinθ): a MUSIC scan over the
    # unambiguous field of view peaks at the true angle.
    scan = np.radians(np.linspace(-18, 18, 3601))
    for k, x in enumerate(xs):
        y = r["iq"][k]                                      # [antenna, read]
        w, v = np.linalg.eigh(y @ y.conj().T / y.shape[1])
        a = np.stack([np.ones_like(scan), np.exp(1j * 4 * np.pi * 0.8 * np.sin(scan))])
        spectrum = 1 / np.abs(v[:, 0].conj() @ a) ** 2
        assert scan[np.argmax(spectrum)] == pytest.approx(math.atan2(3.0, x) - math.pi / 2, abs=math.radians(0.3))


def test_radial_motion_phase_rate_and_doppler():
    cfg = preset_config()
    v, n, dt = 0.5, 200, 0.01
    t = np.arange(n) * dt
    e0 = element_positions(cfg)[0]
    # Straight at element 1 along its boresight: the range shrinks at exactly v.
    pos = np.stack([np.full(n, e0[0]), 4.0 - v * t, np.full(n, e0[2])], -1)
    vel = np.tile([0.0, -v, 0.0], (n, 1))
    r = simulate_reads(pos, vel, np.tile([0.0, -1.0, 0.0], (n, 1)), np.zeros(n, int), 866.9, cfg,
                       rng=np.random.default_rng(1), misdetect=False)
    slope = np.polyfit(t, np.unwrap(r["phase_rad"]), 1)[0]
    # phase = 4π r/λ + const, dr/dt = -v  =>  dφ/dt = -4π v / λ  (= -18.17 rad/s)
    assert slope == pytest.approx(-4 * math.pi * v / LAM, rel=0.01)
    # Doppler = -(1/2π) dφ/dt = 2v/λ = 2.892 Hz, positive while approaching.
    assert r["doppler_true_hz"] == pytest.approx(np.full(n, 2 * v / LAM))
    assert np.mean(r["doppler_hz"]) == pytest.approx(2 * v / LAM, abs=0.7)
    assert np.all(np.abs(r["doppler_hz"] * 16 - np.round(r["doppler_hz"] * 16)) < 1e-9)  # 1/16 Hz steps


def test_rss_follows_the_round_trip_free_space_budget():
    cfg = preset_config()
    e0 = element_positions(cfg)[0]
    ds = [2.0, 3.0, 4.0, 6.0]
    r = _static([[e0[0], d, e0[2]] for d in ds], 1, cfg, antenna=(0,), rng=None)
    rss = r["rss_dbm"][:, 0, 0]
    # By hand at 3 m: one way 9 dBic - 3 dB polarization + 2 dBi - 4 dB detuning + 20log10(λ/4πr)
    # = 4 - 40.749 = -36.749 dB; round trip 30 dBm - 5 dB backscatter + 2·(-36.749) = -48.498 dBm.
    assert 20 * math.log10(LAM / (4 * math.pi * 3.0)) == pytest.approx(-40.749, abs=1e-3)
    assert rss[1] == -48.5
    for d, got in zip(ds, rss):
        assert got == pytest.approx(link_budget_dbm(d, cfg), abs=0.25 + 1e-9)
    # Round trip: 40 dB per decade, 12.04 dB from 2 m to 4 m.
    assert rss[0] - rss[2] == pytest.approx(40 * math.log10(2), abs=0.5)


def test_tag_facing_away_and_torso_shadow_cost_power():
    cfg = preset_config()
    e0 = element_positions(cfg)[0]
    p = [[e0[0], 3.0, e0[2]]]
    facing = _static(p, 1, cfg, antenna=(0,), rng=None)["rx_dbm"][0, 0, 0]
    sideways = _static(p, 1, cfg, antenna=(0,), rng=None, normal=(1.0, 0.0, 0.0))["rx_dbm"][0, 0, 0]
    away = _static(p, 1, cfg, antenna=(0,), rng=None, normal=(0.0, 1.0, 0.0))["rx_dbm"][0, 0, 0]
    assert facing - sideways == pytest.approx(2 * 10 * math.log10(2), abs=1e-6)   # cardioid, both ways
    assert facing - away == pytest.approx(2 * cfg["tag_back_loss_db"], abs=1e-6)
    shadow = _static(p, 1, cfg, antenna=(0,), rng=None, torso_xy=np.array([e0[0], 2.8]))["rx_dbm"][0, 0, 0]
    assert facing - shadow == pytest.approx(2 * cfg["torso_loss_db"], abs=0.1)


def test_misses_rise_with_distance_and_bursts_cluster():
    cfg = preset_config()
    e0 = element_positions(cfg)[0]
    r = _static([[e0[0], d, e0[2]] for d in (3.0, 9.0, 12.0)], 4000, cfg, antenna=(0,), misdetect=True)
    miss = 1 - r["detected"][:, 0].mean(axis=-1)
    assert miss[0] < miss[1] < miss[2]
    assert 0.04 < miss[0] < 0.15
    # At 3 m a miss is followed by another more often than the average miss rate (bursts).
    d = r["detected"][0, 0]
    after_miss = 1 - d[1:][~d[:-1]].mean()
    assert after_miss > 2 * miss[0]


def test_multipath_is_weaker_than_line_of_sight():
    from rfedge.sim.rfid import make_environment, one_way_channel

    cfg = preset_config()
    env = make_environment(cfg, 0)
    pos = np.array([[x, 3.0 + y, z] for x in (-0.6, 0.0, 0.6) for y in (-0.3, 0.3) for z in (0.9, 1.5)])
    n = np.tile([0.0, -1.0, 0.0], (len(pos), 1))
    e = element_positions(cfg)[0]
    los = one_way_channel(pos, n, e, LAM, cfg)
    tot = one_way_channel(pos, n, e, LAM, cfg, env)
    ratio = np.abs(tot - los) / np.abs(los)
    assert np.all(ratio < 0.6) and np.mean(ratio) > 0.02


# ---- gestures and kinematics -------------------------------------------------------------------

def test_the_21_gestures_of_fig2():
    assert ag.LABEL_NAMES == ("LD", "LF", "LR", "LAC", "RAC", "L", "Pl", "Ps", "LRo", "RR", "SL", "SR", "2HLD",
                              "2HLF", "2HLR", "2HIC", "2HOC", "2HL", "2HPl", "2HPs", "2HR")
    assert [g.hands for g in ag.GESTURES] == [1] * 12 + [2] * 9
    assert ag.BY_ABBREV["LAC"].right is None and ag.BY_ABBREV["RAC"].left is None
    assert ag.minimum_jerk(np.array([0.0, 0.5, 1.0])).tolist() == [0.0, 0.5, 1.0]


def test_arm_kinematics_by_hand():
    fwd, up = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    right = np.cross(fwd, up)                        # (-1, 0, 0): facing -y, the right hand is at -x
    assert right.tolist() == [-1.0, 0.0, 0.0]
    sh = np.array([-0.2, 3.0, 1.4])
    L1, L2, side = np.array(0.3), np.array(0.3), np.array(-1.0)

    def pose(*angles):
        return ag.arm_pose(np.array(angles, float), sh, fwd, right, up, L1, L2, side)

    hand, fore, back = pose(0, 0, 0, 0, 0)            # hanging: 0.6 m below the shoulder
    assert hand == pytest.approx(sh - [0, 0, 0.6]) and back == pytest.approx(right)
    hand, fore, back = pose(90, 90, 0, 0, 0)          # lateral raise: out to the side, palm down
    assert hand == pytest.approx(sh + [-0.6, 0, 0]) and back == pytest.approx(up)
    hand, fore, back = pose(90, 0, 0, 0, 0)           # forward raise: thumb up, back of hand outward
    assert hand == pytest.approx(sh + [0, -0.6, 0]) and back == pytest.approx(right)
    hand, fore, back = pose(90, 0, 0, 90, 0)          # pronated: palm down
    assert back == pytest.approx(up)
    hand, fore, back = pose(90, 0, 0, 90, 90)         # wrist bent back: back of the hand faces the body
    assert back == pytest.approx(-fwd)
    hand, fore, back = pose(0, 0, 90, 0, 0)           # elbow at 90°: forearm forward
    assert hand == pytest.approx(sh + [0, -0.3, -0.3]) and fore == pytest.approx(fwd)
    # The left arm mirrors: same angles, outward = +x, palm down again.
    hand, fore, back = ag.arm_pose(np.array([90, 0, 0, 90, 0.0]), sh * [-1, 1, 1], fwd, -right, up, L1, L2,
                                   np.array(1.0))
    assert back == pytest.approx(up)


def test_amplitude_scales_the_excursion_from_rest():
    g = ag.BY_ABBREV["LR"]
    full = ag.arm_angles(g.right, np.array([1.0]))[0]
    half = ag.arm_angles(g.right, np.array([1.0]), amplitude=0.5)[0]
    assert half == pytest.approx(np.asarray(ag.REST) + 0.5 * (full - np.asarray(ag.REST)))
    loop = ag.BY_ABBREV["RAC"].right
    a0, a1 = ag.arm_angles(loop, np.array([0.0, 1.0]))
    assert a0 == pytest.approx(a1)                   # one full turn closes the circle


# ---- the dataset -------------------------------------------------------------------------------

def test_overrides_are_checked():
    with pytest.raises(RfedgeError, match="no field 'particpants'"):
        preset_config("arm21", {"particpants": 2})
    with pytest.raises(RfedgeError, match="field 'repetitions': expected int"):
        preset_config("arm21", {"repetitions": "many"})
    with pytest.raises(RfedgeError, match="field 'gestures'"):
        preset_config("arm21", {"gestures": ["LD", "XX"]})
    with pytest.raises(RfedgeError, match="field 'participants'"):
        preset_config("arm21", {"participants": 0})
    with pytest.raises(RfedgeError, match="unknown RFID preset"):
        preset_config("nope")
    assert preset_config("arm21", {"distance_m": 4})["distance_m"] == 4.0


def test_shapes_dtypes_and_metadata(small):
    n = 2 * 21 * 3
    assert len(small) == n and small.kind == "rfid" and small.label_names == list(ag.LABEL_NAMES)
    want = {"iq": np.complex64, "detected": np.bool_, "t_s": np.float32, "rss_dbm": np.float32,
            "phase_rad": np.float32, "doppler_hz": np.float32, "frequency_mhz": np.float32,
            "aoa_true_rad": np.float32}
    for name, dt in want.items():
        a = small.array(name)
        assert a.shape == (n, 4, 2, 128) and a.dtype == dt, name
    det = np.asarray(small.array("detected"))
    for name in ("iq", "rss_dbm", "phase_rad", "doppler_hz"):
        a = np.asarray(small.array(name))
        assert np.all(np.isnan(a[~det])) and np.all(np.isfinite(a[det])), name
    ph = np.asarray(small.array("phase_rad"))[det]
    assert ph.min() >= 0 and ph.max() < 2 * np.pi
    t = np.asarray(small.array("t_s"))
    assert t.min() >= 0 and t.max() < 3.6
    # Antenna switching: within a cycle element 1 reads before element 2; each element is periodic.
    assert np.all(t[:, :, 0, :] < t[:, :, 1, :])
    assert np.all(np.diff(t, axis=-1) > 0)
    # IQ is the reported RSS and phase.
    iq = np.asarray(small.array("iq"))[det]
    rss = np.asarray(small.array("rss_dbm"))[det]
    np.testing.assert_allclose(20 * np.log10(np.abs(iq)), rss, atol=1e-3)
    tr = small.trials[0]
    for key in ("label", "label_name", "user", "session", "repetition", "environment", "speed", "amplitude",
                "onset_s", "duration_s", "lateral_m", "standing_m", "yaw_deg", "height_m", "detected_fraction"):
        assert key in tr
    cfg = small.manifest["config"]
    assert cfg["seed"] == 3 and len({t["epc"] for t in cfg["tags"]}) == 4 and cfg["element_spacing_wl"] == 0.8
    assert small.split_names() == ["cross-user", "in-session"]


def test_label_coverage(small):
    seen = {(t["label"], t["user"], t["repetition"]) for t in small.trials}
    assert seen == {(g, u, r) for g in range(21) for u in range(2) for r in range(3)}
    assert all(small.label_names[t["label"]] == t["label_name"] for t in small.trials)


def test_misdetection_fraction_is_realistic(small):
    det = np.asarray(small.array("detected"))
    assert 0.05 <= 1 - det.mean() <= 0.20
    per_trial = 1 - det.mean(axis=(1, 2, 3))
    assert per_trial.max() < 0.7


def test_variability_between_trials(small):
    sp = np.array([t["speed"] for t in small.trials])
    amp = np.array([t["amplitude"] for t in small.trials])
    x = np.array([t["lateral_m"] for t in small.trials])
    assert sp.max() / sp.min() > 1.4 and amp.max() / amp.min() > 1.3 and x.max() - x.min() > 0.2
    h = sorted({t["height_m"] for t in small.trials})
    assert len(h) == 2 and 1.55 <= h[0] < h[1] <= 1.85


def test_pair_phase_difference_tracks_true_aoa(small):
    # What MUSIC relies on: arg(y2 conj y1) ≈ 4π d sinθ/λ, up to multipath and the motion between
    # the two elements' reads.
    iq = np.asarray(small.array("iq"))
    aoa = np.asarray(small.array("aoa_true_rad"))
    det = np.asarray(small.array("detected"))
    dop = np.asarray(small.array("doppler_hz"))
    ok = det[:, :, 0] & det[:, :, 1] & (np.abs(dop[:, :, 0]) < 1) & (np.abs(dop[:, :, 1]) < 1)
    dphi = np.angle(iq[:, :, 1] * np.conj(iq[:, :, 0]))
    want = 4 * np.pi * 0.8 * np.sin(0.5 * (aoa[:, :, 0] + aoa[:, :, 1]))
    err = np.abs(np.angle(np.exp(1j * (dphi - want))))[ok]
    assert ok.sum() > 1000
    assert np.median(err) < 0.4 and abs(np.mean(np.angle(np.exp(1j * (dphi - want)))[ok])) < 0.1
    # Most of the motion stays inside the unambiguous field of view |4π d sinθ/λ| < π.
    assert np.mean(np.abs(np.sin(aoa)) < 1 / 3.2) > 0.95


def test_left_and_right_arm_circles_mirror_in_aoa(small):
    aoa = np.asarray(small.array("aoa_true_rad"))
    lab = small.labels
    lac, rac = ag.LABEL_NAMES.index("LAC"), ag.LABEL_NAMES.index("RAC")
    # Facing the reader, the left hand (tags 2, 3) is at +x, i.e. θ < 0; the right hand at θ > 0.
    left_lac = aoa[lab == lac][:, 2:].mean()
    right_rac = aoa[lab == rac][:, :2].mean()
    assert left_lac < -0.05 and right_rac > 0.05


def test_same_seed_same_bytes(tmp_path):
    o = dict(participants=1, repetitions=2, gestures=["LD", "2HR"])
    a = synth_rfid_dataset(tmp_path / "a", seed=11, overrides=o)
    b = synth_rfid_dataset(tmp_path / "b", seed=11, overrides=o)
    c = synth_rfid_dataset(tmp_path / "c", seed=12, overrides=o)
    for name in ("iq", "detected", "t_s", "rss_dbm", "phase_rad", "doppler_hz"):
        assert (a / "arrays" / f"{name}.npy").read_bytes() == (b / "arrays" / f"{name}.npy").read_bytes()
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    assert (a / "arrays" / "iq.npy").read_bytes() != (c / "arrays" / "iq.npy").read_bytes()
    m = json.loads((a / "manifest.json").read_text())
    assert m["label_names"] == ["LD", "2HR"] and m["config"]["seed"] == 11


def test_frequency_hopping_changes_the_carrier(tmp_path):
    o = dict(participants=1, repetitions=1, gestures=["LF"], carrier_mhz=[865.7, 866.3, 866.9, 867.5])
    d = Dataset.open(synth_rfid_dataset(tmp_path / "h", overrides=o))
    f = np.asarray(d.array("frequency_mhz"))
    assert set(np.round(np.unique(f).astype(float), 1).tolist()) <= {865.7, 866.3, 866.9, 867.5}
    assert len(np.unique(f)) >= 3


def test_itemtest_csv_round_trip(small):
    files = sorted((small.path / "itemtest").rglob("*.csv"))
    assert len(files) == len(small)
    det = np.asarray(small.array("detected"))
    for i in (0, 7, len(small) - 1):
        tr = small.trials[i]
        f = small.path / "itemtest" / f"user{tr['user']}_session{tr['session']}" / \
            f"{tr['id']:05d}_{tr['label_name']}_r{tr['repetition']:02d}.csv"
        reads = read_itemtest_csv(f)
        assert reads.meta["label"] == tr["label_name"] and reads.skipped == {}
        ser = to_series(reads)
        t = np.asarray(small.array("t_s"))[i]
        t0 = t[det[i]].min()
        for k, epc in enumerate(EPCS):
            for a in range(2):
                m = det[i, k, a]
                s = ser[(epc, a + 1)]
                order = np.argsort(t[k, a][m], kind="stable")

                def want(name):
                    return np.asarray(small.array(name))[i, k, a][m][order].astype(float)

                assert s["rss_dbm"].tolist() == want("rss_dbm").tolist()
                np.testing.assert_allclose(s["phase_rad"], want("phase_rad"), atol=1e-6)
                np.testing.assert_allclose(s["doppler_hz"], want("doppler_hz"))
                np.testing.assert_allclose(s["t_s"], want("t_s") - t0, atol=1e-6)


def test_optional_pi_ambiguity_only_adds_pi():
    cfg = preset_config("arm21", {"phase_pi_ambiguity": True})
    plain = preset_config()
    p = [[0.2, 3.0, 1.2]]
    a = _static(p, 400, cfg, rng=5)["phase_rad"]
    b = _static(p, 400, plain, rng=5)["phase_rad"]
    jump = np.abs(np.angle(np.exp(1j * (a - b))))
    flipped = jump > np.pi / 2
    assert np.all(np.abs(jump[flipped] - np.pi) < 0.01) and np.all(jump[~flipped] < 0.01)
    assert 0.3 < flipped.mean() < 0.7


def test_decimal_comma_csv_reads_back(tmp_path):
    o = dict(participants=1, repetitions=1, gestures=["SL"], csv_decimal_comma=True)
    d = Dataset.open(synth_rfid_dataset(tmp_path / "dc", overrides=o, write_csv=True))
    f = next((d.path / "itemtest").rglob("*.csv"))
    assert '"-' in f.read_text()
    r = read_itemtest_csv(f)
    det = np.asarray(d.array("detected"))[0]
    assert len(r) == det.sum()
    assert sorted(r.rss_dbm.tolist()) == sorted(np.asarray(d.array("rss_dbm"))[0][det].astype(float).tolist())
