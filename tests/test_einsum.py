"""The TensorFlow Einsum network: structure, normalization, agreement with the float64 numpy
reference on its export, learning, operation counts and input errors."""

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from rfedge.errors import RfedgeError  # noqa: E402
from rfedge.models import einsum_format  # noqa: E402
from rfedge.models.einsum import (EinsumNetwork, FitConfig, exact_ops, layer_shapes, paper_macs,  # noqa: E402
                                  parameter_count)

EPS32 = float(np.finfo(np.float32).eps)


def _randomize(net, seed=0, spread=1.5):
    """Non-trivial parameters (what training could produce), without training."""
    rng = np.random.default_rng(seed)
    net.x_mean.assign(rng.normal(0, 1, net.F).astype(np.float32))
    net.x_scale.assign(rng.uniform(0.5, 2.0, net.F).astype(np.float32))
    net.mu.assign(rng.normal(0, 1, (net.F, net.L)).astype(np.float32))
    net.sigma_raw.assign(rng.normal(0, 0.5, (net.F, net.L)).astype(np.float32))
    for v in net.logits:
        v.assign((spread * rng.normal(size=v.shape)).astype(np.float32))
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


def test_layer_shapes_and_export_are_the_exchange_format():
    F, D, K, L, R, C = 38, 5, 2, 10, 10, 21
    net = EinsumNetwork(F, D, K, L, R, C, seed=0)
    assert [tuple(v.shape) for v in net.logits] == layer_shapes(D, K, L, R, C)
    assert layer_shapes(D, K, L, R, C) == [einsum_format.logw_shape(D, K, L, R, C, l) for l in range(D)]
    assert layer_shapes(D, K, L, R, C)[0] == (R, 2 ** (D - 1), K, L, L)
    assert layer_shapes(D, K, L, R, C)[-1] == (R, C, K, K)
    p = net.to_params().validate()                 # every block normalized, shapes right
    assert p.F == F and (p.D, p.K, p.L, p.R, p.C) == (D, K, L, R, C)
    assert np.array_equal(p.bounds, einsum_format.balanced_bounds(F, D))
    n = sum(np.asarray(getattr(p, k)).size for k in ("x_mean", "x_scale", "mu", "sigma", "logw_mix", "log_prior"))
    assert n + sum(w.size for w in p.logw) == parameter_count(F, D, K, L, R, C)


def test_weights_are_normalized_after_training():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    net = EinsumNetwork(8, 2, 2, 3, 2, 3, seed=0)
    net.fit_data(X, y, FitConfig(epochs=3, batch_size=32))
    p = net.to_params()
    for w in p.logw:
        s = np.log(np.exp(w.reshape(*w.shape[:-2], -1)).sum(-1))
        assert np.max(np.abs(s)) < 1e-5
    assert np.max(np.abs(np.log(np.exp(p.logw_mix).sum(1)))) < 1e-5
    assert np.all(p.sigma > 0)


def test_class_densities_integrate_to_one():
    # F = 2 features, one einsum layer (the root): p(z | c) over the plane, by a Riemann sum on a
    # grid fine (0.02) against the narrowest component (sigma >= the 0.25 floor) and wide (±12)
    # against the widest (means within ±3, sigma <= ~2): the error is far below 1e-3.
    net = _randomize(EinsumNetwork(2, 1, 2, 3, 2, 4, seed=1), seed=1)
    net.x_mean.assign(np.zeros(2, np.float32))
    net.x_scale.assign(np.ones(2, np.float32))          # z = x: the density is over x itself
    assert float(tf.reduce_max(net.sigma())) < 2.5
    h = 0.02
    g = np.arange(-12, 12, h) + h / 2
    zz = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    ll = net.predict_log_likelihoods(zz, batch_size=1 << 16).astype(np.float64)
    mass = np.exp(ll).sum(0) * h * h
    np.testing.assert_allclose(mass, 1.0, atol=1e-3)


def test_depth_one_network_is_the_hand_derived_mixture():
    F, L, R, C = 2, 3, 2, 3
    net = _randomize(EinsumNetwork(F, 1, 2, L, R, C, seed=5), seed=5)
    p = net.to_params()
    rng = np.random.default_rng(9)
    X = rng.normal(size=(7, F))
    z = (X - p.x_mean) / p.x_scale

    def normal(v, m, s):
        return np.exp(-0.5 * ((v - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    want = np.zeros((len(X), C))
    for n in range(len(X)):
        for c in range(C):
            for r in range(R):
                a, b = p.perm[r]                      # D = 1: two regions of one feature each
                w = np.exp(p.logw[0][r, c])           # (L, L)
                inner = sum(w[i, j] * normal(z[n, a], p.mu[a, i], p.sigma[a, i]) * normal(z[n, b], p.mu[b, j],
                                                                                         p.sigma[b, j])
                            for i in range(L) for j in range(L))
                want[n, c] += math.exp(p.logw_mix[c, r]) * inner
    got = net.predict_log_likelihoods(X.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(got, np.log(want), rtol=0, atol=1e-5)


@pytest.mark.parametrize("cfg", [(29, 4, 2, 10, 10, 21), (38, 5, 3, 4, 3, 5), (7, 2, 2, 3, 2, 2)])
def test_tf_forward_equals_numpy_reference_on_the_export(cfg):
    F, D, K, L, R, C = cfg
    net = _randomize(EinsumNetwork(F, D, K, L, R, C, seed=2), seed=2)
    p = net.to_params()
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
    z = (X.astype(np.float64) - p.x_mean) / p.x_scale
    t = -0.5 * ((z[:, :, None] - p.mu) / p.sigma) ** 2 - np.log(p.sigma) - 0.5 * math.log(2 * math.pi)
    S = np.abs(t).max(axis=2).sum(axis=1)
    tol = (D + 8) * EPS32 * (S + 1)
    assert np.all(np.abs(got_ll - ref_ll) <= tol[:, None])
    assert np.all(np.abs(got_lp - ref_lp) <= 2 * tol[:, None])
    assert np.array_equal(got_lp.argmax(1), einsum_format.predict(p, X))


def test_export_round_trips_through_the_file(tmp_path):
    net = _randomize(EinsumNetwork(12, 2, 2, 3, 2, 3, seed=0, name="SA"), seed=0)
    p = net.to_params()
    einsum_format.save(p, tmp_path / "SA.npz")
    q = einsum_format.load(tmp_path / "SA.npz")
    X = np.random.default_rng(0).normal(size=(5, 12))
    np.testing.assert_array_equal(einsum_format.log_likelihoods(p, X), einsum_format.log_likelihoods(q, X))
    assert q.name == "SA"


def test_training_beats_chance_on_a_separable_problem():
    # 4 classes, Gaussian blobs 3 sigma apart in 8 features; chance is 25%.
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3.0, size=(4, 8))
    y = rng.integers(0, 4, 400)
    X = (centres[y] + rng.normal(size=(400, 8))).astype(np.float32)
    net = EinsumNetwork(8, 2, 2, 4, 3, 4, seed=0)
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
    p = EinsumNetwork(F, D, K, L, R, C).to_params()
    # Walk the exported tensors: a node with I x I child pairs and O outputs costs I^2 + O I^2.
    einsum = 0
    for w in p.logw:
        o, i = w.shape[-3], w.shape[-1]
        nodes = int(np.prod(w.shape[:-3]))
        einsum += nodes * (i * i + o * i * i)
    leaf = 3 * F * L                                 # per feature and component, standardization folded
    regions = R * (F - 2 ** D) * L                   # multiplying the features of each region
    e = exact_ops(F, D, K, L, R, C)
    assert e["einsum"] == einsum
    assert e["total"] == einsum + leaf + regions + R * C + C
    # The first layer (L x L inputs) dominates; the analytical estimate is far below.
    assert e["einsum"] > 5 * paper_macs(D, K, L, R, C)["einsum"]


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
