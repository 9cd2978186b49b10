"""Einsum networks (paper 003 §V-A, §VI-B2) in TensorFlow: a class-conditional probabilistic
circuit per device, exported to ``rfedge.models.einsum_format.EinsumParams`` (docs/einsum.md).

Structure (RAT-SPN style, fixed at construction from ``seed``):

* standardization z = (x - x_mean) / x_scale, fitted on the training data;
* Gaussian leaves per feature, L components, shared by all repetitions (mu, sigma > 0 through a
  softplus plus a floor, so a constant feature cannot collapse a component to a Dirac spike);
* leaf mixing (``leaf_mixing=True``, the default; exchange format version 2): every feature has K
  leaf densities, each a mixture of its L Gaussians, p_fk(z) = sum_l w_fkl N(z; mu_fl, sigma_fl)
  with w normalized over l (``logw_leaf``, (F, K, L)); a leaf region's density k is the product
  of its features' p_fk, so every einsum layer has K inputs per side, as paper 003 eq. 12 counts.
  The plain form (``leaf_mixing=False``, format version 1) skips the mixing: region density k is
  the product of its features' Gaussian component k, and the first layer combines L x L inputs;
* R repetitions, each a random permutation of the features cut into 2^D leaf regions by balanced
  recursive halving (the same cut points for every repetition);
* D einsum layers: layer l merges regions 2j and 2j+1 of the layer below,
  out[k] = logsumexp_{i,j}(logw[k,i,j] + left[i] + right[j]); the top layer (one region per
  repetition) has C outputs, one class-conditional density per class;
* a mixture over repetitions per class and a log prior; P(c | x) by Bayes.

Every layer is evaluated for all regions and repetitions at once, in the log domain (float32
underflows after a few dozen multiplied densities): the leaf mixing as a full broadcast plus
``reduce_logsumexp`` (small, and exact however small a weight), the einsum layers as batched
matmuls between max-shifted exponentials (``_einsum_layer`` says why and when that clamps).

Densities are over the standardized z (as the exchange format defines them); the Jacobian of the
standardization is the same for every class, so posteriors are unaffected.

Training (``EinsumNetwork.fit``): Adam on the discriminative cross-entropy of the log posteriors
plus ``gen_weight`` times the class-conditional negative log-likelihood per feature (a hybrid
objective: the generative term keeps the leaves and weights meaningful densities and regularizes,
the discriminative term sets the decision boundaries). See ``FitConfig`` for the defaults and why.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

import rfedge.models  # noqa: F401  (quiet TensorFlow logging before TF is imported)
import tensorflow as tf
import keras

from rfedge.errors import RfedgeError

# Standardized units. Besides keeping a constant feature from collapsing a component into a spike,
# the floor regularizes: on the validation part of the simulated set 0.25 beat 0.05 by ~2 points
# merged (less overfitting of the single networks), see FitConfig.
SIGMA_FLOOR = 0.25
LOG_2PI = math.log(2.0 * math.pi)
# Standard deviation of the initial leaf-mixing logits (see EinsumNetwork.__init__).
LEAF_LOGIT_SCALE = 0.5


# ---- structure -------------------------------------------------------------------------------------

def check_config(F: int, D: int, K: int, L: int, R: int, C: int) -> None:
    """One RfedgeError naming the offending field for a configuration that cannot be built."""
    for name, v, lo in (("D", D, 1), ("K", K, 1), ("L", L, 1), ("R", R, 1), ("C", C, 2), ("F", F, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise RfedgeError(f"must be an integer >= {lo}, got {v!r}", field=name)
    if F < 2 ** D:
        raise RfedgeError(f"depth {D} needs at least 2^{D} = {2 ** D} features (one per leaf region), "
                          f"the input has F = {F}", field="D")


def region_bounds(F: int, D: int) -> np.ndarray:
    """(2^D + 1,) cut points of balanced recursive halving (the exchange format's own rule: a range
    of n positions splits into its first n//2 and the remaining n - n//2)."""
    from rfedge.models.einsum_format import balanced_bounds

    return balanced_bounds(F, D)


def permutations(F: int, R: int, seed: int) -> np.ndarray:
    """(R, F) feature order of each repetition, fixed by ``seed``."""
    rng = np.random.default_rng([int(seed), 0xE1])
    return np.stack([rng.permutation(F) for _ in range(R)]).astype(np.int32)


def layer_shapes(D: int, K: int, L: int, R: int, C: int, leaf_mixing: bool = True) -> list[tuple]:
    """Shapes of logw[l], l = 0..D-1 (docs/einsum.md): inputs per side I0 = K at layer 0 with leaf
    mixing, L without; K above."""
    out = []
    for l in range(D):
        i = L if (l == 0 and not leaf_mixing) else K
        out.append((R, C, i, i) if l == D - 1 else (R, 2 ** (D - 1 - l), K, i, i))
    return out


# ---- operation counts --------------------------------------------------------------------------------

def paper_macs(D: int, K: int, L: int, R: int, C: int) -> dict:
    """Paper 003 eqs. 12-14 (Table IV). The leaf term follows the text and Table IV: one subtraction
    and one multiplication per leaf input, 2·2^D (eq. 13 as printed reads 2^D, which would not give
    Table IV's 128 / 32 / 64). L does not enter the analytical estimate."""
    einsum = (2 ** (D + 1) - 2) * R * (K ** 3 + K)
    leaf = 2 * 2 ** D
    mix = R * C
    return {"einsum": einsum, "leaf": leaf, "mix": mix, "total": einsum + leaf + mix}


def exact_ops(F: int, D: int, K: int, L: int, R: int, C: int, leaf_mixing: bool = True) -> dict:
    """Arithmetic operations (MAC-equivalents: a multiply-add, a multiply or an add counts 1) of one
    inference of this model, evaluated in the linear domain as the paper's hardware would.

    Leaf mixing (the default):

    * leaf: per feature and Gaussian t = x·a + b (standardization and (x - mu)/sigma folded into
      one MAC) and exp(-t²/2) by table look-up (no arithmetic; 1/sigma and the normalizer are
      folded into the mixing weights): F·L;
    * leaf_mix: each of a feature's K densities is a weighted sum of its L Gaussians: F·K·L MACs;
    * regions: multiplying a region's feature densities (a region of n features takes n - 1
      products per density), per repetition: R·(F - 2^D)·K;

    plain form: leaf 3·F·L (t as above, then t·t·(-1/2) + log-normalizer: a multiply and a MAC),
    no leaf_mix, regions R·(F - 2^D)·L. Both forms:

    * einsum: a node with I inputs per child and O outputs forms the I·I outer product (I² mults)
      and O·I² MACs; I = K everywhere with leaf mixing (K² + K³ per node), the plain form's first
      layer has I = L; the root has O = C;
    * mix: R·C MACs per class sum over repetitions, prior: C multiplies (argmax not counted).
    """
    if leaf_mixing:
        leaf, leaf_mix, regions = F * L, F * K * L, R * (F - 2 ** D) * K
    else:
        leaf, leaf_mix, regions = 3 * F * L, 0, R * (F - 2 ** D) * L
    einsum = 0
    for l, shp in enumerate(layer_shapes(D, K, L, R, C, leaf_mixing)):
        i = shp[-1]
        nodes, outs = (R, C) if l == D - 1 else (R * shp[1], K)
        einsum += nodes * (i * i + outs * i * i)
    mix, prior = R * C, C
    return {"leaf": leaf, "leaf_mix": leaf_mix, "regions": regions, "einsum": einsum, "mix": mix, "prior": prior,
            "total": leaf + leaf_mix + regions + einsum + mix + prior}


def parameter_count(F: int, D: int, K: int, L: int, R: int, C: int, leaf_mixing: bool = True) -> int:
    n = 2 * F + 2 * F * L + R * C + C + (F * K * L if leaf_mixing else 0)
    return n + sum(int(np.prod(s)) for s in layer_shapes(D, K, L, R, C, leaf_mixing))


# ---- the forward pass ------------------------------------------------------------------------------

def _einsum_layer(h, logw):
    """h (R, 2P, I, N) region log-densities (batch last), logw (R, P, O, I, I) normalized -> (R, P, O, N).

    logsumexp_{i,j}(w_oij + a_i + b_j) = log(sum_i e^(a_i - max a) sum_j e^w_oij e^(b_j - max b))
    + max a + max b: a batched matmul over all regions and repetitions, then a product-sum over i.
    Exponentiating the full (R, P, O, I, I, N) broadcast instead costs ~10x the time for the L x L
    first layer; batch-last makes the matmul's free dimension the batch (another 3x over einsum
    with the batch first). The sum is at least the weight of the pair of largest children, so it
    only underflows when that weight is below ~e^-87; it is then clamped to the smallest normal
    float (a lower bound, never NaN or -inf)."""
    r, p, o, i, _ = logw.shape
    # Pairs (2j, 2j+1) by a reshape: TF's strided slice h[:, 0::2] is ~10x slower than the layer.
    pairs = tf.reshape(h, (r, p, 2, i, -1))
    left, right = tf.unstack(pairs, axis=2)
    lm = tf.stop_gradient(tf.reduce_max(left, axis=2, keepdims=True))              # (R, P, 1, N)
    rm = tf.stop_gradient(tf.reduce_max(right, axis=2, keepdims=True))
    t = tf.matmul(tf.reshape(tf.exp(logw), (r, p, o * i, i)), tf.exp(right - rm))  # (R, P, O*I, N)
    t = tf.reshape(t, (r, p, o, i, -1)) * tf.exp(left - lm)[:, :, None]
    s = tf.reduce_sum(t, axis=3)                                                    # (R, P, O, N)
    return tf.math.log(tf.maximum(s, np.finfo(h.dtype.as_numpy_dtype).tiny)) + lm + rm


def forward(x, *, x_mean, x_scale, mu, sigma, logw, logw_mix, perm_t, segment_ids, logw_leaf=None):
    """log p(z | c), (N, C), from normalized parameters (any float dtype, all tensors alike);
    ``logw_leaf`` (F, K, L) selects the leaf-mixing form."""
    z = tf.transpose((x - x_mean) / x_scale)                                  # (F, N)
    d = (z[:, None, :] - mu[:, :, None]) / sigma[:, :, None]
    leaf = -0.5 * d * d - tf.math.log(sigma)[:, :, None] - 0.5 * LOG_2PI     # (F, L, N)
    if logw_leaf is not None:
        # Mixture of the L Gaussians per feature and density k. The full (F, K, L, N) broadcast
        # is small (K and L are ~10) and reduce_logsumexp stays exact for a feature far from
        # every Gaussian, where a max-shifted exp/matmul would underflow for small weights.
        leaf = tf.reduce_logsumexp(logw_leaf[:, :, :, None] + leaf[:, None], axis=2)  # (F, K, N)
    # Regroup per repetition and sum each leaf region's features (product of densities).
    reg = tf.math.segment_sum(tf.gather(leaf, perm_t), segment_ids)          # (2^D, R, I0, N)
    h = tf.transpose(reg, (1, 0, 2, 3))                                       # (R, 2^D, I0, N)
    for w in logw[:-1]:
        h = _einsum_layer(h, w)                                               # (R, P, K, N)
    root = _einsum_layer(h, logw[-1][:, None])[:, 0]                          # (R, C, N)
    ll = tf.reduce_logsumexp(tf.transpose(logw_mix)[:, :, None] + root, axis=0)
    return tf.transpose(ll)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Training defaults, chosen on a validation part carved from the training side only: the
    simulated 21-gesture set (rfedge synth rfid, preset arm21), repetitions 0-11 fit and 12-15
    validate (the test repetitions 16-19 untouched), paper Table IV structures.

    * Adam, learning rate 0.02 with a cosine decay to 5%: the parameters are few and the
      log-domain circuit tolerates large steps.
    * 60 epochs: validation accuracy is flat (or slowly falls: overfitting) after ~30-45; 100-150
      epochs gave the same or worse merged accuracy at twice the time.
    * ``gen_weight`` 0.3 (per feature, per sample) on the class-conditional NLL. Merged validation
      accuracy was ~80-83% for weights 0-1 (differences of 1-2 points, near the noise of 420
      validation trials) and fell to 76% when the generative term dominated (30): the objective
      stays mostly discriminative, the generative term keeps the leaves densities of the data.
        ``fit_data`` also reports, but never selects on, the accuracy of an optional validation set.

    The figures above were taken with the plain form. Rechecked for leaf mixing (the default) on
    the same validation split, same seed: merged 86.2% with these defaults against 82.6% for the
    plain form (SPR / SA / WA 70.7 / 35.2 / 39.3 against 66.7 / 37.6 / 45.7); the neighbours were
    within noise (about ±1.7 points on 420 trials) or below: gen_weight 0.1 86.7, 1.0 83.6;
    epochs 40 84.3, 100 87.1; learning rate 0.01 83.8. So the defaults stay.
    """

    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 0.02
    final_lr_fraction: float = 0.05
    gen_weight: float = 0.3


class EinsumNetwork(keras.Model):
    """``EinsumNetwork(F, D, K, L, R, C, seed, leaf_mixing=True)``; ``call(x)`` returns log P(c | x),
    (N, C). ``leaf_mixing=False`` builds the plain form (the first layer combines L x L Gaussians)."""

    def __init__(self, F: int, D: int, K: int, L: int, R: int, C: int, seed: int = 0, name: str = "einsum",
                 leaf_mixing: bool = True, **kwargs):
        check_config(F, D, K, L, R, C)
        if not isinstance(leaf_mixing, (bool, np.bool_)):
            raise RfedgeError(f"expected True or False, got {leaf_mixing!r}", field="leaf_mixing")
        super().__init__(name=name, **kwargs)
        self.F, self.D, self.K, self.L, self.R, self.C = (int(v) for v in (F, D, K, L, R, C))
        self.leaf_mixing = bool(leaf_mixing)
        self.seed = int(seed)
        self.net_name = name
        self.perm = permutations(F, R, seed)
        self.bounds = region_bounds(F, D)
        self._set_structure(self.perm, self.bounds)
        rng = np.random.default_rng([self.seed, 0xE2])
        init = keras.initializers.Constant

        def weight(shape, value, trainable=True, wname=None):
            return self.add_weight(shape=shape, initializer=init(np.asarray(value, np.float32)),
                                   trainable=trainable, name=wname)

        self.x_mean = weight((F,), np.zeros(F), False, "x_mean")
        self.x_scale = weight((F,), np.ones(F), False, "x_scale")
        self.log_prior = weight((C,), np.full(C, -math.log(C)), False, "log_prior")
        self.mu = weight((F, L), rng.normal(size=(F, L)), wname="mu")
        self.sigma_raw = weight((F, L), np.full((F, L), _softplus_inv(1.0)), wname="sigma_raw")
        # Small random logits: symmetric weights would give identical gradients to all K sums.
        self.logits = [weight(s, 0.5 * rng.normal(size=s), wname=f"logw{l}")
                       for l, s in enumerate(layer_shapes(D, K, L, R, C, self.leaf_mixing))]
        self.mix_logits = weight((C, R), 0.1 * rng.normal(size=(C, R)), wname="logw_mix")
        # Drawn after the plain form's weights, so the two forms share their other initial values.
        # Random too: equal logits would make the K densities of a feature identical (and their
        # gradients the same).
        self.leaf_logits = (weight((F, K, L), LEAF_LOGIT_SCALE * rng.normal(size=(F, K, L)), wname="logw_leaf")
                            if self.leaf_mixing else None)

    def _set_structure(self, perm, bounds) -> None:
        self.perm = np.asarray(perm, np.int32)
        self.bounds = np.asarray(bounds, np.int32)
        self._perm_t = tf.constant(self.perm.T)                 # position-major: gathers rows of (F, ...)
        self._segment_ids = tf.constant(np.repeat(np.arange(2 ** self.D, dtype=np.int32), np.diff(self.bounds)))

    # -- normalized parameters
    def sigma(self):
        return tf.nn.softplus(self.sigma_raw) + SIGMA_FLOOR

    def log_weights(self):
        out = []
        for w in self.logits:
            s = tf.shape(w)
            flat = tf.reshape(w, tf.concat([s[:-2], [-1]], 0))
            out.append(tf.reshape(tf.nn.log_softmax(flat, axis=-1), s))
        return out

    def log_mix(self):
        return tf.nn.log_softmax(self.mix_logits, axis=-1)

    def log_leaf_weights(self):
        """(F, K, L) leaf-mixing log-weights, normalized over L; None for the plain form."""
        return None if self.leaf_logits is None else tf.nn.log_softmax(self.leaf_logits, axis=-1)

    def _check_x(self, x):
        shape = getattr(x, "shape", None)
        if shape is not None and len(shape) == 2 and shape[-1] is not None and int(shape[-1]) != self.F:
            raise RfedgeError(f"network {self.net_name} expects {self.F} features per sample, got {int(shape[-1])}",
                              field="features")

    def log_likelihoods(self, x):
        """log p(z | c), (N, C)."""
        self._check_x(x)
        x = tf.convert_to_tensor(x, tf.float32)
        return forward(x, x_mean=self.x_mean, x_scale=self.x_scale, mu=self.mu, sigma=self.sigma(),
                       logw=self.log_weights(), logw_mix=self.log_mix(), perm_t=self._perm_t,
                       segment_ids=self._segment_ids, logw_leaf=self.log_leaf_weights())

    def call(self, x):
        ll = self.log_likelihoods(x)
        return tf.nn.log_softmax(ll + self.log_prior[None], axis=-1)

    # -- batched numpy inference
    def predict_log_posteriors(self, X, batch_size: int = 512) -> np.ndarray:
        X = _as_2d(X, self.F, self.net_name)
        return np.concatenate([self(X[i:i + batch_size]).numpy() for i in range(0, len(X), batch_size)]
                              or [np.zeros((0, self.C), np.float32)])

    def predict_log_likelihoods(self, X, batch_size: int = 512) -> np.ndarray:
        X = _as_2d(X, self.F, self.net_name)
        return np.concatenate([self.log_likelihoods(X[i:i + batch_size]).numpy()
                               for i in range(0, len(X), batch_size)] or [np.zeros((0, self.C), np.float32)])

    # -- data-dependent initialization and training
    def init_from_data(self, X, y) -> None:
        """Standardization, class prior (add-one smoothed: an absent class keeps a finite prior)
        and leaf means at each feature's quantiles, so the L components start spread over the data."""
        X = _as_2d(X, self.F, self.net_name).astype(np.float64)
        y = _labels(y, self.C, len(X))
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)
        self.x_mean.assign(mean.astype(np.float32))
        self.x_scale.assign(scale.astype(np.float32))
        counts = np.bincount(y, minlength=self.C) + 1.0
        self.log_prior.assign(np.log(counts / counts.sum()).astype(np.float32))
        z = (X - mean) / scale
        q = np.quantile(z, (np.arange(self.L) + 0.5) / self.L, axis=0).T           # (F, L)
        rng = np.random.default_rng([self.seed, 0xE3])
        self.mu.assign((q + 0.05 * rng.normal(size=q.shape)).astype(np.float32))
        # Neighbouring quantiles of a standardized feature lie ~0.25 apart for L = 10: a width of
        # 0.5 (above the floor) lets each component overlap its neighbours.
        sig = np.full(q.shape, max(0.5 if self.L > 1 else 1.0, 2 * SIGMA_FLOOR))
        self.sigma_raw.assign(_softplus_inv(sig - SIGMA_FLOOR).astype(np.float32))

    def fit_data(self, X, y, config: FitConfig = FitConfig(), *, X_val=None, y_val=None, stream=None,
                 every: int = 25, init: bool = True) -> dict:
        """Train on (X, y); returns the history (loss, train and validation accuracy per reported
        epoch, and the seconds taken). Deterministic for a given seed and thread count."""
        X = _as_2d(X, self.F, self.net_name).astype(np.float32)
        y = _labels(y, self.C, len(X))
        if config.epochs < 1 or config.batch_size < 1:
            raise RfedgeError(f"expected epochs and batch_size >= 1, got {config.epochs}, {config.batch_size}",
                              field="epochs")
        if init:
            self.init_from_data(X, y)
        n = len(X)
        steps_per_epoch = max(1, math.ceil(n / config.batch_size))
        total = steps_per_epoch * config.epochs
        sched = keras.optimizers.schedules.CosineDecay(config.learning_rate, total, alpha=config.final_lr_fraction)
        opt = keras.optimizers.Adam(sched)
        variables = self.trainable_variables
        gen = tf.constant(config.gen_weight / self.F, tf.float32)

        @tf.function(reduce_retracing=True)
        def step(xb, yb):
            with tf.GradientTape() as tape:
                ll = self.log_likelihoods(xb)
                lp = tf.nn.log_softmax(ll + self.log_prior[None], axis=-1)
                ce = -tf.reduce_mean(tf.gather(lp, yb, batch_dims=1))
                nll = -tf.reduce_mean(tf.gather(ll, yb, batch_dims=1))
                loss = ce + gen * nll
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss, ce

        rng = np.random.default_rng([self.seed, 0xE4])
        hist = {"epoch": [], "loss": [], "cross_entropy": [], "train_accuracy": [], "val_accuracy": []}
        t0 = time.monotonic()
        for ep in range(1, config.epochs + 1):
            order = rng.permutation(n)
            tot = ce_tot = 0.0
            for s in range(steps_per_epoch):
                idx = order[s * config.batch_size:(s + 1) * config.batch_size]
                loss, ce = step(tf.constant(X[idx]), tf.constant(y[idx]))
                tot += float(loss) * len(idx)
                ce_tot += float(ce) * len(idx)
            if ep % every == 0 or ep == config.epochs:
                acc = float((self.predict_log_posteriors(X).argmax(1) == y).mean())
                vacc = (float((self.predict_log_posteriors(X_val).argmax(1) == np.asarray(y_val)).mean())
                        if X_val is not None else None)
                for k, v in (("epoch", ep), ("loss", tot / n), ("cross_entropy", ce_tot / n),
                             ("train_accuracy", acc), ("val_accuracy", vacc)):
                    hist[k].append(v)
                if stream is not None:
                    stream.write(f"  {self.net_name} epoch {ep}/{config.epochs}: loss {tot / n:.4f} "
                                 f"(cross-entropy {ce_tot / n:.4f}), train acc {acc:.4f}"
                                 + (f", val acc {vacc:.4f}" if vacc is not None else "")
                                 + f", {time.monotonic() - t0:.1f} s\n")
                    stream.flush()
        hist["seconds"] = time.monotonic() - t0
        return hist

    # -- export
    def to_params(self):
        """The network as an ``EinsumParams`` (float64, normalized weights)."""
        from rfedge.models.einsum_format import EinsumParams

        def f64(t):
            return np.asarray(tf.convert_to_tensor(t).numpy(), dtype=np.float64)

        leaf = self.log_leaf_weights()
        return EinsumParams(
            name=self.net_name, D=self.D, K=self.K, L=self.L, R=self.R, C=self.C,
            x_mean=f64(self.x_mean), x_scale=f64(self.x_scale), perm=self.perm.copy(), bounds=self.bounds.copy(),
            mu=f64(self.mu), sigma=f64(self.sigma()), logw=[f64(w) for w in self.log_weights()],
            logw_mix=f64(self.log_mix()), log_prior=f64(self.log_prior),
            logw_leaf=None if leaf is None else f64(leaf))

    def paper_macs(self) -> dict:
        return paper_macs(self.D, self.K, self.L, self.R, self.C)

    def exact_ops(self) -> dict:
        return exact_ops(self.F, self.D, self.K, self.L, self.R, self.C, self.leaf_mixing)


def _softplus_inv(y):
    y = np.asarray(y, dtype=np.float64)
    if np.any(y <= 0):
        raise ValueError("softplus is positive")
    return y + np.log(-np.expm1(-y))


def _as_2d(X, F: int, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != F:
        raise RfedgeError(f"network {name} expects an (N, {F}) feature matrix, got shape {X.shape}", field="features")
    if not np.all(np.isfinite(X)):
        raise RfedgeError(f"network {name}: {int((~np.isfinite(X)).sum())} non-finite feature value(s)",
                          field="features")
    return X


def _labels(y, C: int, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and (y.min() < 0 or y.max() >= C)):
        raise RfedgeError(f"expected {n} integer labels in [0, {C}), got shape {y.shape} dtype {y.dtype}",
                          field="labels")
    return y.astype(np.int32)
