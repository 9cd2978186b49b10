"""Classification metrics of paper 002 §4.5 in plain numpy, and the confusion-matrix plot.

Numpy rather than sklearn.metrics so the same code scores host, int8 and on-board predictions
without pulling sklearn into the validation path; tests check it against sklearn. A class with no
predictions (or no samples) gets precision (recall) 0 rather than NaN, as sklearn's
``zero_division=0`` does, so macro averages stay defined.
"""

from __future__ import annotations

import numpy as np


def _labels(y_true, y_pred, n_classes: int | None):
    yt = np.asarray(y_true, dtype=np.int64).ravel()
    yp = np.asarray(y_pred, dtype=np.int64).ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has {yt.size} labels, y_pred {yp.size}")
    if n_classes is None:
        n_classes = int(max(yt.max(initial=-1), yp.max(initial=-1)) + 1)
    if yt.size and (min(yt.min(), yp.min()) < 0 or max(yt.max(), yp.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    return yt, yp, n_classes


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """cm[i, j] = number of samples of true class i predicted as j (int64 [G, G])."""
    yt, yp, g = _labels(y_true, y_pred, n_classes)
    return np.bincount(yt * g + yp, minlength=g * g).reshape(g, g).astype(np.int64)


def accuracy(y_true, y_pred) -> float:
    yt, yp, _ = _labels(y_true, y_pred, None)
    return float((yt == yp).mean()) if yt.size else 0.0


def _safe_div(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (eqs. 20-22)."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm)
    precision = _safe_div(tp, cm.sum(axis=0))
    recall = _safe_div(tp, cm.sum(axis=1))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(axis=1)}


def macro_f1(y_true, y_pred, n_classes: int | None = None) -> float:
    """Mean F1 over all ``n_classes`` classes (eq. 23); absent classes count as F1 = 0."""
    return float(per_class(confusion_matrix(y_true, y_pred, n_classes))["f1"].mean())


def classification_report(y_true, y_pred, label_names: list[str]) -> dict:
    """Everything metrics.json holds about predictions, JSON-ready."""
    g = len(label_names)
    cm = confusion_matrix(y_true, y_pred, g)
    pc = per_class(cm)
    n = int(cm.sum())
    return {
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "macro_f1": float(pc["f1"].mean()),
        "per_class": {
            name: {"precision": float(pc["precision"][i]), "recall": float(pc["recall"][i]),
                   "f1": float(pc["f1"][i]), "support": int(pc["support"][i])}
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": cm.tolist(),
        "label_names": list(label_names),
        "n_test": n,
    }


def write_figure_png(fig, path, dpi: int = 110) -> None:
    """Lay out, render and close a matplotlib figure, then write the PNG atomically."""
    import io

    import matplotlib.pyplot as plt

    from rfedge.fileio import atomic_write_bytes

    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_confusion_png(cm, labels: list[str], path, title: str = "") -> None:
    """Confusion matrix as a PNG: row-normalized colours, raw counts printed in the cells.

    Row normalization makes recall readable per class even when classes are unbalanced; the
    counts keep the absolute numbers. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.int64)
    g = len(labels)
    rows = _safe_div(cm, cm.sum(axis=1, keepdims=True))
    size = max(4.0, 0.45 * g + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    try:
        im = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        ax.set_xticks(range(g), labels, rotation=45 if max(map(len, labels), default=0) > 2 else 0)
        ax.set_yticks(range(g), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        for i in range(g):
            for j in range(g):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rows[i, j] > 0.5 else "black")
    except BaseException:
        plt.close(fig)
        raise
    write_figure_png(fig, path)
