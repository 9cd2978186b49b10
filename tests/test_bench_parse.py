"""`rfedge bench parse` and `rfedge parse` from the command line. Properties only, never timings."""

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rfedge.bench.parse import bench_parse

RFEDGE = shutil.which("rfedge", path=str(Path(sys.executable).parent)) or "rfedge"
TOOL = "esp32-csi-tool_example_csi.csv"


def run(*args):
    return subprocess.run([RFEDGE, *map(str, args)], capture_output=True, text=True, timeout=300)


def big_tool_file(path: Path, lines: int = 20_000) -> Path:
    """An ESP32-CSI-Tool log of ``lines`` packets in the real tool's format."""
    rng = np.random.default_rng(0)
    raw = rng.integers(-40, 40, (lines, 128))
    head = "CSI_DATA,AP,3C:71:BF:6D:2A:78,{rssi},11,1,0,1,1,1,0,0,0,0,-93,0,1,1,{ts},0,101,0,0,{rt:.6f},384,["
    with open(path, "w") as f:
        for i in range(lines):
            f.write(head.format(rssi=-70 - i % 9, ts=80_000_000 + 5_000 * i, rt=80 + i * 0.005))
            f.write(" ".join(map(str, raw[i])) + " ]\n")
    return path


def check(result, packets):
    assert set(result) >= {"file", "readers", "speedup_vs_csiread"}
    ours = result["readers"]["rfedge"]
    assert set(ours) >= {"packets", "repeats", "seconds", "packets_per_s", "rounds", "round_rates"}
    assert ours["packets"] == packets and ours["repeats"] >= ours["rounds"] >= 1 and ours["packets_per_s"] > 0
    theirs = result["readers"]["csiread"]
    assert "packets_per_s" in theirs
    for r in (ours, theirs):
        if r.get("packets_per_s") is not None:   # the figure is the median of the rounds' rates
            assert len(r["round_rates"]) == r["rounds"] == ours["rounds"]
            assert r["packets_per_s"] == statistics.median(r["round_rates"])
    return ours, theirs


def test_bench_real_esp32_csi_tool_file(real_data):
    pytest.importorskip("csiread")
    r = bench_parse(real_data / TOOL, min_seconds=0.05)
    ours, theirs = check(r, 13)
    assert theirs["packets"] == ours["packets"], "both readers see the same packets"
    assert r["speedup_vs_csiread"] == pytest.approx(ours["packets_per_s"] / theirs["packets_per_s"])


@pytest.fixture(params=["c", "numpy"])
def text_converter(request, monkeypatch):
    """Our reader with the C text conversions (rfedge._csitext) and without (numpy's, the fallback)."""
    from rfedge.io import esp_csi
    if request.param == "c" and esp_csi._csitext is None:
        pytest.skip("rfedge._csitext is not built")
    if request.param == "numpy":
        monkeypatch.setattr(esp_csi, "_csitext", None)
    return request.param


def test_both_readers_agree_on_the_real_tool_file(real_data, text_converter):
    """What the benchmark compares is the same work: same packets, same CSI values."""
    csiread = pytest.importorskip("csiread")
    from rfedge.io.detect import parse_file
    cap = parse_file(real_data / TOOL)
    ref = csiread.ESP32(str(real_data / TOOL), if_report=False)
    ref.read()
    assert cap.packets == ref.count == 13
    assert cap.meta["local_timestamp"].tolist() == ref.local_timestamp.tolist()
    assert cap.meta["rssi"].tolist() == ref.rssi.tolist()
    # csiread keeps every (imag, real) pair of the buffer; ours the used subcarriers of it
    pairs = cap.raw[:, 1::2] + 1j * cap.raw[:, ::2]
    assert np.array_equal(pairs, ref.csi)


def test_both_readers_agree_on_a_large_file(tmp_path, text_converter):
    """Past the plain-file size limit our reader frames line by line in bulk: still csiread's values."""
    csiread = pytest.importorskip("csiread")
    from rfedge.io.detect import parse_file
    path = big_tool_file(tmp_path / "big.csv", 2_000)
    cap = parse_file(path)
    ref = csiread.ESP32(str(path), if_report=False)
    ref.read()
    assert cap.packets == ref.count == 2_000
    assert cap.meta["local_timestamp"].tolist() == ref.local_timestamp.tolist()
    assert cap.meta["rssi"].tolist() == ref.rssi.tolist()
    assert np.array_equal(cap.raw[:, 1::2] + 1j * cap.raw[:, ::2], ref.csi)


def test_bench_large_synthetic_file(tmp_path):
    pytest.importorskip("csiread")
    path = big_tool_file(tmp_path / "big.csv")
    r = bench_parse(path, min_seconds=0.01)
    ours, theirs = check(r, 20_000)
    assert theirs["packets"] == 20_000


def test_bench_formats_csiread_cannot_read(real_data):
    r = bench_parse(real_data / "esp-csi_csi_data_with_head.csv", min_seconds=0.01)
    ours, theirs = check(r, 116)
    assert theirs["packets_per_s"] is None and theirs["note"] and r["speedup_vs_csiread"] is None


def test_bench_intel(real_data):
    pytest.importorskip("csiread")
    ours, theirs = check(bench_parse(real_data / "intel5300_sample_0x1_ap.dat", min_seconds=0.01), 540)
    assert theirs["packets"] == 540


def test_cli_bench_parse_json(real_data):
    p = run("bench", "parse", real_data / TOOL, "--seconds", "0.05", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["readers"]["rfedge"]["packets"] == 13


@pytest.mark.parametrize("name, fmt, packets", [
    (TOOL, "esp32-csi-tool", 13), ("esp-csi_csi_data_with_head.csv", "esp-csi", 116),
    ("intel5300_sample_0x1_ap.dat", "intel5300", 540)])
def test_cli_parse_json(real_data, name, fmt, packets):
    p = run("parse", real_data / name, "--json")
    assert p.returncode == 0 and p.stderr == ""
    s = json.loads(p.stdout)
    for key in ("format", "packets", "skipped", "skipped_reasons", "subcarriers", "rate_hz", "duration_s",
                "bandwidth", "secondary_channel"):
        assert key in s
    assert s["format"] == fmt and s["packets"] == packets and s["skipped"] == 0 and s["rate_hz"] > 0


def test_cli_parse_text_and_forced_format(real_data):
    p = run("parse", real_data / TOOL, "--format", "esp32-csi-tool")
    assert p.returncode == 0 and "13 packets" in p.stdout and "52 subcarriers" in p.stdout


@pytest.mark.parametrize("content", [b"", b"hello\nworld\n", b"CSI_DATA,1,2,3\n", b"\x00\xff" * 100])
def test_cli_parse_garbage_fails_with_one_line(tmp_path, content):
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    p = run("parse", f, "--json")
    assert p.returncode != 0 and p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfedge: error: ") and str(f) in lines[0]


def test_cli_parse_missing_file(tmp_path):
    p = run("parse", tmp_path / "nope.csv")
    assert p.returncode != 0 and p.stdout == "" and p.stderr.count("\n") == 1 and "not found" in p.stderr
