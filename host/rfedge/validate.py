"""On-board validation (``rfedge validate``) and the board benchmark (``rfedge bench board``).

``validate(board, RUN)`` builds the run's firmware for ``board``, starts it and checks, against
the references on this host:

* bit-exactness: >= 1000 int8 vectors (the run's test-split windows, extreme and structured
  variants, random vectors — rfedge.codegen.test_vectors) through the device and through TFLite
  Micro's reference kernels (PyPI ``tflite-micro``), byte for byte;
* accuracy on the test split: the device's argmax against the labels, next to TFLM's;
* end to end, when the firmware has the on-device DSP: each test trial's raw CSI packets pushed
  to the device, its int8 input tensor (FEATURES) compared with the host pipeline's
  (rfedge.features + normalizer + quantization), and its gesture with the host's;
* latency per inference (instructions or cycles: min / median / p95) and its estimate in ms at
  the target clock; DSP + inference per window; RAM and flash.

Results are appended to ``<out>/results.jsonl`` as they come (flushed line by line), so an
interrupted run resumes where it stopped; the summary goes to ``<out>/validate.json`` and, when
asked, a JUnit XML file.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from rfedge.errors import RfedgeError

GOALS = {"instructions_per_mac_max": 3.0, "window_ms_max": 20.0}


def _say(stream, msg: str) -> None:
    if stream is not None:
        stream.write(f"validate: {msg}\n")
        stream.flush()


def default_out(run, board: str) -> Path:
    run = Path(run)
    base = run.parent / f"{run.stem}_device" if run.is_file() else run / "device"
    return base / board


def prepare(board: str, run, out_dir, stream=None):
    """(firmware, RunModel, tflite bytes, codegen report) for a run on a board."""
    from rfedge.codegen import RunModel
    from rfedge.firmware import build_for_run

    rm = RunModel(run, stream)
    fw = build_for_run(board, rm.path, Path(out_dir) / "build", stream=stream)
    gen = Path(out_dir) / "build" / "gen"
    tfl = (gen / "model.tflite").read_bytes()
    rep = json.loads((gen / "model.json").read_text())
    return fw, rm, tfl, rep


def test_labels(rm) -> np.ndarray | None:
    """Labels of the run's test-split trials, in the order of RunModel.test_inputs()."""
    try:
        ds, fold = rm._dataset_fold()
    except (RfedgeError, AttributeError, KeyError):
        return None
    ids = sorted(int(i) for i in fold["test"])
    return ds.labels[ids]


class Results:
    """Append-only JSON lines, one per finished item; resumes when the header matches."""

    def __init__(self, path: Path, header: dict, resume: bool = True):
        self.path = Path(path)
        self.done: dict[tuple, dict] = {}
        self.resumed = 0
        if resume and self.path.is_file():
            lines = self.path.read_text().splitlines()
            try:
                first = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                first = None
            if first == {"kind": "header", **header}:
                for ln in lines[1:]:
                    try:
                        r = json.loads(ln)
                    except json.JSONDecodeError:
                        break           # a line cut by the interruption: redo from there
                    self.done[(r["kind"], r["i"])] = r
                self.resumed = len(self.done)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w")
        self._write({"kind": "header", **header})
        for r in self.done.values():
            self._write(r)

    def _write(self, r: dict) -> None:
        self.f.write(json.dumps(r) + "\n")
        self.f.flush()

    def get(self, kind: str, i: int) -> dict | None:
        return self.done.get((kind, i))

    def add(self, r: dict) -> dict:
        self.done[(r["kind"], r["i"])] = r
        self._write(r)
        return r

    def close(self) -> None:
        self.f.close()


def latency_stats(counts, spec) -> dict:
    c = np.asarray(counts, np.float64)
    if c.size == 0:
        return {}
    ins = spec.instructions(c)
    out = {"unit": spec.counter_unit if spec.counter != "ns" else "ns", "counter": spec.counter,
           "counter_scale": spec.counter_scale, "runs": int(c.size),
           "min": float(ins.min()), "median": float(np.median(ins)), "p95": float(np.percentile(ins, 95)),
           "max": float(ins.max())}
    if spec.counter == "ns":
        out["ms_median"] = out["median"] / 1e6
        out["note"] = "wall time of this host (no instruction counter on the host board)"
    else:
        out["clock_hz"] = spec.clock_hz
        out["cpi"] = spec.cpi
        out["ms_median"] = spec.ms(out["median"])
        out["ms_p95"] = spec.ms(out["p95"])
        out["note"] = (f"estimate: {spec.counter_unit} x CPI {spec.cpi} / {spec.clock_hz / 1e6:g} MHz "
                       f"({spec.target_chip}); QEMU counts instructions, not pipeline cycles")
    return out


def _e2e_trials(rm):
    """(dataset, trial ids, FeatureConfig) of the run's test split, or None."""
    if rm.feature_cfg is None or rm.normalizer is None:
        return None
    try:
        ds, fold = rm._dataset_fold()
    except RfedgeError:
        return None
    return ds, sorted(int(i) for i in fold["test"]), rm.feature_cfg


def validate(board: str, run, *, vectors: int = 1000, out_dir=None, resume: bool = True, e2e_trials: int | None = None,
             timeout: float = 30.0, stream=sys.stderr, junit=None, test_windows: int | None = None) -> dict:
    from rfedge.board import open_board
    from rfedge.boards import load_board
    from rfedge.codegen import test_vectors
    from rfedge_codegen import reference
    from rfedge_codegen.graph import load_graph

    spec = load_board(board)
    out_dir = Path(out_dir) if out_dir else default_out(run, board)
    t_start = time.monotonic()
    fw, rm, tfl, rep = prepare(board, run, out_dir, stream)
    g = load_graph(tfl)
    x = g.t(g.inputs[0])
    test_X = rm.test_inputs()
    if test_X is not None and test_windows is not None:
        test_X = test_X[:max(int(test_windows), 1)]   # a sample of the test split (e.g. on slow emulated boards)
    # every test window, the extreme patterns and some structured variants are always included
    # (rfedge.codegen.test_vectors needs room for them), so a small --vectors means at least that many
    n_min = (0 if test_X is None else len(test_X)) + 100
    X, sources = test_vectors(x.size, x.s, x.zp, max(vectors, n_min), test_X)
    n_test = sources.get("test_split", 0)
    _say(stream, f"{len(X)} vectors through TFLM (reference)")
    ref = reference.run(tfl, X)
    header = {"board": board, "model_hash": fw.model_hash, "vectors": int(len(X)), "firmware_key": fw.info["key"]}
    res = Results(out_dir / "results.jsonl", header, resume=resume)
    if res.resumed:
        _say(stream, f"resuming: {res.resumed} results already on disk")
    summary: dict = {"board": board, "run": str(rm.path), "model": rm.name, "firmware": str(fw.path),
                     "model_hash": fw.model_hash, "out_dir": str(out_dir)}
    try:
        with open_board(spec, fw, timeout=timeout, log_dir=out_dir) as dev:
            info = dev.info
            if info.model_hash != fw.model_hash:
                raise RfedgeError(f"the board runs model {info.model_hash}, the build is {fw.model_hash}")
            bad, st_count = dev.selftest()
            summary["selftest"] = {"mismatched_bytes": bad, "pass": bad == 0}
            summary["device"] = info.to_dict()
            # ---- bit-exactness and accuracy ------------------------------------------------------
            outs = np.zeros_like(ref)
            counts = []
            t0, last = time.monotonic(), time.monotonic()
            for i in range(len(X)):
                r = res.get("vector", i)
                if r is None:
                    y, c = dev.invoke(X[i])
                    r = res.add({"kind": "vector", "i": i, "out": y.tobytes().hex(), "count": int(c)})
                outs[i] = np.frombuffer(bytes.fromhex(r["out"]), np.int8)
                counts.append(r["count"])
                if stream is not None and time.monotonic() - last > 5:
                    last = time.monotonic()
                    _say(stream, f"{i + 1}/{len(X)} vectors ({(i + 1 - res.resumed) / max(last - t0, 1e-9):.1f}/s)")
            diff = (outs != ref).any(axis=1)
            summary["bit_exact"] = {"vectors": int(len(X)), "mismatches": int(diff.sum()),
                                    "mismatched_bytes": int((outs != ref).sum()), "sources": sources,
                                    "first_mismatch": int(np.flatnonzero(diff)[0]) if diff.any() else None,
                                    "reference": "TFLite Micro reference kernels (PyPI tflite-micro)"}
            summary["latency"] = latency_stats(counts, spec)
            macs = int(rep.get("macs") or 0)
            if macs and spec.counter != "ns":
                summary["latency"]["macs"] = macs
                summary["latency"]["instructions_per_mac"] = summary["latency"]["median"] / macs
            labels = test_labels(rm)
            if labels is not None and test_windows is not None:
                labels = labels[:n_test]
            if n_test and labels is not None and len(labels) == n_test:
                dev_acc = float((outs[:n_test].argmax(1) == labels).mean())
                ref_acc = float((ref[:n_test].argmax(1) == labels).mean())
                summary["accuracy"] = {"test_trials": n_test, "sample": test_windows is not None,
                                       "device": dev_acc, "int8_reference": ref_acc,
                                       "equal": dev_acc == ref_acc,
                                       "same_predictions": int((outs[:n_test].argmax(1) == ref[:n_test].argmax(1)).sum())}
                if rm.test_ids is not None:
                    save_test_outputs(out_dir, fw.model_hash, rm.test_ids[:n_test], outs[:n_test], ref[:n_test])
            else:
                summary["accuracy"] = {"skipped": "the run's test split is not available (bare .tflite or dataset missing)"}
            # ---- end to end ----------------------------------------------------------------------
            summary["end_to_end"] = _end_to_end(dev, rm, tfl, x, res, e2e_trials, spec, stream)
            summary["memory"] = {"model_ram_bytes": rep.get("arena_bytes"), "model_const_bytes": rep.get("const_bytes"),
                                 "firmware_ram_bytes": info.ram_bytes or fw.info.get("ram_bytes"),
                                 "firmware_flash_bytes": info.flash_bytes or fw.info.get("flash_bytes"),
                                 "source": "device (linker symbols)" if info.ram_bytes else "size of the host executable",
                                 "size": {k: fw.info.get(k) for k in ("text", "data", "bss")}}
            summary["retries"] = dev.retried
    finally:
        res.close()
    summary["seconds"] = round(time.monotonic() - t_start, 1)
    summary["pass"] = bool(summary["selftest"]["pass"] and summary["bit_exact"]["mismatches"] == 0
                           and summary["accuracy"].get("equal", True)
                           and summary["end_to_end"].get("label_agreement", 1.0) == 1.0)
    (out_dir / "validate.json").write_text(json.dumps(summary, indent=2) + "\n")
    if junit:
        write_junit(summary, junit)
    return summary


TEST_OUTPUTS = "test_outputs.npz"


def save_test_outputs(out_dir: Path, model_hash: str, test_ids, outputs, reference) -> Path:
    """The device's raw outputs for the run's test trials, keyed by trial id, for the
    quantization report's device column (``rfedge report``)."""
    from rfedge.fileio import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, test_ids=np.asarray(test_ids, np.int64), outputs=np.asarray(outputs, np.int8),
             reference=np.asarray(reference, np.int8), model_hash=np.array(model_hash))
    p = Path(out_dir) / TEST_OUTPUTS
    atomic_write_bytes(p, buf.getvalue())
    return p


def _end_to_end(dev, rm, tfl, x, res, limit, spec, stream) -> dict:
    from rfedge.features import trial_window
    from rfedge.proto import CsiPacket
    from rfedge_codegen import reference

    if not dev.info.has_dsp:
        return {"skipped": "the firmware was built without the on-device DSP (mcu/core/dsp or dsp_config.h missing)"}
    trials = _e2e_trials(rm)
    if trials is None:
        return {"skipped": "the run's dataset, features.json or normalizer.json is not available"}
    from rfedge.testing.device_dsp import encode_packets, reference_input

    ds, ids, cfg = trials
    if limit is not None:
        ids = ids[:limit]
    _say(stream, f"end to end: {len(ids)} test trials (raw CSI packets -> device DSP -> model)")
    rows = []
    for k, i in enumerate(ids):
        r = res.get("e2e", i)
        if r is None:
            csi, t_us = trial_window(ds, i, cfg.receiver)
            q_host, _ = reference_input(csi, t_us, cfg, rm.normalizer, x.s, x.zp)
            host_label = int(reference.run(tfl, q_host[None])[0].argmax())
            bufs = encode_packets(csi)
            dev.dsp_reset(0)
            dev.push_csi([CsiPacket(buf=b.tobytes(), timestamp_us=int(t)) for b, t in zip(bufs, t_us)])
            q_dev, dsp_count = dev.features()
            y, inf_count = dev.invoke()
            d = np.abs(q_dev.astype(int) - q_host.astype(int))
            r = res.add({"kind": "e2e", "i": i, "tensor_equal": bool((d == 0).all()), "max_abs_diff": int(d.max()),
                         "bytes_differing": int((d > 0).sum()), "host_label": host_label,
                         "device_label": int(y.argmax()), "dsp_count": int(dsp_count), "inference_count": int(inf_count),
                         "packets": int(len(bufs))})
        rows.append(r)
    n = len(rows)
    if n == 0:
        return {"skipped": "no test trials"}
    dsp = spec.instructions(np.array([r["dsp_count"] for r in rows], float))
    inf = spec.instructions(np.array([r["inference_count"] for r in rows], float))
    tot = dsp + inf
    out = {"trials": n, "tensor_equal": sum(r["tensor_equal"] for r in rows),
           "max_abs_diff": max(r["max_abs_diff"] for r in rows),
           "label_agreement": sum(r["host_label"] == r["device_label"] for r in rows) / n,
           "dsp_median": float(np.median(dsp)), "window_median": float(np.median(tot)),
           "window_p95": float(np.percentile(tot, 95)), "unit": "ns" if spec.counter == "ns" else spec.counter_unit}
    if spec.counter != "ns":
        out["window_ms_median"] = spec.ms(out["window_median"])
        out["window_ms_p95"] = spec.ms(out["window_p95"])
    return out


def write_junit(summary: dict, path) -> None:
    """One JUnit testsuite: self-test, bit-exactness, accuracy, end to end."""
    cases = []

    def case(name, ok, msg, skipped=None):
        body = ""
        if skipped:
            body = f"<skipped message={quoteattr(skipped)}/>"
        elif not ok:
            body = f"<failure message={quoteattr(msg)}>{escape(msg)}</failure>"
        cases.append(f'  <testcase classname="rfedge.validate.{summary["board"]}" name="{name}">{body}</testcase>')

    st = summary["selftest"]
    case("selftest", st["pass"], f"{st['mismatched_bytes']} bytes of the golden output differ")
    be = summary["bit_exact"]
    case("bit_exact", be["mismatches"] == 0, f"{be['mismatches']} of {be['vectors']} vectors differ from TFLM")
    acc = summary["accuracy"]
    case("accuracy_equals_int8_reference", acc.get("equal", False),
         f"device {acc.get('device')} vs int8 reference {acc.get('int8_reference')}", acc.get("skipped"))
    e2e = summary["end_to_end"]
    case("end_to_end", e2e.get("label_agreement") == 1.0,
         f"gesture agreement {e2e.get('label_agreement')}, tensors equal {e2e.get('tensor_equal')}/{e2e.get('trials')}",
         e2e.get("skipped"))
    fails = sum("<failure" in c for c in cases)
    skips = sum("<skipped" in c for c in cases)
    text = (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="rfedge validate {summary["board"]}" '
            f'tests="{len(cases)}" failures="{fails}" skipped="{skips}" time="{summary.get("seconds", 0)}">\n'
            + "\n".join(cases) + "\n</testsuite>\n")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)


def format_summary(s: dict) -> str:
    lat, be, acc, e2e, mem = s["latency"], s["bit_exact"], s["accuracy"], s["end_to_end"], s["memory"]
    lines = [f"{s['model']} on {s['board']} (model {s['model_hash']}): {'PASS' if s['pass'] else 'FAIL'}",
             f"  self-test      {'pass' if s['selftest']['pass'] else 'FAIL'}",
             f"  bit-exact      {be['vectors'] - be['mismatches']}/{be['vectors']} vectors equal TFLM"]
    if "skipped" in acc:
        lines.append(f"  accuracy       skipped: {acc['skipped']}")
    else:
        lines.append(f"  accuracy       device {acc['device']:.4f} vs int8 reference {acc['int8_reference']:.4f} "
                     f"on {acc['test_trials']} test trials ({'equal' if acc['equal'] else 'DIFFERENT'})")
    if "skipped" in e2e:
        lines.append(f"  end to end     skipped: {e2e['skipped']}")
    else:
        lines.append(f"  end to end     {e2e['label_agreement'] * 100:.1f}% gestures agree with the host pipeline; "
                     f"input tensors equal {e2e['tensor_equal']}/{e2e['trials']} (max |diff| {e2e['max_abs_diff']})")
    if lat:
        u = lat["unit"]
        line = f"  latency        min {lat['min']:,.0f}  median {lat['median']:,.0f}  p95 {lat['p95']:,.0f} {u}"
        if lat.get("instructions_per_mac"):
            line += f"  ({lat['instructions_per_mac']:.2f} per MAC)"
        lines.append(line)
        if lat.get("ms_median") is not None:
            lines.append(f"                 = {lat['ms_median']:.2f} ms median ({lat['note']})")
        if "window_ms_median" in e2e:
            lines.append(f"  DSP+inference  {e2e['window_median']:,.0f} {e2e['unit']} per window = "
                         f"{e2e['window_ms_median']:.2f} ms median at the target clock")
    lines.append(f"  memory         model RAM {mem['model_ram_bytes']:,} B; firmware RAM {mem['firmware_ram_bytes'] or 0:,} B, "
                 f"flash {mem['firmware_flash_bytes'] or 0:,} B ({mem['source']})")
    lines.append(f"  results        {s['out_dir']}/validate.json, results.jsonl")
    return "\n".join(lines)


# ---- rfedge bench board ---------------------------------------------------------------------------

def bench_board(board: str, run, *, runs: int = 21, out_dir=None, windows: int = 3, timeout: float = 30.0,
                stream=sys.stderr) -> dict:
    """Instructions per inference (min/median/max of ``runs``), per MAC, and DSP + inference per
    window on ``windows`` test trials, with the design's goals (design.md §6)."""
    from rfedge.board import open_board
    from rfedge.boards import load_board
    from rfedge.codegen import quantize_inputs
    from rfedge.features import trial_window
    from rfedge.proto import CsiPacket

    spec = load_board(board)
    out_dir = Path(out_dir) if out_dir else default_out(run, board)
    fw, rm, tfl, rep = prepare(board, run, out_dir, stream)
    from rfedge_codegen.graph import load_graph

    g = load_graph(tfl)
    x = g.t(g.inputs[0])
    test_X = rm.test_inputs()
    vec = (quantize_inputs(test_X[:1], x.s, x.zp)[0] if test_X is not None
           else np.random.default_rng(0).integers(-128, 128, x.size).astype(np.int8))
    macs = int(rep["macs"])
    r: dict = {"board": board, "model": rm.name, "macs": macs, "clock_hz": spec.clock_hz, "cpi": spec.cpi,
               "unit": spec.counter_unit if spec.counter != "ns" else "ns", "counter": spec.counter}
    with open_board(spec, fw, timeout=timeout, log_dir=out_dir) as dev:
        dev.set_input(vec)
        b = dev.bench(min(runs, dev.info.bench_max))
        r["inference"] = {k: spec.instructions(b[k]) for k in ("min", "median", "max")}
        r["inference"]["runs"] = b["runs"]
        r["instructions_per_mac"] = r["inference"]["median"] / macs if spec.counter != "ns" else None
        r["inference_ms"] = spec.ms(r["inference"]["median"])
        r["ram_bytes"] = dev.info.ram_bytes or fw.info.get("ram_bytes")
        r["flash_bytes"] = dev.info.flash_bytes or fw.info.get("flash_bytes")
        r["model_ram_bytes"] = rep["arena_bytes"]
        trials = _e2e_trials(rm) if dev.info.has_dsp else None
        if trials is not None:
            from rfedge.testing.device_dsp import encode_packets

            ds, ids, cfg = trials
            per = []
            for i in ids[:windows]:
                csi, t_us = trial_window(ds, i, cfg.receiver)
                dev.dsp_reset(0)
                dev.push_csi([CsiPacket(buf=bb.tobytes(), timestamp_us=int(t)) for bb, t in zip(encode_packets(csi), t_us)])
                _, dc = dev.features()
                _, ic = dev.invoke()
                per.append((spec.instructions(dc), spec.instructions(ic)))
            d = float(np.median([p[0] for p in per]))
            tot = float(np.median([p[0] + p[1] for p in per]))
            r["window"] = {"windows": len(per), "dsp": d, "dsp_plus_inference": tot, "ms": spec.ms(tot)}
        else:
            r["window"] = {"skipped": "no on-device DSP in this firmware or no test trials; inference only",
                           "dsp_plus_inference": None, "ms": None}
    if spec.counter != "ns":
        ms = r["window"]["ms"] if r["window"].get("ms") is not None else None
        r["goals"] = {"instructions_per_mac_le_3": r["instructions_per_mac"] <= GOALS["instructions_per_mac_max"],
                      "window_le_20_ms": (ms <= GOALS["window_ms_max"]) if ms is not None else None}
    (out_dir / "bench_board.json").write_text(json.dumps(r, indent=2) + "\n")
    return r


def format_bench(r: dict) -> str:
    u = r["unit"]
    inf = r["inference"]
    lines = [f"{r['model']} on {r['board']}: {r['macs']:,} MACs",
             f"  inference      min {inf['min']:,.0f}  median {inf['median']:,.0f}  max {inf['max']:,.0f} {u} ({inf['runs']} runs)"]
    if r.get("instructions_per_mac") is not None:
        g = r["goals"]
        lines.append(f"  per MAC        {r['instructions_per_mac']:.2f} {u} (goal <= 3: {'met' if g['instructions_per_mac_le_3'] else 'NOT met'})")
        lines.append(f"  at {r['clock_hz'] / 1e6:g} MHz     {r['inference_ms']:.2f} ms per inference (CPI {r['cpi']})")
    w = r["window"]
    if w.get("dsp_plus_inference") is not None:
        line = f"  DSP+inference  {w['dsp_plus_inference']:,.0f} {u} per window (DSP {w['dsp']:,.0f})"
        if w.get("ms") is not None:
            line += f" = {w['ms']:.2f} ms (goal <= 20: {'met' if r['goals']['window_le_20_ms'] else 'NOT met'})"
        lines.append(line)
    else:
        lines.append(f"  DSP+inference  {w['skipped']}")
    lines.append(f"  memory         model RAM {r['model_ram_bytes']:,} B; firmware RAM {r['ram_bytes'] or 0:,} B, flash {r['flash_bytes'] or 0:,} B")
    return "\n".join(lines)
