"""``rfedge flash``: build the firmware of a run and load it onto a board.

``flash(board, run, port=None)``:

* virtual boards (host, qemu-rv32, qemu-m4): the firmware is built by rfedge.firmware and
  launched once (HELLO answered, model hash checked) — "flashing" a virtual board is building it.
* real boards (esp32, esp32s3, esp32c3; facts in rfedge.targets): the images of an ESP-IDF or
  PlatformIO build (found by convention, see ``find_images``; built first with ``idf.py`` when
  none is found and ESP-IDF is installed) go through esptool's library API: ``detect_chip`` (the
  chip must be the board's), ``attach_flash``, ``write_flash`` (every image verified by the ROM's
  SPI_FLASH_MD5 afterwards), hard reset.  The ROM loader is used, not the flasher stub, unless
  ``stub=True``: the ROM path is the one the tests run end to end against an emulated loader
  (rfedge.testing.rom_loader).

On success a record ``flashed.json`` is written into the build directory's ``flash/<board>.json``
(images, offsets, MD5s, port, chip) — atomically.  Any record of that board is removed before the
first byte is written and none is written on failure: a dropped connection leaves nothing claiming
the board holds the run's firmware.  Failures are one RfedgeError line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rfedge import __version__
from rfedge.errors import RfedgeError
from rfedge.targets import TARGETS, Target, get_target

VIRTUAL_BOARDS = ("host", "qemu-rv32", "qemu-m4")
REAL_BOARDS = tuple(TARGETS)
BOARDS = VIRTUAL_BOARDS + REAL_BOARDS


def _say(stream, msg: str) -> None:
    if stream is not None:
        stream.write(f"flash: {msg}\n")
        stream.flush()


def parse_board(spec: str) -> tuple[str, str | None]:
    """``B`` or ``B:PORT`` (the port may itself hold colons: esp32c3:socket://127.0.0.1:5555)."""
    board, _, port = spec.partition(":")
    if board not in BOARDS:
        raise RfedgeError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    return board, (port or None)


def repo_root() -> Path | None:
    here = Path(__file__).resolve()
    for base in here.parents:
        if (base / "mcu" / "boards" / "esp-idf" / "CMakeLists.txt").is_file():
            return base
    return None


def firmware_dir(run) -> Path:
    """Where a run's firmware builds (and flash records) go: RUN/firmware, or beside a .tflite."""
    run = Path(run)
    return run / "firmware" if run.is_dir() else run.parent / f"{run.stem}.firmware"


def record_path(run, board: str) -> Path:
    return firmware_dir(run) / "flash" / f"{board}.json"


# ---- images of a real board -------------------------------------------------------------------

def _images_from_dir(d: Path, target: Target) -> list[tuple[int, Path]] | None:
    """An ESP-IDF build (flasher_args.json) or a PlatformIO build (bootloader/partitions/firmware.bin)."""
    fa = d / "flasher_args.json"
    if fa.is_file():
        try:
            args = json.loads(fa.read_text())
            files = args["flash_files"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise RfedgeError(f"not an ESP-IDF flasher_args.json ({e})", path=fa) from None
        chip = (args.get("extra_esptool_args") or {}).get("chip")
        if chip and chip != target.name:
            raise RfedgeError(f"this build is for {chip}, not {target.name}", path=fa)
        out = []
        for off, rel in files.items():
            p = d / rel
            if not p.is_file():
                raise RfedgeError(f"flasher_args.json names {rel}, which is missing", path=d)
            out.append((int(off, 0), p))
        return sorted(out)
    names = {"bootloader.bin": target.bootloader_offset, "partitions.bin": target.partition_table_offset,
             "firmware.bin": target.app_offset}
    if (d / "firmware.bin").is_file():
        missing = [n for n in names if not (d / n).is_file()]
        if missing:
            raise RfedgeError(f"PlatformIO build without {', '.join(missing)}", path=d)
        return sorted((off, d / n) for n, off in names.items())
    return None


def image_dirs(board: str, run, build_dir=None) -> list[Path]:
    """The directories searched for a real board's images, in order."""
    if build_dir is not None:
        return [Path(build_dir)]
    dirs = [firmware_dir(run) / board]
    root = repo_root()
    if root is not None:
        dirs += [root / "mcu" / "boards" / "esp-idf" / f"build-{board}", root / ".pio" / "build" / board]
    return dirs


def find_images(board: str, run, build_dir=None) -> tuple[Path, list[tuple[int, Path]]] | None:
    target = get_target(board)
    for d in image_dirs(board, run, build_dir):
        if d.is_dir():
            imgs = _images_from_dir(d, target)
            if imgs:
                return d, imgs
    return None


def build_esp_firmware(board: str, run, *, stream=None) -> Path:
    """ESP-IDF build of the run's firmware into RUN/firmware/<board> (needs ``idf.py`` on PATH,
    i.e. an exported ESP-IDF environment): codegen + dsp_config.h into RUN/firmware/gen, then
    ``idf.py -C mcu/boards/esp-idf -B <build> -DIDF_TARGET=<chip> -DRFEDGE_GEN_DIR=<gen> build``."""
    idf = shutil.which("idf.py")
    if idf is None:
        raise RfedgeError("idf.py not found")
    root = repo_root()
    if root is None:
        raise RfedgeError("cannot find mcu/boards/esp-idf; install rfedge from its source tree (pip install -e .)")
    target = get_target(board)
    fw = firmware_dir(run)
    gen = fw / "gen"
    from rfedge.codegen import codegen

    _say(stream, f"generating the model's C into {gen}")
    codegen(run, gen, stream=stream)
    run = Path(run)
    if run.is_dir() and (run / "features.json").is_file() and (run / "normalizer.json").is_file():
        from rfedge_codegen.emit_dsp import dsp_config_for_run

        dsp_config_for_run(run, gen, tflite=(gen / "model.tflite").read_bytes())
    build = fw / board
    cmd = [idf, "-C", str(root / "mcu" / "boards" / "esp-idf"), "-B", str(build), f"-DIDF_TARGET={target.idf_target}",
           f"-DRFEDGE_GEN_DIR={gen.resolve()}", "build"]
    _say(stream, " ".join(cmd))
    r = subprocess.run(cmd, stdout=None if stream is not None else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        tail = "\n".join(r.stderr.strip().splitlines()[-15:])
        raise RfedgeError(f"ESP-IDF build for {board} failed (idf.py exit {r.returncode}):\n{tail}")
    return build


# ---- the record ----------------------------------------------------------------------------------

def _write_json_atomically(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ---- real boards ----------------------------------------------------------------------------------

def _esptool_error(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"esptool exited ({e.code})"
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg.split(" For troubleshooting steps")[0]


def flash_esp(board: str, images: list[tuple[int, bytes | Path]], port: str, *, baud: int = 115200,
              stub: bool = False, record: Path | None = None, meta: dict | None = None, stream=None,
              quiet: bool = False) -> dict:
    """Writes ``images`` [(offset, bytes or file)] to the board on ``port`` through esptool and
    verifies them; returns (and writes to ``record``) what was flashed."""
    try:
        import serial
        from esptool import __version__ as esptool_version
        from esptool import cmds
        from esptool.logger import log
        from esptool.util import FatalError
    except ImportError as e:   # pragma: no cover - esptool is a dependency
        raise RfedgeError(f"esptool >= 5 is needed to flash real boards ({e}); pip install 'esptool>=5'") from None
    target = get_target(board)
    data = []
    for off, img in images:
        b = Path(img).read_bytes() if isinstance(img, (str, Path)) else bytes(img)
        data.append((int(off), b, str(img) if isinstance(img, (str, Path)) else None))
    if record is not None and record.exists():
        record.unlink()            # whatever it said is about to stop being true
    if quiet:
        log.set_verbosity("silent")
    esp = None
    t0 = time.monotonic()
    try:
        _say(stream, f"connecting to {target.chip_name} on {port}")
        esp = cmds.detect_chip(port, baud=baud, connect_mode="default-reset")
        if esp.CHIP_NAME != target.chip_name:
            raise RfedgeError(f"the chip on {port} is {esp.CHIP_NAME}, not {target.chip_name} (board {board})")
        if stub:
            esp = cmds.run_stub(esp)
        cmds.attach_flash(esp)
        cmds.write_flash(esp, [(off, b) for off, b, _ in data], flash_size="keep", flash_mode="keep",
                         flash_freq="keep", no_compress=not esp.IS_STUB, compress=esp.IS_STUB, no_progress=quiet)
        cmds.reset_chip(esp, "hard-reset")
    except RfedgeError:
        raise
    except (FatalError, SystemExit, serial.SerialException, OSError, KeyboardInterrupt) as e:
        raise RfedgeError(f"flashing {board} on {port} failed: {_esptool_error(e)}; "
                          "the board's flash may be partly written and nothing is recorded as flashed") from None
    finally:
        if esp is not None:
            try:
                esp._port.close()
            except Exception:
                pass
        if quiet:
            log.set_verbosity("auto")
    result = {
        "board": board, "chip": target.chip_name, "port": port, "stub": bool(stub),
        "images": [{"offset": f"0x{off:x}", "file": name, "size": len(b), "md5": hashlib.md5(b).hexdigest()}
                   for off, b, name in data],
        "verified": "md5 (esptool write_flash verify)", "seconds": round(time.monotonic() - t0, 3),
        "esptool": esptool_version, "rfedge": __version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(meta or {}),
    }
    if record is not None:
        _write_json_atomically(record, result)
    _say(stream, f"{board}: {len(data)} image(s), {sum(len(b) for _, b, _ in data):,} bytes written and verified")
    return result


# ---- the verb ------------------------------------------------------------------------------------

def flash(board: str, run, port: str | None = None, *, build_dir=None, baud: int = 115200, stub: bool = False,
          stream=None, quiet: bool = False) -> dict:
    """Builds (virtual boards: rfedge.firmware; real boards: finds or builds the ESP-IDF images)
    and loads the run's firmware onto ``board``; returns the record of what was flashed."""
    if board not in BOARDS:
        raise RfedgeError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    run = Path(run)
    if not run.exists():
        raise RfedgeError("no such run directory or .tflite file", path=run)
    if board in VIRTUAL_BOARDS:
        return _flash_virtual(board, run, stream=stream)
    if port is None:
        raise RfedgeError(f"a real board needs its serial port: --board {board}:/dev/ttyUSB0 "
                          f"(or rfc2217://host:port, socket://host:port)")
    found = find_images(board, run, build_dir)
    if found is not None and build_dir is None and _stale(found[0], run, board):
        if shutil.which("idf.py") is None:
            raise RfedgeError(f"the {board} images in {found[0]} are older than the run's model; rebuild them "
                              "(idf.py on PATH lets rfedge flash do it) or pass --build-dir")
        found = None
    if found is None:
        if shutil.which("idf.py") is not None and build_dir is None:
            build_esp_firmware(board, run, stream=stream)
            found = find_images(board, run)
        if found is None:
            where = ", ".join(str(d) for d in image_dirs(board, run, build_dir))
            raise RfedgeError(
                f"no {board} firmware images found (looked in {where}); build them with ESP-IDF "
                f"(idf.py on PATH: rfedge flash builds RUN/firmware/{board} itself) or PlatformIO "
                f"(pio run -e {board}), or pass --build-dir")
    d, imgs = found
    _say(stream, f"images from {d}: " + ", ".join(f"{p.name}@0x{off:x}" for off, p in imgs))
    return flash_esp(board, imgs, port, baud=baud, stub=stub, record=record_path(run, board),
                     meta={"run": str(run), "build_dir": str(d)}, stream=stream, quiet=quiet)


def _stale(image_dir: Path, run: Path, board: str) -> bool:
    """Images built for this run (RUN/firmware/<board>) but older than its model."""
    if image_dir.resolve() != (firmware_dir(run) / board).resolve():
        return False
    model = run if run.is_file() else next((run / n for n in ("student_int8.tflite", "model.keras")
                                            if (run / n).exists()), None)
    if model is None:
        return False
    newest = max(p.stat().st_mtime for p in image_dir.rglob("*.bin"))
    return model.stat().st_mtime > newest


def _flash_virtual(board: str, run: Path, *, stream=None) -> dict:
    try:
        from rfedge import firmware
        from rfedge.board import open_board
    except ImportError:
        raise RfedgeError("virtual boards are built by rfedge.firmware, which is not available") from None
    rec = record_path(run, board)
    if rec.exists():
        rec.unlink()
    fw = firmware.build_for_run(board, run, firmware_dir(run), stream=stream)
    _say(stream, f"launching {fw.path}")
    with open_board(board, fw) as dev:
        info = dev.info
    if info is None or info.model_hash != fw.model_hash:
        raise RfedgeError(f"the {board} firmware answered with model hash "
                          f"{getattr(info, 'model_hash', None)}, expected {fw.model_hash}")
    result = {"board": board, "firmware": str(fw.path), "model_hash": fw.model_hash, "launched": True,
              "counter": info.counter, "rfedge": __version__, "run": str(run),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_json_atomically(rec, result)
    _say(stream, f"{board}: firmware built and launched (model {fw.model_hash})")
    return result
