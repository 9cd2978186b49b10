"""The train stage: one model on one fold of a dataset split, scored on that fold's test trials.

Everything fitted — activity threshold, normalizer, weights, the SVM's C/gamma, early stopping —
sees only the fold's training trials: a stratified validation part is carved out of them for the
choices, and the test trials are touched once, for the final score. The run directory receives
the model (``model.keras`` or ``svm.pkl``), ``features.json`` (the FeatureConfig with its fitted
threshold), ``normalizer.json``, ``predictions.npz`` (the test trial ids with their true and
predicted labels, and the class probabilities of Keras models), ``metrics.json`` and
``confusion.png``; ``metrics.json`` is moved in last, so a run directory with it is complete.

Features come from a rfedge.featcache.FeatureStore: ``rfedge evaluate`` passes one store to all
its runs, so every trial's X is computed once per evaluation, not once per fold and model.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from rfedge.data.dataset import Dataset
from rfedge.dsp import Normalizer
from rfedge.errors import RfedgeError
from rfedge.featcache import FeatureStore
from rfedge.features import FeatureConfig, receiver_features, trial_receiver, trial_window, window_features
from rfedge.fileio import atomic_write_json
from rfedge.metrics import classification_report, save_confusion_png
from rfedge.models import MODEL_KINDS

MODEL_FILES = {"keras": "model.keras", "svm": "svm.pkl"}
PREDICTIONS_FILE = "predictions.npz"
QUICK_EPOCHS = 3
QUICK_PATIENCE = 2
VAL_FRACTION = 0.15


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a Keras model is fitted. The values were chosen on the validation part carved from the
    training side of a 3,520-trial simulated set (test trials untouched); there they lifted the
    student from ~64% to ~79% validation accuracy, mostly through augmentation (mixup alone gave
    about +10 points) and a larger GRU (see rfedge.models.student).

    Adam with a linear warm-up then a cosine decay spanning ``epochs``; early stopping on the
    validation loss restores the best epoch's weights. Each epoch sees a freshly augmented copy of
    the (normalized, time-first) training inputs, drawn from ``seed`` and the epoch number only:
    a random fractional time shift and log-uniform time stretch (linear interpolation along the
    frames, edge frames held), a per-trial offset of the log power (a receiver gain) and a smaller
    per-channel one, and mixup of pairs of trials (labels mixed alike). Validation and test
    inputs are never augmented. Label smoothing, more dropout, time stretch, stronger jitter and
    a 5-frame kernel were tried and did not help on validation.
    """

    epochs: int = 60               # maximum; the cosine decay spans it
    patience: int = 15             # epochs without a lower validation loss before stopping
    batch_size: int = 32
    learning_rate: float = 1e-3    # peak, after warm-up
    warmup_epochs: int = 3
    final_lr_fraction: float = 0.01
    label_smoothing: float = 0.0
    time_shift: float = 1.5        # frames, uniform in [-s, s]
    time_stretch: float = 0.0      # log-factor, uniform in [-s, s]
    gain: float = 0.2              # std of a per-trial offset (normalized units)
    channel_gain: float = 0.1      # std of a per-trial, per-channel offset
    mixup: float = 0.2             # Beta(a, a) mixing weight; 0 turns mixup off


# Per model, measured on the calibrated default set (docs/calibration.md, in-session): batch 64
# at lr 3e-3 trains the GRU student in ~2/3 of the time of batch 32 at the same accuracy (0.897 vs
# 0.899); the heavy CNN gains nothing from 60 epochs over 30 (0.809 vs 0.805 on the first-guess
# set). These choices keep a full `rfedge evaluate` within its 20-minute budget on 2 cores.
RECIPES = {"student": Recipe(learning_rate=3e-3, batch_size=64),
           "student-tcn": Recipe(learning_rate=3e-3, batch_size=64),
           "cnn": Recipe(learning_rate=2e-3, batch_size=64, epochs=30)}
DEFAULT_EPOCHS = RECIPES["student"].epochs
DEFAULT_PATIENCE = RECIPES["student"].patience


def select_fold(ds: Dataset, split: str, fold) -> tuple[int, dict]:
    """(index, fold) by index (int or digit string) or by name, e.g. ``user=3``."""
    folds = ds.split(split)["folds"]
    names = [f["name"] for f in folds]
    if isinstance(fold, str) and fold.strip().lstrip("-").isdigit():
        fold = int(fold)
    if isinstance(fold, (int, np.integer)):
        if not -len(folds) <= fold < len(folds):
            raise RfedgeError(f"split {split!r} has {len(folds)} fold(s) ({', '.join(names)}); no fold {fold}")
        i = int(fold) % len(folds)
        return i, folds[i]
    if fold in names:
        return names.index(fold), folds[names.index(fold)]
    raise RfedgeError(f"split {split!r} has no fold {fold!r}; folds: {', '.join(names)}")


def validation_split(train_ids, labels, seed: int, fraction: float = VAL_FRACTION) -> tuple[list[int], list[int]]:
    """(fit ids, validation ids): ``fraction`` of each class's training trials, at least one per
    class that has two or more, so early stopping sees every class."""
    rng = np.random.default_rng([int(seed), 2])
    train_ids = np.asarray(sorted(int(i) for i in train_ids))
    y = np.asarray(labels)[train_ids]
    fit, val = [], []
    for g in np.unique(y):
        ids = train_ids[y == g]
        rng.shuffle(ids)
        n_val = min(max(int(round(fraction * len(ids))), 1), len(ids) - 1) if len(ids) >= 2 else 0
        val += ids[:n_val].tolist()
        fit += ids[n_val:].tolist()
    return sorted(fit), sorted(val)


def fold_trials(ds: Dataset, split: str, fold, seed: int, max_train: int | None = None,
                max_test: int | None = None) -> tuple[int, dict, list[int], list[int], list[int]]:
    """(fold index, fold, fit ids, validation ids, test ids) of one fold of a split, capped as
    asked (stratified); one clear error when a side would be empty."""
    fold_index, f = select_fold(ds, split, fold)
    labels = ds.labels
    fit_ids, val_ids = validation_split(cap_ids(f["train"], labels, max_train, seed), labels, seed)
    test_ids = cap_ids(f["test"], labels, max_test, seed)
    if not fit_ids or not val_ids or not test_ids:
        raise RfedgeError(f"fold {f['name']!r} of split {split!r} leaves {len(fit_ids)} training, "
                          f"{len(val_ids)} validation and {len(test_ids)} test trials; each must be > 0")
    return fold_index, f, fit_ids, val_ids, test_ids


def fold_features(ds: Dataset, features, cfg, fit_ids, val_ids, test_ids, who: str, stream):
    """(store, X fit, X validation, X test) of a fold from ``features`` (a FeatureStore of this
    dataset, shared across runs) or a new store; the activity threshold, when ``cfg`` has none,
    is fitted on the fit trials only (set on ``cfg``, which is saved with the model)."""
    if features is not None and features.ds.manifest.get("data_sha256") != ds.manifest.get("data_sha256"):
        raise RfedgeError(f"the feature store given to {who} belongs to another dataset", path=ds.path)
    store = features if features is not None else FeatureStore(ds, stream=stream)
    if cfg.threshold is None:
        cfg.threshold = store.threshold(fit_ids, cfg)
    return (store, store.features(fit_ids, cfg, desc="features (train)"),
            store.features(val_ids, cfg, desc="features (validation)"),
            store.features(test_ids, cfg, desc="features (test)"))


def cap_ids(ids, labels, n: int | None, seed: int) -> list[int]:
    """At most ``n`` of ``ids``, each class keeping its share (seeded; all of them when n is None).

    Trials are ranked by their position in a shuffled copy of their class divided by the class
    size, so any prefix of the ranking is stratified."""
    ids = sorted(int(i) for i in ids)
    if n is None or n >= len(ids):
        return ids
    rng = np.random.default_rng([int(seed), 4])
    y = np.asarray(labels)[ids]
    rank = np.empty(len(ids))
    for g in np.unique(y):
        pos = np.flatnonzero(y == g)
        rank[rng.permutation(pos)] = (np.arange(len(pos)) + rng.uniform(0, 1)) / len(pos)
    return sorted(np.asarray(ids)[np.argsort(rank, kind="stable")[:max(int(n), 0)]].tolist())


def configure_tf_threads(threads: int | None = None) -> None:
    """TensorFlow's thread pools: ``threads`` intra-op (default: $RFEDGE_TF_THREADS, else the CPUs
    this process may use), one inter-op (these small graphs have little op-level parallelism; a
    second pool only adds CPU time). A no-op once TensorFlow's runtime has started.

    Results depend slightly on the thread count (float sums in another order), so a run is
    reproducible for a given count."""
    import tensorflow as tf

    if threads is None and os.environ.get("RFEDGE_TF_THREADS", "").strip().isdigit():
        threads = int(os.environ["RFEDGE_TF_THREADS"])
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:
            threads = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def build_model(kind: str, input_shape, n_classes: int):
    if kind in ("student", "student-tcn"):
        from rfedge.models.student import build_student

        return build_student(input_shape, n_classes, variant="gru" if kind == "student" else "tcn")
    if kind == "cnn":
        from rfedge.models.baselines import build_heavy_cnn

        return build_heavy_cnn(input_shape, n_classes)
    raise RfedgeError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


def _epoch_logger(epochs: int, stream):
    import keras

    class EpochLine(keras.callbacks.Callback):
        """One line per epoch: enough to see convergence and overfitting at a glance."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            lg = logs or {}
            stream.write(f"epoch {epoch + 1}/{epochs}: loss {lg.get('loss', float('nan')):.4f} "
                         f"acc {lg.get('accuracy', float('nan')):.3f} val_loss {lg.get('val_loss', float('nan')):.4f} "
                         f"val_acc {lg.get('val_accuracy', float('nan')):.3f} ({time.monotonic() - self.t0:.1f} s)\n")
            stream.flush()

    return EpochLine()


def time_warp(A: np.ndarray, shift: np.ndarray, stretch: np.ndarray) -> np.ndarray:
    """Resample model inputs A [N, T, F, C] along time: frame t of the result is A at
    (t - c) / stretch + c - shift (c the centre frame), linearly interpolated, clamped to the
    first/last frame. shift [N] in frames (positive delays the gesture), stretch [N] > 0."""
    n, t = A.shape[:2]
    c = (t - 1) / 2
    pos = np.clip((np.arange(t)[None, :] - c) / np.asarray(stretch)[:, None] + c - np.asarray(shift)[:, None], 0, t - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (pos - i0)[:, :, None, None].astype(A.dtype)
    rows = np.arange(n)[:, None]
    return (1 - w) * A[rows, i0] + w * A[rows, i1]


def augment(A: np.ndarray, Y: np.ndarray, rng: np.random.Generator, r: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of model inputs A [N, T, F, C] and one-hot labels Y [N, G] (see Recipe)."""
    n = len(A)
    A = np.asarray(A, np.float32)
    if r.time_shift or r.time_stretch:
        shift = rng.uniform(-r.time_shift, r.time_shift, n) if r.time_shift else np.zeros(n)
        stretch = np.exp(rng.uniform(-r.time_stretch, r.time_stretch, n)) if r.time_stretch else np.ones(n)
        A = time_warp(A, shift, stretch)
    if r.gain:
        A = A + rng.normal(0.0, r.gain, (n, 1, 1, 1)).astype(np.float32)
    if r.channel_gain:
        A = A + rng.normal(0.0, r.channel_gain, (n, 1, 1, A.shape[3])).astype(np.float32)
    Y = np.asarray(Y, np.float32)
    if r.mixup:
        lam = rng.beta(r.mixup, r.mixup, n).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)           # the first trial of a pair stays the dominant one
        p = rng.permutation(n)
        A = lam[:, None, None, None] * A + (1 - lam[:, None, None, None]) * A[p]
        Y = lam[:, None] * Y + (1 - lam[:, None]) * Y[p]
    return np.ascontiguousarray(A, dtype=np.float32), Y


def _augmented_batches(A, Y, recipe: Recipe, seed: int):
    import keras

    class Batches(keras.utils.PyDataset):
        """Shuffled, augmented epochs; epoch k's data depends on (seed, k) alone, and batches are
        plain slices of it, so Keras' look-ahead calls cannot disturb the random stream."""

        def __init__(self):
            super().__init__()
            self.epoch = 0
            self._draw()

        def _draw(self):
            rng = np.random.default_rng([int(seed), 3, self.epoch])
            order = rng.permutation(len(A))
            self.a, self.y = augment(A[order], Y[order], rng, recipe)

        def __len__(self):
            return -(-len(A) // recipe.batch_size)

        def __getitem__(self, i):
            sl = slice(i * recipe.batch_size, (i + 1) * recipe.batch_size)
            return self.a[sl], self.y[sl]

        def on_epoch_end(self):
            self.epoch += 1
            self._draw()

    return Batches()


def _fit_keras(kind, X_fit, y_fit, X_val, y_val, n_classes, *, seed, epochs, patience, stream,
               recipe: Recipe | None = None):
    import keras

    from rfedge.models.student import to_model_input

    r = recipe or RECIPES[kind]
    keras.utils.set_random_seed(seed)
    model = build_model(kind, X_fit.shape[1:], n_classes)
    A_fit = to_model_input(X_fit)
    steps = -(-len(A_fit) // r.batch_size)
    warmup = min(r.warmup_epochs, max(epochs - 1, 0)) * steps
    lr = keras.optimizers.schedules.CosineDecay(
        r.learning_rate if not warmup else 0.0, max(epochs * steps - warmup, 1), alpha=r.final_lr_fraction,
        warmup_target=r.learning_rate if warmup else None, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=r.label_smoothing), metrics=["accuracy"])
    eye = np.eye(n_classes, dtype=np.float32)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    hist = model.fit(_augmented_batches(A_fit, eye[y_fit], r, seed),
                     validation_data=(to_model_input(X_val), eye[y_val]), epochs=epochs, shuffle=False,
                     verbose=0, callbacks=[stop, _epoch_logger(epochs, stream)])
    h = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best = int(np.argmin(h["val_loss"])) if h.get("val_loss") else len(h["loss"]) - 1
    info = {"epochs_run": len(h["loss"]), "best_epoch": best + 1,
            "val_accuracy": h.get("val_accuracy", [None])[best], "history": h,
            "recipe": dataclasses.asdict(dataclasses.replace(r, epochs=epochs, patience=patience))}
    if info["epochs_run"] < epochs:
        stream.write(f"early stop after epoch {info['epochs_run']}; weights of epoch {best + 1} restored\n")
    return model, info


def _keras_predictor(model, normalizer):
    """Batch-1 prediction function for latency timing: a traced graph, as a deployment would run,
    not Keras' eager per-call overhead (which alone is milliseconds)."""
    import tensorflow as tf

    from rfedge.models.student import to_model_input

    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda X: np.asarray(fn(to_model_input(normalizer(X))))


def measure_latency_ms(ds, ids, cfg: FeatureConfig, predict, repeats: int) -> float:
    """Median wall time of feature extraction + prediction for single windows on this host.

    The raw window is read before the clock starts (on a device it arrives from the radio).
    Reported, never asserted: it depends on the machine and its load.
    """
    read, feats = (trial_receiver, receiver_features) if cfg.cross_antenna else (trial_window, window_features)
    windows = [read(ds, int(i), cfg.receiver) for i in ids]
    predict(feats(*windows[0], cfg)[None])          # warm-up: tracing, lazy imports
    times = []
    for r in range(repeats):
        w = windows[r % len(windows)]
        t0 = time.perf_counter()
        predict(feats(*w, cfg)[None])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def save_predictions(path, test_ids, y_true, y_pred, proba=None) -> None:
    """``predictions.npz``: test_ids, y_true, y_pred (int64 [N]) and, when given, proba [N, G]."""
    import io

    from rfedge.fileio import atomic_write_bytes

    arrays = {"test_ids": np.asarray(test_ids, np.int64), "y_true": np.asarray(y_true, np.int64),
              "y_pred": np.asarray(y_pred, np.int64)}
    if proba is not None:
        arrays["proba"] = np.asarray(proba, np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_predictions(run_dir) -> dict[str, np.ndarray]:
    """The arrays of a run directory's ``predictions.npz``."""
    f = Path(run_dir) / PREDICTIONS_FILE
    try:
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise RfedgeError(f"cannot read predictions ({e})", path=f) from None


def _versions() -> dict:
    import sklearn

    v = {"python": sys.version.split()[0], "numpy": np.__version__, "sklearn": sklearn.__version__,
         "platform": platform.platform()}
    from rfedge import __version__

    v["rfedge"] = __version__
    if "tensorflow" in sys.modules:
        import keras
        import tensorflow as tf

        v["tensorflow"], v["keras"] = tf.__version__, keras.__version__
    return v


def _commit(stage: Path, out: Path, model_file: str) -> None:
    """Move staged files into ``out``: metrics.json goes first out and last in, so an interrupted
    commit never leaves a metrics.json describing some other model."""
    (out / "metrics.json").unlink(missing_ok=True)
    for stale in MODEL_FILES.values():
        if stale != model_file:
            (out / stale).unlink(missing_ok=True)
    names = sorted(p.name for p in stage.iterdir() if p.name != "metrics.json") + ["metrics.json"]
    for name in names:
        os.replace(stage / name, out / name)


def train(data_dir, out_dir, *, model: str = "student", split: str = "in-session", fold=0, seed: int = 0,
          epochs: int | None = None, patience: int | None = None, feature_cfg=None, quick: bool = False,
          stream=None, features: FeatureStore | None = None, max_train: int | None = None,
          max_test: int | None = None) -> dict:
    """Train ``model`` (student | student-tcn | cnn | svm) on one fold and write the run directory.

    ``quick`` trains a few epochs and times fewer windows: for tests and smoke runs. ``features``
    is a FeatureStore of this dataset to take X and the activity statistics from (shared across
    runs); ``max_train`` / ``max_test`` cap the fold's training and test sides (stratified,
    seeded subsets; smoke runs). Progress goes to ``stream`` (stderr). Returns the metrics.json
    content.
    """
    stream = stream or sys.stderr
    if model not in MODEL_KINDS:
        raise RfedgeError(f"unknown model {model!r}; choose one of {', '.join(MODEL_KINDS)}")
    recipe = RECIPES.get(model, RECIPES["student"])
    epochs = int(epochs if epochs is not None else (QUICK_EPOCHS if quick else recipe.epochs))
    patience = int(patience if patience is not None else (QUICK_PATIENCE if quick else recipe.patience))
    if epochs < 1 or patience < 1:
        raise RfedgeError(f"epochs and patience must be >= 1 (got {epochs}, {patience})")
    t_start = time.monotonic()

    ds = Dataset.open(data_dir)
    if ds.kind != "csi":
        raise RfedgeError(f"training needs a CSI dataset, this one is {ds.kind!r}", path=data_dir)
    fold_index, f, fit_ids, val_ids, test_ids = fold_trials(ds, split, fold, seed, max_train, max_test)
    labels = ds.labels
    stream.write(f"train {model}: split {split} fold {f['name']}, {len(fit_ids)} train / {len(val_ids)} "
                 f"validation / {len(test_ids)} test trials, seed {seed}\n")

    if isinstance(feature_cfg, dict):
        cfg = FeatureConfig.from_dict(feature_cfg)
    else:
        cfg = dataclasses.replace(feature_cfg) if feature_cfg is not None else FeatureConfig()
    _, X_fit, X_val, X_test = fold_features(ds, features, cfg, fit_ids, val_ids, test_ids, "train", stream)
    y_fit, y_val, y_test = labels[fit_ids], labels[val_ids], labels[test_ids]
    normalizer = Normalizer.fit(X_fit)
    n_classes = len(ds.label_names)
    np.random.seed(seed)

    extra: dict = {}
    proba = None
    t_fit = time.monotonic()
    if model == "svm":
        from rfedge.models.baselines import SvmBaseline

        clf = SvmBaseline().fit(X_fit, y_fit, X_val, y_val)
        y_pred = clf.predict(X_test)
        n_params, macs = clf.count_params(), clf.count_macs()
        extra = {"epochs_run": 0, "best_epoch": None, "val_accuracy": clf.params["val_accuracy"],
                 "svm": {"chosen": clf.params, "grid": clf.grid},
                 "model_input": "raw log-power features [C, F, T]; the SVM pipeline standardizes its own "
                                "hand-crafted features (normalizer.json is not applied)"}
        predict = clf.predict
        model_file = MODEL_FILES["svm"]
    else:
        from rfedge.models.macs import count_macs
        from rfedge.models.student import to_model_input

        configure_tf_threads()
        net, extra = _fit_keras(model, normalizer(X_fit), y_fit, normalizer(X_val), y_val, n_classes,
                                seed=seed, epochs=epochs, patience=patience, stream=stream)
        proba = net.predict(to_model_input(normalizer(X_test)), batch_size=256, verbose=0).astype(np.float32)
        y_pred = proba.argmax(axis=1)
        n_params, macs = int(net.count_params()), count_macs(net)["total"]
        extra["model_input"] = "normalizer(features [C, F, T]) transposed to [T, F, C] (to_model_input)"
        predict = _keras_predictor(net, normalizer)
        model_file = MODEL_FILES["keras"]
    fit_seconds = time.monotonic() - t_fit

    latency = measure_latency_ms(ds, test_ids[:8], cfg, predict, repeats=10 if quick else 50)
    report = classification_report(y_test, y_pred, ds.label_names)
    metrics = {
        "model": model,
        **{k: report[k] for k in ("accuracy", "macro_f1")},
        "parameters": int(n_params),
        "macs": int(macs),
        "host_latency_ms_per_window": latency,
        **{k: report[k] for k in ("per_class", "confusion_matrix", "label_names")},
        "split": split,
        "fold": f["name"],
        "fold_index": fold_index,
        "seed": int(seed),
        "data_dir": str(Path(data_dir).resolve()),
        "data_sha256": ds.manifest.get("data_sha256"),
        "n_train": len(fit_ids),
        "n_val": len(val_ids),
        "n_test": len(test_ids),
        "val_fraction": VAL_FRACTION,
        "max_train": max_train,
        "max_test": max_test,
        "predictions_file": PREDICTIONS_FILE,
        "feature_shape": list(cfg.shape),
        "epochs": epochs,
        "patience": patience,
        **extra,
        "fit_seconds": fit_seconds,
        "total_seconds": None,
        "versions": _versions(),
    }

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".train.", suffix=".tmp", dir=out))
    try:
        if model == "svm":
            clf.save(stage / model_file)
        else:
            with warnings.catch_warnings():
                # Keras' saver trips numpy 2's __array__(copy=) deprecation on every variable.
                warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy",
                                        category=DeprecationWarning)
                net.save(stage / model_file)
        atomic_write_json(stage / "features.json", cfg.to_dict())
        atomic_write_json(stage / "normalizer.json", normalizer.to_dict())
        save_predictions(stage / PREDICTIONS_FILE, test_ids, y_test, y_pred, proba)
        save_confusion_png(report["confusion_matrix"], ds.label_names, stage / "confusion.png",
                           title=f"{model} — {split} / {f['name']}: acc {report['accuracy']:.3f}, "
                                 f"macro-F1 {report['macro_f1']:.3f}")
        metrics["total_seconds"] = time.monotonic() - t_start
        atomic_write_json(stage / "metrics.json", metrics)
        _commit(stage, out, model_file)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    stream.write(f"train {model}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
                 f"in {metrics['total_seconds']:.1f} s\n")
    return metrics
