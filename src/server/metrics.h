/* The server's counters and latency histograms, written as Prometheus text (GET /metrics).
 * Thread-safe: every update and the rendering take the metrics' own lock. */
#ifndef QM_SERVER_METRICS_H
#define QM_SERVER_METRICS_H

#include <pthread.h>
#include <stddef.h>

#define QM_HIST_BUCKETS 14

typedef struct {
    double sum;
    long count;
    long buckets[QM_HIST_BUCKETS]; /* cumulative at render time; here per bucket */
} qm_histogram;

typedef struct {
    pthread_mutex_t mu;
    long requests;          /* HTTP requests answered */
    long requests_failed;   /* answered with a 4xx or 5xx */
    long completions;       /* generation requests finished (any reason) */
    long cancelled;         /* of those, cancelled (client gone, shutdown) */
    long rejected_full;     /* refused: queue full */
    long prompt_tokens, gen_tokens;
    qm_histogram ttft;      /* seconds from arrival to the first text */
    qm_histogram per_token; /* seconds per generated token after the first */
    qm_histogram latency;   /* seconds from arrival to the end */
} qm_metrics;

void qm_metrics_init(qm_metrics *m);
void qm_metrics_destroy(qm_metrics *m);
void qm_metrics_http(qm_metrics *m, int status);
/* A finished generation: token counts, and its times (ttft < 0: no text came). */
void qm_metrics_generation(qm_metrics *m, int prompt_tokens, int gen_tokens, double ttft_s, double total_s,
                           int cancelled);
void qm_metrics_rejected(qm_metrics *m);
/* Prometheus text exposition, malloc'd (NULL: out of memory). queued/busy: gauges now. */
char *qm_metrics_render(qm_metrics *m, int queued, int busy);

#endif
