/* Packing requests into bytes and back (request_pack.h). */
#include "engine/request_pack.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The fixed part; then n_prompt int32 ids, then n_stop NUL-terminated strings (stop_bytes in all). */
typedef struct {
    int32_t id, n_prompt, shared_prefix, max_new_tokens, top_k, n_stop, stop_at_eos, logprobs;
    float temperature, top_p;
    uint64_t seed, rng_stream, stop_bytes;
} packed_header;

static size_t stop_bytes(const qm_gen_request *q) {
    size_t n = 0;
    for (int i = 0; i < q->n_stop; i++) n += strlen(q->stop[i]) + 1;
    return n;
}

size_t qm_request_packed_size(const qm_gen_request *q) {
    return sizeof(packed_header) + (size_t)q->n_prompt * sizeof(int32_t) + stop_bytes(q);
}

void qm_request_pack(const qm_gen_request *q, int id, char *out) {
    packed_header h;
    memset(&h, 0, sizeof h);
    h.id = id;
    h.n_prompt = q->n_prompt;
    h.shared_prefix = q->shared_prefix;
    h.max_new_tokens = q->max_new_tokens;
    h.top_k = q->top_k;
    h.n_stop = q->n_stop;
    h.stop_at_eos = q->stop_at_eos;
    h.logprobs = q->logprobs;
    h.temperature = q->temperature;
    h.top_p = q->top_p;
    h.seed = q->seed;
    h.rng_stream = q->rng_stream;
    h.stop_bytes = stop_bytes(q);
    memcpy(out, &h, sizeof h);
    out += sizeof h;
    for (int i = 0; i < q->n_prompt; i++) {
        const int32_t v = q->prompt[i];
        memcpy(out, &v, sizeof v);
        out += sizeof v;
    }
    for (int i = 0; i < q->n_stop; i++) {
        const size_t len = strlen(q->stop[i]) + 1;
        memcpy(out, q->stop[i], len);
        out += len;
    }
}

qm_status qm_request_unpack(const char *p, size_t n, qm_live_request *out, size_t *used, qm_error *err) {
    memset(out, 0, sizeof *out);
    packed_header h;
    if (n < sizeof h) return qm_fail(err, QM_ERR_COMM, "a broadcast request is cut short");
    memcpy(&h, p, sizeof h);
    if (h.n_prompt < 0 || h.n_stop < 0 || h.n_stop > 4096 ||
        (uint64_t)h.n_prompt > (n - sizeof h) / sizeof(int32_t) ||
        h.stop_bytes > n - sizeof h - (size_t)h.n_prompt * sizeof(int32_t))
        return qm_fail(err, QM_ERR_COMM, "a broadcast request is damaged (id %d)", h.id);
    const size_t ids_bytes = (size_t)h.n_prompt * sizeof(int);
    const size_t ptr_bytes = (size_t)h.n_stop * sizeof(char *);
    char *mem = malloc(ptr_bytes + ids_bytes + (size_t)h.stop_bytes + 1); /* pointers first: aligned */
    if (!mem) return qm_fail(err, QM_ERR_NOMEM, "out of memory copying request %d", h.id);
    const char **stops = (const char **)mem;
    int *ids = (int *)(mem + ptr_bytes);
    char *text = mem + ptr_bytes + ids_bytes;
    const char *at = p + sizeof h;
    for (int i = 0; i < h.n_prompt; i++) {
        int32_t v;
        memcpy(&v, at + (size_t)i * sizeof v, sizeof v);
        ids[i] = v;
    }
    memcpy(text, at + (size_t)h.n_prompt * sizeof(int32_t), (size_t)h.stop_bytes);
    text[h.stop_bytes] = 0;
    size_t off = 0;
    for (int i = 0; i < h.n_stop; i++) {
        stops[i] = text + off;
        off += strlen(text + off) + 1;
        if (off > h.stop_bytes) {
            free(mem);
            return qm_fail(err, QM_ERR_COMM, "a broadcast request's stop strings are damaged (id %d)", h.id);
        }
    }
    out->mem = mem;
    out->id = h.id;
    out->q = (qm_gen_request){
        .prompt = ids, .n_prompt = h.n_prompt, .shared_prefix = h.shared_prefix, .max_new_tokens = h.max_new_tokens,
        .temperature = h.temperature, .top_k = h.top_k, .top_p = h.top_p, .seed = h.seed,
        .stop = h.n_stop ? stops : NULL, .n_stop = h.n_stop, .stop_at_eos = h.stop_at_eos != 0,
        .rng_stream = h.rng_stream, .logprobs = h.logprobs,
    };
    *used = sizeof h + (size_t)h.n_prompt * sizeof(int32_t) + (size_t)h.stop_bytes;
    return QM_OK;
}

size_t qm_request_packed_at(const char *p, size_t n) {
    packed_header h;
    if (n < sizeof h) return 0;
    memcpy(&h, p, sizeof h);
    if (h.n_prompt < 0 || (uint64_t)h.n_prompt > (n - sizeof h) / sizeof(int32_t) ||
        h.stop_bytes > n - sizeof h - (size_t)h.n_prompt * sizeof(int32_t))
        return 0;
    return sizeof h + (size_t)h.n_prompt * sizeof(int32_t) + (size_t)h.stop_bytes;
}

void qm_live_request_free(qm_live_request *r) {
    free(r->mem);
    memset(r, 0, sizeof *r);
}
