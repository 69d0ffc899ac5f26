#include "engine/sampler.h"

#include <math.h>
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

/* mine [n][k], all [cols][n][k], merge [cols][k] (k <= QM_SAMPLE_MAX_CANDIDATES). */
size_t qm_sample_scratch_bytes(int n, int cols) {
    return QM_SAMPLE_MAX_CANDIDATES * sizeof(qm_candidate) * ((size_t)n * (size_t)(cols + 1) + (size_t)cols) + 64;
}

/* The k best of the local slice, in canonical order (padded with -inf / INT32_MAX). */
static void local_top(const float *row, int vocab_begin, int len, int k, qm_candidate *out) {
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
        w[i] = c[i].logit == -INFINITY ? 0.0f : expf((c[i].logit - c[0].logit) / p->temperature);
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

qm_status qm_sample_rows(qm_comm *comm, const float *logits, size_t ld, int vocab_begin, int vocab_len, int n,
                         const qm_sampling *params, qm_rng *rngs, void *scratch, int *out, qm_error *err) {
    if (n == 0) return QM_OK;
    int k = 1;
    for (int i = 0; i < n; i++)
        if (n_candidates(&params[i]) > k) k = n_candidates(&params[i]);
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
    }
    return QM_OK;
}
