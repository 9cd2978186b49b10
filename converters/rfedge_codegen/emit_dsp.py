"""dsp_config.h: the per-model constants of the on-device DSP (mcu/core/dsp/rfe_dsp.c).

A run's ``features.json`` (rfedge.features.FeatureConfig) and ``normalizer.json``
(rfedge.dsp.Normalizer), plus the model input's int8 quantization, become C macros and tables:
sizes (groups C, Doppler bins F, frames T), the Hann window and the DFT basis at the Doppler
bins exactly as numpy computes them (C99 hex float literals, so the device starts from the same
bits as the Python reference), the normalizer, the input scale / zero point, and the settings of
the stream-mode activity detector (rfedge.activity.StreamConfig, "doppler" statistic).

    emit_dsp_config(features, normalizer, input_scale, input_zero_point)  -> text of dsp_config.h
    write_dsp_config(out_dir, ...)                                        -> writes out_dir/dsp_config.h
    dsp_config_for_run(run_dir, out_dir)                                  -> the same from a run directory
"""

from __future__ import annotations

import json
from fractions import Fraction
import os
import tempfile
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError

HEADER_NAME = "dsp_config.h"


def _f64(v) -> str:
    return float(v).hex()


def _f32(v) -> str:
    return float(np.float32(v)).hex() + "f"


def _array(ctype: str, name: str, vals, fmt) -> str:
    vals = list(vals)
    body = ",\n    ".join(", ".join(fmt(v) for v in vals[i:i + 4]) for i in range(0, len(vals), 4))
    return f"static const {ctype} {name}[{max(1, len(vals))}] = {{\n    {body or '0'}\n}};\n"


def _basis(win_len: int, bins: np.ndarray) -> np.ndarray:
    # exactly rfedge.dsp.stft_bins' basis
    return np.exp(-2j * np.pi * np.outer(np.arange(win_len), bins) / win_len)


def logamp_table() -> np.ndarray:
    """log(max(|h|, 0.5)) in float64 of every int8 CSI value, as rfedge.features.uniform_logamp computes
    it (numpy's complex64 abs, then np.log), indexed by m * (m + 1) / 2 + n with m = max(|re|, |im|)
    (0..128) and n = min(|re|, |im|): the device looks the log-amplitude up instead of computing it."""
    m = np.concatenate([np.full(k + 1, k) for k in range(129)]).astype(np.float32)
    n = np.concatenate([np.arange(k + 1) for k in range(129)]).astype(np.float32)
    # every sign / order of (re, im) with these magnitudes, to be sure abs does not depend on them
    vals = []
    for re, im in ((m, n), (n, m), (-m, n), (n, -m)):
        vals.append(np.abs((re + 1j * im).astype(np.complex64)))
    a = vals[0]
    for v in vals[1:]:
        if not np.array_equal(v, a):
            raise RfedgeError("numpy's complex64 abs depends on the sign or order of re / im")
    return np.log(np.maximum(a.astype(np.float64), 0.5))


def stream_bins(win_len: int, rate_hz: float, carrier_hz: float, v_max: float, min_hz: float):
    """(in-band, out-of-band) bins of rfedge.activity.doppler_band_power."""
    from rfedge import dsp

    band = dsp.doppler_bins(win_len, rate_hz, carrier_hz, v_max)
    b_in = band[band * rate_hz / win_len >= min_hz]
    b_out = np.arange(band[-1] + 3, win_len // 2)
    if len(b_in) == 0 or len(b_out) == 0:
        raise RfedgeError(f"no Doppler or noise bins for the stream detector (win_len={win_len} at {rate_hz} Hz)")
    return b_in, b_out


def emit_dsp_config(features: dict, normalizer: dict, input_scale: float, input_zero_point: int, *,
                    stream: dict | None = None, margin_s: float | None = None, source: str = "") -> str:
    """The text of dsp_config.h.  ``features``: FeatureConfig as a dict; ``normalizer``: {"mean", "std"};
    ``stream``: rfedge.activity.StreamConfig fields (defaults when None)."""
    from rfedge import dsp
    from rfedge.activity import StreamConfig
    from rfedge.features import FeatureConfig

    try:
        cfg = FeatureConfig.from_dict(dict(features))
    except TypeError as e:
        raise RfedgeError(f"features.json does not describe a FeatureConfig: {e}") from None
    if cfg.cross_antenna:
        raise RfedgeError("FeatureConfig.cross_antenna is true: the device DSP computes the amplitude channels only "
                          "(the handedness channels are host-side; run such a model with host-computed features)")
    if cfg.segment:
        raise RfedgeError("FeatureConfig.segment is true (activity segmentation inside each window): the device DSP "
                          "supports pre-segmented windows (segment false) and the stream detector (rfe_act_*) only")
    C, F, T = cfg.shape
    bins = np.asarray(cfg.bins)
    if F == 0 or T <= 0:
        raise RfedgeError(f"FeatureConfig gives an empty input shape {cfg.shape}")
    mean = np.asarray(normalizer["mean"], np.float32).reshape(-1)
    std = np.asarray(normalizer["std"], np.float32).reshape(-1)
    if mean.size != C or std.size != C:
        raise RfedgeError(f"normalizer has {mean.size}/{std.size} mean/std values; the features have {C} channels")
    scfg = StreamConfig(**(stream or {}))
    if scfg.statistic != "doppler":
        raise RfedgeError("the device's stream detector implements the 'doppler' statistic only")
    sL = int(scfg.win_len)
    b_in, b_out = stream_bins(sL, cfg.rate_hz, scfg.carrier_hz, scfg.v_max, scfg.min_hz)
    blk = max(1, int(round(scfg.floor_block_s * cfg.rate_hz)))
    keep = max(1, int(round(scfg.floor_window_s / scfg.floor_block_s)))
    smooth = max(1, int(round((0.1 if scfg.smooth_s is None else scfg.smooth_s) * cfg.rate_hz)))
    w = dsp.hann(cfg.win_len)
    B = _basis(cfg.win_len, bins)
    sw = dsp.hann(sL)
    sbins = np.concatenate([b_in, b_out])
    SB = _basis(sL, sbins)
    margin = cfg.margin_s if margin_s is None else margin_s

    m = []
    m.append(f"""/*
 * {HEADER_NAME} - per-model constants of the rfedge on-device DSP (mcu/core/dsp/rfe_dsp.h).
 * Generated by rfedge_codegen.emit_dsp{' from ' + source if source else ''}; do not edit.
 * FeatureConfig: {json.dumps(cfg.to_dict(), sort_keys=True)}
 * Stream detector (rfedge.activity.StreamConfig): {json.dumps(scfg.__dict__, sort_keys=True)}
 * Floating-point constants are C99 hex literals: the same bits numpy computed.
 */
#ifndef RFE_DSP_CONFIG_H
#define RFE_DSP_CONFIG_H

/* FeatureConfig */
#define RFE_DSP_RATE_HZ {_f64(cfg.rate_hz)}            /* {cfg.rate_hz} */
#define RFE_DSP_N_SAMPLES {int(cfg.n_samples)}
#define RFE_DSP_GROUPS {C}
#define RFE_DSP_WIN_LEN {int(cfg.win_len)}
#define RFE_DSP_HOP {int(cfg.hop)}
#define RFE_DSP_N_BINS {F}
#define RFE_DSP_N_FRAMES {T}
#define RFE_DSP_EPS {_f64(cfg.eps)}            /* {cfg.eps} */
#define RFE_DSP_MARGIN_US {int(round(margin * 1e6))}

/* the model input: int8 [T][F][C], real = scale * (q - zero_point) */
#define RFE_DSP_INPUT_SIZE ({T} * {F} * {C})
#define RFE_DSP_INPUT_SCALE {_f32(input_scale)}        /* {float(np.float32(input_scale))!r} */
#define RFE_DSP_INPUT_ZERO_POINT ({int(input_zero_point)})

/* stream-mode activity detector ("doppler" statistic of rfedge.activity) */
#define RFE_DSP_ACT_WIN_LEN {sL}
#define RFE_DSP_ACT_N_IN {len(b_in)}
#define RFE_DSP_ACT_N_OUT {len(b_out)}
#define RFE_DSP_ACT_BLOCK {blk}               /* samples per floor block */
#define RFE_DSP_ACT_FLOOR_BLOCKS {keep}       /* block medians in the floor's window */
#define RFE_DSP_ACT_SMOOTH {smooth}           /* moving-average length of the score */
#define RFE_DSP_ACT_MERGE_GAP {_f64(scfg.merge_gap_s * cfg.rate_hz)}
#define RFE_DSP_ACT_MIN_LEN {_f64(scfg.min_len_s * cfg.rate_hz)}

#ifdef RFE_DSP_DEFINE_TABLES
""")
    m.append("/* rfedge.dsp.group_subcarriers edges are computed at run time from the packets' count */\n")
    m.append(_array("int16_t", "rfe_dsp_bins", bins, str))
    m.append(_array("double", "rfe_dsp_hann", w, _f64))
    m.append("/* exp(-2j pi l m / L): [L][F] */\n")
    m.append(_array("double", "rfe_dsp_basis_re", B.real.reshape(-1), _f64))
    m.append(_array("double", "rfe_dsp_basis_im", B.imag.reshape(-1), _f64))
    m.append(_array("float", "rfe_dsp_norm_mean", mean, _f32))
    m.append(_array("float", "rfe_dsp_norm_std", std, _f32))
    m.append("/* stream detector: Hann window, bins (in-band first) and basis [L][N_IN + N_OUT] */\n")
    m.append(_array("int16_t", "rfe_act_bins", sbins, str))
    m.append(_array("double", "rfe_act_hann", sw, _f64))
    m.append(_array("double", "rfe_act_basis_re", SB.real.reshape(-1), _f64))
    m.append(_array("double", "rfe_act_basis_im", SB.imag.reshape(-1), _f64))
    m.append("#endif /* RFE_DSP_DEFINE_TABLES */\n\n")
    lt = logamp_table()
    m.append("#ifdef RFE_DSP_DEFINE_LOGAMP_TABLE\n/* log(max(|h|, 0.5)) of int8 CSI values (float64 as numpy computes it) in Q58 fixed point:\n"
             " * index m (m + 1) / 2 + n, m = max(|re|, |im|), n = min(|re|, |im|) */\n")
    q58 = [int(round(Fraction(float(v)) * 2 ** 58)) for v in lt]
    m.append(_array("int64_t", "rfe_dsp_logamp_q58", q58, lambda v: f"INT64_C({v})"))
    m.append("#endif /* RFE_DSP_DEFINE_LOGAMP_TABLE */\n\n#endif /* RFE_DSP_CONFIG_H */\n")
    return "".join(m)


def write_dsp_config(out_dir, features: dict, normalizer: dict, input_scale: float, input_zero_point: int,
                     **kw) -> Path:
    """Writes ``out_dir/dsp_config.h`` atomically; returns its path."""
    text = emit_dsp_config(features, normalizer, input_scale, input_zero_point, **kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".dsp_config.", dir=out)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, out / HEADER_NAME)
    return out / HEADER_NAME


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise RfedgeError(f"the run has no {what}", path=path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RfedgeError(f"not valid JSON ({e.msg} at line {e.lineno})", path=path) from None


def dsp_config_for_run(run_dir, out_dir, *, tflite: bytes | None = None, stream: dict | None = None) -> Path:
    """dsp_config.h for a run directory: its features.json, normalizer.json and the input
    quantization of its int8 model (``tflite`` bytes, else RUN/student_int8.tflite)."""
    from .graph import load_graph

    run = Path(run_dir)
    features = _read_json(run / "features.json", "features.json (FeatureConfig)")
    normalizer = _read_json(run / "normalizer.json", "normalizer.json")
    if tflite is None:
        p = run / "student_int8.tflite"
        if not p.is_file():
            raise RfedgeError("the run has no student_int8.tflite (quantize it first, e.g. rfedge codegen)", path=p)
        tflite = p.read_bytes()
    g = load_graph(tflite)
    x = g.t(g.inputs[0])
    return write_dsp_config(out_dir, features, normalizer, x.s, x.zp, stream=stream, source=run.name)
