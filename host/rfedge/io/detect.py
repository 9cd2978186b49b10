"""One entry point for every capture format: sniff the content, dispatch, insist on packets."""

from __future__ import annotations

import os

from rfedge.errors import RfedgeError
from rfedge.io.capture import CsiCapture, require_packets

FORMATS = ("esp-csi", "esp32-csi-tool", "npz", "intel5300")
_SNIFF = 1 << 16


def sniff_format(data: bytes, exact: bool = True) -> str | None:
    """The format the first bytes look like, or None.

    Text logs are told apart by their first records (25 fields esp-csi, 26 ESP32-CSI-Tool, or a
    header); with ``exact=False`` any ``CSI_DATA`` text answers ``"text"`` without looking further
    (the text reader handles both layouts anyway).
    """
    head = data if len(data) <= _SNIFF else data[:_SNIFF]
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "npz"
    if b"CSI_DATA" in head:
        if not exact:
            return "text"
        from rfedge.io.esp_csi import POSITIONAL, clean_text, frame_line
        votes = {"esp-csi": 0, "esp32-csi-tool": 0}
        for line in clean_text(head).split(b"\n")[:200]:
            for item in frame_line(line):
                if item[0] == "header":
                    lower = {n.lower() for n in item[1]}
                    return "esp32-csi-tool" if ("real_timestamp" in lower or "role" in lower) else "esp-csi"
                if item[0] == "rec":
                    sch = POSITIONAL.get(item[1].count(b",") + 1)
                    if sch is not None:
                        votes[sch.flavor] += 1
        return max(votes, key=lambda k: (votes[k], k == "esp-csi"))
    from rfedge.io.intel5300 import _resync
    if _resync(head, -2, len(head)) >= 0:
        return "intel5300"
    return None


def _read_all(path: str) -> bytes:
    """The whole file (one read of the size fstat gives; more reads if it grew or is not regular)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        if len(data) != size:   # short read, a file still growing, a pipe or a /proc file
            parts = [data]
            while True:
                chunk = os.read(fd, max(size, 1 << 16))
                if not chunk:
                    break
                parts.append(chunk)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


def parse_file(path, format: str = "auto", part: str = "auto") -> CsiCapture:
    """Read any supported capture; one RfedgeError for a missing, unreadable or unusable file."""
    if format != "auto" and format not in FORMATS:
        raise RfedgeError(f"unknown format {format!r} (expected auto or one of {', '.join(FORMATS)})")
    spath = os.fspath(path)
    try:
        data = _read_all(spath)
    except FileNotFoundError:
        raise RfedgeError("file not found", path=spath) from None
    except IsADirectoryError:
        raise RfedgeError("is a directory, expected a capture file", path=spath) from None
    except OSError as e:
        raise RfedgeError(f"cannot read file: {e.strerror or e}", path=spath) from None
    fmt = format
    if fmt == "auto":
        fmt = sniff_format(data, exact=False)
        if fmt is None:
            what = "empty file" if not data else "unrecognised content"
            raise RfedgeError(f"{what}: not any of {', '.join(FORMATS)} (tried all; pass --format to force one)",
                              path=spath)
    return require_packets(parse_bytes(data, fmt, part=part, source=spath))


def parse_bytes(data: bytes, format: str, *, part: str = "auto", source: str = "") -> CsiCapture:
    """Parse in-memory content of a known format (no packets is not an error here)."""
    if format in ("esp-csi", "esp32-csi-tool", "text"):
        from rfedge.io.esp_csi import parse_esp_csi_bytes
        return parse_esp_csi_bytes(data, format="auto" if format == "text" else format, part=part,
                                   source=source, require=False)
    if format == "intel5300":
        from rfedge.io.intel5300 import parse_intel5300_bytes
        if part != "auto":
            raise RfedgeError(f"part={part!r} applies to ESP32 buffers, not Intel 5300 files")
        return parse_intel5300_bytes(data, source=source, require=False)
    if format == "npz":
        import io

        from rfedge.io.npz import _load_bytes, parse_npz_arrays
        return parse_npz_arrays(_load_bytes(io.BytesIO(data), source), part=part, source=source, require=False)
    raise RfedgeError(f"unknown format {format!r}")
