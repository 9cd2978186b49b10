"""Intel 5300 bfee records: our reader against csiread on the real file, and dirty files."""

import struct

import numpy as np
import pytest

from rfedge.errors import RfedgeError
from rfedge.io.detect import parse_file
from rfedge.io.intel5300 import bfee_len, parse_intel5300_bytes
from rfedge.io.subcarriers import INTEL5300_SUBCARRIERS_20, INTEL5300_SUBCARRIERS_40

SAMPLE = "intel5300_sample_0x1_ap.dat"


def pack_bfee(ts, csi, nrx, ntx, antenna_sel=0b100100, rate=0x4101, code=0xBB):
    """One record written from the format description (bits LSB first, 3 pad bits per group)."""
    m = nrx * ntx
    ln = bfee_len(nrx, ntx)
    body = bytearray(ln + 2)
    bit = 0
    for i in range(30):
        bit += 3
        for j in range(m):
            for v in (int(csi[i, j].real), int(csi[i, j].imag)):
                v &= 0xFF
                for b in range(8):
                    if v >> b & 1:
                        body[(bit + b) // 8] |= 1 << ((bit + b) % 8)
                bit += 8
    head = struct.pack("<IHHBBBBBbBBHH", ts, 7, 0, nrx, ntx, 30, 31, 32, -90, 40, antenna_sel, ln, rate)
    rec = bytes([code]) + head + bytes(body[:ln])
    return struct.pack(">H", len(rec)) + rec


def random_csi(rng, m):
    return rng.integers(-128, 128, (30, m)) + 1j * rng.integers(-128, 128, (30, m))


def test_real_file_agrees_with_csiread(real_data):
    csiread = pytest.importorskip("csiread")
    path = real_data / SAMPLE
    cap = parse_file(path)
    ref = csiread.Intel(str(path), if_report=False)
    ref.read()
    assert cap.format == "intel5300" and cap.packets == ref.count == 540
    assert cap.csi.shape == (540, 6, 30) and cap.csi.dtype == np.complex64
    assert np.array_equal(cap.subcarriers, INTEL5300_SUBCARRIERS_20)
    # csiread gives [N, 30, nrx, ntx] in physical antenna order (permutation applied), as we do
    ours = cap.csi.reshape(540, 3, 2, 30).transpose(0, 3, 1, 2)
    assert np.array_equal(ours, ref.csi)
    assert np.array_equal(cap.meta["timestamp_low"], ref.timestamp_low)
    assert np.array_equal(cap.meta["perm"], ref.perm)
    for k in ("rssi_a", "rssi_b", "rssi_c", "noise", "agc", "bfee_count"):
        assert np.array_equal(cap.meta[k], getattr(ref, k)), k
    assert cap.timestamps_us[0] == ref.timestamp_low[0] and cap.rate_hz == pytest.approx(9.9, abs=0.2)
    assert sum(cap.skipped.values()) == 0


def test_packed_records_decode_exactly():
    rng = np.random.default_rng(0)
    recs, want = [], []
    for i in range(5):
        c = random_csi(rng, 2 * 3)             # nrx=2, ntx=3
        recs.append(pack_bfee(1000 + i, c, 2, 3, antenna_sel=0b0001))   # perm = (1, 0): swapped
        want.append(c)
    cap = parse_intel5300_bytes(b"".join(recs))
    assert cap.csi.shape == (5, 6, 30) and cap.meta["perm"][0].tolist() == [1, 0]
    for i, c in enumerate(want):
        # raw entry j = rx*ntx + tx; raw rx 0 belongs to physical antenna 1 and vice versa
        raw = c.T
        assert np.array_equal(cap.csi[i, 3:6], raw[0:3]) and np.array_equal(cap.csi[i, 0:3], raw[3:6])
    assert cap.timestamps_us.tolist() == [1000, 1001, 1002, 1003, 1004]


def test_40mhz_grouping_and_invalid_permutation():
    rng = np.random.default_rng(1)
    c = random_csi(rng, 1)
    cap = parse_intel5300_bytes(pack_bfee(5, c, 1, 1, rate=0x4101 | 0x800) * 2)
    assert np.array_equal(cap.subcarriers, INTEL5300_SUBCARRIERS_40) and cap.bandwidth_mhz == 40
    bad = parse_intel5300_bytes(pack_bfee(5, random_csi(rng, 2), 2, 1, antenna_sel=0b0000))  # (0, 0)
    assert bad.notes["antenna permutation invalid (left unpermuted)"] == 1


def test_truncated_garbage_and_other_records(real_data):
    data = (real_data / SAMPLE).read_bytes()
    full = parse_intel5300_bytes(data)
    first = (data[0] << 8 | data[1]) + 2
    cut = parse_intel5300_bytes(data[: len(data) - 100])
    assert cut.packets == 539 and cut.skipped == {"truncated record": 1}
    garbage = np.random.default_rng(3).integers(0, 256, 777, dtype=np.uint8).tobytes().replace(b"\xbb", b"\x00")
    other = struct.pack(">H", 5) + b"\xc1abcd"
    mixed = data[:first] + garbage + data[first:2 * first] + other + data[2 * first:]
    cap = parse_intel5300_bytes(mixed)
    assert cap.packets == 540 and np.array_equal(cap.csi, full.csi)
    assert cap.skipped["garbage between records"] >= 1 and cap.skipped["non-CSI record"] == 1


def test_dominant_layout_kept():
    rng = np.random.default_rng(4)
    recs = [pack_bfee(i, random_csi(rng, 3), 3, 1) for i in range(3)] + [pack_bfee(9, random_csi(rng, 1), 1, 1)]
    cap = parse_intel5300_bytes(b"".join(recs))
    assert cap.packets == 3 and cap.csi.shape[1] == 3 and cap.skipped == {"layout differs from dominant": 1}


def test_no_record_is_one_clear_error(tmp_path):
    p = tmp_path / "x.dat"
    p.write_bytes(b"\x01\x89\xbb" + b"\x00" * 10)
    with pytest.raises(RfedgeError, match="no usable CSI packet"):
        parse_file(p, format="intel5300")
    with pytest.raises(RfedgeError):
        parse_file(p)
