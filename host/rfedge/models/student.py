"""The compact student of paper 002 §4.3: a depthwise-separable CNN front-end and a GRU back-end.

Layout. Features come as X [N, C, F, T] (subcarrier groups, Doppler bins, frames). The model takes
them time first, [batch, T, F, C] (``to_model_input``): the 2-D convolutions then see the
(time, frequency) plane with the subcarrier groups as channels, and after the front-end each frame
flattens into one GRU step z_t = vec(Y[:, :, t]) (eq. 16).

Sizing. The budget that matters on the MCU is MACs, not parameters (design.md §6: ~1M MACs for
the network on an ESP32-C3). The GRU's matmuls are most of it. On the calibrated simulated set
(docs/calibration.md; in-session, 880 test trials) the GRU student scored 0.874 with 24/48
channels and a 72-unit GRU, 0.897-0.901 with 32/64 channels and a 64-unit GRU, and no more
(0.901) with 64/128 channels and a 128-unit GRU at 160k parameters and 4.8M MACs: the input, not
the capacity, is the limit, so the default is the 32/64 front-end that pools frequency hard
(8 -> 4 -> 1 bins, never time) into a 64-unit GRU: for features (14, 8, 25) about 29k parameters
and 0.96M MACs. The TCN variant keeps two bins (32, 48 channels, 8 -> 4 -> 2, z_t 96 wide; 22k
parameters, 0.76M MACs).

Deployment. A GRU converts to full-int8 TFLite only unrolled with a fixed batch of 1 (design.md
§3), so training uses the fast symbolic loop and ``inference_model`` rebuilds the same graph with
batch 1 and ``unroll=True`` and copies the weights over.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

# Front-end per variant (see the module docstring): the GRU variant pools frequency to a single
# bin (8 -> 4 -> 1) so that its GRU fits the MAC budget; the TCN variant keeps two bins.
DEFAULT_WIDTHS = {"gru": (32, 64), "tcn": (32, 48)}
DEFAULT_POOLS = {"gru": (2, 4), "tcn": (2, 2)}
DEFAULT_GRU_UNITS = 64
DEFAULT_TCN_CHANNELS = 32
DEFAULT_TCN_DILATIONS = (1, 2, 4, 8)   # receptive field 31 frames: the whole default window


def to_model_input(X: np.ndarray) -> np.ndarray:
    """Features [N, C, F, T] -> model input [N, T, F, C] (float32, contiguous)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise ValueError(f"expected features [N, C, F, T], got shape {X.shape}")
    return np.ascontiguousarray(np.transpose(X, (0, 3, 2, 1)))


def _widths(width) -> tuple[int, ...]:
    if isinstance(width, (int, np.integer)):
        return (int(width), int(width))
    return tuple(int(w) for w in width)


def ds_block(x, width: int, name: str, pool_freq: int):
    """DConv 3x3 -> PConv 1x1 -> BN -> ReLU (eqs. 12-14), then max-pool the frequency axis by ``pool_freq``.

    Neither conv has a bias: BN right after the pointwise conv supplies it, and a depthwise bias
    would only be a constant that the pointwise conv mixes into that same BN shift.
    """
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    if pool_freq > 1:
        # "same" padding rounds odd bin counts up instead of dropping the last bin.
        x = layers.MaxPooling2D((1, pool_freq), padding="same", name=f"{name}_pool")(x)
    return x


def build_student(input_shape=(14, 6, 25), n_classes: int = 11, variant: str = "gru", width=None,
                  gru_units: int = DEFAULT_GRU_UNITS, batch_size: int | None = None, unroll: bool | None = None,
                  tcn_channels: int = DEFAULT_TCN_CHANNELS, tcn_dilations=DEFAULT_TCN_DILATIONS,
                  dropout: float = 0.1, pool=None) -> keras.Model:
    """The student for features of ``input_shape`` = (C, F, T); the model itself takes [batch, T, F, C].

    ``variant="gru"``: the paper's GRU back-end, softmax over W_o h_T (eqs. 15-19).
    ``variant="tcn"``: GRU-free; causal dilated Conv1D over time then a global average, for
    runtimes where an unrolled GRU's op count or arena hurts (design.md §3).
    ``width``: pointwise widths of the DS-conv blocks (an int means two blocks of that width);
    None: the variant's DEFAULT_WIDTHS.
    ``pool``: frequency max-pool factor after each block (skipped once one bin is left); None:
    the variant's DEFAULT_POOLS for two blocks, else 2 after every block.
    ``batch_size``: fix the batch (1 for TFLite); ``unroll`` defaults to ``batch_size is not None``.
    """
    C, F, T = (int(v) for v in input_shape)
    if variant not in ("gru", "tcn"):
        raise ValueError(f"variant must be 'gru' or 'tcn', got {variant!r}")
    if unroll is None:
        unroll = batch_size is not None
    inp = keras.Input(shape=(T, F, C), batch_size=batch_size, name="x")
    x = inp
    f = F
    widths = _widths(DEFAULT_WIDTHS[variant] if width is None else width)
    if pool is None:
        pool = DEFAULT_POOLS[variant] if len(widths) == len(DEFAULT_POOLS[variant]) else (2,) * len(widths)
    pools = [int(p) for p in pool]
    if len(pools) != len(widths):
        raise ValueError(f"pool needs one factor per block ({len(widths)}), got {pool!r}")
    for i, w in enumerate(widths):
        p = pools[i] if f > 1 else 1
        x = ds_block(x, w, f"ds{i + 1}", pool_freq=p)
        f = -(-f // p)
    # Per-frame flatten: [batch, T, F', W] -> [batch, T, F'*W], the GRU's z_t.
    z = layers.Reshape((T, f * widths[-1]), name="frames")(x)
    if variant == "gru":
        h = layers.GRU(gru_units, unroll=unroll, reset_after=False, name="gru")(z)
    else:
        h = z
        for d in tcn_dilations:
            h = layers.Conv1D(tcn_channels, 3, padding="causal", dilation_rate=int(d), use_bias=False,
                              name=f"tcn_d{d}")(h)
            h = layers.BatchNormalization(name=f"tcn_d{d}_bn")(h)
            h = layers.ReLU(name=f"tcn_d{d}_relu")(h)
        h = layers.GlobalAveragePooling1D(name="time_mean")(h)
    if dropout:
        h = layers.Dropout(dropout, name="dropout")(h)
    out = layers.Dense(n_classes, activation="softmax", name="head")(h)
    return keras.Model(inp, out, name=f"student_{variant}")


def inference_model(trained: keras.Model, batch_size: int = 1) -> keras.Model:
    """The same graph with a fixed batch and every GRU unrolled, carrying ``trained``'s weights.

    Works from the model's own config, so it applies to any functional model here (student,
    student-tcn, heavy CNN) and to one reloaded from ``model.keras``.
    """
    cfg = trained.get_config()
    for layer in cfg["layers"]:
        c = layer["config"]
        if layer["class_name"] == "InputLayer":
            c["batch_shape"] = [batch_size] + list(c["batch_shape"][1:])
        elif layer["class_name"] in ("GRU", "LSTM", "SimpleRNN"):
            c["unroll"] = True
    model = keras.Model.from_config(cfg)
    model.set_weights(trained.get_weights())
    return model


def summary_line(model: keras.Model) -> str:
    """``name: N parameters, M MACs, input [..]`` for logs and the CLI."""
    from rfedge.models.macs import count_macs

    shape = list(model.inputs[0].shape)
    return f"{model.name}: {model.count_params():,} parameters, {count_macs(model)['total']:,} MACs, input {shape}"
