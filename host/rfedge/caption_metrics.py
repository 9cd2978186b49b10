"""Caption metrics for the CSI-text alignment (paper 001 reports BLEU-4 and ROUGE-L): plain Python.

Tokenization: lower-cased text split on whitespace (no punctuation stripping, no stemming), the
same for hypotheses and references, so scores are comparable between our runs but not digit for
digit with toolkits that tokenize differently (e.g. the COCO caption toolkit's PTB tokenizer).

BLEU-4 (Papineni et al., 2002), corpus level:

* p_n = sum over sentences of the clipped n-gram matches / sum over sentences of the hypothesis
  n-grams, for n = 1..4; a hypothesis n-gram's count is clipped at its largest count in any one
  reference of that sentence;
* BLEU = BP * exp(mean_n log p_n), uniform weights 1/4; no smoothing, so a corpus with no
  matching 4-gram at all scores 0;
* BP = 1 if c > r else exp(1 - r / c), with c the total hypothesis length and r the sum over
  sentences of the reference length closest to the hypothesis length (the shorter on a tie).

ROUGE-L (Lin, 2004, §3.1), sentence level then averaged over the corpus:
R = LCS / |reference|, P = LCS / |hypothesis|, F = (1 + β²) R P / (R + β² P). Lin leaves β to the
user (his eq. 4 sets β = P/R at the point where dF/dR = dF/dP and suggests a large β, i.e.
favouring recall); we use β = 1.2, the value of the COCO caption evaluation code that captioning
papers (paper 001 among them, by its metric set) report with. With several references a sentence
takes its best F over them.
"""

from __future__ import annotations

import math
from collections import Counter

from rfedge.errors import RfedgeError

ROUGE_BETA = 1.2


def tokenize(text: str) -> list[str]:
    return str(text).lower().split()


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _as_refs(references) -> list[list[list[str]]]:
    out = []
    for refs in references:
        if isinstance(refs, str):
            refs = [refs]
        toks = [tokenize(r) for r in refs]
        if not toks:
            raise RfedgeError("every hypothesis needs at least one reference")
        out.append(toks)
    return out


def bleu_stats(hypotheses, references, max_n: int = 4) -> dict:
    """The sufficient statistics of corpus BLEU: clipped matches and totals per n, c and r."""
    if len(hypotheses) != len(references):
        raise RfedgeError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    matches, totals = [0] * max_n, [0] * max_n
    c = r = 0
    for hyp, refs in zip(hypotheses, _as_refs(references)):
        h = tokenize(hyp)
        c += len(h)
        # closest reference length; on a tie the shorter one
        r += min((abs(len(x) - len(h)), len(x)) for x in refs)[1]
        for n in range(1, max_n + 1):
            hc = ngrams(h, n)
            best: Counter = Counter()
            for x in refs:
                best |= ngrams(x, n)          # element-wise max over the references
            matches[n - 1] += sum(min(k, best[g]) for g, k in hc.items())
            totals[n - 1] += sum(hc.values())
    return {"matches": matches, "totals": totals, "hyp_len": c, "ref_len": r}


def corpus_bleu(hypotheses, references, max_n: int = 4) -> float:
    """Corpus BLEU-``max_n`` in [0, 1]; ``references[i]`` is a string or a list of strings."""
    s = bleu_stats(hypotheses, references, max_n)
    if s["hyp_len"] == 0:
        return 0.0
    if any(m == 0 for m in s["matches"]):
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(s["matches"], s["totals"])) / max_n
    c, r = s["hyp_len"], s["ref_len"]
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
    return float(bp * math.exp(log_p))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(|a| |b|))."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis: str, references, beta: float = ROUGE_BETA) -> float:
    """Sentence ROUGE-L F-measure: the best over ``references`` (a string or a list)."""
    h = tokenize(hypothesis)
    best = 0.0
    for ref in _as_refs([references])[0]:
        lcs = lcs_length(h, ref)
        if lcs == 0:
            continue
        rec, prec = lcs / len(ref), lcs / len(h)
        best = max(best, (1 + beta ** 2) * rec * prec / (rec + beta ** 2 * prec))
    return float(best)


def corpus_rouge_l(hypotheses, references, beta: float = ROUGE_BETA) -> float:
    """Mean sentence ROUGE-L over the corpus."""
    if len(hypotheses) != len(references):
        raise RfedgeError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if not hypotheses:
        return 0.0
    return float(sum(rouge_l(h, r, beta) for h, r in zip(hypotheses, references)) / len(hypotheses))
