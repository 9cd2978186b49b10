"""The ``rfedge`` command: a thin layer over the library, one verb per stage."""

from __future__ import annotations

import argparse
import json
import sys

from rfedge import __version__
from rfedge.errors import RfedgeError

PARSE_FORMATS = ["auto", "esp-csi", "esp32-csi-tool", "npz", "intel5300"]


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


# ---- parse -------------------------------------------------------------------------------------

def cmd_parse(a) -> int:
    from rfedge.io.detect import parse_file

    cap = parse_file(a.file, format=a.format)
    s = cap.summary()
    if a.json:
        _print_json(s)
        return 0
    print(f"{s['source']}: {s['format']}, {s['packets']} packets, {s['subcarriers']} subcarriers "
          f"({s['part']}), {s['antennas']} antenna stream(s)")
    rate = f"{s['rate_hz']:.1f} Hz" if s["rate_hz"] else "unknown"
    dur = f"{s['duration_s']:.2f} s" if s["duration_s"] is not None else "unknown"
    print(f"  rate {rate}, duration {dur}, bandwidth {s['bandwidth']} MHz, secondary channel {s['secondary_channel']}")
    if s["skipped"]:
        print(f"  skipped {s['skipped']}: " + ", ".join(f"{k} {v}" for k, v in s["skipped_reasons"].items()))
    if s["notes"]:
        print("  notes: " + ", ".join(f"{k}: {v}" for k, v in s["notes"].items()))
    if s["meta_columns"]:
        print("  metadata: " + ", ".join(s["meta_columns"]))
    return 0


# ---- bench -------------------------------------------------------------------------------------

def cmd_bench_parse(a) -> int:
    from rfedge.bench.parse import bench_parse

    r = bench_parse(a.file, format=a.format, min_seconds=a.seconds)
    if a.json:
        _print_json(r)
        return 0
    for name, v in r["readers"].items():
        if v.get("packets_per_s") is None:
            print(f"{name:>10}: {v.get('note', 'not run')}")
        else:
            print(f"{name:>10}: {v['packets_per_s']:>12,.0f} packets/s  ({v['packets']} packets x {v['repeats']} runs, "
                  f"{v['seconds']:.3f} s)")
    if r.get("speedup_vs_csiread"):
        print(f"rfedge / csiread: {r['speedup_vs_csiread']:.2f}x")
    return 0


def cmd_bench_activity(a) -> int:
    from rfedge.bench.activity import bench_activity, format_activity

    try:
        r = bench_activity(minutes=a.minutes, train_streams=a.train_streams, test_streams=a.test_streams,
                           statistic=a.statistic)
    except ValueError as e:
        raise RfedgeError(str(e)) from None
    if a.json:
        _print_json(r)
    else:
        print(format_activity(r))
    return 0


# ---- synth -------------------------------------------------------------------------------------

def cmd_synth_csi(a) -> int:
    from rfedge.sim.csi import synth_csi_dataset

    path = synth_csi_dataset(a.out, preset=a.preset, seed=a.seed, write_log=a.write_log,
                             overrides=_overrides(a.set))
    from rfedge.data.info import dataset_summary, format_summary

    print(format_summary(dataset_summary(path)))
    return 0


def cmd_synth_rfid(a) -> int:
    from rfedge.sim.rfid import synth_rfid_dataset

    path = synth_rfid_dataset(a.out, preset=a.preset, seed=a.seed, write_csv=a.write_csv,
                              overrides=_overrides(a.set))
    from rfedge.data.info import dataset_summary, format_summary

    print(format_summary(dataset_summary(path)))
    return 0


def _overrides(items) -> dict:
    """``--set key=value`` pairs, values parsed as TOML scalars (numbers, booleans, strings, lists)."""
    import tomllib

    out = {}
    for item in items or []:
        if "=" not in item:
            raise RfedgeError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            out[k.strip()] = v
    return out


# ---- data --------------------------------------------------------------------------------------

def cmd_data_info(a) -> int:
    from rfedge.data.info import dataset_summary, format_summary

    s = dataset_summary(a.dir)
    if a.json:
        _print_json(s)
    else:
        print(format_summary(s))
    return 0


def cmd_data_import(a) -> int:
    from rfedge.data.importer import import_recordings
    from rfedge.data.info import dataset_summary, format_summary

    path = import_recordings(a.files, a.out, label_from=a.label_from, window_s=a.window,
                             format=a.format, hop_s=a.hop)
    print(format_summary(dataset_summary(path)))
    return 0


# ---- train -------------------------------------------------------------------------------------

def _einsum_split(split: str, fold: str) -> str:
    """`train`'s --split/--fold for the Einsum networks: in-session (the default) is the
    repetition split; cross-user with --fold U (a user index or user=U) leaves user U out."""
    if split in ("in-session", "repetition"):
        return "repetition"
    if split == "cross-user":
        return fold if str(fold).startswith("user=") else f"user={fold}"
    return split


def cmd_train_einsum(a) -> int:
    from pathlib import Path

    from rfedge.einsum_train import train_einsum

    m = train_einsum(a.data, a.out, split=_einsum_split(a.split, a.fold), seed=a.seed, quick=a.quick, epochs=a.epochs)
    for name, n in m["networks"].items():
        c = n["config"]
        print(f"{name} (F={c['F']}, D,K,L,R,C={c['D']},{c['K']},{c['L']},{c['R']},{c['C']}): accuracy {n['accuracy']:.4f}, "
              f"F1 {n['f1']:.4f}; {n['paper_macs']['total']:,} MACs (eqs. 12-14), {n['exact_ops']['total']:,} exact ops")
    g = m["merged"]
    print(f"merged (product of posteriors): accuracy {g['accuracy']:.4f}, F1 {g['f1']:.4f} "
          f"({m['merged_gain_over_best_single_points']:+.1f} points over the best single network; {m['n_test']} test trials)")
    print(f"  metrics: {Path(a.out) / 'metrics.json'}")
    return 0


def cmd_train_semantic(a) -> int:
    """The semantic teacher (paper 000) and students distilled from it (rfedge.distill)."""
    from pathlib import Path

    from rfedge.distill import train_distilled, train_teacher

    if a.model == "teacher":
        if a.teacher:
            raise RfedgeError("--teacher is for distilling a student, not for training the teacher", field="--teacher")
        m = train_teacher(a.data, a.out, split=a.split, fold=a.fold, seed=a.seed, epochs=a.epochs, quick=a.quick,
                          feature_cfg=_feature_cfg(a), stream=sys.stderr)
    else:
        if a.model not in ("student", "student-tcn"):
            raise RfedgeError(f"--teacher distils into student or student-tcn, not {a.model}", field="model")
        m = train_distilled(a.data, a.teacher, a.out, variant=a.distill, split=a.split, fold=a.fold, seed=a.seed,
                            epochs=a.epochs, quick=a.quick, student=a.model, stream=sys.stderr)
    print(f"{m.get('model', a.model)} on {m.get('split')} / {m.get('fold')}: accuracy {m['accuracy']:.4f}, "
          f"macro-F1 {m['macro_f1']:.4f}")
    print(f"  metrics: {Path(a.out) / 'metrics.json'}")
    return 0


def _feature_cfg(a, model: str | None = None):
    """The FeatureConfig ``--features`` asks for on ``--data`` (rfedge.features.config_for)."""
    from rfedge.data.dataset import Dataset
    from rfedge.features import config_for

    return config_for(Dataset.open(a.data), a.features, model)


def cmd_train(a) -> int:
    from pathlib import Path

    from rfedge.train import train

    if a.model == "einsum":
        return cmd_train_einsum(a)
    if a.model == "teacher" or a.teacher:
        return cmd_train_semantic(a)
    if a.model == "align":
        from rfedge.align import train_alignment

        m = train_alignment(a.data, a.out, split=a.split, fold=a.fold, mirror=not a.no_mirror, seed=a.seed,
                            epochs=a.epochs, quick=a.quick, feature_cfg=_feature_cfg(a), stream=sys.stderr)
        print(f"align ({'with' if not a.no_mirror else 'without'} mirror-consistency) on {m.get('split')} / "
              f"{m.get('fold')}: top-1 caption retrieval {m['accuracy']:.4f}")
        print(f"  metrics: {Path(a.out) / 'metrics.json'}")
        return 0

    m = train(a.data, a.out, model=a.model, split=a.split, fold=a.fold, seed=a.seed, epochs=a.epochs,
              quick=a.quick, feature_cfg=_feature_cfg(a, a.model))
    print(f"{m['model']} on {m['split']} / {m['fold']}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
          f"({m['n_test']} test trials)")
    print(f"  {m['parameters']:,} parameters, {m['macs']:,} MACs, host latency {m['host_latency_ms_per_window']:.2f} ms/window")
    print(f"  metrics: {Path(a.out) / 'metrics.json'}")
    return 0


# ---- evaluate ----------------------------------------------------------------------------------

def cmd_evaluate(a) -> int:
    from rfedge.evaluate import evaluate_paper002, format_markdown

    if a.protocol == "paper003":
        from rfedge.evaluate_rfid import evaluate_paper003, format_markdown as format_paper003

        r = evaluate_paper003(a.data, a.out, seed=a.seed, quick=a.quick)
        print(format_paper003(r), end="")
        print(f"results: {a.out}/results.md, results.json and confusion/*.png")
        return 0
    if a.protocol == "paper001":
        from rfedge.align import evaluate_alignment, format_results

        r = evaluate_alignment(a.data, a.out, quick=a.quick, seeds=(a.seed,), stream=sys.stderr)
        print(format_results(r), end="")
        print(f"results: {a.out}/results.md, results.json")
        return 0
    if a.protocol == "paper000":
        from rfedge.evaluate_distill import evaluate_paper000, format_markdown as format_paper000

        r = evaluate_paper000(a.data, a.out, quick=a.quick, seed=a.seed, stream=sys.stderr)
        print(format_paper000(r), end="")
        print(f"results: {a.out}/results.md, results.json and runs/")
        return 0
    if a.protocol != "paper002":
        raise RfedgeError(f"unknown protocol {a.protocol!r}; available: paper000, paper001, paper002, paper003")
    models = tuple(a.models.split(",")) if a.models else None
    r = evaluate_paper002(a.data, a.out, seed=a.seed, quick=a.quick, jobs=a.jobs,
                          **({"models": models} if models else {}))
    print(format_markdown(r), end="")
    print(f"results: {a.out}/results.md, results.json and confusion/*.png")
    return 0


# ---- codegen -----------------------------------------------------------------------------------

def cmd_codegen(a) -> int:
    from rfedge.codegen import codegen

    r = codegen(a.run, a.out, fmt=a.format, name=a.name, stream=sys.stderr)
    if a.json:
        _print_json(r)
    return 0


def cmd_bench_codegen(a) -> int:
    from rfedge.codegen import bench_codegen

    results = [bench_codegen(run, n_vectors=a.vectors, instructions=not a.no_instructions, stream=sys.stderr)
               for run in a.run]
    if a.json:
        _print_json(results[0] if len(results) == 1 else results)
        return 0
    for r in results:
        hi, ti = r["host_instructions"], r["tflm_host_instructions"]
        print(f"{r['model']} ({r['run']}): {r['vectors']} vectors, {r['mismatches']} mismatches vs TFLM; "
              f"{r['selftest']}")
        print(f"  RAM   {r['ram_bytes']:>9,} B  = {r['ram_ratio']:.3f} x TFLM arena {r['tflm_arena_bytes']:,} B (goal <= 0.35)")
        print(f"  flash {r['flash_bytes']:>9,} B  = {r['flash_ratio']:.3f} x (.tflite {r['tflite_bytes']:,} B + TFLM runtime "
              f"{r['tflm_runtime_bytes']:,} B) (goal <= 0.65); {r['flash_target']}")
        if hi is not None and ti is not None:
            print(f"  host instructions/inference {hi:,} vs TFLM {ti:,} ({ti / hi:.2f}x fewer)")
        else:
            print(f"  host instructions: {r.get('host_instructions_reason') or r.get('tflm_host_instructions_reason')}")
    return 0 if all(r["mismatches"] == 0 for r in results) else 1


# ---- quantize / report ------------------------------------------------------------------------

def cmd_quantize(a) -> int:
    from rfedge.quantize import QUANTIZE_JSON, quantize

    r = quantize(a.run, calibration=a.calibration, stream=sys.stderr)
    if a.json:
        _print_json({k: v for k, v in r.items() if k != "predictions"})
        return 0
    print(f"{r['model']} on {r['split']} / {r['fold']}, {r['n_test']} test windows:")
    print(f"  float (Keras)  accuracy {r['float']['accuracy']:.4f}  macro-F1 {r['float']['macro_f1']:.4f}")
    print(f"  int8 (TFLM)    accuracy {r['int8']['accuracy']:.4f}  macro-F1 {r['int8']['macro_f1']:.4f}  "
          f"(top-1 agreement with float {r['top1_agreement']:.4f})")
    print(f"  {r['tflite']}: {r['tflite_bytes']:,} B, {r['n_ops']} ops, {r['calibration']['windows']} calibration windows; "
          f"{QUANTIZE_JSON} next to it")
    return 0


def cmd_report(a) -> int:
    from rfedge.report import build_report, format_summary

    r = build_report(a.run, a.out, layer_windows=a.layer_windows, c_column=not a.no_c, stream=sys.stderr)
    if a.json:
        _print_json(r)
    else:
        print(format_summary(r))
    # the generated C must give TFLM's bytes: a difference is a failure, as in `bench codegen`
    return 0 if all(p["identical_windows"] == p["windows"] for p in r["integer_agreement"]) else 1


# ---- validate / bench board (virtual and real boards) ------------------------------------------

def cmd_validate(a) -> int:
    from rfedge.validate import format_summary, validate
    from rfedge.validate_einsum import cli_validate, is_einsum_run

    if is_einsum_run(a.run):   # paper 003's three devices + aggregator (rfedge.validate_einsum)
        return cli_validate(a)

    s = validate(a.board, a.run, vectors=a.vectors, out_dir=a.out, resume=not a.no_resume, e2e_trials=a.e2e_trials,
                 timeout=a.timeout, junit=a.junit, stream=sys.stderr)
    if a.json:
        _print_json(s)
    else:
        print(format_summary(s))
    return 0 if s["pass"] else 1


def cmd_flash(a) -> int:
    from rfedge.flash import flash, parse_board

    board, port = parse_board(a.board)
    r = flash(board, a.run, port, build_dir=a.build_dir, baud=a.baud, stub=a.stub, stream=sys.stderr)
    if a.json:
        _print_json(r)
    elif "images" in r:
        print(f"{r['board']} ({r['chip']}) on {r['port']}: " + ", ".join(
            f"{i['size']:,} B at {i['offset']}" for i in r["images"]) + " written, MD5 verified, reset")
    else:
        print(f"{r['board']}: firmware {r['firmware']} built and launched (model {r['model_hash']})")
    return 0


def cmd_bench_board(a) -> int:
    from rfedge.validate import bench_board, format_bench
    from rfedge.validate_einsum import cli_bench_board, is_einsum_run

    if is_einsum_run(a.run):   # instructions per inference per device vs the budget
        return cli_bench_board(a)

    r = bench_board(a.board, a.run, runs=a.runs, out_dir=a.out, windows=a.windows, stream=sys.stderr)
    if a.json:
        _print_json(r)
    else:
        print(format_bench(r))
    return 0


# ---- pipeline ----------------------------------------------------------------------------------

def cmd_pipeline(a) -> int:
    from rfedge.pipeline import run_pipeline

    boards = [b.strip() for b in a.boards.split(",") if b.strip()] if a.boards else None
    s = run_pipeline(a.out, preset=a.preset, seed=a.seed, boards=boards, vectors=a.vectors, quick=a.quick)
    print(f"pipeline: done in {s['seconds']:.0f} s; report at {s['report']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rfedge", description=__doc__)
    p.add_argument("--version", action="version", version=f"rfedge {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    sp = sub.add_parser("parse", help="read a CSI capture and summarize it")
    sp.add_argument("file")
    sp.add_argument("--format", choices=PARSE_FORMATS, default="auto")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    sp.set_defaults(func=cmd_parse)

    sp = sub.add_parser("bench", help="benchmarks that print figures")
    bsub = sp.add_subparsers(dest="what", required=True, metavar="WHAT")
    bp = bsub.add_parser("parse", help="packets per second of rfedge's reader (and csiread's, when installed)")
    bp.add_argument("file")
    bp.add_argument("--format", choices=PARSE_FORMATS, default="auto")
    bp.add_argument("--seconds", type=float, default=1.0, help="minimum time per reader (default 1 s)")
    bp.add_argument("--json", action="store_true")
    bp.set_defaults(func=cmd_bench_parse)
    ba = bsub.add_parser("activity", help="gesture activity detection on simulated streams: onset error, false alarms/min")
    ba.add_argument("--minutes", type=float, default=2.0, help="length of each simulated stream (default 2)")
    ba.add_argument("--train-streams", type=int, default=2, help="streams the threshold is fitted on (default 2)")
    ba.add_argument("--test-streams", type=int, default=3, help="held-out streams scored (default 3)")
    ba.add_argument("--statistic", choices=["doppler", "change"], default="doppler")
    ba.add_argument("--json", action="store_true")
    ba.set_defaults(func=cmd_bench_activity)
    bc = bsub.add_parser("codegen", help="generated C vs TFLite Micro: bit-exactness, RAM, flash, instructions")
    bc.add_argument("run", nargs="+", metavar="RUN", help="run directory (or .tflite file)")
    bc.add_argument("--vectors", type=int, default=1000, help="input vectors compared (default 1000)")
    bc.add_argument("--no-instructions", action="store_true", help="skip the callgrind instruction counts (slow)")
    bc.add_argument("--json", action="store_true")
    bc.set_defaults(func=cmd_bench_codegen)
    bb = bsub.add_parser("board", help="instructions per inference and per MAC, DSP + inference per window, on a board")
    bb.add_argument("run", metavar="RUN", help="run directory (or .tflite file)")
    bb.add_argument("--board", required=True, help="host, qemu-rv32 or qemu-m4")
    bb.add_argument("--runs", type=int, default=21, help="inferences timed on the device (default 21, at most 101)")
    bb.add_argument("--windows", type=int, default=3,
                    help="test windows through DSP + inference; on an einsum run the test trials measured (default 3)")
    bb.add_argument("--out", default=None, metavar="DIR", help="build and result directory (default RUN/device/BOARD)")
    bb.add_argument("--json", action="store_true")
    bb.set_defaults(func=cmd_bench_board)

    sp = sub.add_parser("codegen", help="the run's int8 model as standalone C (or a TFLM C array)")
    sp.add_argument("run", metavar="RUN", help="run directory (or .tflite file)")
    sp.add_argument("--out", required=True, metavar="DIR")
    sp.add_argument("--format", choices=["c", "tflm"], default="c",
                    help="c: standalone C99 (default); tflm: flatbuffer C array + op resolver for TFLite Micro")
    sp.add_argument("--name", default="model", help="file and symbol name: NAME.c, rfe_NAME_invoke (default model)")
    sp.add_argument("--json", action="store_true", help="print the generator's report")
    sp.set_defaults(func=cmd_codegen)

    sp = sub.add_parser("validate", help="the run's firmware on a board: bit-exactness, accuracy, end to end, latency, memory")
    sp.add_argument("run", metavar="RUN", help="run directory (or .tflite file)")
    sp.add_argument("--board", required=True, help="host, qemu-rv32 or qemu-m4")
    sp.add_argument("--vectors", type=int, default=1000, help="int8 vectors compared with TFLM (default 1000)")
    sp.add_argument("--e2e-trials", type=int, default=None, metavar="N", help="test trials run end to end (default all)")
    sp.add_argument("--out", default=None, metavar="DIR", help="build and result directory (default RUN/device/BOARD)")
    sp.add_argument("--junit", default=None, metavar="FILE", help="also write a JUnit XML report")
    sp.add_argument("--no-resume", action="store_true", help="start over instead of resuming an interrupted run")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one answer (default 30)")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
    sp.set_defaults(func=cmd_validate)

    sp = sub.add_parser("flash", help="build the run's firmware and load it onto a board (esptool for ESP32s)")
    sp.add_argument("run", metavar="RUN", help="run directory (or .tflite file)")
    sp.add_argument("--board", required=True, metavar="B[:PORT]",
                    help="host, qemu-rv32, qemu-m4, or esp32 / esp32s3 / esp32c3 with the serial port "
                         "(esp32c3:/dev/ttyUSB0, esp32s3:rfc2217://host:4000)")
    sp.add_argument("--build-dir", default=None, metavar="DIR",
                    help="an ESP-IDF build (flasher_args.json) or PlatformIO build (.pio/build/ENV) to flash")
    sp.add_argument("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    sp.add_argument("--stub", action="store_true",
                    help="use esptool's flasher stub (faster; the default ROM loader path is the tested one)")
    sp.add_argument("--json", action="store_true", help="print the flash record as JSON")
    sp.set_defaults(func=cmd_flash)

    sp = sub.add_parser("synth", help="simulate datasets")
    ssub = sp.add_subparsers(dest="what", required=True, metavar="WHAT")
    sc = ssub.add_parser("csi", help="ESP32 Wi-Fi CSI gestures (paper 002 signal model)")
    sc.add_argument("--preset", default="esp32-digits")
    sc.add_argument("--out", required=True)
    sc.add_argument("--seed", type=int, default=None, help="override the preset's seed")
    sc.add_argument("--write-log", action="store_true", help="also write esp-csi CSI_DATA logs under DIR/logs/")
    sc.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a preset field")
    sc.set_defaults(func=cmd_synth_csi)
    sr = ssub.add_parser("rfid", help="passive-RFID arm gestures (paper 003 signal model)")
    sr.add_argument("--preset", default="arm21")
    sr.add_argument("--out", required=True)
    sr.add_argument("--seed", type=int, default=None)
    sr.add_argument("--write-csv", action="store_true", help="also write Impinj ItemTest CSVs under DIR/itemtest/")
    sr.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a preset field")
    sr.set_defaults(func=cmd_synth_rfid)

    sp = sub.add_parser("data", help="inspect and build datasets")
    dsub = sp.add_subparsers(dest="what", required=True, metavar="WHAT")
    di = dsub.add_parser("info", help="counts per class and domain")
    di.add_argument("dir")
    di.add_argument("--json", action="store_true")
    di.set_defaults(func=cmd_data_info)
    dm = dsub.add_parser("import", help="build a dataset from labelled recordings")
    dm.add_argument("files", nargs="+")
    dm.add_argument("--out", required=True)
    dm.add_argument("--label-from", default="filename",
                    help="'filename' (leading word of the file name) or 'column[:NAME]' (default NAME: label)")
    dm.add_argument("--window", type=float, required=True, metavar="SECONDS")
    dm.add_argument("--hop", type=float, default=None, metavar="SECONDS", help="window hop (default: window)")
    dm.add_argument("--format", choices=PARSE_FORMATS, default="auto")
    dm.set_defaults(func=cmd_data_import)

    from rfedge.models import MODEL_KINDS

    sp = sub.add_parser("train", help="train a model on one fold of a dataset split")
    sp.add_argument("model", choices=[*MODEL_KINDS, "einsum", "teacher", "align"],
                    help="einsum: the three per-device Einsum networks of paper 003 on an rfid dataset "
                         "(--split in-session: repetitions 16-19 test; cross-user --fold U: leave user U out); "
                         "teacher: paper 000's semantic teacher (needs a 2-antenna dataset, e.g. esp32-mirror); "
                         "align: paper 001's CSI-text alignment with caption retrieval as an int8 model")
    sp.add_argument("--no-mirror", action="store_true", help="align: without the mirror-consistency hinge")
    sp.add_argument("--features", default="auto", choices=["auto", "amplitude", "cross-antenna"],
                    help="CSI input channels: amplitude (what the device DSP computes), cross-antenna (+ 4 "
                         "handedness channels from a receiver's 2 antennas, host-side) or auto (default: "
                         "cross-antenna on 2-antenna datasets, except for the svm)")
    sp.add_argument("--teacher", default=None, metavar="RUN",
                    help="distil the student from this teacher run (same dataset, split and fold)")
    sp.add_argument("--distill", default="full", choices=["alone", "soft", "feature", "full"],
                    help="with --teacher: which losses (alone: cross-entropy only; soft: + KL on the teacher's "
                         "softened outputs; feature: + MSE on projected features; full: both)")
    sp.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    sp.add_argument("--split", default="in-session", metavar="NAME", help="split name (default in-session)")
    sp.add_argument("--fold", default="0", metavar="N", help="fold index or name (default 0)")
    sp.add_argument("--out", required=True, metavar="RUN", help="run directory for the model and metrics")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping may end sooner)")
    sp.add_argument("--quick", action="store_true", help="a few epochs: smoke tests")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("quantize", help="full-int8 post-training quantization of a run's model, float vs int8 accuracy")
    sp.add_argument("run", metavar="RUN", help="run directory written by `rfedge train` (Keras model)")
    sp.add_argument("--calibration", type=int, default=300, metavar="N",
                    help="representative windows from the training side of the run's fold (default 300)")
    sp.add_argument("--json", action="store_true", help="print quantize.json (without the predictions)")
    sp.set_defaults(func=cmd_quantize)

    sp = sub.add_parser("report", help="quantization report: float vs int8 (TFLM) vs generated C")
    sp.add_argument("run", metavar="RUN", help="quantized run directory (`rfedge quantize RUN` first)")
    sp.add_argument("--out", default=None, metavar="DIR", help="report directory (default RUN/report)")
    sp.add_argument("--layer-windows", type=int, default=32, metavar="N",
                    help="test windows for the per-layer error (default 32)")
    sp.add_argument("--no-c", action="store_true", help="skip the generated-C column")
    sp.add_argument("--json", action="store_true", help="print report.json")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("evaluate", help="a paper's evaluation protocol on a dataset")
    sp.add_argument("--data", required=True, metavar="DIR")
    sp.add_argument("--protocol", default="paper002",
                    help="paper000 (CSI, teacher and distillation ablation), paper001 (CSI, caption alignment), "
                         "paper002 (CSI) or paper003 (rfid, Einsum networks)")
    sp.add_argument("--out", required=True, metavar="RUN")
    sp.add_argument("--models", default=None, help="comma-separated subset of student,cnn,svm")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--quick", action="store_true",
                    help="smoke preset, not paper figures: 2 cross-user folds, <= 400 training and 200 test "
                         "trials per fold, 3 epochs")
    sp.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="runs trained at once in worker processes (default: CPUs, at most 2)")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("pipeline", help="the main job, end to end on the embedded default")
    sp.add_argument("--out", default="runs/pipeline")
    sp.add_argument("--preset", default="esp32-digits")
    sp.add_argument("--seed", type=int, default=None)
    sp.add_argument("--boards", default=None, metavar="B,B",
                    help="virtual boards to validate on (default: host, plus qemu-rv32 when installed)")
    sp.add_argument("--vectors", type=int, default=1000, help="bit-exactness vectors per board (default 1000)")
    sp.add_argument("--quick", action="store_true", help="smoke run: a few epochs, 100 vectors")
    sp.set_defaults(func=cmd_pipeline)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return a.func(a) or 0
    except RfedgeError as e:
        print(f"rfedge: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("rfedge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
