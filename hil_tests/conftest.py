"""The hardware-in-the-loop suite's plugin: ``pytest hil_tests --board host[,qemu-rv32,...]``.

Options: ``--board`` (comma-separated: every test runs once per board), ``--run RUN`` (a trained
run directory; default: a small simulated dataset and a quick student made once per session),
``--vectors N`` (bit-exactness vectors, default 1000), ``--hil-out DIR`` (builds and results).
A board whose compiler or emulator is missing is skipped with the reason, or fails when
RFEDGE_REQUIRE names the tool, the board or 'qemu'.  JUnit: pytest's ``--junitxml``.  Several
boards at once: ``-n 3 --dist loadgroup`` with pytest-xdist (one board per worker: the tests of a
board share one xdist group, so one worker starts that board once).
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import pytest

from rfedge.boards import board_names, load_board, require_board


def pytest_addoption(parser):
    g = parser.getgroup("rfedge hil")
    g.addoption("--board", default="host", help="board(s), comma-separated: " + ", ".join(board_names()))
    g.addoption("--run", default=None, help="run directory to validate (default: a quick simulated student)")
    g.addoption("--vectors", type=int, default=1000, help="vectors compared with TFLM (default 1000)")
    g.addoption("--hil-out", default=None, help="build and result directory (default: pytest's temporary directory)")


def _boards(config) -> list[str]:
    names = [b.strip() for b in config.getoption("--board").split(",") if b.strip()]
    for b in names:
        load_board(b)   # an unknown board is a usage error
    return names


def pytest_generate_tests(metafunc):
    if "board" in metafunc.fixturenames:
        metafunc.parametrize("board", _boards(metafunc.config), scope="session")


def pytest_collection_modifyitems(config, items):
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is not None and "board" in cs.params:
            item.add_marker(pytest.mark.xdist_group(name=cs.params["board"]))


def pytest_configure(config):
    config.addinivalue_line("markers", "xdist_group(name): tests that must share one pytest-xdist worker")


@pytest.fixture(scope="session")
def board_spec(board):
    return require_board(board)


@pytest.fixture(scope="session")
def hil_dir(request, tmp_path_factory) -> Path:
    opt = request.config.getoption("--hil-out")
    if opt:
        p = Path(opt)
        p.mkdir(parents=True, exist_ok=True)
        return p
    # shared by the xdist workers of one session (their basetemps are siblings)
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    p = root / "hil"
    p.mkdir(exist_ok=True)
    return p


@pytest.fixture(scope="session")
def run_dir(request, hil_dir) -> Path:
    """The run under test: --run, or a quick student on a small simulated set, made once (a file
    lock lets xdist workers share it)."""
    opt = request.config.getoption("--run")
    if opt:
        return Path(opt)
    run = hil_dir / "run"
    with open(hil_dir / "run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (run / "metrics.json").is_file():
            from rfedge.sim.csi import synth_csi_dataset
            from rfedge.train import train

            data = synth_csi_dataset(hil_dir / "data", overrides={"users": 2, "sessions": 1, "trials_per_class": 3})
            train(data, run, model="student", split="in-session", quick=True)
    return run


@pytest.fixture(scope="session")
def validation(board_spec, run_dir, hil_dir, request):
    """rfedge validate on this board, once per session (resumes an interrupted earlier one)."""
    from rfedge.validate import format_summary, validate

    s = validate(board_spec.name, run_dir, vectors=request.config.getoption("--vectors"),
                 out_dir=hil_dir / board_spec.name, stream=sys.stderr)
    sys.stderr.write(format_summary(s) + "\n")
    return s


@pytest.fixture(scope="session")
def dut(board_spec, run_dir, hil_dir, validation):
    """The device under test: the run's firmware started on the board, hello done."""
    from rfedge.board import open_board
    from rfedge.firmware import build_for_run

    fw = build_for_run(board_spec.name, run_dir, hil_dir / board_spec.name / "build")
    dev = open_board(board_spec, fw, timeout=30.0, log_dir=hil_dir / board_spec.name)
    dev.firmware = fw
    yield dev
    dev.close()
