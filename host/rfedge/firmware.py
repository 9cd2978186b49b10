"""Building the firmware for a board: generated model + kernels + mcu/core (protocol, device app,
on-device DSP when present) + the board layer (mcu/boards/<board>) -> one ELF/executable.

``build_firmware(board, gen_dir, out_dir)`` compiles code that ``rfedge codegen`` wrote;
``build_for_run(board, RUN, out_dir)`` runs the code generator first.  No CMake: each source is
one compiler call with the board's flags (host/rfedge/boards/<board>.toml).  The build directory
gets ``firmware.elf`` (``firmware`` on the host board) and ``firmware.json`` (board, model hash,
sizes); an unchanged build is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rfedge import __version__
from rfedge.boards import BoardSpec, load_board
from rfedge.errors import RfedgeError


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for base in here.parents:
        if (base / "mcu" / "core" / "proto" / "rfe_device.c").is_file():
            return base
    raise RfedgeError(f"cannot find the firmware sources (mcu/core/proto/rfe_device.c) above {here}; "
                      "install rfedge from its source tree (pip install -e .)")


def core_dir() -> Path:
    return repo_root() / "mcu" / "core"


def board_dir(board: str) -> Path:
    return repo_root() / "mcu" / "boards" / board


DSP_API = ("rfe_dsp_init", "rfe_dsp_push_packet_ex", "rfe_dsp_window_to_input", "rfe_dsp_window_range_to_input",
           "rfe_act_init", "rfe_act_push_packet", "rfe_act_finish", "rfe_act_pop_event")


def dsp_sources(gen_dir: Path) -> list[Path] | None:
    """The on-device DSP's sources when mcu/core/dsp provides the API the dispatcher calls
    (rfe_dsp.h declaring DSP_API) and the generated model has its dsp_config.h; else None:
    FEATURES/DSP_RESET then answer 'unsupported'."""
    d = core_dir() / "dsp"
    h = d / "rfe_dsp.h"
    if not h.is_file() or not (Path(gen_dir) / "dsp_config.h").is_file():
        return None
    text = h.read_text()
    if not all(f in text for f in DSP_API):
        return None
    return sorted(d.glob("*.c"))


@dataclass
class Firmware:
    board: str
    path: Path
    build_dir: Path
    info: dict

    @property
    def model_hash(self) -> str:
        return self.info["model_hash"]


def model_hash(gen_dir: Path) -> str:
    """First 8 bytes of the SHA-256 of the model (its .tflite when the generator kept it)."""
    p = gen_dir / "model.tflite"
    data = p.read_bytes() if p.is_file() else (gen_dir / "model.c").read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RfedgeError(f"{what} failed ({p.returncode}): {' '.join(cmd[:3])} ...\n{(p.stderr or p.stdout)[-3000:]}")
    return p


def _size(spec: BoardSpec, elf: Path) -> dict:
    tool = None
    if spec.name != "host":
        prefix = spec.cc[: -len("gcc")] if spec.cc.endswith("gcc") else ""
        tool = shutil.which(prefix + "size")
    tool = tool or shutil.which("size")
    if tool is None:
        return {}
    out = subprocess.run([tool, str(elf)], capture_output=True, text=True).stdout.splitlines()
    if len(out) < 2:
        return {}
    text, data, bss = (int(v) for v in out[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash_bytes": text + data, "ram_bytes": data + bss}


def build_firmware(board: str | BoardSpec, gen_dir, out_dir, *, sanitize: bool = False, extra_cflags=(),
                   extra_sources=(), main: bool = True, stream=None) -> Firmware:
    """Compile the generated model in ``gen_dir`` with the core and the board layer into
    ``out_dir``.  ``sanitize`` (host board only) adds ASan + UBSan; ``main=False`` leaves out the
    board's main (for harnesses such as the protocol fuzzer, given in ``extra_sources``)."""
    spec = board if isinstance(board, BoardSpec) else load_board(board)
    gen_dir, out_dir = Path(gen_dir).resolve(), Path(out_dir).resolve()
    if not (gen_dir / "model.h").is_file():
        raise RfedgeError("no generated model (model.h) here; run `rfedge codegen RUN --out DIR` first", path=gen_dir)
    missing = spec.missing_tools()
    if missing and spec.cc.split()[0] in missing:
        raise RfedgeError(f"board {spec.name} needs the compiler {spec.cc!r}, which is not installed"
                          + (f" (apt-get install {' '.join(spec.apt)})" if spec.apt else ""))
    core, bdir = core_dir(), board_dir(spec.name)
    dsp = dsp_sources(gen_dir)
    srcs = [p for p in sorted(gen_dir.glob("*.c"))]
    srcs += [core / "proto" / "rfe_device.c", core / "proto" / "rfe_proto.c", core / "proto" / "rfe_csi.c"]
    srcs += dsp or []
    board_srcs = [bdir / s for s in spec.build["sources"]]
    if main:
        srcs += board_srcs
    srcs += [Path(s).resolve() for s in extra_sources]
    mhash = model_hash(gen_dir)
    kind = {"ns": 0, "instret": 1, "cycles": 2, "systick": 3}[spec.counter]
    defs = [f'-DRFE_BOARD_NAME="{spec.name}"', f"-DRFE_CLOCK_HZ={int(spec.clock_hz)}u",
            f"-DRFE_COUNTER_KIND={kind}", f'-DRFE_FW_VERSION="rfedge {__version__}"',
            f"-DRFE_MODEL_HASH=0x{mhash}ULL", f"-DRFE_HAVE_DSP={1 if dsp else 0}"]
    # -ffp-contract=off: the DSP must not fuse multiply-adds the Python reference does not
    cflags = list(spec.build["cflags"]) + ["-ffp-contract=off"] + list(extra_cflags)
    ldflags = list(spec.build.get("ldflags", []))
    if sanitize:
        if spec.name != "host":
            raise RfedgeError("sanitizers are for the host board only")
        cflags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
        ldflags += ["-fsanitize=address,undefined"]
    if spec.build.get("linker_script"):
        ldflags += ["-T", str(bdir / spec.build["linker_script"])]
    incs = ["-I", str(gen_dir), "-I", str(core), "-I", str(core / "proto")]
    exe = out_dir / ("firmware" if spec.name == "host" else "firmware.elf")
    # reuse an unchanged build
    h = hashlib.sha256()
    for part in [spec.cc, *cflags, *ldflags, *defs, *map(str, srcs)]:
        h.update(part.encode() + b"\0")
    for s in srcs + [bdir / spec.build["linker_script"]] if spec.build.get("linker_script") else srcs:
        h.update(Path(s).read_bytes())
    for hdr in sorted(gen_dir.glob("*.h")) + sorted(core.glob("*.h")) + sorted((core / "proto").glob("*.h")) + sorted((core / "dsp").glob("*.h")):
        h.update(hdr.read_bytes())
    key = h.hexdigest()
    manifest = out_dir / "firmware.json"
    if exe.is_file() and manifest.is_file():
        info = json.loads(manifest.read_text())
        if info.get("key") == key:
            return Firmware(spec.name, exe, out_dir, info)
    out_dir.mkdir(parents=True, exist_ok=True)
    obj_dir = out_dir / "obj"
    obj_dir.mkdir(exist_ok=True)
    objs = []
    if stream is not None:
        stream.write(f"firmware: building {spec.name} ({len(srcs)} sources, {spec.cc})\n")
        stream.flush()
    for s in srcs:
        o = obj_dir / (f"{s.parent.name}__{s.stem}.o")
        _run([spec.cc, *cflags, *defs, *incs, "-c", str(s), "-o", str(o)], f"compiling {s.name} for {spec.name}")
        objs.append(str(o))
    tmp = exe.with_name(exe.name + ".tmp")
    link = [spec.cc, *cflags, *[str(o) for o in objs], *ldflags, "-o", str(tmp), "-lm"]
    _run(link, f"linking the {spec.name} firmware")
    os.replace(tmp, exe)
    info = {"board": spec.name, "model_hash": mhash, "elf": str(exe), "cc": spec.cc, "cflags": cflags,
            "dsp": bool(dsp), "sanitize": sanitize, "key": key, **_size(spec, exe)}
    rep = gen_dir / "model.json"
    if rep.is_file():
        r = json.loads(rep.read_text())
        info["model"] = {k: r.get(k) for k in ("macs", "arena_bytes", "const_bytes", "input_bytes", "output_bytes")}
    manifest.write_text(json.dumps(info, indent=2) + "\n")
    return Firmware(spec.name, exe, out_dir, info)


def build_for_run(board: str, run, out_dir, *, stream=None, **kw) -> Firmware:
    """``rfedge codegen RUN`` into ``out_dir/gen`` (reused when present and newer than the run's
    model), then ``build_firmware``."""
    from rfedge.codegen import codegen

    out_dir = Path(out_dir)
    gen = out_dir / "gen"
    run = Path(run)
    src = run if run.is_file() else next((run / n for n in ("student_int8.tflite", "model.keras") if (run / n).exists()), None)
    # Stale when the model or the generator (its Python sources and templates) changed since.
    import rfedge_codegen

    gen_src = [p for p in Path(rfedge_codegen.__file__).parent.rglob("*") if p.is_file()]
    newest = max([p.stat().st_mtime for p in gen_src] + ([src.stat().st_mtime] if src is not None else []))
    fresh = (gen / "model.h").is_file() and (gen / "model.json").is_file() and (gen / "model.h").stat().st_mtime >= newest
    if not fresh:
        codegen(run, gen, stream=stream)
        if (run.is_dir() and (run / "features.json").is_file() and (run / "normalizer.json").is_file()
                and not json.loads((run / "features.json").read_text()).get("cross_antenna")):
            # (the device DSP computes the amplitude channels only: a model with cross-antenna
            # channels gets a firmware without DSP, fed with host-computed features)
            from rfedge_codegen.emit_dsp import dsp_config_for_run

            dsp_config_for_run(run, gen, tflite=(gen / "model.tflite").read_bytes())
    return build_firmware(board, gen, out_dir / board, stream=stream, **kw)
