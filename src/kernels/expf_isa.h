/* The vector twins of kernels/expf.h, one pair per ISA (expf_avx2.c, expf_avx512.c). */
#ifndef QM_EXPF_ISA_H
#define QM_EXPF_ISA_H

void qm_exp_sub_avx2(float *s, int n, float m);
void qm_silu_mul_avx2(const float *g, const float *u, float *h, int n);
void qm_exp_sub_avx512(float *s, int n, float m);
void qm_silu_mul_avx512(const float *g, const float *u, float *h, int n);

#endif
