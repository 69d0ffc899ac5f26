/* Answer extraction and number normalization for GSM8K. */
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

size_t qm_eval_number_at(const char *s) {
    size_t i = 0;
    if (s[i] == '-') i++;
    if (s[i] == '$') {
        i++;
        while (s[i] == ' ') i++;
    }
    if (!is_digit(s[i])) return 0;
    while (is_digit(s[i]) || s[i] == ',') i++;
    if (s[i] == '.' && is_digit(s[i + 1])) {
        i++;
        while (is_digit(s[i])) i++;
    }
    return i;
}

bool qm_eval_normalize(const char *s, size_t len, char out[QM_EVAL_NUM_MAX]) {
    char ip[QM_EVAL_NUM_MAX], fp[QM_EVAL_NUM_MAX];
    size_t ni = 0, nf = 0, i = 0;
    bool neg = false;
    if (i < len && s[i] == '-') neg = true, i++;
    if (i < len && s[i] == '$') {
        i++;
        while (i < len && s[i] == ' ') i++;
    }
    if (i >= len || !is_digit(s[i])) return false;
    for (; i < len && (is_digit(s[i]) || s[i] == ','); i++) {
        if (s[i] == ',') continue;
        if (ni == 0 && s[i] == '0') continue; /* leading zeros */
        if (ni + 1 >= sizeof ip) return false;
        ip[ni++] = s[i];
    }
    if (i < len && s[i] == '.') {
        for (i++; i < len && is_digit(s[i]); i++) {
            if (nf + 1 >= sizeof fp) return false;
            fp[nf++] = s[i];
        }
    }
    if (i != len) return false;
    while (nf > 0 && fp[nf - 1] == '0') nf--;
    if (ni == 0) ip[ni++] = '0';
    if (ni == 1 && ip[0] == '0' && nf == 0) neg = false; /* -0 -> 0 */
    size_t need = (neg ? 1 : 0) + ni + (nf ? 1 + nf : 0) + 1;
    if (need > QM_EVAL_NUM_MAX) return false;
    size_t o = 0;
    if (neg) out[o++] = '-';
    memcpy(out + o, ip, ni);
    o += ni;
    if (nf) {
        out[o++] = '.';
        memcpy(out + o, fp, nf);
        o += nf;
    }
    out[o] = '\0';
    return true;
}

/* Start of the last case-insensitive (ASCII) occurrence of needle in s, or NULL. */
static const char *last_ci(const char *s, const char *needle) {
    size_t n = strlen(needle);
    const char *found = NULL;
    for (const char *p = s; *p; p++) {
        size_t k = 0;
        while (k < n && p[k]) {
            char a = p[k], b = needle[k];
            if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
            if (b >= 'A' && b <= 'Z') b = (char)(b - 'A' + 'a');
            if (a != b) break;
            k++;
        }
        if (k == n) found = p;
    }
    return found;
}

/* The number right after a marker: spaces, an optional ':', spaces, then the number. */
static bool number_after(const char *p, char out[QM_EVAL_NUM_MAX]) {
    while (*p == ' ' || *p == '\t') p++;
    if (*p == ':') p++;
    while (*p == ' ' || *p == '\t') p++;
    size_t len = qm_eval_number_at(p);
    return len > 0 && qm_eval_normalize(p, len, out);
}

void qm_eval_extract(const char *completion, qm_eval_extraction *out) {
    memset(out, 0, sizeof *out);
    const char *s = completion ? completion : "";
    const char *a = last_ci(s, "the answer is"), *h = last_ci(s, "####");
    const char *after = NULL;
    if (a && (!h || a > h)) after = a + strlen("the answer is");
    else if (h) after = h + 4;
    if (after) out->has_strict = number_after(after, out->strict);

    for (const char *p = s; *p;) {
        size_t len = qm_eval_number_at(p);
        if (len == 0) {
            p++;
            continue;
        }
        out->has_flex = qm_eval_normalize(p, len, out->flex);
        p += len;
    }
    if (!out->has_flex) out->flex[0] = '\0';
}

bool qm_eval_gold(const char *answer, char out[QM_EVAL_NUM_MAX]) {
    const char *h = answer ? last_ci(answer, "####") : NULL;
    return h && number_after(h + 4, out);
}

bool qm_eval_numbers_equal(const char *a, const char *b) {
    char na[QM_EVAL_NUM_MAX], nb[QM_EVAL_NUM_MAX];
    if (!a || !b) return false;
    size_t la = qm_eval_number_at(a), lb = qm_eval_number_at(b);
    if (la == 0 || lb == 0 || a[la] || b[lb]) return false;
    if (!qm_eval_normalize(a, la, na) || !qm_eval_normalize(b, lb, nb)) return false;
    return strcmp(na, nb) == 0;
}
