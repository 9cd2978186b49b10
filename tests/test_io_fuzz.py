"""Corrupt, truncated and random input to every parser: only RfedgeError may escape, intact
records survive, and the fast paths agree with the strict per-line rules."""

import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfedge.errors import RfedgeError
from rfedge.io import esp_csi
from rfedge.io.detect import parse_bytes, parse_file
from rfedge.io.esp_csi import (Collector, build_captures, clean_text, decode_records, feed_text, format_csi_data_line,
                               frame_line, parse_esp_csi_bytes)
from rfedge.io.intel5300 import parse_intel5300_bytes
from rfedge.io.stream import CsiLineParser
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

# RFEDGE_FUZZ_EXAMPLES=5000 for a long run
FUZZ = settings(max_examples=int(os.environ.get("RFEDGE_FUZZ_EXAMPLES", 150)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
FORMATS = ["esp-csi", "esp32-csi-tool", "npz", "intel5300", "text"]


def _real_lines(name):
    p = REAL_DATA / name
    return p.read_bytes().splitlines() if p.exists() else []


def _synthetic_lines():
    rng = np.random.default_rng(7)
    out = [b",".join(c.encode() for c in esp_csi.ESP_CSI_COLUMNS)]
    for i in range(12):
        raw = rng.integers(-128, 128, 384 if i % 4 else 128).astype(np.int8)
        out.append(format_csi_data_line(raw, {"local_timestamp": 1000 * i, "rssi": -50, "first_word": 1}).encode())
    return out


LINES = {
    "tool": _real_lines("esp32-csi-tool_example_csi.csv") or _synthetic_lines()[1:],
    "espcsi": _real_lines("esp-csi_csi_data_with_head.csv")[:25] or _synthetic_lines(),
}
ANSI = [b"\x1b[0;32m", b"\x1b[0m", b"\x1b[1;31m", b"\x1b", b"\x1b[K"]
LOG = [b"I (1234) wifi: station: aa:bb connected", b"E (99) csi: ", b"", b"ets Jun  8 2016 00:22:57", b"type,"]


def _mutate(line: bytes, op: int, a: int, b: int) -> bytes:
    if not line:
        return line
    i = a % (len(line) + 1)
    if op == 0:
        return line[:i]                                       # cut
    if op == 1:
        j = a % len(line)
        return line[:j] + bytes([b % 256]) + line[j + 1:]     # flip a byte
    if op == 2:
        return line[:i] + ANSI[b % len(ANSI)] + line[i:]      # colour code in the middle
    if op == 3:
        return line[:i] + LOG[b % len(LOG)] + line[i:]        # other output glued in
    if op == 4:
        return line[:i] + line[i + 1 + b % 5:]                # bytes lost
    return line[:i] + bytes([b % 256]) * (1 + b % 3) + line[i:]   # noise inserted


@st.composite
def dirty_logs(draw, kind=None):
    kind = kind or draw(st.sampled_from(sorted(LINES)))
    lines = list(LINES[kind])
    n = len(lines)
    k = draw(st.integers(0, max(0, n // 3)))
    touched = set()
    for _ in range(k):
        idx = draw(st.integers(0, n - 1))
        lines[idx] = _mutate(lines[idx], draw(st.integers(0, 5)), draw(st.integers(0, 10_000)),
                             draw(st.integers(0, 255)))
        touched.add(idx)
    out, intact = [], []
    seps = [b"\n", b"\r\n", b"\r\r\n"]
    merge = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    for i, line in enumerate(lines):
        out.append(line)
        if i not in touched:
            intact.append(line)
        if draw(st.integers(0, 9)) == 0:
            out.append(LOG[draw(st.integers(0, len(LOG) - 1))] + b"\n")
        # merged records (no line break) must still both be found
        out.append(b"" if merge[i] and i + 1 < n and i not in touched and i + 1 not in touched
                   else seps[draw(st.integers(0, 2))])
    return kind, b"".join(out), intact


def _payload(line: bytes) -> list[int]:
    s = line[line.index(b"[") + 1:line.index(b"]")]
    return [int(t) for t in s.replace(b",", b" ").split()]


def _by_line(data: bytes, format="auto") -> esp_csi.CsiCapture:
    """Reference: the strict per-line path only (no bulk framing, records decoded one at a time)."""
    col = Collector(format)
    for line in clean_text(data).split(b"\n"):
        col.add_line(line)
    rows = []
    for sch, (seq, heads, pays, tails) in col.groups.items():
        for i in range(len(seq)):
            rows.append(decode_records(sch, seq[i:i + 1], heads[i:i + 1], pays[i:i + 1], tails[i:i + 1],
                                       col.skipped))
    caps = build_captures(rows, "auto", col.skipped)
    return caps[0] if caps else None, col.skipped


def _same(a, b):
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.csi, b.csi)
    assert np.array_equal(a.timestamps_us, b.timestamps_us, equal_nan=True)
    assert a.subcarriers.tolist() == b.subcarriers.tolist() and a.format == b.format
    assert sorted(a.meta) == sorted(b.meta)
    for k in a.meta:
        assert a.meta[k].dtype == b.meta[k].dtype, k
        x, y = a.meta[k], b.meta[k]
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), k


# ---- random bytes --------------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=3000), st.sampled_from(FORMATS))
def test_random_bytes_only_rfedge_errors(data, fmt):
    try:
        cap = parse_bytes(data, fmt)
    except RfedgeError:
        return
    assert cap.csi.ndim == 3


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_through_parse_file(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("f") / "x.bin"
    p.write_bytes(data)
    try:
        parse_file(p)
    except RfedgeError as e:
        assert str(p) in str(e)


@FUZZ
@given(st.lists(st.sampled_from([b"CSI_DATA,", b"[", b"]", b",", b"\n", b"1", b"-", b" ", b'"', b"\r",
                                 b"type,", b"data", b"\x1b[0m", b"9999", b"3C:71", b"."]), max_size=300))
def test_csi_flavoured_noise(parts):
    data = b"".join(parts)
    for fmt in ("text", "esp-csi", "esp32-csi-tool"):
        try:
            parse_bytes(data, fmt)
        except RfedgeError:
            pass


@FUZZ
@given(st.binary(min_size=1, max_size=400), st.integers(0, 20_000), st.booleans())
def test_intel_with_garbage_inserted(noise, at, cut):
    path = REAL_DATA / "intel5300_sample_0x1_ap.dat"
    if not path.exists():
        pytest.skip(f"real captures not available: {path}")
    data = path.read_bytes()[:8000]
    at = at % len(data)
    mixed = data[:at] + noise + data[at:]
    if cut:
        mixed = mixed[:-37]
    try:
        cap = parse_intel5300_bytes(mixed)
    except RfedgeError:
        return
    assert cap.csi.shape[1:] == (6, 30)


def test_npz_with_random_member(tmp_path):
    import zipfile
    rng = np.random.default_rng(0)
    for i in range(30):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("csi.npy", rng.integers(0, 256, rng.integers(1, 300), dtype=np.uint8).tobytes())
        try:
            parse_bytes(buf.getvalue(), "npz")
        except RfedgeError:
            pass


# ---- mangled real logs ---------------------------------------------------------------------------

@FUZZ
@given(dirty_logs())
def test_mangled_logs_keep_intact_records(case):
    kind, data, intact = case
    try:
        cap = parse_esp_csi_bytes(data)
    except RfedgeError:
        assert not any(b"CSI_DATA," in ln for ln in intact), "intact records must be found"
        return
    got = [r.tolist() for r in cap.raw]
    want = [_payload(ln) for ln in intact if ln.startswith(b"CSI_DATA,")]
    want = [w for w in want if len(w) == cap.raw.shape[1]]
    it = iter(got)
    assert all(any(w == g for g in it) for w in want), "every intact record, in order"


@FUZZ
@given(dirty_logs(), st.booleans())
def test_bulk_paths_agree_with_the_strict_per_line_rules(monkeypatch_case, vector):
    kind, data, _ = monkeypatch_case
    old = esp_csi._SMALL
    esp_csi._SMALL = 0 if vector else 1 << 30    # force the numpy framer or the per-line framer
    try:
        col = Collector()
        feed_text(col, clean_text(data))
        caps = build_captures(col.take(), "auto", col.skipped)
    finally:
        esp_csi._SMALL = old
    ref, ref_skipped = _by_line(data)
    assert col.skipped == ref_skipped
    assert (not caps) == (ref is None)
    if caps:
        _same(caps[0], ref)


@FUZZ
@given(dirty_logs(), st.lists(st.integers(1, 600), min_size=1, max_size=50))
def test_stream_chunks_agree_with_the_file(case, sizes):
    kind, data, _ = case
    p = CsiLineParser()
    got, i, j = [], 0, 0
    while i < len(data):
        k = sizes[j % len(sizes)]
        got += p.feed(data[i:i + k])
        i, j = i + k, j + 1
    got += p.flush()
    cap = parse_esp_csi_bytes(data, require=False)
    kept = [g for g in got if cap.packets and len(g.raw) == cap.raw.shape[1]
            and g.secondary_channel == cap.secondary_channel]
    assert len(kept) == cap.packets
    for a, b in zip(kept, cap.raw):
        assert np.array_equal(a.raw, b)
    other = Counter(p.skipped)
    other.pop("layout differs from dominant", None)
    mine = Counter(cap.skipped)
    mine.pop("layout differs from dominant", None)
    assert other == mine


def test_frame_line_never_raises_on_odd_lines():
    for line in [b"", b"CSI_DATA,", b"CSI_DATA,[", b"CSI_DATA,]", b"CSI_DATA,][", b"type,data", b"type,,data,x",
                 b"xxCSI_DATA,1,[1]CSI_DATA,2,[2]", b'CSI_DATA,"[1,2]"', b"\x00" * 20, b"TYPE,ID,DATA"]:
        frame_line(line)
