"""Simulator logs -> rfedge parse round trip, and datasets imported from labelled recordings."""

import numpy as np
import pytest

from rfedge.data.dataset import Dataset
from rfedge.data.importer import filename_facts, import_recordings
from rfedge.errors import RfedgeError
from rfedge.io.detect import parse_file
from rfedge.sim.csi import synth_csi_dataset


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    out = tmp_path_factory.mktemp("logs") / "ds"
    return Dataset.open(synth_csi_dataset(out, write_log=True,
                                          overrides=dict(users=2, sessions=1, trials_per_class=1)))


def test_logs_parse_back_to_identical_int8(logged):
    csi = np.asarray(logged.array("csi"))
    t_us = np.asarray(logged.array("t_us"))
    n = np.asarray(logged.array("n_packets"))
    rssi = np.asarray(logged.array("rssi"))
    logs = sorted((logged.path / "logs").glob("*.csv"))
    expected = {(t["user"], t["session"], r) for t in logged.trials for r in range(t["receivers"])}
    assert len(logs) == len(expected)
    checked = 0
    for f in logs:
        u, s, r = (int(x[len(p):]) for x, p in zip(f.stem.split("_"), ("user", "session", "rx")))
        cap = parse_file(f)
        assert cap.format == "esp-csi" and cap.part == "ht-ltf" and not cap.skipped
        assert cap.subcarriers.tolist() == logged.manifest["config"]["subcarriers"]
        trial_col = np.asarray(cap.meta["trial"]).astype(int)
        for t in logged.trials:
            if (t["user"], t["session"]) != (u, s):
                continue
            i = t["id"]
            sel = trial_col == i
            P = n[i, r]
            assert sel.sum() == P
            got = cap.csi[sel, 0]
            want = csi[i, r, :P, :, 0] + 1j * csi[i, r, :P, :, 1]
            assert np.array_equal(got, want)
            assert np.array_equal(cap.timestamps_us[sel], t_us[i, r, :P])
            assert np.array_equal(np.asarray(cap.meta["rssi"])[sel].astype(int), rssi[i, r, :P])
            assert set(np.asarray(cap.meta["label"])[sel].astype(str)) == {t["label_name"]}
            checked += 1
    assert checked == sum(t["receivers"] for t in logged.trials)


def test_import_labelled_logs_by_column(logged, tmp_path):
    logs = sorted((logged.path / "logs").glob("*_rx0.csv"))
    out = import_recordings(logs, tmp_path / "imported", label_from="column:label", window_s=1.0)
    ds = Dataset.open(out)
    assert set(ds.label_names) == set(logged.label_names)
    assert ds.manifest["config"]["subcarriers"] == logged.manifest["config"]["subcarriers"]
    n = np.asarray(ds.array("n_packets"))
    t_us = np.asarray(ds.array("t_us"))
    for i, t in enumerate(ds.trials):
        P = n[i, 0]
        span = t_us[i, 0, P - 1] - t_us[i, 0, 0]
        assert 50 <= P <= 101 and span < 1_000_000
    # user tokens of the file names became a factor, so cross-user exists for imported data
    assert {t["user"] for t in ds.trials} == {0, 1}
    assert "cross-user" in ds.split_names()


def test_import_by_filename_and_bad_specs(tmp_path):
    real = tmp_path / "src"
    synth_csi_dataset(real, write_log=True, overrides=dict(users=1, sessions=1, trials_per_class=1))
    f = sorted((real / "logs").glob("*_rx0.csv"))[0]
    renamed = tmp_path / "wave_u3_s1.csv"
    renamed.write_bytes(f.read_bytes())
    ds = Dataset.open(import_recordings([renamed], tmp_path / "d", label_from="filename", window_s=2.0))
    assert ds.label_names == ["wave"] and {t["user"] for t in ds.trials} == {3}
    assert filename_facts(renamed) == {"label_name": "wave", "user": 3, "session": 1}
    with pytest.raises(RfedgeError, match="no column 'gesture'"):
        import_recordings([renamed], tmp_path / "e", label_from="column:gesture", window_s=1.0)
    with pytest.raises(RfedgeError, match="--label-from"):
        import_recordings([renamed], tmp_path / "e", label_from="stars", window_s=1.0)
    with pytest.raises(RfedgeError, match="no complete 900 s window"):
        import_recordings([renamed], tmp_path / "e", window_s=900)
    assert not (tmp_path / "e").exists()
