/* The prefix cache (engine/generate.c, model/device.c qm_kv_share): sequences read a shared
 * prefix's KV in place from the prefix slot. A tiny random checkpoint, batch 2, greedy, with each
 * generated token's log-probability:
 *   - requests whose shared prefixes alternate (P1, P1, P2, P1, none, none, P1), so that the prefix
 *     slot is rewritten while a sequence still reads it (qm_kv_detach gives that sequence its own
 *     copy) and a slot that read P1 is taken by a request without a prefix, generate the ids and
 *     log-probability bits of the same requests run without a shared prefix;
 *   - the shared run computes fewer prefill tokens (the prefixes were shared);
 *   - after the serving loop (the last request still read P1 in place), the same engine's full
 *     logits of two sequences (slots 0 and 1 reused from position 0) are the bits of the engine
 *     that shared nothing. */
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
#include "engine/sampler.h"

#define TOKENIZER QMESH_DATA_DIR "/tokenizers/qwen2.5"
#define N_REQ 7
#define PREFIX 24
#define MAX_NEW 10

#define N_LOGITS 5 /* positions of each of the two sequences whose logits are taken */

typedef struct {
    int n[N_REQ];
    int ids[N_REQ][MAX_NEW];
    float lp[N_REQ][MAX_NEW];
    float *logits; /* [2][N_LOGITS][vocab] after the loop */
    size_t logits_bytes;
} outputs;

static void on_done(void *ctx, int index, const qm_gen_result *r) {
    outputs *o = ctx;
    assert_true(index >= 0 && index < N_REQ && r->n_ids <= MAX_NEW);
    assert_non_null(r->logprobs);
    o->n[index] = r->n_ids;
    for (int i = 0; i < r->n_ids; i++) {
        o->ids[index][i] = r->ids[i];
        o->lp[index][i] = r->logprobs[i].logprob;
    }
}

static int setup(void **state) {
    char *dir = calloc(1, 64), model[128];
    if (!dir || scratch_dir_make(dir, 64, "prefix_cache") != 0) return -1;
    snprintf(model, sizeof model, "%s/tiny", dir);
    if (tiny_model_write(model, TOKENIZER, 3) != 0) return -1;
    *state = dir;
    return 0;
}

static int teardown(void **state) {
    scratch_dir_remove(*state);
    free(*state);
    return 0;
}

/* The requests' outputs, with their shared prefixes or (share false) without; the run's stats. */
static void run(const char *dir, bool share, outputs *o, qm_gen_stats *st) {
    static const int which[N_REQ] = {1, 1, 2, 1, 0, 0, 1}; /* the prefix of each request: P1, P2, none */
    /* request 3's 21-token tail is two attention items (model/attention.c): the second reads the
     * prefix slot's positions, then its own first 16 together, then each its last ones */
    static const int tail[N_REQ] = {3, 1, 2, 21, 4, 2, 3}, max_new[N_REQ] = {4, MAX_NEW, 3, 6, 5, 4, 3};
    int prompts[N_REQ][PREFIX + 21];
    qm_gen_request reqs[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        for (int j = 0; j < PREFIX; j++) prompts[i][j] = 100 + j * 37 + 5000 * which[i];
        for (int j = 0; j < tail[i]; j++) prompts[i][PREFIX + j] = 900 + 11 * i + j;
        reqs[i] = (qm_gen_request){.prompt = prompts[i], .n_prompt = PREFIX + tail[i],
                                   .shared_prefix = share && which[i] ? PREFIX : 0, .max_new_tokens = max_new[i],
                                   .top_p = 1.0f, .logprobs = 1};
    }
    char model[128];
    snprintf(model, sizeof model, "%s/tiny", dir);
    qm_engine_opts eo = {.model_dir = model, .rows = 1, .cols = 1, .backend = "threads", .batch = 2,
                         .threads = 1, .max_context = 256, .quiet = true};
    qm_engine *eng = NULL;
    qm_error err = {0};
    if (qm_engine_open(&eo, &eng, &err) != QM_OK) fail_msg("engine: %s", err.msg);
    memset(o, 0, sizeof *o);
    qm_gen_callbacks cb = {.on_done = on_done, .ctx = o};
    if (qm_engine_generate(eng, reqs, N_REQ, &cb, st, &err) != QM_OK) fail_msg("generate: %s", err.msg);
    const size_t per_seq = (size_t)N_LOGITS * (size_t)qm_engine_config(eng)->vocab_size;
    o->logits_bytes = 2 * per_seq * sizeof(float);
    o->logits = malloc(o->logits_bytes);
    assert_non_null(o->logits);
    const int *seqs[2] = {prompts[4], prompts[5]}, lens[2] = {N_LOGITS, N_LOGITS}; /* not P1 */
    float *outs[2] = {o->logits, o->logits + per_seq};
    if (qm_engine_logits_batch(eng, seqs, lens, 2, outs, &err) != QM_OK) fail_msg("logits: %s", err.msg);
    qm_engine_close(eng);
}

static void test_shared_prefix_bits(void **state) {
    outputs shared, plain;
    qm_gen_stats st_shared, st_plain;
    run(*state, true, &shared, &st_shared);
    run(*state, false, &plain, &st_plain);
    for (int i = 0; i < N_REQ; i++) {
        assert_int_equal(shared.n[i], plain.n[i]);
        assert_true(shared.n[i] > 0);
        for (int k = 0; k < shared.n[i]; k++) {
            if (shared.ids[i][k] != plain.ids[i][k] || memcmp(&shared.lp[i][k], &plain.lp[i][k], sizeof(float)))
                fail_msg("request %d token %d: shared prefix %d (%.9g) against %d (%.9g)", i, k, shared.ids[i][k],
                         (double)shared.lp[i][k], plain.ids[i][k], (double)plain.lp[i][k]);
        }
    }
    assert_true(st_shared.prefill_tokens < st_plain.prefill_tokens);
    assert_int_equal(shared.logits_bytes, plain.logits_bytes);
    if (memcmp(shared.logits, plain.logits, shared.logits_bytes))
        fail_msg("logits after a loop that shared a prefix differ from those of an engine that shared none");
    free(shared.logits);
    free(plain.logits);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shared_prefix_bits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
