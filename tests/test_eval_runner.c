/* The GSM8K runner (eval/runner.h) without the command-line tool: a tiny random checkpoint with the
 * Qwen2.5 tokenizer, 3 questions of the GSM8K test set, 2 chain-of-thought shots, 8 new tokens.
 *   - a run writes one result line per question (indices 0..2) and returns n = 3, n_new = 3, with
 *     progress reported through the callback (a final call last);
 *   - a resumed run of the complete file serves nothing (n_new = 0), keeps the file as it is;
 *   - a file with a cut last line is repaired on resume (noted) and completed;
 *   - an existing results file without resume or force, a resume on another data file and a
 *     missing exemplars file are refused by prepare; a plan runs once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "scratch_dir.h"

#include "engine/engine.h"
#include "eval/eval.h"
#include "eval/runner.h"
#include "io/fileutil.h"
#include "io/random_model.h"

#define EXEMPLARS QMESH_DATA_DIR "/gsm8k/cot8_exemplars.jsonl"
#define TEST_DATA QMESH_DATA_DIR "/gsm8k/test.jsonl"
#define TOKENIZER QMESH_DATA_DIR "/tokenizers/qwen2.5"

typedef struct {
    char dir[64];
    char model[128], data[128], other[128], out[128];
    qm_engine *eng;
} fixture;

typedef struct {
    int calls, finals, last_done, last_total, notes;
    bool final_last;
    char note[512];
} seen;

static void on_progress(void *ctx, const qm_eval_progress *p) {
    seen *s = ctx;
    s->calls++;
    s->finals += p->final;
    s->final_last = p->final;
    s->last_done = p->done;
    s->last_total = p->total;
    assert_true(p->done_run <= p->pending);
}

static void on_note(void *ctx, const char *msg) {
    seen *s = ctx;
    s->notes++;
    snprintf(s->note, sizeof s->note, "%s", msg);
}

/* The first n lines of src into dst. */
static void copy_lines(const char *src, const char *dst, int n) {
    FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
    assert_non_null(in);
    assert_non_null(out);
    char *line = NULL;
    size_t cap = 0;
    for (int i = 0; i < n && getline(&line, &cap, in) != -1; i++) fputs(line, out);
    free(line);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (scratch_dir_make(f->dir, sizeof f->dir, "eval_runner") != 0) return -1;
    snprintf(f->model, sizeof f->model, "%s/tiny", f->dir);
    snprintf(f->data, sizeof f->data, "%s/gsm8k3.jsonl", f->dir);
    snprintf(f->other, sizeof f->other, "%s/other.jsonl", f->dir);
    snprintf(f->out, sizeof f->out, "%s/results.jsonl", f->dir);
    qm_error err = {0};
    qm_config cfg;
    if (!qm_random_preset("tiny", &cfg) || mkdir(f->model, 0755) != 0) return -1;
    qm_random_opts ro = {.seed = 1, .dtype = QM_DT_BF16, .shards = 1};
    if (qm_random_model_write(&cfg, f->model, &ro, &err) != QM_OK) return -1;
    const char *copy[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        char src[256], dst[256];
        snprintf(src, sizeof src, "%s/%s", TOKENIZER, copy[i]);
        snprintf(dst, sizeof dst, "%s/%s", f->model, copy[i]);
        if (qm_copy_file(src, dst, &err) != QM_OK) return -1;
    }
    copy_lines(TEST_DATA, f->data, 3);
    FILE *o = fopen(f->other, "w");
    if (!o) return -1;
    fputs("{\"question\": \"What is 1+1?\", \"answer\": \"#### 2\"}\n", o);
    fclose(o);
    qm_engine_opts eo = {.model_dir = f->model, .rows = 1, .cols = 1, .backend = "threads", .batch = 2,
                         .threads = 1, .max_context = 2048, .quiet = true};
    if (qm_engine_open(&eo, &f->eng, &err) != QM_OK) {
        fprintf(stderr, "engine: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (f->eng) qm_engine_close(f->eng);
    scratch_dir_remove(f->dir);
    free(f);
    return 0;
}

static qm_eval_gsm8k_opts opts_of(const fixture *f) {
    return (qm_eval_gsm8k_opts){.data = f->data, .out = f->out, .exemplars = EXEMPLARS, .shots = 2,
                                .max_new = 8, .rows = 1, .cols = 1, .batch = 2};
}

static char *slurp(const char *path) {
    char *buf = NULL;
    size_t n = 0;
    qm_error err = {0};
    if (qm_read_text_file(path, "results", &buf, &n, &err) != QM_OK) fail_msg("%s", err.msg);
    char *copy = malloc(n + 1); /* a fresh block: gcc -O3 otherwise "sees" a dangling pointer */
    assert_non_null(copy);
    memcpy(copy, buf, n);
    copy[n] = 0;
    free(buf);
    return copy;
}

/* A prepared and finished run of o; returns the summary. */
static qm_eval_gsm8k_summary run_ok(const fixture *f, const qm_eval_gsm8k_opts *o, int pending, seen *s) {
    qm_error err = {0};
    qm_eval_gsm8k_plan *plan = NULL;
    if (qm_eval_gsm8k_prepare(o, &plan, &err) != QM_OK) fail_msg("prepare: %s", err.msg);
    assert_int_equal(qm_eval_gsm8k_pending(plan), pending);
    qm_eval_progress_cb cb = {.on_progress = on_progress, .on_note = on_note, .ctx = s};
    qm_eval_gsm8k_summary sum;
    if (qm_eval_gsm8k_run(plan, f->eng, &cb, &sum, &err) != QM_OK) fail_msg("run: %s", err.msg);
    /* a plan runs once */
    assert_int_equal(qm_eval_gsm8k_run(plan, f->eng, NULL, NULL, &err), QM_ERR_ARG);
    qm_eval_gsm8k_plan_free(plan);
    return sum;
}

static void check_file(const char *path, int n) {
    qm_eval_results r;
    qm_error err = {0};
    if (qm_eval_results_load(path, false, &r, &err) != QM_OK) fail_msg("%s", err.msg);
    assert_int_equal(r.n, n);
    assert_false(r.had_partial);
    for (int i = 0; i < n; i++) {
        const qm_eval_result *x = qm_eval_results_find(&r, i);
        assert_non_null(x);
        assert_string_equal(x->mesh, "1x1");
        assert_int_equal(x->batch, 2);
        assert_true(x->gen_tokens <= 8);
    }
    qm_eval_results_free(&r);
}

static void test_run_and_resume(void **state) {
    fixture *f = *state;
    qm_eval_gsm8k_opts o = opts_of(f);
    seen s = {0};
    qm_eval_gsm8k_summary sum = run_ok(f, &o, 3, &s);
    assert_true(sum.output_rank);
    assert_int_equal(sum.file.n, 3);
    assert_int_equal(sum.n_new, 3);
    assert_true(sum.shared_prefix_tokens > 0);
    assert_true(sum.gen.gen_tokens > 0 && sum.gen.gen_tokens <= 3 * 8);
    assert_true(sum.wall_s > 0);
    assert_true(sum.file.strict_lo <= sum.file.strict_acc && sum.file.strict_acc <= sum.file.strict_hi);
    assert_int_equal(s.calls, 4); /* one per question, then the final one */
    assert_int_equal(s.finals, 1);
    assert_true(s.final_last);
    assert_int_equal(s.last_done, 3);
    assert_int_equal(s.last_total, 3);
    assert_int_equal(s.notes, 0);
    check_file(f->out, 3);

    /* resume of the complete file: nothing to do, the file as it was */
    char *before = slurp(f->out);
    o.resume = true;
    seen s2 = {0};
    sum = run_ok(f, &o, 0, &s2);
    assert_int_equal(sum.file.n, 3);
    assert_int_equal(sum.n_new, 0);
    assert_int_equal(s2.calls, 0);
    assert_int_equal(s2.notes, 1);
    assert_non_null(strstr(s2.note, "resuming"));
    char *after = slurp(f->out);
    assert_string_equal(before, after);
    free(after);

    /* a cut last line: dropped (noted) and redone; the completions are those of the first run */
    FILE *w = fopen(f->out, "w");
    assert_non_null(w);
    const char *third = strchr(strchr(before, '\n') + 1, '\n') + 1;
    fwrite(before, 1, (size_t)(third - before) + 30, w);
    assert_int_equal(fclose(w), 0);
    seen s3 = {0};
    sum = run_ok(f, &o, 1, &s3);
    assert_int_equal(sum.file.n, 3);
    assert_int_equal(sum.n_new, 1);
    assert_int_equal(s3.notes, 2);
    check_file(f->out, 3);
    qm_eval_results a, b;
    qm_error err = {0};
    char first[160];
    snprintf(first, sizeof first, "%s/first.jsonl", f->dir);
    w = fopen(first, "w");
    assert_non_null(w);
    fputs(before, w);
    assert_int_equal(fclose(w), 0);
    assert_int_equal(qm_eval_results_load(first, false, &a, &err), QM_OK);
    assert_int_equal(qm_eval_results_load(f->out, false, &b, &err), QM_OK);
    for (int i = 0; i < 3; i++)
        assert_string_equal(qm_eval_results_find(&a, i)->completion, qm_eval_results_find(&b, i)->completion);
    qm_eval_results_free(&a);
    qm_eval_results_free(&b);
    free(before);
}

static void test_prepare_refusals(void **state) {
    fixture *f = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/exists.jsonl", f->dir);
    FILE *w = fopen(path, "w");
    assert_non_null(w);
    fputs("{\"index\":0,\"question\":\"another\",\"completion\":\"x\",\"strict_correct\":false,"
          "\"flex_correct\":false}\n",
          w);
    assert_int_equal(fclose(w), 0);
    qm_eval_gsm8k_opts o = opts_of(f);
    o.out = path;
    qm_eval_gsm8k_plan *plan = (qm_eval_gsm8k_plan *)&o; /* must be reset to NULL */
    qm_error err = {0};
    assert_int_equal(qm_eval_gsm8k_prepare(&o, &plan, &err), QM_ERR_ARG);
    assert_null(plan);
    assert_non_null(strstr(err.msg, "already exists"));

    o.resume = true; /* index 0 of the file holds another question than the data's */
    assert_int_equal(qm_eval_gsm8k_prepare(&o, &plan, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "another question"));

    o.force = true;
    assert_int_equal(qm_eval_gsm8k_prepare(&o, &plan, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "exclude"));

    o = opts_of(f);
    snprintf(path, sizeof path, "%s/new.jsonl", f->dir);
    o.out = path;
    o.exemplars = NULL;
    assert_int_equal(qm_eval_gsm8k_prepare(&o, &plan, &err), QM_ERR_IO);
    assert_non_null(strstr(err.msg, "cot8_exemplars"));
    o.exemplars = f->data; /* no "rationale" */
    assert_int_equal(qm_eval_gsm8k_prepare(&o, &plan, &err), QM_ERR_FORMAT);
    o.exemplars = EXEMPLARS;
    o.data = f->other;
    assert_int_equal(qm_eval_gsm8k_prepare(&o, &plan, &err), QM_OK);
    assert_int_equal(qm_eval_gsm8k_pending(plan), 1);
    qm_eval_gsm8k_plan_free(plan);
    assert_int_equal(access(path, F_OK), -1); /* prepare writes nothing */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_and_resume),
        cmocka_unit_test(test_prepare_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
