"""Compiling and measuring generated code on this machine: the host build the tests and
``rfedge bench codegen`` drive, object sizes (rv32 when the cross compiler is present), and
instruction counts under valgrind's callgrind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError

from .emit_c import TEMPLATES

C_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
RV32_CC = "riscv64-unknown-elf-gcc"
RV32_FLAGS = ["-march=rv32imc", "-mabi=ilp32", "-misa-spec=2.2", "-mcmodel=medany", "--specs=picolibc.specs", "-Os",
              "-ffunction-sections", "-fdata-sections"]


def host_cc() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, **kw)
    if p.returncode != 0:
        err = (p.stderr or b"").decode("utf-8", "replace").strip()
        raise RfedgeError(f"{Path(cmd[0]).name} failed ({p.returncode}): {err[-2000:]}")
    return p


def model_sources(gen_dir: Path, name: str = "model", selftest: bool = True) -> list[Path]:
    gen_dir = Path(gen_dir)
    srcs = [p for p in sorted(gen_dir.glob("*.c")) if p.name != f"{name}_selftest.c"]
    if selftest and (gen_dir / f"{name}_selftest.c").is_file():
        srcs.append(gen_dir / f"{name}_selftest.c")
    return srcs


def compile_host(gen_dir, name: str = "model", exe=None, cc: str | None = None, extra_flags=()) -> Path:
    """The generated model + host_harness.c as one executable (stdin vectors -> stdout outputs)."""
    cc = cc or host_cc()
    if cc is None:
        raise RfedgeError("no C compiler found (set CC or install cc)")
    gen_dir = Path(gen_dir)
    exe = Path(exe) if exe else gen_dir / f"{name}_host"
    fn = f"rfe_{name}"
    defs = [f'-DRFE_HARNESS_HEADER="{name}.h"', f"-DRFE_HARNESS_IN={fn.upper()}_INPUT_SIZE",
            f"-DRFE_HARNESS_OUT={fn.upper()}_OUTPUT_SIZE", f"-DRFE_HARNESS_INVOKE={fn}_invoke",
            f"-DRFE_HARNESS_SELFTEST={fn}_selftest"]
    cmd = [cc, *C_FLAGS, *extra_flags, "-g", "-I", str(gen_dir), *defs, "-o", str(exe),
           *map(str, model_sources(gen_dir, name)), str(TEMPLATES / "host_harness.c")]
    _run(cmd)
    return exe


def run_host(exe, X: np.ndarray, out_size: int) -> np.ndarray:
    X = np.ascontiguousarray(np.asarray(X, np.int8).reshape(len(X), -1))
    p = _run([str(exe)], input=X.tobytes())
    y = np.frombuffer(p.stdout, np.int8)
    if y.size != len(X) * out_size:
        raise RfedgeError(f"{exe}: {y.size} output bytes for {len(X)} vectors of {out_size}")
    return y.reshape(len(X), out_size)


def selftest_host(exe) -> tuple[bool, str]:
    p = subprocess.run([str(exe), "--selftest"], capture_output=True, text=True)
    return p.returncode == 0, p.stdout.strip()


def object_size(gen_dir, name: str = "model") -> dict:
    """Flash (text + data) and RAM (data + bss) of the model and its kernels, self-test excluded:
    from an rv32imc object when riscv64-unknown-elf-gcc is installed, else the host object."""
    gen_dir = Path(gen_dir)
    if shutil.which(RV32_CC):
        cc, flags, target = RV32_CC, RV32_FLAGS, "rv32imc (riscv64-unknown-elf-gcc -Os)"
        size_tool = shutil.which("riscv64-unknown-elf-size") or "size"
    else:
        cc = host_cc()
        if cc is None:
            raise RfedgeError("no C compiler found (set CC or install cc)")
        flags, target, size_tool = ["-Os", "-ffunction-sections", "-fdata-sections"], "host (cc -Os; no rv32 cross compiler)", "size"
    with tempfile.TemporaryDirectory(prefix="rfe_size_") as tmp:
        objs = []
        for src in model_sources(gen_dir, name, selftest=False):
            o = Path(tmp) / (src.stem + ".o")
            _run([cc, "-std=c99", *flags, "-I", str(gen_dir), "-c", str(src), "-o", str(o)])
            objs.append(str(o))
        out = _run([size_tool, "-t", *objs]).stdout.decode()
    total = [ln for ln in out.splitlines() if ln.strip().endswith("(TOTALS)")]
    text, data, bss = (int(v) for v in total[-1].split()[:3])
    return {"flash_bytes": text + data, "text": text, "data": data, "bss": bss, "target": target}


def callgrind_instructions(cmd, stdin: bytes, function: str, calls: int) -> int | None:
    """Instructions executed inside ``function`` (inclusive) per call, under callgrind; None when
    valgrind is missing."""
    vg = shutil.which("valgrind")
    if vg is None:
        return None
    with tempfile.TemporaryDirectory(prefix="rfe_cg_") as tmp:
        out = Path(tmp) / "callgrind.out"
        p = subprocess.run([vg, "--tool=callgrind", f"--callgrind-out-file={out}", f"--toggle-collect={function}",
                            *map(str, cmd)], input=stdin, capture_output=True)
        if p.returncode != 0:
            raise RfedgeError(f"callgrind run failed: {p.stderr.decode('utf-8', 'replace')[-1000:]}")
        m = re.search(r"Collected : (\d+)", p.stderr.decode("utf-8", "replace"))
        if not m:
            raise RfedgeError("callgrind reported no instruction count")
    return int(round(int(m.group(1)) / calls))
