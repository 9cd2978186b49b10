"""``rfedge bench parse``: packets per second of our reader against csiread's on the same file.

Readers take turns in short rounds (the order alternating from round to round) so that load changes
on a shared machine hit both alike; each reader opens and reads the file on every run, as a user's
call would. The figure reported is the median of the rounds' rates, which one disturbed round
cannot move much.
"""

from __future__ import annotations

import statistics
import time

from rfedge.io.detect import parse_file

_ROUNDS = 7


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
    """Parse ``path`` repeatedly with each reader for at least ``min_seconds``; report the rates.

    Per reader: ``packets`` per run, ``repeats`` and ``seconds`` over all rounds, ``round_rates``
    (packets/s of each round) and ``packets_per_s``, their median.
    """
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
    totals = {k: [0, 0.0, []] for k in readers}
    budget = max(min_seconds, 0.0) / _ROUNDS
    names = list(readers)
    for i in range(_ROUNDS):
        for name in (names if i % 2 == 0 else names[::-1]):
            run, packets = readers[name]
            n, dt = _time(run, budget)
            t = totals[name]
            t[0] += n
            t[1] += dt
            t[2].append(packets * n / dt)
    for name, (run, packets) in readers.items():
        n, dt, rates = totals[name]
        result[name] = {"packets": int(packets), "repeats": int(n), "seconds": round(dt, 6), "rounds": len(rates),
                        "round_rates": rates, "packets_per_s": statistics.median(rates)}
    a, b = result["rfedge"].get("packets_per_s"), result["csiread"].get("packets_per_s")
    return {"file": path, "format": fmt, "readers": result,
            "speedup_vs_csiread": (a / b) if a and b else None}
