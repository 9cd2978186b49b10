"""The semantic teacher of paper 000: its dual-path inputs, architecture, soft labels and training."""

import json

import numpy as np
import pytest

from rfedge.data.dataset import Dataset
from rfedge.errors import RfedgeError
from rfedge.features import FeatureConfig, dataset_features
from rfedge.semantics import load_embeddings
from rfedge.sim.csi import synth_csi_dataset
from rfedge.teacher_inputs import TeacherInputs, _frame_weights, ratio_phase

# One user in one room: small enough to synthesize in seconds (208 trials) and still learnable in
# a quick run (13 classes, 8 trials per class and session; in-session split: 156 train, 52 test).
TINY = dict(users=1, sessions=2, trials_per_class=8, environments=1)
CHANCE = 1 / 13

_SHARED: dict = {}


def shared_teacher(base):
    """(dataset path, teacher run path, metrics) trained once per test session under ``base``,
    shared with tests/test_distill.py (which imports this module)."""
    if "teacher" not in _SHARED:
        from rfedge.distill import train_teacher
        from rfedge.train import configure_tf_threads

        configure_tf_threads(2)   # the machine is shared: at most 2 threads
        data = synth_csi_dataset(base / "tiny", preset="esp32-mirror", overrides=TINY)
        run = base / "teacher"
        metrics = train_teacher(data, run, split="in-session", fold=0, seed=0, quick=True, cache_dir=base / "cache")
        _SHARED["teacher"] = (data, run, metrics)
    return _SHARED["teacher"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return Dataset.open(shared_teacher(tmp_path_factory.getbasetemp())[0])


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    return shared_teacher(tmp_path_factory.getbasetemp())


def test_dual_path_inputs(tiny, tmp_path):
    cfg = FeatureConfig()
    ti = TeacherInputs(tiny, cfg, phase_groups=6, cache_dir=tmp_path)
    ids = [0, 5, 17, 100]
    P = ti.phase(ids)
    assert P.shape == (4, cfg.shape[2], 6) and P.dtype == np.float32
    # The static phase (room, RF chains) is removed; what is left moves over the trial.
    np.testing.assert_allclose(P.mean(axis=1), 0, atol=1e-4)
    assert (P.std(axis=1) > 1e-3).all()
    # Path (b) is exactly the student's X.
    np.testing.assert_array_equal(ti.doppler(ids), dataset_features(tiny, ids, cfg))
    # Cached phase: a new object over the same cache gives the same numbers without recomputing.
    ti.phase(range(len(tiny)))
    again = TeacherInputs(tiny, cfg, phase_groups=6, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.phase(ids), P)
    assert again._have.all() and list(tmp_path.glob("ratio-phase-*.npy"))


def test_ratio_phase_cancels_the_common_packet_phase(tiny):
    # A random phase per packet common to both antennas (CFO) and a gain change leave the phase of
    # the ratio untouched, while one antenna alone would be scrambled.
    cfg = FeatureConfig()
    csi = np.asarray(tiny.array("csi"))
    n = int(tiny.array("n_packets")[3, 0])
    h = csi[3, 0, :, :n].astype(np.float64)
    h = h[..., 0] + 1j * h[..., 1]
    t = np.asarray(tiny.array("t_us")[3, 0, :n])
    rng = np.random.default_rng(0)
    scrambled = h * (2.0 * np.exp(1j * rng.uniform(-np.pi, np.pi, n)))[None, :, None]
    W = _frame_weights(cfg)
    a, b = ratio_phase(h, t, cfg, 8, W), ratio_phase(scrambled, t, cfg, 8, W)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.abs(a).max() > 1e-2
    with pytest.raises(RfedgeError, match="2 RX antennas"):
        ratio_phase(h[:1], t, cfg, 8, W)


def test_teacher_shapes_params_and_macs():
    from rfedge.models.student import build_student
    from rfedge.models.teacher import ClassSemantics, build_teacher, count_teacher_macs

    E = load_embeddings().descriptions(["sweep_left_hand", "sweep_right_hand", "clap_both_hands", "3"])
    m = build_teacher((14, 8, 25), 8, E, d_model=32, heads=4, ff=64, scales=(1, 2, 4))
    out = m({"doppler": np.zeros((3, 25, 8, 14), np.float32), "phase": np.zeros((3, 25, 8), np.float32)})
    assert tuple(out["logits"].shape) == (3, 4) and tuple(out["feature"].shape) == (3, 32)
    conv = build_teacher((14, 8, 25), 8, E, d_model=32, doppler_conv=4)     # the optional conv front-end
    assert conv.get_layer("doppler_proj").kernel.shape[0] == 8 * 4
    # The semantics are frozen: the text embeddings are no trainable weight.
    sem = m.get_layer("class_semantics")
    assert isinstance(sem, ClassSemantics) and not sem.trainable_weights
    np.testing.assert_allclose(np.asarray(sem.weights[0]), E, atol=1e-6)
    macs = count_teacher_macs(m)
    # Cross-attention by hand: 25 + 13 + 7 query tokens, 4 class keys, width 32.
    lq, lk, d = 45, 4, 32
    assert macs["per_layer"]["xattn"] == lq * d * d + 2 * lk * d * d + 2 * lq * lk * d + lq * d * d
    assert macs["per_layer"]["enc1_mha"] == 4 * lq * d * d + 2 * lq * lq * d
    assert macs["total"] == sum(macs["per_layer"].values())
    # At its default size the teacher is the large model of the pair, by parameters and by MACs.
    from rfedge.models.macs import count_macs

    big, student = build_teacher((14, 8, 25), 8, E), build_student((14, 8, 25), 4)
    assert big.count_params() > 3 * student.count_params()
    assert count_teacher_macs(big)["total"] > 3 * count_macs(student)["total"]


def test_soft_label_matrix_follows_the_class_semantics():
    from rfedge.models.teacher import class_similarity, soft_label_matrix

    from rfedge.sim.widar_gestures import LABEL_NAMES

    E = load_embeddings().descriptions(LABEL_NAMES)
    S = class_similarity(E)
    Q = soft_label_matrix(E, tau=0.1, lam=0.3)
    np.testing.assert_allclose(Q.sum(axis=1), 1, atol=1e-6)
    assert (Q.argmax(axis=1) == np.arange(len(Q))).all()
    off = S - 2 * np.eye(len(S))                       # the most similar other class, from the embeddings
    second = np.argsort(-Q, axis=1)[:, 1]
    np.testing.assert_array_equal(second, off.argmax(axis=1))
    # lam = 0 is plain one-hot; a higher temperature spreads more mass off the true class.
    np.testing.assert_array_equal(soft_label_matrix(E, lam=0.0), np.eye(len(E), dtype=np.float32))
    assert np.diag(soft_label_matrix(E, tau=1.0, lam=0.3)).mean() < np.diag(Q).mean()


def test_quick_teacher_training_beats_chance_and_writes_a_run(teacher_run):
    from rfedge.distill import load_teacher

    data, run, metrics = teacher_run
    # Measured: 0.25 accuracy (13 of 52 test trials; chance 1/13 = 4 trials) on this set with the
    # quick schedule. Twice chance leaves room for thread-count and platform float differences.
    assert metrics["accuracy"] > 2 * CHANCE, metrics["accuracy"]
    for f in ("model.keras", "metrics.json", "features.json", "normalizer.json", "phase_normalizer.json",
              "teacher_normalizer.json", "teacher.json", "predictions.npz", "confusion.png"):
        assert (run / f).is_file(), f
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["model"] == "teacher" and on_disk["parameters"] == metrics["parameters"]
    assert on_disk["macs"] > 0 and on_disk["host_latency_ms_per_window"] > 0
    assert on_disk["n_test"] == 52 and 0 <= on_disk["macro_f1"] <= 1
    # The saved model reloads and reproduces the recorded test probabilities.
    model, nd, npn, info, _ = load_teacher(run)
    ds = Dataset.open(data)
    ti = TeacherInputs(ds, FeatureConfig.from_dict(json.loads((run / "features.json").read_text())),
                       info["phase_groups"])
    with np.load(run / "predictions.npz") as z:
        ids, proba = z["test_ids"][:6], z["proba"][:6]
    from rfedge.models.student import to_model_input

    A = to_model_input(ti.doppler(ids))
    z = model({"doppler": (A - nd.mean) / nd.std, "phase": npn(ti.phase(ids))}, training=False)["logits"]
    np.testing.assert_allclose(np.asarray(__import__("keras").ops.softmax(z)), proba, atol=1e-4)


def test_single_antenna_dataset_is_one_clear_error(tmp_path):
    from rfedge.distill import train_teacher

    data = synth_csi_dataset(tmp_path / "one", preset="esp32-mirror",
                             overrides=dict(users=1, sessions=1, trials_per_class=2, environments=1, rx_antennas=1))
    with pytest.raises(RfedgeError, match="the teacher needs 2 RX antennas"):
        train_teacher(data, tmp_path / "run", quick=True)
    assert not (tmp_path / "run").exists()
