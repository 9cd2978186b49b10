/*
 * rfe_einsum.h - fixed-point Einsum-network kernels (paper 003), portable C99, no malloc, no FPU.
 *
 * The arithmetic is defined by host/rfedge/einsum_fixed.py (its module docstring), whose
 * integer reference these kernels match bit for bit:
 *   - log-values are int32 in LU = 1/256 bit (log2 p = v / 256);
 *   - the inputs are int16 standardized features with zf fraction bits;
 *   - an einsum node works in the linear domain relative to the max of each child
 *     (Q31 exponentials from a 256-entry table, Q31 weights, mulhu products) and returns to the
 *     log domain through a 257-entry interpolated log2 table.
 * One function per op; rfe_einsum_forward() chains them for one network.
 */
#ifndef RFE_EINSUM_H
#define RFE_EINSUM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RFE_EINSUM_LU_BITS 8
#define RFE_EINSUM_NODE_Q 29
#define RFE_EINSUM_E_MAX 46340u
#define RFE_EINSUM_FUSE_CLAMP (1L << 27)

/* One network's constants (filled by the code generator, converters/rfedge_codegen/emit_einsum.py). */
typedef struct {
    int32_t F, D, K, L, R, C;
    int32_t qmax;                 /* per-feature cap of the quadratic leaf term (LU) */
    const int16_t *muq;           /* [F][L] leaf means, zf fraction bits */
    const uint16_t *g;            /* [F][L] gain: e = (|zq - muq| * g + round) >> sh */
    const uint8_t *sh;            /* [F][L] 1..31 */
    const int32_t *c;             /* [F][L] leaf log-normalizer, LU */
    const uint16_t *perm;         /* [R][F] feature order of each repetition */
    const uint16_t *bounds;       /* [2^D + 1] leaf region boundaries */
    const uint32_t *const *W;     /* D layers: layer l < D-1 [R][2^(D-1-l)][K][I][I], root [R][C][I][I] (Q31) */
    const int32_t *mixq;          /* [C][R] log2 mixture weights, LU */
    const int32_t *priorq;        /* [C] log2 prior, LU */
} rfe_einsum_model_t;

/* Words of int32 scratch rfe_einsum_forward needs: F*L + 2^D*L + R*C + 2*max(L,K) + C. */
int32_t rfe_einsum_scratch_words(const rfe_einsum_model_t *m);

/* 2^(-d/256) in Q31 for d >= 0 (0 from d >= 32*256 on). */
uint32_t rfe_einsum_exp2q(int32_t d);
/* log2(s) in LU for s > 0 (s == 0 is taken as 1). */
int32_t rfe_einsum_log2q(uint32_t s);
/* log-sum-exp of n log-values (LU); rsh = ceil(log2 n). */
int32_t rfe_einsum_lse(const int32_t *v, int32_t n, int32_t rsh);

/* Leaf log-densities of every feature and component: lf[F][L] (LU). */
void rfe_einsum_leaf(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *lf);
/* Leaf regions of one repetition: out[2^D][L] = sums of lf rows over each region's features. */
void rfe_einsum_regions(const int32_t *lf, int32_t L, const uint16_t *perm_r, const uint16_t *bounds,
                        int32_t nreg, int32_t *out);
/* One einsum layer of one repetition: n nodes, node j combines x[2j][I] and x[2j+1][I] with
 * weights W[j][O][I][I]; writes out[j][O]. out may equal x (in place) when O <= 2I.
 * ab: 2*I words of scratch. */
void rfe_einsum_layer(const int32_t *x, int32_t n, int32_t I, int32_t O, const uint32_t *W, uint32_t *ab,
                      int32_t *out);
/* Mixture over repetitions: ll[c] = LSE_r(mixq[c][r] + root[r][c]); tmp: R words. */
void rfe_einsum_mix(const int32_t *root, int32_t R, int32_t C, const int32_t *mixq, int32_t *tmp, int32_t *ll);
/* In place: lp[c] = ll[c] + priorq[c] - LSE_c(same). Returns the argmax (smallest index on ties). */
int32_t rfe_einsum_posterior(int32_t *lp, const int32_t *priorq, int32_t C);
/* The whole network: logpost[C] (LU); returns the predicted class. */
int32_t rfe_einsum_forward(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *scratch, int32_t *logpost);
/* Fusion on the aggregator: score[c] = sum_n clamp(lps[n][c], +-2^27) (n <= 15); returns argmax
 * (smallest index on ties). score may be NULL. */
int32_t rfe_einsum_fuse(const int32_t *const *lps, int32_t n, int32_t C, int32_t *score);

#ifdef __cplusplus
}
#endif

#endif
