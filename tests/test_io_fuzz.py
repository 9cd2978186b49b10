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
from rfedge.io.esp_csi import (Collector, build_captures, clean_text, feed_text, format_csi_data_line,
                               frame_line, parse_esp_csi_bytes)
from rfedge.io.intel5300 import parse_intel5300_bytes
from rfedge.io.stream import CsiLineParser
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

# RFEDGE_FUZZ_EXAMPLES=5000 for a long run
FUZZ = settings(max_examples=int(os.environ.get("RFEDGE_FUZZ_EXAMPLES", 150)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
FORMATS = ["esp-csi", "esp32-csi-tool", "npz", "intel5300", "text"]


# Every test twice: with the C text parser and with the numpy fallback (conftest.text_converter).
pytestmark = pytest.mark.usefixtures("text_converter")


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
    """Reference: the strict per-line path only (no bulk framing, each record by the strict rules)."""
    col = Collector(format)
    for line in clean_text(data).split(b"\n"):
        col.add_line(line)
    rows = []
    for sch, (seq, heads, pays, tails) in col.groups.items():
        for i in range(len(seq)):
            try:
                rows.append(esp_csi._strict(sch, seq[i], heads[i], pays[i], tails[i]))
            except esp_csi._Bad as e:
                col.skipped[str(e)] += 1
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


# ---- plain logs: the whole-text framing of plain files ---------------------------------------------

def _quoted_lines():
    """esp-csi lines with quoted comma payloads, as the writer makes them, after a header."""
    rng = np.random.default_rng(3)
    out = [b",".join(c.encode() for c in esp_csi.ESP_CSI_COLUMNS)]
    for i in range(6):
        raw = rng.integers(-128, 128, 128).astype(np.int8)
        out.append(format_csi_data_line(raw, {"local_timestamp": 10 * i, "first_word": i % 2}).encode())
    return out


PLAIN = {"tool": LINES["tool"], "espcsi": LINES["espcsi"], "quoted": _quoted_lines()}
# text that is odd for a number, a field, or the framing
TRICKY = [b"", b"-", b"+", b"+5", b"-0", b"007", b" 5", b"5 ", b"\t5", b"1e3", b"1.5", b"0x1f", b"1_0", b"inf",
          b"9223372036854775808", b"-9223372036854775809", b"99999999999999999999", b"a", b"\x00", b"5\x00",
          b"128", b"-129", b"127", b"-128", b"9999", b"[", b"]", b'"', b"CSI_DATA", b"CSI_DATA,", b"- 5", b"5-3",
          b"--5", b",", b",,", b"\xa0", b"\xc3\xa9", b"3C:71", b"AP", b"x" * 70]


@st.composite
def plain_logs(draw):
    """Logs of whole records, each maybe touched by one odd token, field or separator."""
    lines = list(PLAIN[draw(st.sampled_from(sorted(PLAIN)))])
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        lb = line.find(b"[")
        if not line.startswith(b"CSI_DATA,") or lb < 0:
            continue
        head, rest = line[:lb], line[lb:]
        op = draw(st.integers(0, 7))
        tok = draw(st.sampled_from(TRICKY))
        if op == 0:                                   # a head field
            fields = head.split(b",")
            fields[draw(st.integers(1, len(fields) - 2))] = tok
            line = b",".join(fields) + rest
        elif op == 1:                                 # a payload value
            sep = b"," if b"," in rest else b" "
            vals = rest.split(sep)
            vals[draw(st.integers(0, len(vals) - 1))] = tok
            line = head + sep.join(vals)
        elif op == 2:                                 # a payload value more or less
            sep = b"," if b"," in rest else b" "
            vals = rest.split(sep)
            j = draw(st.integers(1, len(vals) - 1))
            vals = vals[:j] + vals[j + 1:] if draw(st.booleans()) else vals[:j] + [b"7"] + vals[j:]
            line = head + sep.join(vals)
        elif op == 3:                                 # a head field more or less
            fields = head.split(b",")
            j = draw(st.integers(1, len(fields) - 2))
            fields = fields[:j] + fields[j + 1:] if draw(st.booleans()) else fields[:j] + [b"0"] + fields[j:]
            line = b",".join(fields) + rest
        elif op == 4:                                 # something after the payload
            line = line + draw(st.sampled_from([b",x", b",1,2", b" ", b"x", b'"', b"]", b"\r", b",CSI_DATA,1"]))
        elif op == 5:                                 # a blank or log line, or a line break style
            lines.insert(i, draw(st.sampled_from([b"", b"  ", b"I (1) wifi: hi", b"\x1b[0m"])))
            continue
        elif op == 6:                                 # the header's names
            if i == 0 or not lines[0].startswith(b"type"):
                continue
            line = tok + line
        else:                                         # two records glued, or one cut
            line = line + lines[(i + 1) % len(lines)] if draw(st.booleans()) else line[:draw(
                st.integers(0, len(line)))]
        lines[i] = line
    end = draw(st.sampled_from([b"\n", b"\r\n", b""]))
    return end.join(lines) + end


def _same_capture(a, b):
    if a.packets == 0 or b.packets == 0:
        assert a.packets == b.packets == 0
    else:
        _same(a, b)
        assert np.array_equal(a.seq, b.seq) and a.part == b.part
        assert a.secondary_channel == b.secondary_channel and a.bandwidth_mhz == b.bandwidth_mhz
    assert a.skipped == b.skipped and dict(a.notes) == dict(b.notes)


@FUZZ
@given(plain_logs(), st.sampled_from(["auto", "esp-csi", "esp32-csi-tool"]))
def test_plain_logs_fast_framing_agrees_with_the_general_path(data, fmt):
    fast = parse_esp_csi_bytes(data, format=fmt, require=False)
    old = esp_csi._FAST_MAX
    esp_csi._FAST_MAX = -1                                 # every text framed line by line
    try:
        general = parse_esp_csi_bytes(data, format=fmt, require=False)
    finally:
        esp_csi._FAST_MAX = old
    _same_capture(fast, general)
    ref, ref_skipped = _by_line(data, fmt)                   # and the strict rules, record by record
    assert fast.skipped == ref_skipped and (fast.packets == 0) == (ref is None)
    if ref is not None:   # (not the format: one-record batches weigh flavours differently)
        ref.format = fast.format
        _same(fast, ref)


def test_plain_framing_is_taken_only_for_whole_records():
    for name, lines in PLAIN.items():
        text = clean_text(b"\n".join(lines) + b"\n")
        got = esp_csi._plain_records(text, "auto")
        assert got is not None, name
        sch, heads, pays = got
        col = Collector()
        for line in text.split(b"\n"):
            col.add_line(line)
        assert len(col.groups) == 1, "the collector makes one group of the same schema"
        got_sch, (seq, h, p, t) = next(iter(col.groups.items()))
        assert (got_sch.head, got_sch.tail, got_sch.flavor) == (sch.head, sch.tail, sch.flavor)
        assert (h, p, t, seq) == (heads, pays, [b""] * len(heads), list(range(len(heads))))
    one = PLAIN["tool"][0]
    for bad in [one + b"\n\n" + one, one + b",x", one[:-1], one.replace(b",[", b"[", 1), one + one,
                b"I (1) hi\n" + one, one.replace(b"[", b"[CSI_DATA,", 1), one.replace(b" ]", b" ] 1 ]", 1),
                one + b"\n" + PLAIN["espcsi"][1]]:
        assert esp_csi._plain_records(clean_text(bad), "auto") is None, bad[:60]


def test_direct_reader_is_loadtxt():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n, L = int(rng.integers(1, 6)), int(rng.integers(1, 9))
        vals = rng.integers(-128, 128, (n, L))
        for sep in (b" ", b","):
            lines = [sep.join(str(v).encode() for v in row) for row in vals]
            got = esp_csi._loadtxt(lines, np.dtype(np.int8), None if sep == b" " else ",", None, 2)
            want = np.loadtxt(lines, dtype=np.int8, delimiter=None if sep == b" " else ",", comments=None, ndmin=2,
                              encoding="latin-1")
            assert got.dtype == want.dtype and np.array_equal(got, want)
    sch = esp_csi.POSITIONAL[25]
    heads = [ln[:ln.index(b",[")] for ln in PLAIN["tool"]]
    got = esp_csi._loadtxt(heads, sch.loadtxt_dtype, ",", sch.usecols, 1)
    want = np.loadtxt(heads, dtype=sch.loadtxt_dtype, delimiter=",", usecols=sch.usecols, comments=None, ndmin=1,
                      encoding="latin-1")
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_frame_line_never_raises_on_odd_lines():
    for line in [b"", b"CSI_DATA,", b"CSI_DATA,[", b"CSI_DATA,]", b"CSI_DATA,][", b"type,data", b"type,,data,x",
                 b"xxCSI_DATA,1,[1]CSI_DATA,2,[2]", b'CSI_DATA,"[1,2]"', b"\x00" * 20, b"TYPE,ID,DATA"]:
        frame_line(line)


# ---- the C text conversions (rfedge._csitext) against numpy's ------------------------------------

def _everything(cap):
    if cap.packets == 0:
        return cap.format, dict(cap.skipped), dict(cap.notes)
    return (cap.format, cap.packets, cap.raw.dtype.str, cap.raw.tobytes(), cap.csi.tobytes(),
            cap.timestamps_us.tobytes(), cap.part, cap.subcarriers.tolist(), cap.bandwidth_mhz, cap.secondary_channel, cap.seq.tolist(),
            dict(cap.skipped), dict(cap.notes), list(cap.meta),     # the columns in the same order too
            {k: (v.dtype.str, v.tobytes() if v.dtype.kind in "iuf" else v.tolist()) for k, v in cap.meta.items()})


@FUZZ
@given(st.one_of(dirty_logs().map(lambda case: case[1]), plain_logs()),
       st.sampled_from(["auto", "esp-csi", "esp32-csi-tool"]), st.booleans())
def test_c_and_numpy_conversions_give_the_same_capture(data, fmt, vector):
    c = esp_csi._load_csitext()
    if c is None:
        pytest.skip("rfedge._csitext is not built")
    old = esp_csi._csitext, esp_csi._SMALL
    esp_csi._SMALL = 0 if vector else 1 << 30
    try:
        esp_csi._csitext = c
        got = parse_esp_csi_bytes(data, format=fmt, require=False)
        esp_csi._csitext = None
        want = parse_esp_csi_bytes(data, format=fmt, require=False)
    finally:
        esp_csi._csitext, esp_csi._SMALL = old
    assert _everything(got) == _everything(want)
