"""Live CSI: parse console output as it arrives (a serial port, a pipe, a socket).

``CsiLineParser`` buffers partial lines and runs complete ones through exactly the code the file
reader uses (``esp_csi.clean_text`` + ``feed_text`` + decoding + ``build_captures``), so a log fed
in any chunking gives the packets ``parse_file`` gives. One difference by design: a file keeps its
dominant layout, while a stream cannot know it in advance and yields every decodable packet, each
carrying its own layout (``raw`` length, ``part``, ``subcarriers``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from rfedge.errors import RfedgeError
from rfedge.io.esp_csi import Collector, build_captures, clean_text, feed_text


@dataclass
class CsiPacket:
    """One decoded packet: the per-packet slice of a ``CsiCapture``."""

    csi: np.ndarray                 # complex64 [A, S]
    subcarriers: np.ndarray         # [S]
    timestamp_us: float             # NaN when unknown
    raw: np.ndarray | None          # int8 [L], exactly as the device printed it
    part: str | None
    bandwidth_mhz: int | None
    secondary_channel: int | None
    format: str
    meta: dict = field(default_factory=dict)   # column -> Python scalar


class CsiLineParser:
    """Feed bytes or text in any pieces; get decoded packets back in input order.

    ``skipped`` counts unusable records by reason, as the file reader does.
    """

    def __init__(self, format: str = "auto", part: str = "auto"):
        self._col = Collector(format)
        self._part = part
        self._buf = b""
        self._prev_ts = None   # device clock is uint32 us: unwrap across batches too
        self._wraps = 0

    @property
    def skipped(self):
        return self._col.skipped

    def feed(self, chunk: bytes | str) -> list[CsiPacket]:
        """Add a piece of the stream; returns the packets its complete lines hold."""
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "surrogateescape")
        buf = self._buf + chunk
        # a line is complete at LF or CR; a CRLF split across pieces only adds an empty line
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if cut < 0:
            self._buf = buf
            return []
        self._buf = buf[cut + 1:]
        return self._run(buf[:cut + 1])

    def feed_line(self, line: bytes | str) -> list[CsiPacket]:
        """Add one complete line (with or without its line break)."""
        if isinstance(line, str):
            line = line.encode("utf-8", "surrogateescape")
        return self.feed(line + b"\n")

    def flush(self) -> list[CsiPacket]:
        """End of stream: the last line counts even without a line break."""
        buf, self._buf = self._buf, b""
        return self._run(buf) if buf else []

    def _run(self, text: bytes) -> list[CsiPacket]:
        feed_text(self._col, clean_text(text))
        if not self._col.groups:
            return []
        caps = build_captures(self._col.take(), self._part, self._col.skipped, keep="all")
        out = []
        for cap in caps:
            cols = {k: v.tolist() for k, v in cap.meta.items()}
            for i in range(cap.packets):
                out.append((int(cap.seq[i]), CsiPacket(
                    csi=cap.csi[i], subcarriers=cap.subcarriers, timestamp_us=float(cap.timestamps_us[i]),
                    raw=None if cap.raw is None else cap.raw[i], part=cap.part, bandwidth_mhz=cap.bandwidth_mhz,
                    secondary_channel=cap.secondary_channel, format=cap.format,
                    meta={k: v[i] for k, v in cols.items()})))
        out.sort(key=lambda sp: sp[0])
        packets = [p for _, p in out]
        for p in packets:
            t = p.meta.get("local_timestamp")
            if isinstance(t, int):
                if self._prev_ts is not None and t < self._prev_ts - 2 ** 31:
                    self._wraps += 1
                self._prev_ts = t
                p.timestamp_us = float(t + self._wraps * 2 ** 32)
        return packets


def read_serial(port_url, baudrate: int = 115200, max_packets: int | None = None,
                timeout: float | None = 5.0, *, format: str = "auto", part: str = "auto",
                parser: CsiLineParser | None = None) -> Iterator[CsiPacket]:
    """Yield packets from a serial port or any pyserial URL (``/dev/ttyUSB0``, ``socket://h:p``,
    ``rfc2217://``, ``loop://``), or from an already open pyserial port object.

    Stops after ``max_packets`` packets, or when no byte arrived for ``timeout`` seconds (None:
    wait forever), or when the port closes. Pass a ``parser`` to see its ``skipped`` counts.
    A port opened here is closed at the end; one passed in is left open.
    """
    import serial

    parser = parser or CsiLineParser(format=format, part=part)
    poll = 0.05 if timeout is None else max(0.001, min(0.05, timeout))
    own = isinstance(port_url, (str, bytes)) or hasattr(port_url, "__fspath__")
    if own:
        try:
            port = serial.serial_for_url(str(port_url), baudrate=baudrate, timeout=poll)
        except (serial.SerialException, ValueError, OSError) as e:
            raise RfedgeError(f"cannot open serial port: {e}", path=port_url) from None
    else:
        port = port_url
        port.timeout = poll
    count = 0
    try:
        last = time.monotonic()
        while max_packets is None or count < max_packets:
            try:
                # returns what arrived within the poll interval (``in_waiting`` is a stub on
                # socket:// and would make this read one byte at a time)
                data = port.read(max(4096, port.in_waiting))
            except (serial.SerialException, OSError):
                break  # the other end went away: end of stream
            now = time.monotonic()
            if data:
                last = now
                packets = parser.feed(data)
            elif timeout is not None and now - last >= timeout:
                break
            else:
                continue
            for p in packets:
                yield p
                count += 1
                if max_packets is not None and count >= max_packets:
                    return
        if max_packets is None or count < max_packets:
            for p in parser.flush():
                yield p
                count += 1
                if max_packets is not None and count >= max_packets:
                    return
    finally:
        if own:
            port.close()
