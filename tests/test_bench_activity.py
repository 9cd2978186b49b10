"""``rfedge bench activity``: the threshold comes from the training streams only, and the printed
figures are the per-stream detections re-scored and pooled."""

import json
import subprocess
import sys

import pytest

from rfedge import activity
from rfedge.bench.activity import bench_activity, format_activity, pooled
from rfedge.sim.csi_stream import synth_stream


@pytest.fixture(scope="module")
def result():
    return bench_activity(minutes=0.5, train_streams=1, test_streams=2)


def test_threshold_is_fitted_on_the_training_streams_only(result):
    assert result["train_seeds"] == [1] and not set(result["train_seeds"]) & set(result["test_seeds"])
    assert result["threshold"] == activity.fit_stream_threshold([synth_stream(seed=1, minutes=0.5)])


def test_figures_are_the_detections_rescored_and_pooled(result):
    per = result["per_stream"]
    assert len(per) == 2
    for s in per:
        again = activity.evaluate_detection(s["detections"], s["truth"], tolerance_s=result["tolerance_s"],
                                            duration_s=s["duration_s"])
        for k in ("false_alarms", "missed", "detected", "n_truth", "false_alarms_per_min"):
            assert s[k] == again[k]
        assert s["onset_error_s"]["median"] == pytest.approx(again["onset_error_s"]["median"], nan_ok=True)
    assert result["false_alarms"] == sum(s["false_alarms"] for s in per)
    assert result["detected"] == sum(s["detected"] for s in per)
    assert result["n_truth"] == sum(s["n_truth"] for s in per) == result["detected"] + result["missed"]
    assert result["minutes"] == pytest.approx(sum(s["duration_s"] for s in per) / 60)
    assert result["false_alarms_per_min"] == pytest.approx(result["false_alarms"] / result["minutes"])
    meds = [s["onset_error_s"]["median"] for s in per]
    assert min(meds) <= result["onset_error_s"]["median"] <= max(meds)
    assert result["onset_error_s"]["median"] <= result["onset_error_s"]["p90"]
    # One stream pooled alone is that stream.
    one = pooled(per[:1], result["tolerance_s"])
    assert one["onset_error_s"] == pytest.approx(per[0]["onset_error_s"], nan_ok=True)
    assert one["false_alarms_per_min"] == pytest.approx(per[0]["false_alarms_per_min"])
    # Sanity of the detector itself (as tests/test_activity.py): most gestures found, onsets close.
    assert result["detected"] >= 0.7 * result["n_truth"] and result["onset_error_s"]["median"] < 0.5
    text = format_activity(result)
    assert f"median {result['onset_error_s']['median']:.3f} s" in text and "/min" in text


def test_cli_bench_activity_json():
    p = subprocess.run([sys.executable, "-m", "rfedge.cli", "bench", "activity", "--minutes", "0.4",
                        "--train-streams", "1", "--test-streams", "1", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert {"threshold", "onset_error_s", "false_alarms_per_min", "per_stream"} <= set(r)
    bad = subprocess.run([sys.executable, "-m", "rfedge.cli", "bench", "activity", "--minutes", "0"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.startswith("rfedge: error: minutes must be > 0")
