"""Features of a dataset's trials computed once and shared by every fold and model.

X of a trial is a deterministic function of the dataset's arrays and the FeatureConfig (the
normalizer, fitted per fold, comes after), and so is the activity statistic the threshold is
fitted on. A FeatureStore computes both per trial on first use — one pass over the raw window
gives both, since they start from the same log-amplitude — keeps them in memory, and, given a
``cache_dir``, saves complete sets as ``.npy``/``.npz`` files named by a key over the dataset's
content hash, the FeatureConfig and the source of the modules that compute them, so a changed
dataset, config or feature code never reads stale features.

The threshold only shapes X when ``cfg.segment`` is on; then each threshold (in practice each
fold) has its own X, and the key includes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from rfedge import activity
from rfedge.features import FeatureConfig, threshold_from_scores, trial_features, trial_window, uniform_logamp
from rfedge.fileio import atomic_write_bytes
from rfedge.progress import Progress

# The modules whose code decides X and the activity statistic: part of every cache key.
_SOURCES = ("features.py", "dsp.py", "activity.py", "featcache.py", "handedness.py")


def _code_digest() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _SOURCES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()


def feature_key(data_sha256: str, cfg: FeatureConfig, what: str = "features") -> str:
    """Cache key of ``what`` ("features" or "scores") for a dataset content hash and a config.

    Features ignore the threshold unless ``cfg.segment`` is set; scores depend only on the
    resampling rate and the receiver.
    """
    d = cfg.to_dict()
    if what == "scores":
        d = {"rate_hz": d["rate_hz"], "receiver": d["receiver"]}
    elif not cfg.segment:
        d.pop("threshold")
    blob = json.dumps({"what": what, "data": data_sha256, "cfg": d, "code": _code_digest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class OpenArrays:
    """A Dataset whose arrays are opened once (``Dataset.array`` re-opens the memmap per call,
    a quarter of the per-trial time)."""

    def __init__(self, ds):
        self.ds = ds
        self._a: dict = {}

    def array(self, name):
        if name not in self._a:
            self._a[name] = self.ds.array(name)
        return self._a[name]


def _compute(ds, ids, cfg: FeatureConfig, want_x: bool, want_scores: bool, desc: str, stream=None):
    """(X [len(ids), C, F, T] or None, [score arrays] or None) for trials ``ids``."""
    src = OpenArrays(ds)
    X = np.empty((len(ids),) + cfg.shape, np.float32) if want_x else None
    scores = [] if want_scores else None
    with Progress(len(ids), desc, stream) if stream else contextlib.nullcontext() as p:
        for j, i in enumerate(ids):
            la = uniform_logamp(*trial_window(src, int(i), cfg.receiver), cfg.rate_hz)
            if want_x:
                X[j] = trial_features(src, int(i), cfg, la)
            if want_scores:
                scores.append(activity.activity_score(la, cfg.rate_hz))
            if p:
                p.update()
    return X, scores


def _worker(args):
    path, ids, cfg_dict, want_x, want_scores = args
    from rfedge.data.dataset import Dataset

    return _compute(Dataset.open(path), ids, FeatureConfig.from_dict(cfg_dict), want_x, want_scores, "")


class FeatureStore:
    """X and activity statistics of the trials of one CSI dataset, computed at most once.

    ``features(ids, cfg)`` and ``threshold(ids, cfg)`` give what rfedge.features'
    ``dataset_features`` and ``fit_activity_threshold`` give, bit for bit; ``prepare(cfg)``
    computes every trial up front (over ``workers`` processes) and saves the cache files.
    """

    def __init__(self, ds, cache_dir=None, workers: int = 1, stream=None):
        self.ds = ds
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.workers = max(1, int(workers))
        self.stream = stream or sys.stderr
        self.n = len(ds)
        self._x: dict[str, tuple[np.ndarray, np.ndarray]] = {}       # key -> (X [N, ...], have [N])
        self._s: dict[str, list] = {}                                 # key -> per-trial scores or None
        self.computed = 0                                             # trials computed here (not loaded)

    # -- cache files -----------------------------------------------------------------------------

    def _file(self, key: str, what: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (f"features-{key}.npy" if what == "features" else f"scores-{key}.npz")

    def _load(self, key: str, what: str) -> bool:
        f = self._file(key, what)
        if f is None or not f.is_file():
            return False
        try:
            if what == "features":
                X = np.load(f, allow_pickle=False)
                if X.shape[0] != self.n:
                    return False
                self._x[key] = (X, np.ones(self.n, bool))
            else:
                with np.load(f, allow_pickle=False) as z:
                    flat, offsets = z["flat"], z["offsets"]
                if len(offsets) != self.n + 1:
                    return False
                self._s[key] = [flat[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        except (OSError, ValueError, KeyError):
            return False                   # unreadable or truncated: recompute and overwrite
        self.stream.write(f"features: loaded {what} from cache {f}\n")
        return True

    def _save(self, key: str, what: str) -> None:
        f = self._file(key, what)
        if f is None:
            return
        import io

        buf = io.BytesIO()
        if what == "features":
            np.save(buf, self._x[key][0], allow_pickle=False)
        else:
            s = self._s[key]
            offsets = np.concatenate([[0], np.cumsum([len(a) for a in s])]).astype(np.int64)
            np.savez(buf, flat=np.concatenate(s) if s else np.zeros(0), offsets=offsets)
        atomic_write_bytes(f, buf.getvalue())

    # -- computing -------------------------------------------------------------------------------

    def _entries(self, cfg: FeatureConfig):
        sha = self.ds.manifest.get("data_sha256") or ""
        kx, ks = feature_key(sha, cfg, "features"), feature_key(sha, cfg, "scores")
        if kx not in self._x and not self._load(kx, "features"):
            self._x[kx] = (np.empty((self.n,) + cfg.shape, np.float32), np.zeros(self.n, bool))
        if ks not in self._s and not self._load(ks, "scores"):
            self._s[ks] = [None] * self.n
        return kx, ks

    def _fill(self, ids, cfg: FeatureConfig, want_x: bool, want_scores: bool, desc: str) -> None:
        kx, ks = self._entries(cfg)
        X, have = self._x[kx]
        S = self._s[ks]
        # Scores never depend on the threshold: compute them with X whenever some are missing.
        need = sorted({int(i) for i in ids if (want_x and not have[i]) or (want_scores and S[i] is None)})
        if not need:
            return
        # One pass gives both from the same log-amplitude, so whatever of the two is missing is
        # computed — except X with segment on and no threshold yet (it needs the scores first).
        do_x = not have[need].all() and not (cfg.segment and cfg.threshold is None)
        do_s = any(S[i] is None for i in need)
        n_workers = min(self.workers, max(1, len(need) // 200)) if _can_fork() else 1
        if n_workers > 1:
            from concurrent.futures import ProcessPoolExecutor
            import multiprocessing

            parts = [p.tolist() for p in np.array_split(np.asarray(need), n_workers)]
            with Progress(1, f"{desc} ({len(need)} trials, {n_workers} processes)", self.stream) as p, \
                    ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("fork")) as ex:
                results = list(ex.map(_worker, [(str(self.ds.path), part, cfg.to_dict(), do_x, do_s)
                                                for part in parts]))
                p.update()
        else:
            parts = [need]
            results = [_compute(self.ds, need, cfg, do_x, do_s, desc, self.stream)]
        for part, (Xp, Sp) in zip(parts, results):
            if do_x:
                X[part] = Xp
                have[part] = True
            if do_s:
                for i, s in zip(part, Sp):
                    S[i] = s
        self.computed += len(need)
        if do_x and have.all():
            self._save(kx, "features")
        if do_s and all(s is not None for s in S):
            self._save(ks, "scores")

    def prepare(self, cfg: FeatureConfig, desc: str = "features (all trials)") -> None:
        """Compute (or load) X and scores of every trial now, and save them to the cache."""
        self._fill(range(self.n), cfg, want_x=True, want_scores=True, desc=desc)

    def features(self, ids, cfg: FeatureConfig, desc: str = "features") -> np.ndarray:
        """X [len(ids), C, F, T] float32, as ``rfedge.features.dataset_features``."""
        if cfg.segment and cfg.threshold is None:
            raise ValueError("segmenting features need a threshold")
        ids = [int(i) for i in ids]
        self._fill(ids, cfg, want_x=True, want_scores=False, desc=desc)
        return self._x[self._entries(cfg)[0]][0][ids]

    def scores(self, ids, cfg: FeatureConfig, desc: str = "activity") -> list[np.ndarray]:
        ids = [int(i) for i in ids]
        self._fill(ids, cfg, want_x=False, want_scores=True, desc=desc)
        S = self._s[self._entries(cfg)[1]]
        return [S[i] for i in ids]

    def threshold(self, ids, cfg: FeatureConfig) -> float:
        """The activity threshold of ``rfedge.features.fit_activity_threshold`` on trials ``ids``."""
        return threshold_from_scores(self.ds.trials, ids, self.scores(ids, cfg, "features (train)"), cfg.rate_hz)


def _can_fork() -> bool:
    """Worker processes are forked, which is only safe while this process runs one thread (not
    after TensorFlow or BLAS have started their native pools, which ``threading`` does not see).
    Spawning instead would re-import the caller's main module, which breaks scripts without a
    ``__main__`` guard; so otherwise: no workers."""
    import multiprocessing
    import threading

    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return threading.active_count() == 1


def default_workers(limit: int | None = 2) -> int:
    """The CPUs this process may use, at most ``limit``: processes for feature extraction."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, n if limit is None else min(limit, n))
