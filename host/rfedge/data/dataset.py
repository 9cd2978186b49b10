"""Datasets on disk: a manifest of trials plus one ``.npy`` per array, first axis = trial.

Layout of a dataset directory::

    manifest.json        kind, label names, per-trial metadata, array descriptions, provenance
    arrays/<name>.npy    one array per field, shape [n_trials, ...] (memory-mapped on read)
    splits/<name>.json   the train/test folds every later stage uses (rfedge.data.splits)

The directory is written to a temporary sibling and renamed into place, so an interrupted run
leaves the previous dataset (or nothing), never half of one.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfedge import __version__
from rfedge.errors import RfedgeError
from rfedge.fileio import atomic_directory

MANIFEST = "manifest.json"
FORMAT_NAME = "rfedge-dataset"
FORMAT_VERSION = 1


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over array names, dtypes, shapes and bytes: the dataset's content hash."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def write_dataset(
    out_dir,
    *,
    kind: str,
    label_names: list[str],
    trials: list[dict],
    arrays: dict[str, np.ndarray],
    config: dict,
    array_doc: dict[str, str] | None = None,
    splits: dict[str, dict] | None = None,
    produced_by: str = "",
    extra_dirs: dict[str, Path] | None = None,
) -> Path:
    """Write a complete dataset directory atomically and return its path.

    ``trials[i]`` is the metadata of trial i and must hold ``label`` (int index into
    ``label_names``); every array's first axis has ``len(trials)`` rows. ``splits`` maps a split
    name to its JSON object (see rfedge.data.splits); when None, the standard splits are made
    from the metadata. ``extra_dirs`` are directories moved into the dataset under the given
    names (e.g. the simulator's logs), inside the same atomic rename.
    """
    n = len(trials)
    for name, a in arrays.items():
        if a.shape[0] != n:
            raise ValueError(f"array {name!r} has {a.shape[0]} rows, expected {n}")
    for i, t in enumerate(trials):
        if "label" not in t or not 0 <= int(t["label"]) < len(label_names):
            raise ValueError(f"trial {i}: label missing or out of range")
        t.setdefault("id", i)
    if splits is None:
        from rfedge.data.splits import make_splits

        splits = make_splits(trials, seed=int(config.get("seed", 0)))
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "kind": kind,
        "label_names": list(label_names),
        "n_trials": n,
        "arrays": {
            name: {
                "dtype": a.dtype.str,
                "shape": list(a.shape),
                "doc": (array_doc or {}).get(name, ""),
            }
            for name, a in arrays.items()
        },
        "data_sha256": arrays_digest(arrays),
        "config": config,
        "splits": sorted(splits),
        "produced_by": {
            "stage": produced_by,
            "rfedge": __version__,
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "trials": trials,
    }
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        (tmp / "arrays").mkdir()
        for name, a in arrays.items():
            np.save(tmp / "arrays" / f"{name}.npy", np.ascontiguousarray(a), allow_pickle=False)
        (tmp / "splits").mkdir()
        for name, obj in splits.items():
            (tmp / "splits" / f"{name}.json").write_text(json.dumps(obj, indent=1) + "\n")
        for name, src in (extra_dirs or {}).items():
            shutil.move(str(src), tmp / name)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out_dir


@dataclass
class Dataset:
    """A dataset opened from disk. Arrays are memory-mapped and loaded on first use."""

    path: Path
    manifest: dict

    @classmethod
    def open(cls, path) -> "Dataset":
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise RfedgeError("not a dataset directory (no manifest.json)", path=path)
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RfedgeError(f"manifest is not valid JSON ({e})", path=mpath) from None
        if manifest.get("format") != FORMAT_NAME:
            raise RfedgeError(f"expected format {FORMAT_NAME!r}, found {manifest.get('format')!r}",
                              path=mpath, field="format")
        if manifest.get("version") != FORMAT_VERSION:
            raise RfedgeError(f"unsupported dataset version {manifest.get('version')!r}, expected {FORMAT_VERSION}",
                              path=mpath, field="version")
        return cls(path, manifest)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def label_names(self) -> list[str]:
        return self.manifest["label_names"]

    @property
    def trials(self) -> list[dict]:
        return self.manifest["trials"]

    @property
    def labels(self) -> np.ndarray:
        return np.array([t["label"] for t in self.trials], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.trials)

    def array(self, name: str) -> np.ndarray:
        if name not in self.manifest["arrays"]:
            raise RfedgeError(f"dataset has no array {name!r} (has {sorted(self.manifest['arrays'])})", path=self.path)
        f = self.path / "arrays" / f"{name}.npy"
        try:
            a = np.load(f, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise RfedgeError(f"cannot read array ({e})", path=f) from None
        want = self.manifest["arrays"][name]
        if list(a.shape) != want["shape"] or a.dtype.str != want["dtype"]:
            raise RfedgeError(f"array is {a.dtype.str}{list(a.shape)}, manifest says {want['dtype']}{want['shape']}", path=f)
        return a

    def split(self, name: str) -> dict:
        f = self.path / "splits" / f"{name}.json"
        if not f.is_file():
            have = sorted(p.stem for p in (self.path / "splits").glob("*.json"))
            raise RfedgeError(f"no split {name!r}; this dataset has {have}", path=self.path)
        return json.loads(f.read_text())

    def split_names(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "splits").glob("*.json"))

    def verify(self) -> None:
        """Recompute the content hash and compare it with the manifest's."""
        arrays = {name: np.asarray(self.array(name)) for name in self.manifest["arrays"]}
        got = arrays_digest(arrays)
        if got != self.manifest["data_sha256"]:
            raise RfedgeError(f"array contents do not match manifest data_sha256 ({got[:12]} != "
                              f"{self.manifest['data_sha256'][:12]})", path=self.path)
