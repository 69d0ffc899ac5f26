/* GGUF block quantizations (types: util/dtype.h): exact dequantization and quantization.
 *
 * Dequantization gives, bit for bit, what the reference gives: gguf.quants.dequantize of the
 * Python package `gguf` (numpy float32 arithmetic, one rounding per operation, in the order the
 * reference writes it; -ffp-contract=off keeps the compiler from fusing). tests/test_quant.c
 * checks every type against fixtures made by scripts/make_quant_fixtures.py, edge blocks
 * included. The AVX2 and AVX-512 twins give the same bits as the scalar one.
 *
 * Per type, element j of a block (sub-block s of 32 / group g of 16 for the K-quants), in the
 * reference's operation order (f16 d, m, dmin and the integer codes convert to f32 exactly):
 *   Q8_0  (float)q[j] * d                     q: int8
 *   Q4_0  d * (float)(q[j] - 8)               q: low nibbles are j < 16, high nibbles j >= 16
 *   Q4_1  d * (float)q[j] + m
 *   Q5_0  d * (float)(q[j] - 16)              q = nibble | (bit j of qh) << 4
 *   Q5_1  d * (float)q[j] + m
 *   Q4_K  (d * (float)sc[s]) * (float)q[j] - dmin * (float)mn[s]   6-bit sc/mn: qm_quant_k_scales
 *   Q5_K  as Q4_K with the 5th bit from qh
 *   Q6_K  (d * (float)sc[g]) * (float)(q[j] - 32)                  sc: int8, 16 groups of 16
 * Every product here is exact in f32 (<= 24 significant bits, no overflow, no f32 subnormal),
 * so the only rounding is the one add/sub of Q4_1, Q5_1, Q4_K, Q5_K; the implementations still
 * write the reference's operations (multiply, then add/subtract; no FMA). */
#ifndef QM_KERNELS_QUANT_H
#define QM_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "util/dtype.h"

/* Block layouts, as in ggml-common.h. Every field is bytes (alignment 1), so a block may start
 * at any address; multi-byte fields are little-endian (f16 d/m/dmin: read with qm_quant_rd16). */
typedef struct { uint8_t d[2]; int8_t qs[32]; } qm_block_q8_0;                      /* 34 */
typedef struct { uint8_t d[2]; uint8_t qs[16]; } qm_block_q4_0;                     /* 18 */
typedef struct { uint8_t d[2], m[2]; uint8_t qs[16]; } qm_block_q4_1;               /* 20 */
typedef struct { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[16]; } qm_block_q5_0;      /* 22 */
typedef struct { uint8_t d[2], m[2]; uint8_t qh[4]; uint8_t qs[16]; } qm_block_q5_1; /* 24 */
/* K-quants: 8 sub-blocks of 32; qs byte 32p+l holds element l of sub-block 2p (low nibble)
 * and of sub-block 2p+1 (high nibble); Q5_K: bit s of qh[l] is the 5th bit of element l of
 * sub-block s. */
typedef struct { uint8_t d[2], dmin[2]; uint8_t scales[12]; uint8_t qs[128]; } qm_block_q4_k;
typedef struct {
    uint8_t d[2], dmin[2];
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} qm_block_q5_k;
/* Q6_K: element e = 128h + 32k + l (h < 2, k < 4, l < 32) has low 4 bits
 * ql[64h + 32(k & 1) + l] >> 4(k >> 1) and high 2 bits qh[32h + l] >> 2k; scale scales[e / 16]. */
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint8_t d[2]; } qm_block_q6_k;

_Static_assert(sizeof(qm_block_q8_0) == 34 && sizeof(qm_block_q4_0) == 18 &&
                   sizeof(qm_block_q4_1) == 20 && sizeof(qm_block_q5_0) == 22 &&
                   sizeof(qm_block_q5_1) == 24 && sizeof(qm_block_q4_k) == 144 &&
                   sizeof(qm_block_q5_k) == 176 && sizeof(qm_block_q6_k) == 210,
               "GGUF block sizes (util/dtype.h)");

static inline uint16_t qm_quant_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t qm_quant_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The 6-bit scales sc[8] and mins mn[8] of a Q4_K/Q5_K block from its 12 scale bytes s:
 * j < 4: sc = s[j] & 63,                      mn = s[j+4] & 63;
 * j >= 4: sc = s[j+4] & 15 | (s[j-4] >> 6) << 4, mn = s[j+4] >> 4 | (s[j] >> 6) << 4. */
static inline void qm_quant_k_scales(const uint8_t s[12], uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 15) | (s[j] >> 6) << 4);
        mn[j + 4] = (uint8_t)((s[j + 8] >> 4) | (s[j + 4] >> 6) << 4);
    }
}

/* The codes q - 32 (-32..31) of Q6_K sub-block j (elements 32j .. 32j + 31) of b. */
static inline void qm_q6k_codes(const qm_block_q6_k *b, int j, int c[32]) {
    const int h = j / 4, k = j % 4;
    for (int l = 0; l < 32; l++) {
        const int lo = (b->ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
        const int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
        c[l] = (lo | hi << 4) - 32;
    }
}

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

/* Q4_0 or Q5_0 blocks rewritten as Q8_0 blocks with the same values (the load-time repacking,
 * model.h): d copied, each code q stored as the int8 q - 8 or q - 16. The reference's products
 * d * (float)(q - 16) and Q8_0's (float)q * d are the same exact product, so every weight
 * dequantizes to the same bits. Returns 0 for another type (nothing written), else the bytes
 * written (nblocks * 34). */
size_t qm_requant_q8_0(qm_dtype dt, const void *blocks, size_t nblocks, void *out);

/* f32 -> IEEE half, round to nearest even (subnormals; overflow to inf; NaN stays NaN), as
 * numpy's astype(float16) and F16C's vcvtps2ph. */
uint16_t qm_quant_f32_to_f16(float f);

#endif
