"""``rfedge pipeline``: the main job on its embedded default.

Today it is the first stage of the flow (simulate the default dataset and summarize it); each
later stage (train, quantize, codegen, flash, validate, report) joins here as it lands.
"""

from __future__ import annotations

import time
from pathlib import Path

from rfedge.data.info import dataset_summary, format_summary
from rfedge.sim.csi import synth_csi_dataset


def run_pipeline(out="runs/pipeline", preset: str = "esp32-digits", seed: int | None = None) -> dict:
    out = Path(out)
    t0 = time.monotonic()
    data_dir = synth_csi_dataset(out / "data", preset=preset, seed=seed)
    summary = dataset_summary(data_dir)
    print(format_summary(summary))
    print(f"pipeline: dataset ready in {time.monotonic() - t0:.1f} s at {data_dir}")
    return summary
