/* Allocation failures (issue #8, point 2): every path that allocates while serving stops with
 * an error instead of dropping data or letting the devices of a row disagree.
 *
 * This program is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc (tests/CMakeLists.txt),
 * so every allocation of the qmesh libraries goes through the wrappers below, which fail on
 * demand. Only this test has the switch; the libraries hold no such state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "engine/engine.h"
#include "engine/relay.h"
#include "engine/sampler.h"
#include "io/fileutil.h"
#include "io/random_model.h"
#include "mesh/comm.h"
#include "scratch_dir.h"

#define TOKENIZER QMESH_DATA_DIR "/tokenizers/qwen2.5"

/* ---- the switch: while set, every allocation fails ---- */

static atomic_int fail_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

void *__wrap_malloc(size_t n) { return atomic_load(&fail_allocs) ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return atomic_load(&fail_allocs) ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return atomic_load(&fail_allocs) ? NULL : __real_realloc(p, n); }

/* ---- the relay of finished results (rows in other processes) ---- */

typedef struct {
    int n, req[4], n_ids[4];
    char text[4][64];
} reported;

static void on_done_record(void *ctx, int index, const qm_gen_result *r) {
    reported *rep = ctx;
    if (rep->n >= 4) return;
    rep->req[rep->n] = index;
    rep->n_ids[rep->n] = r->n_ids;
    snprintf(rep->text[rep->n], sizeof rep->text[rep->n], "%s", r->text);
    rep->n++;
}

static void test_relay_hold_fails_whole(void **state) {
    (void)state;
    qm_relay h = {0};
    int ids[3] = {5, 6, 7};
    qm_gen_result res = {.ids = ids, .n_ids = 3, .text = "abc", .reason = QM_STOP_EOS, .prompt_tokens = 9};
    assert_int_equal(qm_relay_hold(&h, 1, &res, 3), QM_OK);
    const size_t one = h.len;
    atomic_store(&fail_allocs, 1);
    char big[4096];
    memset(big, 'x', sizeof big);
    qm_gen_result res2 = {.ids = ids, .n_ids = 3, .text = big};
    qm_status st = qm_relay_hold(&h, 2, &res2, sizeof big); /* must grow: fails */
    atomic_store(&fail_allocs, 0);
    assert_int_equal(st, QM_ERR_NOMEM);
    assert_int_equal(h.len, one); /* the first result is whole, nothing half-packed after it */

    /* what is held reaches on_done whole (a 1x1 mesh: its one device is rank 0) */
    qm_thread_mesh *m = NULL;
    qm_error err = {0};
    assert_int_equal(qm_thread_mesh_create(1, 1, &m, &err), QM_OK);
    reported rep = {0};
    qm_gen_callbacks cb = {.on_done = on_done_record, .ctx = &rep};
    bool all_done = false;
    assert_int_equal(qm_relay_flush(&h, qm_thread_mesh_comm(m, 0), &cb, true, &all_done, &err), QM_OK);
    assert_true(all_done);
    assert_int_equal(rep.n, 1);
    assert_int_equal(rep.req[0], 1);
    assert_int_equal(rep.n_ids[0], 3);
    assert_string_equal(rep.text[0], "abc");
    assert_int_equal(h.len, 0);

    /* rank 0 cannot allocate what it reports: an error, not a silent skip */
    assert_int_equal(qm_relay_hold(&h, 3, &res, 3), QM_OK);
    qm_gen_callbacks cb_fail = cb;
    rep.n = 0;
    atomic_store(&fail_allocs, 1);
    st = qm_relay_flush(&h, qm_thread_mesh_comm(m, 0), &cb_fail, true, &all_done, &err);
    atomic_store(&fail_allocs, 0);
    assert_int_equal(st, QM_ERR_NOMEM);
    assert_int_equal(rep.n, 0);
    qm_relay_free(&h);
    qm_thread_mesh_destroy(m);
}

/* ---- the sampler allocates nothing: no device can fall back to another pick alone ---- */

static void test_sampler_allocates_nothing(void **state) {
    (void)state;
    enum { V = 500, N = 3 };
    float *logits = malloc(sizeof(float) * V * N);
    for (int i = 0; i < V * N; i++) logits[i] = (float)((i * 7919) % 1000) / 100.0f;
    qm_sampling sp[N] = {{0.0f, 0, 1.0f}, {0.8f, 40, 0.9f}, {1.2f, 0, 0.95f}};
    qm_thread_mesh *m = NULL;
    qm_error err = {0};
    assert_int_equal(qm_thread_mesh_create(1, 1, &m, &err), QM_OK);
    void *scratch = malloc(qm_sample_scratch_bytes(N, 1));
    int want[N], got[N];
    qm_rng rng[N];
    for (int i = 0; i < N; i++) qm_rng_seed(&rng[i], 42, (uint64_t)i);
    assert_int_equal(qm_sample_rows(qm_thread_mesh_comm(m, 0), logits, V, 0, V, N, sp, rng, scratch, want, &err), QM_OK);
    for (int i = 0; i < N; i++) qm_rng_seed(&rng[i], 42, (uint64_t)i);
    atomic_store(&fail_allocs, 1);
    qm_status st = qm_sample_rows(qm_thread_mesh_comm(m, 0), logits, V, 0, V, N, sp, rng, scratch, got, &err);
    atomic_store(&fail_allocs, 0);
    assert_int_equal(st, QM_OK);
    assert_memory_equal(got, want, sizeof want);
    free(scratch);
    free(logits);
    qm_thread_mesh_destroy(m);
}

/* ---- generation: an allocation failure mid-run stops every device of the row, with a message ---- */

typedef struct {
    char dir[64], model[128];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f || scratch_dir_make(f->dir, sizeof f->dir, "alloc_failure") != 0) return -1;
    snprintf(f->model, sizeof f->model, "%s/tiny", f->dir);
    qm_error err = {0};
    qm_config cfg;
    if (!qm_random_preset("tiny", &cfg) || mkdir(f->model, 0755) != 0) return -1;
    qm_random_opts ro = {.seed = 3, .dtype = QM_DT_BF16, .shards = 1};
    if (qm_random_model_write(&cfg, f->model, &ro, &err) != QM_OK) return -1;
    char src[256], dst[256];
    snprintf(src, sizeof src, "%s/tokenizer.json", TOKENIZER);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", f->model);
    if (qm_copy_file(src, dst, &err) != QM_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    scratch_dir_remove(f->dir);
    free(f);
    return 0;
}

typedef struct {
    int texts, done;
} progress;

/* From the first streamed text on, every allocation fails. */
static void on_text_then_fail(void *ctx, int index, const char *text) {
    (void)index, (void)text;
    ((progress *)ctx)->texts++;
    atomic_store(&fail_allocs, 1);
}

static void on_done_count(void *ctx, int index, const qm_gen_result *r) {
    (void)index, (void)r;
    ((progress *)ctx)->done++;
}

static void test_generate_stops_on_failed_allocation(void **state) {
    fixture *f = *state;
    qm_error err = {0};
    qm_engine *e = NULL;
    qm_engine_opts o = {.model_dir = f->model, .rows = 1, .cols = 2, .batch = 2, .threads = 2, .max_context = 512,
                        .quiet = true};
    assert_int_equal(qm_engine_open(&o, &e, &err), QM_OK);
    int prompt[4] = {9707, 11, 1879, 0};
    qm_gen_request req[2] = {{.prompt = prompt, .n_prompt = 4, .max_new_tokens = 200},
                             {.prompt = prompt, .n_prompt = 3, .max_new_tokens = 200}};
    progress pr = {0};
    qm_gen_callbacks cb = {.on_done = on_done_count, .on_text = on_text_then_fail, .ctx = &pr};
    qm_status st = qm_engine_generate(e, req, 2, &cb, NULL, &err);
    atomic_store(&fail_allocs, 0);
    assert_true(pr.texts >= 1);
    assert_int_not_equal(st, QM_OK); /* before the fix: QM_OK with the text silently cut */
    assert_non_null(strstr(err.msg, "out of memory"));
    assert_int_equal(pr.done, 0); /* no truncated result was reported as finished */
    qm_engine_close(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_hold_fails_whole),
        cmocka_unit_test(test_sampler_allocates_nothing),
        cmocka_unit_test_setup_teardown(test_generate_stops_on_failed_allocation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
