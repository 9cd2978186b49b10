"""Caption retrieval (paper 001) on the board: a quick alignment run on a tiny esp32-mirror set,
its int8 model (CSI embedding -> int8 caption-table layer -> class scores) through codegen and
the board, bit-exact with TFLM and as accurate as the int8 reference (rfedge validate)."""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path

import pytest

VECTORS = 200   # the student's run takes the suite's --vectors; this second model a sample


@pytest.fixture(scope="session")
def align_run(hil_dir) -> Path:
    run = hil_dir / "align_run"
    with open(hil_dir / "align_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # xdist workers (one per board) share one run
        if not (run / "metrics.json").is_file():
            from rfedge.align import train_alignment
            from rfedge.sim.csi import synth_csi_dataset

            data = synth_csi_dataset(hil_dir / "mirror_data", preset="esp32-mirror",
                                     overrides=dict(users=3, trials_per_class=2))
            train_alignment(data, run, quick=True, stream=sys.stderr)
    return run


@pytest.fixture(scope="session")
def align_validation(board_spec, align_run, hil_dir):
    from rfedge.validate import format_summary, validate

    s = validate(board_spec.name, align_run, vectors=VECTORS, out_dir=hil_dir / board_spec.name / "align",
                 stream=sys.stderr)
    sys.stderr.write(format_summary(s) + "\n")
    return s


def test_caption_retrieval_is_bit_exact_on_the_board(align_validation):
    assert align_validation["selftest"]["pass"]
    be = align_validation["bit_exact"]
    assert be["vectors"] >= VECTORS and be["mismatches"] == 0, f"first mismatch at vector {be['first_mismatch']}"
    assert be["sources"].get("test_split", 0) > 0


def test_caption_retrieval_accuracy_on_the_board(align_validation):
    acc = align_validation["accuracy"]
    assert acc["device"] == acc["int8_reference"] and acc["same_predictions"] == acc["test_trials"] > 0
    # the handedness channels are host-side: this firmware has no device DSP, so no end-to-end part
    assert "skipped" in align_validation["end_to_end"]
