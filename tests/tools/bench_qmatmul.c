/* Quantized matmul (exact mode): a bit-exactness check of every ISA against the scalar twin over
 * many shapes (column offsets, edges, token counts up to past a prefill step, row ranges, bias,
 * row-parallel 64-column views; the plain types' row-parallel layers as well), and a speed report in ns per weight element (decode) and per
 * weight element x token (prefill). The check runs in the suite as test_qmatmul_exact; the bench
 * by hand:
 *
 *   build/tests/bench_qmatmul check [trials]      bit-exactness (exit 1 on a mismatch)
 *   build/tests/bench_qmatmul bench [isa] [types] speed (types: comma-separated names, e.g. Q4_K)
 *   build/tests/bench_qmatmul dec [isa] [types [rows cols]]  the fast mode's decode columns only, more repetitions
 *   build/tests/bench_qmatmul rp isa type rows cols views [col0 ld [bc]] one row-parallel shape from DRAM
 *   build/tests/bench_qmatmul pre isa TYPE rows cols n_tok [bc]  prefill GFLOP/s: matmul, blocks, nodes (blocks of bc columns, 64)
 *   build/tests/bench_qmatmul head isa [TYPE] rows cols n_tok  the head filter's first pass against matmul_q8 (Q8_0, Q6_K)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

typedef struct { uint64_t s; } rng_t;
static uint64_t rng_u64(rng_t *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int rng_int(rng_t *r, int lo, int hi) { return lo + (int)(rng_u64(r) % (uint64_t)(hi - lo + 1)); }
static float rand_f32(rng_t *r) {
    uint64_t u = rng_u64(r);
    if ((u & 63) == 0) return (u & 64) ? -0.0f : 0.0f;
    uint32_t b = (uint32_t)(u >> 63) << 31 | (uint32_t)(127 - 6 + (int)((u >> 32) % 13)) << 23 |
                 ((uint32_t)(u >> 6) & 0x7fffffu);
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static const qm_dtype dts[] = {QM_DT_Q8_0, QM_DT_Q4_0, QM_DT_Q4_1, QM_DT_Q5_0,
                               QM_DT_Q5_1, QM_DT_Q4_K, QM_DT_Q5_K, QM_DT_Q6_K};
#define NDT ((int)(sizeof dts / sizeof dts[0]))

/* Random blocks; the f16 scale fields finite and moderate (wild: any finite f16, zero included). */
static void *make_q(rng_t *r, qm_dtype dt, size_t nblocks, int wild) {
    size_t bb = qm_dtype_block_bytes(dt);
    unsigned char *p = malloc(nblocks * bb); /* exact: an over-read shows under ASan */
    for (size_t i = 0; i < nblocks * bb; i++) p[i] = (unsigned char)rng_u64(r);
    for (size_t b = 0; b < nblocks; b++) {
        unsigned char *blk = p + b * bb;
        for (int k = 0; k < 2; k++) {
            uint64_t u = rng_u64(r);
            uint16_t s = wild ? (uint16_t)(u & 0xffff) : (uint16_t)(((u >> 20) & 1u) << 15 | (uint16_t)(5 + u % 16) << 10 |
                                                                   ((u >> 32) & 0x3ffu));
            if (wild && (s & 0x7c00) == 0x7c00) s &= 0xbfff; /* no inf/NaN */
            if (k == 0) memcpy(blk + (dt == QM_DT_Q6_K ? 208 : 0), &s, 2);
            else if (dt == QM_DT_Q4_1 || dt == QM_DT_Q5_1 || dt == QM_DT_Q4_K || dt == QM_DT_Q5_K) memcpy(blk + 2, &s, 2);
        }
    }
    return p;
}

static int n_isa;
static qm_kernels isa[8];
static const qm_kernels *scal;

static void init_isas(void) {
    const char *names[8];
    int n = qm_kernels_supported(names, 8);
    for (int i = 0; i < n; i++) {
        qm_error err;
        if (qm_kernels_select(names[i], &isa[n_isa], &err) == QM_OK) n_isa++;
    }
    for (int i = 0; i < n_isa; i++)
        if (!strcmp(isa[i].isa, "scalar")) scal = &isa[i];
}

static long n_checked;

/* One view (rows [o_b, o_e)), every ISA against the scalar twin; returns 0 when all agree. */
static int check_one(const qm_wview *v, const float *bias, const float *x, size_t ldx, int n_tok, size_t ldy, int o_b,
                     int o_e, const char *what) {
    size_t ny = (size_t)n_tok * ldy;
    float *ref = malloc(ny * 4), *got = malloc(ny * 4);
    for (size_t i = 0; i < ny; i++) ref[i] = got[i] = 12345.0f;
    scal->matmul(v, bias, x, ldx, n_tok, ref, ldy, o_b, o_e);
    int bad = 0;
    for (int k = 0; k < n_isa && !bad; k++) {
        if (&isa[k] == scal) continue;
        for (size_t i = 0; i < ny; i++) got[i] = 12345.0f;
        isa[k].matmul(v, bias, x, ldx, n_tok, got, ldy, o_b, o_e);
        if (memcmp(ref, got, ny * 4)) {
            size_t i = 0;
            while (!memcmp(&ref[i], &got[i], 4)) i++;
            fprintf(stderr, "MISMATCH %s %s %s rows [%d,%d) cols %d col0 %d n_tok %d ld %zu: y[%zu] %a vs %a\n", what,
                    isa[k].isa, qm_dtype_name(v->dtype), o_b, o_e, v->cols, v->col0, n_tok, v->ld, i, got[i], ref[i]);
            bad = 1;
        }
        n_checked++;
    }
    free(ref);
    free(got);
    return bad;
}

/* The fast mode on view v (whole 32-blocks): x quantized by the scalar quantizer, then matmul_q8
 * of every ISA against the scalar twin (decode, and prefill over several token blocks). */
static int check_q8_one(const qm_wview *v, const float *bias, const float *x, size_t ldx, int n_tok, size_t ldy,
                        int o_b, int o_e) {
    const size_t nq = (size_t)n_tok * (size_t)v->cols, ny = (size_t)n_tok * ldy;
    int8_t *xq = malloc(nq);
    float *xd = malloc((nq / 32 + 1) * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4);
    int32_t *xs = malloc((nq / 32 + 1) * 4);
    for (int t = 0; t < n_tok; t++)
        qm_quantize_act_scalar(x + (size_t)t * ldx, v->cols, xq + (size_t)t * (size_t)v->cols,
                               xd + (size_t)t * (size_t)v->cols / 32, xs + (size_t)t * (size_t)v->cols / 32);
    const qm_q8act a = {xq, xd, xs, (size_t)v->cols / 32};
    for (size_t i = 0; i < ny; i++) ref[i] = 12345.0f;
    qm_matmul_q8_scalar(v, bias, &a, n_tok, ref, ldy, o_b, o_e);
    int bad = 0;
    for (int k = 0; k < n_isa && !bad; k++) {
        for (size_t i = 0; i < ny; i++) got[i] = 12345.0f;
        isa[k].matmul_q8(v, bias, &a, n_tok, got, ldy, o_b, o_e);
        if (memcmp(ref, got, ny * 4)) {
            size_t i = 0;
            while (!memcmp(&ref[i], &got[i], 4)) i++;
            fprintf(stderr, "MISMATCH q8 %s %s rows [%d,%d) cols %d col0 %d n_tok %d: y[%zu] %a vs %a\n", isa[k].isa,
                    qm_dtype_name(v->dtype), o_b, o_e, v->cols, v->col0, n_tok, i, got[i], ref[i]);
            bad = 1;
        }
        n_checked++;
    }
    free(xq);
    free(xd);
    free(xs);
    free(ref);
    free(got);
    return bad;
}

/* matmul_q8_nodes (a: the quantized x) or the exact mode's matmul_nodes (x, a NULL) of every ISA
 * that has it against the halving tree (kernels.h qm_tree_halving_sum) of the reference leaves
 * `leaves` ([nb][n_tok][d], as matmul_q8_blocks lays them out), on a random split of the nb blocks
 * into consecutive nodes. */
static int check_nodes(rng_t *r, const qm_wview *v, const float *x, const qm_q8act *a, int n_tok, int bc, int nb,
                       const float *leaves, int o_b, int o_e) {
    const int d = v->rows;
    const size_t pstride = (size_t)n_tok * (size_t)d, ny = (size_t)nb * pstride;
    qm_leaf_node nodes[64];
    int m = 0;
    for (int first = 0; first < nb && m < 64; m++) {
        const int count = m == 63 ? nb - first : rng_int(r, 1, nb - first);
        nodes[m] = (qm_leaf_node){first, count};
        first += count;
    }
    float *ref = malloc(ny * 4), *got = malloc(ny * 4), *scratch = malloc(ny * 4);
    memcpy(scratch, leaves, ny * 4);
    for (size_t i = 0; i < ny; i++) ref[i] = got[i] = 12345.0f;
    for (int i = 0; i < m; i++) {
        const float *node = qm_tree_halving_sum(scratch, pstride, nodes[i].first, nodes[i].count);
        for (int t = 0; t < n_tok; t++)
            memcpy(ref + (size_t)i * pstride + (size_t)t * d + o_b, node + (size_t)t * d + o_b, (size_t)(o_e - o_b) * 4);
    }
    int bad = 0;
    for (int k = 0; k < n_isa && !bad; k++) {
        if (a ? !isa[k].matmul_q8_nodes : !isa[k].matmul_nodes) continue;
        for (size_t i = 0; i < ny; i++) got[i] = 12345.0f;
        if (a ? !isa[k].matmul_q8_nodes(v, a, n_tok, bc, nb, nodes, m, got, pstride, (size_t)d, o_b, o_e)
              : !isa[k].matmul_nodes(v, x, (size_t)v->cols, n_tok, bc, nb, nodes, m, got, pstride, (size_t)d, o_b, o_e))
            continue;
        if (memcmp(ref, got, ny * 4)) {
            size_t i = 0;
            while (!memcmp(&ref[i], &got[i], 4)) i++;
            fprintf(stderr, "MISMATCH nodes%s %s %s rows [%d,%d) cols %d col0 %d bc %d n_tok %d nodes %d: y[%zu] %a vs %a\n",
                    a ? " q8" : "", isa[k].isa, qm_dtype_name(v->dtype), o_b, o_e, v->cols, v->col0, bc, n_tok, m, i,
                    got[i], ref[i]);
            bad = 1;
        }
        n_checked++;
    }
    free(ref);
    free(got);
    free(scratch);
    return bad;
}

/* A row-parallel layer of view v (blocks of bc columns), matmul_blocks and, where the view is
 * whole 32-blocks, matmul_q8_blocks, every ISA against the per-view loop with
 * the scalar kernels; returns 0 when all agree. */
static int check_blocks(rng_t *r, const qm_wview *v, int bc, int n_tok, int o_b, int o_e) {
    const int nb = (v->cols + bc - 1) / bc, d = v->rows;
    const size_t ldx = (size_t)v->cols, pstride = (size_t)n_tok * (size_t)d, ny = (size_t)nb * pstride;
    float *x = malloc((size_t)n_tok * ldx * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4);
    for (size_t i = 0; i < (size_t)n_tok * ldx; i++) x[i] = rand_f32(r);
    const int q8ok = qm_dtype_is_quant(v->dtype) && v->col0 % 32 == 0 && v->cols % 32 == 0 && bc % 32 == 0;
    int8_t *xq = malloc((size_t)n_tok * ldx + 32);
    float *xd = malloc(((size_t)n_tok * ldx / 32 + 1) * 4);
    int32_t *xs = malloc(((size_t)n_tok * ldx / 32 + 1) * 4);
    if (q8ok)
        for (int t = 0; t < n_tok; t++)
            scal->quantize_act(x + (size_t)t * ldx, v->cols, xq + (size_t)t * ldx, xd + (size_t)t * ldx / 32,
                               xs + (size_t)t * ldx / 32);
    const qm_q8act a = {xq, xd, xs, ldx / 32};
    int bad = 0;
    for (int use_q8 = 0; use_q8 < 2 && !bad; use_q8++) {
        if (use_q8 && !q8ok) continue;
        for (size_t i = 0; i < ny; i++) ref[i] = 12345.0f;
        if (use_q8) qm_q8_blocks_by_views(qm_matmul_q8_scalar, v, &a, n_tok, bc, nb, ref, pstride, (size_t)d, o_b, o_e);
        else qm_blocks_by_views(scal->matmul, v, x, ldx, n_tok, bc, nb, ref, pstride, (size_t)d, o_b, o_e);
        bad |= check_nodes(r, v, x, use_q8 ? &a : NULL, n_tok, bc, nb, ref, o_b, o_e);
        for (int k = 0; k < n_isa && !bad; k++) {
            for (size_t i = 0; i < ny; i++) got[i] = 12345.0f;
            if (use_q8) isa[k].matmul_q8_blocks(v, &a, n_tok, bc, nb, got, pstride, (size_t)d, o_b, o_e);
            else isa[k].matmul_blocks(v, x, ldx, n_tok, bc, nb, got, pstride, (size_t)d, o_b, o_e);
            if (memcmp(ref, got, ny * 4)) {
                size_t i = 0;
                while (!memcmp(&ref[i], &got[i], 4)) i++;
                fprintf(stderr, "MISMATCH blocks%s %s %s rows [%d,%d) cols %d col0 %d bc %d n_tok %d: y[%zu] %a vs %a\n",
                        use_q8 ? " q8" : "", isa[k].isa, qm_dtype_name(v->dtype), o_b, o_e,
                        v->cols, v->col0, bc, n_tok, i, got[i], ref[i]);
                bad = 1;
            }
            n_checked++;
        }
    }
    free(x);
    free(ref);
    free(got);
    free(xq);
    free(xd);
    free(xs);
    return bad;
}

/* The plain types (F32, F16, BF16) of a row-parallel layer: matmul_blocks of every ISA against the
 * per-view loop with the scalar kernels, on the forward's shapes (rows of whole 64-column blocks,
 * a device's slice of them) and others (any length, a block size the fast paths leave alone). */
static int check_dense_blocks(int trials) {
    static const qm_dtype plain[] = {QM_DT_F32, QM_DT_F16, QM_DT_BF16};
    static const int bcs[] = {64, 64, 128, 32, 48};
    rng_t r = {77};
    int fails = 0;
    for (int tr = 0; tr < trials && fails <= 10; tr++) {
        const qm_dtype dt = plain[tr % 3];
        const int rows = rng_int(&r, 1, 40), bc = bcs[rng_int(&r, 0, 4)];
        const int ld = rng_int(&r, 0, 3) ? 64 * rng_int(&r, 1, 80) : rng_int(&r, 1, 700);
        const int col0 = rng_int(&r, 0, 1) ? 0 : 64 * rng_int(&r, 0, (ld - 1) / 64);
        const int cols = rng_int(&r, 0, 2) ? ld - col0 : rng_int(&r, 1, ld - col0);
        const size_t esz = qm_dtype_block_bytes(dt), n = (size_t)rows * (size_t)ld;
        unsigned char *p = malloc(n * esz);
        for (size_t i = 0; i < n; i++) {
            const float f = rand_f32(&r);
            if (dt == QM_DT_F32) memcpy(p + 4 * i, &f, 4);
            else if (dt == QM_DT_BF16) {
                const uint16_t h = qm_f32_to_bf16(f);
                memcpy(p + 2 * i, &h, 2);
            } else {
                const uint16_t h = (uint16_t)((rng_u64(&r) & 0x83ffu) | (uint16_t)(8 + rng_int(&r, 0, 13)) << 10);
                memcpy(p + 2 * i, &h, 2);
            }
        }
        const qm_wview v = {p + (size_t)col0 * esz, dt, (size_t)ld, rows, cols, 0};
        int o_b = 0, o_e = rows;
        if (rng_int(&r, 0, 3) == 0) {
            o_b = rng_int(&r, 0, rows - 1);
            o_e = rng_int(&r, o_b + 1, rows);
        }
        const int nt = rng_int(&r, 0, 2) ? 1 : rng_int(&r, 0, 4) ? rng_int(&r, 2, 20) : rng_int(&r, 60, 80);
        fails += check_blocks(&r, &v, bc, nt, o_b, o_e);
        { /* the whole view as a prefill (the kernels' panel path from some 20 tokens, over token groups) */
            const int n_tok = rng_int(&r, 0, 1) ? rng_int(&r, 9, 40) : rng_int(&r, 60, 140);
            const size_t ldx = (size_t)cols + (size_t)rng_int(&r, 0, 3), ldy = (size_t)rows + (size_t)rng_int(&r, 0, 2);
            float *x = malloc((size_t)n_tok * ldx * 4), *bias = malloc((size_t)rows * 4);
            for (size_t i = 0; i < (size_t)n_tok * ldx; i++) x[i] = rand_f32(&r);
            for (int i = 0; i < rows; i++) bias[i] = rand_f32(&r);
            fails += check_one(&v, rng_int(&r, 0, 1) ? bias : NULL, x, ldx, n_tok, ldy, o_b, o_e, "plain prefill");
            free(x);
            free(bias);
        }
        free(p);
    }
    return fails;
}

/* A device that owns no block of a layer (a view of 0 columns, nb 0): the nodes kernels leave it
 * to the walk (return 0) or do nothing, and write nothing. */
static int check_empty_nodes(void) {
    static const qm_dtype types[] = {QM_DT_Q4_K, QM_DT_Q6_K, QM_DT_Q8_0, QM_DT_F32, QM_DT_BF16};
    static const unsigned char blk[256] = {0};
    const float x[64] = {0};
    const int8_t xq[64] = {0};
    const float xd[2] = {0};
    const int32_t xs[2] = {0};
    const qm_q8act a = {xq, xd, xs, 2};
    const qm_leaf_node node = {0, 0};
    int fails = 0;
    for (int k = 0; k < n_isa; k++)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            const qm_wview v = {blk, types[i], (size_t)qm_dtype_block(types[i]), 4, 0, 0};
            float out[8];
            for (int j = 0; j < 8; j++) out[j] = 12345.0f;
            if (isa[k].matmul_nodes) isa[k].matmul_nodes(&v, x, 64, 1, 64, 0, &node, 0, out, 4, 4, 0, 4);
            if (isa[k].matmul_q8_nodes && qm_dtype_is_quant(types[i]))
                isa[k].matmul_q8_nodes(&v, &a, 1, 64, 0, &node, 0, out, 4, 4, 0, 4);
            for (int j = 0; j < 8; j++)
                if (out[j] != 12345.0f) {
                    fprintf(stderr, "MISMATCH empty nodes %s %s: out[%d] written\n", isa[k].isa,
                            qm_dtype_name(types[i]), j);
                    fails++;
                    break;
                }
            n_checked++;
        }
    return fails;
}

static int check(int trials) {
    rng_t r = {2024};
    int fails = 0;
    for (int d = 0; d < NDT; d++) {
        qm_dtype dt = dts[d];
        int qk = qm_dtype_block(dt);
        size_t bb = qm_dtype_block_bytes(dt);
        for (int tr = 0; tr < trials; tr++) {
            int nblocks = rng_int(&r, 1, qk == 32 ? 48 : 7);
            int rows = rng_int(&r, 0, 7) == 0 ? rng_int(&r, 42, 150) : rng_int(&r, 1, 41);
            if (tr % 25 == 7) { /* rows longer than the kernels' column chunks */
                nblocks = qk == 32 ? rng_int(&r, 120, 300) : rng_int(&r, 15, 38);
                rows = rng_int(&r, 1, 9);
            }
            int ld = nblocks * qk;
            int shape = tr % 4, col0, cols;
            if (shape == 0) { /* whole rows */
                col0 = 0;
                cols = ld;
            } else if (shape == 1) { /* the forward's 64-column views (32 rows each) */
                col0 = 64 * rng_int(&r, 0, (ld - 1) / 64);
                cols = ld - col0 < 64 ? ld - col0 : 64;
                if (rng_int(&r, 0, 1)) cols = ld - col0;
            } else { /* any column offset that is a multiple of 16, any length */
                col0 = 16 * rng_int(&r, 0, (ld - 1) / 16);
                cols = rng_int(&r, 1, ld - col0);
            }
            int wild = rng_int(&r, 0, 7) == 0;
            void *q = make_q(&r, dt, (size_t)rows * (size_t)nblocks, wild);
            qm_wview v = {(const char *)q + (size_t)(col0 / qk) * bb, dt, (size_t)ld, rows, cols, col0 % qk};
            int nt_pick = rng_int(&r, 0, 9);
            int n_tok = nt_pick < 5 ? rng_int(&r, 1, 8) : nt_pick < 9 ? rng_int(&r, 9, 40) : rng_int(&r, 120, 140);
            size_t ldx = (size_t)cols + (size_t)rng_int(&r, 0, 3) * 16 + (size_t)rng_int(&r, 0, 1);
            float *x = malloc((size_t)n_tok * ldx * 4);
            for (size_t i = 0; i < (size_t)n_tok * ldx; i++) x[i] = rand_f32(&r);
            float *bias = NULL;
            if (rng_int(&r, 0, 2) == 0) {
                bias = malloc((size_t)rows * 4);
                for (int i = 0; i < rows; i++) bias[i] = rand_f32(&r);
            }
            size_t ldy = (size_t)rows + (size_t)rng_int(&r, 0, 2);
            int o_b = 0, o_e = rows;
            if (rng_int(&r, 0, 3) == 0) {
                o_b = rng_int(&r, 0, rows - 1);
                o_e = rng_int(&r, o_b + 1, rows);
            }
            fails += check_one(&v, bias, x, ldx, n_tok, ldy, o_b, o_e, "view");
            if (col0 % 32 == 0 && cols % 32 == 0) fails += check_q8_one(&v, bias, x, ldx, n_tok, ldy, o_b, o_e);
            {
                static const int bcs[] = {64, 64, 32, 128, 48};
                const int bc = bcs[rng_int(&r, 0, 4)], nt = rng_int(&r, 0, 2)   ? 1
                                                                 : rng_int(&r, 0, 4) ? rng_int(&r, 2, 20)
                                                                                     : rng_int(&r, 60, 80);
                fails += check_blocks(&r, &v, bc, nt, o_b, o_e);
            }
            /* the row-parallel calls: 64-column views of the whole rows, 32 rows at a time */
            if (shape == 1 && col0 == 0) {
                qm_wview full = {q, dt, (size_t)ld, rows, ld, 0};
                for (int c0 = 0; c0 < ld && c0 < 64 * 6; c0 += 64) {
                    int c1 = c0 + 64 < ld ? c0 + 64 : ld;
                    qm_wview blk = qm_wview_cols(&full, c0, c1);
                    size_t ldx2 = (size_t)ld;
                    float *x2 = malloc((size_t)n_tok * ldx2 * 4);
                    for (size_t i = 0; i < (size_t)n_tok * ldx2; i++) x2[i] = rand_f32(&r);
                    for (int o0 = 0; o0 < rows; o0 += 32)
                        fails += check_one(&blk, NULL, x2 + c0, ldx2, n_tok, (size_t)rows, o0,
                                           o0 + 32 < rows ? o0 + 32 : rows, "rowpar");
                    free(x2);
                }
            }
            free(bias);
            free(x);
            free(q);
            if (fails > 10) return fails;
        }
    }
    return fails;
}

/* ---- speed ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The fast mode's activations of the speed runs: n_tok rows of x [n_tok][cols] quantized by k
 * (as forward.c does once per step); free with q8rows_free. */
typedef struct {
    int8_t *q;
    float *d;
    int32_t *s;
} q8rows;

static qm_q8act q8rows_make(const qm_kernels *k, const float *x, int n_tok, int cols, q8rows *b) {
    const size_t nb = (size_t)n_tok * (size_t)cols / 32;
    *b = (q8rows){malloc(nb * 32), malloc(nb * sizeof(float)), malloc(nb * sizeof(int32_t))};
    for (int t = 0; t < n_tok; t++)
        k->quantize_act(x + (size_t)t * (size_t)cols, cols, b->q + (size_t)t * (size_t)cols,
                        b->d + (size_t)t * (size_t)cols / 32, b->s + (size_t)t * (size_t)cols / 32);
    return (qm_q8act){b->q, b->d, b->s, (size_t)cols / 32};
}

static void q8rows_free(q8rows *b) {
    free(b->q);
    free(b->d);
    free(b->s);
}

/* Column-parallel: the whole view, all rows. Row-parallel: blocks of 64 columns, each to its slot, as
 * forward.c's row_parallel (matmul_blocks). Returns the best of reps, seconds. */
static double run(const qm_kernels *k, const qm_wview *w, const float *x, int n_tok, float *y, int rowpar, int reps) {
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now_s();
        if (!rowpar) k->matmul(w, NULL, x, (size_t)w->cols, n_tok, y, (size_t)w->rows, 0, w->rows);
        else k->matmul_blocks(w, x, (size_t)w->cols, n_tok, 64, (w->cols + 63) / 64, y, (size_t)n_tok * (size_t)w->rows,
                              (size_t)w->rows, 0, w->rows);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* The fast mode's run: x quantized once (as forward.c does per step), then matmul_q8. */
static double run_q8(const qm_kernels *k, const qm_wview *w, const qm_q8act *a, int n_tok, float *y, int rowpar,
                     int reps) {
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now_s();
        if (!rowpar) k->matmul_q8(w, NULL, a, n_tok, y, (size_t)w->rows, 0, w->rows);
        else k->matmul_q8_blocks(w, a, n_tok, 64, (w->cols + 63) / 64, y, (size_t)n_tok * (size_t)w->rows, (size_t)w->rows, 0,
                                 w->rows);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* The kernels of ISA isa_name, or exit 2. */
static qm_kernels kernels_or_exit(const char *isa_name) {
    qm_kernels k;
    qm_error err;
    if (qm_kernels_select(isa_name, &k, &err) != QM_OK) {
        fprintf(stderr, "no ISA %s\n", isa_name);
        exit(2);
    }
    return k;
}

static void bench(const char *isa_name, const char *types) {
    qm_kernels k = kernels_or_exit(isa_name);
    rng_t r = {99};
    printf("isa %s: ns per weight element (decode: n_tok 1, weights from DRAM) / per element x token (prefill: n_tok 64)\n",
           k.isa);
    printf("%-5s %10s %10s %10s %10s %10s %10s\n", "type", "dec_full", "dec_rowpar", "dec_hot", "dechot_rp", "pre_full",
           "pre_rowpar");
    for (int d = 0; d < NDT; d++) {
        qm_dtype dt = dts[d];
        if (types && !strstr(types, qm_dtype_name(dt))) continue;
        /* decode: ~64M elements, more than the L3 */
        const int dcols = 1536, drows = 40960, rcols = 8960, rrows = 7168;
        size_t nb = (size_t)drows * dcols / (size_t)qm_dtype_block(dt);
        void *q = make_q(&r, dt, nb, 0);
        /* y: outputs, or the row-parallel views' block partials ([blocks][n_tok][rows]) */
        const size_t ny = (size_t)64 * drows > (size_t)(rcols / 64) * 64 * 448 ? (size_t)64 * drows : (size_t)(rcols / 64) * 64 * 448;
        float *x = malloc((size_t)64 * rcols * 4), *y = malloc(ny * 4);
        for (size_t i = 0; i < (size_t)64 * rcols; i++) x[i] = rand_f32(&r);
        qm_wview wf = {q, dt, (size_t)dcols, drows, dcols, 0};
        double tdf = run(&k, &wf, x, 1, y, 0, 3) / ((double)drows * dcols) * 1e9;
        qm_wview wr = {q, dt, (size_t)rcols, rrows, rcols, 0};
        double tdr = run(&k, &wr, x, 1, y, 1, 3) / ((double)rrows * rcols) * 1e9;
        /* decode with the weights in the L2: the kernel's own cost */
        qm_wview hf = {q, dt, (size_t)dcols, 256, dcols, 0};
        double thf = run(&k, &hf, x, 1, y, 0, 50) / (256.0 * dcols) * 1e9;
        qm_wview hr = {q, dt, (size_t)rcols, 64, rcols, 0};
        double thr = run(&k, &hr, x, 1, y, 1, 50) / (64.0 * rcols) * 1e9;
        /* prefill: 64 tokens on a smaller matrix */
        qm_wview pf = {q, dt, (size_t)dcols, 2048, dcols, 0};
        double tpf = run(&k, &pf, x, 64, y, 0, 2) / (2048.0 * dcols * 64) * 1e9;
        qm_wview pr = {q, dt, (size_t)rcols, 448, rcols, 0};
        double tpr = run(&k, &pr, x, 64, y, 1, 2) / (448.0 * rcols * 64) * 1e9;
        printf("%-5s %10.4f %10.4f %10.4f %10.4f %10.4f %10.4f\n", qm_dtype_name(dt), tdf, tdr, thf, thr, tpf, tpr);
        /* the fast mode on the same views (x quantized per 32 elements, rows of rcols) */
        q8rows xb;
        const qm_q8act a = q8rows_make(&k, x, 64, rcols, &xb);
        tdf = run_q8(&k, &wf, &a, 1, y, 0, 3) / ((double)drows * dcols) * 1e9;
        tdr = run_q8(&k, &wr, &a, 1, y, 1, 3) / ((double)rrows * rcols) * 1e9;
        thf = run_q8(&k, &hf, &a, 1, y, 0, 50) / (256.0 * dcols) * 1e9;
        thr = run_q8(&k, &hr, &a, 1, y, 1, 50) / (64.0 * rcols) * 1e9;
        tpf = run_q8(&k, &pf, &a, 64, y, 0, 2) / (2048.0 * dcols * 64) * 1e9;
        tpr = run_q8(&k, &pr, &a, 64, y, 1, 2) / (448.0 * rcols * 64) * 1e9;
        printf("%-5s %10.4f %10.4f %10.4f %10.4f %10.4f %10.4f\n", "  q8", tdf, tdr, thf, thr, tpf, tpr);
        q8rows_free(&xb);
        fflush(stdout);
        free(q);
        free(x);
        free(y);
    }
}

/* The fast mode's decode alone (dec_full, dec_hot, dechot_rp of bench), best of more runs: the
 * figures to compare kernel changes by on a noisy machine. */
static void bench_dec(const char *isa_name, const char *types, int drows, int dcols) {
    qm_kernels k = kernels_or_exit(isa_name);
    rng_t r = {99};
    printf("isa %s: fast-mode decode, ns per weight element\n%-5s %10s %10s %10s\n", k.isa, "type", "dec_full", "dec_hot",
           "dechot_rp");
    for (int d = 0; d < NDT; d++) {
        qm_dtype dt = dts[d];
        if ((types && !strstr(types, qm_dtype_name(dt))) || dcols % qm_dtype_block(dt)) continue;
        const int rcols = dcols > 8960 ? dcols : 8960;
        const size_t nq = (size_t)drows * dcols > (size_t)64 * rcols ? (size_t)drows * dcols : (size_t)64 * rcols;
        void *q = make_q(&r, dt, nq / (size_t)qm_dtype_block(dt), 0); /* wf's rows, or hr's */
        /* y: the full view's rows, or the row-parallel run's blocks (hr: 64 rows x rcols / 64) */
        const size_t ny = (size_t)drows > (size_t)rcols ? (size_t)drows : (size_t)rcols;
        float *x = malloc((size_t)rcols * 4), *y = malloc(ny * 4);
        for (int i = 0; i < rcols; i++) x[i] = rand_f32(&r);
        q8rows xb;
        const qm_q8act a = q8rows_make(&k, x, 1, rcols, &xb);
        qm_wview wf = {q, dt, (size_t)dcols, drows, dcols, 0}, hf = {q, dt, (size_t)dcols, 256, dcols, 0};
        qm_wview hr = {q, dt, (size_t)rcols, 64, rcols, 0};
        double tdf = run_q8(&k, &wf, &a, 1, y, 0, 10) / ((double)drows * dcols) * 1e9;
        double thf = run_q8(&k, &hf, &a, 1, y, 0, 400) / (256.0 * dcols) * 1e9;
        double thr = run_q8(&k, &hr, &a, 1, y, 1, 200) / (64.0 * rcols) * 1e9;
        printf("%-5s %10.4f %10.4f %10.4f\n", qm_dtype_name(dt), tdf, thf, thr);
        fflush(stdout);
        q8rows_free(&xb);
        free(q);
        free(x);
        free(y);
    }
}

/* The head filter's first pass (kernels.h head_pass) over rows x cols of Q8_0 and n_tok outputs,
 * against the fast mode's matmul_q8 on the same: GOP/s (2 per multiply-add), one thread, best of
 * passes; the rows from DRAM once rows x cols is past the L3. */
static void bench_head(const char *isa_name, qm_dtype dt, int rows, int cols, int n_tok) {
    qm_kernels k = kernels_or_exit(isa_name);
    const qm_wview w = {NULL, dt, (size_t)cols, rows, cols, 0};
    if (!k.head_pass || !qm_head_pass_view_ok(&w) || n_tok < 1) {
        fprintf(stderr, "head: no head_pass on %s, or a type or shape it does not take\n", k.isa);
        exit(2);
    }
    rng_t r = {3};
    char *q = make_q(&r, dt, (size_t)rows * (size_t)cols / (size_t)qm_dtype_block(dt), 0);
    float *x = malloc((size_t)n_tok * (size_t)cols * 4), *y = malloc((size_t)n_tok * (size_t)rows * 4);
    const int groups = cols / 32 < 8 ? cols / 32 : 8;
    const size_t tile = (size_t)2 * (size_t)groups * QM_HEAD_TILE, ntab = (size_t)(rows + QM_HEAD_TILE - 1) / QM_HEAD_TILE * tile;
    float *tab = malloc(ntab * 4), *coef = malloc((size_t)2 * (size_t)groups * (size_t)n_tok * 4);
    float *low = malloc((size_t)n_tok * 4);
    for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) x[i] = rand_f32(&r);
    for (size_t i = 0; i < ntab; i++) tab[i] = 1.0f;
    for (size_t i = 0; i < (size_t)2 * (size_t)groups * (size_t)n_tok; i++) coef[i] = 1e-3f;
    q8rows xb;
    const qm_q8act a = q8rows_make(&k, x, n_tok, cols, &xb);
    const qm_head_bounds hb = {tab, tab + (size_t)groups * QM_HEAD_TILE, coef, tile, groups};
    const qm_wview wq = {q, dt, (size_t)cols, rows, cols, 0};
    double best[2] = {1e30, 1e30};
    for (int pass = 0; pass < 5; pass++)
        for (int mode = 0; mode < 2; mode++) {
            for (int t = 0; t < n_tok; t++) low[t] = -1e30f;
            const double t0 = now_s();
            if (mode == 0) k.head_pass(&wq, &a, n_tok, &hb, y, (size_t)rows, low, 0, rows);
            else k.matmul_q8(&wq, NULL, &a, n_tok, y, (size_t)rows, 0, rows);
            const double t = now_s() - t0;
            if (t < best[mode]) best[mode] = t;
        }
    const double ops = 2.0 * rows * (double)cols * n_tok;
    printf("isa %s head %s rows %d cols %d n_tok %d: GOP/s head_pass %.1f matmul_q8 %.1f (one thread)\n", k.isa,
           qm_dtype_name(dt), rows, cols, n_tok, ops / best[0] * 1e-9, ops / best[1] * 1e-9);
    q8rows_free(&xb);
    free(q);
    free(x);
    free(y);
    free(tab);
    free(coef);
    free(low);
}

/* The quantized type named `type` (dts), else `otherwise`. */
static qm_dtype quant_type_named(const char *type, qm_dtype otherwise) {
    for (int d = 0; d < NDT; d++)
        if (!strcmp(qm_dtype_name(dts[d]), type)) return dts[d];
    return otherwise;
}

/* One row-parallel shape streamed from DRAM: n_views copies of a rows x cols view (together past
 * the L3, as a model's layers are), each through matmul_blocks once per pass; ns per weight, best
 * of passes, exact and fast mode, and the fast mode's matmul_q8_nodes to the whole tree (what a
 * decode step calls; 0 past its shapes). Compares a mesh's narrow shard views with a whole layer's. */
static void bench_rowpar(const char *isa_name, const char *type, int rows, int cols, int n_views, int col0, int ld,
                         int bc) {
    qm_kernels k = kernels_or_exit(isa_name);
    const qm_dtype dt = quant_type_named(type, QM_DT_COUNT);
    if (ld < col0 + cols) ld = col0 + cols;
    if (dt == QM_DT_COUNT || rows < 1 || cols < 64 || col0 < 0 || ld % qm_dtype_block(dt) || n_views < 1 ||
        (bc != 64 && bc != 128)) {
        fprintf(stderr, "rp: bad type or shape\n");
        exit(2);
    }
    rng_t r = {7};
    const size_t per = (size_t)rows * (size_t)ld / (size_t)qm_dtype_block(dt), vb = per * qm_dtype_block_bytes(dt);
    char *q = make_q(&r, dt, per * (size_t)n_views, 0);
    const int nb = (cols + bc - 1) / bc;
    float *x = malloc((size_t)cols * 4), *y = malloc((size_t)nb * (size_t)rows * 4);
    for (int i = 0; i < cols; i++) x[i] = rand_f32(&r);
    q8rows xb;
    const qm_q8act a = q8rows_make(&k, x, 1, cols, &xb);
    const qm_leaf_node root = {0, nb};
    double best[3] = {1e30, 1e30, 1e30};
    for (int pass = 0; pass < 8; pass++)
        for (int mode = 0; mode < 3; mode++) {
            double t0 = now_s();
            for (int v = 0; v < n_views; v++) {
                qm_wview w = {q + (size_t)v * vb, dt, (size_t)ld, rows, cols, col0};
                if (mode == 0) k.matmul_blocks(&w, x, (size_t)cols, 1, bc, nb, y, (size_t)rows, (size_t)rows, 0, rows);
                else if (mode == 1) k.matmul_q8_blocks(&w, &a, 1, bc, nb, y, (size_t)rows, (size_t)rows, 0, rows);
                else if (!k.matmul_q8_nodes || !k.matmul_q8_nodes(&w, &a, 1, bc, nb, &root, 1, y, 0, (size_t)rows, 0, rows)) {
                    best[2] = 0;
                    break;
                }
            }
            double t = (now_s() - t0) / ((double)n_views * rows * cols) * 1e9;
            if (t < best[mode]) best[mode] = t;
        }
    printf("isa %s %s rows %d cols %d (from %d of %d) views %d bc %d: ns/weight exact %.4f fast %.4f fast nodes %.4f\n",
           k.isa, type, rows, cols, col0, ld, n_views, bc, best[0], best[1], best[2]);
    free(q);
    free(x);
    free(y);
    q8rows_free(&xb);
}

/* Prefill (bf16, f32 or a quantized type's weights, rows x cols; plain types' values random floats,
 * quantized ones random codes) over n_tok tokens, as one view (matmul),
 * as a row-parallel layer of 64-column blocks (matmul_blocks, its block dots written out) and as that
 * layer's whole tree made in the kernel (matmul_nodes, where the ISA takes the shape), and for a quantized
 * type the fast mode's matmul_q8 and matmul_q8_nodes on the same tokens quantized: GFLOP/s, best of 3
 * (a mode the ISA does not take shows 0.0). */
static void bench_prefill(const char *isa_name, const char *type, int rows, int cols, int n_tok, int bc) {
    qm_kernels k = kernels_or_exit(isa_name);
    const qm_dtype dt = quant_type_named(type, !strcmp(type, "F32") ? QM_DT_F32 : QM_DT_BF16);
    if (cols % qm_dtype_block(dt)) {
        fprintf(stderr, "pre: cols must be whole blocks of %s\n", qm_dtype_name(dt));
        exit(2);
    }
    const size_t n = (size_t)rows * (size_t)cols, esz = qm_dtype_block_bytes(dt);
    const int nb = (cols + bc - 1) / bc;
    rng_t r = {5};
    unsigned char *p = qm_dtype_is_quant(dt) ? make_q(&r, dt, n / (size_t)qm_dtype_block(dt), 0) : malloc(n * esz);
    if (!qm_dtype_is_quant(dt))
        for (size_t i = 0; i < n; i++) {
            const float f = rand_f32(&r);
            const uint16_t h = qm_f32_to_bf16(f);
            if (dt == QM_DT_F32) memcpy(p + 4 * i, &f, 4);
            else memcpy(p + 2 * i, &h, 2);
        }
    float *x = malloc((size_t)n_tok * (size_t)cols * 4), *y = malloc((size_t)nb * (size_t)n_tok * (size_t)rows * 4);
    for (size_t i = 0; i < (size_t)n_tok * (size_t)cols; i++) x[i] = rand_f32(&r);
    const qm_wview w = {p, dt, (size_t)cols, rows, cols, 0};
    const qm_leaf_node root = {0, nb};
    const int quant = qm_dtype_is_quant(dt) && cols % 32 == 0, n_modes = quant ? 5 : 3;
    q8rows xb = {0};
    const qm_q8act a = quant ? q8rows_make(&k, x, n_tok, cols, &xb) : (qm_q8act){0};
    double best[5] = {1e30, 1e30, 1e30, 1e30, 1e30};
    const int reps = n * (size_t)n_tok < ((size_t)1 << 28) ? (int)(((size_t)1 << 28) / (n * (size_t)n_tok)) + 3 : 3;
    for (int rep = 0; rep < reps; rep++)
        for (int mode = 0; mode < n_modes; mode++) {
            double t0 = now_s();
            if (mode == 0) k.matmul(&w, NULL, x, (size_t)cols, n_tok, y, (size_t)rows, 0, rows);
            else if (mode == 1)
                k.matmul_blocks(&w, x, (size_t)cols, n_tok, bc, nb, y, (size_t)n_tok * (size_t)rows, (size_t)rows, 0, rows);
            else if (mode == 2) {
                if (!k.matmul_nodes ||
                    !k.matmul_nodes(&w, x, (size_t)cols, n_tok, bc, nb, &root, 1, y, 0, (size_t)rows, 0, rows))
                    continue;
            } else if (mode == 3) k.matmul_q8(&w, NULL, &a, n_tok, y, (size_t)rows, 0, rows);
            else if (!k.matmul_q8_nodes || !k.matmul_q8_nodes(&w, &a, n_tok, bc, nb, &root, 1, y, 0, (size_t)rows, 0, rows))
                continue;
            const double t = now_s() - t0;
            if (t < best[mode]) best[mode] = t;
        }
    const double flop = 2.0 * (double)n * n_tok;
    printf("isa %s %s rows %d cols %d n_tok %d: GFLOP/s matmul %.1f blocks %.1f nodes %.1f", k.isa, type, rows, cols,
           n_tok, flop / best[0] * 1e-9, flop / best[1] * 1e-9, flop / best[2] * 1e-9);
    if (quant) printf(" fast: matmul %.1f nodes %.1f", flop / best[3] * 1e-9, flop / best[4] * 1e-9);
    printf(" (one thread)\n");
    if (quant) q8rows_free(&xb);
    free(p);
    free(x);
    free(y);
}

int main(int argc, char **argv) {
    init_isas();
    if (argc >= 2 && !strcmp(argv[1], "check")) {
        int trials = argc >= 3 ? atoi(argv[2]) : 200;
        int fails = check(trials);
        fails += check_dense_blocks(trials);
        fails += check_empty_nodes();
        printf("check: %ld comparisons, %d mismatches (ISAs:", n_checked, fails);
        for (int i = 0; i < n_isa; i++) printf(" %s", isa[i].isa);
        printf(")\n");
        return fails ? 1 : 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "bench")) {
        bench(argc >= 3 ? argv[2] : "auto", argc >= 4 ? argv[3] : NULL);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "dec")) {
        const int rows = argc >= 6 ? atoi(argv[4]) : 40960, cols = argc >= 6 ? atoi(argv[5]) : 1536;
        if (rows < 256 || cols < 256 || cols % 32) {
            fprintf(stderr, "dec: rows at least 256, cols at least 256 and a multiple of 32\n");
            return 2;
        }
        bench_dec(argc >= 3 ? argv[2] : "auto", argc >= 4 ? argv[3] : NULL, rows, cols);
        return 0;
    }
    if (argc >= 7 && !strcmp(argv[1], "rp")) {
        bench_rowpar(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), argc >= 8 ? atoi(argv[7]) : 0,
                     argc >= 9 ? atoi(argv[8]) : 0, argc >= 10 ? atoi(argv[9]) : 64);
        return 0;
    }
    if (argc >= 6 && !strcmp(argv[1], "head")) { /* head isa [TYPE] rows cols n_tok */
        if (argc >= 7) bench_head(argv[2], quant_type_named(argv[3], QM_DT_Q8_0), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
        else bench_head(argv[2], QM_DT_Q8_0, atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
        return 0;
    }
    if (argc >= 7 && !strcmp(argv[1], "pre")) {
        const int bc = argc >= 8 ? atoi(argv[7]) : 64;
        if (bc < 16 || bc % 16) {
            fprintf(stderr, "pre: bc must be a positive multiple of 16\n");
            return 2;
        }
        bench_prefill(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), bc);
        return 0;
    }
    fprintf(stderr, "usage: %s check [trials] | bench [isa] [types] | dec [isa] [types [rows cols]] | rp isa type rows cols views [col0 ld [bc]]"
                    " | pre isa TYPE rows cols n_tok [bc] | head isa [TYPE] rows cols n_tok\n",
            argv[0]);
    return 2;
}
