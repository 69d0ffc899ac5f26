/* The greedy pick (engine/sampler.c): the largest logit, NaN ranking as -inf, the lowest id among
 * equal logits (+0 and -0 equal), on rows of random logits with planted ties, zeros of both signs,
 * NaN and -inf, and rows of only -inf / NaN (the first id); against a plain loop over the row. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "engine/sampler.h"
#include "mesh/comm.h"

/* The canonical best of row[0..len): a plain loop. */
static int reference_pick(const float *row, int len) {
    int best = 0;
    for (int v = 1; v < len; v++) {
        const float a = isnan(row[v]) ? -INFINITY : row[v], b = isnan(row[best]) ? -INFINITY : row[best];
        if (a > b) best = v;
    }
    return best;
}

static void test_greedy_ties_nan_zeros(void **state) {
    (void)state;
    enum { V = 1003, N = 24 };
    float *logits = malloc(sizeof(float) * V * N);
    uint64_t s = 12345;
    for (int i = 0; i < V * N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        logits[i] = (float)((int)(s >> 40) % 2000 - 1000) / 64.0f;
    }
    for (int i = 0; i < N; i++) {
        float *row = logits + (size_t)i * V;
        const int a = (i * 37) % V, b = (i * 101 + 7) % V; /* a tie at the top, in either order */
        if (i % 6 == 0) row[a] = row[b] = 100.0f;
        if (i % 6 == 1) { /* the best is a zero of either sign */
            for (int v = 0; v < V; v++) row[v] = row[v] > 0 ? -row[v] : row[v];
            row[a] = -0.0f;
            row[b] = 0.0f;
        }
        if (i % 6 == 2) row[a] = NAN, row[b] = INFINITY;
        if (i % 6 == 3) row[i % 8] = 50.0f; /* in the tail after the last 8 */
        if (i % 6 == 3) row[V - 1 - i % 3] = 50.0f;
        if (i % 6 == 4)
            for (int v = 0; v < V; v++) row[v] = v % 3 ? -INFINITY : NAN;
        if (i % 6 == 5)
            for (int v = 0; v < V; v++) row[v] = -INFINITY;
    }
    qm_sampling sp[N];
    for (int i = 0; i < N; i++) sp[i] = (qm_sampling){0.0f, 0, 1.0f};
    qm_thread_mesh *m = NULL;
    qm_error err = {0};
    assert_int_equal(qm_thread_mesh_create(1, 1, &m, &err), QM_OK);
    void *scratch = malloc(qm_sample_scratch_bytes(N, 1));
    int got[N];
    assert_int_equal(qm_sample_rows(qm_thread_mesh_comm(m, 0), logits, V, 0, V, N, sp, NULL, scratch, got, &err), QM_OK);
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * V;
        bool none = true; /* every logit -inf or NaN: the sampler reports no pick (-1) */
        for (int v = 0; v < V; v++) none &= !(row[v] > -INFINITY);
        const int want = none ? -1 : reference_pick(row, V);
        if (got[i] != want) fail_msg("row %d: picked %d, the canonical best is %d", i, got[i], want);
    }
    free(scratch);
    free(logits);
    qm_thread_mesh_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_greedy_ties_nan_zeros)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
