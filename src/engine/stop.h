/* Stop strings: where a completion ends. The text may hold NUL bytes (a token can decode to
 * one), so the search is over bytes, not C strings. */
#ifndef QM_ENGINE_STOP_H
#define QM_ENGINE_STOP_H

#include <stdbool.h>
#include <stddef.h>

/* text[len] grew from old_len bytes: looks for the stop strings (empty ones are ignored), each
 * only where it ends in the new bytes, and returns true with *at = where the earliest match
 * begins (the completion is text[0, *at)): new bytes that hold two stops cut at the first. */
bool qm_stop_find(const char *text, size_t len, size_t old_len, const char *const *stops, int n_stops, size_t *at);

#endif
