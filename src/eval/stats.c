/* Accuracy statistics: Wilson score intervals and per-file summaries. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval/eval.h"

void qm_eval_wilson(long k, long n, double z, double *lo, double *hi) {
    if (n <= 0) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    double nn = (double)n, p = (double)k / nn, z2 = z * z;
    double denom = 1.0 + z2 / nn;
    double center = (p + z2 / (2.0 * nn)) / denom;
    double half = z * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn)) / denom;
    *lo = center - half < 0.0 ? 0.0 : center - half;
    *hi = center + half > 1.0 ? 1.0 : center + half;
}

void qm_eval_summarize(const qm_eval_results *r, qm_eval_summary *s) {
    memset(s, 0, sizeof *s);
    s->batch = 0;
    /* wall time: per run (each distinct run number; 0 = unknown run), the largest t_ms; runs are
     * visited by their first item, so the work does not depend on how large the numbers are */
    for (int i = 0; i < r->n; i++) {
        const int run = r->items[i].run;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = r->items[j].run == run;
        if (seen) continue;
        double t = 0.0;
        bool any = false;
        for (int j = i; j < r->n; j++)
            if (r->items[j].run == run && r->items[j].t_ms > t) t = r->items[j].t_ms, any = true;
        if (any) {
            s->wall_s += t / 1000.0;
            s->runs++;
        }
    }
    for (int i = 0; i < r->n; i++) {
        const qm_eval_result *x = &r->items[i];
        s->n++;
        s->strict_correct += x->strict_correct;
        s->flex_correct += x->flex_correct;
        s->prompt_tokens += x->prompt_tokens;
        s->gen_tokens += x->gen_tokens;
        s->length_stops += !strcmp(x->stop, "length");
        if (i == 0) {
            snprintf(s->mesh, sizeof s->mesh, "%s", x->mesh);
            s->batch = x->batch;
        } else {
            if (strcmp(s->mesh, x->mesh) != 0) snprintf(s->mesh, sizeof s->mesh, "mixed");
            if (s->batch != x->batch) s->batch = -1;
        }
    }
    s->strict_acc = s->n ? (double)s->strict_correct / (double)s->n : 0.0;
    s->flex_acc = s->n ? (double)s->flex_correct / (double)s->n : 0.0;
    qm_eval_wilson(s->strict_correct, s->n, 1.96, &s->strict_lo, &s->strict_hi);
    qm_eval_wilson(s->flex_correct, s->n, 1.96, &s->flex_lo, &s->flex_hi);
    s->tokens_per_s = s->wall_s > 0.0 ? (double)s->gen_tokens / s->wall_s : 0.0;
}
