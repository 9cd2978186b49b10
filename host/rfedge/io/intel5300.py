"""Intel 5300 ``.dat`` files of the Linux 802.11n CSI Tool (``log_to_file``).

Record: 2-byte big-endian length (code byte + body), a code byte, the body. Code 0xbb is a
beamforming (bfee) report; its body is a 20-byte header, little-endian::

    0  timestamp_low  u32 (us)      10 rssi_a  u8     15 antenna_sel  u8
    4  bfee_count     u16           11 rssi_b  u8     16 len          u16
    6  (reserved)     2 bytes       12 rssi_c  u8     18 fake_rate_n_flags u16
    8  Nrx u8,  9  Ntx u8           13 noise   i8     14 agc u8

then ``len`` bytes of bit-packed CSI: for each of 30 subcarrier groups, 3 padding bits, then for
each of Nrx*Ntx entries an 8-bit signed real and an 8-bit signed imaginary part, read at a bit
offset (so ``len = (30 * (Nrx*Ntx*16 + 3) + 7) // 8``).

Our choices, documented:

* ``csi`` is [N, Nrx*Ntx, 30] complex64, stream index ``rx * Ntx + tx`` with ``rx`` the physical
  receive antenna (A, B, C): the entries are moved by ``antenna_sel``'s permutation, as the tool's
  own ``read_bf_file.m`` does. A packet whose permutation is not a permutation is left unpermuted
  (counted in ``capture.notes``). ``meta['perm']`` holds the 0-based permutation.
* Subcarriers: 802.11n grouping Ng=2 at 20 MHz (-28, -26, ..., -2, -1, 1, 3, ..., 27, 28), Ng=4 at
  40 MHz (bit 11 of ``fake_rate_n_flags``).
* Records of other codes are skipped and counted ("non-CSI record"); a truncated last record and
  garbage between records are counted and the reader resynchronises on the next valid bfee header.
  The dominant (Nrx, Ntx, bandwidth) is kept; the rest is counted as "layout differs from dominant".
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.io.capture import CsiCapture, require_packets
from rfedge.io.subcarriers import INTEL5300_SUBCARRIERS_20, INTEL5300_SUBCARRIERS_40

CODE_BFEE = 0xBB
HEADER = 20
_HT40 = 0x800


def bfee_len(nrx: int, ntx: int) -> int:
    return (30 * (nrx * ntx * 16 + 3) + 7) // 8


def _valid_bfee(d: bytes, start: int, n: int) -> int:
    """Length of a valid bfee record at ``start`` (including its 2-byte length), else 0."""
    if start < 0 or start + 3 + HEADER > n:
        return 0
    flen = (d[start] << 8) | d[start + 1]
    if d[start + 2] != CODE_BFEE or flen < 1 + HEADER:
        return 0
    b = start + 3
    nrx, ntx = d[b + 8], d[b + 9]
    ln = d[b + 16] | (d[b + 17] << 8)
    if not (1 <= nrx <= 3 and 1 <= ntx <= 3) or ln != bfee_len(nrx, ntx) or HEADER + ln > flen - 1:
        return 0
    if start + 2 + flen > n:
        return 0
    return 2 + flen


# bytes that equal the first record's in a run of same-shape records: length, code, Nrx, Ntx, len
_SAME = np.array([0, 1, 2, 3 + 8, 3 + 9, 3 + 16, 3 + 17])


def _run_length(a: np.ndarray, o: int, size: int) -> int:
    """How many records of ``size`` bytes, shaped like the one at ``o``, follow each other from ``o``."""
    k = (len(a) - o) // size
    if k < 2:
        return 1
    starts = o + np.arange(k) * size
    same = (a[starts[:, None] + _SAME] == a[o + _SAME]).all(axis=1)
    return k if same.all() else max(1, int(np.argmin(same)))


def _scan(d: bytes, skipped: Counter) -> list[int]:
    """Offsets of the bodies of valid bfee records, walking the record chain."""
    n = len(d)
    a = np.frombuffer(d, np.uint8)
    out = []
    o = 0
    while o < n:
        size = _valid_bfee(d, o, n)
        if size:  # the usual file: equal records back to back, checked in one go
            k = _run_length(a, o, size)
            out.extend(range(o + 3, o + 3 + k * size, size))
            o += k * size
            continue
        if o + 3 > n:
            skipped["truncated record"] += 1
            break
        flen = (d[o] << 8) | d[o + 1]
        code = d[o + 2]
        end = o + 2 + flen
        if code == CODE_BFEE:
            if end > n and flen >= 1 + HEADER and o + 3 + HEADER <= n and _header_ok(d, o + 3):
                skipped["truncated record"] += 1  # a good header whose body runs past the end
                break
        nxt = _resync(d, o + 1, n)
        # another record type: skip it by its length, unless that would jump over a valid bfee
        # record (then it is garbage whose first bytes merely look like a length)
        if code != CODE_BFEE and flen >= 1 and end <= n and (nxt < 0 or nxt >= end) \
                and (end == n or _plausible(d, end, n)):
            skipped["non-CSI record"] += 1
            o = end
            continue
        # garbage: go on where the next valid bfee record starts
        skipped["garbage between records"] += 1
        if nxt < 0:
            break
        o = nxt
    return out


def _header_ok(d: bytes, b: int) -> bool:
    nrx, ntx = d[b + 8], d[b + 9]
    ln = d[b + 16] | (d[b + 17] << 8)
    return 1 <= nrx <= 3 and 1 <= ntx <= 3 and ln == bfee_len(nrx, ntx)


def _plausible(d: bytes, o: int, n: int) -> bool:
    if o + 3 > n:
        return False
    if d[o + 2] == CODE_BFEE:
        return bool(_valid_bfee(d, o, n)) or (o + 3 + HEADER <= n and _header_ok(d, o + 3))
    return o + 2 + ((d[o] << 8) | d[o + 1]) <= n


def _resync(d: bytes, frm: int, n: int) -> int:
    p = d.find(b"\xbb", frm + 2)
    while p >= 0:
        s = p - 2
        if _valid_bfee(d, s, n) or (s + 3 + HEADER <= n and s + 2 + ((d[s] << 8) | d[s + 1]) > n
                                    and _header_ok(d, s + 3) and (d[s] << 8 | d[s + 1]) >= 1 + HEADER):
            return s
        p = d.find(b"\xbb", p + 1)
    return -1


@lru_cache(maxsize=None)
def _unpack_indices(nrx: int, ntx: int):
    """Byte positions and bit shifts of every (group, entry) real and imaginary part."""
    m = nrx * ntx
    i = np.arange(30)[:, None]
    j = np.arange(m)[None, :]
    bit = 3 * (i + 1) + 16 * (i * m + j)            # start bit of the real part
    byte, rem = bit // 8, bit % 8
    return byte.ravel(), rem.ravel()


def _decode(d: np.ndarray, bodies: np.ndarray, nrx: int, ntx: int) -> np.ndarray:
    """complex64 [N, 30, nrx*ntx] (raw entry order) of the CSI bodies starting at ``bodies`` in ``d``
    (uint8, padded by 2 bytes)."""
    byte, rem = _unpack_indices(nrx, ntx)
    idx = bodies[:, None] + byte[None, :]
    b1 = d[idx + 1].astype(np.uint16) << 8
    lo = d[idx].astype(np.uint16) | b1                       # real part: 8 bits from bit ``rem``
    hi = (b1 >> 8) | (d[idx + 2].astype(np.uint16) << 8)     # imaginary part: the next 8
    r = rem.astype(np.uint16)
    out = np.empty(idx.shape, np.complex64)
    out.real = (lo >> r).astype(np.uint8).view(np.int8)
    out.imag = (hi >> r).astype(np.uint8).view(np.int8)
    return out.reshape(len(bodies), 30, nrx * ntx)


def parse_intel5300_bytes(data: bytes, *, source: str = "", require: bool = True) -> CsiCapture:
    skipped: Counter = Counter()
    bodies = _scan(data, skipped)
    if not bodies:
        cap = CsiCapture(format="intel5300", csi=np.zeros((0, 1, 30), np.complex64),
                         subcarriers=INTEL5300_SUBCARRIERS_20.copy(), timestamps_us=np.zeros(0),
                         skipped=skipped, source=source)
        cap.notes = {}
        return require_packets(cap) if require else cap
    d = np.frombuffer(data, np.uint8)
    b = np.asarray(bodies, dtype=np.int64)
    hdr = d[b[:, None] + np.arange(HEADER)]
    u16 = lambda k: hdr[:, k].astype(np.int64) | (hdr[:, k + 1].astype(np.int64) << 8)
    ts = u16(0) | (u16(2) << 16)
    nrx, ntx = hdr[:, 8].astype(np.int64), hdr[:, 9].astype(np.int64)
    rate = u16(18)
    bw = np.where(rate & _HT40, 40, 20)
    key = (nrx * 4 + ntx) * 100 + bw
    keys, first, counts = np.unique(key, return_index=True, return_counts=True)
    best = max(range(len(keys)), key=lambda i: (counts[i], -first[i]))
    keep = key == keys[best]
    if (~keep).any():
        skipped["layout differs from dominant"] += int((~keep).sum())
    b, hdr, ts, rate = b[keep], hdr[keep], ts[keep], rate[keep]
    r, t, w = int(nrx[keep][0]), int(ntx[keep][0]), int(bw[keep][0])
    raw = _decode(np.frombuffer(data + b"\0\0", np.uint8), b + HEADER, r, t)   # entry j = rx*t + tx
    sel = hdr[:, 15].astype(np.int64)
    perm = np.stack([(sel >> (2 * k)) & 3 for k in range(3)], axis=1)[:, :r]   # 0-based
    ok = np.sort(perm, axis=1) == np.arange(r)
    ok = ok.all(axis=1)
    # raw entry (rx, tx) belongs to physical antenna perm[rx]
    target = (perm[:, :, None] * t + np.arange(t)[None, None, :]).reshape(len(b), r * t)
    target[~ok] = np.arange(r * t)
    csi = np.empty((len(b), r * t, 30), np.complex64)
    csi[np.arange(len(b))[:, None], target] = raw.transpose(0, 2, 1)
    meta = {
        "timestamp_low": ts,
        "bfee_count": u16(4),
        "nrx": hdr[:, 8].astype(np.int64),
        "ntx": hdr[:, 9].astype(np.int64),
        "rssi_a": hdr[:, 10].astype(np.int64),
        "rssi_b": hdr[:, 11].astype(np.int64),
        "rssi_c": hdr[:, 12].astype(np.int64),
        "noise": hdr[:, 13].view(np.int8).astype(np.int64),
        "agc": hdr[:, 14].astype(np.int64),
        "antenna_sel": sel,
        "perm": np.where(ok[:, None], perm, np.arange(r)),
        "rate": rate,
    }
    t64 = ts.astype(np.float64)
    if len(ts) > 1:
        dd = ts[1:] - ts[:-1]
        t64[1:] += np.cumsum(dd < -(2 ** 31)) * 2.0 ** 32
    subs = INTEL5300_SUBCARRIERS_40 if w == 40 else INTEL5300_SUBCARRIERS_20
    cap = CsiCapture(format="intel5300", csi=csi, subcarriers=subs.copy(), timestamps_us=t64,
                     bandwidth_mhz=w, meta=meta, skipped=skipped, source=source)
    cap.notes = {}
    if (~ok).any():
        cap.notes["antenna permutation invalid (left unpermuted)"] = int((~ok).sum())
    return require_packets(cap) if require else cap


def read_intel5300(path, *, require: bool = True) -> CsiCapture:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RfedgeError(f"cannot read file: {e.strerror or e}", path=path) from None
    return parse_intel5300_bytes(data, source=str(path), require=require)
