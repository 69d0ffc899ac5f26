/* The scalar twin of the GGUF block (de)quantizations: the reference gguf.quants (numpy
 * float32, one rounding per operation) written out literally. quant_avx2.c and quant_avx512.c
 * must give the same bits; tests/test_quant.c compares all three with memcmp, and this file
 * with fixtures made by the reference (scripts/make_quant_fixtures.py).
 *
 * Operation order per element, as gguf 0.19.0 writes it (d, m, dmin: f16 -> f32 exactly;
 * codes: integers -> f32 exactly):
 *   Q8_0  (float)q * d
 *   Q4_0  d * (float)(q - 8)
 *   Q4_1  d * (float)q + m
 *   Q5_0  d * (float)(q - 16)
 *   Q5_1  d * (float)q + m
 *   Q4_K  (d * (float)sc) * (float)q - dmin * (float)mn
 *   Q5_K  (d * (float)sc) * (float)q - dmin * (float)mn
 *   Q6_K  (d * (float)sc) * (float)(q - 32)             sc: int8
 * Every product above is exact in f32 (at most 11 + 7 + 6 significant bits, far from overflow
 * and from f32 subnormals), so only the one addition/subtraction of Q4_1, Q5_1, Q4_K and Q5_K
 * rounds. */
#include <math.h>
#include <string.h>

#include "kernels/quant.h"

static void deq_q8_0(const qm_block_q8_0 *b, float *y) {
    const float d = qm_f16_to_f32(qm_quant_rd16(b->d));
    for (int j = 0; j < 32; j++) y[j] = (float)b->qs[j] * d;
}

static void deq_q4_0(const qm_block_q4_0 *b, float *y) {
    const float d = qm_f16_to_f32(qm_quant_rd16(b->d));
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b->qs[j] & 15) - 8);
        y[j + 16] = d * (float)((b->qs[j] >> 4) - 8);
    }
}

static void deq_q4_1(const qm_block_q4_1 *b, float *y) {
    const float d = qm_f16_to_f32(qm_quant_rd16(b->d)), m = qm_f16_to_f32(qm_quant_rd16(b->m));
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b->qs[j] & 15) + m;
        y[j + 16] = d * (float)(b->qs[j] >> 4) + m;
    }
}

static void deq_q5_0(const qm_block_q5_0 *b, float *y) {
    const float d = qm_f16_to_f32(qm_quant_rd16(b->d));
    const uint32_t qh = qm_quant_rd32(b->qh);
    for (int j = 0; j < 16; j++) {
        int lo = (b->qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)(lo - 16);
        y[j + 16] = d * (float)(hi - 16);
    }
}

static void deq_q5_1(const qm_block_q5_1 *b, float *y) {
    const float d = qm_f16_to_f32(qm_quant_rd16(b->d)), m = qm_f16_to_f32(qm_quant_rd16(b->m));
    const uint32_t qh = qm_quant_rd32(b->qh);
    for (int j = 0; j < 16; j++) {
        int lo = (b->qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        int hi = (b->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)lo + m;
        y[j + 16] = d * (float)hi + m;
    }
}

/* Q4_K and Q5_K share everything but the 5th bit (qh NULL for Q4_K). */
static void deq_k45(const uint8_t *dp, const uint8_t *dminp, const uint8_t *scales,
                    const uint8_t *qh, const uint8_t *qs, float *y) {
    const float d = qm_f16_to_f32(qm_quant_rd16(dp)), dmin = qm_f16_to_f32(qm_quant_rd16(dminp));
    uint8_t sc[8], mn[8];
    qm_quant_k_scales(scales, sc, mn);
    for (int s = 0; s < 8; s++) {
        const float ds = d * (float)sc[s], dm = dmin * (float)mn[s];
        const uint8_t *q = qs + 32 * (s / 2);
        const int shift = 4 * (s & 1);
        for (int l = 0; l < 32; l++) {
            int v = (q[l] >> shift) & 15;
            if (qh) v |= ((qh[l] >> s) & 1) << 4;
            y[32 * s + l] = ds * (float)v - dm;
        }
    }
}

static void deq_q6_k(const qm_block_q6_k *b, float *y) {
    const float d = qm_f16_to_f32(qm_quant_rd16(b->d));
    float ds[16];
    for (int g = 0; g < 16; g++) ds[g] = d * (float)b->scales[g];
    for (int h = 0; h < 2; h++) /* element e = 128h + 32k + l */
        for (int k = 0; k < 4; k++) {
            const uint8_t *ql = b->ql + 64 * h + 32 * (k & 1), *qh = b->qh + 32 * h;
            float *ye = y + 128 * h + 32 * k;
            for (int l = 0; l < 32; l++) {
                const int lo = (ql[l] >> (4 * (k >> 1))) & 15, hi = (qh[l] >> (2 * k)) & 3;
                ye[l] = ds[8 * h + 2 * k + l / 16] * (float)((lo | hi << 4) - 32);
            }
        }
}

void qm_dequant_scalar(qm_dtype dt, const void *blocks, int nblocks, float *out) {
    const uint8_t *p = blocks;
    const size_t bb = qm_dtype_block_bytes(dt);
    const int ne = qm_dtype_block(dt);
    for (int i = 0; i < nblocks; i++, p += bb, out += ne) {
        switch (dt) {
        case QM_DT_Q8_0: deq_q8_0((const qm_block_q8_0 *)p, out); break;
        case QM_DT_Q4_0: deq_q4_0((const qm_block_q4_0 *)p, out); break;
        case QM_DT_Q4_1: deq_q4_1((const qm_block_q4_1 *)p, out); break;
        case QM_DT_Q5_0: deq_q5_0((const qm_block_q5_0 *)p, out); break;
        case QM_DT_Q5_1: deq_q5_1((const qm_block_q5_1 *)p, out); break;
        case QM_DT_Q4_K: {
            const qm_block_q4_k *b = (const qm_block_q4_k *)p;
            deq_k45(b->d, b->dmin, b->scales, NULL, b->qs, out);
            break;
        }
        case QM_DT_Q5_K: {
            const qm_block_q5_k *b = (const qm_block_q5_k *)p;
            deq_k45(b->d, b->dmin, b->scales, b->qh, b->qs, out);
            break;
        }
        case QM_DT_Q6_K: deq_q6_k((const qm_block_q6_k *)p, out); break;
        default: return; /* not a quantized type: nothing to do */
        }
    }
}

void qm_dequant_range(qm_dtype dt, const void *row, size_t e0, size_t n, float *out) {
    if (!qm_dtype_is_quant(dt) || dt >= QM_DT_COUNT || n == 0) return;
    const size_t be = (size_t)qm_dtype_block(dt), bb = qm_dtype_block_bytes(dt);
    float buf[256];
    size_t e = e0;
    while (n > 0) {
        const size_t blk = e / be, off = e % be;
        size_t take = be - off;
        if (take > n) take = n;
        if (off == 0 && take == be) { /* a whole block: straight into out */
            qm_dequant_scalar(dt, (const uint8_t *)row + blk * bb, 1, out);
        } else {
            qm_dequant_scalar(dt, (const uint8_t *)row + blk * bb, 1, buf);
            memcpy(out, buf + off, take * sizeof(float));
        }
        out += take;
        e += take;
        n -= take;
    }
}

/* ---- quantization (gguf.quants.quantize) ---- */

uint16_t qm_quant_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | (ax >> 13)); /* NaN stays NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds to inf */
    uint32_t h, rem, half;
    if (ax >= 0x38800000u) { /* normal half: rebias the exponent, drop 13 mantissa bits */
        h = (ax - 0x38000000u) >> 13;
        rem = ax & 0x1fffu;
        half = 0x1000u;
    } else if (ax > 0x33000000u) { /* subnormal half: value / 2^-24, 14..24 bits dropped */
        const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        const int shift = 126 - (int)(ax >> 23);
        h = m >> shift;
        rem = m & ((1u << shift) - 1u);
        half = 1u << (shift - 1);
    } else { /* <= 2^-25: rounds to zero (the tie 2^-25 goes to even 0) */
        return sign;
    }
    if (rem > half || (rem == half && (h & 1u))) h++; /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
}

/* Q8_0: d = max|x| / 127, q = round-half-away(x * (1/d)) (np_roundf written as the reference:
 * b = floor(a) + floor(2 * (a - floor(a))), a = |x * id|). */
static void quant_q8_0(const float *x, qm_block_q8_0 *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = d == 0.0f ? 0.0f : 1.0f / d;
    for (int j = 0; j < 32; j++) {
        const float v = x[j] * id;
        const float a = fabsf(v);
        const float fl = floorf(a);
        float r = fl + floorf(2.0f * (a - fl));
        if (!(r <= 127.0f)) r = 127.0f; /* only when id overflowed (|x| < ~1e-36): no UB */
        b->qs[j] = (int8_t)(v < 0.0f ? -(int)r : (int)r);
    }
    const uint16_t h = qm_quant_f32_to_f16(d);
    b->d[0] = (uint8_t)h;
    b->d[1] = (uint8_t)(h >> 8);
}

/* Q4_0: max = the first x of largest |x|, d = max / -8, q = min(15, trunc(x * (1/d) + 8.5)). */
static void quant_q4_0(const float *x, qm_block_q4_0 *b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float a = fabsf(x[j]);
        if (a > amax) {
            amax = a;
            max = x[j];
        }
    }
    const float d = max / -8.0f;
    const float id = d == 0.0f ? 0.0f : 1.0f / d;
    uint8_t q[32];
    for (int j = 0; j < 32; j++) {
        float t = x[j] * id;
        t = t + 8.5f;
        /* trunc, then clip to [0, 15] (t >= 0.5 for every finite input) */
        q[j] = (uint8_t)(!(t >= 1.0f) ? 0 : t >= 15.0f ? 15 : (int)t);
    }
    for (int j = 0; j < 16; j++) b->qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
    const uint16_t h = qm_quant_f32_to_f16(d);
    b->d[0] = (uint8_t)h;
    b->d[1] = (uint8_t)(h >> 8);
}

size_t qm_quantize_row(qm_dtype dt, const float *x, size_t n, void *out) {
    if ((dt != QM_DT_Q8_0 && dt != QM_DT_Q4_0) || n % 32 != 0) return 0;
    uint8_t *p = out;
    const size_t bb = qm_dtype_block_bytes(dt);
    for (size_t i = 0; i < n / 32; i++, p += bb, x += 32) {
        if (dt == QM_DT_Q8_0)
            quant_q8_0(x, (qm_block_q8_0 *)p);
        else
            quant_q4_0(x, (qm_block_q4_0 *)p);
    }
    return qm_dtype_row_bytes(dt, n);
}

size_t qm_requant_q8_0(qm_dtype dt, const void *blocks, size_t nblocks, void *out) {
    if (dt != QM_DT_Q4_0 && dt != QM_DT_Q5_0) return 0;
    const size_t in_bytes = qm_dtype_block_bytes(dt);
    for (size_t i = 0; i < nblocks; i++) {
        const uint8_t *b = (const uint8_t *)blocks + i * in_bytes;
        qm_block_q8_0 *o = (qm_block_q8_0 *)out + i;
        memcpy(o->d, b, 2);
        const uint32_t qh = dt == QM_DT_Q5_0 ? qm_quant_rd32(b + 2) : 0;
        const uint8_t *qs = b + (dt == QM_DT_Q5_0 ? 6 : 2);
        for (int l = 0; l < 16; l++) {
            int lo = qs[l] & 15, hi = qs[l] >> 4;
            if (dt == QM_DT_Q5_0) {
                lo |= (int)(qh >> l & 1) << 4;
                hi |= (int)(qh >> (l + 16) & 1) << 4;
            }
            const int off = dt == QM_DT_Q5_0 ? 16 : 8;
            o->qs[l] = (int8_t)(lo - off);
            o->qs[l + 16] = (int8_t)(hi - off);
        }
    }
    return nblocks * sizeof(qm_block_q8_0);
}
