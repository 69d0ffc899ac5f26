/* GGUF block quantizations (types: util/dtype.h): exact dequantization and quantization.
 *
 * Dequantization gives, bit for bit, what the reference gives: gguf.quants.dequantize of the
 * Python package `gguf` (numpy float32 arithmetic, one rounding per operation, in the order the
 * reference writes it; -ffp-contract=off keeps the compiler from fusing). tests/test_quant.c
 * checks every type against fixtures made by scripts/make_quant_fixtures.py, edge blocks
 * included. The AVX2 and AVX-512 twins give the same bits as the scalar one.
 *
 * Per type, element j of a block (per 32-element sub-block s for the K-quants):
 *   Q8_0  d * q[j]
 *   Q4_0  d * (q[j] - 8)                     q: low nibbles are j < 16, high nibbles j >= 16
 *   Q4_1  d * q[j] + m
 *   Q5_0  d * (q[j] - 16)                    q = nibble | (bit j of qh) << 4
 *   Q5_1  d * q[j] + m
 *   Q4_K  (d * sc[s]) * q[j] - (dmin * mn[s])   6-bit sc/mn unpacked from the 12 scale bytes
 *   Q5_K  as Q4_K with the 5th bit from qh
 *   Q6_K  (d * sc[s16]) * (q[j] - 32)        16-element groups, int8 scales
 * (the exact operation order of each is the reference's; see quant.c). */
#ifndef QM_KERNELS_QUANT_H
#define QM_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "util/dtype.h"

/* Dequantizes nblocks consecutive blocks of dt (a quantized type) into
 * out[nblocks * qm_dtype_block(dt)]. One implementation per ISA; same bits. */
void qm_dequant_scalar(qm_dtype dt, const void *blocks, int nblocks, float *out);
#if defined(__x86_64__) || defined(__i386__)
void qm_dequant_avx2(qm_dtype dt, const void *blocks, int nblocks, float *out);
void qm_dequant_avx512(qm_dtype dt, const void *blocks, int nblocks, float *out);
#endif

/* Elements [e0, e0 + n) of a quantized row (row: its first block) into out[n], any e0 and n
 * (whole blocks are dequantized and the range copied). Scalar; for loading and tests. */
void qm_dequant_range(qm_dtype dt, const void *row, size_t e0, size_t n, float *out);

/* Quantizes n f32 values (n a multiple of 32) to Q8_0 or Q4_0 blocks, as the reference
 * gguf.quants.quantize does (round half away from zero, d = max|x| / 127 for Q8_0; for Q4_0 the
 * value of largest magnitude maps to -8). Returns the bytes written (qm_dtype_row_bytes). */
size_t qm_quantize_row(qm_dtype dt, const float *x, size_t n, void *out);

#endif
