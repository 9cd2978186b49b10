/*
 * rfe_einsum.h - fixed-point Einsum-network kernels (paper 003), portable C99, no malloc, no FPU.
 *
 * The arithmetic is defined by host/rfedge/einsum_fixed.py (its module docstring), whose
 * integer reference these kernels match bit for bit:
 *   - inside the circuit: block floating point, uint32 mantissas (value = m / 2^32 * 2^e) with one
 *     int32 exponent per region vector (below the leaves only a per-repetition shift count is
 *     kept: exponents just add up), products by mulhu, normalized by a leading-zero byte table
 *     (einsum nodes only when the top mantissa falls below 2^24);
 *   - leaves: a Q32 Gaussian table over the standardized distance (64 steps per sigma), mixed per
 *     feature into K (leaf mixing) or L densities; a log-domain slow path for far-away inputs;
 *     with a leaf table (per feature 2^lt_bits input cells over the calibration range) the
 *     densities are looked up instead, and computed only for inputs outside it;
 *   - outputs: log2-posteriors in LU = 1/256 bit (int32), via a 257-entry interpolated log2 table,
 *     normalized by a class sum in the linear domain.
 * The K = 2 paths (every paper configuration) are fully unrolled, the regions and the first 2-4
 * einsum layers evaluated in registers; other sizes take generic loops.
 */
#ifndef RFE_EINSUM_H
#define RFE_EINSUM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RFE_EINSUM_LU_BITS 8
#define RFE_EINSUM_GT_OFF 448       /* Gaussian table centre (7 sigma x 64 steps) */
#define RFE_EINSUM_FAST_MIN 65536u  /* leaf fast path needs OR of the densities >= 2^16 */
#define RFE_EINSUM_KQ 189097u       /* round(2^24 * 32 log2(e) / 64^2) */
#define RFE_EINSUM_MAX_I 64
#define RFE_EINSUM_FUSE_CLAMP (1L << 27)

/* One network's constants (filled by the code generator, converters/rfedge_codegen/emit_einsum.py). */
typedef struct {
    int32_t F, D, K, L, R, C;
    int32_t I0;                   /* leaf densities per region: K (leaf mixing) or L */
    int32_t mixing;               /* 1: I0 mixing weights per (f, l); 0: one (diagonal) */
    int32_t qmax;                 /* per-feature cap of the slow path's log-values (LU) */
    int32_t const_lu;             /* sum over features of log2(A_f / sqrt(2 pi)), LU */
    const uint32_t *leafc;        /* [F][L][2 + nw]: mb (int32 bits), g, nw Q32 weights */
    const uint16_t *permo;        /* [R][F] byte offsets 4 * f * I0 into the leaf table */
    const uint16_t *bounds;       /* [2^D + 1] leaf region boundaries */
    const uint32_t *const *W;     /* D-1 layers [R][2^(D-1-l)][K][I][I], Q32 */
    const uint32_t *WR;           /* root weights, the mixture folded in, Q32: per class c a row
                                   * [R][I][I]; classes in groups of 11 while 11 remain, then one of
                                   * 10 or 7 if that many remain, each group interleaved ([n][G]),
                                   * the remaining rows plain */
    const int32_t *pc;            /* [C] class constants (prior, mixture scale), LU */
    const int16_t *rego;          /* NULL or (I0 = K = 2, regions of at most two features)
                                   * [R][2^D][2] byte offsets of each leaf region's features, -1: none */
    int32_t lt_bits;              /* leaf table: 2^lt_bits input cells per feature; 0: none */
    const int16_t *lt_grid;       /* [F][2]: first input of cell 0, log2 of the cell width */
    const uint32_t *lt;           /* [F][2^lt_bits][1 + (I0+1)/2] words per cell: the exponent
                                   * (int32), then the densities' top 16 mantissa bits, two per
                                   * word (density 2i in the low half, 2i+1 in the high half) */
    const uint32_t *pw;           /* [C] Q32 2^((pc_c - pcmax)/256): the normalizer's class weights */
    int32_t pcmax;                /* max_c pc_c */
    int32_t rsh_r, rsh_c;         /* ceil(log2 R), ceil(log2 C) */
} rfe_einsum_model_t;

/* Words of int32 scratch rfe_einsum_forward needs:
 * F*(I0+1) + 2^D*I + R*(I*I+1) + I*I + L, I = max(I0, K). */
int32_t rfe_einsum_scratch_words(const rfe_einsum_model_t *m);

/* 2^(-d/256) in Q31 for d >= 0 (0 from d >= 32*256 on). */
uint32_t rfe_einsum_exp2q(int32_t d);
/* log2(s) in LU for s > 0 (s == 0 is taken as 1). */
int32_t rfe_einsum_log2q(uint32_t s);
/* log-sum-exp of n log-values (LU); rsh = ceil(log2 n). */
int32_t rfe_einsum_lse(const int32_t *v, int32_t n, int32_t rsh);

/* Leaf densities of every feature: lf[F][I0] normalized mantissas, then lf[F*I0 + f] the exponents.
 * tmp: L words. */
void rfe_einsum_leaf(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *tmp, int32_t *lf);
/* The whole network: logpost[C] (LU); returns the predicted class (smallest index on ties). */
int32_t rfe_einsum_forward(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *scratch, int32_t *logpost);
/* Fusion on the aggregator: score[c] = sum_n clamp(lps[n][c], +-2^27) (n <= 15); returns argmax
 * (smallest index on ties). score may be NULL. */
int32_t rfe_einsum_fuse(const int32_t *const *lps, int32_t n, int32_t C, int32_t *score);

#ifdef RFE_EINSUM_PROFILE
/* Called at stage boundaries (0 leaves, 1 regions, 2 einsum layers, 3 root, 4 classes): the
 * harness attributes the instructions since the previous call to `stage`. */
void rfe_einsum_prof_mark(int stage);
#endif

#ifdef __cplusplus
}
#endif

#endif
