"""The Einsum-network exchange format (docs/einsum.md) and its float64 numpy reference.

One network = :class:`EinsumParams`. The TensorFlow model exports to it, the fixed-point path
(``rfedge.einsum_fixed``) and the C generator read it. Everything here is plain numpy, no
TensorFlow, so the aggregator tooling and tests stay light.

Structure (per repetition r, features permuted by ``perm[r]``):

* leaves: region j (0 <= j < 2^D) holds features ``perm[r, bounds[j]:bounds[j+1]]``;
  z = (x - x_mean) / x_scale. Two forms:

  - without ``logw_leaf`` (format version 1): I0 = L leaf densities per region, component k is
    the sum over the region's features of log N(z_f; mu[f, k], sigma[f, k]);
  - with ``logw_leaf`` (F, K, L) (format version 2, "leaf mixing"): I0 = K, feature f's density k
    is the mixture p_fk(z) = sum_l exp(logw_leaf[f, k, l]) N(z; mu[f, l], sigma[f, l]) of its L
    Gaussians, and region density k is the product of its features' p_fk. Every einsum layer
    is then K x K (paper 003 eq. 12's cost model, L = leaf distributions mixed per feature);
* einsum layer l (l = 0 .. D-1, counted from the leaves) combines regions 2j and 2j+1 of the
  layer below: out[k] = logsumexp_{a,b}(logw[l][r, j, k, a, b] + left[a] + right[b]);
  the last layer (the root, one region) has C class-conditional outputs instead of K;
  the inputs per side are I0 at layer 0 and K above;
* log p(x|c) = logsumexp_r(logw_mix[c, r] + root_r[c]);
  log P(c|x) = log p(x|c) + log_prior[c] - logsumexp_c(same).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.fileio import atomic_write_bytes

FORMAT_VERSION = 2  # written for leaf-mixing networks; plain networks are still written as 1
PLAIN_FORMAT_VERSION = 1
# log-sum-exp of a normalized block must be 0 within this (float32 exports land near 1e-6).
NORM_TOL = 1e-4
_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class EinsumParams:
    name: str
    D: int
    K: int
    L: int
    R: int
    C: int
    x_mean: np.ndarray  # (F,)
    x_scale: np.ndarray  # (F,)
    perm: np.ndarray  # (R, F) int32
    bounds: np.ndarray  # (2^D + 1,) int32
    mu: np.ndarray  # (F, L)
    sigma: np.ndarray  # (F, L)
    logw: list = field(default_factory=list)  # D arrays, see logw_shape()
    logw_mix: np.ndarray = None  # (C, R)
    log_prior: np.ndarray = None  # (C,)
    logw_leaf: np.ndarray = None  # optional (F, K, L): leaf mixing (see the module docstring)

    @property
    def leaf_mixing(self) -> bool:
        return self.logw_leaf is not None

    @property
    def I0(self) -> int:
        """Leaf densities per region (inputs per side of layer 0)."""
        return int(self.K) if self.leaf_mixing else int(self.L)

    @property
    def F(self) -> int:
        return int(np.asarray(self.x_mean).shape[0])

    def logw_shape(self, l: int) -> tuple:
        """Expected shape of ``logw[l]``."""
        return logw_shape(self.D, self.K, self.L, self.R, self.C, l, leaf_mixing=self.leaf_mixing)

    def validate(self, tol: float = NORM_TOL) -> "EinsumParams":
        """Raise RfedgeError naming the first bad field; return self when all is well."""
        validate(self, tol)
        return self


def logw_shape(D: int, K: int, L: int, R: int, C: int, l: int, leaf_mixing: bool = False) -> tuple:
    I = L if (l == 0 and not leaf_mixing) else K
    if l == D - 1:
        return (R, C, I, I)
    return (R, 2 ** (D - 1 - l), K, I, I)


def balanced_bounds(F: int, D: int) -> np.ndarray:
    """Region boundaries of balanced recursive halving: a range of n features splits into its
    first n//2 and the remaining n - n//2, D times. Every region is non-empty when F >= 2^D."""
    F, D = int(F), int(D)
    if D < 1:
        raise RfedgeError(f"depth D must be >= 1, got {D}", field="D")
    if F < 2 ** D:
        raise RfedgeError(f"needs F >= 2^D = {2 ** D} features, got F = {F}", field="bounds")
    edges = [0, F]
    for _ in range(D):
        new = [edges[0]]
        for lo, hi in zip(edges[:-1], edges[1:]):
            new += [lo + (hi - lo) // 2, hi]
        edges = new
    return np.asarray(edges, np.int32)


def _lse(a: np.ndarray, axis) -> np.ndarray:
    """logsumexp that returns -inf (not nan) for all -inf input."""
    a = np.asarray(a, np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def _err(msg, fld):
    raise RfedgeError(msg, field=fld)


def validate(p: EinsumParams, tol: float = NORM_TOL) -> None:
    if not isinstance(p.name, str) or not p.name:
        _err(f"expected a non-empty str, got {p.name!r}", "name")
    for k in ("D", "K", "L", "R", "C"):
        v = getattr(p, k)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or int(v) < 1:
            _err(f"expected an int >= 1, got {v!r}", k)
    D, K, L, R, C = (int(getattr(p, k)) for k in ("D", "K", "L", "R", "C"))
    if D > 16:
        _err(f"expected D <= 16, got {D}", "D")
    xm = np.asarray(p.x_mean)
    if xm.ndim != 1 or xm.size < 1:
        _err(f"expected shape (F,), got {xm.shape}", "x_mean")
    F = xm.shape[0]

    def arr(fld, shape, integer=False):
        a = getattr(p, fld)
        if a is None:
            _err(f"missing, expected shape {shape}", fld)
        a = np.asarray(a)
        if a.shape != tuple(shape):
            _err(f"expected shape {tuple(shape)}, got {a.shape}", fld)
        if integer:
            if not np.issubdtype(a.dtype, np.integer):
                _err(f"expected integers, got dtype {a.dtype}", fld)
        else:
            if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
                _err(f"expected real numbers, got dtype {a.dtype}", fld)
            if not np.all(np.isfinite(a)):
                _err("expected finite values (found nan/inf)", fld)
        return a

    arr("x_mean", (F,))
    xs = arr("x_scale", (F,))
    if np.any(xs <= 0):
        _err("expected x_scale > 0 everywhere", "x_scale")
    if F < 2 ** D:
        _err(f"needs F >= 2^D = {2 ** D} features, got F = {F}", "bounds")
    perm = arr("perm", (R, F), integer=True)
    ref = np.arange(F)
    for r in range(R):
        if not np.array_equal(np.sort(perm[r]), ref):
            _err(f"row {r} is not a permutation of 0..{F - 1}", "perm")
    b = arr("bounds", (2 ** D + 1,), integer=True)
    if b[0] != 0 or b[-1] != F or np.any(np.diff(b) < 1):
        _err(f"expected strictly increasing boundaries from 0 to F = {F} (non-empty regions), got {b.tolist()}",
             "bounds")
    arr("mu", (F, L))
    sg = arr("sigma", (F, L))
    if np.any(sg <= 0):
        _err("expected sigma > 0 everywhere", "sigma")
    mixing = p.logw_leaf is not None
    if mixing:
        a = np.asarray(p.logw_leaf)
        if a.shape != (F, K, L):
            _err(f"expected shape {(F, K, L)}, got {a.shape}", "logw_leaf")
        if not np.issubdtype(a.dtype, np.floating) or np.any(np.isnan(a)) or np.any(a == np.inf):
            _err("expected real log-weights (finite or -inf, no nan/+inf)", "logw_leaf")
        s = _lse(a, axis=-1)
        if not np.all(np.abs(s) <= tol):
            _err(f"expected normalization over L (logsumexp = 0 within {tol}), "
                 f"worst {float(np.max(np.abs(s))):.3g}", "logw_leaf")
    if not isinstance(p.logw, (list, tuple)) or len(p.logw) != D:
        n = len(p.logw) if isinstance(p.logw, (list, tuple)) else type(p.logw).__name__
        _err(f"expected a list of D = {D} arrays, got {n}", "logw")
    for l in range(D):
        fld = f"logw[{l}]"
        a = np.asarray(p.logw[l])
        shp = logw_shape(D, K, L, R, C, l, leaf_mixing=mixing)
        if a.shape != shp:
            _err(f"expected shape {shp}, got {a.shape}", fld)
        if not np.issubdtype(a.dtype, np.floating) or np.any(np.isnan(a)) or np.any(a == np.inf):
            _err("expected real log-weights (finite or -inf, no nan/+inf)", fld)
        s = _lse(a.reshape(*a.shape[:-2], -1), axis=-1)
        if not np.all(np.abs(s) <= tol):
            _err(f"expected normalization over the last two axes (logsumexp = 0 within {tol}), "
                 f"worst {float(np.max(np.abs(s))):.3g}", fld)
    m = np.asarray(p.logw_mix) if p.logw_mix is not None else None
    if m is None or m.shape != (C, R):
        _err(f"expected shape {(C, R)}, got {None if m is None else m.shape}", "logw_mix")
    if not np.issubdtype(m.dtype, np.floating) or np.any(np.isnan(m)) or np.any(m == np.inf):
        _err("expected real log-weights (finite or -inf)", "logw_mix")
    if not np.all(np.abs(_lse(m, axis=1)) <= tol):
        _err(f"expected normalization over R (logsumexp = 0 within {tol})", "logw_mix")
    lp = np.asarray(p.log_prior) if p.log_prior is not None else None
    if lp is None or lp.shape != (C,):
        _err(f"expected shape {(C,)}, got {None if lp is None else lp.shape}", "log_prior")
    if not np.issubdtype(lp.dtype, np.floating) or np.any(np.isnan(lp)) or np.any(lp == np.inf):
        _err("expected real log-probabilities (finite or -inf)", "log_prior")
    if abs(float(_lse(lp, axis=0))) > tol:
        _err(f"expected a normalized prior (logsumexp = 0 within {tol})", "log_prior")


# ----------------------------------------------------------------------------- file format

_ARRAYS = ("x_mean", "x_scale", "perm", "bounds", "mu", "sigma", "logw_mix", "log_prior")
_INTS = ("D", "K", "L", "R", "C")


def _to_bytes(p: EinsumParams) -> bytes:
    ver = FORMAT_VERSION if p.leaf_mixing else PLAIN_FORMAT_VERSION
    d = {"format": np.asarray("rfedge-einsum"), "format_version": np.asarray(ver, np.int64),
         "name": np.asarray(p.name)}
    if p.leaf_mixing:
        # version 2 marks the leaf-mixing form: a version-1 reader refuses it instead of
        # silently evaluating layer 0 as L x L
        d["logw_leaf"] = np.asarray(p.logw_leaf, np.float64)
    for k in _INTS:
        d[k] = np.asarray(int(getattr(p, k)), np.int64)
    for k in _ARRAYS:
        a = np.asarray(getattr(p, k))
        d[k] = a.astype(np.int32) if k in ("perm", "bounds") else a.astype(np.float64)
    for l, w in enumerate(p.logw):
        d[f"logw_{l}"] = np.asarray(w, np.float64)
    buf = io.BytesIO()
    np.savez(buf, **d)
    return buf.getvalue()


def save(params: EinsumParams, path) -> None:
    """Validate, then write one .npz atomically (the old file stays if anything fails)."""
    params.validate()
    atomic_write_bytes(path, _to_bytes(params))


def load(path, validate_params: bool = True) -> EinsumParams:
    """Read a file written by :func:`save`; any damage is an RfedgeError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "format" not in files or str(z["format"]) != "rfedge-einsum":
                raise RfedgeError("not an rfedge Einsum-network file (no 'format' marker)", path=path)
            ver = int(z["format_version"]) if "format_version" in files else -1
            if ver not in (PLAIN_FORMAT_VERSION, FORMAT_VERSION):
                raise RfedgeError(f"format_version {ver} is not supported (expected "
                                  f"{PLAIN_FORMAT_VERSION} or {FORMAT_VERSION})", path=path)
            leaf = None
            if ver == FORMAT_VERSION:
                if "logw_leaf" not in files:
                    raise RfedgeError("missing entry logw_leaf (format_version 2)", path=path, field="logw_leaf")
                leaf = np.array(z["logw_leaf"], np.float64)
            elif "logw_leaf" in files:
                raise RfedgeError("entry logw_leaf in a format_version 1 file", path=path, field="logw_leaf")
            need = ("name", *_INTS, *_ARRAYS)
            miss = [k for k in need if k not in files]
            if miss:
                raise RfedgeError(f"missing entries {miss}", path=path)
            ints = {k: int(z[k]) for k in _INTS}
            if not 1 <= ints["D"] <= 16:
                raise RfedgeError(f"D = {ints['D']} out of range", path=path, field="D")
            lw = []
            for l in range(ints["D"]):
                if f"logw_{l}" not in files:
                    raise RfedgeError(f"missing entry logw_{l}", path=path)
                lw.append(np.array(z[f"logw_{l}"], np.float64))
            arrays = {k: np.array(z[k]) for k in _ARRAYS}
            name = str(z["name"])
    except RfedgeError:
        raise
    except FileNotFoundError:
        raise RfedgeError("no such file", path=path) from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, TypeError, zipfile.LargeZipFile) as e:
        raise RfedgeError(f"corrupt or truncated Einsum-network file ({type(e).__name__}: {e})", path=path) from None
    p = EinsumParams(name=name, **ints, logw=lw, **arrays, logw_leaf=leaf)
    if validate_params:
        try:
            p.validate()
        except RfedgeError as e:
            raise RfedgeError(f"invalid contents: {e}", path=path) from None
    return p


# ----------------------------------------------------------------------------- random params

def _rand_logsimplex(rng, shape) -> np.ndarray:
    """Log of Dirichlet(1) samples over the last len(shape)-lead axes, flattened block-wise."""
    g = rng.gamma(1.0, size=shape)
    g = np.maximum(g, 1e-300)
    return np.log(g) - np.log(np.sum(g, axis=tuple(range(g.ndim - 2, g.ndim)), keepdims=True))


def random_params(F: int, D: int, K: int, L: int, R: int, C: int, seed: int = 0, name: str = "RND",
                  leaf_mixing: bool = False) -> EinsumParams:
    """Valid random parameters: Dirichlet(1) weights in every sum block, random permutations,
    leaf means ~ N(0, 1), sigma in [0.3, 1.5] (z units), a random (normalized) class prior;
    with ``leaf_mixing`` also Dirichlet(1) leaf-mixing weights ``logw_leaf`` (F, K, L)."""
    rng = np.random.default_rng(seed)
    logw = []
    for l in range(D):
        logw.append(_rand_logsimplex(rng, logw_shape(D, K, L, R, C, l, leaf_mixing=leaf_mixing)))
    gm = rng.gamma(1.0, size=(C, R))
    pr = rng.uniform(0.5, 1.5, size=C)
    return EinsumParams(
        name=name, D=D, K=K, L=L, R=R, C=C,
        x_mean=rng.normal(0.0, 2.0, F), x_scale=rng.uniform(0.5, 3.0, F),
        perm=np.stack([rng.permutation(F) for _ in range(R)]).astype(np.int32),
        bounds=balanced_bounds(F, D),
        mu=rng.normal(0.0, 1.0, (F, L)), sigma=rng.uniform(0.3, 1.5, (F, L)),
        logw=logw,
        logw_mix=np.log(gm / gm.sum(axis=1, keepdims=True)),
        log_prior=np.log(pr / pr.sum()),
        # (F, K, L, 1): Dirichlet over L for every (f, k)
        logw_leaf=(_rand_logsimplex(rng, (F, K, L, 1))[..., 0] if leaf_mixing else None),
    )


# ----------------------------------------------------------------------------- float reference

def standardize(params: EinsumParams, X) -> np.ndarray:
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != params.F:
        raise RfedgeError(f"expected inputs of shape (N, {params.F}), got {X.shape}", field="X")
    return (X - np.asarray(params.x_mean, np.float64)) / np.asarray(params.x_scale, np.float64)


def feature_log_densities(params: EinsumParams, X) -> np.ndarray:
    """(N, F, I0) log-density of every feature's leaf distributions: the L Gaussians, or with
    leaf mixing the K mixtures of them."""
    z = standardize(params, X)
    mu = np.asarray(params.mu, np.float64)
    sg = np.asarray(params.sigma, np.float64)
    lf = -0.5 * ((z[:, :, None] - mu) / sg) ** 2 - np.log(sg) - 0.5 * _LOG_2PI  # (N, F, L)
    if params.leaf_mixing:
        lw = np.asarray(params.logw_leaf, np.float64)  # (F, K, L)
        lf = _lse(lw[None] + lf[:, :, None, :], axis=-1)  # (N, F, K)
    return lf


def leaf_log_densities(params: EinsumParams, X) -> np.ndarray:
    """(N, R, 2^D, I0) log-density of every leaf region of every repetition."""
    lf = feature_log_densities(params, X)
    starts = np.asarray(params.bounds)[:-1]
    perm = np.asarray(params.perm)
    return np.stack([np.add.reduceat(lf[:, perm[r]], starts, axis=1) for r in range(params.R)], axis=1)


def _chunks(n, size):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def log_likelihoods(params: EinsumParams, X, chunk: int = 64) -> np.ndarray:
    """(N, C) log p(x | c), float64, vectorized over N (in chunks to bound memory)."""
    leaves = leaf_log_densities(params, X)
    N = leaves.shape[0]
    out = np.empty((N, params.C))
    mix = np.asarray(params.logw_mix, np.float64)
    lws = [np.asarray(w, np.float64) for w in params.logw]
    for sl in _chunks(N, chunk):
        x = leaves[sl]  # (n, R, regions, I)
        for l in range(params.D):
            left, right = x[:, :, 0::2], x[:, :, 1::2]  # (n, R, m, I)
            w = lws[l]
            if l == params.D - 1:
                w = w[:, None]  # (R, 1, C, I, I)
            t = w[None] + left[:, :, :, None, :, None] + right[:, :, :, None, None, :]
            x = _lse(t.reshape(*t.shape[:-2], -1), axis=-1)  # (n, R, m, K or C)
        root = x[:, :, 0, :]  # (n, R, C)
        out[sl] = _lse(mix.T[None] + root, axis=1)
    return out


def log_posteriors(params: EinsumParams, X) -> np.ndarray:
    """(N, C) log P(c | x), normalized over c with the log prior."""
    j = log_likelihoods(params, X) + np.asarray(params.log_prior, np.float64)
    return j - _lse(j, axis=1)[:, None]


def predict(params: EinsumParams, X) -> np.ndarray:
    return np.argmax(log_likelihoods(params, X) + np.asarray(params.log_prior, np.float64), axis=1)


def fuse_log_posteriors(logposts) -> np.ndarray:
    """Paper 003 eq. 9 (product of posteriors): labels = argmax_c sum_networks log P(c | x)."""
    s = np.sum([np.asarray(a, np.float64) for a in logposts], axis=0)
    return np.argmax(s, axis=1)
