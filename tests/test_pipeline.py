"""The main job end to end on a tiny simulated dataset: every stage runs, and a second call resumes."""

import json
import shutil

import pytest

from rfedge.pipeline import run_pipeline

TINY = dict(users=2, sessions=1, trials_per_class=3)


@pytest.mark.skipif(shutil.which("cc") is None, reason="the host board needs a C compiler (cc)")
def test_pipeline_end_to_end_and_resume(tmp_path, capsys):
    s = run_pipeline(tmp_path / "p", overrides=TINY, quick=True, boards=["host"], vectors=100)
    run = tmp_path / "p" / "student"
    for f in ("model.keras", "student_int8.tflite", "quantize.json", "c/model.c", "report/report.md",
              "report/report.json", "report/report.html"):
        assert (run / f).is_file(), f
    assert s["report"] == str(run / "report" / "report.md")
    v = s["validate"]["host"]
    assert v["pass"] is True
    # The report's C column agrees with TFLM byte for byte (the report exits non-zero otherwise).
    rep = json.loads((run / "report" / "report.json").read_text())
    assert {c["name"] for c in rep["columns"]} >= {"float", "int8_tflm", "c"}
    mtime = (run / "model.keras").stat().st_mtime
    s2 = run_pipeline(tmp_path / "p", overrides=TINY, quick=True, boards=["host"], vectors=100)
    err = capsys.readouterr().err
    assert "train: reusing" in err and "dataset: reusing" in err
    assert (run / "model.keras").stat().st_mtime == mtime
    assert s2["float_accuracy"] == s["float_accuracy"]
