/* Results files: one JSON line per question; reading (with repair of a truncated last line),
 * writing one line. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/eval.h"

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void result_free(qm_eval_result *x) {
    free(x->question);
    free(x->gold);
    free(x->completion);
    free(x->strict);
    free(x->flex);
}

void qm_eval_results_free(qm_eval_results *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) result_free(&r->items[i]);
    free(r->items);
    memset(r, 0, sizeof *r);
}

const qm_eval_result *qm_eval_results_find(const qm_eval_results *r, int index) {
    for (int i = 0; i < r->n; i++)
        if (r->items[i].index == index) return &r->items[i];
    return NULL;
}

qm_status qm_eval_results_add(qm_eval_results *r, const qm_eval_result *item, qm_error *err) {
    if (r->n == r->cap) {
        int nc = r->cap ? 2 * r->cap : 64;
        qm_eval_result *ni = realloc(r->items, (size_t)nc * sizeof *ni);
        if (!ni) return qm_fail(err, QM_ERR_NOMEM, "out of memory holding results");
        r->items = ni;
        r->cap = nc;
    }
    qm_eval_result *x = &r->items[r->n];
    *x = *item;
    x->question = dup_or_null(item->question);
    x->gold = dup_or_null(item->gold);
    x->completion = dup_or_null(item->completion);
    x->strict = dup_or_null(item->strict);
    x->flex = dup_or_null(item->flex);
    if ((item->question && !x->question) || (item->gold && !x->gold) || (item->completion && !x->completion) ||
        (item->strict && !x->strict) || (item->flex && !x->flex)) {
        result_free(x);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory holding results");
    }
    r->n++;
    return QM_OK;
}

static const char *str_or_null(const cJSON *o, const char *name, bool *ok) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsString(f)) return f->valuestring;
    if (f && !cJSON_IsNull(f)) *ok = false;
    return NULL;
}

static double num_or(const cJSON *o, const char *name, double dflt) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(f) ? f->valuedouble : dflt;
}

/* An int field: a number outside [-2e9, 2e9] (as index is bounded) reads as absent, so that the
 * conversion is defined and a caller's +1 (the next run number) cannot overflow. */
static int int_or(const cJSON *o, const char *name, int dflt) {
    double d = num_or(o, name, dflt);
    return d >= -2e9 && d <= 2e9 ? (int)d : dflt;
}

/* Parses one line; false if it is not a result line. Strings point into o. */
static bool parse_line(const cJSON *o, qm_eval_result *x) {
    memset(x, 0, sizeof *x);
    bool ok = cJSON_IsObject(o);
    if (!ok) return false;
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(o, "index");
    const cJSON *comp = cJSON_GetObjectItemCaseSensitive(o, "completion");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "strict_correct");
    const cJSON *fc = cJSON_GetObjectItemCaseSensitive(o, "flex_correct");
    if (!cJSON_IsNumber(idx) || idx->valuedouble < 0 || idx->valuedouble > 2e9 || !cJSON_IsString(comp) ||
        !cJSON_IsBool(sc) || !cJSON_IsBool(fc))
        return false;
    x->index = (int)idx->valuedouble;
    x->completion = comp->valuestring;
    x->strict_correct = cJSON_IsTrue(sc);
    x->flex_correct = cJSON_IsTrue(fc);
    x->question = (char *)str_or_null(o, "question", &ok);
    x->gold = (char *)str_or_null(o, "gold", &ok);
    x->strict = (char *)str_or_null(o, "strict", &ok);
    x->flex = (char *)str_or_null(o, "flex", &ok);
    const char *mesh = str_or_null(o, "mesh", &ok);
    snprintf(x->mesh, sizeof x->mesh, "%s", mesh ? mesh : "");
    x->prompt_tokens = int_or(o, "prompt_tokens", 0);
    x->gen_tokens = int_or(o, "gen_tokens", 0);
    x->ms = num_or(o, "ms", 0);
    x->batch = int_or(o, "batch", 0);
    x->run = int_or(o, "run", 0);
    x->t_ms = num_or(o, "t_ms", -1);
    const char *stop = str_or_null(o, "stop", &ok);
    snprintf(x->stop, sizeof x->stop, "%s", stop ? stop : "");
    return ok;
}

qm_status qm_eval_results_load(const char *path, bool repair, qm_eval_results *out, qm_error *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return qm_fail(err, QM_ERR_IO, "cannot read results file %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long offset = 0;
    int lineno = 0;
    qm_status st = QM_OK;
    while ((len = getline(&line, &cap, f)) != -1) {
        lineno++;
        if (line[len - 1] != '\n') { /* a line cut short by a kill: dropped */
            out->had_partial = true;
            break;
        }
        cJSON *o = NULL;
        qm_eval_result x;
        bool blank = len == 1;
        if (!blank) o = cJSON_Parse(line);
        if (!blank && (!o || !parse_line(o, &x))) {
            cJSON_Delete(o);
            st = qm_fail(err, QM_ERR_FORMAT,
                         "%s:%d: not a results line (expected a JSON object with index, completion, "
                         "strict_correct, flex_correct)",
                         path, lineno);
            break;
        }
        if (!blank) {
            if (qm_eval_results_find(out, x.index))
                st = qm_fail(err, QM_ERR_FORMAT, "%s:%d: index %d appears twice", path, lineno, x.index);
            else
                st = qm_eval_results_add(out, &x, err);
            cJSON_Delete(o);
            if (st != QM_OK) break;
        }
        offset += (long)len;
    }
    if (st == QM_OK && ferror(f)) st = qm_fail(err, QM_ERR_IO, "error reading %s: %s", path, strerror(errno));
    free(line);
    fclose(f);
    out->valid_bytes = offset;
    if (st == QM_OK && repair && out->had_partial && truncate(path, (off_t)offset) != 0)
        st = qm_fail(err, QM_ERR_IO, "cannot repair %s (truncate to %ld bytes): %s", path, offset, strerror(errno));
    if (st != QM_OK) qm_eval_results_free(out);
    return st;
}

/* Milliseconds to 3 decimals; a value too large for that (or not finite) is kept as it is. */
static double round_ms(double v) {
    return v > -1e12 && v < 1e12 ? (double)(long long)(v * 1000.0 + 0.5) / 1000.0 : v;
}

char *qm_eval_result_line(const qm_eval_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "index", r->index);
    cJSON_AddItemToObject(o, "question", r->question ? cJSON_CreateString(r->question) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "gold", r->gold ? cJSON_CreateString(r->gold) : cJSON_CreateNull());
    cJSON_AddStringToObject(o, "completion", r->completion ? r->completion : "");
    cJSON_AddItemToObject(o, "strict", r->strict ? cJSON_CreateString(r->strict) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "flex", r->flex ? cJSON_CreateString(r->flex) : cJSON_CreateNull());
    cJSON_AddBoolToObject(o, "strict_correct", r->strict_correct);
    cJSON_AddBoolToObject(o, "flex_correct", r->flex_correct);
    cJSON_AddNumberToObject(o, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(o, "gen_tokens", r->gen_tokens);
    cJSON_AddNumberToObject(o, "ms", round_ms(r->ms));
    if (r->mesh[0]) cJSON_AddStringToObject(o, "mesh", r->mesh);
    if (r->batch > 0) cJSON_AddNumberToObject(o, "batch", r->batch);
    if (r->run > 0) cJSON_AddNumberToObject(o, "run", r->run);
    if (r->t_ms >= 0) cJSON_AddNumberToObject(o, "t_ms", round_ms(r->t_ms));
    if (r->stop[0]) cJSON_AddStringToObject(o, "stop", r->stop);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) {
        free(s);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    return line;
}
