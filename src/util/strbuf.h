/* A growing NUL-terminated string. An allocation failure is remembered (oom) and later appends
 * do nothing, so a caller appends freely and checks once at the end. */
#ifndef QM_UTIL_STRBUF_H
#define QM_UTIL_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *s; /* NUL-terminated once anything was added; NULL before */
    size_t len, cap;
    bool oom;
} qm_strbuf;

/* Appends t[0..n). */
void qm_strbuf_add(qm_strbuf *b, const char *t, size_t n);
/* The string (the caller frees it), "" when nothing was added, NULL after an allocation failure
 * (the buffer is then freed). */
char *qm_strbuf_take(qm_strbuf *b);

#endif
