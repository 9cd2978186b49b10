"""The feature store gives exactly what rfedge.features computes, once, and keys its cache files
by everything that shapes them."""

import io

import numpy as np
import pytest

from rfedge.data.dataset import Dataset
from rfedge.featcache import FeatureStore, feature_key
from rfedge.features import FeatureConfig, dataset_features, fit_activity_threshold


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    from rfedge.sim.csi import synth_csi_dataset

    d = tmp_path_factory.mktemp("featcache") / "ds"
    synth_csi_dataset(d, overrides=dict(users=2, sessions=2, trials_per_class=5))     # 220 trials
    return Dataset.open(d)


def test_store_matches_features_module_bit_for_bit(ds):
    cfg = FeatureConfig()
    ids = list(range(0, len(ds), 3))
    store = FeatureStore(ds, stream=io.StringIO())
    assert store.threshold(ids, cfg) == fit_activity_threshold(ds, ids, cfg)
    np.testing.assert_array_equal(store.features(ids[::-1], cfg), dataset_features(ds, ids[::-1], cfg))
    assert store.computed == len(ids)                 # the threshold's pass also made X: nothing twice
    seg = FeatureConfig(segment=True, threshold=store.threshold(ids, cfg))
    np.testing.assert_array_equal(store.features(ids[:20], seg), dataset_features(ds, ids[:20], seg))


def test_prepare_with_workers_then_reload_from_disk(ds, tmp_path):
    cfg = FeatureConfig()
    log = io.StringIO()
    a = FeatureStore(ds, cache_dir=tmp_path, workers=2, stream=log)
    a.prepare(cfg)
    assert a.computed == len(ds)
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["features", "scores"]
    b = FeatureStore(ds, cache_dir=tmp_path, stream=log)
    ids = [5, 1, 200]
    np.testing.assert_array_equal(b.features(ids, cfg), dataset_features(ds, ids, cfg))
    assert b.threshold(range(len(ds)), cfg) == a.threshold(range(len(ds)), cfg)
    assert b.computed == 0 and log.getvalue().count("loaded") == 2
    # A damaged cache file is recomputed, not trusted.
    for p in tmp_path.glob("features-*.npy"):
        p.write_bytes(p.read_bytes()[:100])
    c = FeatureStore(ds, cache_dir=tmp_path, stream=log)
    np.testing.assert_array_equal(c.features(ids, cfg), dataset_features(ds, ids, cfg))
    assert c.computed == len(ids)


def test_keys_follow_what_shapes_the_arrays():
    base = FeatureConfig()
    k = feature_key("abc", base)
    assert feature_key("abc", FeatureConfig(threshold=3.0)) == k            # threshold unused without segment
    assert feature_key("abd", base) != k
    assert feature_key("abc", FeatureConfig(groups=7)) != k
    seg = FeatureConfig(segment=True, threshold=1.0)
    assert feature_key("abc", seg) != feature_key("abc", FeatureConfig(segment=True, threshold=2.0))
    # Scores depend on the resampling and the receiver only.
    assert feature_key("abc", FeatureConfig(groups=7), "scores") == feature_key("abc", base, "scores")
    assert feature_key("abc", FeatureConfig(receiver=1), "scores") != feature_key("abc", base, "scores")
