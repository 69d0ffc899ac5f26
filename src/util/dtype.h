/* Element types of weights as stored in checkpoints. Activations are always f32.
 *
 * F32, F16 and BF16 are plain element types. The others are GGUF block quantizations: a row of
 * n elements is n / qm_dtype_block(t) blocks of qm_dtype_block_bytes(t) bytes each (layouts and
 * the exact dequantization: kernels/quant.h). qm_dtype_size is for the plain types only. */
#ifndef QM_UTIL_DTYPE_H
#define QM_UTIL_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    QM_DT_F32 = 0,
    QM_DT_F16 = 1,
    QM_DT_BF16 = 2,
    QM_DT_Q8_0, /* 32 elements: f16 d, 32 x int8                                  34 bytes */
    QM_DT_Q4_0, /* 32: f16 d, 16 bytes of 4-bit codes (x = d * (q - 8))            18 bytes */
    QM_DT_Q4_1, /* 32: f16 d, f16 m, 16 bytes of codes (x = d * q + m)             20 bytes */
    QM_DT_Q5_0, /* 32: f16 d, 4 bytes of 5th bits, 16 bytes of codes               22 bytes */
    QM_DT_Q5_1, /* 32: f16 d, f16 m, 4 + 16 bytes                                  24 bytes */
    QM_DT_Q4_K, /* 256: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 codes 144 bytes */
    QM_DT_Q5_K, /* 256: as Q4_K + 32 bytes of 5th bits                            176 bytes */
    QM_DT_Q6_K, /* 256: 128 low nibbles, 64 high 2-bit, 16 int8 scales, f16 d     210 bytes */
    /* In memory only (never in a file): Q4_0 / Q5_0 / Q4_K rows interleaved 8 at a time for the fast
     * mode's kernels (kernels/rows8.h), the same bytes a block on average. */
    QM_DT_Q4_0_R8, /* 8 rows x 32: 8 f16 d, 8 x 16 code bytes               8 x 18 bytes */
    QM_DT_Q5_0_R8, /* 8 rows x 32: 8 f16 d, 8 x 4 bytes of 5th bits, 8 x 16  8 x 22 bytes */
    QM_DT_Q4_K_R8, /* 8 rows x 256: 8 d, 8 dmin, 8 x 12 scale bytes, 8 x 128  8 x 144 bytes */
    QM_DT_COUNT
} qm_dtype;

/* Elements per block: 1 for the plain types, 32 or 256 for the quantized ones. */
static inline int qm_dtype_block(qm_dtype t) {
    return t <= QM_DT_BF16 ? 1 : (t >= QM_DT_Q4_K && t <= QM_DT_Q6_K) || t == QM_DT_Q4_K_R8 ? 256 : 32;
}
/* Bytes per block (for the plain types: per element). */
static inline size_t qm_dtype_block_bytes(qm_dtype t) {
    static const unsigned char bytes[QM_DT_COUNT] = {4, 2, 2, 34, 18, 20, 22, 24, 144, 176, 210, 18, 22, 144};
    return bytes[t];
}
static inline int qm_dtype_is_quant(qm_dtype t) { return t > QM_DT_BF16; }
/* The interleaved in-memory types (QM_DT_Q4_0_R8, QM_DT_Q5_0_R8, QM_DT_Q4_K_R8), and the file type
 * of each. */
static inline int qm_dtype_is_rows8(qm_dtype t) { return t >= QM_DT_Q4_0_R8 && t <= QM_DT_Q4_K_R8; }
static inline qm_dtype qm_dtype_rows8_base(qm_dtype t) {
    return t == QM_DT_Q4_0_R8 ? QM_DT_Q4_0 : t == QM_DT_Q5_0_R8 ? QM_DT_Q5_0 : QM_DT_Q4_K;
}
/* The interleaved type of file type t, QM_DT_COUNT where it has none. */
static inline qm_dtype qm_dtype_rows8_of(qm_dtype t) {
    return t == QM_DT_Q4_0   ? QM_DT_Q4_0_R8
           : t == QM_DT_Q5_0 ? QM_DT_Q5_0_R8
           : t == QM_DT_Q4_K ? QM_DT_Q4_K_R8
                             : QM_DT_COUNT;
}
/* CALL(QM_DT_x) for the quantized type t, the type a compile-time constant there so that an
 * inlined kernel is specialised per type; nothing for the plain types. */
#define QM_SWITCH_QUANT_DTYPE(t, CALL)                                                              \
    do {                                                                                           \
        switch (t) {                                                                               \
        case QM_DT_Q8_0: CALL(QM_DT_Q8_0); break;                                                  \
        case QM_DT_Q4_0: CALL(QM_DT_Q4_0); break;                                                  \
        case QM_DT_Q4_1: CALL(QM_DT_Q4_1); break;                                                  \
        case QM_DT_Q5_0: CALL(QM_DT_Q5_0); break;                                                  \
        case QM_DT_Q5_1: CALL(QM_DT_Q5_1); break;                                                  \
        case QM_DT_Q4_K: CALL(QM_DT_Q4_K); break;                                                  \
        case QM_DT_Q5_K: CALL(QM_DT_Q5_K); break;                                                  \
        case QM_DT_Q6_K: CALL(QM_DT_Q6_K); break;                                                  \
        default: break;                                                                            \
        }                                                                                          \
    } while (0)
/* Bytes of n elements (n a multiple of the block for quantized types). */
static inline size_t qm_dtype_row_bytes(qm_dtype t, size_t n) {
    return n / (size_t)qm_dtype_block(t) * qm_dtype_block_bytes(t);
}
/* Element size of a plain type (F32, F16, BF16). */
static inline size_t qm_dtype_size(qm_dtype t) { return t == QM_DT_F32 ? 4 : 2; }
static inline const char *qm_dtype_name(qm_dtype t) {
    static const char *const names[QM_DT_COUNT] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1",
                                                   "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K",
                                                   "Q4_0x8", "Q5_0x8", "Q4_Kx8"};
    return (unsigned)t < QM_DT_COUNT ? names[t] : "?";
}

/* bf16 -> f32 is exact: the bf16 bits are the top half of the f32. */
static inline float qm_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f32 -> bf16, round to nearest even (NaN stays NaN), as torch does. */
static inline uint16_t qm_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE half -> f32, exact (subnormals included). */
static inline float qm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Loads element i of a row of any weight dtype as f32 (exact). */
static inline float qm_load_f32(const void *row, qm_dtype t, size_t i) {
    if (t == QM_DT_F32) return ((const float *)row)[i];
    uint16_t h = ((const uint16_t *)row)[i];
    return t == QM_DT_BF16 ? qm_bf16_to_f32(h) : qm_f16_to_f32(h);
}

#endif
