/* The canonical exponential: qm_expf, its vector twins, and the two element-wise loops that use it
 * (softmax's exponentials, SiLU).
 *
 * qm_expf(x) is, operation for operation, the algorithm of glibc's expf as its FMA build runs it
 * (x86-64 glibc picks that build on every CPU with FMA and AVX2), written here so that its
 * vectors can be exactly the same function. In double:
 *
 *     kd = fma(32/ln2, x, 0x1.8p52)              k = the nearest integer to 32 x / ln2, from kd's bits
 *     r  = fma(32/ln2, x, -(kd - 0x1.8p52))      32 x / ln2 - k, |r| <= 1/2
 *     s  = 2^(k/32) from a table of 2^(i/32), i = k mod 32, and k / 32 added to its exponent
 *     y  = fma(fma(C0, r, C1), r * r, fma(C2, r, 1)) * s       (float) y
 *
 * with x < -0x1.9fe368p6 giving +0, x > 0x1.62e42ep6 +inf and a NaN x + x. Checked on all 2^32
 * floats against this machine's glibc expf (2026-12-04, glibc 2.36): every result bit-identical,
 * so the canonical bits are those of expf, now also on a machine whose libm differs. The error is
 * at most 0.502 ulp. The vector twins run the same double operations lane by lane (a vector FMA
 * is the scalar fma), so every ISA gives the same bits. */
#ifndef QM_EXPF_H
#define QM_EXPF_H

#include <stdint.h>

#define QM_EXP_N 32                                   /* table entries: 2^(i/32) */
#define QM_EXP_INV_LN2_N (0x1.71547652b82fep0 * 32)   /* 32 / ln 2 */
#define QM_EXP_SHIFT 0x1.8p52                         /* rounds to an integer in the low bits */
#define QM_EXP_C0 (0x1.c6af84b912394p-5 / (32.0 * 32.0 * 32.0))
#define QM_EXP_C1 (0x1.ebfce50fac4f3p-3 / (32.0 * 32.0))
#define QM_EXP_C2 (0x1.62e42ff0c52d6p-1 / 32.0)
#define QM_EXP_LO (-0x1.9fe368p6f)                    /* below: +0 */
#define QM_EXP_HI 0x1.62e42ep6f                       /* above: +inf */

/* Bits of 2^(i/32) (double, correctly rounded) minus i << 47, the part of k / 32 that the
 * exponent add puts back: entry + (k << 47) is 2^(k/32)'s double for any integer k. */
extern const uint64_t qm_exp_table[QM_EXP_N];

float qm_expf(float x);

/* s[j] = qm_expf(s[j] - m), j < n (the subtraction one float rounding, as written). */
void qm_exp_sub_scalar(float *s, int n, float m);

/* h[i] = silu(g[i]) * u[i], silu(g) = g / (1 + qm_expf(-g)); h may alias g or u. */
void qm_silu_mul_scalar(const float *g, const float *u, float *h, int n);

#endif
