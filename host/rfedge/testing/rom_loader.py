"""An emulated ESP ROM serial loader behind a TCP socket, so the real esptool can flash in tests.

It speaks the ROM's SLIP-framed command protocol (esptool's loader.py is the other end):
request  ``c0 | 00 op u16 len u32 chk data | c0``, response ``c0 | 01 op u16 len u32 val data | c0``
with ``data`` = command output + 4 status bytes (status, error, 0, 0), as the ROMs of the ESP32
family send.  Commands: SYNC (answered eight times, as the ROM does), READ_REG / WRITE_REG on a
register file (the chip-detect magic register, eFuses read as 0, and the SPI controller's user
command, so that RDID gives a flash ID), GET_SECURITY_INFO (chip ID for ESP32-S3/C3; "invalid
command" on the ESP32, which esptool then detects by its magic value), SPI_ATTACH, SPI_SET_PARAMS,
FLASH_BEGIN (erase) / FLASH_DATA (checksum and sequence checked) / FLASH_END, SPI_FLASH_MD5,
CHANGE_BAUDRATE.  The flash is a bytearray; ``flash_bytes(offset, n)`` reads it back.

Faults: ``drop_after_blocks=N`` closes the connection after the Nth FLASH_DATA block was received
(a cable pulled mid-write; esptool reconnects once, and the next block drops it again);
``corrupt_at=ADDRESS`` flips a bit of whatever is written there (a bad flash cell), which only the
MD5 verification can notice.

    with RomLoader("esp32c3") as rom:
        esptool.cmds.detect_chip(rom.url)     # socket://127.0.0.1:PORT
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading

# facts from esptool's targets/ (IMAGE_CHIP_ID, MAGIC_VALUE, SPI_REG_BASE, SPI_*_OFFS)
CHIPS = {
    "esp32": {"chip_id": None, "magic": 0x00F01D83, "spi_base": 0x3FF42000, "usr": 0x1C, "usr2": 0x24, "w0": 0x80},
    "esp32s3": {"chip_id": 9, "magic": 0x00000009, "spi_base": 0x60002000, "usr": 0x18, "usr2": 0x20, "w0": 0x58},
    "esp32c3": {"chip_id": 5, "magic": 0x6921506F, "spi_base": 0x60002000, "usr": 0x18, "usr2": 0x20, "w0": 0x58},
}
CHIP_DETECT_MAGIC_REG_ADDR = 0x40001000
SPI_CMD_USR = 1 << 18
FLASH_ID = 0x1640EF            # Winbond W25Q32: manufacturer 0xEF, type 0x40, capacity 0x16 = 4 MB

OP = {"FLASH_BEGIN": 0x02, "FLASH_DATA": 0x03, "FLASH_END": 0x04, "MEM_BEGIN": 0x05, "MEM_END": 0x06,
      "MEM_DATA": 0x07, "SYNC": 0x08, "WRITE_REG": 0x09, "READ_REG": 0x0A, "SPI_SET_PARAMS": 0x0B,
      "SPI_ATTACH": 0x0D, "CHANGE_BAUDRATE": 0x0F, "SPI_FLASH_MD5": 0x13, "GET_SECURITY_INFO": 0x14}
NAME = {v: k for k, v in OP.items()}

# ROM error codes (the second status byte)
ERR_INVALID_MESSAGE = 0x05
ERR_FAILED_TO_ACT = 0x06
ERR_BAD_CRC = 0x07
ERR_BAD_SEQUENCE = 0x0A


def slip_encode(payload: bytes) -> bytes:
    return b"\xc0" + payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


class SlipDecoder:
    """Bytes in, complete frames out (between 0xC0 delimiters, escapes undone)."""

    def __init__(self):
        self.buf = bytearray()
        self.in_frame = False
        self.esc = False

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for b in data:
            if b == 0xC0:
                if self.in_frame and self.buf:
                    frames.append(bytes(self.buf))
                self.buf.clear()
                self.in_frame = True
                self.esc = False
            elif not self.in_frame:
                continue
            elif self.esc:
                self.buf.append({0xDC: 0xC0, 0xDD: 0xDB}.get(b, b))
                self.esc = False
            elif b == 0xDB:
                self.esc = True
            else:
                self.buf.append(b)
        return frames


class RomLoader:
    """The ROM loader of one chip with ``flash_size`` bytes of erased flash, on 127.0.0.1."""

    def __init__(self, chip: str = "esp32c3", *, flash_size: int = 4 << 20, drop_after_blocks: int | None = None,
                 corrupt_at: int | None = None):
        if chip not in CHIPS:
            raise ValueError(f"unknown chip {chip!r}; known: {', '.join(CHIPS)}")
        self.chip = chip
        self.facts = CHIPS[chip]
        self.flash = bytearray(b"\xff" * flash_size)
        self.regs: dict[int, int] = {CHIP_DETECT_MAGIC_REG_ADDR: self.facts["magic"]}
        self.drop_after_blocks = drop_after_blocks
        self.corrupt_at = corrupt_at
        self.blocks_received = 0
        self.commands: list[str] = []          # names of the commands served, in order
        self.dropped = False
        self._flash_state = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"rom-loader-{chip}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def flash_bytes(self, offset: int, n: int) -> bytes:
        return bytes(self.flash[offset:offset + n])

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- serving -------------------------------------------------------------------------------

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(0.2)
                dec = SlipDecoder()
                while not self._stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    out = bytearray()
                    drop = False
                    for frame in dec.feed(data):
                        resp, drop = self._handle(frame)
                        out += resp
                        if drop:
                            break
                    if out:
                        try:
                            conn.sendall(out)
                        except OSError:
                            break
                    if drop:
                        self.dropped = True
                        try:
                            conn.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        break

    def _reply(self, op: int, val: int = 0, data: bytes = b"", status: int = 0, error: int = 0) -> bytes:
        body = data + bytes([status, error, 0, 0])
        return slip_encode(struct.pack("<BBHI", 1, op, len(body), val) + body)

    def _handle(self, frame: bytes) -> tuple[bytes, bool]:
        """(response bytes, drop the connection after them)"""
        if len(frame) < 8 or frame[0] != 0:
            return b"", False
        _, op, n, chk = struct.unpack("<BBHI", frame[:8])
        data = frame[8:8 + n]
        self.commands.append(NAME.get(op, f"0x{op:02x}"))
        if len(data) != n:
            return self._reply(op, status=1, error=ERR_INVALID_MESSAGE), False
        if op == OP["SYNC"]:
            if data != b"\x07\x07\x12\x20" + 32 * b"\x55":
                return self._reply(op, status=1, error=ERR_INVALID_MESSAGE), False
            return self._reply(op, val=0x20120707) * 8, False          # the ROM answers SYNC 8 times
        if op == OP["READ_REG"]:
            (addr,) = struct.unpack("<I", data[:4])
            return self._reply(op, val=self.regs.get(addr, 0)), False
        if op == OP["WRITE_REG"]:
            for k in range(0, len(data) - 15, 16):
                addr, value, mask, _delay = struct.unpack("<IIII", data[k:k + 16])
                self.regs[addr] = (self.regs.get(addr, 0) & ~mask | value & mask) & 0xFFFFFFFF
                self._spi_command(addr)
            return self._reply(op), False
        if op == OP["GET_SECURITY_INFO"]:
            if self.facts["chip_id"] is None:                       # the ESP32 ROM does not know it
                return self._reply(op, status=1, error=ERR_INVALID_MESSAGE), False
            info = struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0, self.facts["chip_id"], 0)
            return self._reply(op, data=info), False
        if op in (OP["SPI_ATTACH"], OP["SPI_SET_PARAMS"], OP["CHANGE_BAUDRATE"]):
            return self._reply(op), False
        if op == OP["FLASH_BEGIN"]:
            erase, nblocks, bsize, offset = struct.unpack("<IIII", data[:16])
            if offset + erase > len(self.flash) or offset % 0x1000:
                return self._reply(op, status=1, error=ERR_FAILED_TO_ACT), False
            self.flash[offset:offset + erase] = b"\xff" * erase
            self._flash_state = {"offset": offset, "bsize": bsize, "nblocks": nblocks, "seq": 0}
            return self._reply(op), False
        if op == OP["FLASH_DATA"]:
            st = self._flash_state
            if st is None:
                return self._reply(op, status=1, error=ERR_FAILED_TO_ACT), False
            size, seq = struct.unpack("<II", data[:8])
            payload = data[16:16 + size]
            csum = 0xEF
            for b in payload:
                csum ^= b
            if csum != chk:
                return self._reply(op, status=1, error=ERR_BAD_CRC), False
            if seq != st["seq"]:
                return self._reply(op, status=1, error=ERR_BAD_SEQUENCE), False
            self.blocks_received += 1
            if self.drop_after_blocks is not None and self.blocks_received >= self.drop_after_blocks:
                # the connection goes away before this block is written or answered
                return b"", True
            a = st["offset"] + seq * st["bsize"]
            self.flash[a:a + len(payload)] = payload
            if self.corrupt_at is not None and a <= self.corrupt_at < a + len(payload):
                self.flash[self.corrupt_at] ^= 0x10
            st["seq"] += 1
            return self._reply(op), False
        if op == OP["FLASH_END"]:
            self._flash_state = None
            return self._reply(op), False
        if op == OP["SPI_FLASH_MD5"]:
            addr, size = struct.unpack("<II", data[:8])
            digest = hashlib.md5(self.flash[addr:addr + size]).hexdigest().encode()
            return self._reply(op, data=digest), False
        return self._reply(op, status=1, error=ERR_INVALID_MESSAGE), False

    def _spi_command(self, addr: int):
        """A write of SPI_CMD_USR to the SPI controller runs the user command (RDID answered)."""
        f = self.facts
        base = f["spi_base"]
        if addr != base or not self.regs[addr] & SPI_CMD_USR:
            return
        cmd = self.regs.get(base + f["usr2"], 0) & 0xFF
        self.regs[base + f["w0"]] = FLASH_ID if cmd == 0x9F else 0
        self.regs[addr] &= ~SPI_CMD_USR
