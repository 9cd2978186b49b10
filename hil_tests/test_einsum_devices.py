"""Paper 003's distributed devices on the boards of ``--board``: three Einsum-network firmwares
(SPR, SA, WA: signals in, features and network on the device, log-posteriors out) plus the
aggregator — the host, and a fourth firmware (rfe_einsum_fuse) on the same board — checked
against the host's integer reference on every test trial of a run (rfedge.validate_einsum).

The run: ``RFEDGE_EINSUM_RUN=DIR`` (an ``rfedge train einsum`` run whose metrics.json names its
dataset), else one made once per session: a small simulated RFID dataset (1 participant, 20
repetitions: 84 test trials) and ``rfedge train einsum --quick`` on it (TensorFlow), or, without
TensorFlow, networks with random weights standardized on the data
(rfedge.einsum_device.write_fitted_run). Instruction counts per device go to the JUnit
properties (``--junitxml``) and stderr; the budget is judged on qemu-rv32.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rfedge import einsum_device as ed
from rfedge import proto

SETS = ed.SETS


@pytest.fixture(scope="session")
def einsum_run(hil_dir) -> Path:
    env = os.environ.get("RFEDGE_EINSUM_RUN")
    if env:
        return Path(env)
    run = hil_dir / "einsum_run"
    with open(hil_dir / "einsum_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # xdist workers (one per board) share one run
        if not (run / "metrics.json").is_file():
            from rfedge.sim.rfid import synth_rfid_dataset

            data = hil_dir / "rfid_data"
            if not (data / "manifest.json").is_file():
                data = synth_rfid_dataset(data, overrides={"participants": 1, "repetitions": 20})
            try:
                import tensorflow  # noqa: F401
            except ImportError:
                ed.write_fitted_run(data, run, seed=0, stream=sys.stderr)
            else:
                from rfedge.einsum_train import train_einsum

                train_einsum(data, run, quick=True, stream=sys.stderr)
    return run


@pytest.fixture(scope="session")
def einsum_validation(board_spec, einsum_run, hil_dir):
    """rfedge validate --einsum with all three devices and the aggregator on this board, once per
    session (resumes an interrupted earlier one)."""
    from rfedge.validate_einsum import format_einsum_summary, validate_einsum

    out = hil_dir / board_spec.name / "einsum"
    s = validate_einsum(einsum_run, board_spec.name, out_dir=out, stream=sys.stderr, junit=out / "junit.xml",
                        aggregator=board_spec.name, timeout=60.0)
    sys.stderr.write(format_einsum_summary(s) + "\n")
    return s


def test_every_device_passes_its_selftest(einsum_validation):
    for k in SETS:
        assert einsum_validation["devices"][k]["selftest"]["pass"], k


@pytest.mark.parametrize("name", SETS)
def test_device_is_bit_exact_with_the_reference(einsum_validation, name):
    d = einsum_validation["devices"][name]
    be = d["bit_exact"]
    assert be["trials"] == einsum_validation["trials"] > 0
    assert be["mismatches"] == 0, f"first differing trial {be['first_mismatch_trial']}, max |diff| {be['max_abs_diff']} LU"


@pytest.mark.parametrize("name", SETS)
def test_device_accuracy_equals_the_reference(einsum_validation, name):
    a = einsum_validation["devices"][name]["accuracy"]
    assert a["device"] == a["reference"]
    assert a["same_predictions"] == einsum_validation["trials"]


def test_merged_accuracy_and_the_aggregator_board(einsum_validation):
    m, ag = einsum_validation["merged"], einsum_validation["aggregator"]
    assert m["device"] == m["reference"] and m["same_predictions"] == einsum_validation["trials"]
    assert ag["selftest"]["pass"]
    assert ag["mismatches"] == 0 and ag["labels_equal_host"]
    assert einsum_validation["pass"]


# Devices measured over the budget on qemu-rv32 (docs/einsum.md has the breakdown), kept
# visible as strict expected failures: the day one meets its budget the test fails until it is
# removed from this list. Empty since the leaf table and the linear-domain normalizer (SA went
# from ~20.8k to ~16.6k instructions against 17,028).
OVER_BUDGET_ON_RV32: dict[str, str] = {}


@pytest.mark.parametrize("name", SETS)
def test_instructions_per_inference(einsum_validation, board_spec, name, record_testsuite_property, request):
    if board_spec.name == "qemu-rv32" and name in OVER_BUDGET_ON_RV32:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{name} over budget: {OVER_BUDGET_ON_RV32[name]}"))
    ins = einsum_validation["devices"][name]["instructions"]
    b = ins["budget"]
    # testsuite properties: the project's JUnit family (xunit2) has no per-testcase properties
    for q in ("min", "median", "p95"):
        record_testsuite_property(f"einsum_{board_spec.name}_{name}_{q}_{ins['unit']}", round(ins[q]))
    record_testsuite_property(f"einsum_{name}_budget_instructions", b["instructions_max"])
    sys.stderr.write(f"{name} on {board_spec.name}: median {ins['median']:,.0f} {ins['unit']} per inference, "
                     f"budget {b['instructions_max']:,}\n")
    assert 0 < ins["min"] <= ins["median"] <= ins["p95"]
    if board_spec.name == "qemu-rv32":
        # issue 6 item 6: <= 4 x (paper MACs + feature OPs) of the device's configuration
        assert ins["within_budget"], (f"{name}: median {ins['median']:,.0f} instructions > "
                                      f"4 x ({b['paper_macs']:,} + {b['feature_ops']:,}) = {b['instructions_max']:,}")


def test_protocol_errors_leave_a_device_serving(einsum_validation, board_spec, einsum_run):
    """A garbage block and a SET_INPUT past the signals get error frames; the device then answers
    a trial exactly as the reference."""
    from rfedge.board import DeviceError, open_board
    from rfedge.firmware import build_firmware
    from rfedge.validate_einsum import EinsumRun

    out = Path(einsum_validation["out_dir"])
    fw = build_firmware(board_spec.name, out / "SA" / "gen", out / "SA" / board_spec.name)   # the validated build
    er = EinsumRun(einsum_run)
    net = er.device_nets()["SA"]
    one = er.sig.take(er.test_ids[:1])
    with open_board(board_spec, fw, timeout=60.0, log_dir=out / "SA") as dev:
        dev.t.write(b"\x00\x13\x37\xff\x00")
        item = dev._next_item(time.monotonic() + 10.0)
        assert item is not None and item.is_error
        with pytest.raises(DeviceError) as e:
            dev.request(proto.SET_INPUT, np.uint32(ed.INPUT_BYTES["SA"] - 1).tobytes() + b"\x00\x00")
        assert e.value.code == proto.E_ARG
        y, _ = dev.invoke(ed.pack_inputs("SA", one)[0].view(np.int8))
        np.testing.assert_array_equal(ed.unpack_output(y, net.C), net.log_posteriors(one)[0])
