"""The rfedge serial protocol, version 1 — the host side (the device side is mcu/core/proto/).

A frame, before framing (all integers little endian)::

    offset  size  field
    0       1     version (1)
    1       1     type: command 0x01..0x7f, its response (command | 0x80), or 0xff = error
    2       2     seq: chosen by the host, echoed in the device's answer (0xffff: unknown)
    4       2     n: payload length, <= MAX_PAYLOAD (1024)
    6       n     payload
    6+n     2     CRC-16/CCITT-FALSE (poly 0x1021, init 0xffff) of bytes 0 .. 5+n

On the wire: 0x00, COBS(frame), 0x00.  Text (esp-csi ``CSI_DATA`` lines in capture mode) may sit
between frames; a reader splits on 0x00 and keeps what does not decode as text.  The payload of
every command is in docs/protocol.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

VERSION = 1
HEADER = 6
CRC_BYTES = 2
MAX_PAYLOAD = 1024
MAX_FRAME = HEADER + MAX_PAYLOAD + CRC_BYTES
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1 + 2

# frame types (rfe_proto.h)
HELLO, SELFTEST, SET_INPUT, GET_INPUT, INVOKE, BENCH = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
DSP_RESET, CSI_PUSH, FEATURES, CAPTURE, ECHO, BYE = 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C
RESPONSE = 0x80
ERROR = 0xFF
TYPE_NAMES = {HELLO: "HELLO", SELFTEST: "SELFTEST", SET_INPUT: "SET_INPUT", GET_INPUT: "GET_INPUT",
              INVOKE: "INVOKE", BENCH: "BENCH", DSP_RESET: "DSP_RESET", CSI_PUSH: "CSI_PUSH",
              FEATURES: "FEATURES", CAPTURE: "CAPTURE", ECHO: "ECHO", BYE: "BYE", ERROR: "ERROR"}

# error codes (rfe_proto.h)
E_CRC, E_TOO_LONG, E_VERSION, E_LENGTH, E_COBS, E_UNKNOWN, E_ARG, E_UNSUPPORTED, E_STATE, E_MODEL = range(1, 11)
ERROR_NAMES = {E_CRC: "crc", E_TOO_LONG: "too-long", E_VERSION: "version", E_LENGTH: "length", E_COBS: "cobs",
               E_UNKNOWN: "unknown-command", E_ARG: "bad-argument", E_UNSUPPORTED: "unsupported",
               E_STATE: "state", E_MODEL: "model"}
TRANSPORT_ERRORS = (E_CRC, E_TOO_LONG, E_LENGTH, E_COBS)   # a retry may help

# counter kinds (rfe_device.h)
COUNTER_KINDS = {0: "ns", 1: "instret", 2: "cycles", 3: "systick"}
CAP_DSP, CAP_CAPTURE, CAP_SELFTEST = 1, 2, 4


class ProtoError(Exception):
    """A block that is not a valid frame; ``code`` is one of the E_* codes."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (check value of b"123456789": 0x29B1)."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        i += 1
        if code == 0:
            raise ProtoError(E_COBS, "zero byte inside a COBS block")
        if i + code - 1 > n:
            raise ProtoError(E_COBS, "COBS block runs past its end")
        chunk = data[i:i + code - 1]
        if 0 in chunk:
            raise ProtoError(E_COBS, "zero byte inside a COBS block")
        out += chunk
        i += code - 1
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(ftype: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """The wire bytes of one frame: 0x00, COBS(header + payload + CRC), 0x00."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    raw = struct.pack("<BBHH", version, ftype, seq & 0xFFFF, len(payload)) + bytes(payload)
    raw += struct.pack("<H", crc16(raw))
    return b"\x00" + cobs_encode(raw) + b"\x00"


@dataclass
class Frame:
    type: int
    seq: int
    payload: bytes
    version: int = VERSION

    @property
    def is_error(self) -> bool:
        return self.type == ERROR

    @property
    def error(self) -> tuple[int, int, str]:
        """(code, offending type, message) of an error frame."""
        p = self.payload
        return (p[0] if p else 0), (p[1] if len(p) > 1 else 0), p[2:].decode("ascii", "replace")

    def describe(self) -> str:
        name = TYPE_NAMES.get(self.type & ~RESPONSE if self.type != ERROR else ERROR, f"0x{self.type:02x}")
        if self.is_error:
            code, t, msg = self.error
            return f"error {ERROR_NAMES.get(code, code)} for {TYPE_NAMES.get(t, hex(t))} (seq {self.seq}): {msg}"
        return f"{name}{' response' if self.type & RESPONSE else ''} seq {self.seq}, {len(self.payload)} bytes"


def decode_frame(block: bytes) -> Frame:
    """One block between delimiters -> Frame; raises ProtoError (E_*) as the device would."""
    if len(block) > MAX_ENCODED:
        raise ProtoError(E_TOO_LONG, f"block of {len(block)} bytes exceeds {MAX_ENCODED}")
    raw = cobs_decode(block)
    if len(raw) < HEADER + CRC_BYTES:
        raise ProtoError(E_LENGTH, f"frame of {len(raw)} bytes is shorter than a header and CRC")
    if crc16(raw[:-2]) != struct.unpack_from("<H", raw, len(raw) - 2)[0]:
        raise ProtoError(E_CRC, "CRC mismatch")
    version, ftype, seq, n = struct.unpack_from("<BBHH", raw)
    if version != VERSION:
        raise ProtoError(E_VERSION, f"protocol version {version}, expected {VERSION}")
    if n + HEADER + CRC_BYTES != len(raw):
        raise ProtoError(E_LENGTH, f"length field {n} disagrees with the frame ({len(raw) - HEADER - CRC_BYTES})")
    if n > MAX_PAYLOAD:
        raise ProtoError(E_TOO_LONG, f"payload of {n} bytes exceeds {MAX_PAYLOAD}")
    return Frame(ftype, seq, raw[HEADER:-2], version)


class Reader:
    """Splits a byte stream into frames and text lines.  ``feed(data)`` returns a list of
    ``Frame`` and ``str`` (one text line, without its line end) items in arrival order; blocks
    that are neither a valid frame nor text are counted in ``bad``."""

    def __init__(self):
        self.buf = bytearray()
        self.bad = 0

    def feed(self, data: bytes) -> list:
        out = []
        self.buf += data
        while True:
            k = self.buf.find(0)
            if k < 0:
                # text without a frame after it: hand out complete lines now
                while (j := self.buf.find(b"\n")) >= 0 and self._texty(self.buf[:j]):
                    out.append(self.buf[:j].decode("ascii", "replace").rstrip("\r"))
                    del self.buf[:j + 1]
                if len(self.buf) > 4 * MAX_ENCODED and b"\n" not in self.buf:
                    self.buf.clear()
                    self.bad += 1
                return out
            block = bytes(self.buf[:k])
            del self.buf[:k + 1]
            if not block:
                continue
            try:
                out.append(decode_frame(block))
            except ProtoError:
                text = block.decode("ascii", "replace")
                lines = [ln.rstrip("\r") for ln in text.split("\n")]
                if self._texty(block) and lines:
                    out.extend(ln for ln in lines if ln)
                else:
                    self.bad += 1

    @staticmethod
    def _texty(b: bytes) -> bool:
        return all(32 <= c < 127 or c in (9, 10, 13) for c in b)


# ---- payloads -----------------------------------------------------------------------------------

@dataclass
class Info:
    """A HELLO answer."""
    protocol: int
    counter: str
    capabilities: int
    max_payload: int
    bench_max: int
    clock_hz: int
    model_hash: str
    input_bytes: int
    output_bytes: int
    model_ram_bytes: int
    ram_bytes: int
    flash_bytes: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    firmware: str
    board: str

    @property
    def has_dsp(self) -> bool:
        return bool(self.capabilities & CAP_DSP)

    @classmethod
    def parse(cls, p: bytes) -> "Info":
        if len(p) < 58:
            raise ProtoError(E_LENGTH, f"HELLO answer of {len(p)} bytes, expected >= 58")
        (proto, counter, caps, _, max_payload, bench_max, clock, mhash, nin, nout, arena, ram, flash,
         in_s, in_zp, out_s, out_zp) = struct.unpack_from("<BBBBHHIQIIIIIfifi", p)
        strs = p[56:].split(b"\x00")
        fw, board = (strs + [b"", b""])[:2]
        return cls(proto, COUNTER_KINDS.get(counter, str(counter)), caps, max_payload, bench_max, clock,
                   f"{mhash:016x}", nin, nout, arena, ram, flash, in_s, in_zp, out_s, out_zp,
                   fw.decode("ascii", "replace"), board.decode("ascii", "replace"))

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class CsiPacket:
    """One ESP32 CSI packet (rfe_csi.h): ``buf`` is wifi_csi_info_t.buf ([imag, real] int8 pairs)."""
    buf: bytes
    timestamp_us: int = 0
    rssi: int = -50
    noise_floor: int = -92
    channel: int = 6
    secondary_channel: int = 0
    sig_mode: int = 1
    mcs: int = 7
    cwb: int = 0
    flags: int = 0
    mac: bytes = field(default=b"\x1a\x00\x00\x00\x00\x01")

    def pack(self) -> bytes:
        b = bytes(self.buf)
        return struct.pack("<IbbBBBBBB6sH", self.timestamp_us & 0xFFFFFFFF, self.rssi, self.noise_floor,
                           self.channel, self.secondary_channel, self.sig_mode, self.mcs, self.cwb, self.flags,
                           bytes(self.mac[:6]).ljust(6, b"\x00"), len(b)) + b


CSI_RECORD_HEADER = 20


def pack_csi_push(packets: list[CsiPacket]) -> list[bytes]:
    """CSI_PUSH payloads: as many packet records per frame as fit."""
    out, cur, n = [], bytearray([0]), 0
    for p in packets:
        rec = p.pack()
        if len(rec) + 1 > MAX_PAYLOAD:
            raise ValueError(f"a CSI packet of {len(p.buf)} bytes does not fit a frame")
        if len(cur) + len(rec) > MAX_PAYLOAD or n == 255:
            cur[0] = n
            out.append(bytes(cur))
            cur, n = bytearray([0]), 0
        cur += rec
        n += 1
    if n:
        cur[0] = n
        out.append(bytes(cur))
    return out
