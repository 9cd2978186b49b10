"""The serial protocol, both sides: rfedge.proto (Python) against mcu/core/proto (C, through
ctypes) — CRC check value, COBS and frames byte-identical, the same error for the same corrupt
block; the CSI record and CSI_DATA line; the Reader's frame/text split; and a bounded fuzz
campaign of the C frame parser + dispatcher under ASan and UBSan (libFuzzer when clang has it,
else the harness's own random/mutation driver)."""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess

import numpy as np
import pytest

from rfedge import proto
from rfedge.firmware import board_dir, build_firmware, core_dir
from test_firmware import small_gen
from test_kernels import _required, _sanitizer_flags, require_cc


@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    cc = require_cc()
    d = tmp_path_factory.mktemp("proto_lib")
    so = d / "libproto.so"
    src = core_dir() / "proto"
    subprocess.run([cc, "-std=c99", "-O1", "-g", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-I", str(src),
                    str(src / "rfe_proto.c"), str(src / "rfe_csi.c"), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    lib.rfe_crc16.restype = ctypes.c_uint16
    lib.rfe_crc16.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint16]
    lib.rfe_proto_encode.restype = ctypes.c_size_t
    lib.rfe_proto_encode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint8, ctypes.c_uint16,
                                     ctypes.c_char_p, ctypes.c_size_t]
    lib.rfe_proto_decode.restype = ctypes.c_int
    lib.rfe_proto_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.rfe_csi_format.restype = ctypes.c_size_t
    lib.rfe_csi_parse.restype = ctypes.c_size_t
    return lib


class CFrame(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint8), ("type", ctypes.c_uint8), ("seq", ctypes.c_uint16),
                ("len", ctypes.c_uint16), ("payload", ctypes.c_void_p)]


def c_encode(lib, ftype, seq, payload: bytes) -> bytes:
    out = ctypes.create_string_buffer(proto.MAX_ENCODED + 8)
    n = lib.rfe_proto_encode(out, len(out), ftype, seq, payload, len(payload))
    return out.raw[:n]


def c_decode(lib, block: bytes):
    buf = ctypes.create_string_buffer(block, len(block) + 1)
    f = CFrame()
    err = lib.rfe_proto_decode(buf, len(block), ctypes.byref(f))
    if err:
        return err, None
    off = f.payload - ctypes.addressof(buf)
    return 0, proto.Frame(f.type, f.seq, buf.raw[off:off + f.len], f.version)


def py_error(block: bytes) -> int:
    try:
        proto.decode_frame(block)
        return 0
    except proto.ProtoError as e:
        return e.code


def test_crc16_check_value_both_sides(clib):
    assert proto.crc16(b"123456789") == 0x29B1              # CRC-16/CCITT-FALSE catalogue value
    assert clib.rfe_crc16(b"123456789", 9, 0xFFFF) == 0x29B1
    rng = np.random.default_rng(1)
    for n in (0, 1, 7, 300):
        data = rng.integers(0, 256, n).astype(np.uint8).tobytes()
        assert clib.rfe_crc16(data, n, 0xFFFF) == proto.crc16(data)


def test_cobs_hand_examples():
    # examples of the COBS paper / Wikipedia
    assert proto.cobs_encode(b"\x00") == b"\x01\x01"
    assert proto.cobs_encode(b"\x00\x00") == b"\x01\x01\x01"
    assert proto.cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert proto.cobs_encode(b"\x11\x00\x00\x00") == b"\x02\x11\x01\x01\x01"
    run = bytes(range(1, 255))                                 # 254 non-zero bytes: one full block
    assert proto.cobs_encode(run) == b"\xff" + run + b"\x01"
    for data in (b"", b"\x00", run, run + b"\x00" + run, bytes(600)):
        assert proto.cobs_decode(proto.cobs_encode(data)) == data


def test_frames_are_byte_identical_and_round_trip(clib):
    rng = np.random.default_rng(2)
    for n in (0, 1, 253, 254, 255, 509, 1000, proto.MAX_PAYLOAD):
        payload = rng.integers(0, 256, n).astype(np.uint8).tobytes()
        payload = payload[: n // 2] + b"\x00" * min(3, n - n // 2) + payload[n // 2 + 3:] if n > 6 else payload
        seq, ftype = int(rng.integers(0, 0xFFFF)), int(rng.integers(1, 0x80))
        wire = proto.encode_frame(ftype, seq, payload)
        assert c_encode(clib, ftype, seq, payload) == wire
        assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
        assert len(wire) <= proto.MAX_ENCODED
        err, f = c_decode(clib, wire[1:-1])
        assert err == 0 and (f.type, f.seq, f.payload) == (ftype, seq, payload)
        assert proto.decode_frame(wire[1:-1]) == proto.Frame(ftype, seq, payload)
    with pytest.raises(ValueError):
        proto.encode_frame(proto.ECHO, 1, bytes(proto.MAX_PAYLOAD + 1))
    assert c_encode(clib, proto.ECHO, 1, bytes(proto.MAX_PAYLOAD + 1)) == b""


def test_corrupt_blocks_get_the_same_error_on_both_sides(clib):
    wire = proto.encode_frame(proto.SET_INPUT, 9, bytes(range(40)))[1:-1]
    cases = {
        "crc": wire[:10] + bytes([wire[10] ^ 0x01]) + wire[11:],
        "cobs_zero": wire[:5] + b"\x00" + wire[6:],
        "cobs_overrun": b"\x40" + wire[1:8],
        "short": proto.cobs_encode(b"\x01\x02\x03"),
        "version": proto.encode_frame(proto.ECHO, 1, b"ab", version=2)[1:-1],
        "too_long": b"\x05" * (proto.MAX_ENCODED + 1),
    }
    # a length field that disagrees with the frame, with a valid CRC
    raw = struct.pack("<BBHH", 1, proto.ECHO, 3, 10) + b"abc"
    cases["length"] = proto.cobs_encode(raw + struct.pack("<H", proto.crc16(raw)))
    want = {"crc": proto.E_CRC, "cobs_zero": proto.E_COBS, "cobs_overrun": proto.E_COBS, "short": proto.E_LENGTH,
            "version": proto.E_VERSION, "too_long": proto.E_TOO_LONG, "length": proto.E_LENGTH}
    for name, block in cases.items():
        assert c_decode(clib, block)[0] == want[name], name
        assert py_error(block) == want[name], name
    rng = np.random.default_rng(3)
    for _ in range(300):   # random single-byte corruptions: the two parsers always agree
        b = bytearray(wire)
        b[int(rng.integers(len(b)))] = int(rng.integers(1, 256))
        assert c_decode(clib, bytes(b))[0] == py_error(bytes(b))


def test_reader_splits_frames_and_text():
    f1 = proto.encode_frame(proto.HELLO | proto.RESPONSE, 5, b"\x00\x01")
    f2 = proto.encode_frame(proto.ERROR, 6, bytes([proto.E_CRC, 0]) + b"CRC mismatch")
    stream = f1 + b"CSI_DATA,1,aa\r\nCSI_DATA,2,bb\n" + f2 + b"\x00\x07\xff\x00" + b"tail line\n"
    r = proto.Reader()
    items = []
    for k in range(0, len(stream), 7):    # arbitrary chunking
        items += r.feed(stream[k:k + 7])
    assert items[0] == proto.Frame(proto.HELLO | proto.RESPONSE, 5, b"\x00\x01")
    assert items[1:3] == ["CSI_DATA,1,aa", "CSI_DATA,2,bb"]
    assert items[3].is_error and items[3].error == (proto.E_CRC, 0, "CRC mismatch")
    assert items[4] == "tail line" and r.bad == 1


def test_csi_record_layout_and_csi_data_line(clib):
    from rfedge.io.detect import parse_bytes

    buf = np.arange(-64, 64, dtype=np.int8).tobytes()
    pk = proto.CsiPacket(buf=buf, timestamp_us=123456, rssi=-51, noise_floor=-93, channel=11, secondary_channel=0,
                         sig_mode=1, mcs=7, cwb=0, flags=1 | 4, mac=bytes([0x70, 0x3A, 0x73, 0x0C, 0x6C, 0xFB]))
    rec = pk.pack()
    assert len(rec) == proto.CSI_RECORD_HEADER + len(buf) == 20 + 128
    rec_buf = ctypes.create_string_buffer(rec, len(rec))
    pkt = ctypes.create_string_buffer(64)                        # rfe_csi_packet_t (opaque here)
    clib.rfe_csi_parse.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    assert clib.rfe_csi_parse(rec_buf, len(rec), pkt) == len(rec)
    assert clib.rfe_csi_parse(rec_buf, len(rec) - 1, pkt) == 0  # truncated record
    line = ctypes.create_string_buffer(4096)
    clib.rfe_csi_format.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    n = clib.rfe_csi_format(pkt, 17, line, len(line))
    text = line.raw[:n].decode()
    assert text.startswith("CSI_DATA,17,70:3a:73:0c:6c:fb,-51,11,1,7,0,0,0,0,0,0,1,-93,0,11,0,123456,0,0,0,128,1,\"[-64,-63,")
    assert text.endswith(",62,63]\"\n")
    assert clib.rfe_csi_format(pkt, 17, line, 100) == 0         # does not fit: nothing half-written
    cap = parse_bytes(text.encode(), "esp-csi")
    assert cap.packets == 1 and cap.raw[0].tobytes() == buf and cap.meta["rssi"][0] == -51


def test_pack_csi_push_fills_frames():
    pk = [proto.CsiPacket(buf=bytes(128), timestamp_us=k) for k in range(20)]
    payloads = proto.pack_csi_push(pk)
    assert all(len(p) <= proto.MAX_PAYLOAD for p in payloads)
    assert [p[0] for p in payloads] == [6, 6, 6, 2]                        # 6 records of 148 B per frame
    assert proto.pack_csi_push([]) == []


def test_fuzz_frame_parser_under_asan_ubsan(tmp_path):
    """A bounded campaign: libFuzzer (clang) for 20 s, or the harness's random/mutation driver for
    4,000 inputs, on the host build with ASan + UBSan; plus a corpus replay of hand-made inputs."""
    cc = require_cc()
    if not _sanitizer_flags(cc, tmp_path):
        pytest.skip(f"{cc} cannot build with -fsanitize=address,undefined")
    tfl, gen = small_gen(tmp_path / "gen")
    harness = board_dir("host") / "fuzz_proto.c"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "hello").write_bytes(proto.encode_frame(proto.HELLO, 1))
    (corpus / "invoke_chunks").write_bytes(proto.encode_frame(proto.SET_INPUT, 2, struct.pack("<I", 0) + bytes(1000))
                                           + proto.encode_frame(proto.INVOKE, 3))
    (corpus / "oversized").write_bytes(b"\x01" * 5000 + b"\x00")
    (corpus / "capture").write_bytes(proto.encode_frame(proto.CAPTURE, 4, b"\x01") + proto.encode_frame(
        proto.CSI_PUSH, 5, b"\x02" + b"".join(proto.CsiPacket(buf=bytes(range(128))).pack() for _ in range(2))))
    (corpus / "empty_blocks").write_bytes(b"\x00" * 50)
    clang = shutil.which("clang")
    if clang and subprocess.run([clang, "-fsanitize=fuzzer", "-x", "c", "-", "-o", str(tmp_path / "probe")],
                                input=b"int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}",
                                capture_output=True).returncode == 0:
        import os

        os.environ["CC"] = clang
        try:
            fw = build_firmware("host", gen, tmp_path / "fuzz", sanitize=True, main=False, extra_sources=[harness],
                                extra_cflags=["-fsanitize=fuzzer", "-DRFE_LIBFUZZER"])
        finally:
            del os.environ["CC"]
        p = subprocess.run([str(fw.path), str(corpus), "-max_total_time=20", "-max_len=8192"], capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "Done " in p.stderr and " runs in " in p.stderr, p.stderr[-2000:]   # libFuzzer really ran
        return
    if _required("libfuzzer"):
        pytest.fail("RFEDGE_REQUIRE=libfuzzer but clang with -fsanitize=fuzzer is not available (apt: clang libclang-rt-dev)")
    fw = build_firmware("host", gen, tmp_path / "fuzz", sanitize=True, main=False, extra_sources=[harness])
    p = subprocess.run([str(fw.path), "4000", "12345", *map(str, sorted(corpus.iterdir()))], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "4000 inputs, 5 corpus files: no crash" in p.stdout


def test_fuzz_harness_catches_a_device_that_stops_answering(tmp_path):
    """The harness's checks are not vacuous: firmware built with a 40-byte payload limit cannot
    send its HELLO answer (58+ bytes), and the harness aborts on the first input."""
    require_cc()
    tfl, gen = small_gen(tmp_path / "gen")
    fw = build_firmware("host", gen, tmp_path / "fw", main=False, extra_sources=[board_dir("host") / "fuzz_proto.c"],
                        extra_cflags=["-DRFE_PROTO_MAX_PAYLOAD=40"])
    p = subprocess.run([str(fw.path), "50", "7"], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "stopped answering" in p.stderr
