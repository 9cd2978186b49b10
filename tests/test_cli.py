"""The CLI is a thin layer: verbs run, print what they promise, and fail with one clear line."""

import json
import subprocess
import sys

import pytest

RFEDGE = [sys.executable, "-m", "rfedge.cli"]


def run(*args, check=True):
    p = subprocess.run([*RFEDGE, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}")
    return p


def test_synth_csi_then_data_info(tmp_path):
    out = tmp_path / "ds"
    p = run("synth", "csi", "--out", out, "--set", "users=2", "--set", "trials_per_class=1", "--set", "sessions=1")
    assert "22 trials, 11 classes" in p.stdout
    info = json.loads(run("data", "info", out, "--json").stdout)
    assert info["trials"] == 22 and info["per_class"]["steady"] == 2
    assert info["factors"]["user"] == {"0": 11, "1": 11}
    assert "cross-user" in info["splits"] and "cross-session" not in info["splits"]


@pytest.mark.parametrize("args, message", [
    (["synth", "csi", "--out", "{tmp}/x", "--set", "nosuch=1"], "no field 'nosuch'"),
    (["synth", "csi", "--out", "{tmp}/x", "--set", "users"], "--set expects key=value"),
    (["synth", "csi", "--out", "{tmp}/x", "--preset", "nope"], "unknown preset 'nope'"),
    (["data", "info", "{tmp}"], "no manifest.json"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    p = run(*[a.format(tmp=tmp_path) for a in args], check=False)
    assert p.returncode != 0
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfedge: error:") and message in lines[0]
    assert not (tmp_path / "x").exists()


def test_version_and_help():
    assert run("--version").stdout.startswith("rfedge ")
    helptext = run("--help").stdout
    for verb in ("parse", "bench", "synth", "data", "pipeline"):
        assert verb in helptext
