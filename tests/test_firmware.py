"""The firmware (mcu/core + a board layer) built by rfedge.firmware and driven by rfedge.board over
the protocol: a small model on the host board (pty) — hello, self-test, bit-exactness against
TFLite Micro, chunked input, bench, error frames and retries, the esp-csi capture mode — and, when
the cross compilers and QEMU are installed, the same model on qemu-rv32 and qemu-m4.
The full student, the on-device DSP and 1000-vector validation are in hil_tests/ (slower)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rfedge import proto
from rfedge.board import Device, DeviceError, open_board
from rfedge.boards import board_names, load_board, require_board, unavailable
from rfedge.errors import RfedgeError
from rfedge.firmware import build_firmware
from rfedge_codegen import generate, reference
from rfedge_codegen.testing import const as C, options as O, single_op, tensor as T
from test_kernels import require_cc

N_IN, N_OUT = 2000, 12      # input larger than one frame: SET_INPUT needs two chunks


def small_model(seed: int = 3) -> bytes:
    """FULLY_CONNECTED 2000 -> 12 with per-channel scales, bias and RELU: cheap but not trivial."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (N_OUT, N_IN)).astype(np.int8)
    b = rng.integers(-20000, 20000, N_OUT).astype(np.int32)
    return single_op("FULLY_CONNECTED", [T([1, N_IN], 0.05, -7), C(w, rng.uniform(0.001, 0.004, N_OUT)), C(b)],
                     [T([1, N_OUT], 0.5, -20)], O("FullyConnected", fusedActivationFunction=1))


def small_gen(dir_) -> tuple[bytes, object]:
    tfl = small_model()
    generate(tfl, dir_, source="small.tflite")
    (dir_ / "model.tflite").write_bytes(tfl)
    return tfl, dir_


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    require_cc()
    tfl, gen = small_gen(tmp_path_factory.mktemp("small_gen"))
    return tfl, gen, tmp_path_factory.mktemp("small_fw")


@pytest.fixture(scope="module")
def host_dev(small):
    tfl, gen, out = small
    fw = build_firmware("host", gen, out / "host")
    with open_board("host", fw, timeout=5.0) as dev:
        yield dev, fw, tfl


def test_missing_tools_skip_or_fail(monkeypatch):
    require_cc()
    spec = load_board("qemu-rv32")
    monkeypatch.setattr(spec, "build", {**spec.build, "cc": "no-such-cc-rfedge"})
    monkeypatch.delenv("RFEDGE_REQUIRE", raising=False)
    reason, must = unavailable(spec)
    assert "no-such-cc-rfedge" in reason and "apt-get install" in reason and not must
    for req in ("qemu", "no-such-cc-rfedge", "qemu-rv32", "cc,qemu"):
        monkeypatch.setenv("RFEDGE_REQUIRE", req)
        assert unavailable(spec)[1], req
    monkeypatch.setenv("RFEDGE_REQUIRE", "valgrind")
    assert not unavailable(spec)[1]
    assert unavailable(load_board("host")) is None      # cc is on this machine (require_cc above)


def test_boards_are_data():
    assert {"host", "qemu-rv32", "qemu-m4"} <= set(board_names())
    rv = load_board("qemu-rv32")
    assert rv.clock_hz == 160_000_000 and rv.counter == "instret" and rv.isa == "rv32imc"
    assert "-march=rv32imc" in rv.build["cflags"] and "shift=0" in rv.run["args"]
    assert rv.ms(3_200_000) == pytest.approx(20.0)
    with pytest.raises(RfedgeError, match="unknown board"):
        load_board("esp8266")


def test_hello_and_selftest(host_dev):
    dev, fw, _ = host_dev
    info = dev.hello()
    assert info.protocol == proto.VERSION and info.board == "host" and info.counter == "ns"
    assert (info.input_bytes, info.output_bytes) == (N_IN, N_OUT)
    assert info.model_hash == fw.model_hash and len(info.model_hash) == 16
    assert info.input_zero_point == -7 and info.output_zero_point == -20
    assert info.input_scale == pytest.approx(0.05) and info.firmware.startswith("rfedge ")
    bad, ns = dev.selftest()
    assert bad == 0 and ns > 0


def test_invoke_is_bit_exact_with_tflm(host_dev):
    dev, _, tfl = host_dev
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.integers(-128, 128, (30, N_IN)), np.full((1, N_IN), 127), np.full((1, N_IN), -128)])
    want = reference.run(tfl, X)
    got = np.stack([dev.invoke(x)[0] for x in X])
    assert (got == want).all()
    assert len({tuple(r) for r in want}) > 20          # outputs differ: the check is not vacuous
    # the last input, written in two chunks, reads back unchanged
    assert (dev.get_input() == X[-1].astype(np.int8)).all()


def test_set_get_input_round_trip_and_bench(host_dev):
    dev, _, _ = host_dev
    x = np.arange(N_IN, dtype=np.int64) % 251 - 125
    dev.set_input(x)
    assert (dev.get_input() == x.astype(np.int8)).all()
    b = dev.bench(9)
    assert b["runs"] == 9 and 0 < b["min"] <= b["median"] <= b["max"] and b["status"] == 0


def test_command_errors_leave_the_device_serving(host_dev):
    dev, _, _ = host_dev
    with pytest.raises(DeviceError) as e:
        dev.request(proto.SET_INPUT, struct.pack("<I", N_IN - 4) + b"\x01" * 8)   # past the end
    assert e.value.code == proto.E_ARG
    with pytest.raises(DeviceError) as e:
        dev.request(0x55)
    assert e.value.code == proto.E_UNKNOWN
    with pytest.raises(DeviceError) as e:
        dev.bench(0)
    assert e.value.code == proto.E_ARG
    with pytest.raises(DeviceError) as e:   # no DSP in this build (no dsp_config.h): unsupported, not a crash
        dev.features()
    assert e.value.code in (proto.E_UNSUPPORTED, proto.E_STATE)
    assert dev.echo(b"still here") == b"still here"


def _raw_exchange(dev: Device, wire: bytes, timeout: float = 3.0) -> list:
    dev.t.write(wire)
    items, deadline = [], __import__("time").monotonic() + timeout
    while not items:
        it = dev._next_item(deadline)
        if it is None:
            break
        items.append(it)
    return items


def test_corrupt_and_oversized_frames_get_error_frames(host_dev):
    dev, _, _ = host_dev
    good = bytearray(proto.encode_frame(proto.ECHO, 77, b"payload"))
    good[5] ^= 0x40                                               # corrupt a byte: CRC mismatch
    (ans,) = _raw_exchange(dev, bytes(good))
    assert ans.is_error and ans.error[0] in (proto.E_CRC, proto.E_COBS, proto.E_LENGTH)
    (ans,) = _raw_exchange(dev, b"\x00" + b"\x55" * (proto.MAX_ENCODED + 100) + b"\x00")   # oversized
    assert ans.is_error and ans.error[0] == proto.E_TOO_LONG
    (ans,) = _raw_exchange(dev, proto.encode_frame(proto.ECHO, 78, b"x", version=9))
    assert ans.is_error and ans.error[0] == proto.E_VERSION and ans.seq == 78
    assert dev.echo(b"ok") == b"ok"


def test_a_repeated_request_is_answered_from_the_cache(host_dev):
    dev, _, _ = host_dev
    wire = proto.encode_frame(proto.ECHO, 4321, b"once")
    (a,) = _raw_exchange(dev, wire)
    (b,) = _raw_exchange(dev, wire)
    assert a == b and a.seq == 4321 and a.payload == b"once"


class _LossyTransport:
    """Drops the device's answers to the first ``drop`` writes (the request still arrives)."""

    def __init__(self, inner, drop: int):
        self.inner, self.drop, self.writes = inner, drop, 0

    def write(self, data):
        self.writes += 1
        self.inner.write(data)

    def read(self, timeout):
        data = self.inner.read(timeout)
        if self.writes <= self.drop and data:
            return b""
        return data

    def close(self):
        self.inner.close()


def test_lost_answers_are_retried_with_a_bound(small):
    tfl, gen, out = small
    fw = build_firmware("host", gen, out / "host")
    dev = open_board("host", fw, timeout=0.5, retries=2)
    try:
        dev.t = _LossyTransport(dev.t, drop=1)
        x = np.ones(N_IN, np.int8)
        dev.set_input(x)                        # first answer lost, the retry's answer arrives
        assert dev.retried == 1
        dev.t.drop = 10 ** 9                    # every answer lost: a bounded failure, not a hang
        with pytest.raises(RfedgeError, match="3 attempts"):
            dev.echo(b"x")
        dev.t.drop = 0
        assert dev.echo(b"y") == b"y"
    finally:
        dev.close()


def test_capture_mode_prints_esp_csi_lines_that_rfedge_parses(host_dev):
    from rfedge.io.detect import parse_bytes
    from rfedge.io.subcarriers import encode_esp32_buffers, used_subcarriers

    dev, _, _ = host_dev
    rng = np.random.default_rng(5)
    subs = used_subcarriers("ht-ltf", 20)
    vals = (rng.integers(-60, 60, (6, len(subs))) + 1j * rng.integers(-60, 60, (6, len(subs)))).astype(np.complex64)
    bufs = encode_esp32_buffers(256, 0, {"ht-ltf": (subs, vals)})
    pk = [proto.CsiPacket(buf=b.tobytes(), timestamp_us=1_000_000 + 10_000 * k, rssi=-40 - k, channel=11)
          for k, b in enumerate(bufs)]
    dev.capture(True)
    r = dev.push_csi(pk)
    dev.capture(False)
    assert r["accepted"] == len(pk)
    lines = dev.take_lines()
    assert len(lines) == len(pk) and all(ln.startswith("CSI_DATA,") for ln in lines)
    cap = parse_bytes(("\n".join(lines) + "\n").encode(), "esp-csi")
    assert cap.packets == len(pk)
    assert (cap.raw == bufs).all()
    assert list(cap.meta["rssi"]) == [p.rssi for p in pk]
    assert np.allclose(cap.timestamps_us, [p.timestamp_us for p in pk])
    # outside capture mode, without the DSP, pushing packets is refused
    with pytest.raises(DeviceError) as e:
        dev.push_csi(pk[:1])
    assert e.value.code == proto.E_UNSUPPORTED


@pytest.mark.parametrize("board", ["qemu-rv32", "qemu-m4"])
def test_qemu_board_runs_the_model_bit_exact(small, board):
    require_board(board)
    tfl, gen, out = small
    fw = build_firmware(board, gen, out / board)
    assert fw.info["flash_bytes"] > 0 and fw.info["ram_bytes"] > 0
    with open_board(board, fw, timeout=20.0) as dev:
        info = dev.info
        assert info.board == board and info.model_hash == fw.model_hash
        assert info.counter == load_board(board).counter and info.clock_hz == load_board(board).clock_hz
        # the device reports its image from linker symbols: RAM includes the 16 KB stack
        assert 0 < info.flash_bytes <= fw.info["flash_bytes"] + 64 and info.ram_bytes >= 16384
        assert dev.selftest()[0] == 0
        X = np.random.default_rng(1).integers(-128, 128, (8, N_IN))
        outs, counts = zip(*(dev.invoke(x) for x in X))
        assert (np.stack(outs) == reference.run(tfl, X)).all()
        # the counter is exact under -icount: the same work costs the same count every time
        b = dev.bench(5)
        assert b["min"] == b["median"] == b["max"] > 0 or board == "qemu-m4" and b["max"] - b["min"] <= 1
        if board == "qemu-rv32":
            # a 2000 x 12 FC is 24,000 MACs; a few instructions each plus requantization
            assert 24_000 < b["median"] < 24_000 * 12


def test_validate_a_tflite_on_the_host_board_and_resume(small, tmp_path):
    """rfedge validate end to end on a bare .tflite (no dataset: accuracy and end-to-end are
    skipped with a reason): 1000 vectors bit-exact; an interrupted results file resumes."""
    import json

    from rfedge.validate import Results, format_summary, validate, write_junit

    tfl, _, _ = small
    model = tmp_path / "small.tflite"
    model.write_bytes(tfl)
    out = tmp_path / "val"
    s = validate("host", model, vectors=1000, out_dir=out, stream=None)
    assert s["bit_exact"]["vectors"] == 1000 and s["bit_exact"]["mismatches"] == 0 and s["pass"]
    assert "skipped" in s["accuracy"] and "skipped" in s["end_to_end"]
    assert s["latency"]["runs"] == 1000 and s["memory"]["model_ram_bytes"] >= 0
    assert "1000/1000 vectors equal TFLM" in format_summary(s)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1001 and json.loads(lines[0])["kind"] == "header"
    # interrupted after 400 vectors, the last line cut in the middle
    (out / "results.jsonl").write_text("\n".join(lines[:401]) + "\n" + lines[401][:10])
    r = Results(out / "results.jsonl", {k: v for k, v in json.loads(lines[0]).items() if k != "kind"})
    assert r.resumed == 400
    r.close()
    s2 = validate("host", model, vectors=1000, out_dir=out, stream=None)
    assert s2["bit_exact"] == s["bit_exact"]
    # a different header (another model or firmware) starts over
    r = Results(out / "results.jsonl", {"board": "host", "model_hash": "0" * 16})
    assert r.resumed == 0
    r.close()
    junit = tmp_path / "v.xml"
    s["bit_exact"]["mismatches"] = 3
    write_junit(s, junit)
    x = junit.read_text()
    assert 'tests="4" failures="1" skipped="2"' in x and "3 of 1000 vectors differ" in x
