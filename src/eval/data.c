/* GSM8K-style JSONL data files: test/train problems and chain-of-thought exemplars. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void qm_eval_data_free(qm_eval_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        free(d->items[i].question);
        free(d->items[i].answer);
        free(d->items[i].rationale);
    }
    free(d->items);
    d->items = NULL;
    d->n = 0;
}

static const char *field(const cJSON *o, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

qm_status qm_eval_data_load(const char *path, qm_eval_data_kind kind, int limit, qm_eval_dataset *out,
                            qm_error *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return qm_fail(err, QM_ERR_IO, "cannot read data file %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, cap_items = 0;
    qm_status st = QM_OK;
    while ((limit <= 0 || out->n < limit) && (len = getline(&line, &cap, f)) != -1) {
        int index = lineno++;
        if ((size_t)len != strlen(line)) {
            st = qm_fail(err, QM_ERR_FORMAT, "%s:%d: a NUL byte in the line (not a JSONL text file)", path,
                         index + 1);
            break;
        }
        if (blank(line)) continue;
        cJSON *o = cJSON_Parse(line);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            st = qm_fail(err, QM_ERR_FORMAT,
                         "%s:%d: not a JSON object (expected JSONL, one {\"question\": ..., \"answer\": ...} per line)",
                         path, index + 1);
            break;
        }
        const char *q = field(o, "question"), *a = field(o, "answer"), *r = field(o, "rationale");
        const char *missing = !q ? "question" : NULL;
        if (!missing && kind == QM_EVAL_DATA_EXEMPLARS) missing = !r ? "rationale" : !a ? "answer" : NULL;
        if (missing) {
            cJSON_Delete(o);
            st = qm_fail(err, QM_ERR_FORMAT, "%s:%d: no \"%s\" string in the line", path, index + 1, missing);
            break;
        }
        if (out->n == cap_items) {
            int nc = cap_items ? 2 * cap_items : 64;
            qm_eval_problem *ni = realloc(out->items, (size_t)nc * sizeof *ni);
            if (!ni) {
                cJSON_Delete(o);
                st = qm_fail(err, QM_ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            out->items = ni;
            cap_items = nc;
        }
        qm_eval_problem *p = &out->items[out->n];
        memset(p, 0, sizeof *p);
        p->index = index;
        p->question = dup_str(q);
        p->answer = a ? dup_str(a) : NULL;
        p->rationale = r ? dup_str(r) : NULL;
        out->n++;
        if (!p->question || (a && !p->answer) || (r && !p->rationale)) {
            cJSON_Delete(o);
            st = qm_fail(err, QM_ERR_NOMEM, "out of memory reading %s", path);
            break;
        }
        if (kind == QM_EVAL_DATA_GSM8K) p->has_gold = qm_eval_gold(a, p->gold);
        else p->has_gold = qm_eval_normalize(a, strlen(a), p->gold);
        cJSON_Delete(o);
    }
    if (st == QM_OK && ferror(f)) st = qm_fail(err, QM_ERR_IO, "error reading %s: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (st == QM_OK && out->n == 0) st = qm_fail(err, QM_ERR_FORMAT, "%s: no problems in the file", path);
    if (st != QM_OK) qm_eval_data_free(out);
    return st;
}
