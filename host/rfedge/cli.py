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

def cmd_train(a) -> int:
    from pathlib import Path

    from rfedge.train import train

    m = train(a.data, a.out, model=a.model, split=a.split, fold=a.fold, seed=a.seed, epochs=a.epochs,
              quick=a.quick)
    print(f"{m['model']} on {m['split']} / {m['fold']}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
          f"({m['n_test']} test trials)")
    print(f"  {m['parameters']:,} parameters, {m['macs']:,} MACs, host latency {m['host_latency_ms_per_window']:.2f} ms/window")
    print(f"  metrics: {Path(a.out) / 'metrics.json'}")
    return 0


# ---- evaluate ----------------------------------------------------------------------------------

def cmd_evaluate(a) -> int:
    from rfedge.evaluate import evaluate_paper002, format_markdown

    if a.protocol != "paper002":
        raise RfedgeError(f"unknown protocol {a.protocol!r}; available: paper002")
    models = tuple(a.models.split(",")) if a.models else None
    r = evaluate_paper002(a.data, a.out, seed=a.seed, quick=a.quick, **({"models": models} if models else {}))
    print(format_markdown(r))
    print(f"results: {a.out}/results.md and results.json")
    return 0


# ---- pipeline ----------------------------------------------------------------------------------

def cmd_pipeline(a) -> int:
    from rfedge.pipeline import run_pipeline

    run_pipeline(a.out, preset=a.preset, seed=a.seed)
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
    sp.add_argument("model", choices=list(MODEL_KINDS))
    sp.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
    sp.add_argument("--split", default="in-session", metavar="NAME", help="split name (default in-session)")
    sp.add_argument("--fold", default="0", metavar="N", help="fold index or name (default 0)")
    sp.add_argument("--out", required=True, metavar="RUN", help="run directory for the model and metrics")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping may end sooner)")
    sp.add_argument("--quick", action="store_true", help="a few epochs: smoke tests")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("evaluate", help="a paper's evaluation protocol on a dataset")
    sp.add_argument("--data", required=True, metavar="DIR")
    sp.add_argument("--protocol", default="paper002", help="paper002")
    sp.add_argument("--out", required=True, metavar="RUN")
    sp.add_argument("--models", default=None, help="comma-separated subset of student,cnn,svm")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--quick", action="store_true", help="few epochs, two cross-user folds: smoke tests")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("pipeline", help="the main job, end to end on the embedded default")
    sp.add_argument("--out", default="runs/pipeline")
    sp.add_argument("--preset", default="esp32-digits")
    sp.add_argument("--seed", type=int, default=None)
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
