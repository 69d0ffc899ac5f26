/* Byte-level BPE: the builder shared by both sources (tokenizer.json here, GGUF metadata in
 * tokenizer_gguf.c, through qm_tok_spec), the tokenizer.json reader, encoding and decoding.
 *
 * Encoding: added tokens split the raw text (leftmost, longest first; special ones only when
 * allowed; lstrip, rstrip and single_word as Hugging Face's AddedVocabulary applies them); each
 * remaining piece is NFC-normalised, split again by the added tokens marked normalized, cut by
 * the pre-tokenizer regex (behaviour "Isolated": matches and the gaps
 * between them are pieces), mapped byte by byte to the GPT-2 byte-level alphabet and merged by
 * BPE, lowest merge rank first (leftmost on ties), with a heap over candidate pairs.
 * Decoding: each id's bytes (computed at load), then lossy UTF-8 (U+FFFD per invalid subpart).
 *
 * The loaded tokenizer is read-only: any number of threads may encode and decode with it. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "text/tokenizer_internal.h"
#include "text/utf8.h"

#define NO_STR UINT32_MAX

typedef struct {
    uint32_t off; /* into tok->strs; NO_STR = none */
    uint32_t len;
} span;

typedef struct {
    span content; /* the token's text: what it decodes to, what qm_tokenizer_id looks up */
    span match;   /* what is matched: content, NFC'd when normalized and the tokenizer has NFC */
    int id;
    bool special, lstrip, rstrip, single_word, normalized;
} added_token;

struct qm_tokenizer {
    char *strs; /* every string the tokenizer keeps, back to back */
    size_t strs_len, strs_cap;

    int n_ids;    /* max id + 1 */
    span *vocab;  /* [n_ids] byte-level token string of the BPE vocabulary, or NO_STR */
    span *bytes;  /* [n_ids] what the id decodes to, or NO_STR for an unassigned id */

    int32_t *vocab_slots; /* open addressing: id whose vocab string hashes here, -1 = empty */
    uint32_t vocab_mask;

    uint64_t *merge_keys; /* (left id << 32) | right id; UINT64_MAX = empty */
    int32_t *merge_rank;
    int32_t *merge_id;
    uint32_t merge_mask;

    int byte_id[256];          /* id of the one-symbol token of each byte, -1 if none */
    uint16_t byte_char[256];   /* GPT-2 byte -> code point */
    int16_t char_byte[512];    /* code point (< 512) -> byte, -1 if not in the alphabet */

    added_token *added; /* longest match first */
    int n_added;
    uint8_t added_first[256]; /* bytes that start some added token: bit 0 raw, bit 1 normalized */
    bool any_normalized;      /* some added token is matched in the normalised text */

    bool nfc;
    pcre2_code *split; /* NULL = no regex split */
    qm_tokenizer_specials specials;
};

/* ---------------------------------------------------------------- helpers */

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 31);
}

static uint32_t table_size(size_t n) {
    uint32_t size = 16;
    while (size < 2 * n) size *= 2;
    return size;
}

static bool strs_add(qm_tokenizer *t, const void *p, size_t n, span *out) {
    if (t->strs_len + n > UINT32_MAX - 1) return false;
    if (t->strs_len + n > t->strs_cap) {
        size_t cap = t->strs_cap ? t->strs_cap : 1 << 20;
        while (cap < t->strs_len + n) cap *= 2;
        char *s = realloc(t->strs, cap);
        if (!s) return false;
        t->strs = s;
        t->strs_cap = cap;
    }
    if (n) memcpy(t->strs + t->strs_len, p, n);
    out->off = (uint32_t)t->strs_len;
    out->len = (uint32_t)n;
    t->strs_len += n;
    return true;
}

static int vocab_find(const qm_tokenizer *t, const char *s, size_t n) {
    if (!t->vocab_slots) return -1;
    uint32_t i = (uint32_t)hash_bytes(s, n) & t->vocab_mask;
    for (;; i = (i + 1) & t->vocab_mask) {
        int32_t id = t->vocab_slots[i];
        if (id < 0) return -1;
        span v = t->vocab[id];
        if (v.len == n && !memcmp(t->strs + v.off, s, n)) return id;
    }
}

static void vocab_insert(qm_tokenizer *t, int id) {
    span v = t->vocab[id];
    uint32_t i = (uint32_t)hash_bytes(t->strs + v.off, v.len) & t->vocab_mask;
    while (t->vocab_slots[i] >= 0) i = (i + 1) & t->vocab_mask;
    t->vocab_slots[i] = id;
}

/* Slot of a merge key: the one holding it, or the empty one where it goes. */
static uint32_t merge_slot(const qm_tokenizer *t, uint64_t key) {
    uint32_t i = (uint32_t)hash_pair(key) & t->merge_mask;
    while (t->merge_keys[i] != key && t->merge_keys[i] != UINT64_MAX) i = (i + 1) & t->merge_mask;
    return i;
}

/* GPT-2's reversible map of bytes to printable code points: printable Latin-1 bytes map to
 * themselves, the others to 256, 257, ... in byte order. */
static void build_byte_map(qm_tokenizer *t) {
    unsigned next = 256;
    for (int i = 0; i < 512; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        t->byte_char[b] = (uint16_t)(keep ? (unsigned)b : next++);
        t->char_byte[t->byte_char[b]] = (int16_t)b;
    }
}

/* ---------------------------------------------------------------- tokenizer.json -> spec */

const char qm_tok_qwen2_split[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
                                  "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* The GPT-2 split, for a ByteLevel pre-tokenizer with use_regex true. */
static const char gpt2_split[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static qm_status read_file(const char *path, char **data, size_t *len, qm_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qm_fail(err, QM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf) return qm_fail(err, QM_ERR_NOMEM, "out of memory reading '%s'", path);
    if (bad) {
        free(buf);
        return qm_fail(err, QM_ERR_IO, "error reading '%s'", path);
    }
    *data = buf;
    *len = n;
    return QM_OK;
}

qm_status qm_tok_read_json(const char *path, cJSON **root, qm_error *err) {
    *root = NULL;
    char *data = NULL;
    size_t len = 0;
    qm_status st = read_file(path, &data, &len, err);
    if (st) return st;
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(data, len, &end, false);
    if (!*root) {
        size_t at = end && end >= data ? (size_t)(end - data) : 0;
        st = qm_fail(err, QM_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", path, at);
    }
    free(data);
    return st;
}

static bool json_int(const cJSON *j, int *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= INT_MAX - 1) || v != (double)(int)v) return false;
    *out = (int)v;
    return true;
}

/* Sets s->nfc from the "normalizer" object (null, NFC, or a Sequence of those). */
static qm_status parse_normalizer(qm_tok_spec *s, const cJSON *n, const char *path, qm_error *err) {
    if (!n || cJSON_IsNull(n)) return QM_OK;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(n, "type"));
    if (type && !strcmp(type, "NFC")) {
        s->nfc = true;
        return QM_OK;
    }
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) {
            qm_status st = parse_normalizer(s, item, path, err);
            if (st) return st;
        }
        return QM_OK;
    }
    return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported (only NFC)", path,
                   type ? type : "?");
}

static qm_status set_split(qm_tok_spec *s, const char *pattern, const char *path, qm_error *err) {
    if (s->split) return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: more than one regex split pre-tokenizer", path);
    s->split = pattern;
    return QM_OK;
}

static qm_status parse_pretokenizer(qm_tok_spec *s, const cJSON *p, const char *path, qm_error *err) {
    if (!p || cJSON_IsNull(p)) return QM_OK;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "type"));
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) {
            qm_status st = parse_pretokenizer(s, item, path, err);
            if (st) return st;
        }
        return QM_OK;
    }
    if (type && !strcmp(type, "ByteLevel")) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "add_prefix_space")))
            return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: ByteLevel add_prefix_space=true is not supported", path);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "use_regex"))) return set_split(s, gpt2_split, path, err);
        return QM_OK;
    }
    if (type && !strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *re = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pat, "Regex"));
        const char *behavior = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "behavior"));
        if (!re)
            return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: Split pre-tokenizer without a \"Regex\" pattern", path);
        if (!behavior || strcmp(behavior, "Isolated") != 0)
            return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: Split behavior '%s' is not supported (only Isolated)",
                           path, behavior ? behavior : "?");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "invert")))
            return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: Split with invert=true is not supported", path);
        return set_split(s, re, path, err);
    }
    return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: pre-tokenizer '%s' is not supported", path, type ? type : "?");
}

/* An added token's optional boolean flag (absent = false); anything but true/false is refused. */
static qm_status json_flag(const cJSON *tok, const char *key, int k, const char *content, const char *path,
                           bool *out, qm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tok, key);
    *out = cJSON_IsTrue(v);
    if (v && !cJSON_IsBool(v))
        return qm_fail(err, QM_ERR_FORMAT, "%s: added_tokens[%d] (\"%.60s\"): \"%s\" is not true or false", path, k,
                       content, key);
    return QM_OK;
}

/* model.vocab and added_tokens: checks the ids (bounded, see QM_TOK_ID_SLACK), fills s->vocab and
 * s->added with the flags of each added token. */
static qm_status json_ids(const cJSON *vocab, const cJSON *added, const char *path, qm_tok_spec *s,
                          qm_error *err) {
    int max_id = -1, n_added = 0, n_vocab = 0, id;
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab) {
        if (!json_int(v, &id))
            return qm_fail(err, QM_ERR_FORMAT, "%s: model.vocab[\"%s\"] is not a non-negative integer id", path,
                           v->string);
        n_vocab++;
    }
    cJSON_ArrayForEach(v, added) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (!json_int(cJSON_GetObjectItemCaseSensitive(v, "id"), &id) || !cJSON_IsString(content) ||
            !content->valuestring[0])
            return qm_fail(err, QM_ERR_FORMAT, "%s: added_tokens[%d] needs an integer \"id\" and a non-empty \"content\"",
                           path, n_added);
        n_added++;
    }
    /* Every id below the bound: no gigabyte tables for one stray id. */
    long bound = (long)n_vocab + n_added + QM_TOK_ID_SLACK;
    if (bound > QM_TOK_MAX_IDS) bound = QM_TOK_MAX_IDS;
    cJSON_ArrayForEach(v, vocab) {
        id = (int)v->valuedouble;
        if (id >= bound)
            return qm_fail(err, QM_ERR_FORMAT,
                           "%s: model.vocab[\"%s\"] has id %d, too large: ids must be below %ld (%d vocabulary "
                           "entries + %d added tokens + %d spare ids, at most %d)",
                           path, v->string, id, bound, n_vocab, n_added, QM_TOK_ID_SLACK, QM_TOK_MAX_IDS);
        if (id > max_id) max_id = id;
    }
    int k = 0;
    cJSON_ArrayForEach(v, added) {
        id = (int)cJSON_GetObjectItemCaseSensitive(v, "id")->valuedouble;
        if (id >= bound)
            return qm_fail(err, QM_ERR_FORMAT,
                           "%s: added_tokens[%d] (\"%.60s\") has id %d, too large: ids must be below %ld (%d vocabulary "
                           "entries + %d added tokens + %d spare ids, at most %d)",
                           path, k, cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring, id, bound, n_vocab,
                           n_added, QM_TOK_ID_SLACK, QM_TOK_MAX_IDS);
        if (id > max_id) max_id = id;
        k++;
    }
    if (max_id < 0) return qm_fail(err, QM_ERR_FORMAT, "%s: model.vocab is empty", path);
    s->n_ids = max_id + 1;
    s->vocab = calloc((size_t)s->n_ids, sizeof *s->vocab);
    s->added = calloc((size_t)n_added + 1, sizeof *s->added);
    if (!s->vocab || !s->added) return qm_fail(err, QM_ERR_NOMEM, "out of memory for %d token ids", s->n_ids);
    cJSON_ArrayForEach(v, vocab) {
        id = (int)v->valuedouble;
        if (s->vocab[id].ptr) return qm_fail(err, QM_ERR_FORMAT, "%s: id %d appears twice in model.vocab", path, id);
        s->vocab[id] = (qm_tok_text){v->string, strlen(v->string)};
    }
    cJSON_ArrayForEach(v, added) {
        int at = s->n_added;
        qm_tok_added *a = &s->added[s->n_added++];
        const char *content = cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring;
        a->content = (qm_tok_text){content, strlen(content)};
        a->id = (int)cJSON_GetObjectItemCaseSensitive(v, "id")->valuedouble;
        qm_status st = json_flag(v, "special", at, content, path, &a->special, err);
        if (!st) st = json_flag(v, "lstrip", at, content, path, &a->lstrip, err);
        if (!st) st = json_flag(v, "rstrip", at, content, path, &a->rstrip, err);
        if (!st) st = json_flag(v, "single_word", at, content, path, &a->single_word, err);
        if (!st) st = json_flag(v, "normalized", at, content, path, &a->normalized, err);
        if (st) return st;
    }
    return QM_OK;
}

bool qm_tok_split_merge(const char *s, size_t len, qm_tok_merge *out) {
    const char *sp = memchr(s, ' ', len);
    if (!sp || sp == s || sp + 1 == s + len || memchr(sp + 1, ' ', (size_t)(s + len - sp - 1))) return false;
    out->left = (qm_tok_text){s, (size_t)(sp - s)};
    out->right = (qm_tok_text){sp + 1, (size_t)(s + len - sp - 1)};
    return true;
}

/* model.merges: "a b" strings (exactly one space: byte-level tokens never hold one) or ["a", "b"]. */
static qm_status json_merges(const cJSON *merges, const char *path, qm_tok_spec *s, qm_error *err) {
    s->merges = malloc(sizeof *s->merges * ((size_t)cJSON_GetArraySize(merges) + 1));
    if (!s->merges) return qm_fail(err, QM_ERR_NOMEM, "out of memory for the merges");
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        qm_tok_merge *mg = &s->merges[s->n_merges];
        if (cJSON_IsString(m)) {
            if (!qm_tok_split_merge(m->valuestring, strlen(m->valuestring), mg))
                return qm_fail(err, QM_ERR_FORMAT, "%s: merge %d \"%s\" is not two tokens separated by one space",
                               path, s->n_merges, m->valuestring);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            const char *a = m->child->valuestring, *b = m->child->next->valuestring;
            mg->left = (qm_tok_text){a, strlen(a)};
            mg->right = (qm_tok_text){b, strlen(b)};
        } else
            return qm_fail(err, QM_ERR_FORMAT, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", path,
                           s->n_merges);
        s->n_merges++;
    }
    return QM_OK;
}

qm_status qm_tok_spec_from_json(const cJSON *root, const char *path, qm_tok_spec *s, qm_error *err) {
    *s = (qm_tok_spec){.where = path, .vocab_key = "model.vocab", .merges_key = "model.merges",
                       .added_key = "added_tokens",
                       .specials = {.bos = -1, .eos = -1, .pad = -1}};
    if (!cJSON_IsObject(root)) return qm_fail(err, QM_ERR_FORMAT, "%s: top level is not a JSON object", path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return qm_fail(err, QM_ERR_FORMAT, "%s: no \"model\" object", path);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(model, "type"));
    if (type && strcmp(type, "BPE") != 0)
        return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (only BPE)", path, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return qm_fail(err, QM_ERR_FORMAT, "%s: no \"model.vocab\" object", path);
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges && !cJSON_IsArray(merges))
        return qm_fail(err, QM_ERR_FORMAT, "%s: \"model.merges\" is not an array", path);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return qm_fail(err, QM_ERR_FORMAT, "%s: \"added_tokens\" is not an array", path);

    qm_status st = json_ids(vocab, added, path, s, err);
    if (!st && merges) st = json_merges(merges, path, s, err);
    if (!st) st = parse_normalizer(s, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path, err);
    if (!st) st = parse_pretokenizer(s, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path, err);
    return st;
}

void qm_tok_spec_free(qm_tok_spec *s) {
    free(s->vocab);
    free(s->added);
    free(s->merges);
    s->vocab = NULL;
    s->added = NULL;
    s->merges = NULL;
}

/* ---------------------------------------------------------------- spec -> tokenizer */

/* Unicode White_Space, which is what \s means to Oniguruma (the regex engine of Hugging Face
 * tokenizers). PCRE2's \s also takes U+180E, which stopped being a space in Unicode 6.3. */
static const char white_space[] =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

/* Copies a pattern with \s and \S spelled out as White_Space classes (\S inside a class is kept).
 * NULL if out of memory. */
static char *rewrite_spaces(const char *pattern) {
    size_t n = strlen(pattern), cap = n + 1, len = 0;
    for (const char *p = pattern; *p; p++)
        if (p[0] == '\\' && p[1]) cap += sizeof white_space + 4, p++;
    char *out = malloc(cap);
    if (!out) return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < n) {
            char e = pattern[++i];
            if (e == 's' || (e == 'S' && !in_class)) {
                len += (size_t)sprintf(out + len, in_class ? "%s" : e == 's' ? "[%s]" : "[^%s]", white_space);
            } else {
                out[len++] = c;
                out[len++] = e;
            }
            continue;
        }
        out[len++] = c;
        if (!in_class && c == '[') {
            in_class = true;
            /* A ']' right after '[' or '[^' is a literal. */
            if (i + 1 < n && pattern[i + 1] == '^') out[len++] = pattern[++i];
            if (i + 1 < n && pattern[i + 1] == ']') out[len++] = pattern[++i];
        } else if (in_class && c == '[' && i + 1 < n && pattern[i + 1] == ':') {
            const char *end = strstr(pattern + i, ":]"); /* [:alpha:] */
            if (end) {
                size_t k = (size_t)(end - pattern) + 2;
                memcpy(out + len, pattern + i + 1, k - i - 1);
                len += k - i - 1;
                i = k - 1;
            }
        } else if (in_class && c == ']') {
            in_class = false;
        }
    }
    out[len] = 0;
    return out;
}

static qm_status compile_split(qm_tokenizer *t, const char *pattern, const char *path, qm_error *err) {
    int code;
    PCRE2_SIZE at; /* in the rewritten pattern, so not reported */
    char *rewritten = rewrite_spaces(pattern);
    if (!rewritten) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    t->split = pcre2_compile((PCRE2_SPTR)rewritten, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &at,
                             NULL);
    free(rewritten);
    if (!t->split) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return qm_fail(err, QM_ERR_FORMAT, "%s: pre-tokenizer regex does not compile: %s", path,
                       (const char *)msg);
    }
    pcre2_jit_compile(t->split, PCRE2_JIT_COMPLETE); /* an interpreter fallback if JIT is unavailable */
    return QM_OK;
}

/* Bytes that a byte-level token string stands for; a token with a character outside the
 * byte-level alphabet stands for its own UTF-8 (as the Hugging Face ByteLevel decoder does). */
static bool decoded_bytes(qm_tokenizer *t, span tokstr, span *out) {
    unsigned char tmp[1024];
    unsigned char *buf = tokstr.len <= sizeof tmp ? tmp : malloc(tokstr.len);
    if (!buf) return false;
    const unsigned char *s = (const unsigned char *)t->strs + tokstr.off;
    size_t n = 0;
    bool mapped = true;
    for (size_t i = 0; i < tokstr.len && mapped;) {
        unsigned cp;
        i += (size_t)qm_utf8_decode(s + i, tokstr.len - i, &cp);
        if (cp < 512 && t->char_byte[cp] >= 0)
            buf[n++] = (unsigned char)t->char_byte[cp];
        else
            mapped = false;
    }
    bool ok;
    if (mapped)
        ok = strs_add(t, buf, n, out);
    else {
        *out = tokstr; /* same bytes: share them */
        ok = true;
    }
    if (buf != tmp) free(buf);
    return ok;
}

static int cmp_added(const void *a, const void *b) {
    const added_token *x = a, *y = b;
    if (x->match.len != y->match.len) return x->match.len > y->match.len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* A token string must be non-empty UTF-8 without NUL bytes. */
static qm_status check_text(const qm_tok_spec *s, qm_tok_text v, int id, bool added, qm_error *err) {
    char what[96];
    if (added && s->added_key)
        snprintf(what, sizeof what, "the %s entry with id %d", s->added_key, id);
    else
        snprintf(what, sizeof what, "token %d of %s", id, s->vocab_key);
    if (v.len == 0) return qm_fail(err, QM_ERR_FORMAT, "%s: %s is empty", s->where, what);
    size_t bad = qm_utf8_check((const unsigned char *)v.ptr, v.len);
    if (bad < v.len)
        return qm_fail(err, QM_ERR_FORMAT, "%s: %s is not valid UTF-8 (byte 0x%02X at offset %zu)", s->where, what,
                       (unsigned char)v.ptr[bad], bad);
    if (memchr(v.ptr, 0, v.len)) return qm_fail(err, QM_ERR_FORMAT, "%s: %s holds a NUL byte", s->where, what);
    return QM_OK;
}

/* The BPE vocabulary: strings, decoded bytes, the lookup table, the byte tokens. */
static qm_status build_vocab(qm_tokenizer *t, const qm_tok_spec *s, qm_error *err) {
    int n_vocab = 0;
    for (int i = 0; i < s->n_ids; i++) n_vocab += s->vocab[i].ptr != NULL;
    t->n_ids = s->n_ids;
    t->vocab = malloc(sizeof(span) * (size_t)t->n_ids);
    t->bytes = malloc(sizeof(span) * (size_t)t->n_ids);
    t->vocab_mask = table_size((size_t)n_vocab) - 1;
    t->vocab_slots = malloc(sizeof(int32_t) * (t->vocab_mask + 1));
    if (!t->vocab || !t->bytes || !t->vocab_slots)
        return qm_fail(err, QM_ERR_NOMEM, "out of memory for %d token ids", t->n_ids);
    for (int i = 0; i < t->n_ids; i++) t->vocab[i].off = t->bytes[i].off = NO_STR;
    memset(t->vocab_slots, 0xFF, sizeof(int32_t) * (t->vocab_mask + 1));

    for (int id = 0; id < s->n_ids; id++) {
        qm_tok_text v = s->vocab[id];
        if (!v.ptr) continue;
        qm_status st = check_text(s, v, id, false, err);
        if (st) return st;
        int other = vocab_find(t, v.ptr, v.len);
        if (other >= 0)
            return qm_fail(err, QM_ERR_FORMAT, "%s: %s holds \"%.*s\" twice (ids %d and %d)", s->where, s->vocab_key,
                           (int)v.len, v.ptr, other, id);
        if (!strs_add(t, v.ptr, v.len, &t->vocab[id]) || !decoded_bytes(t, t->vocab[id], &t->bytes[id]))
            return qm_fail(err, QM_ERR_NOMEM, "out of memory loading the vocabulary");
        vocab_insert(t, id);
    }
    for (int b = 0; b < 256; b++) {
        unsigned char c[4];
        int n = qm_utf8_encode(t->byte_char[b], c);
        t->byte_id[b] = vocab_find(t, (const char *)c, (size_t)n);
    }
    return QM_OK;
}

/* Added tokens decode to their content; they are matched longest first. A normalized token is
 * matched as its NFC form when the tokenizer normalises (as Hugging Face normalises the content of
 * such tokens). */
static qm_status build_added(qm_tokenizer *t, const qm_tok_spec *s, qm_error *err) {
    t->added = calloc((size_t)s->n_added + 1, sizeof(added_token));
    if (!t->added) return qm_fail(err, QM_ERR_NOMEM, "out of memory for %d added tokens", s->n_added);
    for (int k = 0; k < s->n_added; k++) {
        const qm_tok_added *src = &s->added[k];
        if (src->id < 0 || src->id >= t->n_ids)
            return qm_fail(err, QM_ERR_FORMAT, "%s: added token %d has id %d, outside 0..%d", s->where, k, src->id,
                           t->n_ids - 1);
        qm_status st = check_text(s, src->content, src->id, true, err);
        if (st) return st;
        added_token *a = &t->added[t->n_added++];
        a->id = src->id;
        a->special = src->special;
        a->lstrip = src->lstrip;
        a->rstrip = src->rstrip;
        a->single_word = src->single_word;
        a->normalized = src->normalized;
        if (!strs_add(t, src->content.ptr, src->content.len, &a->content))
            return qm_fail(err, QM_ERR_NOMEM, "out of memory loading added tokens");
        a->match = a->content;
        if (a->normalized && s->nfc) {
            unsigned char *norm = NULL;
            utf8proc_ssize_t r = utf8proc_map((const unsigned char *)src->content.ptr,
                                              (utf8proc_ssize_t)src->content.len, &norm,
                                              (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
            if (r <= 0) {
                free(norm);
                return qm_fail(err, QM_ERR_FORMAT, "%s: added token with id %d cannot be normalised (NFC)",
                               s->where, src->id);
            }
            bool ok = strs_add(t, norm, (size_t)r, &a->match);
            free(norm);
            if (!ok) return qm_fail(err, QM_ERR_NOMEM, "out of memory loading added tokens");
        }
        t->bytes[a->id] = a->content;
        t->added_first[(unsigned char)t->strs[a->match.off]] |= a->normalized ? 2 : 1;
        t->any_normalized |= a->normalized;
    }
    qsort(t->added, (size_t)t->n_added, sizeof(added_token), cmp_added);
    return QM_OK;
}

static qm_status build_merges(qm_tokenizer *t, const qm_tok_spec *s, qm_error *err) {
    t->merge_mask = table_size((size_t)s->n_merges) - 1;
    t->merge_keys = malloc(sizeof(uint64_t) * (t->merge_mask + 1));
    t->merge_rank = malloc(sizeof(int32_t) * (t->merge_mask + 1));
    t->merge_id = malloc(sizeof(int32_t) * (t->merge_mask + 1));
    if (!t->merge_keys || !t->merge_rank || !t->merge_id)
        return qm_fail(err, QM_ERR_NOMEM, "out of memory for %d merges", s->n_merges);
    memset(t->merge_keys, 0xFF, sizeof(uint64_t) * (t->merge_mask + 1));

    char tmp[512];
    for (int rank = 0; rank < s->n_merges; rank++) {
        qm_tok_text a = s->merges[rank].left, b = s->merges[rank].right;
        if (a.len + b.len > sizeof tmp)
            return qm_fail(err, QM_ERR_FORMAT, "%s: %s[%d] is too long (%zu bytes)", s->where, s->merges_key, rank,
                           a.len + b.len);
        memcpy(tmp, a.ptr, a.len);
        memcpy(tmp + a.len, b.ptr, b.len);
        int ia = vocab_find(t, a.ptr, a.len), ib = vocab_find(t, b.ptr, b.len);
        int ic = vocab_find(t, tmp, a.len + b.len);
        if (ia < 0 || ib < 0 || ic < 0)
            return qm_fail(err, QM_ERR_FORMAT, "%s: %s[%d] (\"%.*s\" + \"%.*s\") uses a token not in %s", s->where,
                           s->merges_key, rank, (int)a.len, a.ptr, (int)b.len, b.ptr, s->vocab_key);
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        uint32_t slot = merge_slot(t, key);
        t->merge_keys[slot] = key; /* a repeated merge takes its later rank, as Hugging Face does */
        t->merge_rank[slot] = rank;
        t->merge_id[slot] = ic;
    }
    return QM_OK;
}

qm_status qm_tok_build(const qm_tok_spec *s, qm_tokenizer **out, qm_error *err) {
    *out = NULL;
    if (s->n_ids <= 0) return qm_fail(err, QM_ERR_FORMAT, "%s: %s is empty", s->where, s->vocab_key);
    if (s->n_ids > QM_TOK_MAX_IDS)
        return qm_fail(err, QM_ERR_FORMAT, "%s: %d token ids (at most %d are supported)", s->where, s->n_ids,
                       QM_TOK_MAX_IDS);
    qm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    build_byte_map(t);
    qm_status st = build_vocab(t, s, err);
    if (!st) st = build_added(t, s, err);
    if (!st) st = build_merges(t, s, err);
    if (!st && s->split) st = compile_split(t, s->split, s->where, err);
    if (st) {
        qm_tokenizer_free(t);
        return st;
    }
    t->nfc = s->nfc;
    t->specials = s->specials;
    *out = t;
    return QM_OK;
}

/* ---------------------------------------------------------------- the tokenizer */

qm_status qm_tokenizer_load(const char *path, qm_tokenizer **out, qm_error *err) {
    *out = NULL;
    if (!path) return qm_fail(err, QM_ERR_ARG, "no tokenizer path given");
    char *file = NULL;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + sizeof "/tokenizer.json";
        file = malloc(n);
        if (!file) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
        snprintf(file, n, "%s/tokenizer.json", path);
    } else if (!(file = strdup(path)))
        return qm_fail(err, QM_ERR_NOMEM, "out of memory");

    cJSON *root = NULL;
    qm_tok_spec spec = {0};
    qm_status st = qm_tok_read_json(file, &root, err);
    if (!st) st = qm_tok_spec_from_json(root, file, &spec, err);
    if (!st) st = qm_tok_build(&spec, out, err);
    qm_tok_spec_free(&spec);
    cJSON_Delete(root);
    free(file);
    return st;
}

void qm_tokenizer_free(qm_tokenizer *t) {
    if (!t) return;
    pcre2_code_free(t->split);
    free(t->strs);
    free(t->vocab);
    free(t->bytes);
    free(t->vocab_slots);
    free(t->merge_keys);
    free(t->merge_rank);
    free(t->merge_id);
    free(t->added);
    free(t);
}

int qm_tokenizer_n_ids(const qm_tokenizer *t) { return t ? t->n_ids : 0; }

void qm_tokenizer_special_ids(const qm_tokenizer *t, qm_tokenizer_specials *out) {
    *out = t ? t->specials : (qm_tokenizer_specials){.bos = -1, .eos = -1, .pad = -1};
}

int qm_tokenizer_id(const qm_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].content.len == n && !memcmp(t->strs + t->added[i].content.off, token, n))
            return t->added[i].id;
    return vocab_find(t, token, n);
}

/* ---------------------------------------------------------------- encoding */

/* Scratch of one qm_tokenize call. */
typedef struct {
    int *ids;
    int n, cap;
    /* BPE of one piece: a linked list of symbols and a heap of candidate merges. */
    int32_t *sym, *prev, *next;
    int sym_cap;
    struct cand {
        int32_t rank, pos, left, right;
    } *heap;
    int n_heap, heap_cap;
    pcre2_match_data *md;
    bool nomem;
} encoder;

static void emit(encoder *e, int id) {
    if (e->n == e->cap) {
        int cap = e->cap ? e->cap * 2 : 256;
        int *ids = realloc(e->ids, sizeof(int) * (size_t)cap);
        if (!ids) {
            e->nomem = true;
            return;
        }
        e->ids = ids;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
}

static bool cand_less(const struct cand *a, const struct cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(encoder *e, struct cand c) {
    if (e->n_heap == e->heap_cap) {
        int cap = e->heap_cap ? e->heap_cap * 2 : 64;
        struct cand *h = realloc(e->heap, sizeof *h * (size_t)cap);
        if (!h) {
            e->nomem = true;
            return;
        }
        e->heap = h;
        e->heap_cap = cap;
    }
    int i = e->n_heap++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_less(&c, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = c;
}

static struct cand heap_pop(encoder *e) {
    struct cand top = e->heap[0], last = e->heap[--e->n_heap];
    int i = 0, n = e->n_heap;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!cand_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n > 0) e->heap[i] = last;
    return top;
}

/* Pushes the merge of the symbols at pos and next[pos], if there is one. */
static void push_pair(const qm_tokenizer *t, encoder *e, int pos) {
    int nx = e->next[pos];
    if (nx < 0) return;
    uint64_t key = ((uint64_t)(uint32_t)e->sym[pos] << 32) | (uint32_t)e->sym[nx];
    uint32_t slot = merge_slot(t, key);
    if (t->merge_keys[slot] == key)
        heap_push(e, (struct cand){t->merge_rank[slot], pos, e->sym[pos], e->sym[nx]});
}

/* BPE of one pre-token (raw bytes). */
static void bpe_piece(const qm_tokenizer *t, encoder *e, const unsigned char *s, size_t n) {
    if (n == 0) return;
    if ((size_t)e->sym_cap < n) {
        size_t cap = n < 64 ? 64 : n;
        if (cap > INT32_MAX) {
            e->nomem = true;
            return;
        }
        free(e->sym);
        free(e->prev);
        free(e->next);
        e->sym = malloc(sizeof(int32_t) * cap);
        e->prev = malloc(sizeof(int32_t) * cap);
        e->next = malloc(sizeof(int32_t) * cap);
        e->sym_cap = e->sym && e->prev && e->next ? (int)cap : 0;
        if (!e->sym_cap) {
            e->nomem = true;
            return;
        }
    }
    /* Bytes without a token of their own are dropped (no unk token, as Hugging Face does). */
    int m = 0;
    for (size_t i = 0; i < n; i++)
        if (t->byte_id[s[i]] >= 0) e->sym[m++] = t->byte_id[s[i]];
    for (int i = 0; i < m; i++) {
        e->prev[i] = i - 1;
        e->next[i] = i + 1 < m ? i + 1 : -1;
    }
    e->n_heap = 0;
    if (t->merge_keys)
        for (int i = 0; i + 1 < m; i++) push_pair(t, e, i);
    while (e->n_heap > 0 && !e->nomem) {
        struct cand c = heap_pop(e);
        int nx = e->next[c.pos];
        /* Stale if either side has changed since the candidate was pushed. */
        if (e->sym[c.pos] != c.left || nx < 0 || e->sym[nx] != c.right) continue;
        uint64_t key = ((uint64_t)(uint32_t)c.left << 32) | (uint32_t)c.right;
        e->sym[c.pos] = t->merge_id[merge_slot(t, key)];
        e->sym[nx] = -1; /* dead */
        e->next[c.pos] = e->next[nx];
        if (e->next[nx] >= 0) e->prev[e->next[nx]] = c.pos;
        if (e->prev[c.pos] >= 0) push_pair(t, e, e->prev[c.pos]);
        push_pair(t, e, c.pos);
    }
    for (int i = m > 0 ? 0 : -1; i >= 0; i = e->next[i]) emit(e, e->sym[i]);
}

/* Text without added tokens (already normalised): the split regex, then BPE of each piece. */
static qm_status encode_split(const qm_tokenizer *t, encoder *e, const unsigned char *s, size_t n, qm_error *err) {
    if (n == 0) return QM_OK;
    if (!t->split) {
        bpe_piece(t, e, s, n);
        return QM_OK;
    }
    size_t at = 0, gap = 0;
    while (at < n) {
        int rc = pcre2_match(t->split, s, n, at, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return qm_fail(err, QM_ERR_ARG, "pre-tokenizer regex failed at byte %zu: %s", at, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing: step over one character */
            at = ms + 1;
            while (at < n && (s[at] & 0xC0) == 0x80) at++;
            continue;
        }
        if (ms > gap) bpe_piece(t, e, s + gap, ms - gap);
        bpe_piece(t, e, s + ms, me - ms);
        at = gap = me;
    }
    if (gap < n) bpe_piece(t, e, s + gap, n - gap);
    return QM_OK;
}

/* Unicode White_Space (Rust's char::is_whitespace, which Hugging Face's lstrip/rstrip use). */
static bool is_white_space(unsigned cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* A letter or a digit (general category L* or N*: Rust's char::is_alphanumeric, which
 * Hugging Face's single_word uses, less the few marks of Other_Alphabetic). */
static bool is_word_char(unsigned cp) {
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return true;
    default:
        return false;
    }
}

/* The code point that ends s[0..at) (valid UTF-8, at > 0) and where it starts. */
static unsigned char_before(const unsigned char *s, size_t at, size_t *start) {
    size_t i = at - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    unsigned cp;
    qm_utf8_decode(s + i, at - i, &cp);
    *start = i;
    return cp;
}

/* The longest added token of this pass (normalized or not) whose match starts at s, or NULL. */
static const added_token *added_at(const qm_tokenizer *t, const unsigned char *s, size_t n, bool normalized) {
    if (!(t->added_first[s[0]] & (normalized ? 2 : 1))) return NULL;
    for (int i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        if (a->normalized == normalized && a->match.len <= n && !memcmp(t->strs + a->match.off, s, a->match.len))
            return a;
    }
    return NULL;
}

static qm_status encode_text(const qm_tokenizer *t, encoder *e, const unsigned char *s, size_t n, bool normalized,
                             bool allow_special, qm_error *err);

/* Raw text between the raw pass's added tokens: NFC, then the normalized added tokens, then the
 * split and BPE. */
static qm_status encode_normalised(const qm_tokenizer *t, encoder *e, const unsigned char *s, size_t n,
                                   bool allow_special, qm_error *err) {
    if (n == 0) return QM_OK;
    unsigned char *norm = NULL;
    if (t->nfc) {
        bool ascii = true;
        for (size_t i = 0; i < n && ascii; i++) ascii = s[i] < 0x80;
        if (!ascii) {
            utf8proc_ssize_t r =
                utf8proc_map(s, (utf8proc_ssize_t)n, &norm, (utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
            if (r < 0) return qm_fail(err, QM_ERR_ARG, "text cannot be normalised (NFC): %s", utf8proc_errmsg(r));
            s = norm;
            n = (size_t)r;
        }
    }
    qm_status st = t->any_normalized ? encode_text(t, e, s, n, true, allow_special, err) : encode_split(t, e, s, n, err);
    free(norm);
    return st;
}

/* One pass of added-token matching, as Hugging Face's AddedVocabulary does it: leftmost-longest
 * matches of the pass's tokens (raw text: normalized false; normalised text: normalized true). A
 * special token when !allow_special, or a single_word token touching a letter or digit, is passed
 * over (the search goes on after it, the text stays in the gap). lstrip widens a match over the
 * white space before it (not into the previous match), rstrip over the white space after it; that
 * white space is part of the token and is not encoded. The gaps go on to the next stage. */
static qm_status encode_text(const qm_tokenizer *t, encoder *e, const unsigned char *s, size_t n, bool normalized,
                             bool allow_special, qm_error *err) {
    size_t gap = 0;
    qm_status st = QM_OK;
    for (size_t i = 0; i < n && !st;) {
        const added_token *a = added_at(t, s + i, n - i, normalized);
        if (!a) {
            i++;
            continue;
        }
        size_t ms = i, me = i + a->match.len, at;
        unsigned cp;
        bool skip = a->special && !allow_special;
        if (!skip && a->single_word) {
            bool word_before = ms > 0 && is_word_char(char_before(s, ms, &at));
            bool word_after = me < n && (qm_utf8_decode(s + me, n - me, &cp), is_word_char(cp));
            skip = word_before || word_after;
        }
        if (skip) {
            i = me;
            continue;
        }
        if (a->lstrip)
            while (ms > gap && is_white_space(char_before(s, ms, &at))) ms = at;
        if (a->rstrip)
            while (me < n) {
                int k = qm_utf8_decode(s + me, n - me, &cp);
                if (!is_white_space(cp)) break;
                me += (size_t)k;
            }
        st = normalized ? encode_split(t, e, s + gap, ms - gap, err)
                        : encode_normalised(t, e, s + gap, ms - gap, allow_special, err);
        emit(e, a->id);
        i = gap = me;
    }
    if (!st)
        st = normalized ? encode_split(t, e, s + gap, n - gap, err)
                        : encode_normalised(t, e, s + gap, n - gap, allow_special, err);
    return st;
}

qm_status qm_tokenize_ex(const qm_tokenizer *t, const char *text, size_t len, bool allow_special, int **ids,
                         int *n_ids, qm_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!t) return qm_fail(err, QM_ERR_ARG, "no tokenizer");
    if (!text && len) return qm_fail(err, QM_ERR_ARG, "no text");
    const unsigned char *s = (const unsigned char *)text;
    size_t bad = qm_utf8_check(s, len);
    if (bad < len) return qm_fail(err, QM_ERR_ARG, "text is not valid UTF-8 (byte 0x%02X at offset %zu)", s[bad], bad);
    if (len > (size_t)INT_MAX) return qm_fail(err, QM_ERR_ARG, "text too long (%zu bytes)", len);

    encoder e = {0};
    qm_status st = QM_OK;
    if (t->split && !(e.md = pcre2_match_data_create_from_pattern(t->split, NULL)))
        st = qm_fail(err, QM_ERR_NOMEM, "out of memory");
    if (!st) st = encode_text(t, &e, s, len, false, allow_special, err);
    if (!st && e.nomem) st = qm_fail(err, QM_ERR_NOMEM, "out of memory while tokenizing");
    pcre2_match_data_free(e.md);
    free(e.sym);
    free(e.prev);
    free(e.next);
    free(e.heap);
    if (st) {
        free(e.ids);
        return st;
    }
    if (!e.ids && !(e.ids = malloc(sizeof(int)))) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    *ids = e.ids;
    *n_ids = e.n;
    return QM_OK;
}

qm_status qm_tokenize(const qm_tokenizer *t, const char *text, size_t len, int **ids, int *n_ids,
                      qm_error *err) {
    return qm_tokenize_ex(t, text, len, true, ids, n_ids, err);
}

/* ---------------------------------------------------------------- decoding */

qm_status qm_detokenize(const qm_tokenizer *t, const int *ids, int n_ids, char **text, size_t *len,
                        qm_error *err) {
    *text = NULL;
    if (len) *len = 0;
    if (!t) return qm_fail(err, QM_ERR_ARG, "no tokenizer");
    if (n_ids < 0 || (n_ids > 0 && !ids))
        return qm_fail(err, QM_ERR_ARG, "bad id list (%d ids%s)", n_ids, n_ids > 0 ? ", no array" : "");
    qm_utf8_sink out = {.grow = true};
    unsigned char pending[4];
    int n_pending = 0;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || t->bytes[ids[i]].off == NO_STR) {
            free(out.buf);
            return qm_fail(err, QM_ERR_ARG, "token id %d (position %d) is not in the tokenizer (ids 0..%d)", ids[i],
                           i, t->n_ids - 1);
        }
        span b = t->bytes[ids[i]];
        for (uint32_t k = 0; k < b.len; k++)
            qm_utf8_feed(pending, &n_pending, (unsigned char)t->strs[b.off + k], &out);
    }
    qm_utf8_finish(pending, &n_pending, &out);
    if (!out.failed && !out.buf) out.buf = calloc(1, 1);
    if (out.failed || !out.buf) {
        free(out.buf);
        return qm_fail(err, QM_ERR_NOMEM, "out of memory while decoding");
    }
    *text = (char *)out.buf;
    if (len) *len = out.len;
    return QM_OK;
}

size_t qm_decode_stream_push(const qm_tokenizer *t, qm_decode_stream *s, int id, char *out, size_t cap) {
    qm_utf8_sink sink = {.buf = (unsigned char *)out, .cap = cap};
    if (out && cap) out[0] = 0;
    if (!t || id < 0 || id >= t->n_ids || t->bytes[id].off == NO_STR || !out || !cap) return 0;
    if (s->n_pending < 0 || s->n_pending > 3) s->n_pending = 0;
    span b = t->bytes[id];
    for (uint32_t k = 0; k < b.len; k++) qm_utf8_feed(s->pending, &s->n_pending, (unsigned char)t->strs[b.off + k], &sink);
    return sink.len;
}

size_t qm_decode_stream_flush(qm_decode_stream *s, char *out, size_t cap) {
    qm_utf8_sink sink = {.buf = (unsigned char *)out, .cap = cap};
    if (out && cap) out[0] = 0;
    if (!out || !cap) {
        s->n_pending = 0;
        return 0;
    }
    if (s->n_pending < 0 || s->n_pending > 3) s->n_pending = 0;
    qm_utf8_finish(s->pending, &s->n_pending, &sink);
    return sink.len;
}
