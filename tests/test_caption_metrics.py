"""rfedge.caption_metrics: corpus BLEU-4 and ROUGE-L on cases worked out by hand below."""

from __future__ import annotations

import math

import pytest

from rfedge.caption_metrics import bleu_stats, corpus_bleu, corpus_rouge_l, lcs_length, rouge_l
from rfedge.errors import RfedgeError

RIGHT = "a person pushes the right hand forward and pulls it back"   # 11 tokens, all distinct
LEFT = "a person pushes the left hand forward and pulls it back"


def test_identical_is_one_and_disjoint_is_zero():
    # identical: every n-gram matches (p_n = 1), c = r (BP = 1) -> BLEU 1; LCS = length -> F 1
    assert corpus_bleu([RIGHT], [[RIGHT]]) == pytest.approx(1.0)
    assert rouge_l(RIGHT, RIGHT) == pytest.approx(1.0)
    # disjoint: no unigram matches -> p_1 = 0 -> BLEU 0 (no smoothing); LCS 0 -> F 0
    assert corpus_bleu(["x y z w v"], [["a b c d e"]]) == 0.0
    assert rouge_l("x y z w v", "a b c d e") == 0.0
    # tokenization is lower-case whitespace: case does not matter
    assert corpus_bleu([RIGHT.upper()], [[RIGHT]]) == pytest.approx(1.0)


def test_one_substituted_word():
    # LEFT vs RIGHT: 11 tokens, token 4 differs, no repeats. n-grams not covering token 4 match:
    # 1-grams 10/11; 2-grams: 10, two cover it -> 8/10; 3-grams: 9, three cover it -> 6/9;
    # 4-grams: 8, four cover it -> 4/8. c = r = 11 -> BP = 1.
    s = bleu_stats([LEFT], [[RIGHT]])
    assert s["matches"] == [10, 8, 6, 4] and s["totals"] == [11, 10, 9, 8]
    want = (10 / 11 * 8 / 10 * 6 / 9 * 4 / 8) ** 0.25          # = 0.7017
    assert corpus_bleu([LEFT], [[RIGHT]]) == pytest.approx(want)
    assert want == pytest.approx(0.70170, abs=1e-4)
    # ROUGE-L: LCS 10, R = P = 10/11 -> F = 10/11 whatever beta
    assert rouge_l(LEFT, RIGHT) == pytest.approx(10 / 11)
    # with the true caption among the references the best match wins: 1
    assert rouge_l(LEFT, [RIGHT, LEFT]) == pytest.approx(1.0)


def test_brevity_penalty():
    # hypothesis = the first 6 tokens of RIGHT: every n-gram matches (p_n = 1) but c = 6 < r = 11,
    # so BLEU = BP = exp(1 - 11/6) = exp(-5/6) = 0.4346
    hyp = "a person pushes the right hand"
    assert corpus_bleu([hyp], [[RIGHT]]) == pytest.approx(math.exp(1 - 11 / 6))
    # a longer hypothesis is not rewarded: c > r -> BP = 1, and the precisions fall instead
    assert corpus_bleu([RIGHT + " again"], [[RIGHT]]) < 1.0


def test_clipping_and_closest_reference_length():
    # "the the the the" against {"the cat", "the the dog"}: "the" is clipped at its largest count
    # in one reference (2) -> 2/4; "the the" appears once in ref 2 -> 1/3; no trigram -> BLEU 0.
    # Closest reference length to 4 is 3 ("the the dog").
    s = bleu_stats(["the the the the"], [["the cat", "the the dog"]])
    assert s["matches"][:3] == [2, 1, 0] and s["totals"][:3] == [4, 3, 2]
    assert s["ref_len"] == 3 and s["hyp_len"] == 4
    assert corpus_bleu(["the the the the"], [["the cat", "the the dog"]]) == 0.0


def test_corpus_bleu_pools_counts_over_sentences():
    # corpus BLEU sums matches and lengths before the ratio: (RIGHT, RIGHT) and (LEFT, RIGHT)
    # give p = (21/22, 18/20, 15/18, 12/16), BP 1 -- not the mean of the sentence scores
    got = corpus_bleu([RIGHT, LEFT], [[RIGHT], [RIGHT]])
    assert got == pytest.approx((21 / 22 * 18 / 20 * 15 / 18 * 12 / 16) ** 0.25)
    assert got != pytest.approx((1 + corpus_bleu([LEFT], [[RIGHT]])) / 2)


def test_rouge_l_beta_weights_recall():
    # "the hand moves" vs "the right hand moves left": LCS 3, P = 3/3, R = 3/5;
    # beta 1.2: F = 2.44 * 0.6 * 1 / (0.6 + 1.44 * 1) = 1.464 / 2.04 = 0.71765
    assert rouge_l("the hand moves", "the right hand moves left") == pytest.approx(1.464 / 2.04)
    # beta 1 is the harmonic mean 2 * 0.6 / 1.6 = 0.75
    assert rouge_l("the hand moves", "the right hand moves left", beta=1.0) == pytest.approx(0.75)
    assert lcs_length("a b c d".split(), "b x d".split()) == 2
    assert corpus_rouge_l(["the hand moves", RIGHT], ["the right hand moves left", RIGHT]) == \
        pytest.approx((1.464 / 2.04 + 1) / 2)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(RfedgeError, match="hypotheses"):
        corpus_bleu(["a"], [])
    with pytest.raises(RfedgeError, match="reference"):
        corpus_bleu(["a"], [[]])
