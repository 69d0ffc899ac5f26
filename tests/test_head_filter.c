/* The greedy head filter (model/head_filter.h).
 *   - Its bound holds: for every supported weight type (a float head through its Q8_0 shadow),
 *     ISA and input (plain, an outlier, zeros, tiny and huge magnitudes), |exact dot - 8-bit dot|
 *     <= E_j for every row, the exact dot being the ISA's canonical f32 matmul on the head's own
 *     (dequantized) weights and the 8-bit dot its matmul_q8 on the 8-bit view. The largest ratio
 *     is printed (how tight the bound is), never asserted.
 *   - Input that is not finite is refused (every row then computed exactly); min-term types are
 *     not filtered, float heads only where a shadow is allowed.
 *   - head_pass (outputs side by side: AVX512-VNNI, AVX2) gives its definition's bits (head_pass.c),
 *     and its a - E and a + E hold every exact logit between them.
 *   - End to end: a tiny random checkpoint (its tied head bf16, filtered through a Q8_0 shadow)
 *     and the same converted to a Q8_0 GGUF, greedy requests (and one sampled, which takes the
 *     full head), batch 9 (steps of 9 to 1 outputs; head_pass where the ISA has one, from its
 *     head_pass_min_outputs): the filtered engine on meshes 1x1, 1x3 and 2x2, and on 1x1 and 1x3
 *     with the AVX2 kernels, generates the ids of the engine with full_head,
 *     and it did filter (fewer rows computed exactly than the vocabulary), except the bf16 head
 *     on 2x2 (two replicas: no shadow). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "scratch_dir.h"
#include "tiny_model.h"

#include "engine/engine.h"
#include "io/quantize.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"
#include "model/head_filter.h"
#include "text/tokenizer.h"

#define TOKENIZER QMESH_DATA_DIR "/tokenizers/qwen2.5"

/* ---- the bound ---- */

static uint32_t next_u32(uint64_t *s) { /* a 64-bit LCG's high half */
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 32);
}

static double uniform(uint64_t *s) { return (next_u32(s) + 0.5) / 4294967296.0; } /* (0, 1) */

/* rows x cols of dt. Quantized: random code bytes, every block's f16 scale finite (2^-10 ..
 * 2^2), of either sign. Float: values in (-1, 1) times a scale of 2^-6 .. 2^5 a row. */
static uint8_t *random_rows(uint64_t *s, qm_dtype dt, int rows, int cols) {
    const size_t bytes = (size_t)rows * qm_dtype_row_bytes(dt, (size_t)cols);
    uint8_t *p = malloc(bytes);
    assert_non_null(p);
    if (dt == QM_DT_F32 || dt == QM_DT_F16 || dt == QM_DT_BF16) {
        for (int j = 0; j < rows; j++) {
            const double scale = ldexp(1.0, (int)(next_u32(s) % 12) - 6);
            for (int i = 0; i < cols; i++) {
                const float v = (float)((uniform(s) * 2.0 - 1.0) * scale);
                const size_t at = (size_t)j * (size_t)cols + (size_t)i;
                uint32_t u;
                memcpy(&u, &v, 4);
                if (dt == QM_DT_F32) memcpy(p + 4 * at, &v, 4);
                else {
                    const uint16_t h = dt == QM_DT_F16 ? qm_quant_f32_to_f16(v) : (uint16_t)(u >> 16);
                    memcpy(p + 2 * at, &h, 2);
                }
            }
        }
        return p;
    }
    const size_t bb = qm_dtype_block_bytes(dt), nb = (size_t)rows * (size_t)(cols / qm_dtype_block(dt));
    for (size_t i = 0; i < nb * bb; i++) p[i] = (uint8_t)next_u32(s);
    for (size_t b = 0; b < nb; b++) {
        const uint32_t u = next_u32(s);
        const uint16_t h = (uint16_t)((u & 1u) << 15 | (5u + (u >> 1) % 13u) << 10 | (u >> 8 & 0x3ffu));
        memcpy(p + b * bb + (dt == QM_DT_Q6_K ? 208 : 0), &h, 2);
    }
    return p;
}

typedef enum { X_PLAIN, X_OUTLIER, X_ZEROS, X_TINY, X_HUGE, X_KINDS } x_kind;

static void random_x(uint64_t *s, x_kind kind, float *x, int n) {
    const double scale = kind == X_TINY ? 1e-30 : kind == X_HUGE ? 1e25 : 1.0;
    for (int i = 0; i < n; i++) {
        x[i] = (float)((uniform(s) * 2.0 - 1.0) * 3.0 * scale);
        if (kind == X_ZEROS && i % 3) x[i] = 0.0f;
    }
    if (kind == X_OUTLIER) x[n / 3] = 400.0f;
}

/* The ISA's head_pass (all outputs side by side) on f's 8-bit view: for every row j and output t,
 * its a - E <= z <= a + E, z the exact logit; low is each output's largest a - E (one row at a
 * time here). */
static void check_pass_bound(const qm_kernels *k, const qm_head_filter *f, const float *exact, int rows, int cols) {
    const qm_q8act a = {f->xq, f->xq_d, f->xq_s, (size_t)cols / QM_Q8_BLOCK};
    const qm_head_bounds hb = qm_head_filter_bounds(f);
    float *y = malloc((size_t)X_KINDS * (size_t)rows * sizeof *y), low[X_KINDS];
    assert_non_null(y);
    for (int j = 0; j < rows; j++) {
        for (int t = 0; t < X_KINDS; t++) low[t] = -INFINITY;
        k->head_pass(&f->approx, &a, X_KINDS, &hb, y, (size_t)rows, low, j, j + 1);
        for (int t = 0; t < X_KINDS; t++) {
            const size_t at = (size_t)t * (size_t)rows + (size_t)j;
            const float z = exact[at];
            if (!(low[t] <= z && z <= y[at]))
                fail_msg("%s head_pass cols %d input %d row %d: exact %.9g outside [%.9g, %.9g]", k->isa, cols, t, j,
                         (double)z, (double)low[t], (double)y[at]);
        }
    }
    free(y);
}

/* The ISA's head_finish after matmul_q8 (the one-output path, approx: matmul_q8's a of every
 * output): for every row j and output t, the finished a - E <= z <= a + E. */
static void check_finish_bound(const qm_kernels *k, const qm_head_filter *f, const float *exact, const float *approx,
                               int rows, int cols) {
    const qm_head_bounds hb = qm_head_filter_bounds(f);
    float *y = malloc((size_t)rows * sizeof *y);
    assert_non_null(y);
    for (int t = 0; t < X_KINDS; t++)
        for (int j = 0; j < rows; j++) { /* row j alone: its a - E is the low */
            const size_t at = (size_t)t * (size_t)rows + (size_t)j;
            float low = -INFINITY;
            memcpy(y, approx + (size_t)t * (size_t)rows, (size_t)rows * sizeof *y);
            k->head_finish(&hb, t, y, &low, j, j + 1);
            const float z = exact[at];
            if (!(low <= z && z <= y[j]))
                fail_msg("%s head_finish cols %d input %d row %d: exact %.9g outside [%.9g, %.9g]", k->isa, cols, t, j,
                         (double)z, (double)low, (double)y[j]);
        }
    free(y);
}

/* The bound on rows x cols of dt with one ISA's kernels, for each kind of input; returns the
 * largest |z - a| / E seen. */
static double check_bound(const qm_kernels *k, qm_dtype dt, int rows, int cols, uint64_t *s) {
    uint8_t *data = random_rows(s, dt, rows, cols);
    const qm_wview w = {data, dt, (size_t)cols, rows, cols, 0};
    qm_head_filter f;
    assert_true(qm_head_filter_alloc(&f, &w, true, X_KINDS, 1));
    assert_non_null(f.bound);
    qm_head_filter_bound_rows(&f, &w, 0, rows);
    float *x = malloc((size_t)X_KINDS * (size_t)cols * sizeof *x);
    float *exact = malloc((size_t)X_KINDS * (size_t)rows * sizeof *exact);
    float *approx = malloc((size_t)X_KINDS * (size_t)rows * sizeof *approx);
    assert_true(x && exact && approx);
    for (int t = 0; t < X_KINDS; t++) {
        random_x(s, (x_kind)t, x + (size_t)t * (size_t)cols, cols);
        assert_true(qm_head_filter_prepare(&f, k, x + (size_t)t * (size_t)cols, cols, t));
    }
    k->matmul(&w, NULL, x, (size_t)cols, X_KINDS, exact, (size_t)rows, 0, rows);
    const qm_q8act a = {f.xq, f.xq_d, f.xq_s, (size_t)cols / QM_Q8_BLOCK};
    k->matmul_q8(&f.approx, NULL, &a, X_KINDS, approx, (size_t)rows, 0, rows);
    if (k->head_pass && qm_head_pass_view_ok(&f.approx)) check_pass_bound(k, &f, exact, rows, cols);
    if (k->head_finish && cols <= QM_HEAD_PASS_MAX_COLS) check_finish_bound(k, &f, exact, approx, rows, cols);
    double worst = 0.0, err[QM_HEAD_FILTER_CHUNK];
    assert_true(rows <= QM_HEAD_FILTER_CHUNK);
    for (int t = 0; t < X_KINDS; t++) {
        qm_head_filter_errors(&f, 0, rows, t, err);
        for (int j = 0; j < rows; j++) {
            const size_t at = (size_t)t * (size_t)rows + (size_t)j;
            const double diff = fabs((double)exact[at] - (double)approx[at]), bound = err[j];
            if (!(diff <= bound))
                fail_msg("%s dtype %d cols %d input %d row %d: |%.9g - %.9g| = %.3g > E = %.3g", k->isa, (int)dt, cols,
                         t, j, (double)exact[at], (double)approx[at], diff, bound);
            if (bound > 0 && diff / bound > worst) worst = diff / bound;
        }
    }
    free(x);
    free(exact);
    free(approx);
    qm_head_filter_free(&f);
    free(data);
    return worst;
}

static void bound_holds(void **state) {
    (void)state;
    const char *isas[] = {"scalar", "avx2", "avx512", "avx512vnni"};
    const qm_dtype dts[] = {QM_DT_Q8_0, QM_DT_Q4_0, QM_DT_Q5_0, QM_DT_Q6_K, QM_DT_F32, QM_DT_F16, QM_DT_BF16};
    const int widths[] = {256, 896, 1536};
    uint64_t s = 7;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        qm_kernels k;
        qm_error err = {0};
        if (qm_kernels_select(isas[i], &k, &err) != QM_OK) continue; /* not on this CPU */
        double worst = 0.0;
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
            for (size_t c = 0; c < sizeof widths / sizeof widths[0]; c++) {
                if (widths[c] % qm_dtype_block(dts[d])) continue;
                const double r = check_bound(&k, dts[d], 64, widths[c], &s);
                if (r > worst) worst = r;
            }
        printf("# %s: largest |exact - 8-bit| / E = %.4f\n", isas[i], worst);
    }
}

/* Random tables and coefficients for a pass: S, D in [0, 4), e, h in [0, 1). */
static float *random_floats(uint64_t *s, size_t n, double top) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(uniform(s) * top);
    return p;
}

/* Every ISA's head_pass against its definition, bit for bit: y and each output's low, for Q8_0
 * and Q6_K views, over widths up to the widest it takes, 1 to 33 outputs (passes of 16 and what
 * is left), row ranges of any start and length (whole tiles and the rows after them), with and
 * without D terms. */
static void head_pass_matches_its_definition(void **state) {
    (void)state;
    const char *isas[] = {"avx2", "avx512", "avx512vnni"};
    const qm_dtype dts[] = {QM_DT_Q8_0, QM_DT_Q6_K};
    const int widths[] = {32, 256, 896, 1536, QM_HEAD_PASS_MAX_COLS}, tokens[] = {1, 3, 8, 9, 16, 17, 33};
    uint64_t s = 23;
    int tried = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        qm_kernels k, ref;
        qm_error err = {0};
        if (qm_kernels_select(isas[i], &k, &err) != QM_OK || !k.head_pass) continue;
        assert_int_equal(qm_kernels_select("scalar", &ref, &err), QM_OK);
        for (size_t dti = 0; dti < sizeof dts / sizeof dts[0]; dti++)
        for (size_t c = 0; c < sizeof widths / sizeof widths[0]; c++)
            for (size_t n = 0; n < sizeof tokens / sizeof tokens[0]; n++) {
                const qm_dtype dt = dts[dti];
                const int cols = widths[c], T = tokens[n], rows = 23, groups = cols / 32 < 7 ? cols / 32 : 7;
                if (cols % qm_dtype_block(dt)) continue;
                uint8_t *w = random_rows(&s, dt, rows, cols);
                const qm_wview v = {w, dt, (size_t)cols, rows, cols, 0};
                assert_true(qm_head_pass_view_ok(&v));
                float *x = malloc((size_t)T * (size_t)cols * sizeof *x);
                int8_t *q = malloc((size_t)T * (size_t)cols);
                float *d = malloc((size_t)T * (size_t)cols / 32 * sizeof *d);
                int32_t *qs = malloc((size_t)T * (size_t)cols / 32 * sizeof *qs);
                assert_true(x && q && d && qs);
                for (int t = 0; t < T; t++) {
                    random_x(&s, (x_kind)(t % X_KINDS), x + (size_t)t * (size_t)cols, cols);
                    ref.quantize_act(x + (size_t)t * (size_t)cols, cols, q + (size_t)t * (size_t)cols,
                                     d + (size_t)t * (size_t)cols / 32, qs + (size_t)t * (size_t)cols / 32);
                }
                const qm_q8act a = {q, d, qs, (size_t)cols / 32};
                const size_t tile = (size_t)2 * (size_t)groups * QM_HEAD_TILE; /* S then D a tile */
                float *tab = random_floats(&s, (size_t)(rows + QM_HEAD_TILE - 1) / QM_HEAD_TILE * tile, 4.0);
                float *coef = random_floats(&s, (size_t)2 * (size_t)groups * (size_t)T, 1.0);
                float *y0 = malloc((size_t)T * (size_t)rows * sizeof *y0), *y1 = malloc((size_t)T * (size_t)rows * sizeof *y1);
                float *l0 = malloc((size_t)T * sizeof *l0), *l1 = malloc((size_t)T * sizeof *l1);
                assert_true(y0 && y1 && l0 && l1);
                for (int with_dev = 0; with_dev < 2; with_dev++) {
                    const qm_head_bounds hb = {tab, with_dev ? tab + (size_t)groups * QM_HEAD_TILE : NULL, coef, tile,
                                               groups};
                    const int o0 = (int)(next_u32(&s) % 5), o1 = rows - (int)(next_u32(&s) % 3);
                    memset(y0, 0, (size_t)T * (size_t)rows * sizeof *y0);
                    memset(y1, 0, (size_t)T * (size_t)rows * sizeof *y1);
                    for (int t = 0; t < T; t++) l0[t] = l1[t] = t % 2 ? -INFINITY : 0.5f;
                    qm_head_pass_scalar(&v, &a, T, &hb, y0, (size_t)rows, l0, o0, o1);
                    k.head_pass(&v, &a, T, &hb, y1, (size_t)rows, l1, o0, o1);
                    if (memcmp(y0, y1, (size_t)T * (size_t)rows * sizeof *y0) || memcmp(l0, l1, (size_t)T * sizeof *l0))
                        fail_msg("%s head_pass %s cols %d outputs %d rows [%d, %d) D %d: not the definition's bits",
                                 k.isa, qm_dtype_name(dt), cols, T, o0, o1, with_dev);
                }
                free(w);
                free(x);
                free(q);
                free(d);
                free(qs);
                free(tab);
                free(coef);
                free(y0);
                free(y1);
                free(l0);
                free(l1);
            }
        tried++;
    }
    if (!tried) printf("# SKIP: no ISA on this CPU has a head_pass (AVX512-VNNI)\n");
}

/* Every ISA's head_finish against its definition, bit for bit: y and low, for 1 to 8 groups, row
 * ranges of any start and length across the bounds' tiles, outputs t = 0 and 2 of 3, with and
 * without D terms, a NaN among the a (never the low). */
static void head_finish_matches_its_definition(void **state) {
    (void)state;
    const char *isas[] = {"avx2", "avx512", "avx512vnni"};
    uint64_t s = 29;
    int tried = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        qm_kernels k;
        qm_error err = {0};
        if (qm_kernels_select(isas[i], &k, &err) != QM_OK) continue;
        assert_non_null(k.head_finish);
        for (int trial = 0; trial < 200; trial++) {
            const int groups = 1 + (int)(next_u32(&s) % 8), rows = 1 + (int)(next_u32(&s) % 150), T = 3;
            const size_t tile = (size_t)2 * (size_t)groups * QM_HEAD_TILE;
            float *tab = random_floats(&s, (size_t)(rows + QM_HEAD_TILE - 1) / QM_HEAD_TILE * tile, 4.0);
            float *coef = random_floats(&s, (size_t)2 * (size_t)groups * (size_t)T, 1.0);
            float *a = random_floats(&s, (size_t)rows, 1.0), *y0 = malloc((size_t)rows * sizeof *y0),
                  *y1 = malloc((size_t)rows * sizeof *y1);
            assert_true(y0 && y1);
            for (int o = 0; o < rows; o++) a[o] = (a[o] - 0.5f) * 40.0f;
            if (trial % 7 == 0) a[next_u32(&s) % (uint32_t)rows] = NAN;
            const int o0 = (int)(next_u32(&s) % (uint32_t)rows), o1 = o0 + (int)(next_u32(&s) % (uint32_t)(rows - o0 + 1));
            const int t = trial % 2 ? 2 : 0, with_dev = trial % 3 != 0;
            const qm_head_bounds hb = {tab, with_dev ? tab + (size_t)groups * QM_HEAD_TILE : NULL, coef, tile, groups};
            memcpy(y0, a, (size_t)rows * sizeof *a);
            memcpy(y1, a, (size_t)rows * sizeof *a);
            float l0 = trial % 5 ? -INFINITY : 3.0f, l1 = l0;
            qm_head_finish_scalar(&hb, t, y0, &l0, o0, o1);
            k.head_finish(&hb, t, y1, &l1, o0, o1);
            if (memcmp(y0, y1, (size_t)rows * sizeof *y0) || memcmp(&l0, &l1, sizeof l0))
                fail_msg("%s head_finish groups %d rows [%d, %d) of %d t %d D %d: not the definition's bits", k.isa,
                         groups, o0, o1, rows, t, with_dev);
            assert_false(isnan(l1));
            free(tab);
            free(coef);
            free(a);
            free(y0);
            free(y1);
        }
        tried++;
    }
    if (!tried) printf("# SKIP: no AVX2 on this CPU\n");
}

static void refuses_what_it_cannot_bound(void **state) {
    (void)state;
    uint64_t s = 11;
    uint8_t *data = random_rows(&s, QM_DT_Q8_0, 4, 64);
    qm_wview w = {data, QM_DT_Q8_0, 64, 4, 64, 0};
    qm_head_filter f;
    assert_true(qm_head_filter_alloc(&f, &w, true, 1, 1));
    qm_kernels k;
    qm_error err = {0};
    assert_int_equal(qm_kernels_select("scalar", &k, &err), QM_OK);
    float x[64] = {0};
    x[5] = NAN;
    assert_false(qm_head_filter_prepare(&f, &k, x, 64, 0));
    x[5] = INFINITY;
    assert_false(qm_head_filter_prepare(&f, &k, x, 64, 0));
    x[5] = 1.0f;
    assert_true(qm_head_filter_prepare(&f, &k, x, 64, 0));
    qm_head_filter_free(&f);
    const qm_dtype not_filtered[] = {QM_DT_Q4_1, QM_DT_Q5_1, QM_DT_Q4_K, QM_DT_Q5_K};
    for (size_t i = 0; i < sizeof not_filtered / sizeof not_filtered[0]; i++) {
        w.dtype = not_filtered[i];
        w.cols = w.ld = 256;
        assert_false(qm_head_filter_supported(&w));
        assert_true(qm_head_filter_alloc(&f, &w, true, 1, 1));
        assert_null(f.bound);
    }
    free(data);
    /* a float head only through a shadow: none where the engine asks for none */
    data = random_rows(&s, QM_DT_BF16, 4, 64);
    w = (qm_wview){data, QM_DT_BF16, 64, 4, 64, 0};
    assert_true(qm_head_filter_alloc(&f, &w, false, 1, 1));
    assert_null(f.bound);
    assert_true(qm_head_filter_alloc(&f, &w, true, 1, 1));
    assert_non_null(f.bound);
    assert_non_null(f.shadow);
    assert_int_equal(f.approx.dtype, QM_DT_Q8_0);
    qm_head_filter_free(&f);
    free(data);
}

/* ---- end to end ---- */

#define N_REQ 9
#define MAX_NEW 12

typedef struct {
    int n[N_REQ];
    int ids[N_REQ][MAX_NEW];
} outputs;

static void on_done(void *ctx, int index, const qm_gen_result *r) {
    outputs *o = ctx;
    assert_true(index >= 0 && index < N_REQ && r->n_ids <= MAX_NEW);
    o->n[index] = r->n_ids;
    memcpy(o->ids[index], r->ids, (size_t)r->n_ids * sizeof(int));
}

/* The requests' ids on one engine; *filtered: whether it filtered, and fewer rows than all. */
static void run(const char *gguf, int rows, int cols, const char *isa, bool full_head, outputs *o, bool *filtered) {
    qm_engine_opts opts = {.model_dir = gguf, .rows = rows, .cols = cols, .backend = "threads", .isa = isa,
                           .batch = N_REQ, .threads = 2, .quiet = true, .full_head = full_head};
    qm_engine *e = NULL;
    qm_error err = {0};
    if (qm_engine_open(&opts, &e, &err) != QM_OK) fail_msg("open %dx%d: %s", rows, cols, err.msg);
    static const int prompts[N_REQ][4] = {{9707, 11, 1879, 0},   {151644, 872, 198, 5501}, {750, 15801, 1445, 982},
                                          {262, 470, 9707, 11},  {1879, 1879, 1879, 1879}, {13, 5501, 262, 470},
                                          {982, 11, 750, 198},   {5501, 5501, 9707, 1445}, {470, 872, 13, 15801}};
    qm_gen_request req[N_REQ];
    /* steps of 9 outputs (one sampled: the full head), then 8 down to 1 (head_pass from the ISA's
     * head_pass_min_outputs: 4 with VNNI, 8 with AVX2) */
    static const int max_new[N_REQ] = {MAX_NEW, 4, 7, 3, MAX_NEW - 2, 9, 11, 5, 6};
    for (int i = 0; i < N_REQ; i++)
        req[i] = (qm_gen_request){.prompt = prompts[i], .n_prompt = 4, .max_new_tokens = max_new[i], .top_p = 1.0f};
    req[3].temperature = 0.8f; /* sampled: its steps take the full head */
    req[3].seed = 5;
    memset(o, 0, sizeof *o);
    qm_gen_callbacks cb = {.on_done = on_done, .ctx = o};
    if (qm_engine_generate(e, req, N_REQ, &cb, NULL, &err) != QM_OK) fail_msg("generate: %s", err.msg);
    qm_engine_info info;
    qm_engine_get_info(e, &info);
    *filtered = info.head_filter && info.head_filtered_outputs > 0 &&
                info.head_exact_rows < (long)info.head_filtered_outputs * 151936;
    qm_engine_close(e);
}

/* One model: the filtered engine on meshes 1x1, 1x3, 2x2 (the CPU's kernels) and 1x1, 1x3 with
 * AVX2's (where the CPU has them: their own head_pass) against the full head on 1x1; a float
 * head is filtered only with one replica (its shadow is a copy per device). */
static void same_tokens(const char *model, bool float_head) {
    outputs want, got;
    bool filtered;
    run(model, 1, 1, NULL, true, &want, &filtered);
    assert_false(filtered);
    qm_kernels k;
    qm_error err = {0};
    const bool avx2 = qm_kernels_select("avx2", &k, &err) == QM_OK;
    const struct {
        int rows, cols;
        const char *isa;
    } runs[] = {{1, 1, NULL}, {1, 3, NULL}, {2, 2, NULL}, {1, 1, "avx2"}, {1, 3, "avx2"}};
    for (size_t m = 0; m < sizeof runs / sizeof runs[0]; m++) {
        if (runs[m].isa && !avx2) continue;
        run(model, runs[m].rows, runs[m].cols, runs[m].isa, false, &got, &filtered);
        assert_true(filtered == (!float_head || runs[m].rows == 1));
        for (int i = 0; i < N_REQ; i++) {
            assert_int_equal(got.n[i], want.n[i]);
            assert_memory_equal(got.ids[i], want.ids[i], (size_t)want.n[i] * sizeof(int));
        }
    }
}

static void same_tokens_on_every_mesh(void **state) {
    char *dir = *state, hf[160], gguf[160];
    snprintf(hf, sizeof hf, "%s/tiny", dir);
    snprintf(gguf, sizeof gguf, "%s/tiny-q8_0.gguf", dir);
    qm_error err = {0};
    const qm_quantize_opts qo = {.tokenizer_metadata = qm_tokenizer_gguf_metadata};
    if (qm_quantize_model(hf, QM_DT_Q8_0, gguf, &qo, NULL, &err) != QM_OK) fail_msg("quantize: %s", err.msg);
    same_tokens(gguf, false); /* its tied head: Q8_0 */
    same_tokens(hf, true);    /* bf16, through a shadow */
}

static int setup(void **state) {
    char *dir = calloc(1, 64), model[128];
    if (!dir || scratch_dir_make(dir, 64, "head_filter") != 0) return -1;
    snprintf(model, sizeof model, "%s/tiny", dir);
    if (tiny_model_write(model, TOKENIZER, 9) != 0) return -1;
    *state = dir;
    return 0;
}

static int teardown(void **state) {
    scratch_dir_remove(*state);
    free(*state);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bound_holds),
        cmocka_unit_test(head_pass_matches_its_definition),
        cmocka_unit_test(head_finish_matches_its_definition),
        cmocka_unit_test(refuses_what_it_cannot_bound),
        cmocka_unit_test_setup_teardown(same_tokens_on_every_mesh, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
