/* The greedy head filter (exact mode): the same greedy tokens for about the cost of an 8-bit
 * output head.
 *
 * A greedy step needs only the largest exact logit of each output (the lowest id among equals),
 * not the others. The step first computes every row's 8-bit dot a_j with the fast mode's kernel
 * (kernels/qdot.h) on an 8-bit view W' of the head: the head itself where its 8-bit dot has no
 * min term (Q8_0, Q4_0, Q5_0, Q6_K), else for an f32, f16 or bf16 head a Q8_0 copy made at load
 * (the shadow: a quarter or half of the bytes the head's decode reads). With z_j the exact
 * (canonical f32) logit on the head's own weights w,
 *
 *   |z_j - a_j| <= γ Σ|w x| + Σ|w - w'||x| + Σ|w'||x - x̂| + γ' Σ|w'||x̂|
 *               <= Σ_g S_jg e_g + D_jg h_g  =  E_j
 *
 * x̂ the quantized input (per 32: d q_i), g the groups of `group` columns, S_jg = Σ_{i in g}
 * |w'_ji| and D_jg = Σ_{i in g} |w_ji - w'_ji| (0 without a shadow; both summed in double and
 * rounded up, made at load), e_g = max_{i in g} |x_i - x̂_i| + c m_g and h_g = (1 + c) m_g, m_g =
 * max_{i in g} max(|x_i|, |x̂_i|) and c = 1.01 (K + 256) 2^-24 for dots of K columns: the
 * canonical f32 dot's error is at most γ_K Σ|w x| in any order, the 8-bit dot's (three roundings
 * a 32-block, 16 lanes, a tree of four; head_pass, kernels.h, for several outputs at once: an fmaf
 * a block) far less; |w| <= |w'| + |w - w'|. The largest logit is at
 * least cut = max_j (a_j - E_j); a row with a_j + E_j < cut cannot hold it (nor tie with it).
 * Every other row gets its exact logit (from the kernel that computes all of them: the same
 * bits), those rows -inf, and the sampler's greedy pick is the same token. Non-finite input, a
 * non-finite cut: every row is computed exactly. E_j in f32 with head_pass's margin (kernels.h:
 * head_pass for many outputs, head_finish after matmul_q8 for fewer) up to QM_HEAD_PASS_MAX_COLS
 * columns; wider, qm_head_filter_errors in double, E_j rounded up, plus 1e-35 for f32 underflow.
 * Min-term types (Q4_K, Q5_K, Q4_1, Q5_1), whose 8-bit dot adds two terms that may cancel, are
 * not filtered. */
#ifndef QM_MODEL_HEAD_FILTER_H
#define QM_MODEL_HEAD_FILTER_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

typedef struct {
    float *bound;      /* S_jg in tiles (kernels.h, qm_head_bounds): a tile's [groups][QM_HEAD_TILE]
                        * S, then its D where there is a shadow; NULL when the head is not filtered */
    float *dev;        /* bound + groups * QM_HEAD_TILE (not owned): D_jg, NULL without a shadow */
    size_t tile;       /* floats a tile */
    qm_wview approx;   /* the 8-bit pass's view: the head, or its shadow */
    void *shadow;      /* the Q8_0 copy of a float head (owned), else NULL */
    size_t read_bytes; /* what a filtered step reads: approx's weights and the tables */
    int rows;          /* the head's rows (the device's vocabulary) */
    int group, groups; /* columns per group, groups per row */
    int8_t *xq;        /* [T][cols] the output rows quantized (kernels/qdot.h) */
    float *xq_d;       /* [T][cols / 32] */
    int32_t *xq_s;     /* [T][cols / 32] */
    double *coef;      /* [T][2][groups] e_g then h_g of each output row */
    float *coef32;     /* [T][2][groups] the same rounded up to f32 (kernels.h, head_pass) */
    float *low32;      /* [nth][T] each team member's largest a_j - E_j, head_pass's */
    double *low;       /* [nth][T] each team member's largest a_j - E_j */
    double *cut;       /* [T] the largest of those, or -inf (every row exact) */
    long outputs;      /* outputs filtered so far */
    long exact_rows;   /* rows computed exactly for them */
} qm_head_filter;

/* Whether a view can be filtered: whole 32-blocks of f32, f16, bf16 or a dtype whose 8-bit dot
 * has no min term. */
bool qm_head_filter_supported(const qm_wview *w);

/* Allocates f's buffers for T outputs and a team of nth (tables and shadow not yet made); f->bound
 * stays NULL when the view is not supported, or is a float head and shadow is false. Returns
 * false when out of memory. */
bool qm_head_filter_alloc(qm_head_filter *f, const qm_wview *w, bool shadow, int T, int nth);
void qm_head_filter_free(qm_head_filter *f);

/* Rows [r0, r1) of w: their shadow rows (a float head) and S_jg, D_jg. */
void qm_head_filter_bound_rows(qm_head_filter *f, const qm_wview *w, int r0, int r1);

/* Output row t's input x[cols]: quantized into f's buffers, its e_g into f->coef; false when x
 * is not finite (then every row of this output is computed exactly). */
bool qm_head_filter_prepare(qm_head_filter *f, const qm_kernels *k, const float *x, int cols, int t);

/* f's tables and output coefficients as the kernels' head_pass reads them. */
static inline qm_head_bounds qm_head_filter_bounds(const qm_head_filter *f) {
    return (qm_head_bounds){f->bound, f->dev, f->coef32, f->tile, f->groups};
}

/* The least float >= x (NaN stays NaN; no libm call: it runs for every row of a filtered step). */
static inline float qm_float_up(double x) {
    float f = (float)x;
    if (!((double)f < x)) return f;
    if (f == 0.0f) return 0x1p-149f;
    uint32_t u;
    memcpy(&u, &f, 4);
    u = f > 0.0f ? u + 1 : u - 1; /* the next float up (f finite here: x < f's upper neighbour) */
    memcpy(&f, &u, 4);
    return f;
}

/* Rows a call of qm_head_filter_errors takes at most. */
#define QM_HEAD_FILTER_CHUNK 256

/* E_j of rows [j0, j0 + n) for output t into out[n] (n <= QM_HEAD_FILTER_CHUNK). */
void qm_head_filter_errors(const qm_head_filter *f, int j0, int n, int t, double *out);

#endif
