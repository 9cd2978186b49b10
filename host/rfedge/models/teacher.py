"""The semantic teacher of paper 000: a dual-path multiscale Transformer that attends to class semantics.

Inputs (rfedge.teacher_inputs): the student's Doppler spectrogram in the student's layout
[batch, T, F, C] and the CSI-ratio phase sequences [batch, T, G], frame t of both covering the
same instants.

Architecture (the paper's blocks, sized for a 13-class simulated set on a CPU):

1. Dual-path tokens. A 3x3 convolution over (time, Doppler bin) with ``doppler_conv`` filters
   (0: none) first sees local time-frequency patterns; then each Doppler frame and each phase
   frame (a 3-frame Conv1D, so the token sees the phase's local slope, i.e. the path-length rate,
   not only its value) is projected to ``d_model``; the two are concatenated and fused by a
   Dense + LayerNorm into one token per frame.
2. Multiscale temporal encoder. The token sequence is average-pooled at strides ``scales``
   (1, 2, 4: 25, 13, 7 tokens for T = 25), each scale gets its own learned position table (which
   also tells the scales apart), and the scales are concatenated into one sequence, so that
   ``blocks`` pre-LN Transformer blocks attend within and across time scales.
3. Cross-modal attention to class semantics. The frozen text embeddings of the class descriptions
   (rfedge.semantics, all-MiniLM-L6-v2, [K, 384]) are held as a constant, projected to
   ``d_model`` by a learned Dense, and used as keys and values; the encoder tokens are the
   queries. The attended semantic context is added to each token (residual + LayerNorm).
4. Classifier. The tokens are averaged into the teacher's feature vector (``feature``, the
   target of feature distillation) and a Dense gives the class logits (``logits``).

The model's outputs are a dict {"logits", "feature"} (rfedge.distill trains it with its own loop).

Loss (semantic-aware soft supervision). With unit-norm class embeddings e_k, the inter-class
cosine similarity is S = E Eᵀ (S_kk = 1). The soft label of class y is

    q_y = (1 - λ) · onehot(y) + λ · softmax_j(S_yj / τ)

and the teacher minimizes the cross-entropy CE(q_y, softmax(z)) = (1 - λ) CE(onehot, p) +
λ CE(softmax(S_y/τ), p): the usual cross-entropy plus a term that spends part of the target on
the classes the text model finds similar. Each row sums to 1; the true class always holds the
most mass (S_yy = 1 is a row's maximum and it also gets the 1 - λ), the next-most on its most
similar class. Mirrored classes (left/right hand) have S ≈ 0.99 here, so the (1 - λ) share is
what keeps them apart: with the defaults λ = 0.3, τ = 0.1, on the 13 widar-lr classes a row gives
0.83-0.84 to the true class and ~0.12 to its mirror partner (computed from the committed
embeddings, not asserted anywhere), the rest spread thinly.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

# doppler_conv = 32: measured on the full esp32-mirror set (in-session, one seed, 120 epochs):
# without the conv front-end 0.814, with 32 filters 0.843, 64 filters 0.830, 32 filters and
# d_model 96 0.792 (the student alone: 0.824)
DEFAULTS = dict(d_model=64, heads=4, ff=128, blocks=2, scales=(1, 2, 4), dropout=0.1, phase_kernel=3, doppler_conv=32)
SOFT_TAU = 0.1
SOFT_LAMBDA = 0.3


@keras.saving.register_keras_serializable(package="rfedge")
class PositionTable(layers.Layer):
    """Adds a learned [L, D] table to a [batch, L, D] sequence."""

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(int(input_shape[1]), int(input_shape[2])),
                                     initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x):
        return x + self.table[None]


@keras.saving.register_keras_serializable(package="rfedge")
class ClassSemantics(layers.Layer):
    """The frozen class-description embeddings [K, D_text] as a constant, repeated over the batch of
    its input: [batch, K, D_text]. Not trainable: the semantics come from the text model."""

    def __init__(self, embeddings, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = np.asarray(embeddings, np.float32)

    def build(self, input_shape):
        self.table = self.add_weight(name="embeddings", shape=self.embeddings.shape,
                                     initializer=keras.initializers.Constant(self.embeddings), trainable=False)

    def call(self, x):
        b = ops.shape(x)[0]
        return ops.broadcast_to(self.table[None], (b,) + tuple(self.embeddings.shape))

    def get_config(self):
        return {**super().get_config(), "embeddings": self.embeddings.tolist()}


def _block(x, i: int, d_model: int, heads: int, ff: int, dropout: float):
    """Pre-LN Transformer block: x + MHA(LN(x)), then x + FFN(LN(x))."""
    h = layers.LayerNormalization(epsilon=1e-5, name=f"enc{i}_ln1")(x)
    h = layers.MultiHeadAttention(heads, d_model // heads, dropout=dropout, name=f"enc{i}_mha")(h, h)
    x = layers.Add(name=f"enc{i}_res1")([x, h])
    h = layers.LayerNormalization(epsilon=1e-5, name=f"enc{i}_ln2")(x)
    h = layers.Dense(ff, activation="gelu", name=f"enc{i}_ff1")(h)
    h = layers.Dense(d_model, name=f"enc{i}_ff2")(h)
    if dropout:
        h = layers.Dropout(dropout, name=f"enc{i}_drop")(h)
    return layers.Add(name=f"enc{i}_res2")([x, h])


def build_teacher(doppler_shape, phase_groups: int, class_embeddings, *, d_model: int = 64, heads: int = 4,
                  ff: int = 128, blocks: int = 2, scales=(1, 2, 4), dropout: float = 0.1,
                  phase_kernel: int = 3, doppler_conv: int = 32) -> keras.Model:
    """The teacher for Doppler features of ``doppler_shape`` = (C, F, T) and ``phase_groups`` phase
    sequences; one class per row of ``class_embeddings`` [K, D_text] (unit norm, label order).

    Inputs {"doppler": [batch, T, F, C], "phase": [batch, T, G]}; outputs {"logits": [batch, K],
    "feature": [batch, d_model]}.
    """
    C, F, T = (int(v) for v in doppler_shape)
    E = np.asarray(class_embeddings, np.float32)
    if E.ndim != 2:
        raise ValueError(f"class_embeddings must be [classes, dim], got shape {E.shape}")
    if d_model % heads:
        raise ValueError(f"d_model {d_model} is not a multiple of heads {heads}")
    n_classes = E.shape[0]
    dop = keras.Input(shape=(T, F, C), name="doppler")
    ph = keras.Input(shape=(T, int(phase_groups)), name="phase")

    a = dop
    if doppler_conv:
        # A 3x3 conv over (time, Doppler bin) first: local time-frequency patterns, as the student's
        # DS-conv front-end sees them, before each frame becomes a token.
        a = layers.Conv2D(int(doppler_conv), 3, padding="same", activation="gelu", name="doppler_conv")(a)
    a = layers.Reshape((T, F * int(a.shape[-1])), name="doppler_frames")(a)
    a = layers.Dense(d_model, activation="gelu", name="doppler_proj")(a)
    b = layers.Conv1D(d_model, phase_kernel, padding="same", activation="gelu", name="phase_proj")(ph)
    tok = layers.Concatenate(name="paths")([a, b])
    tok = layers.Dense(d_model, name="fuse")(tok)
    tok = layers.LayerNormalization(epsilon=1e-5, name="fuse_ln")(tok)

    seqs = []
    for s in scales:
        s = int(s)
        x = tok if s == 1 else layers.AveragePooling1D(s, strides=s, padding="same", name=f"pool_s{s}")(tok)
        seqs.append(PositionTable(name=f"pos_s{s}")(x))
    x = seqs[0] if len(seqs) == 1 else layers.Concatenate(axis=1, name="scales")(seqs)
    for i in range(int(blocks)):
        x = _block(x, i + 1, d_model, heads, ff, dropout)
    x = layers.LayerNormalization(epsilon=1e-5, name="enc_ln")(x)

    sem = ClassSemantics(E, name="class_semantics")(x)
    sem = layers.Dense(d_model, name="semantic_proj")(sem)
    ctx = layers.MultiHeadAttention(heads, d_model // heads, name="xattn")(x, sem, sem)
    x = layers.Add(name="xattn_res")([x, ctx])
    x = layers.LayerNormalization(epsilon=1e-5, name="xattn_ln")(x)

    feature = layers.GlobalAveragePooling1D(name="feature")(x)
    h = layers.Dropout(dropout, name="head_drop")(feature) if dropout else feature
    logits = layers.Dense(n_classes, name="logits")(h)
    return keras.Model({"doppler": dop, "phase": ph}, {"logits": logits, "feature": feature}, name="teacher")


# -- semantic-aware soft supervision -------------------------------------------------------------

def class_similarity(class_embeddings) -> np.ndarray:
    """[K, K] cosine similarity of the class embeddings (rows renormalized, so any scale works)."""
    E = np.asarray(class_embeddings, np.float64)
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    return E @ E.T


def soft_label_matrix(class_embeddings, tau: float = SOFT_TAU, lam: float = SOFT_LAMBDA) -> np.ndarray:
    """[K, K] row y = the soft label q_y = (1 - λ)·onehot(y) + λ·softmax_j(S_yj / τ) (module docstring)."""
    if tau <= 0 or not 0 <= lam <= 1:
        raise ValueError(f"need tau > 0 and 0 <= lam <= 1, got tau={tau}, lam={lam}")
    S = class_similarity(class_embeddings) / tau
    P = np.exp(S - S.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return ((1 - lam) * np.eye(len(S)) + lam * P).astype(np.float32)


def soft_targets(y, class_embeddings, tau: float = SOFT_TAU, lam: float = SOFT_LAMBDA) -> np.ndarray:
    """[N, K] soft labels of integer labels y [N]."""
    return soft_label_matrix(class_embeddings, tau, lam)[np.asarray(y, np.int64)]


# -- size ----------------------------------------------------------------------------------------

def _mha_macs(layer, lk: int) -> int:
    """Q/K/V/output projections plus the score and weighted-sum products, for one sample with
    ``lk`` key/value tokens."""
    q_in, heads, kd = (int(v) for v in layer._query_dense.kernel.shape)
    k_in = int(layer._key_dense.kernel.shape[0])
    v_in, _, vd = (int(v) for v in layer._value_dense.kernel.shape)
    out_dim = int(layer._output_dense.kernel.shape[-1])
    lq = int(layer.output.shape[1])
    return (lq * q_in * heads * kd + lk * k_in * heads * kd + lk * v_in * heads * vd
            + lq * lk * heads * kd + lq * lk * heads * vd + lq * heads * vd * out_dim)


def count_teacher_macs(teacher: keras.Model) -> dict:
    """``{"per_layer", "total"}`` as rfedge.models.macs.count_macs, with the attention layers
    counted too (self-attention: keys = queries; the cross-attention: keys = the K classes).

    The semantic projection (K x D_text -> d_model) is counted per inference although it depends
    on no input and could be computed once: the figure is an upper bound.
    """
    from rfedge.models.macs import layer_macs

    n_classes = int(teacher.get_layer("logits").units)
    per = {}
    for layer in teacher.layers:
        if isinstance(layer, layers.MultiHeadAttention):
            per[layer.name] = _mha_macs(layer, n_classes if layer.name == "xattn" else int(layer.output.shape[1]))
        elif isinstance(layer, (layers.LayerNormalization, PositionTable, ClassSemantics)):
            per[layer.name] = 0
        else:
            per[layer.name] = layer_macs(layer)
    return {"per_layer": per, "total": int(sum(per.values()))}
