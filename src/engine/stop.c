/* Stop-string search over bytes (see stop.h). */
#include "engine/stop.h"

#include <string.h>

/* The first occurrence of needle[nl] in hay[hl] (either may hold NUL bytes), or NULL. */
static const char *find_bytes(const char *hay, size_t hl, const char *needle, size_t nl) {
    for (size_t i = 0; nl && i + nl <= hl; i++)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, nl)) return hay + i;
    return NULL;
}

bool qm_stop_find(const char *text, size_t len, size_t old_len, const char *const *stops, int n_stops, size_t *at) {
    bool found = false;
    for (int i = 0; i < n_stops; i++) {
        const size_t sl = strlen(stops[i]);
        if (!sl || len < sl) continue;
        const size_t from = old_len + 1 > sl ? old_len + 1 - sl : 0; /* a match must end after old_len */
        const char *hit = find_bytes(text + from, len - from, stops[i], sl);
        if (hit && (!found || (size_t)(hit - text) < *at)) {
            *at = (size_t)(hit - text);
            found = true;
        }
    }
    return found;
}
