"""Multiply-accumulates per inference, from layer types and shapes alone (batch of 1).

MACs, not parameters, set latency on the MCU (design.md §6), so this is the figure every model
reports. Conventions: a MAC is one weight-times-activation product; biases, activations, pooling,
the GRU's elementwise gate arithmetic and BatchNorm (folded into the preceding conv when
quantized) count 0. A layer with weights that is not understood raises instead of counting 0,
so the total is never silently low.
"""

from __future__ import annotations

import math

import keras
from keras import layers


def _shape(t) -> tuple:
    return tuple(t.shape)


def _prod(dims) -> int:
    return int(math.prod(int(d) for d in dims))


def layer_macs(layer) -> int:
    if isinstance(layer, (layers.BatchNormalization, layers.InputLayer)) or not layer.weights:
        return 0
    # Depthwise and separable convs first: their class relations to Conv2D vary across Keras versions.
    if isinstance(layer, layers.DepthwiseConv2D):
        _, h, w, c = _shape(layer.output)
        kh, kw = layer.kernel_size
        return _prod((h, w, c, kh, kw))                     # c = c_in * depth_multiplier
    if isinstance(layer, layers.SeparableConv2D):
        _, h, w, cout = _shape(layer.output)
        cin = _shape(layer.input)[-1]
        kh, kw = layer.kernel_size
        return _prod((h, w, cin * layer.depth_multiplier, kh, kw)) + _prod((h, w, cin * layer.depth_multiplier, cout))
    if isinstance(layer, layers.Conv2D):
        _, h, w, cout = _shape(layer.output)
        cin = _shape(layer.input)[-1]
        kh, kw = layer.kernel_size
        return _prod((h, w, cout, kh, kw, cin)) // layer.groups
    if isinstance(layer, layers.Conv1D):
        _, length, cout = _shape(layer.output)
        cin = _shape(layer.input)[-1]
        return _prod((length, cout, layer.kernel_size[0], cin)) // layer.groups
    if isinstance(layer, layers.Dense):
        shp = _shape(layer.input)
        return _prod(shp[1:-1]) * int(shp[-1]) * int(layer.units)
    if isinstance(layer, (layers.GRU, layers.LSTM, layers.SimpleRNN)):
        _, steps, d = _shape(layer.input)
        h = int(layer.units)
        gates = {layers.GRU: 3, layers.LSTM: 4, layers.SimpleRNN: 1}[type(layer)]
        # Per step and gate: W z_t (d x h) and U h_{t-1} (h x h) (paper 002 eqs. 15-17).
        return int(steps) * gates * (int(d) * h + h * h)
    if isinstance(layer, keras.Model):
        return count_macs(layer)["total"]
    raise ValueError(f"count_macs: no MAC rule for layer {layer.name!r} ({type(layer).__name__})")


def count_macs(model: keras.Model) -> dict:
    """``{"per_layer": {layer name: MACs}, "total": MACs}`` for one input sample."""
    per = {layer.name: layer_macs(layer) for layer in model.layers}
    return {"per_layer": per, "total": int(sum(per.values()))}
