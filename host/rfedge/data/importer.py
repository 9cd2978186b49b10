"""``rfedge data import``: a dataset from labelled real recordings in any format ``rfedge parse`` reads.

Labels come from the file name (its leading word: ``push_03.csv`` -> ``push``) or from a
per-packet column of the capture (a trailing ``label`` column of a console log). Recordings are
cut into fixed windows by device timestamp; for column labels a window never spans two labels.
Tokens such as ``u3``/``user3`` and ``s1``/``session1`` in a file name become the ``user`` and
``session`` factors, so the cross-user and cross-session splits exist for real data too.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rfedge.data.dataset import write_dataset
from rfedge.errors import RfedgeError
from rfedge.io.capture import CsiCapture

_FACTOR_TOKENS = {"user": re.compile(r"^(?:u|user)(\d+)$", re.I), "session": re.compile(r"^(?:s|session)(\d+)$", re.I)}


def parse_label_from(spec: str) -> tuple[str, str | None]:
    if spec == "filename":
        return "filename", None
    if spec == "column" or spec.startswith("column:"):
        name = spec.split(":", 1)[1] if ":" in spec else "label"
        if not name:
            raise RfedgeError("--label-from column:NAME needs a column name")
        return "column", name
    raise RfedgeError(f"--label-from expects 'filename' or 'column[:NAME]', got {spec!r}")


def filename_facts(path: Path, label_in_name: bool = True) -> dict:
    """Label (leading word, when ``label_in_name``) and user/session tokens of a recording's file name."""
    tokens = [t for t in re.split(r"[_\-\s.]+", path.stem) if t]
    facts = {}
    if label_in_name:
        if not tokens:
            raise RfedgeError("cannot take a label from an empty file name", path=path)
        facts["label_name"] = tokens[0]
        tokens = tokens[1:]
    for t in tokens:
        for key, rx in _FACTOR_TOKENS.items():
            m = rx.match(t)
            if m and key not in facts:
                facts[key] = int(m.group(1))
    return facts


def _windows(t_us: np.ndarray, labels: np.ndarray, window_us: float, hop_us: float):
    """(start index, stop index, label) of each full window within runs of one label."""
    out = []
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    bounds = np.concatenate([[0], change, [len(labels)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        t = t_us[a:b]
        start = t[0]
        while start + window_us <= t[-1] + 1:
            i0 = a + int(np.searchsorted(t, start, "left"))
            i1 = a + int(np.searchsorted(t, start + window_us, "left"))
            if i1 - i0 >= 2:
                out.append((i0, i1, labels[a]))
            start += hop_us
    return out


def _as_int8_pairs(cap: CsiCapture, path) -> np.ndarray:
    """[N, A, S, 2] int8 (real, imag); real recordings are integer-valued already."""
    re_, im = cap.csi.real, cap.csi.imag
    if not (np.all(re_ == np.rint(re_)) and np.all(im == np.rint(im))
            and np.abs(re_).max(initial=0) <= 128 and np.abs(im).max(initial=0) <= 128):
        raise RfedgeError("CSI values are not int8 integers; cannot store them in an int8 dataset", path=path)
    return np.stack([np.clip(re_, -128, 127), np.clip(im, -128, 127)], axis=-1).astype(np.int8)


def import_recordings(files, out, *, label_from: str = "filename", window_s: float, hop_s: float | None = None,
                      format: str = "auto") -> Path:
    from rfedge.io.detect import parse_file

    mode, column = parse_label_from(label_from)
    if not window_s or window_s <= 0:
        raise RfedgeError(f"--window must be a positive number of seconds, got {window_s!r}")
    hop_s = window_s if hop_s is None else hop_s
    if hop_s <= 0:
        raise RfedgeError(f"--hop must be positive, got {hop_s!r}")
    windows, subcarriers, n_ant, ref_file = [], None, None, None
    for f in files:
        path = Path(f)
        cap = parse_file(path, format=format)
        if subcarriers is None:
            subcarriers, n_ant, ref_file = cap.subcarriers, cap.csi.shape[1], path
        elif not np.array_equal(subcarriers, cap.subcarriers) or n_ant != cap.csi.shape[1]:
            raise RfedgeError(f"subcarriers/antennas ({len(cap.subcarriers)}x{cap.csi.shape[1]}) differ from "
                              f"{ref_file} ({len(subcarriers)}x{n_ant}); import recordings of one layout together",
                              path=path)
        t = cap.timestamps_us
        if not np.all(np.isfinite(t)):
            raise RfedgeError("recording has packets without timestamps; cannot cut windows in seconds", path=path)
        order = np.argsort(t, kind="stable")
        facts = filename_facts(path, label_in_name=(mode == "filename"))
        if mode == "column":
            if column not in cap.meta:
                raise RfedgeError(f"no column {column!r}; columns are {sorted(cap.meta)}", path=path, field=column)
            labels = np.asarray(cap.meta[column]).astype(str)[order]
        else:
            labels = np.full(cap.packets, facts.pop("label_name"))
        pairs = _as_int8_pairs(cap, path)[order]
        ts = t[order]
        for i0, i1, lab in _windows(ts, labels, window_s * 1e6, hop_s * 1e6):
            windows.append({"csi": pairs[i0:i1], "t_us": ts[i0:i1], "rssi": cap.meta.get("rssi"),
                            "order": order, "i0": i0, "i1": i1, "label_name": str(lab), "source": path.name,
                            "start_s": round(float((ts[i0] - ts[0]) / 1e6), 6),
                            **facts})
    if not windows:
        raise RfedgeError(f"no complete {window_s:g} s window in {len(files)} recording(s)")
    names = sorted({w["label_name"] for w in windows})
    p_max = max(len(w["t_us"]) for w in windows)
    n = len(windows)
    csi = np.zeros((n, n_ant, p_max, len(subcarriers), 2), np.int8)
    t_us = np.full((n, n_ant, p_max), -1, np.int64)
    rssi = np.zeros((n, n_ant, p_max), np.int8)
    n_packets = np.zeros((n, n_ant), np.int16)
    trials = []
    for i, w in enumerate(windows):
        P = len(w["t_us"])
        csi[i, :, :P] = np.moveaxis(w["csi"], 1, 0)
        t_us[i, :, :P] = np.rint(w["t_us"]).astype(np.int64)
        if w["rssi"] is not None:
            r = np.asarray(w["rssi"])[w["order"]][w["i0"]:w["i1"]]
            if np.issubdtype(r.dtype, np.number):
                rssi[i, :, :P] = np.clip(r, -128, 127)
        n_packets[i] = P
        trials.append({"id": i, "label": names.index(w["label_name"]), "label_name": w["label_name"],
                       "source": w["source"], "start_s": w["start_s"],
                       **{k: w[k] for k in ("user", "session") if k in w}})
    # Factors only known for some files are dropped, so splits never see partial metadata.
    for key in ("user", "session"):
        if not all(key in t for t in trials):
            for t in trials:
                t.pop(key, None)
    config = {"seed": 0, "window_s": window_s, "hop_s": hop_s, "label_from": label_from,
              "files": [str(Path(f).name) for f in files], "subcarriers": np.asarray(subcarriers).tolist()}
    return write_dataset(
        out, kind="csi", label_names=names, trials=trials,
        arrays={"csi": csi, "t_us": t_us, "rssi": rssi, "n_packets": n_packets}, config=config,
        array_doc={"csi": "int8 [trial, antenna stream, packet, subcarrier, (real, imag)]",
                   "t_us": "int64 [trial, antenna stream, packet]: device timestamp in µs, -1 past n_packets",
                   "rssi": "int8 [trial, antenna stream, packet]", "n_packets": "int16 [trial, antenna stream]"},
        produced_by="rfedge data import")
