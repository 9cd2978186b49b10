/* rfe_dsp_internal.h - shared by rfe_dsp.c and rfe_act.c; not part of the public API. */
#ifndef RFE_DSP_INTERNAL_H
#define RFE_DSP_INTERNAL_H

#include <math.h>
#include "rfe_dsp.h"

#ifdef RFE_DSP_SINGLE_PRECISION
#define RFE_LOG(x) logf(x)
#define RFE_LOG1P(x) log1pf(x)
#define RFE_SQRT(x) sqrtf(x)
#define RFE_FABS(x) fabsf(x)
#else
#define RFE_LOG(x) log(x)
#define RFE_LOG1P(x) log1p(x)
#define RFE_SQRT(x) sqrt(x)
#define RFE_FABS(x) fabs(x)
#endif

/* rfedge.activity: AGC_STEP_MIN, AGC_STEP_Z, AGC_STEP_ISOLATION */
#define RFE_AGC_STEP_MIN 0.08
#define RFE_AGC_STEP_Z 6.0
#define RFE_AGC_STEP_ISOLATION 3.0

/* the most used subcarriers any layout has (HT40) */
#define RFE_DSP_LAYOUT_MAX 114

int rfe_dsp_decode_iq(const int8_t *buf, uint16_t len, int sc, int first_word_invalid, int8_t (*iq)[2]);
float rfe_dsp_abs_c64(int8_t re, int8_t im);
rfe_real rfe_dsp_pairwise_sum(const rfe_real *a, int32_t n, int32_t stride);
rfe_real rfe_dsp_median(rfe_real *a, int32_t n);

#endif
