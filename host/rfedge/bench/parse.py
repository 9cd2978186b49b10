"""``rfedge bench parse``: packets per second of our reader against csiread's on the same file.

Readers take turns in short rounds so that load changes on a shared machine hit both alike; each
reader opens and reads the file on every run, as a user's call would.
"""

from __future__ import annotations

import time

from rfedge.io.detect import parse_file

_ROUNDS = 5


def _csiread_reader(path: str, fmt: str):
    """A zero-argument callable returning csiread's packet count, or a note why there is none."""
    try:
        import csiread
    except ImportError:
        return None, "csiread not installed"
    if fmt == "esp32-csi-tool":
        def run():
            r = csiread.ESP32(path, if_report=False)
            r.read()
            return int(r.count)
    elif fmt == "intel5300":
        def run():
            r = csiread.Intel(path, if_report=False)
            r.read()
            return int(r.count)
    else:
        return None, f"csiread has no reader for {fmt}"
    return run, None


def _time(run, budget: float) -> tuple[int, float]:
    """Run at least once and until ``budget`` seconds passed; (runs, seconds)."""
    n, t0 = 0, time.perf_counter()
    while True:
        run()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= budget:
            return n, dt


def bench_parse(path, format: str = "auto", min_seconds: float = 1.0) -> dict:
    """Parse ``path`` repeatedly with each reader for at least ``min_seconds``; report the rates."""
    path = str(path)
    cap = parse_file(path, format=format)
    fmt = cap.format
    ours = lambda: parse_file(path, format=format)  # noqa: E731
    theirs, note = _csiread_reader(path, fmt)
    readers = {"rfedge": (ours, cap.packets)}
    result = {"rfedge": None, "csiread": {"packets_per_s": None, "note": note}}
    if theirs is not None:
        try:
            readers["csiread"] = (theirs, theirs())  # also warms it up
        except Exception as e:  # csiread is not robust to dirty files: report, do not fail
            result["csiread"] = {"packets_per_s": None, "note": f"csiread failed: {type(e).__name__}: {e}"}
    ours()
    totals = {k: [0, 0.0] for k in readers}
    budget = max(min_seconds, 0.0) / _ROUNDS
    for _ in range(_ROUNDS):
        for name, (run, _) in readers.items():
            n, dt = _time(run, budget)
            totals[name][0] += n
            totals[name][1] += dt
    for name, (run, packets) in readers.items():
        n, dt = totals[name]
        result[name] = {"packets": int(packets), "repeats": int(n), "seconds": round(dt, 6),
                        "packets_per_s": packets * n / dt if dt > 0 else None}
    a, b = result["rfedge"].get("packets_per_s"), result["csiread"].get("packets_per_s")
    return {"file": path, "format": fmt, "readers": result,
            "speedup_vs_csiread": (a / b) if a and b else None}
