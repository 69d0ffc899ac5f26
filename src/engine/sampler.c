#include "engine/sampler.h"
#include "kernels/expf.h"
#include "util/largest.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void qm_rng_seed(qm_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

float qm_rng_uniform(qm_rng *r) { /* xoshiro256** */
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (float)(res >> 40) * (1.0f / 16777216.0f);
}

/* Canonical order: higher logit first, then lower id; NaN ranks below everything. */
static int better(float a, int32_t ia, float b, int32_t ib) {
    if (isnan(a)) a = -INFINITY;
    if (isnan(b)) b = -INFINITY;
    if (a != b) return a > b;
    return ia < ib;
}

static int cmp_candidate(const void *x, const void *y) {
    const qm_candidate *a = x, *b = y;
    if (a->id == b->id && a->logit == b->logit) return 0;
    return better(a->logit, a->id, b->logit, b->id) ? -1 : 1;
}

static int n_candidates(const qm_sampling *p) {
    if (p->temperature <= 0.0f) return 1;
    if (p->top_k > 0 && p->top_k < QM_SAMPLE_MAX_CANDIDATES) return p->top_k;
    return QM_SAMPLE_MAX_CANDIDATES;
}

#define LP_SCALE 1099511627776.0 /* 2^40: the fixed point of the softmax sums (sampler.h) */

/* Candidates a row needs from each shard: those to draw from, and the top logprobs asked for. */
static int n_needed(const qm_sampling *p, int want) {
    const int k = n_candidates(p), top = want > 1 + QM_MAX_TOP_LOGPROBS ? 1 + QM_MAX_TOP_LOGPROBS : want;
    return k > top ? k : top;
}

/* mine [n][k], all [cols][n][k], merge [cols][k] (k <= QM_SAMPLE_MAX_CANDIDATES); then the
 * logprobs' fixed-point sums: mine [n], all [cols][n]. */
size_t qm_sample_scratch_bytes(int n, int cols) {
    return QM_SAMPLE_MAX_CANDIDATES * sizeof(qm_candidate) * ((size_t)n * (size_t)(cols + 1) + (size_t)cols) +
           (size_t)n * (size_t)(cols + 1) * sizeof(int64_t) + 128;
}

/* The best of the local slice (k = 1), as local_top gives it: the largest logit (NaN ranks as
 * -inf), the lowest id among equals: the largest (qm_largest; == ignores a zero's sign), then its
 * first position. */
static void local_best(const float *row, int vocab_begin, int len, qm_candidate *out) {
    *out = (qm_candidate){-INFINITY, INT32_MAX};
    if (len <= 0) return;
    const float m = qm_largest(row, len);
    if (m == -INFINITY) { /* every logit -inf or NaN: the first */
        *out = (qm_candidate){-INFINITY, vocab_begin};
        return;
    }
    int v = 0;
    while (row[v] != m) v++;
    *out = (qm_candidate){row[v], vocab_begin + v};
}

/* The k best of the local slice, in canonical order (padded with -inf / INT32_MAX). */
static void local_top(const float *row, int vocab_begin, int len, int k, qm_candidate *out) {
    if (k == 1) {
        local_best(row, vocab_begin, len, out);
        return;
    }
    for (int i = 0; i < k; i++) out[i] = (qm_candidate){-INFINITY, INT32_MAX};
    for (int v = 0; v < len; v++) {
        float x = row[v];
        int32_t id = vocab_begin + v;
        if (!better(x, id, out[k - 1].logit, out[k - 1].id)) continue;
        int j = k - 1; /* insertion into the sorted list */
        while (j > 0 && better(x, id, out[j - 1].logit, out[j - 1].id)) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = (qm_candidate){isnan(x) ? -INFINITY : x, id};
    }
}

/* c is sorted canonically; n candidates (at most QM_SAMPLE_MAX_CANDIDATES). No allocation: every
 * device of a row must take the same path. */
static int draw(const qm_candidate *c, int n, const qm_sampling *p, qm_rng *rng) {
    float w[QM_SAMPLE_MAX_CANDIDATES];
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;
    if (n > QM_SAMPLE_MAX_CANDIDATES) n = QM_SAMPLE_MAX_CANDIDATES;
    float total = 0.0f;
    for (int i = 0; i < n; i++) {
        w[i] = c[i].logit == -INFINITY ? 0.0f : qm_expf((c[i].logit - c[0].logit) / p->temperature);
        total += w[i];
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        float cum = 0.0f;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += w[i];
            if (cum >= p->top_p * total) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        total = 0.0f;
        for (int i = 0; i < n; i++) total += w[i];
    }
    float u = qm_rng_uniform(rng) * total, cum = 0.0f;
    int pick = c[n - 1].id;
    for (int i = 0; i < n; i++) {
        cum += w[i];
        if (u < cum) {
            pick = c[i].id;
            break;
        }
    }
    return pick;
}


/* Row i's candidates for its logprobs, raw (the caller's lp): the pick's logit in logprob, the
 * first candidates (top_id[0]: the largest logit) in top_id / top_logprob, n_top of them. */
static void keep_candidates(const qm_candidate *c, int m, int pick, int want, qm_token_logprobs *lp) {
    lp->logprob = -INFINITY;
    for (int j = 0; j < m; j++)
        if (c[j].id == pick) {
            lp->logprob = c[j].logit;
            break;
        }
    int keep = want - 1 > 1 ? want - 1 : 1;
    if (keep > QM_MAX_TOP_LOGPROBS) keep = QM_MAX_TOP_LOGPROBS;
    lp->n_top = keep < m ? keep : m;
    for (int j = 0; j < lp->n_top; j++) {
        lp->top_id[j] = c[j].id;
        lp->top_logprob[j] = c[j].logit;
    }
}

/* The softmax sums of the rows asking for logprobs, in fixed point over each shard's slice then
 * added exactly across the row; raw logits in lp become log-probabilities. sums: [cols + 1][n]. */
static qm_status finish_logprobs(qm_comm *comm, const float *logits, size_t ld, int vocab_len, int n,
                                 const int *want, int64_t *sums, qm_token_logprobs *lp, qm_error *err) {
    int64_t *mine = sums, *all = sums + n;
    for (int i = 0; i < n; i++) {
        int64_t sum = 0;
        const float *row = logits + (size_t)i * ld;
        const float max = lp[i].top_logprob[0];
        if (want[i] > 0)
            for (int v = 0; v < vocab_len; v++)
                if (row[v] == row[v] && row[v] != -INFINITY) sum += (int64_t)((double)qm_expf(row[v] - max) * LP_SCALE + 0.5);
        mine[i] = sum;
    }
    qm_status st = comm->ops->row_allgather(comm, mine, (size_t)n * sizeof *mine, all, err);
    if (st) return st;
    for (int i = 0; i < n; i++) {
        if (want[i] <= 0) continue;
        int64_t total = 0;
        for (int c = 0; c < comm->cols; c++) total += all[(size_t)c * (size_t)n + (size_t)i];
        const double max = lp[i].top_logprob[0], log_sum = log((double)total / LP_SCALE);
        lp[i].logprob = (float)((double)lp[i].logprob - max - log_sum);
        for (int j = 0; j < lp[i].n_top; j++) lp[i].top_logprob[j] = (float)((double)lp[i].top_logprob[j] - max - log_sum);
        if (want[i] - 1 < lp[i].n_top) lp[i].n_top = want[i] - 1;
    }
    return QM_OK;
}

qm_status qm_sample_rows(qm_comm *comm, const float *logits, size_t ld, int vocab_begin, int vocab_len, int n,
                         const qm_sampling *params, qm_rng *rngs, void *scratch, int *out, qm_error *err) {
    return qm_sample_rows_logprobs(comm, logits, ld, vocab_begin, vocab_len, n, params, NULL, rngs, scratch, out, NULL,
                                   err);
}

qm_status qm_sample_rows_logprobs(qm_comm *comm, const float *logits, size_t ld, int vocab_begin, int vocab_len,
                                  int n, const qm_sampling *params, const int *want, qm_rng *rngs, void *scratch,
                                  int *out, qm_token_logprobs *lp, qm_error *err) {
    if (n == 0) return QM_OK;
    int k = 1;
    bool any_lp = false;
    for (int i = 0; i < n; i++) {
        const int w = want && lp ? want[i] : 0;
        if (n_needed(&params[i], w) > k) k = n_needed(&params[i], w);
        any_lp |= w > 0;
    }
    size_t per_dev = (size_t)n * (size_t)k;
    qm_candidate *mine = scratch, *all = mine + per_dev;
    for (int i = 0; i < n; i++) local_top(logits + (size_t)i * ld, vocab_begin, vocab_len, k, mine + (size_t)i * k);
    qm_status st = comm->ops->row_allgather(comm, mine, per_dev * sizeof *mine, all, err);
    if (st) return st;
    int C = comm->cols;
    qm_candidate *tmp = all + (size_t)C * per_dev; /* [C][k] */
    for (int i = 0; i < n; i++) {
        int m = 0;
        for (int c = 0; c < C; c++)
            for (int j = 0; j < k; j++) tmp[m++] = all[(size_t)c * per_dev + (size_t)i * k + (size_t)j];
        qsort(tmp, (size_t)m, sizeof *tmp, cmp_candidate);
        /* Every device of the row sees the same merged list, so all of them see this alike. */
        if (tmp[0].logit == -INFINITY) {
            out[i] = -1;
            continue;
        }
        if (params[i].temperature <= 0.0f || !rngs) {
            out[i] = tmp[0].id;
        } else {
            int nk = n_candidates(&params[i]);
            out[i] = draw(tmp, nk < m ? nk : m, &params[i], &rngs[i]);
        }
        if (any_lp && want[i] > 0) keep_candidates(tmp, m, out[i], want[i], &lp[i]);
    }
    if (!any_lp) return QM_OK;
    /* after the candidates' room (k <= QM_SAMPLE_MAX_CANDIDATES), 8-byte aligned */
    uintptr_t at = (uintptr_t)((char *)scratch + QM_SAMPLE_MAX_CANDIDATES * sizeof(qm_candidate) *
                                                     ((size_t)n * (size_t)(C + 1) + (size_t)C));
    int64_t *sums = (int64_t *)((at + 7) & ~(uintptr_t)7);
    for (int i = 0; i < n; i++) /* rows with every logit -inf or NaN: no logprobs (the caller stops) */
        if (out[i] < 0 && want[i] > 0) lp[i] = (qm_token_logprobs){.logprob = -INFINITY, .top_logprob = {0}};
    return finish_logprobs(comm, logits, ld, vocab_len, n, want, sums, lp, err);
}
