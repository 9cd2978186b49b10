"""Paper 003's distributed devices on (virtual) boards: ``rfedge validate --einsum`` and the Einsum
part of ``rfedge bench board``.

``validate_einsum(RUN, boards={"SPR": b1, "SA": b2, "WA": b3})`` builds one firmware per device
(rfedge.einsum_device: int16 signals in, features and the network on the device, int32
log-posteriors out), starts the three boards at once (each is its own process; one host thread
drives each) and, for every test trial of the run:

* sends each device its quantized signals and reads back its log-posteriors and instruction count;
* compares them bit for bit with the host's integer reference (rfid_features_fixed -> the feature
  affine -> einsum_fixed.fixed_log_posteriors);
* fuses the three on the aggregator: the host (einsum_fixed.fixed_fuse) and, with
  ``aggregator=BOARD``, a fourth firmware running rfe_einsum_fuse, which must agree with the host;
* checks that the on-board accuracy (per device and merged) equals the reference's.

Instructions per inference per device (min / median / p95) are compared with the issue's budget,
4 x (paper 003's MACs of the configuration + its feature OPs) (einsum_device.instruction_budget);
on the host board the counter is wall time, so the budget is not judged there.

``pass`` is correctness (self-tests, bit-exactness, accuracies, aggregator board); ``budget_met``
the instruction budget (None unless judged). Results go to ``<out>/results.jsonl`` as they come (one line per device and trial; resumed when
the header — firmwares and trials — matches), the summary to ``<out>/validate_einsum.json`` and,
when asked, JUnit XML.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from rfedge import einsum_device as ed
from rfedge.errors import RfedgeError
from rfedge.validate import Results, latency_stats

SETS = ed.SETS
BUDGET_BOARD = "qemu-rv32"   # issue 6 item 6: "instructions per inference per device on qemu-rv32"


def _say(stream, msg: str) -> None:
    if stream is not None:
        stream.write(f"validate einsum: {msg}\n")
        stream.flush()


def is_einsum_run(run) -> bool:
    """A run of ``rfedge train einsum`` (it holds SPR.npz)."""
    return Path(run).is_dir() and (Path(run) / "SPR.npz").is_file()


def _boards(boards) -> dict:
    if boards is None:
        boards = "host"
    if isinstance(boards, str):
        return {k: boards for k in SETS}
    b = dict(boards)
    missing = [k for k in SETS if k not in b]
    if missing:
        raise RfedgeError(f"boards must name a board for every device {list(SETS)}, missing {missing}", field="boards")
    return {k: b[k] for k in SETS}


class EinsumRun:
    """A run's three networks, its dataset's quantized signals, labels and test trials."""

    def __init__(self, run, dataset=None, stream=None):
        from rfedge.models import einsum_format

        self.path = Path(run)
        mpath = self.path / "metrics.json"
        if not mpath.is_file():
            raise RfedgeError("not a finished einsum run (no metrics.json); run `rfedge train einsum` first",
                              path=self.path)
        self.metrics = json.loads(mpath.read_text())
        self.params = {}
        for k in SETS:
            p = self.path / f"{k}.npz"
            if not p.is_file():
                raise RfedgeError(f"the einsum run has no {k}.npz", path=p)
            self.params[k] = einsum_format.load(p)
        self.dataset = Path(dataset or self.metrics.get("dataset") or "")
        if not str(dataset or self.metrics.get("dataset") or "") or not self.dataset.is_dir():
            raise RfedgeError("the run's dataset is not here; pass dataset=", path=self.dataset, field="dataset")
        from rfedge.data.dataset import Dataset
        from rfedge.rfid_dsp import dataset_signals

        ds = Dataset.open(self.dataset)
        self.labels = np.asarray(ds.labels)
        self.label_names = list(ds.label_names)
        self.float_signals = dataset_signals(ds, stream=stream)
        self.sig = ed.quantize_dataset_signals(self.float_signals)
        self.test_ids = self._test_ids(ds)
        self.train_ids = np.setdiff1d(np.arange(len(self.labels)), self.test_ids)

    def _test_ids(self, ds) -> np.ndarray:
        pred = self.path / "predictions.npz"
        if pred.is_file():
            with np.load(pred) as z:
                if "test_ids" in z:
                    return np.asarray(z["test_ids"], np.int64)
        if "test_ids" in self.metrics:
            return np.asarray(self.metrics["test_ids"], np.int64)
        from rfedge.einsum_train import split_ids

        return split_ids(ds.trials, self.metrics.get("split", "repetition"))[1]

    def device_nets(self) -> dict:
        """Quantized networks; the input range is calibrated on the training trials' device features."""
        cal = self.sig.take(self.train_ids)
        return {k: ed.device_net(k, self.params[k], cal) for k in SETS}


def build_devices(er: EinsumRun, boards: dict, out_dir: Path, stream=None) -> tuple[dict, dict]:
    """(DeviceNet per device, Firmware per device) in ``out_dir/<set>/``."""
    from rfedge.firmware import build_firmware

    nets = er.device_nets()
    golden = er.sig.take(er.test_ids[:1])
    fws = {}
    for k in SETS:
        gen = ed.emit_device_model(nets[k], out_dir / k / "gen", golden, extra={"run": str(er.path)})
        fws[k] = build_firmware(boards[k], gen, out_dir / k / boards[k], stream=stream)
    return nets, fws


def _select_trials(er: EinsumRun, trials) -> np.ndarray:
    ids = er.test_ids
    if trials is None:
        return ids
    if isinstance(trials, (int, np.integer)):
        if trials < 1:
            raise RfedgeError(f"trials must be >= 1, got {trials}", field="trials")
        return ids[:int(trials)]
    t = np.asarray(trials, np.int64)
    bad = np.setdiff1d(t, ids)
    if bad.size:
        raise RfedgeError(f"trial {int(bad[0])} is not a test trial of the run", field="trials")
    return t


def _drive(dev, name, xin, ids, res, lock, out, errors, stream):
    """One device's thread: every trial through SET_INPUT + INVOKE (skipping the ones on disk)."""
    try:
        last = time.monotonic()
        for j, i in enumerate(ids):
            with lock:
                r = res.get(name, int(i))
            if r is None:
                y, c = dev.invoke(xin[j].view(np.int8))
                r = {"kind": name, "i": int(i), "out": y.tobytes().hex(), "count": int(c)}
                with lock:
                    res.add(r)
            out[j] = r
            if stream is not None and time.monotonic() - last > 10:
                last = time.monotonic()
                _say(stream, f"{name}: {j + 1}/{len(ids)} trials")
    except BaseException as e:   # reported by the main thread
        errors[name] = e


def _open_all(specs: dict, fws: dict, out_dir: Path, timeout: float) -> dict:
    from rfedge.board import open_board

    devs = {}
    try:
        for k, fw in fws.items():
            devs[k] = open_board(specs[k], fw, timeout=timeout, log_dir=out_dir / k)
            if devs[k].info.model_hash != fw.model_hash:
                raise RfedgeError(f"device {k} runs model {devs[k].info.model_hash}, the build is {fw.model_hash}")
    except BaseException:
        for d in devs.values():
            d.close(timeout=2.0)
        raise
    return devs


def validate_einsum(run, boards=None, *, dataset=None, trials=None, out_dir=None, stream=sys.stderr, junit=None,
                    resume: bool = True, timeout: float = 30.0, aggregator: str | None = None) -> dict:
    """See the module docstring. ``boards``: one board name for all three devices or {set: board};
    ``trials``: how many test trials (the first ones) or which; ``aggregator``: a board for the
    fourth firmware (None: the host fuses)."""
    from rfedge.boards import load_board
    from rfedge.einsum_fixed import fixed_fuse

    t_start = time.monotonic()
    boards = _boards(boards)
    specs = {k: load_board(b) for k, b in boards.items()}
    er = EinsumRun(run, dataset, stream)
    out_dir = Path(out_dir) if out_dir else er.path / "device_einsum"
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = _select_trials(er, trials)
    nets, fws = build_devices(er, boards, out_dir, stream)
    ref = {k: nets[k].log_posteriors(er.sig.take(ids)) for k in SETS}
    xin = {k: ed.pack_inputs(k, er.sig.take(ids)) for k in SETS}
    y = er.labels[ids]
    header = {"boards": boards, "firmware": {k: fws[k].info["key"] for k in SETS},
              "trials": hashlib.sha256(np.asarray(ids, "<i8").tobytes()).hexdigest()[:16], "n": int(len(ids)),
              "aggregator": aggregator}
    res = Results(out_dir / "results.jsonl", header, resume=resume)
    if res.resumed:
        _say(stream, f"resuming: {res.resumed} results already on disk")
    summary: dict = {"run": str(er.path), "dataset": str(er.dataset), "boards": boards, "out_dir": str(out_dir),
                     "trials": int(len(ids)), "devices": {}, "aggregator": {"where": "board" if aggregator else "host process",
                                                                         "board": aggregator}}
    _say(stream, f"{len(ids)} test trials on {', '.join(f'{k}@{b}' for k, b in boards.items())}")
    lock = threading.Lock()
    try:
        devs = _open_all(specs, fws, out_dir, timeout)
        try:
            for k in SETS:
                bad, _ = devs[k].selftest()
                summary["devices"][k] = {"board": boards[k], "model_hash": fws[k].model_hash,
                                         "selftest": {"mismatched_bytes": int(bad), "pass": bad == 0},
                                         "hello": devs[k].info.to_dict()}
            outs = {k: [None] * len(ids) for k in SETS}
            errors: dict = {}
            threads = [threading.Thread(target=_drive, args=(devs[k], k, xin[k], ids, res, lock, outs[k], errors, stream),
                                        name=f"einsum-{k}", daemon=True) for k in SETS]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                k, e = next(iter(errors.items()))
                raise RfedgeError(f"device {k} ({boards[k]}): {e}") from e
            for k in SETS:
                summary["devices"][k]["retries"] = devs[k].retried
        finally:
            for d in devs.values():
                d.close(timeout=5.0)
        dev_lp = {}
        for k in SETS:
            C = nets[k].C
            lp = np.stack([ed.unpack_output(bytes.fromhex(r["out"]), C) for r in outs[k]])
            dev_lp[k] = lp
            counts = [r["count"] for r in outs[k]]
            diff = (lp != ref[k]).any(axis=1)
            d = summary["devices"][k]
            d["config"] = {n: int(getattr(nets[k].fx, n)) for n in ("F", "D", "K", "L", "R", "C")}
            d["bit_exact"] = {"trials": int(len(ids)), "mismatches": int(diff.sum()),
                              "first_mismatch_trial": int(ids[np.flatnonzero(diff)[0]]) if diff.any() else None,
                              "max_abs_diff": int(np.abs(lp.astype(np.int64) - ref[k]).max()) if len(ids) else 0}
            dl, rl = lp.argmax(1), ref[k].argmax(1)
            d["accuracy"] = {"device": float((dl == y).mean()), "reference": float((rl == y).mean()),
                             "same_predictions": int((dl == rl).sum())}
            d["accuracy"]["equal"] = d["accuracy"]["device"] == d["accuracy"]["reference"]
            # for information: the float network on the float features (the trained model itself)
            d["accuracy"]["float_reference"] = _float_accuracy(er, k, ids, y)
            d["instructions"] = _instructions(counts, specs[k], nets[k])
        dl = fixed_fuse([dev_lp[k] for k in SETS])
        rl = fixed_fuse([ref[k] for k in SETS])
        m = {"device": float((dl == y).mean()), "reference": float((rl == y).mean()),
             "same_predictions": int((dl == rl).sum())}
        m["equal"] = m["device"] == m["reference"]
        summary["merged"] = m
        if aggregator:
            summary["aggregator"].update(_board_aggregator(aggregator, [dev_lp[k] for k in SETS], ids, dl,
                                                           out_dir, res, timeout, stream))
    finally:
        res.close()
    summary["seconds"] = round(time.monotonic() - t_start, 1)
    summary["pass"] = _passed(summary)   # correctness: self-tests, bit-exactness, accuracy, aggregator
    judged = [d["instructions"]["within_budget"] for d in summary["devices"].values()
              if d["instructions"].get("within_budget") is not None]
    summary["budget_met"] = all(judged) if judged else None   # judged on qemu-rv32 only
    (out_dir / "validate_einsum.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    if junit:
        write_junit_einsum(summary, junit)
    return summary


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(type(o))


def _float_accuracy(er: EinsumRun, k: str, ids, y) -> float:
    from rfedge import rfid_features as rf
    from rfedge.models import einsum_format

    s = er.float_signals
    X = rf.spr_features(s.rss[ids], s.phase[ids]) if k == "SPR" else (
        rf.sa_features(s.aoa[ids]) if k == "SA" else rf.wa_features(s.aoa[ids]))
    return float((einsum_format.predict(er.params[k], X) == y).mean())


def _instructions(counts, spec, net) -> dict:
    st = latency_stats(counts, spec)
    b = ed.instruction_budget(net.fx, net.set_name)
    st["budget"] = b
    if spec.name != BUDGET_BOARD:
        st["within_budget"] = None
        st["budget_note"] = (f"the budget is stated for {BUDGET_BOARD}; {spec.name} counts "
                             f"{'wall time' if spec.counter == 'ns' else spec.counter_unit} (reported only)")
        if spec.counter != "ns":
            st["budget_ratio"] = st["median"] / b["instructions_max"]
    else:
        st["within_budget"] = bool(st["median"] <= b["instructions_max"])
        st["budget_ratio"] = st["median"] / b["instructions_max"]
    return st


def _board_aggregator(board: str, lps, ids, host_labels, out_dir: Path, res, timeout: float, stream) -> dict:
    """The fourth board: every trial's three log-posteriors through rfe_einsum_fuse; its labels and
    scores must equal the host's."""
    from rfedge.board import open_board
    from rfedge.boards import load_board
    from rfedge.firmware import build_firmware

    C = lps[0].shape[1]
    gen = ed.emit_fuser_model(len(lps), C, out_dir / "FUSE" / "gen")
    fw = build_firmware(board, gen, out_dir / "FUSE" / board, stream=stream)
    xin = ed.pack_fuse_input(lps)
    host_lab, host_sc = ed.fuse_scores(lps)
    labels, mism, counts = [], 0, []
    with open_board(load_board(board), fw, timeout=timeout, log_dir=out_dir / "FUSE") as dev:
        bad, _ = dev.selftest()
        for j, i in enumerate(ids):
            r = res.get("FUSE", int(i))
            if r is None:
                yv, c = dev.invoke(xin[j].view(np.int8))
                r = res.add({"kind": "FUSE", "i": int(i), "out": yv.tobytes().hex(), "count": int(c)})
            lab, sc = ed.unpack_fuse_output(bytes.fromhex(r["out"]), C)
            labels.append(lab)
            counts.append(r["count"])
            mism += int(lab != host_lab[j] or not np.array_equal(sc, host_sc[j]))
    labels = np.asarray(labels)
    return {"board": board, "model_hash": fw.model_hash, "selftest": {"mismatched_bytes": int(bad), "pass": bad == 0},
            "mismatches": mism, "labels_equal_host": bool(np.array_equal(labels, host_labels)),
            "instructions": latency_stats(counts, load_board(board))}


def _passed(s: dict) -> bool:
    ok = all(d["selftest"]["pass"] and d["bit_exact"]["mismatches"] == 0 and d["accuracy"]["equal"]
             for d in s["devices"].values()) and s["merged"]["equal"]
    ag = s["aggregator"]
    if ag.get("board"):
        ok = ok and ag["selftest"]["pass"] and ag["mismatches"] == 0 and ag["labels_equal_host"]
    return bool(ok)


def write_junit_einsum(s: dict, path) -> None:
    """One JUnit testsuite: per device self-test, bit-exactness, accuracy and the instruction budget;
    merged accuracy; the board aggregator when used. Instruction counts are testcase properties."""
    cases = []

    def case(name, ok, msg, props=None, skipped=None):
        body = ""
        if props:
            body += "<properties>" + "".join(f"<property name={quoteattr(str(a))} value={quoteattr(str(b))}/>"
                                            for a, b in props.items()) + "</properties>"
        if skipped:
            body += f"<skipped message={quoteattr(skipped)}/>"
        elif not ok:
            body += f"<failure message={quoteattr(msg)}>{escape(msg)}</failure>"
        cases.append(f'  <testcase classname="rfedge.validate_einsum" name="{name}">{body}</testcase>')

    for k, d in s["devices"].items():
        case(f"{k}.selftest", d["selftest"]["pass"], f"{d['selftest']['mismatched_bytes']} golden bytes differ")
        be = d["bit_exact"]
        case(f"{k}.bit_exact", be["mismatches"] == 0,
             f"{be['mismatches']} of {be['trials']} trials differ from the integer reference")
        a = d["accuracy"]
        case(f"{k}.accuracy_equals_reference", a["equal"], f"device {a['device']} vs reference {a['reference']}")
        ins = d["instructions"]
        props = {"board": d["board"], "unit": ins.get("unit"), "min": ins.get("min"), "median": ins.get("median"),
                 "p95": ins.get("p95"), "budget": ins["budget"]["instructions_max"]}
        case(f"{k}.instructions_within_budget", ins.get("within_budget") is not False,
             f"median {ins.get('median'):,.0f} instructions > budget {ins['budget']['instructions_max']:,}", props,
             skipped=ins.get("budget_note") if ins.get("within_budget") is None else None)
    m = s["merged"]
    case("merged.accuracy_equals_reference", m["equal"], f"device {m['device']} vs reference {m['reference']}")
    ag = s["aggregator"]
    if ag.get("board"):
        case("aggregator_board", ag["selftest"]["pass"] and ag["mismatches"] == 0,
             f"{ag['mismatches']} trials fused differently from the host", {"board": ag["board"]})
    fails = sum("<failure" in c for c in cases)
    skips = sum("<skipped" in c for c in cases)
    text = (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="rfedge validate einsum" tests="{len(cases)}" '
            f'failures="{fails}" skipped="{skips}" time="{s.get("seconds", 0)}">\n' + "\n".join(cases)
            + "\n</testsuite>\n")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)


def format_einsum_summary(s: dict) -> str:
    bm = {None: f"not judged on these boards ({BUDGET_BOARD} only)", True: "met", False: "NOT met"}[s.get("budget_met")]
    lines = [f"einsum devices {s['run']}: {'PASS' if s['pass'] else 'FAIL'} ({s['trials']} test trials); "
             f"instruction budget {bm}"]
    for k, d in s["devices"].items():
        be, a, ins = d["bit_exact"], d["accuracy"], d["instructions"]
        lines.append(f"  {k:<4} on {d['board']:<10} self-test {'pass' if d['selftest']['pass'] else 'FAIL'}; "
                     f"bit-exact {be['trials'] - be['mismatches']}/{be['trials']}; accuracy device {a['device']:.4f} "
                     f"vs reference {a['reference']:.4f} ({'equal' if a['equal'] else 'DIFFERENT'}; float model "
                     f"{a['float_reference']:.4f})")
        lines.append("       " + _format_instructions(ins))
    m = s["merged"]
    where = f"aggregator board {s['aggregator']['board']}" if s["aggregator"].get("board") else "host aggregator"
    lines.append(f"  merged ({where}) accuracy device {m['device']:.4f} vs reference "
                 f"{m['reference']:.4f} ({'equal' if m['equal'] else 'DIFFERENT'})")
    ag = s["aggregator"]
    if ag.get("board"):
        lines.append(f"  aggregator board {ag['board']}: self-test {'pass' if ag['selftest']['pass'] else 'FAIL'}, "
                     f"{ag['mismatches']} trials differ from the host's fusion")
    lines.append(f"  results {s['out_dir']}/validate_einsum.json, results.jsonl")
    return "\n".join(lines)


def _format_instructions(ins: dict) -> str:
    b = ins["budget"]
    line = (f"min {ins['min']:,.0f}  median {ins['median']:,.0f}  p95 {ins['p95']:,.0f} {ins['unit']} per inference; "
            f"budget 4 x ({b['paper_macs']:,} MACs + {b['feature_ops']:,} feature OPs) = {b['instructions_max']:,}")
    if ins.get("within_budget") is None:
        return line + f" (not judged here: {BUDGET_BOARD} only)"
    return line + f" ({ins['budget_ratio']:.2f}x: {'met' if ins['within_budget'] else 'NOT met'})"


# ---- rfedge bench board on an einsum run ---------------------------------------------------------

def bench_einsum_board(run, board: str, *, runs: int = 21, trials: int = 3, dataset=None, out_dir=None,
                       timeout: float = 30.0, breakdown: bool = True, stream=sys.stderr) -> dict:
    """Instructions per inference of each device on ``board``: BENCH of ``runs`` on each of the
    first ``trials`` test trials; min / median / max over the trials' medians, next to the budget,
    which is judged on the slowest trial. On qemu-rv32 also the network alone (rfedge_codegen.
    emit_einsum's bare-metal measurement, same trials), the rest being the device features and the
    feature affine."""
    from rfedge.board import open_board
    from rfedge.boards import load_board

    spec = load_board(board)
    er = EinsumRun(run, dataset, stream)
    out_dir = Path(out_dir) if out_dir else er.path / "device_einsum"
    nets, fws = build_devices(er, {k: board for k in SETS}, out_dir, stream)
    some = er.sig.take(er.test_ids[:max(1, int(trials))])
    r: dict = {"board": board, "run": str(er.path), "unit": spec.counter_unit if spec.counter != "ns" else "ns",
               "clock_hz": spec.clock_hz, "cpi": spec.cpi, "trials": len(some), "devices": {}}
    for k in SETS:
        per = []
        with open_board(spec, fws[k], timeout=timeout, log_dir=out_dir / k) as dev:
            for x in ed.pack_inputs(k, some):
                dev.set_input(x.view(np.int8))
                b = dev.bench(min(runs, dev.info.bench_max))
                per.append(spec.instructions(b["median"]))
            ram, flash = dev.info.ram_bytes or fws[k].info.get("ram_bytes"), dev.info.flash_bytes or fws[k].info.get("flash_bytes")
        per = np.asarray(per, np.float64)
        d = {"config": {n: int(getattr(nets[k].fx, n)) for n in ("F", "D", "K", "L", "R", "C")},
             "runs": b["runs"], "per_trial": per.tolist(),
             "min": float(per.min()), "median": float(np.median(per)), "max": float(per.max()),
             "budget": ed.instruction_budget(nets[k].fx, k), "ram_bytes": ram, "flash_bytes": flash,
             "leaf_table_cells": 1 << nets[k].fx.lt_bits if nets[k].fx.lt_bits else 0,
             "ms": spec.ms(float(np.median(per))) if spec.counter != "ns" else None}
        if spec.counter != "ns":
            d["budget_ratio"] = d["max"] / d["budget"]["instructions_max"]
        if board == BUDGET_BOARD:
            d["within_budget"] = bool(d["max"] <= d["budget"]["instructions_max"])
        if breakdown and board == "qemu-rv32":
            try:
                from rfedge_codegen.emit_einsum import measure_rv32

                m = measure_rv32(nets[k].fx, nets[k].xq(some), out_dir / k / "einsum_only")
                d["network_only"] = float(np.median(m["instructions"]))
                d["features_and_affine"] = float(np.median(per - m["instructions"]))
            except Exception as e:   # the breakdown is optional: report why it is missing
                d["network_only_error"] = f"{type(e).__name__}: {e}"
        r["devices"][k] = d
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"bench_einsum_{board}.json").write_text(json.dumps(r, indent=2, default=_json_default) + "\n")
    return r


def format_einsum_bench(r: dict) -> str:
    u = r["unit"]
    lines = [f"einsum devices on {r['board']} ({r['run']}), {r.get('trials', 1)} test trials"]
    for k, d in r["devices"].items():
        b = d["budget"]
        c = d["config"]
        line = (f"  {k:<4} (D,K,L,R,C)=({c['D']},{c['K']},{c['L']},{c['R']},{c['C']}) F={c['F']}: "
                f"min {d['min']:,.0f}  median {d['median']:,.0f}  max {d['max']:,.0f} {u} per inference over the trials")
        lines.append(line)
        budget = (f"       budget 4 x ({b['paper_macs']:,} paper MACs + {b['feature_ops']:,} feature OPs) = "
                  f"{b['instructions_max']:,}")
        if d.get("within_budget") is not None:
            budget += f": slowest trial {d['budget_ratio']:.2f}x, {'met' if d['within_budget'] else 'NOT met'}"
        else:
            budget += f" (judged on {BUDGET_BOARD} only)"
        lines.append(budget)
        if "network_only" in d:
            lt = f" (leaf table {d['leaf_table_cells']} cells per feature)" if d.get("leaf_table_cells") else ""
            lines.append(f"       network alone {d['network_only']:,.0f}{lt}, features + affine {d['features_and_affine']:,.0f} (medians)")
        if d.get("ms") is not None:
            lines.append(f"       = {d['ms']:.2f} ms at {r['clock_hz'] / 1e6:g} MHz (CPI {r['cpi']}); "
                         f"RAM {d['ram_bytes'] or 0:,} B, flash {d['flash_bytes'] or 0:,} B")
    return "\n".join(lines)


# ---- command line (dispatched from rfedge.cli on a run that holds SPR.npz) ------------------------

def parse_boards(text: str) -> tuple[dict, str | None]:
    """``--board`` of ``rfedge validate`` on an einsum run: a board name for all three devices,
    and/or ``SPR=B,SA=B,WA=B`` per device, and ``AGG=B`` for an aggregator board (default: the
    host fuses). E.g. ``qemu-rv32,AGG=qemu-rv32``."""
    boards, agg = {}, None
    for tok in (t.strip() for t in str(text).split(",") if t.strip()):
        if "=" in tok:
            k, v = (s.strip() for s in tok.split("=", 1))
            if k.upper() == "AGG":
                agg = v
            elif k.upper() in SETS:
                boards[k.upper()] = v
            else:
                raise RfedgeError(f"--board: unknown device {k!r}; expected {list(SETS)} or AGG", field="board")
        else:
            boards.update({k: tok for k in SETS if k not in boards})
    return _boards(boards if boards else "host"), agg


def cli_validate(a) -> int:
    boards, agg = parse_boards(a.board)
    s = validate_einsum(a.run, boards, trials=a.e2e_trials, out_dir=a.out, resume=not a.no_resume,
                        timeout=a.timeout, junit=a.junit, aggregator=agg, stream=sys.stderr)
    print(json.dumps(s, indent=2, default=_json_default) if a.json else format_einsum_summary(s))
    return 0 if s["pass"] else 1


def cli_bench_board(a) -> int:
    r = bench_einsum_board(a.run, a.board, runs=a.runs, trials=a.windows, out_dir=a.out, stream=sys.stderr)
    print(json.dumps(r, indent=2, default=_json_default) if a.json else format_einsum_bench(r))
    return 0
