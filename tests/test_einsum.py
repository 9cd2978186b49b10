"""The TensorFlow Einsum network, both forms (leaf mixing, the default, and the plain form):
structure, normalization, agreement with the float64 numpy reference on its export, learning,
operation counts and input errors."""

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from rfedge.errors import RfedgeError  # noqa: E402
from rfedge.models import einsum_format  # noqa: E402
from rfedge.models.einsum import (EinsumNetwork, FitConfig, exact_ops, layer_shapes, paper_macs,  # noqa: E402
                                  parameter_count)

EPS32 = float(np.finfo(np.float32).eps)
FORMS = [True, False]           # leaf_mixing


def _randomize(net, seed=0, spread=1.5):
    """Non-trivial parameters (what training could produce), without training."""
    rng = np.random.default_rng(seed)
    net.x_mean.assign(rng.normal(0, 1, net.F).astype(np.float32))
    net.x_scale.assign(rng.uniform(0.5, 2.0, net.F).astype(np.float32))
    net.mu.assign(rng.normal(0, 1, (net.F, net.L)).astype(np.float32))
    net.sigma_raw.assign(rng.normal(0, 0.5, (net.F, net.L)).astype(np.float32))
    for v in net.logits:
        v.assign((spread * rng.normal(size=v.shape)).astype(np.float32))
    if net.leaf_mixing:
        net.leaf_logits.assign((spread * rng.normal(size=net.leaf_logits.shape)).astype(np.float32))
    net.mix_logits.assign(rng.normal(size=net.mix_logits.shape).astype(np.float32))
    p = rng.uniform(0.5, 1.5, net.C)
    net.log_prior.assign(np.log(p / p.sum()).astype(np.float32))
    return net


def test_regions_partition_the_features_of_every_repetition():
    F, D, K, L, R, C = 29, 4, 2, 10, 10, 21
    net = EinsumNetwork(F, D, K, L, R, C, seed=3)
    assert net.perm.shape == (R, F) and net.bounds.shape == (2 ** D + 1,)
    sizes = np.diff(net.bounds)
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1          # balanced halving
    for r in range(R):
        regions = [set(net.perm[r, net.bounds[j]:net.bounds[j + 1]].tolist()) for j in range(2 ** D)]
        assert sum(len(s) for s in regions) == F
        assert set().union(*regions) == set(range(F))                     # disjoint and covering
    assert len({tuple(p) for p in net.perm.tolist()}) == R                # repetitions differ
    # the same seed gives the same structure, another seed another one
    assert np.array_equal(EinsumNetwork(F, D, K, L, R, C, seed=3).perm, net.perm)
    assert not np.array_equal(EinsumNetwork(F, D, K, L, R, C, seed=4).perm, net.perm)


@pytest.mark.parametrize("mixing", FORMS)
def test_layer_shapes_and_export_are_the_exchange_format(mixing):
    F, D, K, L, R, C = 38, 5, 2, 10, 10, 21
    net = EinsumNetwork(F, D, K, L, R, C, seed=0, leaf_mixing=mixing)
    shapes = layer_shapes(D, K, L, R, C, mixing)
    assert [tuple(v.shape) for v in net.logits] == shapes
    assert shapes == [einsum_format.logw_shape(D, K, L, R, C, l, leaf_mixing=mixing) for l in range(D)]
    I0 = K if mixing else L                        # layer 0 is K x K only with leaf mixing
    assert shapes[0] == (R, 2 ** (D - 1), K, I0, I0)
    assert all(s == (R, 2 ** (D - 1 - l), K, K, K) for l, s in enumerate(shapes[1:-1], 1))
    assert shapes[-1] == (R, C, K, K)
    p = net.to_params().validate()                 # every block normalized, shapes right
    assert p.F == F and (p.D, p.K, p.L, p.R, p.C) == (D, K, L, R, C)
    assert p.leaf_mixing == mixing and p.I0 == I0
    if mixing:
        assert p.logw_leaf.shape == (F, K, L)
    assert np.array_equal(p.bounds, einsum_format.balanced_bounds(F, D))
    n = sum(np.asarray(getattr(p, k)).size for k in ("x_mean", "x_scale", "mu", "sigma", "logw_mix", "log_prior"))
    n += p.logw_leaf.size if mixing else 0
    assert n + sum(w.size for w in p.logw) == parameter_count(F, D, K, L, R, C, mixing)
    assert sum(int(np.prod(v.shape)) for v in net.weights) == n + sum(w.size for w in p.logw)  # all exported


def test_leaf_mixing_is_the_default_and_the_flag_is_checked():
    assert EinsumNetwork(8, 2, 2, 3, 2, 3).leaf_mixing is True
    assert layer_shapes(2, 2, 3, 2, 3)[0] == (2, 2, 2, 2, 2)
    with pytest.raises(RfedgeError, match="field 'leaf_mixing'"):
        EinsumNetwork(8, 2, 2, 3, 2, 3, leaf_mixing="yes")


@pytest.mark.parametrize("mixing", FORMS)
def test_weights_are_normalized_after_training(mixing):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    net = EinsumNetwork(8, 2, 2, 3, 2, 3, seed=0, leaf_mixing=mixing)
    before = [v.numpy().copy() for v in net.trainable_variables]
    net.fit_data(X, y, FitConfig(epochs=3, batch_size=32))
    # every trainable block moved (the leaf-mixing weights receive gradients too)
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, net.trainable_variables))
    p = net.to_params()
    for w in p.logw:
        s = np.log(np.exp(w.reshape(*w.shape[:-2], -1)).sum(-1))
        assert np.max(np.abs(s)) < 1e-5
    assert np.max(np.abs(np.log(np.exp(p.logw_mix).sum(1)))) < 1e-5
    if mixing:
        assert np.max(np.abs(np.log(np.exp(p.logw_leaf).sum(-1)))) < 1e-5
    assert np.all(p.sigma > 0)


@pytest.mark.parametrize("mixing", FORMS)
def test_class_densities_integrate_to_one(mixing):
    # F = 2 features, one einsum layer (the root): p(z | c) over the plane, by a Riemann sum on a
    # grid fine (0.02) against the narrowest component (sigma >= the 0.25 floor) and wide (±12)
    # against the widest (means within ±3, sigma <= ~2): the error is far below 1e-3. With leaf
    # mixing this also checks that every feature's K mixtures are densities.
    net = _randomize(EinsumNetwork(2, 1, 2, 3, 2, 4, seed=1, leaf_mixing=mixing), seed=1)
    net.x_mean.assign(np.zeros(2, np.float32))
    net.x_scale.assign(np.ones(2, np.float32))          # z = x: the density is over x itself
    assert float(tf.reduce_max(net.sigma())) < 2.5
    h = 0.02
    g = np.arange(-12, 12, h) + h / 2
    zz = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    ll = net.predict_log_likelihoods(zz, batch_size=1 << 16).astype(np.float64)
    mass = np.exp(ll).sum(0) * h * h
    np.testing.assert_allclose(mass, 1.0, atol=1e-3)


@pytest.mark.parametrize("mixing", FORMS)
def test_depth_one_network_is_the_hand_derived_mixture(mixing):
    F, K, L, R, C = 2, 2, 3, 2, 3
    net = _randomize(EinsumNetwork(F, 1, K, L, R, C, seed=5, leaf_mixing=mixing), seed=5)
    p = net.to_params()
    rng = np.random.default_rng(9)
    X = rng.normal(size=(7, F))
    z = (X - p.x_mean) / p.x_scale

    def normal(v, m, s):
        return np.exp(-0.5 * ((v - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    def leaf(n, f, i):
        # density i of feature f: Gaussian i (plain), or mixture i of the L Gaussians
        if not mixing:
            return normal(z[n, f], p.mu[f, i], p.sigma[f, i])
        return sum(math.exp(p.logw_leaf[f, i, l]) * normal(z[n, f], p.mu[f, l], p.sigma[f, l]) for l in range(L))

    I = K if mixing else L
    want = np.zeros((len(X), C))
    for n in range(len(X)):
        for c in range(C):
            for r in range(R):
                a, b = p.perm[r]                      # D = 1: two regions of one feature each
                w = np.exp(p.logw[0][r, c])           # (I, I)
                inner = sum(w[i, j] * leaf(n, a, i) * leaf(n, b, j) for i in range(I) for j in range(I))
                want[n, c] += math.exp(p.logw_mix[c, r]) * inner
    got = net.predict_log_likelihoods(X.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(got, np.log(want), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mixing", FORMS)
@pytest.mark.parametrize("cfg", [(29, 4, 2, 10, 10, 21), (38, 5, 3, 4, 3, 5), (7, 2, 2, 3, 2, 2)])
def test_tf_forward_equals_numpy_reference_on_the_export(cfg, mixing):
    F, D, K, L, R, C = cfg
    net = _randomize(EinsumNetwork(F, D, K, L, R, C, seed=2, leaf_mixing=mixing), seed=2)
    p = net.to_params()
    assert p.leaf_mixing == mixing
    rng = np.random.default_rng(11)
    X = (p.x_mean + p.x_scale * rng.normal(0, 1.5, size=(50, F))).astype(np.float32)
    ref_ll = einsum_format.log_likelihoods(p, X)
    ref_lp = einsum_format.log_posteriors(p, X)
    got_ll = net.predict_log_likelihoods(X).astype(np.float64)
    got_lp = net.predict_log_posteriors(X).astype(np.float64)
    # Tolerance (a worst-case bound, not a fit): in float32 each leaf term
    # t = -((z - mu)/sigma)^2 / 2 - log sigma - log(2 pi)/2 carries ~4 roundings (standardize,
    # subtract, divide, square-and-add), i.e. <= 4 eps |t|-ish; a region sums <= 2 features and
    # each of the D einsum layers adds its two children's running log-densities (plus a log-sum-exp
    # of O(1) magnitude), one rounding per level, so D + 2 more roundings of partial sums bounded
    # by S = sum_f max_k |t_fk|. Hence |error| <= (D + 8) eps32 (S + 1) per sample; posteriors are
    # differences of two such values (x2). The export widens the float32 parameters exactly.
    # Leaf mixing adds per feature a log-sum-exp over l of logw_leaf[f, k, l] + t_fl: one more
    # rounding of the sum (bounded by |w| + |t|) and the O(1) log-sum-exp (D + 10, |w| in S).
    z = (X.astype(np.float64) - p.x_mean) / p.x_scale
    t = -0.5 * ((z[:, :, None] - p.mu) / p.sigma) ** 2 - np.log(p.sigma) - 0.5 * math.log(2 * math.pi)
    if mixing:
        S = (np.abs(t)[:, :, None, :] + np.abs(p.logw_leaf)).max(axis=(2, 3)).sum(axis=1)
        tol = (D + 10) * EPS32 * (S + 1)
    else:
        S = np.abs(t).max(axis=2).sum(axis=1)
        tol = (D + 8) * EPS32 * (S + 1)
    assert np.all(np.abs(got_ll - ref_ll) <= tol[:, None])
    assert np.all(np.abs(got_lp - ref_lp) <= 2 * tol[:, None])
    assert np.array_equal(got_lp.argmax(1), einsum_format.predict(p, X))


@pytest.mark.parametrize("mixing", FORMS)
def test_export_round_trips_through_the_file(tmp_path, mixing):
    net = _randomize(EinsumNetwork(12, 2, 2, 3, 2, 3, seed=0, name="SA", leaf_mixing=mixing), seed=0)
    p = net.to_params()
    einsum_format.save(p, tmp_path / "SA.npz")
    q = einsum_format.load(tmp_path / "SA.npz")
    X = np.random.default_rng(0).normal(size=(5, 12))
    np.testing.assert_array_equal(einsum_format.log_likelihoods(p, X), einsum_format.log_likelihoods(q, X))
    assert q.name == "SA" and q.leaf_mixing == mixing


@pytest.mark.parametrize("mixing", FORMS)
def test_training_beats_chance_on_a_separable_problem(mixing):
    # 4 classes, Gaussian blobs 3 sigma apart in 8 features; chance is 25%.
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3.0, size=(4, 8))
    y = rng.integers(0, 4, 400)
    X = (centres[y] + rng.normal(size=(400, 8))).astype(np.float32)
    net = EinsumNetwork(8, 2, 2, 4, 3, 4, seed=0, leaf_mixing=mixing)
    hist = net.fit_data(X[:300], y[:300], FitConfig(epochs=30, batch_size=64))
    acc = float((net.predict_log_posteriors(X[300:]).argmax(1) == y[300:]).mean())
    assert acc >= 0.9, (acc, hist)
    assert hist["loss"][-1] < hist["loss"][0] or len(hist["loss"]) == 1


def _paper_formula(D, K, R, C):
    """Eqs. 12-14 summed term by term: 2^d einsums at depth d = 1..D, each K^3 + K MACs, R
    repetitions; one subtraction and one multiplication per leaf input; R x C for the mixing."""
    einsum = sum(2 ** d for d in range(1, D + 1)) * R * (K ** 3 + K)
    return einsum + 2 * (2 ** D) + R * C


def test_mac_formula_reproduces_paper_table_iv():
    table_iv = {"SPR": ((6, 2, 10, 10, 21), 12_938), "SA": ((4, 2, 10, 10, 21), 3_242),
                "WA": ((5, 2, 10, 10, 21), 6_474)}
    total = 0
    for name, ((D, K, L, R, C), published) in table_iv.items():
        m = paper_macs(D, K, L, R, C)
        assert m["total"] == _paper_formula(D, K, R, C) == published, name
        assert m["mix"] == 210 and m["leaf"] == 2 ** (D + 1)
        total += m["total"]
    assert total == 22_654                          # Table IV's total


def test_exact_count_follows_the_implemented_structure():
    F, D, K, L, R, C = 116, 6, 2, 10, 10, 21
    p = EinsumNetwork(F, D, K, L, R, C, leaf_mixing=False).to_params()
    # Walk the exported tensors: a node with I x I child pairs and O outputs costs I^2 + O I^2.
    einsum = 0
    for w in p.logw:
        o, i = w.shape[-3], w.shape[-1]
        nodes = int(np.prod(w.shape[:-3]))
        einsum += nodes * (i * i + o * i * i)
    leaf = 3 * F * L                                 # per feature and component, standardization folded
    regions = R * (F - 2 ** D) * L                   # multiplying the features of each region
    e = exact_ops(F, D, K, L, R, C, leaf_mixing=False)
    assert e["einsum"] == einsum and e["leaf_mix"] == 0
    assert e["total"] == einsum + leaf + regions + R * C + C
    # The first layer (L x L inputs) dominates; the analytical estimate is far below.
    assert e["einsum"] > 5 * paper_macs(D, K, L, R, C)["einsum"]
    # Leaf mixing: walk the export the same way; every node is K x K.
    q = EinsumNetwork(F, D, K, L, R, C).to_params()
    einsum_mix = sum(int(np.prod(w.shape[:-3])) * (w.shape[-1] ** 2 + w.shape[-3] * w.shape[-1] ** 2) for w in q.logw)
    m = exact_ops(F, D, K, L, R, C)
    assert m["einsum"] == einsum_mix
    assert m["leaf_mix"] == q.logw_leaf.size        # one MAC per mixing weight
    assert m["total"] == m["leaf"] + m["leaf_mix"] + m["regions"] + einsum_mix + R * C + C
    assert m["total"] < e["total"] / 5


def test_exact_count_of_the_leaf_mixing_form_by_hand():
    # F = 6, D = 2, K = 2, L = 3, R = 2, C = 3, counted by hand:
    #   Gaussians F·L = 18; mixing F·K·L = 36;
    #   regions: 4 regions of 6 features (sizes 1, 2, 1, 2): 2 products per density k, per
    #   repetition: 2·2·2 = 8;
    #   layer 0: 2 nodes per repetition, each 2·2 outer products + 2 outputs x 4 MACs = 12: 2·2·12 = 48;
    #   root: one node per repetition, 4 outer products + 3 classes x 4 MACs = 16: 2·16 = 32;
    #   mixture over repetitions 2·3 = 6; prior 3.
    e = exact_ops(6, 2, 2, 3, 2, 3)
    assert (e["leaf"], e["leaf_mix"], e["regions"], e["einsum"], e["mix"], e["prior"]) == (18, 36, 8, 48 + 32, 6, 3)
    assert e["total"] == 18 + 36 + 8 + 80 + 6 + 3 == EinsumNetwork(6, 2, 2, 3, 2, 3).exact_ops()["total"]
    # the plain form of the same network: 3·F·L leaves, regions over L, layer 0 with 3 x 3 inputs
    p = exact_ops(6, 2, 2, 3, 2, 3, leaf_mixing=False)
    assert (p["leaf"], p["leaf_mix"], p["regions"]) == (54, 0, 2 * 2 * 3)
    assert p["einsum"] == 2 * 2 * (9 + 2 * 9) + 32


def test_bad_configuration_is_one_error_naming_the_field():
    with pytest.raises(RfedgeError, match=r"field 'D'.*2\^4 = 16"):
        EinsumNetwork(10, 4, 2, 10, 10, 21)
    with pytest.raises(RfedgeError, match="field 'C'"):
        EinsumNetwork(10, 2, 2, 10, 10, 1)
    with pytest.raises(RfedgeError, match="field 'K'"):
        EinsumNetwork(10, 2, 0, 10, 10, 3)


def test_wrong_feature_count_is_one_error_naming_the_field():
    net = EinsumNetwork(29, 4, 2, 3, 2, 3)
    for call in (lambda: net.predict_log_posteriors(np.zeros((4, 30), np.float32)),
                 lambda: net(np.zeros((4, 28), np.float32)),
                 lambda: net.fit_data(np.zeros((4, 38), np.float32), np.zeros(4, np.int64))):
        with pytest.raises(RfedgeError, match="field 'features'.*29"):
            call()
    with pytest.raises(RfedgeError, match="field 'labels'"):
        net.fit_data(np.zeros((4, 29), np.float32), np.array([0, 1, 2, 3]))
    with pytest.raises(RfedgeError, match="field 'features'.*non-finite"):
        net.predict_log_posteriors(np.full((2, 29), np.nan, np.float32))
