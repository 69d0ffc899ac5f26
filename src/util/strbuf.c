#include "util/strbuf.h"

#include <stdlib.h>
#include <string.h>

void qm_strbuf_add(qm_strbuf *b, const char *t, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->len, t, n);
    b->len += n;
    b->s[b->len] = 0;
}

char *qm_strbuf_take(qm_strbuf *b) {
    if (!b->s && !b->oom) qm_strbuf_add(b, "", 0);
    if (b->oom) {
        free(b->s);
        b->s = NULL;
    }
    return b->s;
}
