/* Choosing the next token across the vocabulary shards of a row (design: Data flow).
 * Every device of the row gets the same token: greedy is the global argmax (lowest id wins ties);
 * temperature / top-k / top-p draw from the candidates the shards send, merged in one canonical
 * order (logit descending, id ascending) with a per-sequence generator, so the pick is the same
 * whatever the number of shards. */
#ifndef QM_ENGINE_SAMPLER_H
#define QM_ENGINE_SAMPLER_H

#include <stdint.h>
#include "mesh/comm.h"

#define QM_SAMPLE_MAX_CANDIDATES 1024 /* candidates per shard when top_k is off */

#define QM_MAX_TOP_LOGPROBS 20

typedef struct {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
} qm_sampling;

/* Log-probabilities under the model's own distribution (softmax of the raw logits: no temperature,
 * top-k or top-p), the same bits on every mesh: the softmax's sum is taken in fixed point (each
 * exp(l - max) rounded to a multiple of 2^-40, summed as integers), so no order of the shards
 * changes it. */
typedef struct {
    float logprob;                       /* the picked token's */
    int n_top;                           /* the most likely tokens, in canonical order */
    int32_t top_id[QM_MAX_TOP_LOGPROBS];
    float top_logprob[QM_MAX_TOP_LOGPROBS];
} qm_token_logprobs;

typedef struct {
    uint64_t s[4];
} qm_rng;

void qm_rng_seed(qm_rng *r, uint64_t seed, uint64_t stream);
/* Uniform in [0, 1) with 24 random bits (exact in float). */
float qm_rng_uniform(qm_rng *r);

typedef struct {
    float logit;
    int32_t id;
} qm_candidate;

/* Picks one token for each of n rows. logits: [n][ld] local slice of the vocabulary, starting at
 * global id vocab_begin, vocab_len long. params[i] and rngs[i] per row (rngs may be NULL when all
 * are greedy). scratch: at least qm_sample_scratch_bytes(n, comm->cols) bytes. out[i] = -1 when
 * every logit of row i is -inf or NaN (the same on every device of the mesh row). Allocates nothing. */
qm_status qm_sample_rows(qm_comm *comm, const float *logits, size_t ld, int vocab_begin, int vocab_len, int n,
                         const qm_sampling *params, qm_rng *rngs, void *scratch, int *out, qm_error *err);
/* The same, and lp[i] for the rows with want[i] > 0: the picked token's log-probability and the
 * want[i] - 1 most likely tokens' (want[i] <= 1 + QM_MAX_TOP_LOGPROBS; want NULL: none). The picks
 * are those qm_sample_rows makes. One more row collective when a row asks. */
qm_status qm_sample_rows_logprobs(qm_comm *comm, const float *logits, size_t ld, int vocab_begin, int vocab_len,
                                  int n, const qm_sampling *params, const int *want, qm_rng *rngs, void *scratch,
                                  int *out, qm_token_logprobs *lp, qm_error *err);
size_t qm_sample_scratch_bytes(int n, int cols);

#endif
