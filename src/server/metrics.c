/* Counters and histograms in Prometheus text format (metrics.h). */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds of the buckets, seconds (the last one is +Inf). */
static const double bounds[QM_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 1e300};

void qm_metrics_init(qm_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void qm_metrics_destroy(qm_metrics *m) { pthread_mutex_destroy(&m->mu); }

static void observe(qm_histogram *h, double x) {
    int b = 0;
    while (b < QM_HIST_BUCKETS - 1 && x > bounds[b]) b++;
    h->buckets[b]++;
    h->count++;
    h->sum += x;
}

void qm_metrics_http(qm_metrics *m, int status) {
    pthread_mutex_lock(&m->mu);
    m->requests++;
    m->requests_failed += status >= 400;
    pthread_mutex_unlock(&m->mu);
}

void qm_metrics_generation(qm_metrics *m, int prompt_tokens, int gen_tokens, double ttft_s, double total_s,
                           int cancelled) {
    pthread_mutex_lock(&m->mu);
    m->completions++;
    m->cancelled += cancelled != 0;
    m->prompt_tokens += prompt_tokens;
    m->gen_tokens += gen_tokens;
    if (ttft_s >= 0) observe(&m->ttft, ttft_s);
    if (ttft_s >= 0 && gen_tokens > 1) observe(&m->per_token, (total_s - ttft_s) / (gen_tokens - 1));
    observe(&m->latency, total_s);
    pthread_mutex_unlock(&m->mu);
}

void qm_metrics_rejected(qm_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->rejected_full++;
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} text_buf;

static void put(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_buf *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 1;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void put_counter(text_buf *t, const char *name, const char *help, const char *type, double v) {
    put(t, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void put_histogram(text_buf *t, const char *name, const char *help, const qm_histogram *h) {
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long cum = 0;
    for (int b = 0; b < QM_HIST_BUCKETS; b++) {
        cum += h->buckets[b];
        if (b == QM_HIST_BUCKETS - 1) put(t, "%s_bucket{le=\"+Inf\"} %ld\n", name, cum);
        else put(t, "%s_bucket{le=\"%g\"} %ld\n", name, bounds[b], cum);
    }
    put(t, "%s_sum %.9g\n%s_count %ld\n", name, h->sum, name, h->count);
}

char *qm_metrics_render(qm_metrics *m, int queued, int busy) {
    text_buf t = {.buf = malloc(4096), .cap = 4096};
    if (!t.buf) return NULL;
    t.buf[0] = 0;
    pthread_mutex_lock(&m->mu);
    put_counter(&t, "qmesh_http_requests_total", "HTTP requests answered", "counter", (double)m->requests);
    put_counter(&t, "qmesh_http_requests_failed_total", "HTTP requests answered with 4xx or 5xx", "counter",
                (double)m->requests_failed);
    put_counter(&t, "qmesh_generations_total", "generation requests finished", "counter", (double)m->completions);
    put_counter(&t, "qmesh_generations_cancelled_total", "generations cancelled (client gone, shutdown)", "counter",
                (double)m->cancelled);
    put_counter(&t, "qmesh_queue_rejected_total", "requests refused because the queue was full", "counter",
                (double)m->rejected_full);
    put_counter(&t, "qmesh_prompt_tokens_total", "prompt tokens of finished generations", "counter",
                (double)m->prompt_tokens);
    put_counter(&t, "qmesh_generation_tokens_total", "tokens generated", "counter", (double)m->gen_tokens);
    put_counter(&t, "qmesh_queue_length", "requests waiting for a sequence slot", "gauge", queued);
    put_counter(&t, "qmesh_busy_sequences", "requests the engine runs now", "gauge", busy);
    put_histogram(&t, "qmesh_time_to_first_token_seconds", "seconds from arrival to the first text", &m->ttft);
    put_histogram(&t, "qmesh_time_per_output_token_seconds", "seconds per generated token after the first",
                  &m->per_token);
    put_histogram(&t, "qmesh_request_latency_seconds", "seconds from arrival to the last token", &m->latency);
    pthread_mutex_unlock(&m->mu);
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
