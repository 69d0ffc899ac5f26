/* libFuzzer entry point for the GGUF reader. The bytes are opened with qm_gguf_open_mem; when they are
 * accepted, everything the handle exposes is walked (every kv and its value through the typed getters,
 * every element of every array, every string of a string array, every tensor's bytes), and every view is
 * checked to lie inside the input, so that the sanitizers and the checks here see any bad pointer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

typedef struct {
    const unsigned char *lo, *hi; /* the input */
    unsigned sum;                 /* what was read, so that the reads are not optimized away */
} walk;

/* A view must lie inside the input; reading it all lets ASan check every byte. */
static void touch(walk *w, const void *p, uint64_t n) {
    const unsigned char *c = p;
    if (n == 0) return;
    if (c < w->lo || c > w->hi || n > (uint64_t)(w->hi - c)) abort();
    for (uint64_t i = 0; i < n; i++) w->sum += c[i];
}

static void walk_scalar(walk *w, const qm_gguf *g, const qm_gguf_kv *kv) {
    int64_t i;
    double f;
    bool b;
    char *s = NULL;
    (void)qm_gguf_get_int(g, kv->key, true, &i, NULL);
    (void)qm_gguf_get_float(g, kv->key, true, &f, NULL);
    (void)qm_gguf_get_bool(g, kv->key, true, &b, NULL);
    if (kv->type == QM_GGUF_STRING) {
        touch(w, kv->v.s.ptr, kv->v.s.len);
        if (qm_gguf_get_string(g, kv->key, true, &s, NULL) == QM_OK && strlen(s) != kv->v.s.len) abort();
        free(s);
    }
}

static void walk_array(walk *w, const qm_gguf *g, const qm_gguf_kv *kv) {
    const qm_gguf_kv *a;
    size_t es = qm_gguf_type_size(kv->elem_type);
    if (qm_gguf_get_array(g, kv->key, kv->elem_type, true, &a, NULL) != QM_OK || a != kv) abort();
    if (es) {
        touch(w, kv->elems, kv->count * es);
        for (uint64_t i = 0; i < kv->count; i++)
            w->sum += (unsigned)qm_gguf_array_int(kv, i) + (unsigned)(qm_gguf_array_float(kv, i) != 0);
    } else if (kv->elem_type == QM_GGUF_STRING) {
        if (kv->count && !kv->strs) abort();
        for (uint64_t i = 0; i < kv->count; i++) touch(w, kv->strs[i].ptr, kv->strs[i].len);
    }
}

static void walk_tensor(walk *w, const qm_gguf *g, const qm_gguf_tensor *t) {
    if (qm_gguf_tensor_find(g, t->name) != t || t->ndim < 1 || t->ndim > 4) abort();
    if ((size_t)((const unsigned char *)t->data - w->lo) % qm_gguf_alignment(g)) abort();
    touch(w, t->data, t->nbytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qm_gguf *g;
    qm_error err;
    if (qm_gguf_open_mem(data, size, "fuzz.gguf", &g, &err) != QM_OK) return 0;
    walk w = {data, data + size, 0};
    for (int i = 0; i < qm_gguf_kv_count(g); i++) {
        const qm_gguf_kv *kv = qm_gguf_kv_at(g, i);
        if (qm_gguf_find(g, kv->key) != kv) abort();
        if (kv->type == QM_GGUF_ARRAY) walk_array(&w, g, kv);
        else walk_scalar(&w, g, kv);
    }
    for (int i = 0; i < qm_gguf_tensor_count(g); i++) walk_tensor(&w, g, qm_gguf_tensor_at(g, i));
    qm_gguf_close(g);
    volatile unsigned sink = w.sum;
    (void)sink;
    return 0;
}
