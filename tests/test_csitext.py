"""rfedge._csitext, the optional C conversions of the ESP32 text reader, against the strict rules.

The C functions must accept exactly what ``esp_csi._strict`` accepts (payload values in int8), with
the same values, and refuse everything else with ValueError, on any bytes: hypothesis feeds them
random and mutated real text (RFEDGE_FUZZ_EXAMPLES=5000 for a long run). For memory errors, run this
file with the extension built with ``-fsanitize=address,undefined`` (LD_PRELOAD the sanitizer
runtimes, PYTHONMALLOC=malloc so each bytes object is its own allocation).
"""

import os
import shutil
import sys
import sysconfig
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfedge.io import esp_csi

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FUZZ = settings(max_examples=int(os.environ.get("RFEDGE_FUZZ_EXAMPLES", 300)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


C = esp_csi._csitext
needs_c = pytest.mark.skipif(C is None, reason="rfedge._csitext is not built (no C compiler?)")


def test_extension_is_built_where_a_compiler_is():
    """`pip install -e .` builds it; a machine with a compiler must not silently run without it."""
    if C is None and _compiler():
        pytest.fail("rfedge._csitext is not built although a C compiler is here: run `pip install -e .`")
    if C is None:
        pytest.skip("no C compiler: the numpy path is used")
    assert C.API == esp_csi._CSITEXT_API
    src = Path(esp_csi.__file__).resolve().parents[1] / "_csitext.c"
    if src.exists() and Path(C.__file__).stat().st_mtime < src.stat().st_mtime:
        pytest.fail(f"{C.__file__} is older than {src.name}: rebuild it with `pip install -e .`")


def test_missing_or_stale_extension_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "rfedge._csitext", None)            # import fails
    assert esp_csi._load_csitext() is None
    stale = types.ModuleType("rfedge._csitext")
    stale.API = esp_csi._CSITEXT_API + 1                                  # another contract
    monkeypatch.setitem(sys.modules, "rfedge._csitext", stale)
    assert esp_csi._load_csitext() is None


# ---- the reference: the strict per-record rules ------------------------------------------------------

_ONE = esp_csi.Schema(("type",), None, "esp-csi")


def ref_payload(p: bytes):
    """The values ``_strict`` reads from one payload, or None when it refuses it or a value is not int8."""
    try:
        r = esp_csi._strict(_ONE, 0, b"CSI_DATA", p, b"")
    except esp_csi._Bad:
        return None
    vals = r.raw[0].tolist() if r.raw is not None else r.vals.tolist()
    return vals if all(-128 <= v <= 127 for v in vals) else None


def c_payloads(pays):
    try:
        buf, lens = C.parse_int8_lists(list(pays))
    except ValueError:
        return None
    assert isinstance(buf, bytearray) and len(lens) == len(pays) and sum(lens) == len(buf)
    vals = np.frombuffer(buf, np.int8).tolist()
    out, i = [], 0
    for n in lens:
        out.append(vals[i:i + n])
        i += n
    return out


def check_payloads(pays):
    want = [ref_payload(p) for p in pays]
    got = c_payloads(pays)
    if any(w is None for w in want):
        assert got is None, (pays, got)
    else:
        assert got == want, pays


SCHEMAS = {
    "esp-csi": esp_csi.POSITIONAL[24],
    "tool": esp_csi.POSITIONAL[25],
    # a header with columns of unknown names (kept as text) and the float column in the middle
    "header": esp_csi.schema_from_header(["type", "id", "note", "real_timestamp", "mac", "rssi", "data", "x"]),
}


def ref_head(sch, head: bytes):
    try:
        r = esp_csi._strict(sch, 0, head, b"1 2", b"")
    except esp_csi._Bad:
        return None
    num = {k: v.tobytes() + v.dtype.str.encode() for k, v in r.num.items()}
    return num, {k: list(v) for k, v in r.txt.items()}


def c_head(sch, heads):
    """What the reader makes of the C output (``_head_columns_c``), as comparable values."""
    try:
        num, txt = esp_csi._head_columns_c(sch, heads)
    except esp_csi._Slow:
        return None
    out = []
    for i in range(len(heads)):
        out.append(({k: v[i:i + 1].tobytes() + v.dtype.str.encode() for k, v in num.items()},
                    {k: [v[i]] for k, v in txt.items()}))
    return out, list(num), list(txt)


def check_heads(sch, heads):
    want = [ref_head(sch, h) for h in heads]
    got = c_head(sch, heads)
    if any(w is None for w in want):
        assert got is None, heads
        return
    assert got is not None, heads
    rows, num_keys, txt_keys = got
    assert rows == want, heads
    # columns come in head order, as the numpy reader and the strict rules give them
    assert num_keys == list(want[0][0]) and txt_keys == list(want[0][1])


# ---- payloads --------------------------------------------------------------------------------------

@needs_c
def test_payload_examples():
    ok = {b"": [], b" ": [], b"1": [1], b"101 -48 5 0 ": [101, -48, 5, 0], b"1,-2,3": [1, -2, 3],
          b" 1, ,2,,": [1, 2], b"+5": [5], b"-0": [0], b"007": [7], b"-00128": [-128], b"127 -128": [127, -128],
          b"- 5": [-5], b"+ 5,- 6": [5, -6], b"-\t5": [-5], b"1\t2\n3\r4\x0b5\x0c6": [1, 2, 3, 4, 5, 6],
          b"1\x1c2\x1f3\x854\xa05": [1, 2, 3, 4, 5], b"0" * 500 + b"9": [9]}
    for p, want in ok.items():
        assert ref_payload(p) == want, p
        assert c_payloads([p]) == [want], p
    bad = [b"128", b"-129", b"+128", b"99999999999999999999999", b"-", b"+", b"5 -", b"--5", b"- -5", b"-+5",
           b"+-5", b"5-3", b"1.5", b"1e3", b"0x1f", b"1_0", b"a", b"5\x00", b"\x00", b"\xb2", b"[1]", b"1]", b'"1"',
           b"\xc2\xa05", b"5x 6", b"\x1b[0m5"]
    for p in bad:
        assert ref_payload(p) is None, p
        assert c_payloads([p]) is None, p
        assert c_payloads([b"1 2", p, b"3"]) is None, p
    assert c_payloads([]) == []
    assert c_payloads([b"", b"1", b""]) == [[], [1], []]


@needs_c
def test_payload_and_head_argument_errors():
    for bad in [(b"1",), [b"1", "2"], [b"1", bytearray(b"2")], [None]]:
        with pytest.raises(TypeError):
            C.parse_int8_lists(bad)
    with pytest.raises(TypeError):
        C.parse_int8_lists()
    with pytest.raises(TypeError):
        C.parse_heads([b"a,1"], b"sx")
    with pytest.raises(TypeError):
        C.parse_heads([b"a,1"], b"")
    with pytest.raises(TypeError):
        C.parse_heads([b"a,1", "b,2"], b"si")
    with pytest.raises(TypeError):
        C.parse_heads((b"a,1",), b"si")


PAY_ALPHABET = [b"0", b"1", b"9", b"12", b"127", b"128", b"-", b"+", b" ", b",", b"\t", b"\xa0", b"\x85", b"\x1c",
                b"\x00", b".", b"e", b"x", b"]", b"[", b'"', b"\n", b"\r", b"\xff", b"-128", b"-129", b"00"]


@needs_c
@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=6))
def test_payloads_random_bytes(pays):
    check_payloads(pays)


@needs_c
@FUZZ
@given(st.lists(st.lists(st.sampled_from(PAY_ALPHABET), max_size=40).map(b"".join), min_size=1, max_size=6))
def test_payloads_number_flavoured_noise(pays):
    check_payloads(pays)


def _real_payloads():
    out = []
    for name in ("esp32-csi-tool_example_csi.csv", "esp-csi_csi_data_with_head.csv"):
        p = REAL / name
        if p.exists():
            for ln in p.read_bytes().splitlines()[:8]:
                if b"[" in ln and b"]" in ln:
                    out.append(ln[ln.index(b"[") + 1:ln.index(b"]")])
    if not out:   # no real data: the writer's format
        rng = np.random.default_rng(0)
        out = [",".join(map(str, rng.integers(-128, 128, 128))).encode() for _ in range(4)]
        out.append(out[0].replace(b",", b" ") + b" ")
    return out


REAL_PAYLOADS = _real_payloads()


@st.composite
def mutated_payloads(draw):
    pays = [draw(st.sampled_from(REAL_PAYLOADS)) for _ in range(draw(st.integers(1, 4)))]
    for _ in range(draw(st.integers(0, 4))):
        k = draw(st.integers(0, len(pays) - 1))
        p = pays[k]
        i = draw(st.integers(0, len(p)))
        op = draw(st.integers(0, 4))
        if op == 0:
            p = p[:i]                                                     # cut anywhere
        elif op == 1 and p:
            i = min(i, len(p) - 1)
            p = p[:i] + bytes([draw(st.integers(0, 255))]) + p[i + 1:]    # flip a byte
        elif op == 2:
            p = p[:i] + draw(st.sampled_from(PAY_ALPHABET)) + p[i:]       # insert a token piece
        elif op == 3:
            p = p[:i] + p[i + draw(st.integers(1, 5)):]                   # lose bytes
        else:
            p = p[i:]                                                     # keep the end only
        pays[k] = p
    return pays


@needs_c
@FUZZ
@given(mutated_payloads())
def test_payloads_mutated_real(pays):
    check_payloads(pays)


# ---- heads -----------------------------------------------------------------------------------------

FIELD_TOKENS = [b"", b"0", b"-73", b"+5", b"-0", b"007", b"80.363225", b"1e5", b"-1E-3", b"inf", b"-Infinity", b"nan",
                b"NaN", b"1.", b".5", b".", b"1e", b"1e999", b"-1e999", b"0x1f", b"1_0", b" 5", b"5 ", b"\t5", b"5\x00",
                b"9223372036854775807", b"-9223372036854775808", b"9223372036854775808", b"-9223372036854775809",
                b"0" * 30 + b"1", b"1" * 200, b"1." + b"5" * 200, b"3C:71:BF:6D:2A:78", b"AP", b"\xa05", b"5\xa0",
                b"\x1c5", b"\xc3\xa9", b"-", b"+", b"x" * 70, b"[", b"CSI_DATA", b"\x0b1.5", b"1.5\x0c"]


@st.composite
def heads_for(draw, sch):
    """Heads of a schema: good fields of each kind, odd tokens, random bytes, a field more or less."""
    n = draw(st.integers(1, 5))
    heads = []
    for _ in range(n):
        fields = [b"CSI_DATA"]
        odd = set(draw(st.lists(st.integers(1, len(sch.kinds) - 1), max_size=2)))   # most heads stay good
        for j, kind in enumerate(sch.kinds[1:], 1):
            r = draw(st.integers(0, 1)) if j in odd else 2
            if r == 0:
                fields.append(draw(st.sampled_from(FIELD_TOKENS)))
            elif r == 1:
                fields.append(draw(st.binary(max_size=12)).replace(b",", b""))
            elif kind == "float":
                fields.append(repr(draw(st.floats(allow_nan=True, allow_infinity=True))).encode())
            elif kind == "int":
                fields.append(str(draw(st.integers(-2 ** 64, 2 ** 64))).encode())
            else:
                fields.append(draw(st.sampled_from([b"AP", b"3C:71:BF:6D:2A:78", b"", b"x y", b"\xff"])))
        if draw(st.integers(0, 19)) == 0:
            j = draw(st.integers(1, len(fields)))
            fields = fields[:j] + fields[j + 1:] if draw(st.booleans()) else fields[:j] + [b"1"] + fields[j:]
        heads.append(b",".join(fields))
    return heads


@needs_c
def test_head_examples():
    sch = SCHEMAS["tool"]
    line = (REAL / "esp32-csi-tool_example_csi.csv")
    heads = ([ln[:ln.index(b",[")] for ln in line.read_bytes().splitlines()] if line.exists() else
             [b"CSI_DATA,AP,3C:71:BF:6D:2A:78,-73,11,1,0,1,1,1,0,0,0,0,-93,0,1,1,80272146,0,101,0,0,80.363225,384"])
    check_heads(sch, heads)
    num, txt = esp_csi._head_columns_c(sch, heads)
    assert num["rssi"][0] == -73 and num["real_timestamp"][0] == 80.363225 and txt["mac"][0] == b"3C:71:BF:6D:2A:78"
    assert num["rssi"].dtype == np.int64 and num["real_timestamp"].dtype == np.float64
    good = heads[0]
    for odd in [good + b",1", good.rsplit(b",", 1)[0], good.replace(b",-73,", b",-7 3,"),
                good.replace(b",-73,", b",-73.0,"), good.replace(b"80.363225", b"80.36_3225"),
                good.replace(b"80.363225", b" 80.363225"), good.replace(b",384", b",99999999999999999999")]:
        check_heads(sch, [good, odd])
        assert c_head(sch, [good, odd]) is None, odd
    check_heads(sch, [good.replace(b"80.363225", b"-inf"), good.replace(b",AP,", b",,")])
    assert c_head(sch, []) == ([], ["rssi", "rate", "sig_mode", "mcs", "bandwidth", "smoothing", "not_sounding",
                                    "aggregation", "stbc", "fec_coding", "sgi", "noise_floor", "ampdu_cnt", "channel",
                                    "secondary_channel", "local_timestamp", "ant", "sig_len", "rx_state",
                                    "real_time_set", "real_timestamp", "len"], ["role", "mac"])


@needs_c
@FUZZ
@given(st.sampled_from(sorted(SCHEMAS)).flatmap(lambda k: st.tuples(st.just(k), heads_for(SCHEMAS[k]))))
def test_heads_fuzzed(case):
    name, heads = case
    check_heads(SCHEMAS[name], heads)


@needs_c
@FUZZ
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=4), st.sampled_from(sorted(SCHEMAS)))
def test_heads_random_bytes(heads, name):
    check_heads(SCHEMAS[name], heads)
