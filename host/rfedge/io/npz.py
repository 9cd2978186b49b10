"""``.npz`` clips of int8 ESP32 CSI.

The CSI array: key ``csi_data`` or ``csi`` (2-D integer), else the only 2-D integer array. Its rows
are packets, its columns ``[imag, real]`` int8 pairs in Espressif order. How the width 2*S maps
to subcarriers:

* 2*S is an ESP32 buffer length the layout table knows for the clip's secondary channel (a
  ``secondary_channel`` array or scalar, else 0): decoded like a device buffer (``part`` picks
  the field; ``raw`` keeps the array);
* else S is 52, 56 or 114: the used subcarriers already selected, ascending (legacy 20 MHz,
  HT20, HT40); ``raw`` is None since it is no device buffer.

Other arrays whose first dimension is N become per-packet metadata; timestamps come from
``timestamps_us``/``timestamp_us``/``local_timestamp`` (microseconds) or ``timestamps_s`` (s).
``first_word_invalid`` (or ``first_word``) per packet is honoured; without it no byte is masked.
Arrays of another length are ignored. No pickles are ever loaded.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.io.capture import CsiCapture, require_packets
from rfedge.io.subcarriers import decode_esp32_buffer, is_known_layout, part_info, used_subcarriers

CSI_KEYS = ("csi_data", "csi")
_US_KEYS = ("timestamps_us", "timestamp_us", "local_timestamp")
_S_KEYS = ("timestamps_s", "timestamp_s")
_SELECTED = {52: ("lltf", 20, 0), 56: ("ht-ltf", 20, 0), 114: ("ht-ltf", 40, 1)}


def _load(path) -> dict:
    return _load_bytes(path, path)


def _load_bytes(src, path) -> dict:
    """Arrays of an npz given as a path or a binary file object (``path`` names it in errors)."""
    try:
        z = np.load(src, allow_pickle=False)
    except FileNotFoundError:
        raise RfedgeError("file not found", path=path) from None
    except Exception as e:  # numpy raises many kinds for a bad file; all mean "not an npz"
        raise RfedgeError(f"not a readable .npz archive ({_why(e)})", path=path) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise RfedgeError("not an .npz archive (a single .npy array)", path=path)
    try:
        # a member that is no .npy comes back as bytes: not an array, so not ours to read
        return {k: v for k in z.files if isinstance(v := z[k], np.ndarray)}
    except Exception as e:
        raise RfedgeError(f"not a readable .npz archive ({_why(e)})", path=path) from None
    finally:
        z.close()


def _why(e: Exception) -> str:
    msg = str(e) or type(e).__name__
    if "pickle" in msg:
        return "it holds object arrays that would need pickle, which is never loaded"
    return msg.splitlines()[0][:200]


def _pick_csi(arrays: dict, path) -> str:
    for k in CSI_KEYS:
        if k in arrays:
            a = arrays[k]
            if a.ndim != 2 or a.dtype.kind not in "iu":
                raise RfedgeError(f"expected a 2-D integer array, got {a.dtype} {a.shape}", path=path, field=k)
            return k
    cands = [k for k, a in arrays.items() if a.ndim == 2 and a.dtype.kind in "iu"]
    if len(cands) != 1:
        found = ", ".join(f"{k} {a.dtype} {a.shape}" for k, a in arrays.items()) or "no arrays"
        why = "no" if not cands else f"{len(cands)}"
        raise RfedgeError(f"{why} 2-D integer arrays to read as CSI (expected key csi_data or csi; found {found})",
                          path=path)
    return cands[0]


def parse_npz_arrays(arrays: dict, *, part: str = "auto", source: str = "", require: bool = True) -> CsiCapture:
    key = _pick_csi(arrays, source or None)
    a = arrays[key]
    if a.size and (a.min() < -128 or a.max() > 127):
        raise RfedgeError("CSI values outside the int8 range -128..127", path=source or None, field=key)
    n, width = a.shape
    raw8 = a.astype(np.int8)
    sc_arr = arrays.get("secondary_channel")
    sc = 0
    if sc_arr is not None and sc_arr.size:
        vals = np.unique(np.asarray(sc_arr).ravel())
        if len(vals) != 1 or vals[0] not in (0, 1, 2):
            raise RfedgeError(f"one secondary channel (0, 1 or 2) expected, got {vals[:5].tolist()}",
                              path=source or None, field="secondary_channel")
        sc = int(vals[0])
    fw = None
    for k in ("first_word_invalid", "first_word"):
        v = arrays.get(k)
        if v is not None and v.ndim == 1 and len(v) == n:
            fw = v != 0
            break
    try:
        if width % 2 == 0 and is_known_layout(width, sc):
            csi, subs = decode_esp32_buffer(raw8, sc, part, first_word_invalid=fw)
            pinfo = part_info(width, sc, part)
            fmt_raw, pname, bw = raw8, pinfo.name, pinfo.bandwidth_mhz
        elif width % 2 == 0 and width // 2 in _SELECTED:
            pname, bw, need_sc = _SELECTED[width // 2]
            if part not in ("auto", pname) and not (pname == "ht-ltf" and part == "stbc-ht-ltf"):
                raise ValueError(f"the clip holds selected {pname} subcarriers, not {part}")
            subs = used_subcarriers(pname, bw, sc or need_sc)
            pairs = raw8.reshape(n, -1, 2).astype(np.float32)
            csi = (pairs[:, :, 1] + 1j * pairs[:, :, 0]).astype(np.complex64)
            fmt_raw = None
        else:
            raise ValueError(f"{width} columns are neither a known ESP32 buffer length for secondary channel "
                             f"{sc} nor 2 x 52/56/114 selected subcarriers")
    except ValueError as e:
        raise RfedgeError(str(e), path=source or None, field=key) from None
    meta, ts = {}, None
    for k, v in arrays.items():
        if k == key or v.ndim == 0 or len(v) != n:
            continue
        if k in _US_KEYS and ts is None and v.ndim == 1 and v.dtype.kind in "iuf":
            ts = v.astype(np.float64)
        elif k in _S_KEYS and ts is None and v.ndim == 1 and v.dtype.kind in "iuf":
            ts = v.astype(np.float64) * 1e6
        meta[k] = v
    if ts is None:
        ts = np.full(n, np.nan)
    cap = CsiCapture(format="npz", csi=csi[:, None, :], subcarriers=np.asarray(subs), timestamps_us=ts,
                     raw=fmt_raw, part=pname, bandwidth_mhz=bw, secondary_channel=sc, meta=meta,
                     skipped=Counter(), source=source)
    cap.notes = {}
    return require_packets(cap) if require else cap


def read_npz(path, *, part: str = "auto", require: bool = True) -> CsiCapture:
    return parse_npz_arrays(_load(path), part=part, source=str(path), require=require)
