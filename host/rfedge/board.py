"""Starting a (virtual) board and talking to its firmware.

``open_board(board, firmware)`` starts the firmware — the host build on a pty, QEMU with its
UART on a local TCP socket (pyserial ``socket://``) — says hello and returns a ``Device``;
``Device.connect(url)`` talks to a board someone else started (a real port, ``socket://``,
``rfc2217://``).  Every request is retried a bounded number of times when its answer is lost or
corrupt; ``Device.close()`` says BYE and stops what ``open_board`` started.

    with open_board("qemu-rv32", fw) as dev:
        print(dev.info.model_hash)
        out, instructions = dev.invoke(x)
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import time
import tty
from pathlib import Path

import numpy as np

from rfedge import proto
from rfedge.boards import BoardSpec, load_board
from rfedge.errors import RfedgeError


class DeviceError(RfedgeError):
    """The device answered with an error frame (``code`` is a proto.E_* code)."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code


DSP_ERRORS = {-1: "unknown buffer layout", -2: "subcarrier count", -3: "too many packets", -4: "too few packets",
              -5: "window too long", -6: "timestamps not increasing"}


class PtyTransport:
    """The master side of a pty whose slave is the firmware's stdin/stdout."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def read(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not r:
            return b""
        try:
            return os.read(self.fd, 65536)
        except OSError:   # EIO: the firmware closed its side
            raise RfedgeError("the board closed the serial line") from None

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class SerialTransport:
    """Any pyserial URL: a port, socket://host:port, rfc2217://..."""

    def __init__(self, url: str, baudrate: int = 115200):
        import serial

        self.s = serial.serial_for_url(url, baudrate=baudrate, timeout=0)

    def write(self, data: bytes) -> None:
        self.s.write(data)
        self.s.flush()

    def read(self, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        while True:
            n = self.s.in_waiting
            if n:
                return self.s.read(n)
            if time.monotonic() >= end:
                return b""
            if hasattr(self.s, "_socket"):
                select.select([self.s._socket], [], [], max(0.0, min(0.05, end - time.monotonic())))
            else:
                time.sleep(0.002)

    def close(self) -> None:
        self.s.close()


class Device:
    """The protocol client.  ``timeout``: seconds to wait for one answer (long commands scale
    it); ``retries``: re-sends of a request whose answer is lost or corrupt."""

    def __init__(self, transport, *, timeout: float = 10.0, retries: int = 3, process=None, spec: BoardSpec | None = None,
                 log=None):
        self.t = transport
        self.timeout = timeout
        self.retries = retries
        self.process = process
        self.spec = spec
        self.log = log
        self.reader = proto.Reader()
        self.pending: list = []
        self.lines: list[str] = []       # text the device printed (CSI_DATA capture lines)
        self.seq = int.from_bytes(os.urandom(2), "little") % 0xFFF0
        self.retried = 0
        self.info: proto.Info | None = None

    # ---- framing --------------------------------------------------------------------------------

    def _next_item(self, deadline: float):
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self.t.read(min(left, 0.5))
            if not data and self.process is not None and self.process.poll() is not None:
                raise RfedgeError(f"the board process ended (exit {self.process.returncode})")
            if data:
                self.pending.extend(self.reader.feed(data))
        return self.pending.pop(0)

    def request(self, ftype: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Sends one command and returns the answer's payload.  Lost or corrupt answers and
        transport-level errors (CRC, length, COBS) are retried up to ``retries`` times with the
        same seq — the device answers a repeated request from its cache; command errors raise
        DeviceError at once."""
        self.seq = (self.seq + 1) & 0xFFFF
        if self.seq == 0xFFFF:
            self.seq = 0
        seq = self.seq
        wire = proto.encode_frame(ftype, seq, payload)
        timeout = self.timeout if timeout is None else timeout
        last = "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            self.t.write(wire)
            deadline = time.monotonic() + timeout
            while True:
                item = self._next_item(deadline)
                if item is None:
                    last = f"no answer within {timeout:.1f} s"
                    break
                if isinstance(item, str):
                    self.lines.append(item)
                    continue
                if item.is_error:
                    code, _, msg = item.error
                    if item.seq in (seq, 0xFFFF) and code in proto.TRANSPORT_ERRORS:
                        last = f"device reported {proto.ERROR_NAMES.get(code, code)}: {msg}"
                        break
                    if item.seq == seq:
                        raise DeviceError(code, f"{proto.TYPE_NAMES.get(ftype, ftype)}: {proto.ERROR_NAMES.get(code, code)}: {msg}")
                    continue
                if item.seq == seq and item.type == (ftype | proto.RESPONSE):
                    return item.payload
                # a stale answer to an earlier attempt: skip it
        raise RfedgeError(f"{proto.TYPE_NAMES.get(ftype, ftype)}: {last} after {self.retries + 1} attempts")

    # ---- commands -------------------------------------------------------------------------------

    def hello(self) -> proto.Info:
        self.info = proto.Info.parse(self.request(proto.HELLO))
        if self.info.protocol != proto.VERSION:
            raise RfedgeError(f"the firmware speaks protocol {self.info.protocol}, this host {proto.VERSION}")
        return self.info

    def echo(self, data: bytes) -> bytes:
        return self.request(proto.ECHO, data)

    def selftest(self) -> tuple[int, int]:
        """(mismatched bytes of the golden vector, counter delta)."""
        bad, count = struct.unpack("<iQ", self.request(proto.SELFTEST, timeout=self.timeout * 6))
        return bad, count

    def set_input(self, x) -> None:
        data = np.asarray(x, np.int8).tobytes()
        chunk = proto.MAX_PAYLOAD - 4
        for off in range(0, len(data), chunk):
            part = data[off:off + chunk]
            got = struct.unpack("<I", self.request(proto.SET_INPUT, struct.pack("<I", off) + part))[0]
            if got != off + len(part):
                raise RfedgeError(f"SET_INPUT acknowledged {got} bytes, expected {off + len(part)}")

    def get_input(self, n: int | None = None) -> np.ndarray:
        n = self.info.input_bytes if n is None else n
        out = bytearray()
        while len(out) < n:
            k = min(proto.MAX_PAYLOAD, n - len(out))
            out += self.request(proto.GET_INPUT, struct.pack("<IH", len(out), k))
        return np.frombuffer(bytes(out), np.int8)

    def invoke(self, x=None) -> tuple[np.ndarray, int]:
        """(int8 output, counter delta of the inference); sets the input first when given."""
        if x is not None:
            self.set_input(x)
        p = self.request(proto.INVOKE, timeout=self.timeout * 6)
        status, count = struct.unpack_from("<iQ", p)
        if status != 0:
            raise DeviceError(proto.E_MODEL, f"rfe_model_invoke returned {status}")
        return np.frombuffer(p[12:], np.int8).copy(), count

    def bench(self, runs: int) -> dict:
        n, lo, med, hi, status = struct.unpack("<HQQQi", self.request(proto.BENCH, struct.pack("<H", runs),
                                                                      timeout=self.timeout * (6 + runs)))
        return {"runs": n, "min": lo, "median": med, "max": hi, "status": status}

    def capture(self, on: bool) -> None:
        self.request(proto.CAPTURE, bytes([1 if on else 0]))

    def dsp_reset(self, mode: int = 0, threshold: float = 0.0) -> None:
        self.request(proto.DSP_RESET, struct.pack("<Bf", mode, threshold))

    def push_csi(self, packets: list[proto.CsiPacket], end: bool = False) -> dict:
        """Sends packets (as many frames as needed; ``end``: then an empty push, which ends a
        stream).  Returns the packets accepted, the counter total and the stream's gestures:
        dicts with start_us, end_us, label, score (int8 output), status, counter."""
        total, count, events = 0, 0, []
        payloads = proto.pack_csi_push(packets) + ([b"\x00"] if end else [])
        for payload in payloads:
            p = self.request(proto.CSI_PUSH, payload, timeout=self.timeout * 6)
            accepted, c, n_ev = struct.unpack_from("<BQB", p)
            total += accepted
            count += c
            for k in range(n_ev):
                s, e, label, score, _, status, cc = struct.unpack_from("<IIBbHiQ", p, 10 + 24 * k)
                events.append({"start_us": s, "end_us": e, "label": label, "score": score, "status": status,
                               "counter": cc})
        return {"accepted": total, "counter": count, "events": events}

    def features(self) -> tuple[np.ndarray, int]:
        """The device's int8 input tensor from the pushed window, and the DSP's counter delta."""
        status, count, n = struct.unpack("<iQI", self.request(proto.FEATURES, timeout=self.timeout * 6))
        if status != 0:
            raise DeviceError(proto.E_MODEL, f"FEATURES: the DSP returned {status} ({DSP_ERRORS.get(status, '?')})")
        return self.get_input(n), count

    def take_lines(self) -> list[str]:
        """Text lines received so far (waits briefly for the ones still in flight)."""
        deadline = time.monotonic() + 0.2
        while (item := self._next_item(deadline)) is not None:
            if isinstance(item, str):
                self.lines.append(item)
        out, self.lines = self.lines, []
        return out

    # ---- life cycle -----------------------------------------------------------------------------

    @classmethod
    def connect(cls, url: str, **kw) -> "Device":
        dev = cls(SerialTransport(url), **kw)
        dev.hello()
        return dev

    def close(self, timeout: float = 5.0) -> None:
        try:
            if self.process is None or self.process.poll() is None:
                self.request(proto.BYE, timeout=2.0)
        except (RfedgeError, OSError):
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.t.close()
        if self.log is not None:
            self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _die_with_parent() -> None:
    """In the child before exec: a virtual board is killed with the process that started it, so an
    interrupted validation (Ctrl-C, a killed CI job) leaves no QEMU running (Linux prctl; elsewhere
    the context manager's cleanup is all there is)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_board(board: str | BoardSpec, firmware, *, timeout: float = 10.0, retries: int = 3, log_dir=None,
               connect_timeout: float = 20.0) -> Device:
    """Starts ``firmware`` (a Firmware or a path) on ``board`` and returns a connected Device
    (hello done).  QEMU's own messages go to ``log_dir/<board>.log`` when given."""
    spec = board if isinstance(board, BoardSpec) else load_board(board)
    elf = Path(getattr(firmware, "path", firmware))
    if not elf.is_file():
        raise RfedgeError("no firmware here; build it first (rfedge.firmware.build_firmware)", path=elf)
    log = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log = open(Path(log_dir) / f"{spec.name}.log", "ab")
    if spec.transport == "pty":
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        proc = subprocess.Popen([str(elf)], stdin=slave, stdout=slave, stderr=log or subprocess.DEVNULL,
                                close_fds=True, preexec_fn=_die_with_parent)
        os.close(slave)
        dev = Device(PtyTransport(master), timeout=timeout, retries=retries, process=proc, spec=spec, log=log)
    else:
        missing = spec.missing_tools()
        if spec.run["program"] in missing:
            raise RfedgeError(f"board {spec.name} needs {spec.run['program']}, which is not installed"
                              + (f" (apt-get install {' '.join(spec.apt)})" if spec.apt else ""))
        port = _free_port()
        args = [a.format(port=port, elf=elf) for a in spec.run["args"]]
        proc = subprocess.Popen([spec.run["program"], *args], stdin=subprocess.DEVNULL,
                                stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)
        deadline = time.monotonic() + connect_timeout
        transport = None
        while transport is None:
            try:
                transport = SerialTransport(f"socket://127.0.0.1:{port}")
            except Exception as e:   # serial.SerialException: QEMU not listening yet
                if proc.poll() is not None:
                    raise RfedgeError(f"{spec.run['program']} exited ({proc.returncode}) before its UART was up") from None
                if time.monotonic() > deadline:
                    proc.kill()
                    raise RfedgeError(f"could not connect to {spec.name}'s UART on port {port}: {e}") from None
                time.sleep(0.05)
        dev = Device(transport, timeout=timeout, retries=retries, process=proc, spec=spec, log=log)
    try:
        dev.hello()
    except BaseException:
        dev.close(timeout=1.0)
        raise
    return dev
