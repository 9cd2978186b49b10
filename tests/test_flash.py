"""rfedge flash: the real esptool (library API) against an emulated ESP ROM serial loader on a
socket, for ESP32-C3 / ESP32-S3 (chip ID via GET_SECURITY_INFO) and ESP32 (magic register);
verified writes, wrong chips, a connection dropped mid-write, a bad flash cell, the build-dir
conventions, the CLI, and virtual boards (built and launched)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys

import numpy as np
import pytest

from rfedge import cli
from rfedge.errors import RfedgeError
from rfedge.flash import find_images, flash, flash_esp, parse_board, record_path
from rfedge.targets import TARGETS, get_target
from rfedge.testing.rom_loader import RomLoader, SlipDecoder, slip_encode

pytest.importorskip("esptool")


def images_for(board: str, seed: int = 0, app_size: int = 50_000):
    """A bootloader, partition table and app of random bytes (not 0xE9-headed: esptool leaves them
    as they are) at the chip's offsets."""
    rng = np.random.default_rng(seed)
    t = get_target(board)
    return [(t.bootloader_offset, rng.integers(0, 0xE9, 7000, dtype=np.uint8).tobytes()),
            (t.partition_table_offset, rng.integers(0, 256, 3072, dtype=np.uint8).tobytes()),
            (t.app_offset, rng.integers(0, 256, app_size, dtype=np.uint8).tobytes())]


def test_slip_framing_by_hand():
    assert slip_encode(b"\x01\xc0\x02\xdb\x03") == b"\xc0\x01\xdb\xdc\x02\xdb\xdd\x03\xc0"
    dec = SlipDecoder()
    wire = b"junk\xc0\x01\xdb\xdc\x02" + b"\xdb\xdd\x03\xc0\xc0\x04\xc0"
    assert dec.feed(wire[:7]) == []                      # frames may arrive in pieces
    assert dec.feed(wire[7:]) == [b"\x01\xc0\x02\xdb\x03", b"\x04"]


def test_targets_are_data():
    assert set(TARGETS) == {"esp32", "esp32s3", "esp32c3"}
    assert get_target("esp32").bootloader_offset == 0x1000 and get_target("esp32c3").bootloader_offset == 0
    assert get_target("esp32c3").isa == "rv32imc" and get_target("esp32c3").fpu == "none"
    assert all(t.app_offset == 0x10000 and t.partition_table_offset == 0x8000 for t in TARGETS.values())
    with pytest.raises(RfedgeError, match="unknown ESP target"):
        get_target("esp8266")


def test_parse_board_keeps_colons_of_the_port():
    assert parse_board("esp32c3:socket://127.0.0.1:5555") == ("esp32c3", "socket://127.0.0.1:5555")
    assert parse_board("esp32s3:/dev/ttyUSB0") == ("esp32s3", "/dev/ttyUSB0")
    assert parse_board("qemu-rv32") == ("qemu-rv32", None)
    with pytest.raises(RfedgeError, match="unknown board"):
        parse_board("esp8266:/dev/ttyUSB0")


@pytest.mark.parametrize("board", ["esp32c3", "esp32s3", "esp32"])
def test_esptool_writes_and_verifies_every_image(board, tmp_path):
    imgs = images_for(board)
    rec = tmp_path / "flash" / f"{board}.json"
    with RomLoader(board) as rom:
        r = flash_esp(board, imgs, rom.url, record=rec, quiet=True)
        for off, b in imgs:
            assert rom.flash_bytes(off, len(b)) == b
            assert rom.flash_bytes(off + len(b), 16) == b"\xff" * 16       # erased, nothing beyond
        cmds = rom.commands
    # the ROM conversation esptool had: chip detection, attach, erase+write, MD5 verify per image
    assert cmds[0] == "SYNC" and "SPI_ATTACH" in cmds
    assert cmds.count("FLASH_BEGIN") == 3 and cmds.count("SPI_FLASH_MD5") == 3
    assert cmds.count("FLASH_DATA") == sum((len(b) + 0x3FF) // 0x400 for _, b in imgs)
    if board == "esp32":        # no chip ID in its ROM: detected by the magic register
        assert cmds[1] == "GET_SECURITY_INFO" and "READ_REG" in cmds[1:5]
    saved = json.loads(rec.read_text())
    assert saved == r and saved["chip"] == get_target(board).chip_name
    assert [i["md5"] for i in saved["images"]] == [hashlib.md5(b).hexdigest() for _, b in imgs]
    assert [int(i["offset"], 16) for i in saved["images"]] == [off for off, _ in imgs]


def test_a_different_chip_is_refused_before_writing(tmp_path):
    rec = tmp_path / "esp32s3.json"
    with RomLoader("esp32c3") as rom:
        with pytest.raises(RfedgeError, match="is ESP32-C3, not ESP32-S3"):
            flash_esp("esp32s3", images_for("esp32s3"), rom.url, record=rec, quiet=True)
        assert "FLASH_BEGIN" not in rom.commands
    assert not rec.exists()


def test_a_connection_dropped_mid_write_is_one_clear_error_and_claims_nothing(tmp_path):
    board = "esp32c3"
    imgs = images_for(board, seed=1)
    rec = tmp_path / f"{board}.json"
    with RomLoader(board) as rom:                       # an earlier, successful flash
        flash_esp(board, imgs, rom.url, record=rec, quiet=True)
    assert rec.exists()
    new = images_for(board, seed=2, app_size=80_000)
    with RomLoader(board, drop_after_blocks=30) as rom:
        with pytest.raises(RfedgeError) as ei:
            flash_esp(board, new, rom.url, record=rec, quiet=True)
        assert rom.dropped
        app_off, app = new[2]
        assert rom.flash_bytes(app_off, len(app)) != app       # really interrupted
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"flashing {board} on socket://127.0.0.1:")
    assert "failed" in msg and "nothing is recorded as flashed" in msg
    assert not rec.exists()                                    # the old record is gone too
    assert not list(tmp_path.glob(".*"))                       # no temporary leftovers


def test_a_bad_flash_cell_fails_the_md5_verification(tmp_path):
    board = "esp32s3"
    imgs = images_for(board, seed=3)
    rec = tmp_path / f"{board}.json"
    with RomLoader(board, corrupt_at=imgs[2][0] + 1234) as rom:
        with pytest.raises(RfedgeError, match="MD5"):
            flash_esp(board, imgs, rom.url, record=rec, quiet=True)
    assert not rec.exists()


def test_nobody_listening_is_an_error(tmp_path):
    with RomLoader("esp32c3") as rom:
        url = rom.url
    with pytest.raises(RfedgeError, match="flashing esp32c3 on socket://.* failed"):
        flash_esp("esp32c3", images_for("esp32c3"), url, record=tmp_path / "r.json", quiet=True)


# ---- build directories, the verb and the CLI --------------------------------------------------------

def _esp_idf_build(d, board, seed=0):
    """What idf.py build leaves: flasher_args.json naming the images."""
    d.mkdir(parents=True, exist_ok=True)
    imgs = images_for(board, seed)
    names = ["bootloader/bootloader.bin", "partition_table/partition-table.bin", "rfedge.bin"]
    files = {}
    for (off, b), n in zip(imgs, names):
        (d / n).parent.mkdir(parents=True, exist_ok=True)
        (d / n).write_bytes(b)
        files[f"0x{off:x}"] = n
    (d / "flasher_args.json").write_text(json.dumps({"flash_files": files, "extra_esptool_args": {"chip": board}}))
    return imgs


def test_flash_a_run_from_its_esp_idf_build(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    imgs = _esp_idf_build(run / "firmware" / "esp32c3", "esp32c3")
    with RomLoader("esp32c3") as rom:
        assert cli.main(["flash", str(run), "--board", f"esp32c3:{rom.url}"]) == 0
        assert all(rom.flash_bytes(off, len(b)) == b for off, b in imgs)
    out = capsys.readouterr().out
    assert "esp32c3 (ESP32-C3)" in out and "MD5 verified" in out
    assert json.loads(record_path(run, "esp32c3").read_text())["build_dir"].endswith("firmware/esp32c3")


def test_images_older_than_the_runs_model_are_not_flashed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))     # no idf.py to rebuild them
    run = tmp_path / "run"
    run.mkdir()
    _esp_idf_build(run / "firmware" / "esp32c3", "esp32c3")
    (run / "student_int8.tflite").write_bytes(b"newer model")
    old = (run / "student_int8.tflite").stat().st_mtime - 100
    for p in (run / "firmware" / "esp32c3").rglob("*.bin"):
        os.utime(p, (old, old))
    with RomLoader("esp32c3") as rom:
        with pytest.raises(RfedgeError, match="older than the run's model"):
            flash("esp32c3", run, rom.url, quiet=True)
        assert "FLASH_BEGIN" not in rom.commands


def test_platformio_build_dir_and_wrong_chip_build(tmp_path):
    pio = tmp_path / ".pio" / "build" / "esp32s3"
    pio.mkdir(parents=True)
    t = get_target("esp32s3")
    for n in ("bootloader.bin", "partitions.bin", "firmware.bin"):
        (pio / n).write_bytes(os.urandom(100))
    d, imgs = find_images("esp32s3", tmp_path, build_dir=pio)
    assert [off for off, _ in imgs] == [t.bootloader_offset, t.partition_table_offset, t.app_offset]
    _esp_idf_build(tmp_path / "idf", "esp32")
    with pytest.raises(RfedgeError, match="this build is for esp32, not esp32c3"):
        find_images("esp32c3", tmp_path, build_dir=tmp_path / "idf")


def test_missing_images_and_missing_port_are_clear_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))     # no idf.py: nothing gets built
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(RfedgeError, match="a real board needs its serial port"):
        flash("esp32c3", run)
    assert cli.main(["flash", str(run), "--board", "esp32c3:/dev/ttyUSB9"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rfedge: error: no esp32c3 firmware images found") and "\n" not in err
    assert not record_path(run, "esp32c3").exists()


def _fc_model() -> bytes:
    from rfedge_codegen.testing import const as C, options as O, single_op, tensor as T

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (4, 32)).astype(np.int8)
    return single_op("FULLY_CONNECTED", [T([1, 32], 0.05, -7), C(w, rng.uniform(0.001, 0.004, 4)),
                                         C(rng.integers(-2000, 2000, 4).astype(np.int32))],
                     [T([1, 4], 0.5, -20)], O("FullyConnected", fusedActivationFunction=1))


def test_without_images_an_installed_esp_idf_builds_them(tmp_path, monkeypatch):
    """A stand-in idf.py records how it was called and leaves what idf.py build leaves."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "idf_args.json"
    script = bindir / "idf.py"
    script.write_text(f"""#!{sys.executable}
import json, sys, pathlib
sys.path.insert(0, {str(os.path.dirname(__file__))!r})
from test_flash import _esp_idf_build
args = sys.argv[1:]
json.dump(args, open({str(log)!r}, "w"))
build = pathlib.Path(args[args.index("-B") + 1])
gen = [a for a in args if a.startswith("-DRFEDGE_GEN_DIR=")][0].split("=", 1)[1]
assert (pathlib.Path(gen) / "model.c").is_file(), "codegen ran first"
_esp_idf_build(build, "esp32c3", seed=7)
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    model = tmp_path / "m.tflite"
    model.write_bytes(_fc_model())
    with RomLoader("esp32c3") as rom:
        r = flash("esp32c3", model, rom.url, quiet=True)
        imgs = images_for("esp32c3", seed=7)
        assert all(rom.flash_bytes(off, len(b)) == b for off, b in imgs)
    args = json.loads(log.read_text())
    assert args[0] == "-C" and args[1].endswith("mcu/boards/esp-idf") and "-DIDF_TARGET=esp32c3" in args
    assert args[-1] == "build" and r["build_dir"].endswith("m.firmware/esp32c3")


def test_a_virtual_board_is_built_and_launched(tmp_path):
    if shutil.which("cc") is None:
        if "cc" in os.environ.get("RFEDGE_REQUIRE", ""):
            pytest.fail("RFEDGE_REQUIRE=cc but no C compiler")
        pytest.skip("no C compiler for the host board")
    model = tmp_path / "m.tflite"
    model.write_bytes(_fc_model())
    r = flash("host", model)
    assert r["launched"] and len(r["model_hash"]) == 16
    assert json.loads(record_path(model, "host").read_text())["model_hash"] == r["model_hash"]
