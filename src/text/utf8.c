#include "text/utf8.h"

#include <stdlib.h>
#include <string.h>

/* Number of bytes of the sequence led by b, or 0 if b cannot start one. */
static int seq_len(unsigned char b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Whether b may follow `lead` as the continuation byte number k (1 = second byte). */
static bool cont_ok(unsigned char lead, int k, unsigned char b) {
    if (k == 1) {
        switch (lead) {
        case 0xE0: return b >= 0xA0 && b <= 0xBF;
        case 0xED: return b >= 0x80 && b <= 0x9F;
        case 0xF0: return b >= 0x90 && b <= 0xBF;
        case 0xF4: return b >= 0x80 && b <= 0x8F;
        default: break;
        }
    }
    return b >= 0x80 && b <= 0xBF;
}

size_t qm_utf8_check(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int n = seq_len(s[i]);
        if (n == 0 || len - i < (size_t)n) return i;
        for (int k = 1; k < n; k++)
            if (!cont_ok(s[i], k, s[i + k])) return i;
        i += (size_t)n;
    }
    return len;
}

static void put(qm_utf8_sink *out, const unsigned char *b, size_t n) {
    if (out->failed) return;
    if (out->len + n + 1 > out->cap) {
        if (!out->grow) {
            out->truncated = true;
            return;
        }
        size_t cap = out->cap ? out->cap : 64;
        while (out->len + n + 1 > cap) cap *= 2;
        unsigned char *nb = realloc(out->buf, cap);
        if (!nb) {
            out->failed = true;
            return;
        }
        out->buf = nb;
        out->cap = cap;
    }
    memcpy(out->buf + out->len, b, n);
    out->len += n;
    out->buf[out->len] = 0;
}

static const unsigned char replacement[3] = {0xEF, 0xBF, 0xBD};

void qm_utf8_feed(unsigned char *pending, int *n_pending, unsigned char b, qm_utf8_sink *out) {
    if (*n_pending > 0) {
        if (cont_ok(pending[0], *n_pending, b)) {
            pending[(*n_pending)++] = b;
            if (*n_pending == seq_len(pending[0])) {
                put(out, pending, (size_t)*n_pending);
                *n_pending = 0;
            }
            return;
        }
        /* The held bytes are a maximal invalid subpart: one U+FFFD, then b starts afresh. */
        put(out, replacement, 3);
        *n_pending = 0;
    }
    int n = seq_len(b);
    if (n == 1)
        put(out, &b, 1);
    else if (n == 0)
        put(out, replacement, 3);
    else {
        pending[0] = b;
        *n_pending = 1;
    }
}

void qm_utf8_finish(unsigned char *pending, int *n_pending, qm_utf8_sink *out) {
    (void)pending;
    if (*n_pending > 0) put(out, replacement, 3);
    *n_pending = 0;
}

int qm_utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    int len = seq_len(s[0]);
    if (len == 0 || (size_t)len > n) {
        *cp = s[0];
        return 1;
    }
    unsigned c = len == 1 ? s[0] : len == 2 ? (s[0] & 0x1Fu) : len == 3 ? (s[0] & 0x0Fu) : (s[0] & 0x07u);
    for (int k = 1; k < len; k++) c = (c << 6) | (s[k] & 0x3Fu);
    *cp = c;
    return len;
}

int qm_utf8_encode(unsigned cp, unsigned char out[4]) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}
