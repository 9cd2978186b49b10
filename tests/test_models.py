"""Student, baselines, MAC counts and int8 conversion (paper 002 §4.3-4.4, design.md §3 and §6)."""

import math

import keras
import numpy as np
import pytest
from keras import layers

from rfedge.features import FeatureConfig
from rfedge.models.baselines import SvmBaseline, build_heavy_cnn, frame_features, handcrafted_features
from rfedge.models.macs import count_macs
from rfedge.models.student import build_student, inference_model, to_model_input
from rfedge.quant import DYNAMIC_OPS, run_tflite, tflite_ops, to_int8_tflite

SHAPE = FeatureConfig().shape      # (C, F, T) of the default features
G = 11


@pytest.mark.parametrize("variant", ["gru", "tcn"])
def test_student_budget_and_shapes(variant):
    m = build_student(SHAPE, G, variant=variant)
    macs = count_macs(m)["total"]
    print(f"student-{variant} for {SHAPE}: {m.count_params():,} parameters, {macs:,} MACs")
    assert m.count_params() < 150_000                       # paper 002 §4.3
    assert macs <= 1_000_000                                 # design.md §6: ~1M MACs for the network
    C, F, T = SHAPE
    assert tuple(m.inputs[0].shape) == (None, T, F, C)
    y = m.predict(np.random.default_rng(0).normal(size=(3, T, F, C)).astype(np.float32), verbose=0)
    assert y.shape == (3, G)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)   # softmax output
    if variant == "tcn":
        assert not any(isinstance(layer, layers.RNN) for layer in m.layers)


def test_to_model_input_is_time_first():
    X = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)     # [N, C, F, T]
    Xm = to_model_input(X)
    assert Xm.shape == (2, 5, 4, 3) and Xm.flags.c_contiguous
    assert Xm[1, 4, 2, 0] == X[1, 0, 2, 4]


def test_inference_model_matches_and_is_batch1_unrolled():
    m = build_student(SHAPE, G)
    x = np.random.default_rng(1).normal(size=(1,) + tuple(m.inputs[0].shape[1:])).astype(np.float32)
    m1 = inference_model(m)
    assert tuple(m1.inputs[0].shape)[0] == 1
    assert all(layer.unroll for layer in m1.layers if isinstance(layer, layers.RNN))
    np.testing.assert_allclose(m1(x, training=False), m(x, training=False), atol=1e-5)


def test_macs_by_hand_conv_gru_dense():
    inp = keras.Input((5, 4, 3))                                        # T=5, F=4, C=3
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(inp)  # 5*4*3*9 = 540
    x = layers.Conv2D(6, 1)(x)                                          # 5*4*6*3 = 360
    x = layers.BatchNormalization()(x)                                  # folded: 0
    x = layers.Conv2D(4, 3)(x)                                          # valid -> 3x2x4, *9*6 = 1296
    x = layers.Reshape((3, 8))(x)
    x = layers.GRU(5)(x)                                                # 3 steps * 3 gates * (8*5 + 5*5) = 585
    out = layers.Dense(2)(x)                                            # 5*2 = 10
    r = count_macs(keras.Model(inp, out))
    assert sorted(v for v in r["per_layer"].values() if v) == [10, 360, 540, 585, 1296]
    assert r["total"] == 540 + 360 + 1296 + 585 + 10


def test_macs_by_hand_conv1d_and_sequence_dense():
    inp = keras.Input((7, 3))
    x = layers.Conv1D(4, 3, padding="causal", dilation_rate=2)(inp)   # 7*4*3*3 = 252
    x = layers.BatchNormalization()(x)
    out = layers.Dense(2)(x)                                            # per step: 7*4*2 = 56
    assert count_macs(keras.Model(inp, out))["total"] == 252 + 56


def test_macs_refuses_unknown_weighted_layer():
    inp = keras.Input((4,))
    out = layers.Embedding(10, 3)(inp)
    with pytest.raises(ValueError, match="no MAC rule"):
        count_macs(keras.Model(inp, out))


def test_heavy_cnn_is_about_four_times_the_student():
    h, s = build_heavy_cnn(SHAPE, G), build_student(SHAPE, G)
    ratio = h.count_params() / s.count_params()
    print(f"heavy CNN {h.count_params():,} parameters, {count_macs(h)['total']:,} MACs ({ratio:.1f}x the student)")
    assert 3.0 <= ratio <= 5.5
    assert sum(isinstance(layer, layers.Conv2D) for layer in h.layers) == 4
    y = h.predict(np.zeros((2,) + tuple(h.inputs[0].shape[1:]), np.float32), verbose=0)
    assert y.shape == (2, G)


def test_handcrafted_features_by_hand():
    # One channel, F=4 bins, T=3 frames: flat spectrum, a single line at bin 2, flat again x4.
    P = np.array([[1, 1, 1, 1], [1e-12, 1e-12, 1.0, 1e-12], [4, 4, 4, 4]], dtype=np.float64).T   # [F, T]
    X = np.log(P)[None, None].astype(np.float32)                                              # [1, 1, 4, 3]
    v = handcrafted_features(X)[0]
    assert v.shape == (4 * 3,)                                # one group: 4 features x 3 frames
    logE = np.log([4.0, 1.0, 16.0])
    ent = np.array([np.log(4), 0.0, np.log(4)])
    cen = np.array([1.5, 2.0, 1.5])
    spr = np.array([math.sqrt(1.25), 0.0, math.sqrt(1.25)])
    np.testing.assert_allclose(v, np.concatenate([logE, ent, cen, spr]), atol=1e-4)   # group, feature, frame


def test_handcrafted_features_average_channel_groups():
    X = np.random.default_rng(1).normal(size=(2, 6, 5, 7)).astype(np.float32)
    fr = frame_features(X)                                                  # [2, 6, 4, 7]
    v = handcrafted_features(X, groups=3).reshape(2, 3, 4, 7)
    np.testing.assert_allclose(v[:, 1], fr[:, 2:4].mean(axis=1), rtol=1e-5, atol=1e-5)
    assert handcrafted_features(X, groups=10).shape == (2, 6 * 4 * 7)       # never more groups than channels


def test_handcrafted_features_shape_and_finite():
    X = np.random.default_rng(0).normal(size=(5,) + SHAPE).astype(np.float32) * 3
    F = handcrafted_features(X)
    assert F.shape == (5, 4 * 4 * SHAPE[2]) and np.isfinite(F).all()


def _blobs(n, shape, n_classes, seed, noise=0.7):
    """Separable toy data: one random template per class plus noise (features [N, C, F, T])."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(n_classes,) + tuple(shape))
    y = np.arange(n) % n_classes
    return (templates[y] + noise * rng.normal(size=(n,) + tuple(shape))).astype(np.float32), y


def test_svm_baseline_fit_predict_roundtrip(tmp_path):
    X, y = _blobs(90, SHAPE, 3, seed=2)
    Xv, yv = _blobs(30, SHAPE, 3, seed=2)
    clf = SvmBaseline().fit(X, y, Xv, yv)
    assert len(clf.grid) == 9 and clf.params["C"] in clf.Cs
    pred = clf.predict(Xv)
    assert pred.shape == (30,) and set(pred) <= {0, 1, 2}
    assert clf.count_params() > 0 and clf.count_macs() > 0
    clf.save(tmp_path / "svm.pkl")
    again = SvmBaseline.load(tmp_path / "svm.pkl")
    np.testing.assert_array_equal(again.predict(Xv), pred)


def test_svm_load_rejects_garbage(tmp_path):
    from rfedge.errors import RfedgeError

    p = tmp_path / "svm.pkl"
    p.write_bytes(b"not a pickle")
    with pytest.raises(RfedgeError, match="svm.pkl"):
        SvmBaseline.load(p)


@pytest.mark.parametrize("variant", ["gru", "tcn"])
def test_student_converts_to_full_int8(variant):
    """Batch-1 full-int8 TFLite: int8 in/out, only int8/int32 tensors, no WHILE or FILL, and the
    int8 argmax follows the float model's on most windows (a loose bound: PTQ may flip a few)."""
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(0)
    n_cls = 4
    X, y = _blobs(160, SHAPE, n_cls, seed=3)
    Xm = to_model_input(X)
    m = build_student(SHAPE, n_cls, variant=variant)
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    m.fit(Xm, y, epochs=8, batch_size=16, verbose=0)

    b = to_int8_tflite(m, Xm[:100])
    ops = tflite_ops(b)
    hist = {op: ops.count(op) for op in sorted(set(ops))}
    print(f"student-{variant} int8: {len(b):,} bytes, {len(ops)} ops: {hist}")
    assert not DYNAMIC_OPS & set(ops)
    assert {"DEPTHWISE_CONV_2D", "CONV_2D", "SOFTMAX"} <= set(ops)
    if variant == "gru":
        assert {"TANH", "LOGISTIC", "FULLY_CONNECTED"} <= set(ops)

    it = Interpreter(model_content=b)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert list(inp["shape"]) == [1] + list(Xm.shape[1:])
    # Exactly integer: to_int8_tflite refuses float islands, and the interpreter must agree.
    floats = [t["name"] for t in it.get_tensor_details() if t["dtype"] not in (np.int8, np.int32)]
    assert not floats, floats

    Xt = Xm[100:160]
    agree = (run_tflite(b, Xt).argmax(1) == m.predict(Xt, verbose=0).argmax(1)).mean()
    assert agree >= 0.8, agree
