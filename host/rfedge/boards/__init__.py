"""Per-target facts as data: one TOML file per board in this directory (clock, ISA, counter,
UART, compiler flags, QEMU command line).  ``load_board(name)`` returns a ``BoardSpec``."""

from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rfedge.errors import RfedgeError

HERE = Path(__file__).resolve().parent


@dataclass
class BoardSpec:
    name: str
    description: str
    isa: str
    target_chip: str
    clock_hz: int
    counter: str
    counter_unit: str
    counter_scale: float
    cpi: float
    uart: str
    transport: str
    build: dict
    run: dict
    exit: str = ""
    apt: list = field(default_factory=list)

    @property
    def cc(self) -> str:
        if self.name == "host":
            return os.environ.get("CC") or self.build["cc"]
        return self.build["cc"]

    @property
    def is_qemu(self) -> bool:
        return self.run["program"].startswith("qemu")

    def missing_tools(self) -> list[str]:
        """Programs this board needs that are not on PATH (compiler, emulator)."""
        need = [self.cc.split()[0]]
        if self.is_qemu:
            need.append(self.run["program"])
        return [t for t in need if shutil.which(t) is None]

    def instructions(self, count: float) -> float:
        """A counter value in instructions (or ns on the host board)."""
        return count * self.counter_scale

    def ms(self, instructions: float) -> float | None:
        """Estimated milliseconds at the target clock with the stated CPI; None without a clock."""
        if not self.clock_hz or not self.cpi:
            return None
        return instructions * self.cpi / self.clock_hz * 1e3


def board_names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def load_board(name: str) -> BoardSpec:
    p = HERE / f"{name}.toml"
    if not p.is_file():
        raise RfedgeError(f"unknown board {name!r}; available: {', '.join(board_names())}")
    d = tomllib.loads(p.read_text())
    return BoardSpec(**d)


def required_tools() -> set[str]:
    """Tools named in RFEDGE_REQUIRE (comma or space separated, e.g. ``qemu,cc``): a test that
    needs one of them must fail, not skip, when it is missing."""
    return set(os.environ.get("RFEDGE_REQUIRE", "").replace(",", " ").split())


def unavailable(spec: BoardSpec) -> tuple[str, bool] | None:
    """None when the board's tools are installed; else (reason, must_fail): must_fail when
    RFEDGE_REQUIRE names a missing tool, or 'qemu' for a QEMU board, or the board itself."""
    missing = spec.missing_tools()
    if not missing:
        return None
    req = required_tools()
    must = bool(req & set(missing)) or spec.name in req or (spec.is_qemu and "qemu" in req)
    hint = f" (apt-get install {' '.join(spec.apt)})" if spec.apt else ""
    return f"board {spec.name} needs {', '.join(missing)}{hint}", must


def require_board(name: str) -> BoardSpec:
    """For tests: the board's spec; pytest.skip with the reason when its tools are missing, or
    pytest.fail when RFEDGE_REQUIRE says they must be there."""
    import pytest

    spec = load_board(name)
    why = unavailable(spec)
    if why:
        reason, must = why
        if must:
            pytest.fail(f"RFEDGE_REQUIRE={os.environ.get('RFEDGE_REQUIRE')}: {reason}")
        pytest.skip(reason)
    return spec
