"""Impinj ItemTest CSV exports: one row per tag read, irregular in time.

What ItemTest writes (Speedway R420 / R700, Windows)::

    // 3/5/2024 2:22:01 PM
    // ReaderName=SpeedwayR-10-9F-3B, AntennaIDs=1,2, ModeIndex=1002, Session=1
    // Timestamp, EPC, TID, Antenna, RSSI, Frequency, Hostname, PhaseAngle, DopplerFrequency
    2024-03-05T14:22:01.1234560+02:00,E2003412DC03011800000001,,1,-61.5,866.9,SpeedwayR-10-9F-3B,3.4574,-2.25

What ``read_itemtest_csv`` accepts:

* ``//`` comment lines anywhere; the ones before the data are kept as ``comments`` and their
  ``Key=Value`` pairs as ``meta``. The header may be a plain line or a commented one (ItemTest
  comments it). Columns are found by name wherever they stand, case and spaces ignored:
  required ``Timestamp``, ``EPC``, ``Antenna``, ``RSSI`` (or ``RSS``); optional ``TID``,
  ``Frequency``, ``Hostname``, ``PhaseAngle``, ``DopplerFrequency``; any other column is kept as
  text in ``extra``.
* Numbers with a decimal point, or with a decimal comma inside quotes (``"-69,5"``).
* Timestamps: ``YYYY-MM-DD[T ]hh:mm:ss[.f...]`` and ``YYYY/MM/DD hh:mm:ss[.f...]`` with any
  number of fraction digits (kept to the nanosecond) and an optional ``Z``/``±hh:mm`` offset
  (without an offset the time is taken as UTC), years 1970-2200; ``M/D/YYYY h:mm:ss[.f] [AM|PM]`` (ItemTest's US
  locale); or a plain number, read as microseconds (the LLRP clock: µs since the epoch or since
  reader start). Every row must use the same kind as the first good row.
* ``PhaseAngle``: the unit is decided once per file from the largest magnitude seen: up to 2π
  (+1e-3) radians, up to 360 degrees, up to 4096 the reader's raw 12-bit counts; it is returned in
  radians wrapped to [0, 2π). ``Frequency`` above 100000 is taken as kHz, otherwise MHz.

Rows that cannot be read are skipped and counted by reason in ``skipped`` — never fatal. A file
without a usable header, or without a single usable read, is one ``RfedgeError``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.fileio import atomic_write_text

TWO_PI = 2.0 * math.pi

# Canonical role -> accepted header names (lower case, non-alphanumerics removed).
_ALIASES = {
    "timestamp": ("timestamp", "time", "datetime", "readtime", "lastseentime"),
    "epc": ("epc",),
    "tid": ("tid",),
    "antenna": ("antenna", "antennaport", "antennaid", "ant", "port"),
    "rss": ("rssi", "rss", "peakrssi", "rssidbm", "rssdbm"),
    "frequency": ("frequency", "freq", "frequencymhz", "channelmhz"),
    "hostname": ("hostname", "host"),
    "phase": ("phaseangle", "phase", "rfphaseangle", "phaserad"),
    "doppler": ("dopplerfrequency", "doppler", "rfdopplerfrequency", "dopplerhz"),
}
_ROLE_OF = {alias: role for role, names in _ALIASES.items() for alias in names}
REQUIRED = ("timestamp", "epc", "antenna", "rss")
HEADER_NAMES = ("Timestamp", "EPC", "TID", "Antenna", "RSSI", "Frequency", "Hostname", "PhaseAngle",
                "DopplerFrequency")


@functools.lru_cache(maxsize=1024)
def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


# ---- field parsers: each returns None when the text is not a valid value ---------------------

def _number(s: str) -> float | None:
    s = s.strip()
    if not s:
        return None
    if "," in s:
        # A decimal comma (European locale) is only legal as the single separator.
        if "." in s or s.count(",") != 1:
            return None
        s = s.replace(",", ".")
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


_ISO = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})[T ]\s*(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
                  r"\s*(Z|[+-]\d{2}:?\d{2})?$")
_US = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*([AaPp][Mm])?$")
_PLAIN = re.compile(r"\d+(?:[.,]\d+)?$")


@functools.lru_cache(maxsize=4096)
def _epoch_day(y: int, m: int, d: int) -> int:
    return _dt.date(y, m, d).toordinal() - 719163  # 719163 = date(1970, 1, 1).toordinal()


def _fraction_ns(frac: str | None) -> int:
    if not frac:
        return 0
    return int((frac + "000000000")[:9])


def parse_timestamp(s: str) -> tuple[str, int] | None:
    """``(kind, ns)``: kind ``"datetime"`` (ns since the Unix epoch, UTC) or ``"us"`` (plain
    microsecond counter, converted to ns); None if ``s`` is no timestamp we accept."""
    s = s.strip()
    m = _ISO.match(s)
    if m:
        y, mo, d, hh, mi, ss = (int(g) for g in m.groups()[:6])
        frac, tz = m.group(7), m.group(8)
        off_min = 0
        if tz and tz != "Z":
            digits = tz[1:].replace(":", "")
            off_min = (int(digits[:2]) * 60 + int(digits[2:])) * (1 if tz[0] == "+" else -1)
    else:
        m = _US.match(s)
        if m:
            mo, d, y, hh, mi, ss = (int(g) for g in m.groups()[:6])
            frac, ampm, off_min = m.group(7), m.group(8), 0
            if ampm:
                if not 1 <= hh <= 12:
                    return None
                hh = hh % 12 + (12 if ampm.lower() == "pm" else 0)
        elif _PLAIN.match(s):
            v = float(s.replace(",", "."))
            if v > 9e15:  # beyond int64 nanoseconds: not a clock we can represent
                return None
            return "us", int(round(v * 1000.0))
        else:
            return None
    if hh > 23 or mi > 59 or ss > 60 or not 1970 <= y <= 2200:   # int64 ns stays exact in this span
        return None
    try:
        day = _epoch_day(y, mo, d)
    except ValueError:
        return None
    sec = day * 86400 + hh * 3600 + mi * 60 + ss - off_min * 60
    return "datetime", sec * 1_000_000_000 + _fraction_ns(frac)


@functools.lru_cache(maxsize=4096)
def _epc(s: str) -> str | None:
    s = s.strip().replace(" ", "").replace("-", "").upper()
    if not 4 <= len(s) <= 128 or not re.fullmatch(r"[0-9A-F]+", s):
        return None
    return s


def _antenna(s: str) -> int | None:
    v = _number(s)
    if v is None or v != int(v) or not 0 <= v <= 64:
        return None
    return int(v)


def _split(line: str) -> list[str] | None:
    """Fields of one CSV line. Quotes never span lines in ItemTest files, so a line is parsed
    alone: a stray quote in a damaged line cannot swallow the rest of the file."""
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return None


_META_SPLIT = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9 _]*?\s*=)")


def _comment_meta(comments: list[str]) -> dict[str, str]:
    """``Key=Value`` pairs of the comment lines (values may contain commas: AntennaIDs=1,2)."""
    meta = {}
    for c in comments:
        if "=" not in c:
            continue
        for part in _META_SPLIT.split(c):
            if "=" in part:
                k, v = part.split("=", 1)
                if k.strip():
                    meta[k.strip()] = v.strip()
    return meta


# ---- the result ----------------------------------------------------------------------------

def _strs(values) -> np.ndarray:
    return np.asarray(list(values), dtype=str).reshape(-1)


@dataclass
class RfidReads:
    """Tag reads of one ItemTest file, as columns (one entry per read, in file order).

    Attributes:
        t_s: float64 seconds since the earliest read of the file.
        epc: str EPC, upper-case hex.
        antenna: int64 reader antenna port (1-based as the reader numbers them).
        rss_dbm: float64 peak RSSI in dBm.
        phase_rad: float64 phase in [0, 2π) (NaN where the row had none).
        doppler_hz: float64 Doppler frequency (NaN where none).
        frequency_mhz: float64 carrier (NaN where none).
        tid, hostname: str (empty where none).
        extra: any further columns by their header name, as text.
        line: int64 1-based line number of each read in the source.
        t0_ns: absolute time of ``t_s == 0`` in ns since the Unix epoch (UTC) for date-time
            stamps; the raw counter value in ns for plain microsecond stamps; None if unknown.
        time_kind: ``"datetime"`` or ``"us"`` (see module doc).
        phase_unit: unit detected in the file: ``rad``, ``deg``, ``counts`` or ``none``.
        comments: the ``//`` lines before the data, without the slashes.
        meta: ``Key=Value`` pairs found in the comments.
        columns: header names as written.
        skipped: reason -> rows not used. missing: field -> kept rows where it was empty.
    """

    t_s: np.ndarray
    epc: np.ndarray
    antenna: np.ndarray
    rss_dbm: np.ndarray
    phase_rad: np.ndarray
    doppler_hz: np.ndarray
    frequency_mhz: np.ndarray
    tid: np.ndarray
    hostname: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    line: np.ndarray | None = None
    t0_ns: int | None = None
    time_kind: str = "datetime"
    phase_unit: str = "rad"
    comments: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    missing: Counter = field(default_factory=Counter)
    source: str = ""

    @classmethod
    def from_arrays(cls, t_s, epc, antenna, rss_dbm, phase_rad=None, doppler_hz=None, frequency_mhz=None,
                    tid=None, hostname=None, extra=None, t0_ns=None, comments=(), source="") -> "RfidReads":
        """Reads built in memory (e.g. by the simulator) for ``write_itemtest_csv``."""
        t_s = np.asarray(t_s, dtype=np.float64)
        n = len(t_s)

        def col(v, fill):
            return np.full(n, fill, dtype=np.float64) if v is None else np.asarray(v, dtype=np.float64)

        def scol(v):
            return np.full(n, "", dtype="<U1") if v is None else _strs(v)

        return cls(t_s=t_s, epc=_strs(epc), antenna=np.asarray(antenna, dtype=np.int64),
                   rss_dbm=np.asarray(rss_dbm, dtype=np.float64), phase_rad=col(phase_rad, np.nan),
                   doppler_hz=col(doppler_hz, np.nan), frequency_mhz=col(frequency_mhz, np.nan),
                   tid=scol(tid), hostname=scol(hostname), extra={k: _strs(v) for k, v in (extra or {}).items()},
                   line=np.arange(1, n + 1), t0_ns=t0_ns, comments=list(comments), source=source)

    def __len__(self) -> int:
        return len(self.t_s)

    def summary(self) -> dict:
        dur = float(self.t_s.max() - self.t_s.min()) if len(self) else 0.0
        return {
            "source": self.source, "format": "impinj-itemtest", "reads": len(self),
            "tags": sorted(set(self.epc.tolist())), "antennas": sorted(set(self.antenna.tolist())),
            "duration_s": dur, "rate_hz": (len(self) - 1) / dur if dur > 0 else None,
            "phase_unit": self.phase_unit, "time_kind": self.time_kind,
            "skipped": int(sum(self.skipped.values())), "skipped_reasons": dict(self.skipped),
            "missing": dict(self.missing), "meta": dict(self.meta),
        }


# ---- reading -------------------------------------------------------------------------------

def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    return raw.decode("utf-8-sig", errors="replace")


def _header_roles(fields: list[str]) -> dict[str, int] | None:
    """Role -> column index when ``fields`` look like the ItemTest header, else None."""
    roles: dict[str, int] = {}
    for i, f in enumerate(fields):
        role = _ROLE_OF.get(_norm(f))
        if role and role not in roles:
            roles[role] = i
    return roles if "timestamp" in roles and "epc" in roles else None


def read_itemtest_csv(path, *, phase_unit: str = "auto") -> RfidReads:
    """Read an Impinj ItemTest CSV export (see the module doc for what is accepted).

    ``phase_unit`` forces ``rad``/``deg``/``counts`` when the automatic choice is wrong (e.g. a
    short degree-unit file whose phases all happen to be below 2π).
    """
    path = Path(path)
    try:
        text = _decode(path.read_bytes())
    except OSError as e:
        raise RfedgeError(f"cannot read file ({e.strerror or e})", path=path) from None
    if phase_unit not in ("auto", "rad", "deg", "counts"):
        raise ValueError(f"phase_unit must be auto, rad, deg or counts, not {phase_unit!r}")
    lines = text.splitlines()

    comments: list[str] = []
    skipped: Counter = Counter()
    header_line = None
    roles: dict[str, int] = {}
    columns: list[str] = []
    for i, raw in enumerate(lines):
        s = raw.strip()
        if not s:
            continue
        body = s[2:].strip() if s.startswith("//") else s
        fields = _split(body)
        found = _header_roles([f.strip() for f in fields]) if fields else None
        if found:
            header_line, roles, columns = i, found, [f.strip() for f in fields]
            break
        if s.startswith("//"):
            comments.append(body)
        else:
            skipped["before_header"] += 1
    if header_line is None:
        raise RfedgeError("no ItemTest header line found; expected a line naming the columns "
                          "Timestamp, EPC, Antenna, RSSI (optionally after '//')", path=path)
    lacking = [r for r in REQUIRED if r not in roles]
    if lacking:
        want = {"timestamp": "Timestamp", "epc": "EPC", "antenna": "Antenna", "rss": "RSSI"}
        raise RfedgeError(f"header has no {', '.join(want[r] for r in lacking)} column; expected "
                          f"Timestamp, EPC, Antenna, RSSI (found {', '.join(columns)})",
                          path=path, line=header_line + 1, field=want[lacking[0]])

    i_ts, i_epc, i_ant, i_rss = (roles[r] for r in REQUIRED)
    i_tid, i_freq, i_host, i_ph, i_dop = (roles.get(r) for r in ("tid", "frequency", "hostname", "phase", "doppler"))
    used = set(roles.values())
    extra_idx = [(j, c) for j, c in enumerate(columns) if j not in used and c]
    n_need = max(i_ts, i_epc, i_ant, i_rss) + 1
    n_cols = len(columns)

    ts, epcs, ants, rss, freq, phase, dop, tids, hosts, nums = [], [], [], [], [], [], [], [], [], []
    extras: list[list[str]] = [[] for _ in extra_idx]
    missing: Counter = Counter()
    kind = None

    def optional(fields, idx, name, parse):
        """(ok, value): value None when the column is absent or empty; ok False when unparsable."""
        if idx is None or idx >= len(fields) or not fields[idx].strip():
            if idx is not None:
                missing[name] += 1
            return True, None
        v = parse(fields[idx])
        return v is not None, v

    for i in range(header_line + 1, len(lines)):
        s = lines[i].strip()
        if not s:
            continue
        if s.startswith("//"):
            continue
        fields = _split(s)
        if fields is None:
            skipped["bad_csv"] += 1
            continue
        if len(fields) < n_need:
            skipped["too_few_fields"] += 1
            continue
        if len(fields) > n_cols + 1 and any(f.strip() for f in fields[n_cols:]):
            # Two rows glued together by a lost line break.
            skipped["too_many_fields"] += 1
            continue
        t = parse_timestamp(fields[i_ts])
        if t is None:
            # ItemTest repeats its header when a logging session is restarted into the same file.
            skipped["repeated_header" if _header_roles([f.strip() for f in fields]) else "bad_timestamp"] += 1
            continue
        if kind is None:
            kind = t[0]
        elif t[0] != kind:
            skipped["timestamp_kind_mismatch"] += 1
            continue
        e = _epc(fields[i_epc])
        if e is None:
            skipped["bad_epc"] += 1
            continue
        a = _antenna(fields[i_ant])
        if a is None:
            skipped["bad_antenna"] += 1
            continue
        r = _number(fields[i_rss])
        if r is None or not -200.0 <= r <= 50.0:
            skipped["bad_rss"] += 1
            continue
        ok_f, f_v = optional(fields, i_freq, "frequency", _number)
        ok_p, p_v = optional(fields, i_ph, "phase", _number)
        ok_d, d_v = optional(fields, i_dop, "doppler", _number)
        if not ok_f:
            skipped["bad_frequency"] += 1
            continue
        if not ok_p:
            skipped["bad_phase"] += 1
            continue
        if not ok_d:
            skipped["bad_doppler"] += 1
            continue
        ts.append(t[1])
        epcs.append(e)
        ants.append(a)
        rss.append(r)
        freq.append(math.nan if f_v is None else f_v)
        phase.append(math.nan if p_v is None else p_v)
        dop.append(math.nan if d_v is None else d_v)
        tids.append(fields[i_tid].strip() if i_tid is not None and i_tid < len(fields) else "")
        hosts.append(fields[i_host].strip() if i_host is not None and i_host < len(fields) else "")
        for col, (j, _) in zip(extras, extra_idx):
            col.append(fields[j].strip() if j < len(fields) else "")
        nums.append(i + 1)

    if not ts:
        detail = ", ".join(f"{k} {v}" for k, v in skipped.most_common()) or "no data rows"
        raise RfedgeError(f"no usable tag read after the header ({detail}); expected rows of "
                          f"{', '.join(columns)}", path=path, line=header_line + 1)

    t_ns = np.array(ts, dtype=np.int64)
    t0 = int(t_ns.min())
    ph = np.array(phase, dtype=np.float64)
    unit = _phase_unit(ph) if phase_unit == "auto" else phase_unit
    scale = {"rad": 1.0, "deg": math.pi / 180.0, "counts": TWO_PI / 4096.0, "none": 1.0}[unit]
    ph = np.mod(ph * scale, TWO_PI)
    fr = np.array(freq, dtype=np.float64)
    fr = np.where(fr > 1e5, fr / 1000.0, fr)
    return RfidReads(
        t_s=(t_ns - t0).astype(np.float64) / 1e9,
        epc=_strs(epcs), antenna=np.array(ants, dtype=np.int64), rss_dbm=np.array(rss, dtype=np.float64),
        phase_rad=ph, doppler_hz=np.array(dop, dtype=np.float64), frequency_mhz=fr,
        tid=_strs(tids), hostname=_strs(hosts),
        extra={name: _strs(col) for col, (_, name) in zip(extras, extra_idx)},
        line=np.array(nums, dtype=np.int64), t0_ns=t0, time_kind=kind, phase_unit=unit,
        comments=comments, meta=_comment_meta(comments), columns=columns, skipped=skipped,
        missing=missing, source=str(path),
    )


def _phase_unit(ph: np.ndarray) -> str:
    ok = np.isfinite(ph)
    if not ok.any():
        return "none"
    top = float(np.abs(ph[ok]).max())
    if top <= TWO_PI + 1e-3:
        return "rad"
    if top <= 360.0 + 1e-6:
        return "deg"
    return "counts"


def to_series(reads: RfidReads) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """Per-tag, per-antenna time series: ``{(epc, antenna): {t_s, rss_dbm, phase_rad,
    doppler_hz, frequency_mhz}}``, each sorted by time (stable for equal times)."""
    out = {}
    keys = sorted(set(zip(reads.epc.tolist(), reads.antenna.tolist())))
    for epc, ant in keys:
        idx = np.flatnonzero((reads.epc == epc) & (reads.antenna == ant))
        idx = idx[np.argsort(reads.t_s[idx], kind="stable")]
        out[(epc, int(ant))] = {
            "t_s": reads.t_s[idx], "rss_dbm": reads.rss_dbm[idx], "phase_rad": reads.phase_rad[idx],
            "doppler_hz": reads.doppler_hz[idx], "frequency_mhz": reads.frequency_mhz[idx],
        }
    return out


# ---- writing -------------------------------------------------------------------------------

_DEFAULT_START = "2024-03-05T14:00:00.0000000+02:00"


def _fmt(v: float, decimals: int, comma: bool) -> str:
    if not math.isfinite(v):
        return ""
    s = f"{v:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s == "-0":
        s = "0"
    return f'"{s.replace(".", ",")}"' if comma and "." in s else s


def write_itemtest_csv(path, reads: RfidReads, *, start: str | None = None, comments=None,
                       reader_name: str = "SpeedwayR-10-9F-3B", decimal_comma: bool = False,
                       commented_header: bool = True) -> Path:
    """Write ``reads`` as an ItemTest export, atomically; ``read_itemtest_csv`` reads it back.

    Times are ``start`` + ``t_s`` printed to 100 ns, with ``start``'s UTC offset (default: the
    file's own t0 in UTC when the reads came from a file, else 2024-03-05T14:00:00+02:00).
    Printed precision: RSSI 0.01 dB, frequency 1 kHz, phase 1e-6 rad, Doppler 1e-4 Hz; trailing
    zeros are dropped as ItemTest does. ``decimal_comma`` writes ``"-61,5"`` like a European
    Windows locale.
    """
    if start is None and reads.t0_ns is not None and reads.time_kind == "datetime":
        base_ns, off_min, tz = reads.t0_ns, 0, "Z"
    else:
        start = start or _DEFAULT_START
        p = parse_timestamp(start)
        m = re.search(r"([+-])(\d{2}):?(\d{2})$", start.strip())
        if p is None or p[0] != "datetime":
            raise ValueError(f"start must be an ISO date-time, got {start!r}")
        off_min = (int(m.group(2)) * 60 + int(m.group(3))) * (1 if m.group(1) == "+" else -1) if m else 0
        base_ns = p[1]
        tz = f"{'+' if off_min >= 0 else '-'}{abs(off_min) // 60:02d}:{abs(off_min) % 60:02d}" if m else ""
    local0 = base_ns + off_min * 60_000_000_000

    if comments is None:
        d0 = _dt.datetime(1970, 1, 1) + _dt.timedelta(microseconds=local0 // 1000)
        ants = ",".join(str(a) for a in sorted(set(reads.antenna.tolist())))
        comments = [f"{d0.month}/{d0.day}/{d0.year} {(d0.hour % 12) or 12}:{d0.minute:02d}:{d0.second:02d} "
                    f"{'PM' if d0.hour >= 12 else 'AM'}",
                    f"ReaderName={reader_name}, AntennaIDs={ants}, ModeIndex=1002, Session=1"]
    extra_names = list(reads.extra)
    header = ", ".join(HEADER_NAMES + tuple(extra_names))
    out = [f"// {c}" for c in comments]
    out.append(f"// {header}" if commented_header else header)

    days: dict[int, str] = {}
    order = np.argsort(reads.t_s, kind="stable")
    t_100ns = np.round(reads.t_s * 1e7).astype(np.int64)
    for i in order.tolist():
        tot = local0 + int(t_100ns[i]) * 100
        sec, frac = divmod(tot, 1_000_000_000)
        day, sod = divmod(sec, 86400)
        if day not in days:
            days[day] = (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()
        stamp = f"{days[day]}T{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60:02d}.{frac // 100:07d}{tz}"
        host = reads.hostname[i] if reads.hostname[i] else reader_name
        row = [stamp, reads.epc[i], reads.tid[i], str(int(reads.antenna[i])),
               _fmt(reads.rss_dbm[i], 2, decimal_comma), _fmt(reads.frequency_mhz[i], 3, decimal_comma), host,
               _fmt(reads.phase_rad[i], 6, decimal_comma), _fmt(reads.doppler_hz[i], 4, decimal_comma)]
        row += [str(reads.extra[k][i]) for k in extra_names]
        out.append(",".join(row))
    path = Path(path)
    atomic_write_text(path, "\r\n".join(out) + "\r\n")
    return path


def sniff_itemtest(head: str) -> bool:
    """True when the first lines of a text file look like an ItemTest export."""
    for line in head.splitlines()[:20]:
        s = line.strip()
        fields = _split(s[2:].strip() if s.startswith("//") else s)
        roles = _header_roles([f.strip() for f in fields]) if fields else None
        if roles and "rss" in roles and "antenna" in roles:
            return True
    return False
