"""CSI-text alignment with mirror consistency (paper 001 §IV-B.2, "Stage 2-2") and caption
retrieval as one int8 model for the board.

Model. The student's trunk (rfedge.models.student.build_student up to its dropout, i.e. the
DS-CNN front-end and the GRU's last state h_T) and a linear projection ``proj`` to the
384-d space of the committed text embeddings (rfedge.semantics, all-MiniLM-L6-v2). The loss sees
c = proj(h) / |proj(h)|.

Loss, per batch of N windows with labels y, one caption t_i drawn per window per step (uniformly
from its class's captions) and its mirror image t~_i (left/right words swapped; the committed
embedding of ``mirror_caption(caption)``):

* symmetric InfoNCE (paper eq. 2) on s_ij = c_i . t_j / tau. The paper's pairs are all distinct;
  here 13 classes meet batches of 64, so a batch holds ~5 windows per class and eq. 2 would push
  a window away from the captions of its own class drawn for the other windows. So the target of
  row i is uniform over {j : y_j = y_i} (and the same for the text-to-CSI direction); with all
  classes distinct in the batch this is exactly eq. 2 (``info_nce(..., y=None)`` is eq. 2 as
  written). tau is fixed (DEFAULT_TAU = 0.07, CLIP's initial value), not learned: with a few
  hundred windows a learned temperature is one more thing to overfit, and fixing it keeps runs
  comparable between the with- and without-mirror settings.
* mirror-consistency hinge (paper eq. 7, text-only): max(0, m - cos(c_i, t_i) + cos(c_i, t~_i)),
  averaged over the windows whose class has a distinct mirror partner (the dataset's
  config.label_mirror; without it, a class whose captions change under mirroring); a class that
  is its own mirror (the clap) has t~ = t and a constant hinge m, which is skipped.
  Margin: m = DEFAULT_MARGIN = 0.05. The committed embeddings put a caption and its mirror at
  cosine ~0.99 (|t - t~| between 0.09 and 0.15 on esp32-mirror), so cos(c,t) - cos(c,t~) =
  c . (t - t~) <= |t - t~| < 0.15: a margin of 0.2 or more could never be met; 0.05 can.
  lambda = DEFAULT_LAMBDA = 1 (not tuned: on the 624-trial development set, in-session,
  lambda 1 and 10 and margin 0.05 and 0.1 moved validation top-1 by less than its noise; the
  hinge's gradient, t~ - t, is ~10x smaller than InfoNCE's at tau 0.07, which is why a larger
  lambda is offered to ``evaluate_alignment``).

Training: Adam, warm-up then cosine decay (peak 3e-3), batch 64, the classification recipe's
augmentation without mixup, early stopping on validation top-1 retrieval (patience 15 of at most
60 epochs), the best epoch's weights kept. BatchNorm momentum 0.9 instead of Keras' 0.99 (see
``build_embedder``).

Retrieval. A window retrieves the caption of the table (every caption of every class, class
after class) with the highest cosine to c. On the board this is the model itself:
trunk -> proj -> Dense ``retrieve`` whose kernel is the caption table (unit-norm rows, no bias,
frozen) -> per-class max over each class's captions (Reshape + MAX_POOL_2D) -> one score per
class. Two facts make it deployable unchanged through ``rfedge codegen`` / ``rfedge validate``:

* no normalization on the device: retrieve(p)_k = p . t_k = |p| cos(p, t_k), and |p| > 0 is one
  positive factor for all k, so the argmax (the retrieved caption) is that of the cosines
  (codegen has no L2_NORMALIZATION kernel, and none is needed);
* the per-class max makes the output a gesture class: the argmax of the class scores is the class
  of the argmax caption, exactly, ties included (both argmaxes take the first maximum, and the
  table is ordered class by class). So validate's accuracy (device argmax vs the dataset's
  labels) is top-1 caption-retrieval accuracy (retrieved caption's class == true class).

The caption itself (for BLEU / ROUGE-L) is read on the host from the ``retrieve`` layer.
Mirrored captions as extra distractors: for a vocabulary whose left-hand classes are the mirror
images of the right-hand ones (rfedge.semantics builds them so) every mirrored caption already is
a caption of the partner class; ``caption_table(..., distractors=True)`` adds only mirrored
captions not in the table (none on esp32-mirror), as rows of no class (host retrieval only).
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from rfedge.errors import RfedgeError

DEFAULT_TAU = 0.07
DEFAULT_MARGIN = 0.05
DEFAULT_LAMBDA = 1.0
EMBED_DIM = 384
MODEL_NAME = "align-student"
CAPTIONS_FILE = "captions.json"
QUICK_EPOCHS = 12
DEFAULT_EPOCHS = 60
DEFAULT_PATIENCE = 15


# ---- losses (TensorFlow; they accept numpy arrays too) ----------------------------------------------

def l2_normalize(x, eps: float = 1e-12):
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    return x / tf.maximum(tf.norm(x, axis=-1, keepdims=True), eps)


def info_nce(c, t, y=None, tau: float = DEFAULT_TAU):
    """Symmetric InfoNCE between unit-norm CSI embeddings c [N, D] and text embeddings t [N, D]:
    s = c t^T / tau; y None: paper eq. 2 (positives on the diagonal); y [N] labels: the target of
    each row is uniform over the same-label columns (see the module docstring)."""
    import tensorflow as tf

    c = tf.convert_to_tensor(c, tf.float32)
    t = tf.convert_to_tensor(t, tf.float32)
    s = tf.matmul(c, t, transpose_b=True) / tau
    if y is None:
        target = tf.eye(tf.shape(s)[0])
    else:
        y = tf.convert_to_tensor(y)
        same = tf.cast(tf.equal(y[:, None], y[None, :]), tf.float32)
        target = same / tf.reduce_sum(same, axis=1, keepdims=True)
    # target is symmetric up to the row normalization, which is the same for row i and column i
    l_vt = -tf.reduce_mean(tf.reduce_sum(target * tf.nn.log_softmax(s, axis=1), axis=1))
    l_tv = -tf.reduce_mean(tf.reduce_sum(tf.transpose(target) * tf.nn.log_softmax(tf.transpose(s), axis=1), axis=1))
    return 0.5 * (l_vt + l_tv)


def mirror_hinge(c, t, t_mir, has_mirror, margin: float = DEFAULT_MARGIN):
    """Mean over windows with a mirror partner of max(0, m - cos(c, t) + cos(c, t~)) (paper eq. 7);
    c, t, t~ unit norm [N, D]; has_mirror [N] bool. 0 when no window has a partner."""
    import tensorflow as tf

    c = tf.convert_to_tensor(c, tf.float32)
    h = tf.nn.relu(margin - tf.reduce_sum(c * tf.convert_to_tensor(t, tf.float32), -1)
                   + tf.reduce_sum(c * tf.convert_to_tensor(t_mir, tf.float32), -1))
    w = tf.cast(tf.convert_to_tensor(has_mirror), tf.float32)
    return tf.reduce_sum(h * w) / tf.maximum(tf.reduce_sum(w), 1.0)


# ---- semantics of a dataset ---------------------------------------------------------------------------

@dataclasses.dataclass
class CaptionTable:
    """Rows of the retrieval table: unit-norm embeddings, their texts and classes (-1: a distractor)."""

    texts: list[str]
    classes: np.ndarray          # int64 [K]
    vectors: np.ndarray          # float32 [K, D]
    per_class: int               # rows per class group in the deployable model (padded by repeats)

    def to_dict(self) -> dict:
        return {"texts": self.texts, "classes": self.classes.tolist(), "per_class": self.per_class}


def mirror_partners(ds) -> np.ndarray:
    """Per class, its mirror partner's index (itself when it has none) from config.label_mirror;
    without it, from the captions: the class whose captions are this one's mirror images."""
    from rfedge.semantics import class_texts

    names = ds.label_names
    lm = (ds.manifest.get("config") or {}).get("label_mirror")
    if lm is not None:
        lm = np.asarray(lm, np.int64)
        if lm.shape != (len(names),) or lm.min() < 0 or lm.max() >= len(names):
            raise RfedgeError(f"config.label_mirror must list one class index per class ({len(names)})",
                              path=Path(ds.path) / "manifest.json" if getattr(ds, "path", None) else None,
                              field="config.label_mirror")
        return lm
    cts = class_texts(names)
    by_caps = {ct.captions: i for i, ct in enumerate(cts)}
    return np.asarray([by_caps.get(ct.mirrored_captions, i) for i, ct in enumerate(cts)], np.int64)


def class_caption_embeddings(names, emb=None):
    """(captions [G][n, D], mirrored captions [G][n, D], caption texts [G][n]) of the classes."""
    from rfedge.semantics import class_texts, load_embeddings

    emb = emb or load_embeddings()
    return emb.captions(names), emb.captions(names, mirrored=True), [list(ct.captions) for ct in class_texts(names)]


def caption_table(names, emb=None, distractors: bool = False) -> CaptionTable:
    """All captions of all classes, class after class; with ``distractors`` the mirrored captions
    that are not already in the table follow as rows of class -1."""
    from rfedge.semantics import class_texts, load_embeddings

    emb = emb or load_embeddings()
    texts, classes, vecs = [], [], []
    cts = class_texts(names)
    per = max(len(ct.captions) for ct in cts)
    for g, ct in enumerate(cts):
        caps = list(ct.captions)
        texts += caps
        classes += [g] * len(caps)
        vecs += [emb.vector(c, ct.name) for c in caps]
    if distractors:
        seen = set(texts)
        for ct in cts:
            for m in ct.mirrored_captions:
                if m not in seen:
                    seen.add(m)
                    texts.append(m)
                    classes.append(-1)
                    vecs.append(emb.vector(m, ct.name))
    return CaptionTable(texts, np.asarray(classes, np.int64), np.stack(vecs).astype(np.float32), per)


def retrieve(embeddings: np.ndarray, table: CaptionTable) -> np.ndarray:
    """Index of the table row with the highest cosine to each embedding [N, D] (first on ties)."""
    e = np.asarray(embeddings, np.float32)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return np.argmax(e @ table.vectors.T, axis=1)


# ---- models --------------------------------------------------------------------------------------------

def build_embedder(input_shape, n_classes: int, *, variant: str = "gru", dim: int = EMBED_DIM, bn_momentum: float = 0.9,
                   **student_kw):
    """trunk (the student up to its dropout) -> Dense ``proj`` (dim); the output is unnormalized."""
    import keras

    from rfedge.models.student import build_student

    s = build_student(input_shape, n_classes, variant=variant, **student_kw)
    trunk_out = s.get_layer("dropout").output if any(l.name == "dropout" for l in s.layers) else s.layers[-2].output
    p = keras.layers.Dense(dim, name="proj")(trunk_out)
    model = keras.Model(s.inputs[0], p, name=f"align_{variant}")
    # BatchNorm's moving statistics with Keras' default momentum 0.99 lag by ~100 steps; the
    # alignment sees 5-20 steps per epoch on these datasets, so validation (moving statistics)
    # trailed training (batch statistics) for most of a run (measured on the 624-trial dev set:
    # validation retrieval at chance for 50 epochs while the training loss fell). 0.9 tracks
    # within ~10 steps. Only this instance's layers change; the student's builder is untouched.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    return model


def build_retrieval_model(embedder, table: CaptionTable):
    """embedder -> Dense ``retrieve`` (kernel = caption table^T, no bias, frozen) -> per-class max
    -> [batch, n_classes] class scores (see the module docstring). Distractor rows are refused:
    they belong to no class group."""
    import keras
    from keras import layers

    if (table.classes < 0).any():
        raise RfedgeError("the deployable retrieval model takes class captions only (no distractor rows)")
    G = int(table.classes.max()) + 1
    per = table.per_class
    rows = []
    for g in range(G):
        idx = np.flatnonzero(table.classes == g)
        if not len(idx):
            raise RfedgeError(f"class {g} has no caption in the table")
        # pad short classes by repeating their first caption: a repeat never changes the max
        rows += list(idx) + [idx[0]] * (per - len(idx))
    kernel = table.vectors[np.asarray(rows)].T.astype(np.float32)        # [D, G * per]
    p = embedder.outputs[0]
    dense = layers.Dense(kernel.shape[1], use_bias=False, trainable=False, name="retrieve")
    s = dense(p)
    dense.set_weights([kernel])
    s = layers.Reshape((G, per, 1), name="by_class")(s)
    s = layers.MaxPooling2D((1, per), name="class_max")(s)
    s = layers.Flatten(name="class_scores")(s)
    model = keras.Model(embedder.inputs[0], s, name=MODEL_NAME)
    return model


def retrieval_rows(table: CaptionTable) -> np.ndarray:
    """Table row of each ``retrieve`` output unit (the padding layout of build_retrieval_model)."""
    rows = []
    for g in range(int(table.classes.max()) + 1):
        idx = np.flatnonzero(table.classes == g)
        rows += list(idx) + [idx[0]] * (table.per_class - len(idx))
    return np.asarray(rows)


def embedder_of(retrieval_model):
    import keras

    return keras.Model(retrieval_model.inputs[0], retrieval_model.get_layer("proj").output)


# ---- training --------------------------------------------------------------------------------------------

def _fit(X_fit, y_fit, X_val, y_val, caps, mcaps, has_mirror, table, *, mirror: bool, seed: int, epochs: int,
         patience: int, tau: float, margin: float, lam: float, batch_size: int, lr: float, stream):
    """Custom loop: a caption drawn per window per step; early stopping on validation top-1
    retrieval accuracy (ties: the lower validation retrieval loss); the best epoch's weights kept."""
    import keras
    import tensorflow as tf

    from rfedge.models.student import to_model_input
    from rfedge.train import Recipe, augment

    keras.utils.set_random_seed(seed)
    model = build_embedder(X_fit.shape[1:], len(caps))
    A_fit, A_val = to_model_input(X_fit), to_model_input(X_val)
    n_cap = np.asarray([len(c) for c in caps])
    CAP = np.zeros((len(caps), n_cap.max(), caps[0].shape[1]), np.float32)
    MCAP = np.zeros_like(CAP)
    for g in range(len(caps)):
        CAP[g, :n_cap[g]], MCAP[g, :n_cap[g]] = caps[g], mcaps[g]
    steps = -(-len(A_fit) // batch_size)
    warm = min(3, max(epochs - 1, 0)) * steps
    sched = keras.optimizers.schedules.CosineDecay(0.0 if warm else lr, max(epochs * steps - warm, 1), alpha=0.01,
                                                   warmup_target=lr if warm else None, warmup_steps=warm)
    opt = keras.optimizers.Adam(sched)
    # Augmentation as the classification recipe (time shift, gains) but no mixup: a mixed window
    # has no single caption to be aligned with.
    recipe = Recipe(mixup=0.0)
    lam_eff = float(lam) if mirror else 0.0

    @tf.function(reduce_retracing=True)
    def step(a, y, t, tm, hm):
        with tf.GradientTape() as tape:
            c = l2_normalize(model(a, training=True))
            l_con = info_nce(c, t, y, tau)
            l_mc = mirror_hinge(c, t, tm, hm, margin)
            loss = l_con + lam_eff * l_mc
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return l_con, l_mc

    T = table.vectors
    val_cls = table.classes

    def val_scores():
        e = np.asarray(model.predict(A_val, batch_size=256, verbose=0))
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        s = e @ T.T
        acc = float((val_cls[s.argmax(1)] == y_val).mean())
        # retrieval loss: -log of the softmax(s / tau) mass on the true class's captions
        z = s / tau
        z = z - z.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        loss = float(-np.mean(np.log(np.maximum((p * (val_cls[None] == y_val[:, None])).sum(1), 1e-12))))
        return acc, loss

    best, best_w, best_epoch, wait = None, None, 0, 0
    hist = {"loss_con": [], "loss_mc": [], "val_accuracy": [], "val_loss": []}
    for ep in range(epochs):
        t0 = time.monotonic()
        rng = np.random.default_rng([int(seed), 7, ep])
        order = rng.permutation(len(A_fit))
        A, _ = augment(A_fit[order], np.zeros((len(order), 1), np.float32), rng, recipe)
        y = y_fit[order]
        j = (rng.uniform(0, 1, len(y)) * n_cap[y]).astype(np.int64)     # one caption per window
        t, tm, hm = CAP[y, j], MCAP[y, j], has_mirror[y]
        lc, lm = [], []
        for b in range(0, len(A), batch_size):
            sl = slice(b, b + batch_size)
            if len(y[sl]) < 2:       # a lone window has no negative
                continue
            a_, b_ = step(A[sl], y[sl], t[sl], tm[sl], hm[sl])
            lc.append(float(a_))
            lm.append(float(b_))
        acc, vloss = val_scores()
        for k, v in (("loss_con", np.mean(lc)), ("loss_mc", np.mean(lm)), ("val_accuracy", acc), ("val_loss", vloss)):
            hist[k].append(float(v))
        stream.write(f"epoch {ep + 1}/{epochs}: InfoNCE {np.mean(lc):.4f} mirror hinge {np.mean(lm):.4f} "
                     f"val retrieval acc {acc:.3f} val loss {vloss:.4f} ({time.monotonic() - t0:.1f} s)\n")
        key = (acc, -vloss)
        if best is None or key > best:
            best, best_w, best_epoch, wait = key, model.get_weights(), ep + 1, 0
        else:
            wait += 1
            if wait >= patience:
                stream.write(f"early stop after epoch {ep + 1}; weights of epoch {best_epoch} restored\n")
                break
    model.set_weights(best_w)
    info = {"epochs_run": len(hist["val_loss"]), "best_epoch": best_epoch, "val_accuracy": best[0],
            "history": hist, "batch_size": batch_size, "learning_rate": lr,
            "augmentation": {k: v for k, v in dataclasses.asdict(recipe).items()
                             if k in ("time_shift", "time_stretch", "gain", "channel_gain", "mixup")}}
    return model, info


def score_retrieval(caption_rows_idx: np.ndarray, y_true: np.ndarray, table: CaptionTable, partners: np.ndarray,
                    class_captions: list[list[str]]) -> dict:
    """Top-1 accuracy, BLEU-4 / ROUGE-L of the retrieved captions against the true class's
    captions, and the left/right confusion rate: among windows of classes with a distinct mirror
    partner, the fraction whose retrieved class is that partner (a self-mirrored class, the clap,
    cannot be confused with its mirror and is left out of the denominator)."""
    from rfedge.caption_metrics import corpus_bleu, corpus_rouge_l

    y_true = np.asarray(y_true, np.int64)
    y_ret = table.classes[np.asarray(caption_rows_idx)]
    hyps = [table.texts[int(k)] for k in caption_rows_idx]
    refs = [class_captions[int(g)] for g in y_true]
    sided = partners[y_true] != y_true
    conf = (y_ret == partners[y_true]) & sided
    # motion right, hand possibly wrong: separates "which gesture" from "which hand"
    motion = (y_ret == y_true) | (y_ret == partners[y_true])
    return {"top1_accuracy": float((y_ret == y_true).mean()) if len(y_true) else 0.0,
            "motion_accuracy": float(motion.mean()) if len(y_true) else 0.0,
            "bleu4": corpus_bleu(hyps, refs), "rouge_l": corpus_rouge_l(hyps, refs),
            "lr_confusion_rate": float(conf.sum() / max(sided.sum(), 1)),
            "lr_confusion_windows": int(conf.sum()), "sided_windows": int(sided.sum()),
            "n": int(len(y_true))}


def train_alignment(data_dir, out_run, *, split: str = "in-session", fold=0, mirror: bool = True, seed: int = 0,
                    epochs: int | None = None, patience: int | None = None, quick: bool = False,
                    tau: float = DEFAULT_TAU, margin: float = DEFAULT_MARGIN, lam: float = DEFAULT_LAMBDA,
                    batch_size: int = 64, learning_rate: float = 3e-3, calibration: int = 300,
                    int8: bool = True, stream=None, features=None, max_train: int | None = None,
                    feature_cfg=None) -> dict:
    """Train the alignment on one fold and write a run directory ``out_run``:

    ``model.keras`` (the deployable retrieval model, class scores out), ``student_int8.tflite``
    (its full-int8 conversion, what ``rfedge codegen`` / ``rfedge validate`` read; skipped with
    ``int8=False``), ``features.json``, ``normalizer.json``, ``captions.json`` (the table),
    ``predictions.npz`` (test_ids, y_true, y_pred = class of the retrieved caption, proba = the
    float class scores, caption = retrieved table row) and ``metrics.json`` (written last).
    ``accuracy`` in metrics.json is top-1 caption-retrieval accuracy. The test side is the
    fold's whole test side (validate scores exactly those trials).
    """
    from rfedge.data.dataset import Dataset
    from rfedge.dsp import Normalizer
    from rfedge.features import config_for
    from rfedge.fileio import atomic_write_json
    from rfedge.models.student import to_model_input
    from rfedge.semantics import load_embeddings
    from rfedge.train import (PREDICTIONS_FILE, _versions, configure_tf_threads, fold_features,
                              fold_trials)

    stream = stream or sys.stderr
    epochs = int(epochs if epochs is not None else (QUICK_EPOCHS if quick else DEFAULT_EPOCHS))
    patience = int(patience if patience is not None else (max(epochs // 2, 3) if quick else DEFAULT_PATIENCE))
    if epochs < 1 or patience < 1:
        raise RfedgeError(f"epochs and patience must be >= 1 (got {epochs}, {patience})")
    if tau <= 0 or margin < 0 or lam < 0:
        raise RfedgeError(f"need tau > 0, margin >= 0, lambda >= 0 (got {tau}, {margin}, {lam})")
    t_start = time.monotonic()
    ds = Dataset.open(data_dir)
    if ds.kind != "csi":
        raise RfedgeError(f"the alignment needs a CSI dataset, this one is {ds.kind!r}", path=data_dir)
    names = ds.label_names
    emb = load_embeddings()
    caps, mcaps, cap_texts = class_caption_embeddings(names, emb)      # unknown classes raise here
    table = caption_table(names, emb)
    partners = mirror_partners(ds)
    has_mirror = partners != np.arange(len(names))
    fold_index, f, fit_ids, val_ids, test_ids = fold_trials(ds, split, fold, seed, max_train)
    labels = ds.labels
    stream.write(f"align ({'with' if mirror else 'without'} mirror consistency): split {split} fold {f['name']}, "
                 f"{len(fit_ids)} train / {len(val_ids)} validation / {len(test_ids)} test trials, seed {seed}\n")
    cfg = config_for(ds) if feature_cfg is None else dataclasses.replace(feature_cfg)
    store, X_fit, X_val, X_test = fold_features(ds, features, cfg, fit_ids, val_ids, test_ids, "train_alignment",
                                                stream)
    y_fit, y_val, y_test = labels[fit_ids], labels[val_ids], labels[test_ids]
    norm = Normalizer.fit(X_fit)

    configure_tf_threads()
    t_fit = time.monotonic()
    embedder, info = _fit(norm(X_fit), y_fit, norm(X_val), y_val, caps, mcaps, has_mirror, table, mirror=mirror,
                          seed=seed, epochs=epochs, patience=patience, tau=tau, margin=margin, lam=lam,
                          batch_size=batch_size, lr=learning_rate, stream=stream)
    fit_seconds = time.monotonic() - t_fit
    model = build_retrieval_model(embedder, table)
    A_test = to_model_input(norm(X_test))
    E = np.asarray(embedder.predict(A_test, batch_size=256, verbose=0))
    rows = retrieve(E, table)
    scores = np.asarray(model.predict(A_test, batch_size=256, verbose=0), np.float32)
    y_pred = scores.argmax(1)
    # the deployable model's class argmax is the retrieved caption's class (module docstring)
    model_agrees = float((y_pred == table.classes[rows]).mean())
    result = score_retrieval(rows, y_test, table, partners, cap_texts)

    out = Path(out_run)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".align.", suffix=".tmp", dir=out))
    int8_info = None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy",
                                    category=DeprecationWarning)
            model.save(stage / "model.keras")
        if int8:
            int8_info, tfl = _int8(model, norm, store, cfg, fit_ids, labels, seed, calibration, A_test, y_test,
                                   y_pred, stream)
            (stage / "student_int8.tflite").write_bytes(tfl)
        atomic_write_json(stage / "features.json", cfg.to_dict())
        atomic_write_json(stage / "normalizer.json", norm.to_dict())
        atomic_write_json(stage / CAPTIONS_FILE, table.to_dict())
        buf = io.BytesIO()
        np.savez(buf, test_ids=np.asarray(test_ids, np.int64), y_true=y_test.astype(np.int64),
                 y_pred=y_pred.astype(np.int64), proba=scores, caption=rows.astype(np.int64))
        (stage / PREDICTIONS_FILE).write_bytes(buf.getvalue())
        metrics = {
            "model": MODEL_NAME, "task": "caption retrieval (paper 001 Stage 2-2)",
            "mirror_consistency": bool(mirror),
            "accuracy": result["top1_accuracy"],
            "accuracy_means": "top-1 caption retrieval: class of the retrieved caption == true class",
            **result,
            "float_model_class_argmax_equals_retrieval": model_agrees,
            "int8": int8_info,
            "tau": tau, "tau_learned": False, "margin": margin, "lambda": lam if mirror else 0.0,
            "caption_table": {"rows": len(table.texts), "per_class": table.per_class, "file": CAPTIONS_FILE,
                              "text_model": emb.model},
            "mirror_partners": partners.tolist(),
            "label_names": names,
            "parameters": int(model.count_params()),
            "split": split, "fold": f["name"], "fold_index": fold_index, "seed": int(seed),
            "data_dir": str(Path(data_dir).resolve()), "data_sha256": ds.manifest.get("data_sha256"),
            "n_train": len(fit_ids), "n_val": len(val_ids), "n_test": len(test_ids), "max_train": max_train,
            "max_test": None, "predictions_file": PREDICTIONS_FILE, "feature_shape": list(cfg.shape),
            "epochs": epochs, "patience": patience, **info,
            "model_input": "normalizer(features [C, F, T]) transposed to [T, F, C] (to_model_input)",
            "fit_seconds": fit_seconds, "total_seconds": time.monotonic() - t_start, "versions": _versions(),
        }
        atomic_write_json(stage / "metrics.json", metrics)
        (out / "metrics.json").unlink(missing_ok=True)
        for p in sorted(stage.iterdir(), key=lambda p: p.name == "metrics.json"):
            shutil.move(str(p), str(out / p.name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    stream.write(f"align: top-1 retrieval {result['top1_accuracy']:.4f}, BLEU-4 {result['bleu4']:.4f}, "
                 f"ROUGE-L {result['rouge_l']:.4f}, L/R confusion {result['lr_confusion_rate']:.4f}"
                 + (f"; int8 top-1 {int8_info['top1_accuracy']:.4f}" if int8_info else "") + "\n")
    return metrics


def _int8(model, norm, store, cfg, fit_ids, labels, seed, calibration, A_test, y_test, y_float, stream):
    """Full-int8 conversion (rfedge.quant.to_int8_tflite) calibrated on training-side windows, and
    its test scores under TFLite Micro's reference kernels (the device's arithmetic)."""
    from rfedge.codegen import quantize_inputs
    from rfedge.models.student import to_model_input
    from rfedge.quant import non_int8_tensors, to_int8_tflite
    from rfedge.quantize import dequantize, io_quantization, tflm_outputs
    from rfedge.train import cap_ids

    cal_ids = cap_ids(fit_ids, labels, int(calibration), seed)
    X_cal = to_model_input(norm(store.features(cal_ids, cfg, desc="features (calibration)")))
    tfl = to_int8_tflite(model, X_cal, max_calibration=len(X_cal))
    io_q = io_quantization(tfl)
    q = tflm_outputs(tfl, quantize_inputs(A_test, io_q["input"]["scale"], io_q["input"]["zero_point"]), stream=None)
    y_q = dequantize(q, io_q["output"]["scale"], io_q["output"]["zero_point"]).argmax(1)
    return {"top1_accuracy": float((y_q == y_test).mean()), "argmax_agreement_with_float": float((y_q == y_float).mean()),
            "non_int8_tensors": len(non_int8_tensors(tfl)), "tflite_bytes": len(tfl), "calibration_windows": len(cal_ids),
            "runtime": "TensorFlow Lite Micro reference kernels", "y_pred": y_q.tolist(), **io_q}, tfl


# ---- evaluation: with and without mirror consistency -------------------------------------------------

def evaluate_alignment(data_dir, out, *, quick: bool = False, split: str = "in-session", fold=0, seeds=(0,),
                       epochs: int | None = None, lambdas=(DEFAULT_LAMBDA,), int8: bool = True,
                       max_train: int | None = None, stream=None) -> dict:
    """Train with and without the mirror-consistency hinge (same seeds, split and fold; one
    "with" row per weight in ``lambdas``) and write ``out/results.json`` and ``out/results.md``;
    the runs go to ``out/runs/<setting>_s<seed>``. ``int8=False`` skips the int8 conversion and its
    columns; ``max_train`` caps the training side (stratified; smoke runs)."""
    from rfedge.data.dataset import Dataset
    from rfedge.featcache import FeatureStore
    from rfedge.fileio import atomic_write_json, atomic_write_text

    stream = stream or sys.stderr
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = Dataset.open(data_dir)
    store = FeatureStore(ds, stream=stream)
    rows = {}
    keys = ("top1_accuracy", "motion_accuracy", "bleu4", "rouge_l", "lr_confusion_rate")
    lambdas = [float(v) for v in lambdas]
    settings = [("without_mirror", False, 0.0)] + [
        ("with_mirror" if len(lambdas) == 1 else f"with_mirror_lambda_{v:g}", True, v) for v in lambdas]
    for setting, mirror, lam in settings:
        runs = []
        for seed in seeds:
            run_dir = out / "runs" / f"{setting}_s{seed}"
            m = _finished_run(run_dir, ds, split=split, fold=fold, seed=int(seed), mirror=mirror, lam=lam,
                              epochs=epochs, quick=quick, int8=int8, max_train=max_train)
            if m is not None:
                stream.write(f"align: {run_dir} is complete; rescored from its predictions, not retrained\n")
                runs.append(m)
                continue
            m = train_alignment(data_dir, out / "runs" / f"{setting}_s{seed}", split=split, fold=fold, mirror=mirror,
                                seed=int(seed), epochs=epochs, quick=quick, stream=stream, features=store,
                                lam=lam, int8=int8, max_train=max_train)
            runs.append(m)
        agg = {k: float(np.mean([r[k] for r in runs])) for k in keys}
        agg["int8_top1_accuracy"] = float(np.mean([r["int8"]["top1_accuracy"] for r in runs])) if int8 else None
        agg["int8_float_agreement"] = (float(np.mean([r["int8"]["argmax_agreement_with_float"] for r in runs]))
                                       if int8 else None)
        if len(runs) > 1:
            agg["std"] = {k: float(np.std([r[k] for r in runs])) for k in keys}
        agg["runs"] = [{"seed": r["seed"], **{k: r[k] for k in keys}, "int8_top1_accuracy": r["int8"]["top1_accuracy"] if int8 else None,
                        "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"]} for r in runs]
        agg["lambda"] = lam
        rows[setting] = agg
    first = runs[0]
    res = {"protocol": "paper001-stage2", "data_dir": str(Path(data_dir).resolve()),
           "data_sha256": ds.manifest.get("data_sha256"), "n_trials": len(ds.labels), "split": split,
           "fold": first["fold"], "n_train": first["n_train"], "n_val": first["n_val"], "n_test": first["n_test"],
           "seeds": [int(s) for s in seeds], "quick": bool(quick), "epochs": first["epochs"],
           "tau": first["tau"], "margin": first["margin"], "lambdas": lambdas,
           "caption_table_rows": first["caption_table"]["rows"],
           "chance_top1": 1.0 / len(ds.label_names), "results": rows,
           "metric_notes": {"bleu4": "corpus BLEU-4 (rfedge.caption_metrics), references = the true class's captions",
                            "rouge_l": "mean sentence ROUGE-L F, beta 1.2, best over the true class's captions",
                            "motion_accuracy": "retrieved class is the true class or its mirror partner",
                            "lr_confusion_rate": "among windows of classes with a distinct mirror partner, the "
                                                 "fraction retrieving a caption of that partner",
                            "int8": "deployable int8 model under TFLM reference kernels, class = argmax"}}
    atomic_write_json(out / "results.json", res)
    atomic_write_text(out / "results.md", format_results(res))
    return res


def _finished_run(run_dir: Path, ds, *, split, fold, seed, mirror, lam, epochs, quick, int8, max_train) -> dict | None:
    """The metrics of a complete run of exactly this setting (an interrupted evaluation resumes),
    its retrieval scores recomputed from predictions.npz and captions.json with the current
    scoring code; None when absent or of another setting."""
    from rfedge.train import select_fold

    mpath = run_dir / "metrics.json"
    if not mpath.is_file():
        return None
    try:
        m = json.loads(mpath.read_text())
        want_epochs = int(epochs if epochs is not None else (QUICK_EPOCHS if quick else DEFAULT_EPOCHS))
        same = (m.get("data_sha256") == ds.manifest.get("data_sha256") and m.get("split") == split
                and m.get("fold_index") == select_fold(ds, split, fold)[0] and m.get("seed") == seed
                and m.get("mirror_consistency") == mirror and float(m.get("lambda", -1)) == (lam if mirror else 0.0)
                and m.get("epochs") == want_epochs and m.get("max_train") == max_train
                and (m.get("int8") is not None) == bool(int8))
        if not same:
            return None
        with np.load(run_dir / "predictions.npz", allow_pickle=False) as z:
            rows, y_true = z["caption"], z["y_true"]
        tab = json.loads((run_dir / CAPTIONS_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from rfedge.semantics import class_texts

    names = ds.label_names
    table = CaptionTable(list(tab["texts"]), np.asarray(tab["classes"], np.int64),
                         np.zeros((len(tab["texts"]), 1), np.float32), int(tab["per_class"]))
    m.update(score_retrieval(rows, y_true, table, mirror_partners(ds), [list(ct.captions) for ct in class_texts(names)]))
    m["accuracy"] = m["top1_accuracy"]
    return m


def _f3(v) -> str:
    return "not run" if v is None else f"{v:.3f}"


def format_results(res: dict) -> str:
    n = len(res["seeds"])
    lines = [f"# CSI-text alignment (paper 001 Stage 2-2): caption retrieval, {res['split']} / {res['fold']}",
             "",
             f"Dataset {res['data_dir']} ({res['n_trials']} trials); {res['n_train']} train / {res['n_val']} "
             f"validation / {res['n_test']} test windows; seeds {res['seeds']}; epochs {res['epochs']}"
             f"{' (quick)' if res['quick'] else ''}; tau {res['tau']} (fixed), margin {res['margin']}; "
             f"{res['caption_table_rows']} captions in the table; chance top-1 "
             f"{res['chance_top1']:.3f}.",
             "",
             f"Means over {n} seed(s)" + (" (± std over seeds)." if n > 1 else "."),
             "",
             "| setting | lambda | top-1 retrieval | motion (either hand) | BLEU-4 | ROUGE-L | L/R confusion | "
             "int8 top-1 (TFLM) | int8 = float argmax |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(r, k):
        return f"{r[k]:.3f}" + (f" ± {r['std'][k]:.3f}" if "std" in r else "")

    for k, r in res["results"].items():
        lines.append(f"| {k.replace('_', ' ')} | {r['lambda']:g} | {cell(r, 'top1_accuracy')} | {cell(r, 'motion_accuracy')} | "
                     f"{cell(r, 'bleu4')} | "
                     f"{cell(r, 'rouge_l')} | {cell(r, 'lr_confusion_rate')} | {_f3(r['int8_top1_accuracy'])} | "
                     f"{_f3(r['int8_float_agreement'])} |")
    lines += ["", *(f"- {k}: {v}" for k, v in res["metric_notes"].items()), ""]
    return "\n".join(lines)
