"""The streaming parser gives the file parser's packets whatever the chunking; read_serial on a pty."""

import os
import random
import socket
import threading
import time

import numpy as np
import pytest

from rfedge.errors import RfedgeError
from rfedge.io.esp_csi import format_csi_data_line, parse_esp_csi_bytes
from rfedge.io.stream import CsiLineParser, read_serial


def dirty_log(n=60, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    raw = rng.integers(-100, 100, (n, 256)).astype(np.int8)
    out = []
    for i, r in enumerate(raw):
        line = format_csi_data_line(r, {"local_timestamp": 20_000 * i, "rssi": -40 - i % 7}) + f",lbl{i % 3}"
        if i % 7 == 0:
            out.append("\x1b[0;32mI (%d) wifi: beacon\x1b[0m" % i)
        if i % 11 == 3:
            line = line[:-40]                                 # cut record
        if i % 13 == 5:
            line = "\x1b[0m" + line
        out.append(line)
    ends = ["\n", "\r\n", "\r\r\n"]
    return "".join(line + ends[i % 3] for i, line in enumerate(out)).encode()


def same(packets, cap):
    assert len(packets) == cap.packets
    for i, p in enumerate(packets):
        assert np.array_equal(p.raw, cap.raw[i]) and np.array_equal(p.csi, cap.csi[i])
        assert p.timestamp_us == cap.timestamps_us[i]
        assert p.meta["rssi"] == cap.meta["rssi"][i] and p.meta["extra0"] == cap.meta["extra0"][i]
        assert np.array_equal(p.subcarriers, cap.subcarriers) and p.part == cap.part


@pytest.mark.parametrize("seed", range(6))
def test_chunks_give_the_file_parsers_packets(seed):
    data = dirty_log(seed=seed)
    cap = parse_esp_csi_bytes(data)
    r = random.Random(seed)
    parser = CsiLineParser()
    packets, i = [], 0
    while i < len(data):
        k = r.choice([1, 2, 7, 64, 500, 4096])
        packets += parser.feed(data[i:i + k])
        i += k
    packets += parser.flush()
    same(packets, cap)
    assert parser.skipped == cap.skipped


def test_feed_text_and_lines():
    data = dirty_log(12, seed=9)
    cap = parse_esp_csi_bytes(data)
    p1 = CsiLineParser()
    got = []
    for line in data.decode().splitlines():
        got += p1.feed_line(line)
    same(got, cap)
    p2 = CsiLineParser()
    same(p2.feed(data.decode()) + p2.flush(), cap)


def test_stream_yields_every_layout():
    a = format_csi_data_line(np.zeros(128, np.int8), {"local_timestamp": 1})
    b = format_csi_data_line(np.ones(256, np.int8), {"local_timestamp": 2})
    got = CsiLineParser().feed(f"{a}\n{b}\n{a}\n")
    assert [len(p.raw) for p in got] == [128, 256, 128] and [p.part for p in got] == ["lltf", "ht-ltf", "lltf"]


def test_timestamps_unwrap_across_feeds():
    p = CsiLineParser()
    got = p.feed(format_csi_data_line(np.zeros(128, np.int8), {"local_timestamp": 2**32 - 5}) + "\n")
    got += p.feed(format_csi_data_line(np.zeros(128, np.int8), {"local_timestamp": 3}) + "\n")
    assert [q.timestamp_us for q in got] == [2**32 - 5, 2**32 + 3]


def _writer(fd, data, seed):
    r = random.Random(seed)
    i = 0
    while i < len(data):
        k = r.randint(1, 700)
        os.write(fd, data[i:i + k])
        i += k
        time.sleep(r.random() * 0.002)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pty (POSIX)")
def test_read_serial_on_a_pty():
    serial = pytest.importorskip("serial")
    data = dirty_log(40, seed=3)
    cap = parse_esp_csi_bytes(data)
    master, slave = os.openpty()
    try:
        got = list(read_serial(os.ttyname(slave), max_packets=0, timeout=0.05))   # opens and closes
        assert got == []
        # open first (pyserial drops what is waiting when it opens), then write in random pieces
        port = serial.serial_for_url(os.ttyname(slave), baudrate=921600)
        t = threading.Thread(target=_writer, args=(master, data, 1))
        t.start()
        got = list(read_serial(port, timeout=1.0))
        t.join()
        assert port.is_open, "a port passed in stays open"
        port.close()
    finally:
        os.close(master)
        os.close(slave)
    same(got, cap)


def test_read_serial_over_a_socket_with_max_packets():
    serial = pytest.importorskip("serial")
    data = dirty_log(30, seed=4)
    cap = parse_esp_csi_bytes(data)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port_no = srv.getsockname()[1]
    opened = threading.Event()

    def serve():
        conn, _ = srv.accept()
        opened.wait(5)
        r = random.Random(2)
        i = 0
        while i < len(data):
            k = r.randint(1, 900)
            conn.sendall(data[i:i + k])
            i += k
        time.sleep(0.2)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    port = serial.serial_for_url(f"socket://127.0.0.1:{port_no}", timeout=0.05)
    opened.set()
    got = list(read_serial(port, max_packets=10, timeout=2.0))
    rest = list(read_serial(port, timeout=2.0))      # the stream goes on where it stopped
    t.join()
    port.close()
    srv.close()
    assert len(got) == 10
    for i, p in enumerate(got):
        assert np.array_equal(p.raw, cap.raw[i])
    assert 0 < len(rest) < cap.packets


def test_read_serial_bad_port():
    with pytest.raises(RfedgeError, match="cannot open serial port"):
        next(read_serial("/dev/does-not-exist-rfedge"))
