"""Class semantics: captions, the mirror swap, and the committed frozen text embeddings."""

from importlib import resources

import numpy as np
import pytest

from rfedge import semantics as S
from rfedge.errors import RfedgeError
from rfedge.sim import digits
from rfedge.sim import widar_gestures as wg

ALL_CLASSES = list(wg.LABEL_NAMES) + list(digits.LABEL_NAMES)


@pytest.fixture(scope="module")
def emb():
    return S.load_embeddings()


def test_mirror_caption_swaps_direction_words():
    assert S.mirror_caption("sweep the Left hand from left to right") == "sweep the Right hand from right to left"
    assert S.mirror_caption("a clockwise circle") == "a counter-clockwise circle"
    assert S.mirror_caption("a counter-clockwise circle") == "a clockwise circle"
    assert S.mirror_caption("an anticlockwise turn, LEFT-to-right") == "an clockwise turn, RIGHT-to-left"
    assert S.mirror_caption("moving leftward, then rightwards") == "moving rightward, then leftwards"
    # Whole words only: "bright", "leftover" and "righteous" are not directions.
    assert S.mirror_caption("a bright leftover, righteous") == "a bright leftover, righteous"


def test_every_class_has_a_description_and_varied_captions():
    for ct in S.class_texts(ALL_CLASSES):
        assert ct.description.endswith(".") and len(ct.captions) >= 5
        assert len(set(ct.captions)) == len(ct.captions), ct.name
    with pytest.raises(RfedgeError, match="'wave_foot' has no description"):
        S.class_texts(["sweep_left_hand", "wave_foot"])


def test_mirror_swap_is_an_involution_and_follows_the_hand():
    for ct in S.class_texts(ALL_CLASSES):
        for text in (ct.description, *ct.captions):
            assert S.mirror_caption(S.mirror_caption(text)) == text
        motion_hand = wg.class_motion_hand(ct.name) if ct.name in wg.LABEL_NAMES else (None, None)
        sensitive = motion_hand[1] in ("left", "right")
        # Hand classes change under mirroring, in every caption and the description, and become
        # their mirror partner's texts; the clap and the digits do not change at all.
        assert ct.direction_sensitive == sensitive, ct.name
        if sensitive:
            assert all(S.is_direction_sensitive(t) for t in (ct.description, *ct.captions)), ct.name
            partner = S.class_texts([wg.mirror_label(ct.name)])[0]
            assert ct.mirrored_captions == partner.captions
            assert S.mirror_caption(ct.description) == partner.description
            assert f"{motion_hand[1]} hand" in ct.description
        else:
            assert ct.mirrored_captions == ct.captions


def test_committed_embeddings_match_the_texts(emb):
    texts = S.all_texts()
    assert emb.texts_sha256 == S.texts_sha256(texts) and emb.texts == texts, (
        "rfedge.semantics texts changed since rfedge/data/text_embeddings.npz was made: run scripts/embed_texts.py")
    assert emb.model == S.TEXT_MODEL
    assert emb.vectors.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    # The file is what scripts/embed_texts.py wrote: float16 rows already (nearly) unit norm.
    with np.load(resources.files("rfedge.data") / S.EMBEDDINGS_FILE) as z:
        assert z["embeddings"].dtype == np.float16
        assert np.allclose(np.linalg.norm(z["embeddings"].astype(np.float32), axis=1), 1.0, atol=2e-3)
    D = emb.descriptions(wg.LABEL_NAMES)
    caps = emb.captions(wg.LABEL_NAMES)
    assert D.shape == (13, 384) and all(c.shape[1] == 384 and len(c) >= 5 for c in caps)


def test_mirrored_captions_are_nearly_the_same_sentence_to_the_text_model(emb):
    # The frozen encoder barely sees left/right (why paper 001 adds the mirror-consistency hinge):
    # a caption and its mirror image are closer than the caption and any caption of another motion.
    # Measured: mirrored pairs >= 0.984 cosine, other motions <= 0.852 (mean 0.49).
    cts = {c.name: c for c in S.class_texts(wg.LABEL_NAMES)}
    worst_mirror, best_other = 1.0, -1.0
    for name, ct in cts.items():
        motion, hand = wg.class_motion_hand(name)
        if hand == "both":
            continue
        others = [c for o, oc in cts.items() if wg.class_motion_hand(o)[0] != motion for c in oc.captions]
        O = np.stack([emb.vector(c) for c in others])
        for cap in ct.captions:
            v = emb.vector(cap)
            worst_mirror = min(worst_mirror, float(v @ emb.vector(S.mirror_caption(cap))))
            best_other = max(best_other, float((O @ v).max()))
    assert worst_mirror > best_other + 0.05, (worst_mirror, best_other)


def test_missing_embedding_is_a_clear_error(emb, tmp_path, monkeypatch):
    monkeypatch.setitem(S.CLASS_TEXTS, "sweep_left_hand", ("A brand new description.", ["a"] * 5))
    with pytest.raises(RfedgeError, match=r"class 'sweep_left_hand': no text embedding .*scripts/embed_texts.py"):
        emb.descriptions(wg.LABEL_NAMES)
    with pytest.raises(RfedgeError, match="scripts/embed_texts.py"):
        S.load_embeddings(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, texts=np.array(["x"]))
    with pytest.raises(RfedgeError, match="lacks .*embeddings"):
        S.load_embeddings(bad)
