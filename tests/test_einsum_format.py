"""The Einsum-network exchange format (rfedge.models.einsum_format): file round trip, validation,
damaged files, and the vectorized float reference against an independent per-node computation."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from rfedge.errors import RfedgeError
from rfedge.models import einsum_format as ef


@pytest.fixture
def params():
    return ef.random_params(F=13, D=3, K=2, L=3, R=2, C=4, seed=5, name="SA")


@pytest.fixture
def mixed():
    """The leaf-mixing form: every feature mixes its L = 3 Gaussians into K = 2 densities."""
    return ef.random_params(F=13, D=3, K=2, L=3, R=2, C=4, seed=6, name="SA", leaf_mixing=True)


def _x(p, n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, p.F)) * p.x_scale + p.x_mean


# ---- file round trip ---------------------------------------------------------------------------

def test_round_trip(tmp_path, params):
    ef.save(params, tmp_path / "m.npz")
    q = ef.load(tmp_path / "m.npz")
    for f in dataclasses.fields(ef.EinsumParams):
        a, b = getattr(params, f.name), getattr(q, f.name)
        if f.name == "logw":
            assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
        else:
            assert np.array_equal(np.asarray(a), np.asarray(b)), f.name
    X = _x(params, 20)
    assert np.array_equal(ef.log_posteriors(params, X), ef.log_posteriors(q, X))


def test_round_trip_leaf_mixing(tmp_path, mixed, params):
    assert mixed.leaf_mixing and mixed.I0 == 2 and not params.leaf_mixing and params.I0 == 3
    assert mixed.logw[0].shape == (2, 4, 2, 2, 2), "layer 0 is K x K with leaf mixing"
    ef.save(mixed, tmp_path / "m.npz")
    ef.save(params, tmp_path / "p.npz")
    with np.load(tmp_path / "m.npz") as z:
        assert int(z["format_version"]) == 2 and z["logw_leaf"].shape == (13, 2, 3)
    with np.load(tmp_path / "p.npz") as z:
        assert int(z["format_version"]) == 1 and "logw_leaf" not in z.files
    q = ef.load(tmp_path / "m.npz")
    assert np.array_equal(q.logw_leaf, mixed.logw_leaf)
    X = _x(mixed, 20)
    assert np.array_equal(ef.log_posteriors(q, X), ef.log_posteriors(mixed, X))
    assert ef.load(tmp_path / "p.npz").logw_leaf is None
    # the version marks the form: a version-2 file without the field, or a version-1 file with
    # it, is refused (a version-1 reader must not evaluate a mixing net as L x L)
    _rewrite(tmp_path / "m.npz", tmp_path / "v2bare.npz", drop=("logw_leaf",))
    with pytest.raises(RfedgeError, match="logw_leaf"):
        ef.load(tmp_path / "v2bare.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "v1mix.npz", format_version=np.asarray(1))
    with pytest.raises(RfedgeError, match="logw_leaf"):
        ef.load(tmp_path / "v1mix.npz")


def test_save_refuses_invalid_and_keeps_old_file(tmp_path, params):
    path = tmp_path / "m.npz"
    ef.save(params, path)
    before = path.read_bytes()
    bad = dataclasses.replace(params, sigma=-params.sigma)
    with pytest.raises(RfedgeError, match="sigma"):
        ef.save(bad, path)
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name != "m.npz"], "no temporary file left behind"


def test_damaged_files(tmp_path, params):
    path = tmp_path / "m.npz"
    ef.save(params, path)
    data = path.read_bytes()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "empty.npz": b"",
        "garbage.npz": bytes(range(256)) * 10,
    }
    # one stored array with its bytes flipped: the zip CRC or the npy header must catch it
    flipped = bytearray(data)
    i = len(data) // 3
    flipped[i:i + 64] = bytes(b ^ 0xFF for b in flipped[i:i + 64])
    cases["flipped.npz"] = bytes(flipped)
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(RfedgeError, match=name):
            ef.load(tmp_path / name)
    with pytest.raises(RfedgeError, match="no such file"):
        ef.load(tmp_path / "absent.npz")


def _rewrite(path, out, drop=(), **replace):
    with np.load(path) as z:
        d = {k: z[k] for k in z.files if k not in drop}
    d.update(replace)
    np.savez(out, **d)


def test_wrong_files(tmp_path, params):
    path = tmp_path / "m.npz"
    ef.save(params, path)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(RfedgeError, match="not an rfedge Einsum"):
        ef.load(tmp_path / "other.npz")
    _rewrite(path, tmp_path / "v9.npz", format_version=np.asarray(9))
    with pytest.raises(RfedgeError, match="format_version 9"):
        ef.load(tmp_path / "v9.npz")
    _rewrite(path, tmp_path / "nomu.npz", drop=("mu",))
    with pytest.raises(RfedgeError, match="mu"):
        ef.load(tmp_path / "nomu.npz")
    _rewrite(path, tmp_path / "nolw.npz", drop=("logw_2",))
    with pytest.raises(RfedgeError, match="logw_2"):
        ef.load(tmp_path / "nolw.npz")
    _rewrite(path, tmp_path / "badsig.npz", sigma=np.zeros((params.F, params.L)))
    with pytest.raises(RfedgeError, match="sigma"):
        ef.load(tmp_path / "badsig.npz")
    # an object array would need pickle: refused, not executed
    _rewrite(path, tmp_path / "pickle.npz", name=np.asarray([{"x": 1}], dtype=object))
    with pytest.raises(RfedgeError, match="pickle.npz"):
        ef.load(tmp_path / "pickle.npz")


# ---- validation ----------------------------------------------------------------------------------

def _unnorm(p):
    lw = [w.copy() for w in p.logw]
    lw[1] = lw[1] + 0.01
    return {"logw": lw}


def _perm_dup(p):
    perm = p.perm.copy()
    perm[1, 0] = perm[1, 1]
    return {"perm": perm}


def _nan_mu(p):
    mu = p.mu.copy()
    mu[2, 1] = np.nan
    return {"mu": mu}


BAD = {
    "name": lambda p: {"name": ""},
    "D": lambda p: {"D": 0},
    "K": lambda p: {"K": 2.0},
    "x_scale": lambda p: {"x_scale": np.zeros(p.F)},
    "x_mean": lambda p: {"x_mean": np.zeros((p.F, 1))},
    "perm": _perm_dup,
    "perm ": lambda p: {"perm": p.perm[:, :-1]},
    "bounds": lambda p: {"bounds": p.bounds[::-1].copy()},
    "bounds ": lambda p: {"D": 4, "logw": p.logw + [p.logw[-1]]},  # F = 13 < 2^4
    "mu": _nan_mu,
    "sigma": lambda p: {"sigma": np.abs(p.sigma) * 0.0},
    "sigma ": lambda p: {"sigma": p.sigma[:, :2]},
    "logw": lambda p: {"logw": p.logw[:2]},
    "logw[1]": _unnorm,
    "logw[0]": lambda p: {"logw": [p.logw[0][..., :2]] + p.logw[1:]},
    "logw[2]": lambda p: {"logw": p.logw[:2] + [np.full_like(p.logw[2], np.nan)]},
    "logw_mix": lambda p: {"logw_mix": p.logw_mix + 0.1},
    "logw_mix ": lambda p: {"logw_mix": p.logw_mix.T},
    "log_prior": lambda p: {"log_prior": p.log_prior - 0.5},
}


@pytest.mark.parametrize("field", list(BAD))
def test_validate_names_the_bad_field(params, field):
    bad = dataclasses.replace(params, **BAD[field](params))
    with pytest.raises(RfedgeError, match="field '" + re.escape(field.strip()) + "'"):
        bad.validate()


def _leaf_unnorm(p):
    return {"logw_leaf": p.logw_leaf + 0.01}


def _leaf_nan(p):
    a = p.logw_leaf.copy()
    a[3, 1, 0] = np.nan
    return {"logw_leaf": a}


BAD_MIX = {
    "logw_leaf": _leaf_unnorm,
    "logw_leaf ": _leaf_nan,
    "logw_leaf  ": lambda p: {"logw_leaf": p.logw_leaf[:, :, :2]},
    # the mixing form expects K x K at layer 0; an L x L layer is the plain form's shape
    "logw[0]": lambda p: {"logw_leaf": ef.random_params(13, 3, 2, 3, 2, 4, seed=1, leaf_mixing=True).logw_leaf,
                          "logw": ef.random_params(13, 3, 2, 3, 2, 4, seed=1).logw},
}


@pytest.mark.parametrize("field", list(BAD_MIX))
def test_validate_names_the_bad_field_leaf_mixing(mixed, field):
    bad = dataclasses.replace(mixed, **BAD_MIX[field](mixed))
    with pytest.raises(RfedgeError, match="field '" + re.escape(field.strip()) + "'"):
        bad.validate()


def test_validate_accepts_zero_weights(params):
    # hard zeros (-inf) are legitimate log-weights as long as each block stays normalized
    lw = [w.copy() for w in params.logw]
    lw[0][0, 0, 0] = -np.inf
    lw[0][0, 0, 0, 0, 0] = 0.0
    dataclasses.replace(params, logw=lw).validate()


def test_balanced_bounds():
    for F in range(1, 140):
        for D in range(1, 8):
            if F < 2 ** D:
                with pytest.raises(RfedgeError):
                    ef.balanced_bounds(F, D)
                continue
            b = ef.balanced_bounds(F, D)
            sizes = np.diff(b)
            assert b[0] == 0 and b[-1] == F and len(b) == 2 ** D + 1
            assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1, (F, D, sizes)


# ---- the float reference ------------------------------------------------------------------------

def slow_log_likelihoods(p, X):
    """Node by node, sample by sample, with scipy: shares nothing with the vectorized code."""
    out = np.zeros((len(X), p.C))
    for n, x in enumerate(X):
        z = (x - p.x_mean) / p.x_scale
        roots = np.zeros((p.R, p.C))
        for r in range(p.R):
            regs = []
            for j in range(2 ** p.D):
                feats = p.perm[r, p.bounds[j]:p.bounds[j + 1]]
                if p.logw_leaf is None:
                    regs.append([sum(norm.logpdf(z[f], p.mu[f, k], p.sigma[f, k]) for f in feats)
                                 for k in range(p.L)])
                else:  # density k of feature f: sum_l w[f,k,l] N(z_f; mu[f,l], sigma[f,l])
                    regs.append([sum(np.log(sum(np.exp(p.logw_leaf[f, k, l]) * norm.pdf(z[f], p.mu[f, l], p.sigma[f, l])
                                                for l in range(p.L))) for f in feats)
                                 for k in range(p.K)])
            for l in range(p.D):
                W = p.logw[l][r]
                new = []
                for j in range(len(regs) // 2):
                    Wj = W if l == p.D - 1 else W[j]
                    left, right = regs[2 * j], regs[2 * j + 1]
                    new.append([logsumexp([Wj[k, a, b] + left[a] + right[b]
                                           for a in range(len(left)) for b in range(len(right))])
                                for k in range(Wj.shape[0])])
                regs = new
            roots[r] = regs[0]
        for c in range(p.C):
            out[n, c] = logsumexp([p.logw_mix[c, r] + roots[r, c] for r in range(p.R)])
    return out


@pytest.mark.parametrize("leaf_mixing", [False, True], ids=["plain", "mix"])
@pytest.mark.parametrize("dims", [(13, 3, 2, 3, 2, 4), (9, 1, 3, 4, 3, 2), (20, 2, 3, 2, 1, 5)])
def test_reference_matches_slow_per_node(dims, leaf_mixing):
    F, D, K, L, R, C = dims
    p = ef.random_params(F, D, K, L, R, C, seed=F + D, leaf_mixing=leaf_mixing)
    X = _x(p, 7, seed=1)
    X[0] = p.x_mean + 6.0 * p.x_scale  # an outlier whose densities the slow scipy path still resolves
    if not leaf_mixing:
        X[1] *= 30.0  # far outlier: the max-shift of the log-sum-exp must hold (logpdf resolves it)
    else:  # the slow path's pdf underflows there; the vectorized code must stay finite
        far = X[:1] * 30.0
        assert np.all(np.isfinite(ef.log_likelihoods(p, far))) and np.all(ef.log_likelihoods(p, far) < -100)
    fast = ef.log_likelihoods(p, X, chunk=3)
    np.testing.assert_allclose(fast, slow_log_likelihoods(p, X), rtol=1e-10, atol=1e-9)
    lp = ef.log_posteriors(p, X)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(lp, fast + p.log_prior - logsumexp(fast + p.log_prior, axis=1, keepdims=True))
    assert np.array_equal(ef.predict(p, X), np.argmax(lp, axis=1))


@pytest.mark.parametrize("leaf_mixing", [False, True], ids=["plain", "mix"])
def test_density_integrates_to_one(leaf_mixing):
    """F = 2, D = 1: p(x|c) over the plane (x in raw units, so the standardization's Jacobian
    1/prod(x_scale) is part of it) must integrate to 1 for every class."""
    p = ef.random_params(F=2, D=1, K=2, L=3, R=2, C=3, seed=7, leaf_mixing=leaf_mixing)
    p.x_scale = np.array([0.5, 2.0])
    p.x_mean = np.array([1.0, -3.0])
    g0 = np.linspace(-12, 12, 801) * p.x_scale[0] + p.x_mean[0]
    g1 = np.linspace(-12, 12, 801) * p.x_scale[1] + p.x_mean[1]
    xx, yy = np.meshgrid(g0, g1, indexing="ij")
    X = np.stack([xx.ravel(), yy.ravel()], axis=1)
    dens = np.exp(ef.log_likelihoods(p, X, chunk=4096)) / np.prod(p.x_scale)
    for c in range(p.C):
        mass = np.trapezoid(np.trapezoid(dens[:, c].reshape(xx.shape), g1, axis=1), g0)
        assert mass == pytest.approx(1.0, abs=1e-6), c


def test_input_shape_error(params):
    with pytest.raises(RfedgeError, match="shape"):
        ef.log_likelihoods(params, np.zeros((3, params.F + 1)))


def test_fuse_is_sum_of_log_posteriors(params):
    X = _x(params, 30)
    q = ef.random_params(F=13, D=2, K=3, L=2, R=3, C=4, seed=9)
    a, b = ef.log_posteriors(params, X), ef.log_posteriors(q, X)
    assert np.array_equal(ef.fuse_log_posteriors([a, b]), np.argmax(np.exp(a) * np.exp(b), axis=1))
