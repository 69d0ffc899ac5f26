/* UTF-8 helpers of the text module: validation, and a byte-at-a-time decoder that replaces
 * invalid sequences with U+FFFD the way Python's errors='replace' and Rust's from_utf8_lossy do
 * (one U+FFFD per maximal invalid subpart). */
#ifndef QM_TEXT_UTF8_H
#define QM_TEXT_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Offset of the first byte that does not start a complete, valid UTF-8 sequence; len if all valid. */
size_t qm_utf8_check(const unsigned char *s, size_t len);

/* Where decoded bytes go: a fixed buffer (grow false: characters that do not fit are dropped and
 * `truncated` is set) or a malloc'd buffer that grows (grow true: `failed` set if realloc fails). */
typedef struct {
    unsigned char *buf;
    size_t len;
    size_t cap;
    bool grow;
    bool truncated;
    bool failed;
} qm_utf8_sink;

/* Feeds one byte. pending/n_pending hold an incomplete character (at most 3 bytes) between calls. */
void qm_utf8_feed(unsigned char *pending, int *n_pending, unsigned char b, qm_utf8_sink *out);
/* Ends the stream: an incomplete character becomes U+FFFD. */
void qm_utf8_finish(unsigned char *pending, int *n_pending, qm_utf8_sink *out);

/* Decodes one code point at s (valid UTF-8 assumed, n >= 1 bytes available); returns its length. */
int qm_utf8_decode(const unsigned char *s, size_t n, unsigned *cp);
/* Encodes a code point (< 0x110000); returns its length (1..4). */
int qm_utf8_encode(unsigned cp, unsigned char out[4]);

#endif
