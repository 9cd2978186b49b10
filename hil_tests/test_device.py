"""On-board checks (rfedge validate's figures as assertions) and protocol behaviour on the board."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rfedge import proto
from rfedge.board import DeviceError


def test_selftest(validation, dut):
    assert validation["selftest"]["pass"]
    bad, count = dut.selftest()
    assert bad == 0 and count > 0


def test_bit_exact_with_tflm(validation, request):
    be = validation["bit_exact"]
    assert be["vectors"] >= request.config.getoption("--vectors")
    assert be["mismatches"] == 0, f"first mismatch at vector {be['first_mismatch']}"
    assert be["sources"].get("test_split", 0) > 0 or validation["accuracy"].get("skipped")


def test_accuracy_equals_int8_reference(validation):
    acc = validation["accuracy"]
    if "skipped" in acc:
        pytest.skip(acc["skipped"])
    assert acc["device"] == acc["int8_reference"]
    assert acc["same_predictions"] == acc["test_trials"]


def test_end_to_end_agrees_with_the_host_pipeline(validation):
    e2e = validation["end_to_end"]
    if "skipped" in e2e:
        pytest.skip(e2e["skipped"])
    assert e2e["label_agreement"] == 1.0
    assert e2e["tensor_equal"] == e2e["trials"], f"max |diff| {e2e['max_abs_diff']}"


def test_latency_and_memory_are_reported(validation, board_spec):
    lat, mem = validation["latency"], validation["memory"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p95"] <= lat["max"]
    if board_spec.counter == "instret":   # exact under -icount: every inference of one model costs alike
        assert lat["max"] - lat["min"] < 0.02 * lat["median"]
    if board_spec.counter != "ns":
        assert lat["ms_median"] == pytest.approx(lat["median"] * board_spec.cpi / board_spec.clock_hz * 1e3)
        assert 0 < mem["firmware_ram_bytes"] <= 400 * 1024 and mem["firmware_flash_bytes"] > mem["model_const_bytes"]
    assert mem["model_ram_bytes"] > 0


def test_hello_describes_the_firmware(dut, board_spec):
    info = dut.hello()
    assert info.board == board_spec.name and info.model_hash == dut.firmware.model_hash
    assert info.clock_hz == board_spec.clock_hz and info.counter == board_spec.counter


def test_bench_on_the_board(dut, board_spec):
    b = dut.bench(5)
    assert b["runs"] == 5 and 0 < b["min"] <= b["median"] <= b["max"]
    if board_spec.counter == "instret":
        assert b["max"] - b["min"] < 0.02 * b["median"]


def test_corrupt_frames_are_answered_and_the_board_keeps_serving(dut):
    bad = bytearray(proto.encode_frame(proto.ECHO, 1234, b"x" * 40))
    bad[10] ^= 0x08
    dut.t.write(bytes(bad))
    dut.t.write(b"\x00" + b"\x33" * (proto.MAX_ENCODED + 50) + b"\x00")
    errors = []
    import time

    deadline = time.monotonic() + 10
    while len(errors) < 2:
        item = dut._next_item(deadline)
        assert item is not None, "no error frame within 10 s"
        if isinstance(item, proto.Frame) and item.is_error:
            errors.append(item.error[0])
    assert errors[1] == proto.E_TOO_LONG and errors[0] in (proto.E_CRC, proto.E_COBS, proto.E_LENGTH)
    assert dut.echo(b"alive") == b"alive"
    with pytest.raises(DeviceError):
        dut.request(proto.GET_INPUT, struct.pack("<IH", 10 ** 6, 4))


def test_features_match_the_host_dsp(dut, validation):
    """FEATURES on one test window again, through the DUT fixture: the device's tensor equals the
    host pipeline's (the whole test split ran in validation)."""
    if not dut.info.has_dsp:
        pytest.skip("the firmware was built without the on-device DSP")
    e2e = validation["end_to_end"]
    if "skipped" in e2e:
        pytest.skip(e2e["skipped"])
    from rfedge.codegen import RunModel
    from rfedge.features import trial_window
    from rfedge.testing.device_dsp import encode_packets, reference_input

    rm = RunModel(validation["run"])
    ds, fold = rm._dataset_fold()
    i = sorted(fold["test"])[-1]
    csi, t_us = trial_window(ds, i, rm.feature_cfg.receiver)
    q_host, _ = reference_input(csi, t_us, rm.feature_cfg, rm.normalizer, dut.info.input_scale, dut.info.input_zero_point)
    dut.dsp_reset(0)
    r = dut.push_csi([proto.CsiPacket(buf=b.tobytes(), timestamp_us=int(t)) for b, t in zip(encode_packets(csi), t_us)])
    assert r["accepted"] == len(t_us)
    q_dev, count = dut.features()
    assert count > 0
    assert np.array_equal(q_dev, q_host)


def test_stream_mode_finds_and_classifies_the_gestures_the_host_does(dut, validation):
    """STREAM: a simulated 30 s stream's packets in, gesture events out (the device's activity
    detector, then DSP + model on each gesture's window); the same gestures as
    rfedge.activity.detect_stream, and the same classes as the host pipeline on those windows."""
    if not dut.info.has_dsp:
        pytest.skip("the firmware was built without the on-device DSP")
    from rfedge import activity
    from rfedge.codegen import RunModel
    from rfedge.sim.csi_stream import synth_stream
    from rfedge.testing.device_dsp import encode_packets, reference_input
    from rfedge_codegen import reference

    rm = RunModel(validation["run"])
    st = synth_stream(seed=5, minutes=0.5)
    thr = 4.0
    t_us = np.asarray(st.t_us, np.int64)
    dut.dsp_reset(1, thr)
    r = dut.push_csi([proto.CsiPacket(buf=b.tobytes(), timestamp_us=int(t)) for b, t in zip(encode_packets(st.csi), t_us)],
                     end=True)
    events = r["events"]
    want = activity.detect_stream(st.csi, st.t_us, thr)
    assert len(want) > 0 and len(events) == len(want)
    tfl = (dut.firmware.build_dir.parent / "gen" / "model.tflite").read_bytes()
    margin = int(round(rm.feature_cfg.margin_s * 1e6))
    for ev, (a, b) in zip(events, want):
        assert ev["status"] == 0 and ev["counter"] > 0
        assert abs(ev["start_us"] * 1e-6 - a) < 1e-5 and abs(ev["end_us"] * 1e-6 - b) < 1e-5
        sel = (t_us >= ev["start_us"] - margin) & (t_us <= ev["end_us"] + margin)
        q, _ = reference_input(st.csi[sel], st.t_us[sel], rm.feature_cfg, rm.normalizer, dut.info.input_scale,
                               dut.info.input_zero_point)
        assert ev["label"] == int(reference.run(tfl, q[None])[0].argmax())
