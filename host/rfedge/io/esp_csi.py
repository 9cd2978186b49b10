"""ESP32 CSI console logs: esp-csi ``CSI_DATA`` (25 fields) and ESP32-CSI-Tool (26 fields).

One robust reader and the esp-csi writer. Real logs are dirty, so the reader works line by line
with one rule set, shared with the streaming parser (``rfedge.io.stream``):

* ``frame_line`` cuts a console line into records: ANSI colour codes are dropped, a line holding
  two ``CSI_DATA`` records is split at the second marker, anything before the first marker (log
  output that lost its newline) is ignored. Ordinary log lines and blank lines are not records and
  are not counted; a cut or garbled record is counted in ``skipped`` by reason.
* Columns are found by name after a header row (``type,id,mac,...,data[,extra...]``, any order, the
  payload column named ``data``/``CSI_DATA``), else by the known positional layouts: 25 fields
  (esp-csi) or 26 (ESP32-CSI-Tool). Columns after the payload are kept as metadata, named from the
  header or ``extra0``, ``extra1``...
* The payload is ``[v v ...]``, ``[ v v ...]`` or ``"[v,v,...]"``; values are the device buffer
  (int8 pairs, imaginary first). The payload is the truth: a ``len`` field that disagrees (the real
  ESP32-CSI-Tool example prints len=384 with 128 values) is kept as metadata and counted in
  ``capture.notes``, not skipped.
* The dominant layout (buffer length, secondary channel) of a file is kept; packets of other
  layouts are counted as skipped ("layout differs from dominant").
* ``first_word_invalid``: the first 4 bytes of such buffers are garbage (ESP-IDF). ``raw`` keeps
  them; in ``csi`` the subcarriers they hold are set to 0 and counted in ``capture.notes``. The flag
  comes from the ``first_word``/``first_word_invalid`` column; ESP32-CSI-Tool does not print it and
  runs only on the original ESP32, whose buffers always start with that word (see the real example:
  every line starts ``101 -48 5 0``), so there it is taken as set.

Speed: a plain log (every line one whole record of one layout, after an optional header, up to a
few hundred KiB) is framed with a few whole-text checks instead of line by line; otherwise plainly
complete lines are framed with whole-buffer numpy scans. Either way a batch of records is converted
with two ``np.loadtxt``-style reads (head columns, payloads as int8); a batch that does not convert
cleanly is bisected down to single records, and a record that does not is checked by the strict
rules. The bulk path only accepts what the strict path would accept, with the same values, and the
plain framing gives exactly the records the line framing would (both property-tested).

The text -> number conversion of a batch is done by the small C extension ``rfedge._csitext`` when it
is built (``pip install -e .`` builds it; it is optional): it implements the strict rules themselves
for a whole batch (tests/test_csitext.py compares it with ``_strict`` on fuzzed text). Without it, or
for a batch it refuses (a bad record, a value outside int8), the numpy readers above are used.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.io.capture import CsiCapture, require_packets
from rfedge.io.subcarriers import PART_NAMES, decode_esp32_buffer, esp32_buffer_layout, first_word_affects, \
    is_known_layout, part_info

_CSITEXT_API = 1   # the contract of rfedge._csitext this module expects (its API constant)


def _load_csitext():
    """The C conversions, or None (not built, or a stale build of another contract: numpy then)."""
    try:
        mod = importlib.import_module("rfedge._csitext")
    except ImportError:
        return None
    return mod if getattr(mod, "API", None) == _CSITEXT_API else None


_csitext = _load_csitext()

ESP_CSI_COLUMNS = (
    "type", "id", "mac", "rssi", "rate", "sig_mode", "mcs", "bandwidth", "smoothing", "not_sounding",
    "aggregation", "stbc", "fec_coding", "sgi", "noise_floor", "ampdu_cnt", "channel",
    "secondary_channel", "local_timestamp", "ant", "sig_len", "rx_state", "len", "first_word", "data")
CSI_TOOL_COLUMNS = (
    "type", "role", "mac", "rssi", "rate", "sig_mode", "mcs", "bandwidth", "smoothing", "not_sounding",
    "aggregation", "stbc", "fec_coding", "sgi", "noise_floor", "ampdu_cnt", "channel",
    "secondary_channel", "local_timestamp", "ant", "sig_len", "rx_state", "real_time_set",
    "real_timestamp", "len", "CSI_DATA")
FORMATS = ("esp-csi", "esp32-csi-tool")
_TEXT_FORMATS = ("auto",) + FORMATS

MARK = b"CSI_DATA,"
_DATA_NAMES = {"data", "csi_data", "csi", "csi_raw"}
_STR_COLS = {"role", "mac"}
_FLOAT_COLS = {"real_timestamp"}
_INT_COLS = (set(ESP_CSI_COLUMNS) | set(CSI_TOOL_COLUMNS) | {"first_word_invalid", "timestamp", "rx_seq",
                                                             "noise", "cwb"}) \
    - _STR_COLS - _FLOAT_COLS - {"type", "data", "CSI_DATA"}
_FIRST_WORD_COLS = ("first_word", "first_word_invalid")
_TIMESTAMP_COLS = ("local_timestamp", "timestamp")

_ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_INT_RE = re.compile(rb"[-+]?\d+")
_INT_STR = re.compile(r"[-+]?[0-9]+")
_W = 64                   # width of text columns read in bulk; a longer value goes the strict way
_SENTINEL = 9999          # out of int8 range: marks the end of each payload in a bulk conversion
_PAY_OK = b"0123456789 -"
_I64 = np.iinfo(np.int64)


class _Slow(Exception):
    """The bulk path cannot vouch for this batch: bisect."""


class _Bad(Exception):
    """One record is unusable; the message is the skip reason."""


# ---- framing: one console line -> records ----------------------------------------------------------

def clean_text(data: bytes) -> bytes:
    """Drop ANSI escape sequences and turn CR and CRLF into LF (the breaks ``splitlines`` knows).

    No escape sequence spans a line break, so cleaning a whole buffer or each line alone gives the
    same lines: the file reader cleans once, the stream cleans each complete line.
    """
    if b"\x1b" in data:
        data = _ANSI.sub(b"", data).replace(b"\x1b", b"")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data


def frame_line(line: bytes) -> list[tuple]:
    """Cut one cleaned console line (see ``clean_text``; no newline) into items.

    Items: ``("rec", head, payload, tail)`` with ``head`` the fields before the payload (starting
    ``CSI_DATA``, without the separator), ``payload`` the text between the brackets and ``tail`` the
    text after it (``b""`` or ``b",x,y"``); ``("skip", reason)`` for a cut or garbled record;
    ``("header", names)``. Ordinary log lines give ``[]``.
    """
    i = line.find(MARK)
    if i < 0:
        return _header(line)
    out = []
    if i > 0 and line.lstrip()[:5].lower() == b"type,":
        # a header (ESP32-CSI-Tool's names a column CSI_DATA), maybe with a record glued on:
        # headers hold no "[", so the record starts at the last marker before the first "["
        lb = line.find(b"[")
        i = line.rfind(MARK, 0, lb) if lb >= 0 else -1
        if i <= 0:
            return _header(line)
        out = _header(line[:i])
    while True:
        j = line.find(MARK, i + 9)
        if j < 0:
            out.append(_frame_record(line[i:] if i else line))
            return out
        out.append(_frame_record(line[i:j]))
        i = j


def _frame_record(seg: bytes) -> tuple:
    lb = seg.find(b"[")
    if lb < 0:
        return ("skip", "record truncated before payload")
    rb = seg.find(b"]", lb)
    if rb < 0:
        return ("skip", "payload truncated")
    head = seg[:lb]
    if head[-1:] == b'"':
        head = head[:-1]
    if head[-1:] != b",":
        return ("skip", "garbled record")
    return ("rec", head[:-1], seg[lb + 1:rb], _norm_tail(seg[rb + 1:]))


def _header(line: bytes) -> list[tuple]:
    s = line.strip()
    if s[:5].lower() != b"type,":
        return []
    names = [x.strip().strip(b'"').decode("ascii", "replace") for x in s.split(b",")]
    if not any(n.lower() in _DATA_NAMES for n in names):
        return []
    return [("header", names)]


def _norm_tail(tail: bytes) -> bytes:
    if tail:
        if tail[:1] == b'"':
            tail = tail[1:]
        tail = tail.rstrip()
        if tail[:1] != b",":
            tail = b""  # other output glued after a complete record
    return tail


_MARK_ARR = np.frombuffer(MARK, np.uint8)
_CLASSES = bytes(1 if b in b"\n[]_" else 0 for b in range(256))
_SMALL = 16384  # below this many bytes the per-line path is cheaper than the vector set-up


def feed_text(col: "Collector", data: bytes) -> None:
    """Feed cleaned text made of whole lines to a collector, in order.

    A line that is plainly one complete record (starts with the marker and holds no other, one
    ``[`` before one ``]``, ``,[`` or ``,"[`` before it, nothing or ``"`` or ``,extra`` after it) is
    framed here in bulk, with exactly the items ``frame_line`` would give; every other line goes
    through ``frame_line``. (tests/test_io_fuzz.py checks the two agree on mangled logs.)
    """
    if not data:
        return
    if len(data) < _SMALL:
        col.add_items([it for line in data.split(b"\n") for it in frame_line(line)])
        return
    if data[-1:] != b"\n":
        data += b"\n"
    d = np.frombuffer(data, np.uint8)
    # one scan finds line ends, brackets and "_" (bytes.translate is the fastest byte classifier)
    cls = np.frombuffer(data.translate(_CLASSES), np.bool_)  # bytes 0 or 1: a valid bool view
    hits = np.flatnonzero(cls)
    hc = d[hits]
    ends = hits[hc == 10]
    n = len(ends)
    starts = np.empty(n, np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    clean = (ends - starts) >= 11
    last = len(d) - 1
    for k in range(9):
        clean &= d[np.minimum(starts + k, last)] == _MARK_ARR[k]
    # every marker holds one "_": as many "_" as marker-led lines means no marker elsewhere
    if int((hc == 95).sum()) != int(clean.sum()) and data.count(MARK) != int(clean.sum()):
        pos, i = [], data.find(MARK)
        while i >= 0:
            pos.append(i)
            i = data.find(MARK, i + 9)
        per_line = np.bincount(np.searchsorted(ends, pos), minlength=n)
        clean &= per_line == 1
    p_lb, p_rb = hits[hc == 91], hits[hc == 93]
    l_lb, l_rb = np.searchsorted(ends, p_lb), np.searchsorted(ends, p_rb)
    clean &= (np.bincount(l_lb, minlength=n) == 1) & (np.bincount(l_rb, minlength=n) == 1)
    lb = np.zeros(n, np.int64)
    rb = np.zeros(n, np.int64)
    lb[l_lb] = p_lb
    rb[l_rb] = p_rb
    clean &= lb < rb
    c1, c2 = d[np.maximum(lb - 1, 0)], d[np.maximum(lb - 2, 0)]
    quote = (c1 == 34) & (c2 == 44)
    clean &= (c1 == 44) | quote
    a1 = d[np.minimum(rb + 1, last)]
    a2 = d[np.minimum(rb + 2, last)]
    q = a1 == 34
    tail_at = np.where(a1 == 44, rb + 1, np.where(q & (a2 == 44), rb + 2, -1))
    no_tail = (a1 == 10) | (q & (a2 == 10))
    end_ws = np.isin(d[np.maximum(ends - 1, 0)], (32, 9, 11, 12))
    clean &= no_tail | ((tail_at >= 0) & ~end_ws)
    idx = np.flatnonzero(clean)
    S, H = starts[idx].tolist(), (lb[idx] - 1 - quote[idx]).tolist()
    LB, RB = lb[idx].tolist(), rb[idx].tolist()
    heads = [data[a:b] for a, b in zip(S, H)]
    pays = [data[a + 1:b] for a, b in zip(LB, RB)]
    if no_tail[idx].all():
        tails = [b""] * len(idx)
    else:
        TA, E = np.where(no_tail[idx], -1, tail_at[idx]).tolist(), ends[idx].tolist()
        tails = [data[a:b] if a >= 0 else b"" for a, b in zip(TA, E)]
    done = 0
    for j in np.flatnonzero(~clean).tolist():
        a, b = int(starts[j]), int(ends[j])
        if a == b:
            continue  # blank line
        upto = int(np.searchsorted(idx, j))
        if upto > done:
            col.add_records(heads[done:upto], pays[done:upto], tails[done:upto])
            done = upto
        col.add_line(data[a:b])
    if done < len(idx):
        col.add_records(heads[done:], pays[done:], tails[done:])


# ---- schemas: which column is which --------------------------------------------------------------

@dataclass(frozen=True, eq=False)  # identity hash: schemas are dict keys on the per-line path
class Schema:
    head: tuple            # names of the fields before the payload; head[0] is "type"
    tail: tuple | None     # names after the payload (from a header), None: positional extras
    flavor: str            # esp-csi | esp32-csi-tool

    def __post_init__(self):
        kinds = tuple(_kind(n, i) for i, n in enumerate(self.head))
        object.__setattr__(self, "kinds", kinds)
        # one structured row for np.loadtxt over the fields after "type": integers and floats parsed,
        # everything else kept as text. A run of integer fields is one sub-array field (one view
        # instead of one per column); ``steps`` turns the fields back into columns in head order.
        fields, steps = [], []
        j, nf = 1, len(self.head)
        while j < nf:
            k = j + 1
            if kinds[j] == "int":
                while k < nf and kinds[k] == "int":
                    k += 1
            f = f"f{j}"
            if k - j > 1:
                fields.append((f, np.int64, (k - j,)))
                steps.append((f, self.head[j:k], True))
            else:
                fields.append((f, np.int64 if kinds[j] == "int" else np.float64 if kinds[j] == "float"
                               else f"S{_W}"))
                steps.append((f, self.head[j], kinds[j] in ("int", "float")))
            j = k
        object.__setattr__(self, "loadtxt_dtype", np.dtype(fields) if fields else None)
        object.__setattr__(self, "steps", tuple(steps))
        object.__setattr__(self, "text_slack", len("CSI_DATA") + (nf - 1) + sum(k in ("int", "float") for k in kinds))
        object.__setattr__(self, "usecols", list(range(1, nf)))
        # for rfedge._csitext.parse_heads: one letter per field, and where each column lands
        letter = {"skip": "s", "int": "i", "float": "f"}
        c_kinds = "".join(letter.get(k, "t") for k in kinds)
        cols, seen = [], Counter()
        for name, c in zip(self.head, c_kinds):
            if c != "s":
                cols.append((name, c, seen[c]))
                seen[c] += 1
        object.__setattr__(self, "c_kinds", c_kinds.encode())
        object.__setattr__(self, "c_cols", tuple(cols))
        object.__setattr__(self, "c_counts", (seen["i"], seen["f"]))


def _kind(name: str, i: int) -> str:
    if i == 0:
        return "skip"
    if name in _STR_COLS:
        return "str"
    if name in _FLOAT_COLS:
        return "float"
    if name in _INT_COLS:
        return "int"
    return "auto"


POSITIONAL = {
    len(ESP_CSI_COLUMNS) - 1: Schema(ESP_CSI_COLUMNS[:-1], None, "esp-csi"),
    len(CSI_TOOL_COLUMNS) - 1: Schema(CSI_TOOL_COLUMNS[:-1], None, "esp32-csi-tool"),
}


def schema_from_header(names: list[str]) -> Schema | None:
    lower = [n.lower() for n in names]
    d = next(i for i, n in enumerate(lower) if n in _DATA_NAMES)
    if d == 0 or lower[0] != "type":
        return None
    seen, uniq = set(), []
    for i, n in enumerate(names):  # columns become dict keys: empty or repeated names get a suffix
        n = n or f"col{i}"
        while n in seen:
            n += "_"
        seen.add(n)
        uniq.append(n)
    head = tuple(uniq[:d])
    flavor = "esp32-csi-tool" if ("real_timestamp" in head or "role" in head) else "esp-csi"
    return Schema(head, tuple(uniq[d + 1:]), flavor)


def route(header: Schema | None, format: str, nf: int, tail: bytes):
    """The schema of a record with ``nf`` head fields, or the reason it has none.

    A header wins when the record matches it; otherwise a known positional layout is used, so a
    garbled header does not cost the whole file.
    """
    h = header
    if h is not None and nf == len(h.head) and tail.count(b",") == len(h.tail):
        return h
    p = POSITIONAL.get(nf)
    if p is not None and (format == "auto" or p.flavor == format):
        return p
    return "field count differs from header" if h is not None else "unexpected field count"


class Collector:
    """Framed records grouped by schema, plus skip counts. Fed line by line (file or stream)."""

    def __init__(self, format: str = "auto"):
        if format not in _TEXT_FORMATS:
            raise ValueError(f"unknown text format {format!r}")
        self.format = format
        self.header: Schema | None = None
        self.skipped: Counter = Counter()
        self.groups: dict[Schema, tuple[list, list, list, list]] = {}
        self.seq = 0

    def add_line(self, line: bytes) -> None:
        self.add_items(frame_line(line))

    def add_items(self, items: list) -> None:
        """Items from ``frame_line``, in order; runs of records go in bulk."""
        run = []
        for item in items:
            if item[0] == "rec":
                run.append(item)
                continue
            if run:
                self._add_run(run)
                run = []
            if item[0] == "skip":
                self.skipped[item[1]] += 1
            else:
                sch = schema_from_header(item[1])
                if sch is not None:
                    self.header = sch
        if run:
            self._add_run(run)

    def _add_run(self, run: list) -> None:
        if len(run) == 1:
            self._add(run[0][1], run[0][2], run[0][3])
        else:
            _, heads, pays, tails = zip(*run)
            self.add_records(list(heads), list(pays), list(tails))

    def _route(self, nf: int, tail: bytes):
        return route(self.header, self.format, nf, tail)

    def add_records(self, heads: list, pays: list, tails: list) -> None:
        """Framed records in bulk; same rules as one ``_add`` per record."""
        k = len(heads)
        counts = [h.count(b",") for h in heads]
        c = counts[0] if k else 0
        h = self.header
        uniform = k >= 4 and counts.count(c) == k
        if uniform and h is not None and c + 1 == len(h.head):
            want = len(h.tail)
            uniform = (not any(tails)) if want == 0 else all(t.count(b",") == want for t in tails)
        if not uniform:
            for hd, p, t in zip(heads, pays, tails):
                self._add(hd, p, t)
            return
        sch = self._route(c + 1, tails[0])
        if isinstance(sch, str):
            self.skipped[sch] += k
            return
        g = self.groups.get(sch)
        if g is None:
            g = self.groups[sch] = ([], [], [], [])
        g[0].extend(range(self.seq, self.seq + k))
        g[1].extend(heads)
        g[2].extend(pays)
        g[3].extend(tails)
        self.seq += k

    def _add(self, head: bytes, payload: bytes, tail: bytes) -> None:
        sch = self._route(head.count(b",") + 1, tail)
        if isinstance(sch, str):
            self.skipped[sch] += 1
            return
        g = self.groups.get(sch)
        if g is None:
            g = self.groups[sch] = ([], [], [], [])
        g[0].append(self.seq)
        g[1].append(head)
        g[2].append(payload)
        g[3].append(tail)
        self.seq += 1

    def take(self) -> list["Rows"]:
        """Decode and clear everything collected so far (skips of bad records land in ``skipped``)."""
        out = []
        for sch, (seq, heads, pays, tails) in self.groups.items():
            out.append(decode_records(sch, seq, heads, pays, tails, self.skipped))
        self.groups = {}
        return out


# ---- decoding: records -> columns ----------------------------------------------------------------

@dataclass
class Rows:
    """Decoded records of one schema: payloads and fields as columns.

    Payloads are either ``raw`` (int8 [n, L], all the same length) or ``vals``/``starts``/``lens``
    (int64 values back to back, for batches of mixed or out-of-range payloads).
    """

    schema: Schema
    seq: np.ndarray        # record order in the input
    raw: np.ndarray | None
    vals: np.ndarray | None
    starts: np.ndarray | None
    lens: np.ndarray | None
    num: dict              # name -> int64/float64 [n]
    txt: dict              # name -> bytes [n] (string and unknown columns; list or 'S' array)
    tails: list            # text after the payload, per record

    def __len__(self):
        return len(self.seq)


def decode_records(sch: Schema, seq, heads, pays, tails, skipped: Counter) -> Rows:
    chunks: list[Rows] = []
    _bisect(sch, seq, heads, pays, tails, skipped, chunks)
    return _concat(sch, chunks)


def _bisect(sch, seq, heads, pays, tails, skipped, chunks) -> None:
    if not heads:
        return
    if len(heads) == 1:
        try:   # the bulk reader is cheaper for one record too; it accepts only what _strict would
            chunks.append(_bulk(sch, seq, heads, pays, tails))
            return
        except _Slow:
            pass
        try:
            chunks.append(_strict(sch, seq[0], heads[0], pays[0], tails[0]))
        except _Bad as e:
            skipped[str(e)] += 1
        return
    try:
        chunks.append(_bulk(sch, seq, heads, pays, tails))
    except _Slow:
        h = len(heads) // 2
        _bisect(sch, seq[:h], heads[:h], pays[:h], tails[:h], skipped, chunks)
        _bisect(sch, seq[h:], heads[h:], pays[h:], tails[h:], skipped, chunks)


def _make_loadtxt():
    """``np.loadtxt(lines, dtype, delimiter, usecols, comments=None, ndmin, encoding="latin-1")``.

    ``lines`` is a list of bytes lines. numpy's C reader is called the way np.loadtxt calls it,
    without the wrapper's fixed cost (several µs: much of a small file's time), when this numpy has
    it and it gives the very same arrays on a probe; else np.loadtxt itself (also for any result
    np.loadtxt would reshape, and so for no rows)."""
    def public(lines, dt, delimiter, usecols, ndmin):
        return np.loadtxt(lines, dtype=dt, delimiter=delimiter, usecols=usecols, comments=None, ndmin=ndmin,
                          encoding="latin-1")
    try:
        from numpy._core._multiarray_umath import _load_from_filelike as read
    except ImportError:
        return public

    def direct(lines, dt, delimiter, usecols, ndmin):
        a = read(iter(lines), delimiter=delimiter, comment=None, quote=None, imaginary_unit="j", usecols=usecols,
                 skiplines=0, max_rows=-1, converters=None, dtype=dt, encoding="latin-1", filelike=False,
                 byte_converters=False)
        return a if a.ndim == ndmin and len(a) else public(lines, dt, delimiter, usecols, ndmin)

    head = np.dtype([("a", np.int64, (2,)), ("b", np.float64), ("c", "S8")])
    probes = [([b"x,-5,7,1.5,ab", b"y,0,9223372036854775807,-0.25,"], head, ",", [1, 2, 3, 4], 1),
              ([b"1 -2 3", b"127 -128 0"], np.dtype(np.int8), None, None, 2),
              ([b"1,-2,3"], np.dtype(np.int8), ",", None, 2)]
    try:
        for lines, dt, delimiter, usecols, ndmin in probes:
            x, y = direct(lines, dt, delimiter, usecols, ndmin), public(lines, dt, delimiter, usecols, ndmin)
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                return public
    except Exception:  # noqa: BLE001 - any surprise: the public function
        return public
    return direct


_loadtxt = _make_loadtxt()
_I8 = np.dtype(np.int8)

# loadtxt (reading latin-1) forgives whitespace around numbers and a "+" sign; the strict rules do
# not, so a head holding any of these goes the strict way. translate(None, _NO_BULK) keeps them.
_LOOSE = ({b for b in range(256) if chr(b).isspace()} | set(b"+\x00")) - {10}   # "\n" joins the heads
_NO_BULK = bytes(set(range(256)) - _LOOSE)


def _head_columns(sch: Schema, heads: list) -> tuple[dict, dict]:
    """All head columns of a batch in one ``np.loadtxt`` call (it also proves no row lacks a field)."""
    if _csitext is not None:
        return _head_columns_c(sch, heads)
    dt = sch.loadtxt_dtype
    hb = b"\n".join(heads)
    # loadtxt forgives spaces, "+" signs and NULs in numbers that the strict rules refuse
    if hb.translate(None, _NO_BULK):
        raise _Slow
    try:
        a = _loadtxt(heads, dt, ",", sch.usecols, 1)
    except (ValueError, OverflowError, UnicodeError, TypeError):
        raise _Slow from None
    if len(a) != len(heads):
        raise _Slow
    num, txt = {}, {}
    longest = -1
    for f, name, numeric in sch.steps:
        col = a[f]
        if numeric:
            if name.__class__ is tuple:   # a run of integer columns: one view per column
                num.update(zip(name, col.T))
            else:
                num[name] = col
            continue
        if longest < 0:   # a text field is at most a head less "CSI_DATA", commas, numbers (>= 1 char)
            longest = max(map(len, heads)) - sch.text_slack
        if longest >= _W and _full_slots(col):
            raise _Slow  # maybe cut short
        txt[name] = col
    return num, txt


def _head_columns_c(sch: Schema, heads: list) -> tuple[dict, dict]:
    """``_head_columns`` by the C reader: the strict rules themselves, so a refusal means a bad record."""
    try:
        ib, fb, texts = _csitext.parse_heads(heads if heads.__class__ is list else list(heads), sch.c_kinds)
    except ValueError:
        raise _Slow from None
    n = len(heads)
    ni, nf = sch.c_counts
    ints = np.frombuffer(ib, np.int64).reshape(ni, n) if ni else None
    floats = np.frombuffer(fb, np.float64).reshape(nf, n) if nf else None
    num, txt = {}, {}
    for name, c, j in sch.c_cols:
        if c == "i":
            num[name] = ints[j]
        elif c == "f":
            num[name] = floats[j]
        else:
            txt[name] = texts[j]
    return num, txt


def _full_slots(col: np.ndarray) -> bool:
    """Whether a text column read as S{_W} holds a value that fills its slot (so maybe cut short):
    the same as ``np.char.str_len(col).max() >= _W``, cheaper (S values are NUL padded)."""
    if not len(col):
        return False
    return bool(np.ascontiguousarray(col).view(np.uint8).reshape(len(col), -1)[:, -1].any())


def _payloads(pays: list):
    """(raw int8 [n, L], None) when all payloads read cleanly and are equally long, else
    (None, (vals, starts, lens)) with int64 values (a 0 gap after each payload from numpy)."""
    if _csitext is not None:
        try:
            buf, lens = _csitext.parse_int8_lists(pays if pays.__class__ is list else list(pays))
        except ValueError:
            pass  # a bad record or a value outside int8: numpy sorts it out below
        else:
            n, L = len(pays), lens[0]
            if L and lens.count(L) == n:
                return np.frombuffer(buf, np.int8).reshape(n, L), None
            ln = np.array(lens, np.int64)
            starts = np.zeros(n, np.int64)
            np.cumsum(ln[:-1], out=starts[1:])
            return None, (np.frombuffer(buf, np.int8).astype(np.int64), starts, ln)
    comma = b"," in pays[0]
    try:
        # loadtxt refuses anything but [+-]digits between separators, and values outside int8
        raw = _loadtxt(pays, _I8, "," if comma else None, None, 2)
        if len(raw) == len(pays):
            return raw, None
    except (ValueError, OverflowError):
        pass  # ragged, out of int8 or odd text: one by one below
    # each payload followed by a sentinel (9999, outside int8) marking its end
    blob = b" 9999 ".join(pays) + b" 9999"
    if b"," in blob:
        blob = blob.replace(b",", b" ")
    if blob.translate(None, _PAY_OK):
        raise _Slow
    try:
        vals = np.fromstring(blob, dtype=np.int64, sep=" ")
    except ValueError:
        raise _Slow from None
    ends = np.flatnonzero(vals == _SENTINEL)
    if len(ends) != len(pays):
        raise _Slow
    vals[ends] = 0
    starts = np.empty(len(pays), np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    return None, (vals, starts, ends - starts)


def _bulk(sch: Schema, seq, heads, pays, tails) -> Rows:
    """Convert a batch with a few numpy calls, or raise _Slow if it cannot vouch for every record."""
    num, txt = _head_columns(sch, heads)
    raw, ragged = _payloads(pays)
    vals, starts, lens = ragged if ragged is not None else (None, None, None)
    return Rows(sch, np.asarray(seq, np.int64), raw, vals, starts, lens, num, txt, list(tails))


def _strict(sch: Schema, seq, head, payload, tail) -> Rows:
    """The reference rules for one record; the bulk path must agree wherever it accepts."""
    fields = head.split(b",")
    if len(fields) != len(sch.head):
        raise _Bad("unexpected field count")
    num, txt = {}, {}
    for name, kind, f in zip(sch.head, sch.kinds, fields):
        if kind == "int":
            if not _INT_RE.fullmatch(f):
                raise _Bad("bad number")
            v = int(f)
            if not (_I64.min <= v <= _I64.max):
                raise _Bad("bad number")
            num[name] = np.array([v], np.int64)
        elif kind == "float":
            v = _float_or_none(f)
            if v is None:
                raise _Bad("bad number")
            num[name] = np.array([v], np.float64)
        elif kind != "skip":
            txt[name] = [f]
    # tokens split as numpy's readers split them: on any whitespace a latin-1 text knows
    toks = payload.decode("latin-1").replace(",", " ").split()
    vals = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in ("-", "+") and i + 1 < len(toks):  # "- 5" reads as -5, as numpy's text reader does
            i += 1
            t = t + toks[i]
        if not _INT_STR.fullmatch(t):
            raise _Bad("bad number")
        vals.append(int(t))
        i += 1
    seqa = np.array([seq], np.int64)
    if vals and all(-128 <= v <= 127 for v in vals):
        return Rows(sch, seqa, np.array([vals], np.int8), None, None, None, num, txt, [tail])
    if not all(_I64.min <= v <= _I64.max for v in vals):
        raise _Bad("value out of int8 range")
    v = np.array(vals, np.int64) if vals else np.zeros(0, np.int64)
    return Rows(sch, seqa, None, v, np.zeros(1, np.int64), np.array([len(vals)], np.int64), num, txt, [tail])


def _float_or_none(f: bytes) -> float | None:
    # Python's float grammar is numpy's (1e5, inf, nan...) less "_", non-ASCII digits and padding
    if not f or not f.isascii() or b"_" in f or f != f.strip():
        return None
    try:
        return float(f)
    except ValueError:
        return None


def _as_ragged(r: Rows):
    if r.raw is None:
        return r.vals, r.starts, r.lens
    n, L = r.raw.shape
    return r.raw.astype(np.int64).ravel(), np.arange(n, dtype=np.int64) * L, np.full(n, L, np.int64)


def _concat(sch: Schema, chunks: list[Rows]) -> Rows:
    if len(chunks) == 1:
        return chunks[0]
    if not chunks:
        e = np.zeros(0, np.int64)
        return Rows(sch, e, None, e, e, e, {}, {}, [])
    num = {k: np.concatenate([c.num[k] for c in chunks]) for k in chunks[0].num}
    txt = {k: [x for c in chunks for x in c.txt[k]] for k in chunks[0].txt}
    seq = np.concatenate([c.seq for c in chunks])
    tails = [t for c in chunks for t in c.tails]
    if all(c.raw is not None for c in chunks) and len({c.raw.shape[1] for c in chunks}) == 1:
        return Rows(sch, seq, np.concatenate([c.raw for c in chunks]), None, None, None, num, txt, tails)
    parts = [_as_ragged(c) for c in chunks]
    offs = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
    return Rows(sch, seq, None, np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] + o for p, o in zip(parts, offs)]), np.concatenate([p[2] for p in parts]),
                num, txt, tails)


# ---- assembly: columns -> captures --------------------------------------------------------------

def _unwrap_us(t: np.ndarray) -> np.ndarray:
    """Device timestamps are uint32 microseconds: undo the wrap every ~71.6 minutes."""
    out = t.astype(np.float64)
    if len(t) > 1 and t.dtype.kind in "iu":
        d = t[1:] - t[:-1]
        if d.min() < -(2 ** 31) and t.min() >= 0 and t.max() < 2 ** 32:
            out[1:] += np.cumsum(d < -(2 ** 31)) * 2.0 ** 32
    return out


def _text_column(vals) -> np.ndarray:
    """Unknown and extra columns: integers if all are, else floats if all are, else strings."""
    vals = [bytes(v) for v in vals]
    if vals and all(_INT_RE.fullmatch(v) for v in vals):
        ints = [int(v) for v in vals]
        if all(_I64.min <= v <= _I64.max for v in ints):
            return np.array(ints, dtype=np.int64)
    floats = [_float_or_none(v) for v in vals]
    if vals and None not in floats:
        return np.array(floats, dtype=np.float64)
    return _str_column(vals)


def _str_column(col) -> np.ndarray:
    if isinstance(col, np.ndarray):
        col = col.tolist()
    if col and col.count(col[0]) == len(col):  # one MAC, one role: the usual case
        s = col[0].decode("utf-8", "replace")
        out = np.empty(len(col), f"<U{len(s) or 1}")   # what np.full(len(col), s) gives, cheaper
        out.fill(s)
        return out
    try:
        return np.array(col, dtype=bytes).astype(str)  # ASCII: vectorized
    except UnicodeDecodeError:
        return np.array([x.decode("utf-8", "replace") for x in col], dtype=str)


def build_captures(rows_list: list[Rows], part: str, skipped: Counter, source: str = "",
                   keep: str = "dominant") -> list[CsiCapture]:
    """Turn decoded rows into captures: one (the dominant layout) or one per layout (``keep='all'``).

    Packets that cannot be used are counted in ``skipped``; packets keep their input order.
    """
    if part != "auto" and part not in PART_NAMES:
        raise RfedgeError(f"unknown part {part!r} (expected auto, {', '.join(PART_NAMES)})")
    if len(rows_list) == 1:   # the usual case: one batch of one layout (same outcome, less work)
        r = rows_list[0]
        n = len(r.seq)
        if n and r.raw is not None:
            sc = r.num.get("secondary_channel")
            if sc is None or n == 1 or not np.count_nonzero(sc != sc[0]):
                key = (r.raw.shape[1], 0 if sc is None else int(sc[0]))
                why = _layout_problem(key, part)
                if why:
                    skipped[why] += n
                    return []
                return [_capture(rows_list, [(0, None)], key, part, source)]
    per_key: dict[tuple[int, int], list] = {}   # layout -> [(group, row indices or None for all)]
    first_seq: dict[tuple[int, int], int] = {}
    for gi, r in enumerate(rows_list):
        n = len(r.seq)
        if n == 0:
            continue
        sc = r.num.get("secondary_channel")
        if sc is None:
            sc = np.zeros(n, np.int64)
        if r.raw is not None and (n == 1 or not np.count_nonzero(sc != sc[0])):
            keys = {(r.raw.shape[1], int(sc[0])): None}   # the usual case: one layout, all rows
        else:
            L = r.lens if r.raw is None else np.full(n, r.raw.shape[1])
            bad = set()
            if r.raw is None and len(r.vals) and (r.vals.min() < -128 or r.vals.max() > 127):
                out = (r.vals < -128) | (r.vals > 127)
                bad = set((np.searchsorted(r.starts, np.flatnonzero(out), side="right") - 1).tolist())
                skipped["value out of int8 range"] += len(bad)
            keys = {}
            for i, (li, si) in enumerate(zip(L.tolist(), sc.tolist())):
                if i not in bad:
                    keys.setdefault((li, si), []).append(i)
        for key, idx in keys.items():
            cnt = n if idx is None else len(idx)
            why = _layout_problem(key, part)
            if why:
                skipped[why] += cnt
                continue
            per_key.setdefault(key, []).append((gi, idx))
            s = int(r.seq[0 if idx is None else idx[0]])
            first_seq[key] = min(first_seq.get(key, s), s)
    if not per_key:
        return []
    counts = {k: sum(len(rows_list[g].seq) if ix is None else len(ix) for g, ix in v) for k, v in per_key.items()}
    order = sorted(per_key, key=lambda k: (-counts[k], first_seq[k]))
    if keep == "dominant":
        for k in order[1:]:
            skipped["layout differs from dominant"] += counts[k]
        order = order[:1]
    return [_capture(rows_list, per_key[k], k, part, source) for k in order]


@lru_cache(maxsize=256)
def _layout_problem(key, part) -> str | None:
    L, sc = key
    if L == 0:
        return "empty payload"
    if L % 2:
        return "odd payload length"
    if not is_known_layout(L, sc):
        return "unknown buffer length"
    if part != "auto" and part not in [p.name for p in esp32_buffer_layout(L, sc)]:
        return f"no {part} field in buffer"
    return None


def _payload_matrix(r: Rows, idx, L: int) -> np.ndarray:
    if r.raw is not None:
        return r.raw if idx is None else r.raw[idx]
    if idx is None:
        idx = np.arange(len(r.seq))
    return r.vals[r.starts[idx][:, None] + np.arange(L)].astype(np.int8)


def _first_word(r: Rows, idx):
    """Per-row first-word flags (bool array), or one bool for all rows when no column says."""
    for c in _FIRST_WORD_COLS:
        fw = r.num.get(c)
        if fw is not None:
            return (fw if idx is None else fw[idx]) != 0
    return r.schema.flavor == "esp32-csi-tool"


def _capture(rows_list, sel, key, part, source) -> CsiCapture:
    L, sc = key
    fw_hits = first_word_affects(L, sc, part)
    if len(sel) == 1:   # the usual case: one batch, nothing to stack or reorder
        gi, idx = sel[0]
        r = rows_list[gi]
        raw = _payload_matrix(r, idx, L)
        n = len(raw)
        seq = r.seq if idx is None else r.seq[idx]
        fw = _first_word(r, idx) if fw_hits else None
        if idx is None and not r.schema.tail and not any(r.tails):
            # no extra columns to split: _merge_columns' rules for one batch, directly
            meta = dict(r.num)
            for k, v in r.txt.items():
                v = v.tolist() if isinstance(v, np.ndarray) else v
                if k in meta:
                    k = k + "_text"
                meta[k] = _str_column(v) if k in _STR_COLS else _text_column(v)
        else:
            meta = _merge_columns([_columns(r, idx)], [n], None)
        flavor = r.schema.flavor
    else:
        raws, seqs, fws, parts, flavors = [], [], [], [], []
        for gi, idx in sel:
            r = rows_list[gi]
            cnt = len(r.seq) if idx is None else len(idx)
            raws.append(_payload_matrix(r, idx, L))
            seqs.append(r.seq if idx is None else r.seq[idx])
            f = _first_word(r, idx)
            fws.append(np.full(cnt, f) if isinstance(f, bool) else f)
            parts.append(_columns(r, idx))
            flavors.append((cnt, r.schema.flavor))
        seq = np.concatenate(seqs)
        order = np.argsort(seq, kind="stable")
        seq = seq[order]
        raw = np.concatenate(raws)[order]
        n = len(raw)
        fw = np.concatenate(fws)[order] if fw_hits else None
        meta = _merge_columns(parts, [len(x) for x in raws], order)
        flavor = max(flavors)[1]
    csi, subs = decode_esp32_buffer(raw, sc, part, first_word_invalid=fw)
    p = part_info(L, sc, part)
    ts = None
    for c in _TIMESTAMP_COLS:
        t = meta.get(c)
        if t is not None and t.dtype.kind in "iuf":
            ts = t
            break
    timestamps = _unwrap_us(ts) if ts is not None else np.full(n, np.nan)
    notes = Counter()
    cap = CsiCapture(format=flavor, csi=csi[:, None, :], subcarriers=subs, timestamps_us=timestamps,
                     raw=raw, part=p.name, bandwidth_mhz=p.bandwidth_mhz, secondary_channel=int(sc),
                     meta=meta, source=source, notes=notes)
    ln = meta.get("len")
    if ln is not None and ln.dtype.kind in "iu":
        k = int(np.count_nonzero(ln != L))
        if k:
            notes["len field differs from payload (payload kept)"] = k
    if fw is not None:
        k = (n if fw else 0) if isinstance(fw, bool) else int(np.count_nonzero(fw))
        if k:
            notes["first word invalid (its subcarriers set to 0 in csi)"] = k
    cap.seq = seq  # record order in the input (the stream merges layouts by it)
    return cap


def _columns(r: Rows, idx):
    """(numeric columns, text columns as bytes lists, positional extras split or None) of rows."""
    if idx is None:
        num = dict(r.num)
        txt = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in r.txt.items()}
        tails = r.tails
    else:
        num = {k: v[idx] for k, v in r.num.items()}
        txt = {}
        for k, v in r.txt.items():
            v = v.tolist() if isinstance(v, np.ndarray) else v
            txt[k] = [v[i] for i in idx]
        tails = [r.tails[i] for i in idx]
    if r.schema.tail is None:
        if not any(tails):
            return num, txt, [[]] * len(tails)   # no extras (read only: one shared empty list)
        return num, txt, [t[1:].split(b",") if t else [] for t in tails]
    if r.schema.tail:
        split = [t[1:].split(b",") if t else [] for t in tails]
        for j, name in enumerate(r.schema.tail):
            txt[name] = [s[j].strip() if j < len(s) else b"" for s in split]
    return num, txt, None


def _merge_columns(parts: list, sizes: list[int], order) -> dict:
    """Stack the columns of several batches (kinds decided once, over the whole column).

    A column some batches lack is filled (NaN or empty text), not dropped. Positional extra
    columns are as many as most records have.
    """
    total = sum(sizes)
    if len(parts) == 1:
        pos = parts[0][2] or []
    else:
        pos = [s for (_, _, sp), n in zip(parts, sizes) for s in (sp if sp is not None else [None] * n)]
    if any(pos):
        widths = Counter(len(s) for s in pos if s is not None)
        width = max(widths.items(), key=lambda kv: (kv[1], kv[0]))[0]
        extra = {f"extra{j}": [s[j].strip() if s and j < len(s) else b"" for s in pos] for j in range(width)}
    else:
        extra = {}
    if len(parts) == 1:
        meta = dict(parts[0][0])
        texts = dict(parts[0][1])
    else:
        meta, texts = _stack(parts, sizes, order)
    if extra and order is not None:
        extra = {k: [v[i] for i in order] for k, v in extra.items()}
    texts.update(extra)
    for k, vals in texts.items():
        if k in meta:  # a text column named like a numeric one: keep both apart
            k = k + "_text"
        assert len(vals) == total
        meta[k] = _str_column(vals) if k in _STR_COLS else _text_column(vals)
    return meta


def _stack(parts, sizes, order):
    meta = {}
    for k in dict.fromkeys(k for num, _, _ in parts for k in num):
        cols = [num[k] if k in num else np.full(n, np.nan) for (num, _, _), n in zip(parts, sizes)]
        col = cols[0] if len(cols) == 1 else np.concatenate(cols)
        meta[k] = col if order is None else col[order]
    texts = {}
    for k in dict.fromkeys(k for _, txt, _ in parts for k in txt):
        vals = [x for (_, txt, _), n in zip(parts, sizes) for x in (txt[k] if k in txt else [b""] * n)]
        texts[k] = [vals[i] for i in order]
    return meta, texts


# ---- plain logs: the same records, framed with a few whole-text checks ---------------------------
#
# Most logs are plain: every line is one complete record of one layout (after an optional header).
# ``_plain_records`` proves that with a handful of C-level calls and hands the collector's exact
# records to the same decoder (decode_records); anything it cannot vouch for (log lines, blank
# lines, cut or merged records, tails, mixed layouts...) returns None and the text is framed line
# by line as usual. Below a few hundred KiB this is cheaper than the vector framer.

_FAST_MAX = 1 << 18   # bytes


def _plain_records(data: bytes, format: str) -> tuple[Schema, list, list] | None:
    """(schema, heads, payloads) of a cleaned log whose every line is one whole record of one
    layout: exactly the records the collector would gather in one group (``frame_line`` gives
    ``("rec", head, payload, b"")`` for each line), or None."""
    header = None
    body = data
    if not data.startswith(MARK):
        nl = data.find(b"\n")
        if nl < 0:
            return None
        items = frame_line(data[:nl])
        if len(items) != 1 or items[0][0] != "header":
            return None
        header = schema_from_header(items[0][1])
        if header is None:
            return None
        body = data[nl + 1:]
    lines = body.split(b"\n")
    if not lines[-1]:
        lines.pop()
    n = len(lines)
    if not n:
        return None
    first = lines[0]
    lb = first.find(b"[")
    if lb < 10:
        return None
    if first[lb - 1] == 34:                 # CSI_DATA,...,"[v,v,...]"
        opener, closer = b',"[', b']"'
    else:                                   # CSI_DATA,...,[v v ...]
        opener, closer = b",[", b"]"
    c = len(closer)
    heads, _, pays = zip(*[ln.partition(opener) for ln in lines])
    hn = b"\n".join(heads)
    # each line: the marker, a head without another marker nor "[" (so the opener holds the first
    # "["), a payload without "]" or marker and the closer at the very end (nothing after it)
    pj = b"".join(pays)
    if b"[" in hn or (b"\n" + hn).count(b"\nCSI_DATA,") != n or hn.count(b"CSI_DATA") != n \
            or b"".join([x[-c:] for x in pays]) != closer * n or pj.count(b"]") != n or MARK in pj:
        return None
    # one field count for all: the collector puts them in one group, in this order
    nc = heads[0].count(b",")
    if list(map(bytes.count, heads, repeat(b","))).count(nc) != n:
        return None
    sch = route(header, format, nc + 1, b"")
    if sch.__class__ is str:
        return None
    return sch, list(heads), [x[:-c] for x in pays]


# ---- file reader -------------------------------------------------------------------------------

def parse_esp_csi_bytes(data: bytes, *, format: str = "auto", part: str = "auto", source: str = "",
                        require: bool = True) -> CsiCapture:
    """Parse a whole console log held in memory (see the module notes for the rules)."""
    if format not in _TEXT_FORMATS:
        raise ValueError(f"unknown text format {format!r}")
    data = clean_text(data)
    plain = _plain_records(data, format) if len(data) <= _FAST_MAX else None
    if plain is None:
        col = Collector(format)
        feed_text(col, data)
        rows, skipped = col.take(), col.skipped
    else:
        sch, heads, pays = plain
        skipped = Counter()
        rows = [decode_records(sch, np.arange(len(heads)), heads, pays, [b""] * len(heads), skipped)]
    caps = build_captures(rows, part, skipped, source=source)
    if caps:
        cap = caps[0]
    else:
        cap = CsiCapture(format=format if format != "auto" else "esp-csi", csi=np.zeros((0, 1, 0), np.complex64),
                         subcarriers=np.zeros(0, np.int16), timestamps_us=np.zeros(0), source=source)
        cap.notes = {}
    cap.skipped = skipped
    return require_packets(cap) if require else cap


def read_esp_csi(path, *, format: str = "auto", part: str = "auto", require: bool = True) -> CsiCapture:
    """Read an esp-csi or ESP32-CSI-Tool log (``format`` auto | esp-csi | esp32-csi-tool)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise RfedgeError(f"cannot read file: {e.strerror or e}", path=path) from None
    return parse_esp_csi_bytes(data, format=format, part=part, source=str(path), require=require)


# ---- writer ------------------------------------------------------------------------------------

_WRITE_DEFAULTS = {"mac": "00:00:00:00:00:00"}
_INT8_TEXT = [str(v) for v in range(-128, 128)]


def _field_text(name: str, v) -> str:
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode()
    if isinstance(v, (float, np.floating)):
        if name in _INT_COLS and not float(v).is_integer():
            raise ValueError(f"field {name!r} is an integer column, got {v!r}")
        s = repr(float(v)) if not float(v).is_integer() or name in _FLOAT_COLS else str(int(v))
    else:
        s = str(v.item() if isinstance(v, np.generic) else v)
    if any(c in s for c in ',"[]\r\n'):
        raise ValueError(f"field {name!r} value {s!r} would break the CSV line")
    return s


def format_csi_data_line(raw_row, fields: dict, extra: list | None = None) -> str:
    """One esp-csi console line: ``CSI_DATA,<24 fields>,"[v,v,...]"[,extra...]``.

    ``fields`` holds the 23 named columns between ``type`` and ``data`` (missing: 0, mac
    00:00:00:00:00:00, ``len`` the buffer length).
    """
    raw_row = np.asarray(raw_row)
    if raw_row.dtype != np.int8:
        if raw_row.size and (raw_row.min() < -128 or raw_row.max() > 127):
            raise ValueError("raw values must fit int8")
        raw_row = raw_row.astype(np.int8)
    vals = {"len": len(raw_row)}
    vals.update(fields)
    parts = ["CSI_DATA"]
    for name in ESP_CSI_COLUMNS[1:-1]:
        parts.append(_field_text(name, vals.get(name, _WRITE_DEFAULTS.get(name, 0))))
    t = _INT8_TEXT
    payload = '"[' + ",".join([t[v + 128] for v in raw_row.tolist()]) + ']"'
    line = ",".join(parts) + "," + payload
    if extra:
        line += "," + ",".join(_field_text("extra", x) for x in extra)
    return line


def write_esp_csi_log(path, raw, fields: dict, header: bool = True, extra_columns: dict | None = None) -> None:
    """Write packets as an esp-csi console log, atomically.

    ``raw`` int8 [N, L]; ``fields`` maps column names (rssi, rate, sig_mode, mcs, bandwidth, channel,
    secondary_channel, local_timestamp, first_word, ...) to a length-N sequence or one scalar;
    ``extra_columns`` maps names to length-N sequences written after the payload (label, host
    time...). Reading the file back gives the same raw values, fields and timestamps.
    """
    from rfedge.fileio import atomic_write_text

    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"raw must be [N, L], got {raw.shape}")
    if raw.dtype != np.int8:
        if raw.size and (raw.min() < -128 or raw.max() > 127):
            raise ValueError("raw values must fit int8")
        raw = raw.astype(np.int8)
    n = raw.shape[0]
    unknown = set(fields) - set(ESP_CSI_COLUMNS[1:-1])
    if unknown:
        raise ValueError(f"unknown esp-csi field(s) {sorted(unknown)}; put them in extra_columns")
    cols = {}
    for k, v in fields.items():
        if np.ndim(v) == 0:
            cols[k] = [v] * n
        else:
            if len(v) != n:
                raise ValueError(f"field {k!r} has {len(v)} values for {n} packets")
            cols[k] = list(v.tolist() if isinstance(v, np.ndarray) else v)
    extra = extra_columns or {}
    for k, v in extra.items():
        if len(v) != n:
            raise ValueError(f"extra column {k!r} has {len(v)} values for {n} packets")
        if any(c in str(k) for c in ',"[]\r\n') or str(k).lower() in _DATA_NAMES:
            raise ValueError(f"bad extra column name {k!r}")
    lines = []
    if header:
        lines.append(",".join(ESP_CSI_COLUMNS + tuple(str(k) for k in extra)))
    xnames = list(extra)
    xvals = [list(np.asarray(extra[k]).tolist()) for k in xnames]
    for i in range(n):
        f = {"id": i}  # esp-csi's id counts packets
        f.update({k: c[i] for k, c in cols.items()})
        lines.append(format_csi_data_line(raw[i], f, [x[i] for x in xvals] if xnames else None))
    atomic_write_text(path, "\n".join(lines) + "\n")
