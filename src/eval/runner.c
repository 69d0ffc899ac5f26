/* GSM8K evaluation runner (eval/runner.h): checks the inputs, builds the prompts, drives the engine
 * and writes the results file. Never prints: progress and notes go to the caller's callbacks. */
#include <errno.h>
#include <stdarg.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eval/runner.h"
#include "text/tokenizer.h"

struct qm_eval_gsm8k_plan {
    qm_eval_gsm8k_opts o;     /* data and out point into the copies below */
    char *data_path, *out_path;
    qm_eval_dataset data, shots;
    qm_eval_prompt_style style;
    char *prefix;             /* few-shot prefix text */
    qm_eval_results all;      /* previous lines (resume) + this run's */
    bool exists;              /* out existed when prepared */
    int n_pending;
    bool ran;
};

/* One run's state: the requests, and what on_done needs. */
typedef struct {
    qm_eval_gsm8k_plan *plan;
    const qm_eval_progress_cb *cb;
    qm_gen_request *reqs;
    int **req_ids;
    const qm_eval_problem **req_problem; /* request position -> problem */
    int n_reqs;
    int *prefix_ids, n_prefix;
    char *shared_text;        /* chat: the shared part of every wrapped prompt */
    FILE *out;
    int run, n_before, done_run; /* n_before: results on file before this run */
    long strict_ok, flex_ok, gen_tokens_run;
    char mesh[32];
    double t0;
    qm_error werr;
    bool failed;
} runner;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ prepare */

/* out: refuse to overwrite without force; must be writable (checked without touching it). */
static qm_status check_out(const qm_eval_gsm8k_opts *o, bool *exists, qm_error *err) {
    struct stat st;
    *exists = stat(o->out, &st) == 0;
    if (*exists) {
        if (!S_ISREG(st.st_mode)) return qm_fail(err, QM_ERR_ARG, "--out %s is not a regular file", o->out);
        if (!o->resume && !o->force)
            return qm_fail(err, QM_ERR_ARG,
                           "--out %s already exists: pass --resume to continue it or --force to overwrite it", o->out);
        if (access(o->out, W_OK) != 0)
            return qm_fail(err, QM_ERR_IO, "--out %s is not writable: %s", o->out, strerror(errno));
        return QM_OK;
    }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", o->out);
    const char *dir = dirname(tmp);
    if (access(dir, W_OK | X_OK) != 0)
        return qm_fail(err, QM_ERR_IO, "--out %s cannot be created: folder %s: %s", o->out, dir, strerror(errno));
    return QM_OK;
}

static qm_status check_opts(const qm_eval_gsm8k_opts *o, qm_error *err) {
    if (!o->data) return qm_fail(err, QM_ERR_ARG, "--data FILE is required");
    if (!o->out) return qm_fail(err, QM_ERR_ARG, "--out FILE.jsonl is required");
    if (o->shots < 0 || o->shots > 8) return qm_fail(err, QM_ERR_ARG, "--shots must be 0 to 8, not %d", o->shots);
    if (o->limit < 0) return qm_fail(err, QM_ERR_ARG, "--limit must be >= 1, not %d", o->limit);
    if (o->max_new < 1) return qm_fail(err, QM_ERR_ARG, "--max-new-tokens must be >= 1, not %d", o->max_new);
    if (o->resume && o->force) return qm_fail(err, QM_ERR_ARG, "--resume and --force exclude each other");
    return QM_OK;
}

/* The few-shot examples (from o's exemplars or fewshot_from) and the prompt prefix made of them. */
static qm_status load_shots(qm_eval_gsm8k_plan *p, const qm_eval_gsm8k_opts *o, qm_error *err) {
    p->style = o->fewshot_from ? QM_EVAL_PROMPT_QA : QM_EVAL_PROMPT_COT;
    if (o->shots > 0) {
        const char *path = o->fewshot_from ? o->fewshot_from : o->exemplars;
        if (!path)
            return qm_fail(err, QM_ERR_IO,
                           "cannot find cot8_exemplars.jsonl (set $QMESH_DATA to the shared data folder or pass "
                           "--exemplars FILE)");
        qm_eval_data_kind kind = o->fewshot_from ? QM_EVAL_DATA_GSM8K : QM_EVAL_DATA_EXEMPLARS;
        qm_status st = qm_eval_data_load(path, kind, o->shots, &p->shots, err);
        if (st != QM_OK) return st;
    }
    return qm_eval_prompt_prefix(p->style, &p->shots, o->shots, &p->prefix, err);
}

/* Resume: the lines on file must hold the questions of this data file at their indices. */
static qm_status load_previous(qm_eval_gsm8k_plan *p, qm_error *err) {
    qm_status st = qm_eval_results_load(p->o.out, false, &p->all, err);
    if (st != QM_OK) return st;
    for (int i = 0; i < p->all.n; i++) {
        const qm_eval_result *r = &p->all.items[i];
        for (int j = 0; j < p->data.n; j++) {
            if (p->data.items[j].index != r->index) continue;
            if (r->question && strcmp(r->question, p->data.items[j].question) != 0)
                return qm_fail(err, QM_ERR_ARG,
                               "--resume: %s holds another question at index %d than %s (another data file?)",
                               p->o.out, r->index, p->o.data);
        }
    }
    return QM_OK;
}

qm_status qm_eval_gsm8k_prepare(const qm_eval_gsm8k_opts *o, qm_eval_gsm8k_plan **plan, qm_error *err) {
    *plan = NULL;
    qm_status st = check_opts(o, err);
    if (st != QM_OK) return st;
    qm_eval_gsm8k_plan *p = calloc(1, sizeof *p);
    if (!p) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    p->o = *o;
    p->data_path = strdup(o->data);
    p->out_path = strdup(o->out);
    if (!p->data_path || !p->out_path) {
        qm_eval_gsm8k_plan_free(p);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    }
    p->o.data = p->data_path;
    p->o.out = p->out_path;
    p->o.exemplars = p->o.fewshot_from = NULL; /* read here only (the style keeps which one) */
    st = qm_eval_data_load(o->data, QM_EVAL_DATA_GSM8K, o->limit, &p->data, err);
    if (st == QM_OK) st = load_shots(p, o, err);
    if (st == QM_OK) st = check_out(&p->o, &p->exists, err);
    if (st == QM_OK && p->o.resume && p->exists) st = load_previous(p, err);
    if (st != QM_OK) {
        qm_eval_gsm8k_plan_free(p);
        return st;
    }
    for (int j = 0; j < p->data.n; j++)
        if (!qm_eval_results_find(&p->all, p->data.items[j].index)) p->n_pending++;
    *plan = p;
    return QM_OK;
}

int qm_eval_gsm8k_pending(const qm_eval_gsm8k_plan *plan) { return plan->n_pending; }

void qm_eval_gsm8k_plan_free(qm_eval_gsm8k_plan *p) {
    if (!p) return;
    qm_eval_results_free(&p->all);
    qm_eval_data_free(&p->data);
    qm_eval_data_free(&p->shots);
    free(p->prefix);
    free(p->data_path);
    free(p->out_path);
    free(p);
}

/* ------------------------------------------------------------------ prompts */

static qm_status tokenize_str(const qm_tokenizer *tok, const char *s, int **ids, int *n, qm_error *err) {
    return qm_tokenize(tok, s, strlen(s), ids, n, err);
}

/* Chat: wraps prefix + suffix (consumed) and splits off the shared part (kept the first time). */
static qm_status chat_rest(runner *r, qm_engine *eng, char *suffix, char **rest, qm_error *err) {
    const char *prefix = r->plan->prefix;
    size_t np = strlen(prefix), ns = strlen(suffix);
    char *user = malloc(np + ns + 1), *wrapped = NULL, *sh = NULL;
    qm_status st = QM_ERR_NOMEM;
    if (user) {
        memcpy(user, prefix, np);
        memcpy(user + np, suffix, ns + 1);
        st = qm_engine_chat_prompt(eng, user, NULL, &wrapped, err);
    } else {
        qm_fail(err, QM_ERR_NOMEM, "out of memory");
    }
    free(user);
    free(suffix);
    if (st != QM_OK) return st;
    st = qm_eval_chat_split(wrapped, prefix, &sh, rest, err);
    free(wrapped);
    if (st != QM_OK) return st;
    if (!r->shared_text) r->shared_text = sh;
    else free(sh);
    return QM_OK;
}

/* The ids of the shared prefix, tokenized once (before the first request). */
static qm_status prefix_ids(runner *r, const qm_tokenizer *tok, qm_error *err) {
    if (r->prefix_ids) return QM_OK;
    const char *sh = r->plan->o.chat ? r->shared_text : r->plan->prefix;
    if (*sh) return tokenize_str(tok, sh, &r->prefix_ids, &r->n_prefix, err);
    r->prefix_ids = malloc(sizeof(int));
    r->n_prefix = 0;
    return QM_OK;
}

/* Request r->n_reqs for problem p: ids = tokens(shared prefix) + tokens(rest), tokenized apart. */
static qm_status add_request(runner *r, qm_engine *eng, const qm_eval_problem *p, qm_error *err) {
    const qm_eval_gsm8k_plan *plan = r->plan;
    const qm_tokenizer *tok = qm_engine_tokenizer(eng);
    char *rest = qm_eval_prompt_suffix(plan->style, p->question);
    if (!rest) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    qm_status st = plan->o.chat ? chat_rest(r, eng, rest, &rest, err) : QM_OK;
    if (st != QM_OK) return st;
    st = prefix_ids(r, tok, err);
    int *sid = NULL, ns = 0;
    if (st == QM_OK) st = tokenize_str(tok, rest, &sid, &ns, err);
    free(rest);
    if (st != QM_OK) return st;
    int *ids = malloc((size_t)(r->n_prefix + ns) * sizeof *ids + 1);
    if (!ids || !r->prefix_ids) {
        free(sid);
        free(ids);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    }
    memcpy(ids, r->prefix_ids, (size_t)r->n_prefix * sizeof *ids);
    memcpy(ids + r->n_prefix, sid, (size_t)ns * sizeof *ids);
    free(sid);
    int n_stop;
    const char *const *stops = qm_eval_prompt_stops(plan->style, &n_stop);
    r->req_ids[r->n_reqs] = ids;
    r->req_problem[r->n_reqs] = p;
    r->reqs[r->n_reqs++] = (qm_gen_request){
        .prompt = ids,
        .n_prompt = r->n_prefix + ns,
        .shared_prefix = plan->o.no_prefix_cache ? 0 : r->n_prefix,
        .max_new_tokens = plan->o.max_new,
        .temperature = 0.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .seed = 0,
        .stop = stops,
        .n_stop = n_stop,
        .stop_at_eos = true,
    };
    return QM_OK;
}

static qm_status build_requests(runner *r, qm_engine *eng, qm_error *err) {
    const qm_eval_gsm8k_plan *plan = r->plan;
    size_t n = (size_t)(plan->data.n > 0 ? plan->data.n : 1);
    r->req_problem = calloc(n, sizeof *r->req_problem);
    r->req_ids = calloc(n, sizeof *r->req_ids);
    r->reqs = calloc(n, sizeof *r->reqs);
    if (!r->req_problem || !r->req_ids || !r->reqs) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    for (int j = 0; j < plan->data.n; j++) {
        const qm_eval_problem *p = &plan->data.items[j];
        if (qm_eval_results_find(&plan->all, p->index)) continue;
        qm_status st = add_request(r, eng, p, err);
        if (st != QM_OK) return st;
    }
    return QM_OK;
}

static void runner_free(runner *r) {
    if (r->out) fclose(r->out);
    for (int i = 0; i < r->n_reqs; i++) free(r->req_ids[i]);
    free(r->req_ids);
    free(r->reqs);
    free(r->req_problem);
    free(r->prefix_ids);
    free(r->shared_text);
}

/* ------------------------------------------------------------------ results */

static void note(const runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const runner *r, const char *fmt, ...) {
    if (!r->cb || !r->cb->on_note) return;
    char msg[PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->cb->on_note(r->cb->ctx, msg);
}

static void report(const runner *r, bool final) {
    if (!r->cb || !r->cb->on_progress) return;
    qm_eval_progress p = {
        .done = r->plan->all.n,
        .total = r->n_before + r->n_reqs,
        .done_run = r->done_run,
        .pending = r->n_reqs,
        .strict_ok = r->strict_ok,
        .flex_ok = r->flex_ok,
        .gen_tokens_run = r->gen_tokens_run,
        .elapsed_s = now_s() - r->t0,
        .final = final,
    };
    r->cb->on_progress(r->cb->ctx, &p);
}

/* Output rank: repairs a cut last line (resume) and opens the results file. */
static qm_status open_results(runner *r, qm_error *err) {
    const qm_eval_gsm8k_plan *plan = r->plan;
    const char *path = plan->o.out;
    if (plan->o.resume && plan->exists) {
        qm_eval_results again;
        qm_status st = qm_eval_results_load(path, true, &again, err); /* drops a cut line */
        if (st != QM_OK) return st;
        if (again.had_partial) note(r, "%s: dropped a truncated last line", path);
        qm_eval_results_free(&again);
    }
    r->out = fopen(path, plan->o.resume ? "ab" : "wb");
    if (!r->out) return qm_fail(err, QM_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (plan->o.resume && plan->all.n)
        note(r, "resuming %s: %d done, %d to go", path, plan->all.n, r->n_reqs);
    return QM_OK;
}

/* A stop reason as the results file writes it. */
static const char *stop_name(qm_stop_reason reason) {
    switch (reason) {
    case QM_STOP_EOS: return "eos";
    case QM_STOP_STRING: return "stop";
    case QM_STOP_CANCELLED: return "cancelled";
    case QM_STOP_LENGTH: return "length";
    }
    return "";
}

static void on_done(void *ctx, int i, const qm_gen_result *g) {
    runner *r = ctx;
    if (r->failed) return;
    const qm_eval_problem *p = r->req_problem[i];
    qm_eval_extraction ex;
    qm_eval_extract(g->text, &ex);
    qm_eval_result x = {
        .index = p->index,
        .question = p->question,
        .gold = p->has_gold ? (char *)p->gold : NULL,
        .completion = g->text ? g->text : "",
        .strict = ex.has_strict ? ex.strict : NULL,
        .flex = ex.has_flex ? ex.flex : NULL,
        .prompt_tokens = g->prompt_tokens,
        .gen_tokens = g->n_ids,
        .ms = g->ms,
        .batch = r->plan->o.batch,
        .run = r->run,
        .t_ms = (now_s() - r->t0) * 1000.0,
    };
    snprintf(x.mesh, sizeof x.mesh, "%s", r->mesh);
    snprintf(x.stop, sizeof x.stop, "%s", stop_name(g->reason));
    x.strict_correct = p->has_gold && ex.has_strict && qm_eval_numbers_equal(ex.strict, p->gold);
    x.flex_correct = p->has_gold && ex.has_flex && qm_eval_numbers_equal(ex.flex, p->gold);
    char *line = qm_eval_result_line(&x);
    if (!line) {
        r->failed = true;
        qm_fail(&r->werr, QM_ERR_NOMEM, "out of memory writing a result");
        return;
    }
    if (r->out && (fputs(line, r->out) == EOF || fflush(r->out) != 0)) {
        r->failed = true;
        qm_fail(&r->werr, QM_ERR_IO, "cannot write %s: %s", r->plan->o.out, strerror(errno));
    }
    free(line);
    if (r->failed) return;
    if (qm_eval_results_add(&r->plan->all, &x, &r->werr) != QM_OK) {
        r->failed = true;
        return;
    }
    r->done_run++;
    r->strict_ok += x.strict_correct;
    r->flex_ok += x.flex_correct;
    r->gen_tokens_run += x.gen_tokens;
    report(r, false);
}

/* ------------------------------------------------------------------ run */

/* Output rank, after the engine returned: the final progress, the file closed, the figures. */
static qm_status finish(runner *r, const qm_gen_stats *stats, qm_eval_gsm8k_summary *s, qm_error *err) {
    if (r->n_reqs > 0) report(r, true);
    FILE *f = r->out;
    r->out = NULL;
    if (fclose(f) != 0) return qm_fail(err, QM_ERR_IO, "cannot write %s: %s", r->plan->o.out, strerror(errno));
    qm_eval_gsm8k_summary z = {.output_rank = true, .n_new = r->n_reqs, .shared_prefix_tokens = r->n_prefix,
                               .gen = *stats};
    qm_eval_summarize(&r->plan->all, &z.file);
    z.wall_s = stats->wall_s > 0 ? stats->wall_s : now_s() - r->t0;
    z.tokens_per_s = z.wall_s > 0 ? (double)stats->gen_tokens / z.wall_s : 0.0;
    if (s) *s = z;
    return QM_OK;
}

qm_status qm_eval_gsm8k_run(qm_eval_gsm8k_plan *plan, qm_engine *eng, const qm_eval_progress_cb *progress,
                            qm_eval_gsm8k_summary *out, qm_error *err) {
    if (out) *out = (qm_eval_gsm8k_summary){0};
    if (plan->ran) return qm_fail(err, QM_ERR_ARG, "this GSM8K plan has run already");
    plan->ran = true;
    runner r = {.plan = plan, .cb = progress, .run = 1, .n_before = plan->all.n};
    bool output_rank = qm_engine_is_output_rank(eng);
    qm_status st = build_requests(&r, eng, err);
    for (int i = 0; i < plan->all.n; i++)
        if (plan->all.items[i].run >= r.run) r.run = plan->all.items[i].run + 1;
    if (st == QM_OK && output_rank) st = open_results(&r, err);
    if (st == QM_OK) {
        r.t0 = now_s();
        snprintf(r.mesh, sizeof r.mesh, "%dx%d", plan->o.rows, plan->o.cols);
        for (int i = 0; i < plan->all.n; i++) {
            r.strict_ok += plan->all.items[i].strict_correct;
            r.flex_ok += plan->all.items[i].flex_correct;
        }
        qm_gen_callbacks cb = {.on_done = on_done, .ctx = &r};
        qm_gen_stats stats = {0};
        if (r.n_reqs > 0) st = qm_engine_generate(eng, r.reqs, r.n_reqs, &cb, &stats, err);
        if (st == QM_OK && r.failed) {
            if (err) *err = r.werr;
            st = r.werr.code;
        }
        if (st == QM_OK && output_rank) st = finish(&r, &stats, out, err);
    }
    runner_free(&r);
    return st;
}
