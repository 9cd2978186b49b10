"""Where each subcarrier sits in an ESP32 CSI buffer, and which subcarriers carry signal.

Facts, kept as data (ESP-IDF programming guide, Wi-Fi driver, "Channel State Information"; the
table covers ESP32, ESP32-S2, ESP32-S3 and ESP32-C3):

* ``wifi_csi_info_t.buf`` is a run of int8 pairs, **imaginary first, then real**, one pair per
  subcarrier slot, parts in the order LLTF, HT-LTF, STBC-HT-LTF.
* The layout follows from the buffer length and the secondary channel (0 none, 1 above, 2 below):

  ========  =====================  =======================  =======================
  length    none                   below                    above
  ========  =====================  =======================  =======================
  128       LLTF 0..31,-32..-1     LLTF 0..63               LLTF -64..-1
  256       + HT-LTF 0..31,-32..-1 + HT-LTF 0..63           + HT-LTF -64..-1
  376       -                      -                        + HT-LTF/STBC -62..-1
  380       -                      + HT-LTF/STBC 0..62      -
  384       + HT-LTF + STBC (x64)  LLTF + HT40 0..63,-64..-1 LLTF + HT40 0..63,-64..-1
  612       -                      LLTF + HT40/STBC 0..60,-60..-1 (both)
  ========  =====================  =======================  =======================

  With a secondary channel the table indexes the 40 MHz grid (128 bins, centre at 0). A 20 MHz
  field then sits in the primary half: bins 0..63 (secondary below, primary is the upper half) or
  -64..-1 (secondary above), and its own subcarrier k is bin k+32 resp. k-32. We return 20 MHz
  fields in their own channel's numbering (-32..31) so HT20 data looks the same whatever the
  secondary channel was.
* Used subcarriers: legacy 20 MHz (LLTF) -26..26 without 0 (52, pilots ±7, ±21); HT20 -28..28
  without 0 (56, same pilots); HT40 -58..-2 and 2..58 (114, pilots ±11, ±25, ±53). The ESP-IDF
  table says "-57 to +57" for HT40 but also "114 total" with pilot ±53; IEEE 802.11n puts the
  114 HT40 tones at ±2..±58 with a 3-bin DC null, which is what we use (every HT40 layout above
  has those bins).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping

import numpy as np

PART_NAMES = ("lltf", "ht-ltf", "stbc-ht-ltf")


@dataclass(frozen=True)
class Part:
    """One training field inside an ESP32 CSI buffer.

    Attributes:
        name: ``lltf``, ``ht-ltf`` or ``stbc-ht-ltf``.
        offset: byte offset of the part in the buffer.
        indices: table subcarrier index of each complex slot, in buffer order (40 MHz grid when a
            secondary channel is set, as in the ESP-IDF table).
        bandwidth_mhz: 20 or 40: the channel the field was measured over.
        subcarriers: the same slots numbered from the centre of that channel (what ``csi`` uses).
    """

    name: str
    offset: int
    indices: np.ndarray
    bandwidth_mhz: int
    subcarriers: np.ndarray

    @property
    def nbytes(self) -> int:
        return 2 * len(self.indices)


def _r(a, b):
    return list(range(a, b + 1))


# (buffer length, secondary channel) -> [(part, table indices in buffer order, bandwidth)].
_LAYOUTS: dict[tuple[int, int], list[tuple[str, list[int], int]]] = {}


def _add(length, sc, parts):
    _LAYOUTS[(length, sc)] = parts
    total = sum(2 * len(ix) for _, ix, _ in parts)
    assert total == length, (length, sc, total)  # the table's byte counts must add up


_N20 = _r(0, 31) + _r(-32, -1)
_add(128, 0, [("lltf", _N20, 20)])
_add(256, 0, [("lltf", _N20, 20), ("ht-ltf", _N20, 20)])
_add(384, 0, [("lltf", _N20, 20), ("ht-ltf", _N20, 20), ("stbc-ht-ltf", _N20, 20)])

_BELOW, _ABOVE = _r(0, 63), _r(-64, -1)
_HT40 = _r(0, 63) + _r(-64, -1)
_HT40_STBC = _r(0, 60) + _r(-60, -1)
_add(128, 2, [("lltf", _BELOW, 20)])
_add(256, 2, [("lltf", _BELOW, 20), ("ht-ltf", _BELOW, 20)])
_add(380, 2, [("lltf", _BELOW, 20), ("ht-ltf", _r(0, 62), 20), ("stbc-ht-ltf", _r(0, 62), 20)])
_add(384, 2, [("lltf", _BELOW, 20), ("ht-ltf", _HT40, 40)])
_add(612, 2, [("lltf", _BELOW, 20), ("ht-ltf", _HT40_STBC, 40), ("stbc-ht-ltf", _HT40_STBC, 40)])
_add(128, 1, [("lltf", _ABOVE, 20)])
_add(256, 1, [("lltf", _ABOVE, 20), ("ht-ltf", _ABOVE, 20)])
_add(376, 1, [("lltf", _ABOVE, 20), ("ht-ltf", _r(-62, -1), 20), ("stbc-ht-ltf", _r(-62, -1), 20)])
_add(384, 1, [("lltf", _ABOVE, 20), ("ht-ltf", _HT40, 40)])
_add(612, 1, [("lltf", _ABOVE, 20), ("ht-ltf", _HT40_STBC, 40), ("stbc-ht-ltf", _HT40_STBC, 40)])

#: every buffer length the table knows, per secondary channel
BUFFER_LENGTHS = {sc: sorted(L for (L, s) in _LAYOUTS if s == sc) for sc in (0, 1, 2)}
ALL_BUFFER_LENGTHS = sorted({L for (L, _) in _LAYOUTS})


def is_known_layout(buf_len: int, secondary_channel: int) -> bool:
    return (int(buf_len), int(secondary_channel)) in _LAYOUTS


@lru_cache(maxsize=None)
def _layout(buf_len: int, secondary_channel: int) -> tuple[Part, ...]:
    try:
        spec = _LAYOUTS[(buf_len, secondary_channel)]
    except KeyError:
        raise ValueError(
            f"no ESP32 CSI layout for a {buf_len}-byte buffer with secondary channel "
            f"{secondary_channel} (known: {BUFFER_LENGTHS.get(secondary_channel, [])})") from None
    parts, off = [], 0
    for name, ix, bw in spec:
        ix = np.asarray(ix, dtype=np.int16)
        sub = ix
        if bw == 20 and secondary_channel == 2:
            sub = ix - 32
        elif bw == 20 and secondary_channel == 1:
            sub = ix + 32
        ix.setflags(write=False)
        sub = np.asarray(sub, dtype=np.int16)
        sub.setflags(write=False)
        parts.append(Part(name, off, ix, bw, sub))
        off += 2 * len(ix)
    return tuple(parts)


def esp32_buffer_layout(buf_len: int, secondary_channel: int) -> list[Part]:
    """The parts of an ESP32 CSI buffer, in buffer order. ValueError for an unknown layout."""
    return list(_layout(int(buf_len), int(secondary_channel)))


@lru_cache(maxsize=None)
def _used(kind: str) -> np.ndarray:
    if kind == "legacy":
        k = np.r_[-26:0, 1:27]
    elif kind == "ht20":
        k = np.r_[-28:0, 1:29]
    else:
        k = np.r_[-58:-1, 2:59]
    k = k.astype(np.int16)
    k.setflags(write=False)
    return k


def used_subcarriers(part_name: str, bandwidth_mhz: int, secondary_channel: int = 0) -> np.ndarray:
    """Ascending indices of the subcarriers that carry signal (data + pilots) in a field.

    LLTF is a legacy (802.11a/g) field: always 52 tones, whatever the packet bandwidth. HT-LTF and
    STBC-HT-LTF have 56 tones at 20 MHz, 114 at 40 MHz (40 MHz needs a secondary channel).
    """
    if part_name not in PART_NAMES:
        raise ValueError(f"unknown part {part_name!r} (expected one of {', '.join(PART_NAMES)})")
    if part_name == "lltf":
        return _used("legacy")
    if int(bandwidth_mhz) == 40:
        if int(secondary_channel) == 0:
            raise ValueError("a 40 MHz field needs a secondary channel (1 above or 2 below)")
        return _used("ht40")
    if int(bandwidth_mhz) != 20:
        raise ValueError(f"bandwidth must be 20 or 40 MHz, got {bandwidth_mhz}")
    return _used("ht20")


def pick_part(parts: list[Part] | tuple[Part, ...], part: str = "auto") -> Part:
    """``auto`` prefers HT-LTF (the packet's own estimate, wider band) and falls back to LLTF."""
    by_name = {p.name: p for p in parts}
    if part == "auto":
        return by_name.get("ht-ltf") or by_name["lltf"]
    if part not in PART_NAMES:
        raise ValueError(f"unknown part {part!r} (expected auto or one of {', '.join(PART_NAMES)})")
    if part not in by_name:
        L = sum(p.nbytes for p in parts)
        raise ValueError(f"a {L}-byte buffer has no {part} field (it has {', '.join(by_name)})")
    return by_name[part]


@lru_cache(maxsize=None)
def _gather(buf_len: int, secondary_channel: int, part: str):
    """Byte positions of (imag, real) of each used subcarrier, ascending, for one layout."""
    p = pick_part(_layout(buf_len, secondary_channel), part)
    used = used_subcarriers(p.name, p.bandwidth_mhz, secondary_channel)
    slot_of = {int(k): i for i, k in enumerate(p.subcarriers)}
    missing = [int(k) for k in used if int(k) not in slot_of]
    if missing:  # cannot happen with the table above; guards edits of it
        raise ValueError(f"layout ({buf_len}, {secondary_channel}) {p.name} lacks subcarriers {missing}")
    slots = np.array([slot_of[int(k)] for k in used], dtype=np.intp)
    imag_pos = p.offset + 2 * slots
    # runs of consecutive slots: each is read with two strided slices instead of a gather
    cut = np.flatnonzero(np.diff(slots) != 1) + 1
    runs, col = [], 0
    for seg in np.split(slots, cut):
        b = p.offset + 2 * int(seg[0])
        runs.append((col, col + len(seg), b, b + 2 * len(seg)))
        col += len(seg)
    return p, used, imag_pos, imag_pos + 1, tuple(runs)


@lru_cache(maxsize=None)
def _decode_plan(buf_len: int, secondary_channel: int, part: str):
    """What decoding one layout needs, computed once: (used, runs, interleaved positions, first-word
    columns). ``perm`` lists (real, imag) byte positions in complex64 memory order, for one gather."""
    _, used, ip, rp, runs = _gather(buf_len, secondary_channel, part)
    perm = np.empty(2 * len(used), np.intp)
    perm[0::2] = rp
    perm[1::2] = ip
    fw_cols = np.flatnonzero((ip < 4) | (rp < 4))
    for a in (perm, fw_cols):
        a.setflags(write=False)
    return used, runs, perm, fw_cols


_GATHER_MAX = 256   # packets: below this one np.take beats the strided copies (fixed costs)


def decode_esp32_buffer(raw, secondary_channel: int, part: str = "auto",
                        first_word_invalid=None) -> tuple[np.ndarray, np.ndarray]:
    """complex64 [N, S] of the used subcarriers (ascending) and their indices [S].

    ``raw`` is int8 [N, L] (or [L]) in device order. Where ``first_word_invalid`` is true (bool,
    or a bool array per packet) the first four bytes are treated as missing: the subcarriers they
    hold come out as 0. ``raw`` itself is never changed.
    """
    raw = np.asarray(raw)
    single = raw.ndim == 1
    if single:
        raw = raw[None, :]
    if raw.ndim != 2:
        raise ValueError(f"raw must be [N, L], got shape {raw.shape}")
    n = raw.shape[0]
    used, runs, perm, fw_cols = _decode_plan(int(raw.shape[1]), int(secondary_channel), part)
    if n <= _GATHER_MAX:
        out = raw.take(perm, axis=1).astype(np.float32, order="C")   # (real, imag) pairs
        csi = out.view(np.complex64)
    else:
        out = np.empty((n, len(used), 2), np.float32)   # (real, imag): complex64 memory order
        for c0, c1, b0, b1 in runs:
            out[:, c0:c1, 0] = raw[:, b0 + 1:b1:2]
            out[:, c0:c1, 1] = raw[:, b0:b1:2]
        csi = out.view(np.complex64)[:, :, 0]
    if first_word_invalid is not None and len(fw_cols):
        if first_word_invalid is True:   # the usual case: one flag for all packets
            csi[:, fw_cols] = 0
            return (csi[0] if single else csi), used.copy()
        bad = np.asarray(first_word_invalid, dtype=bool)
        if bad.ndim == 0:
            if bad:
                csi[:, fw_cols] = 0
        else:
            bad = np.broadcast_to(bad, (n,))
            k = np.count_nonzero(bad)
            if k == n:
                csi[:, fw_cols] = 0
            elif k:
                csi[np.ix_(bad, fw_cols)] = 0
    return (csi[0] if single else csi), used.copy()


@lru_cache(maxsize=None)
def first_word_affects(buf_len: int, secondary_channel: int, part: str = "auto") -> bool:
    """Whether the 4 bytes flagged by ``first_word_invalid`` hold used subcarriers of that part."""
    _, _, ip, rp, _ = _gather(int(buf_len), int(secondary_channel), part)
    return bool(((ip < 4) | (rp < 4)).any())


def part_info(buf_len: int, secondary_channel: int, part: str = "auto") -> Part:
    """The part ``decode_esp32_buffer`` would read for this layout."""
    return _gather(int(buf_len), int(secondary_channel), part)[0]


def encode_esp32_buffers(buf_len: int, secondary_channel: int,
                         values: Mapping[str, tuple], clip: bool = False) -> np.ndarray:
    """Build int8 [N, L] device buffers from per-part complex values (the inverse of decoding).

    ``values`` maps a part name to ``(subcarriers [S], complex [N, S])`` with subcarriers numbered
    as ``decode_esp32_buffer`` returns them. Slots not given (and parts not given) are 0. Values are
    rounded to integers; outside -128..127 they raise ValueError unless ``clip``.
    """
    parts = {p.name: p for p in _layout(int(buf_len), int(secondary_channel))}
    n = None
    out = None
    for name, (subs, vals) in values.items():
        if name not in parts:
            raise ValueError(f"a {buf_len}-byte buffer (secondary channel {secondary_channel}) has no {name}")
        vals = np.asarray(vals)
        if vals.ndim == 1:
            vals = vals[None, :]
        subs = np.asarray(subs).astype(int)
        if vals.shape[1] != len(subs):
            raise ValueError(f"{name}: {len(subs)} subcarriers but values have {vals.shape[1]} columns")
        if n is None:
            n = vals.shape[0]
            out = np.zeros((n, int(buf_len)), np.int8)
        elif vals.shape[0] != n:
            raise ValueError("all parts must have the same number of packets")
        p = parts[name]
        slot_of = {int(k): i for i, k in enumerate(p.subcarriers)}
        bad = [int(k) for k in subs if int(k) not in slot_of]
        if bad:
            raise ValueError(f"{name} of a {buf_len}-byte buffer has no subcarrier(s) {bad[:5]}")
        slots = np.array([slot_of[int(k)] for k in subs], dtype=np.intp)
        re = np.rint(vals.real)
        im = np.rint(vals.imag)
        if clip:
            re, im = np.clip(re, -128, 127), np.clip(im, -128, 127)
        elif min(re.min(initial=0), im.min(initial=0)) < -128 or max(re.max(initial=0), im.max(initial=0)) > 127:
            raise ValueError(f"{name}: values outside the int8 range -128..127 (pass clip=True to clip)")
        out[:, p.offset + 2 * slots] = im.astype(np.int8)
        out[:, p.offset + 2 * slots + 1] = re.astype(np.int8)
    if out is None:
        out = np.zeros((1, int(buf_len)), np.int8)
    return out


def encode_esp32_buffer(buf_len: int, secondary_channel: int,
                        values: Mapping[str, Mapping[int, complex] | Callable[[int], complex]],
                        clip: bool = False) -> np.ndarray:
    """One int8 [L] buffer; ``values`` maps a part to {subcarrier: complex} or a callable k -> complex.

    A callable is asked for every slot of the part (numbered as in ``Part.subcarriers``).
    """
    parts = {p.name: p for p in _layout(int(buf_len), int(secondary_channel))}
    spec = {}
    for name, v in values.items():
        if name not in parts:
            raise ValueError(f"a {buf_len}-byte buffer (secondary channel {secondary_channel}) has no {name}")
        if callable(v):
            subs = [int(k) for k in parts[name].subcarriers]
            vals = [complex(v(k)) for k in subs]
        else:
            subs = [int(k) for k in v]
            vals = [complex(v[k]) for k in v]
        spec[name] = (np.array(subs, dtype=int), np.array(vals, dtype=complex)[None, :])
    return encode_esp32_buffers(buf_len, secondary_channel, spec, clip=clip)[0]


# ---- Intel 5300 ---------------------------------------------------------------------------------

#: subcarrier of each of the 30 groups the Intel 5300 reports (802.11n grouping Ng=2 at 20 MHz)
INTEL5300_SUBCARRIERS_20 = np.array(list(range(-28, -1, 2)) + [-1, 1] + list(range(3, 28, 2)) + [28],
                                    dtype=np.int16)
#: same at 40 MHz (Ng=4)
INTEL5300_SUBCARRIERS_40 = np.array(list(range(-58, -1, 4)) + list(range(2, 59, 4)), dtype=np.int16)
assert len(INTEL5300_SUBCARRIERS_20) == 30 and len(INTEL5300_SUBCARRIERS_40) == 30
