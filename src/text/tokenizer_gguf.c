/* The tokenizer in GGUF metadata (llama.cpp's keys): reading it into the common builder
 * (qm_tok_spec, tokenizer.c), and writing the tokenizer of a Hugging Face folder the way
 * llama.cpp's convert_hf_to_gguf.py does for Qwen2 (Qwen2Model -> _set_vocab_gpt2 ->
 * get_vocab_base + gguf-py SpecialVocab). */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/gguf.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "text/tokenizer_internal.h"

enum { TT_NORMAL = 1, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED, TT_BYTE };

/* ---------------------------------------------------------------- reading */

static qm_status check_model(const qm_gguf *g, qm_error *err) {
    const char *path = qm_gguf_path(g);
    char *model = NULL, *pre = NULL;
    qm_status st = qm_gguf_get_string(g, "tokenizer.ggml.model", true, &model, err);
    if (!st && strcmp(model, "gpt2") != 0)
        st = qm_fail(err, QM_ERR_UNSUPPORTED,
                     "%s: tokenizer.ggml.model is '%s'; qmesh reads only 'gpt2' (byte-level BPE, as Qwen2's)", path,
                     model);
    if (!st) st = qm_gguf_get_string(g, "tokenizer.ggml.pre", true, &pre, err);
    if (!st && strcmp(pre, "qwen2") != 0 && strcmp(pre, "deepseek-r1-qwen") != 0)
        st = qm_fail(err, QM_ERR_UNSUPPORTED,
                     "%s: tokenizer.ggml.pre is '%s'; qmesh knows only the Qwen2 pre-tokenizer ('qwen2', "
                     "'deepseek-r1-qwen')",
                     path, pre);
    free(model);
    free(pre);
    return st;
}

/* tokenizer.ggml.tokens + token_type -> the vocabulary and the added tokens. Unused ids (type 5)
 * are left out; ids stop after the last used one. */
static qm_status gguf_tokens(const qm_gguf_kv *tokens, const qm_gguf_kv *types, const char *path, qm_tok_spec *s,
                             qm_error *err) {
    if (tokens->count >= INT_MAX)
        return qm_fail(err, QM_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries (at most %d)", path,
                       (unsigned long long)tokens->count, INT_MAX - 1);
    if (types->count != tokens->count)
        return qm_fail(err, QM_ERR_FORMAT,
                       "%s: tokenizer.ggml.token_type has %llu entries but tokenizer.ggml.tokens has %llu (one type "
                       "per token expected)",
                       path, (unsigned long long)types->count, (unsigned long long)tokens->count);
    int n = (int)tokens->count, n_ids = 0, n_added = 0;
    for (int i = 0; i < n; i++) {
        int64_t type = qm_gguf_array_int(types, (uint64_t)i);
        if (type < TT_NORMAL || type > TT_BYTE)
            return qm_fail(err, QM_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%d] is %lld (expected 1..6)", path, i,
                           (long long)type);
        if (type != TT_UNUSED) n_ids = i + 1;
        n_added += type == TT_CONTROL || type == TT_USER_DEFINED;
    }
    if (n_ids == 0) return qm_fail(err, QM_ERR_FORMAT, "%s: tokenizer.ggml.tokens has no used token", path);
    s->n_ids = n_ids;
    s->vocab = calloc((size_t)n_ids, sizeof *s->vocab);
    s->added = calloc((size_t)n_added + 1, sizeof *s->added);
    if (!s->vocab || !s->added) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory for %d tokens", path, n_ids);
    for (int i = 0; i < n_ids; i++) {
        int64_t type = qm_gguf_array_int(types, (uint64_t)i);
        qm_tok_text v = {tokens->strs[i].ptr ? tokens->strs[i].ptr : "", (size_t)tokens->strs[i].len};
        if (type == TT_CONTROL || type == TT_USER_DEFINED)
            s->added[s->n_added++] = (qm_tok_added){.content = v, .id = i, .special = type == TT_CONTROL};
        else if (type != TT_UNUSED)
            s->vocab[i] = v;
    }
    return QM_OK;
}

static qm_status gguf_merges(const qm_gguf_kv *merges, const char *path, qm_tok_spec *s, qm_error *err) {
    if (merges->count >= INT_MAX)
        return qm_fail(err, QM_ERR_FORMAT, "%s: tokenizer.ggml.merges has %llu entries (at most %d)", path,
                       (unsigned long long)merges->count, INT_MAX - 1);
    s->merges = malloc(sizeof *s->merges * ((size_t)merges->count + 1));
    if (!s->merges) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory for the merges", path);
    for (int i = 0; i < (int)merges->count; i++) {
        qm_gguf_str m = merges->strs[i];
        if (!m.len || !qm_tok_split_merge(m.ptr, (size_t)m.len, &s->merges[i]))
            return qm_fail(err, QM_ERR_FORMAT,
                           "%s: tokenizer.ggml.merges[%d] \"%.*s\" is not two tokens separated by one space", path, i,
                           m.len > 200 ? 200 : (int)m.len, m.len ? m.ptr : "");
        s->n_merges++;
    }
    return QM_OK;
}

/* An optional token id: -1 when absent, else below the number of tokens. */
static qm_status gguf_special(const qm_gguf *g, const char *key, uint64_t n_tokens, int *out, qm_error *err) {
    int64_t v = -1;
    qm_status st = qm_gguf_get_int(g, key, false, &v, err);
    if (st) return st;
    if (v != -1 && (v < 0 || (uint64_t)v >= n_tokens))
        return qm_fail(err, QM_ERR_FORMAT, "%s: %s is %lld; expected an id below %llu (the tokens in tokenizer.ggml.tokens)",
                       qm_gguf_path(g), key, (long long)v, (unsigned long long)n_tokens);
    *out = (int)v;
    return QM_OK;
}

static qm_status gguf_specials(const qm_gguf *g, uint64_t n_tokens, qm_tokenizer_specials *sp, qm_error *err) {
    qm_status st = gguf_special(g, "tokenizer.ggml.bos_token_id", n_tokens, &sp->bos, err);
    if (!st) st = gguf_special(g, "tokenizer.ggml.eos_token_id", n_tokens, &sp->eos, err);
    if (!st) st = gguf_special(g, "tokenizer.ggml.padding_token_id", n_tokens, &sp->pad, err);
    if (!st) st = qm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", false, &sp->add_bos, err);
    return st;
}

qm_status qm_tokenizer_load_gguf(const qm_gguf *g, qm_tokenizer **out, qm_error *err) {
    *out = NULL;
    if (!g) return qm_fail(err, QM_ERR_ARG, "no GGUF file given for the tokenizer");
    const char *path = qm_gguf_path(g);
    qm_tok_spec s = {.where = path,
                     .vocab_key = "tokenizer.ggml.tokens",
                     .merges_key = "tokenizer.ggml.merges",
                     .split = qm_tok_qwen2_split,
                     .nfc = true,
                     .specials = {.bos = -1, .eos = -1, .pad = -1}};
    const qm_gguf_kv *tokens = NULL, *types = NULL, *merges = NULL;
    qm_status st = check_model(g, err);
    if (!st) st = qm_gguf_get_array(g, "tokenizer.ggml.tokens", QM_GGUF_STRING, true, &tokens, err);
    if (!st) st = qm_gguf_get_int_array(g, "tokenizer.ggml.token_type", true, &types, err);
    if (!st) st = qm_gguf_get_array(g, "tokenizer.ggml.merges", QM_GGUF_STRING, true, &merges, err);
    if (!st) st = gguf_tokens(tokens, types, path, &s, err);
    if (!st) st = gguf_merges(merges, path, &s, err);
    if (!st) st = gguf_specials(g, tokens->count, &s.specials, err);
    if (!st) st = qm_tok_build(&s, out, err);
    qm_tok_spec_free(&s);
    return st;
}

/* ---------------------------------------------------------------- writing */

/* NUL-terminated strings back to back, for qm_gguf_add_string_array. */
typedef struct {
    char *buf;
    size_t len, cap;
    size_t *off;
    size_t n, cap_n;
    bool failed;
} strlist;

static void sl_add(strlist *l, const char *s, size_t n) {
    if (l->failed) return;
    if (l->n == l->cap_n) {
        size_t cap = l->cap_n ? 2 * l->cap_n : 1024;
        size_t *off = realloc(l->off, cap * sizeof *off);
        if (!off) {
            l->failed = true;
            return;
        }
        l->off = off;
        l->cap_n = cap;
    }
    if (n > SIZE_MAX / 4 - l->len) { /* past any file's size: no doubling below can wrap */
        l->failed = true;
        return;
    }
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 1 << 16;
        while (cap < l->len + n + 1) cap *= 2;
        char *buf = realloc(l->buf, cap);
        if (!buf) {
            l->failed = true;
            return;
        }
        l->buf = buf;
        l->cap = cap;
    }
    l->off[l->n++] = l->len;
    memcpy(l->buf + l->len, s, n);
    l->buf[l->len + n] = 0;
    l->len += n + 1;
}

static void sl_free(strlist *l) {
    free(l->buf);
    free(l->off);
}

static qm_status sl_write(qm_gguf_writer *w, const char *key, const strlist *l, qm_error *err) {
    if (l->failed) return qm_fail(err, QM_ERR_NOMEM, "out of memory building %s", key);
    const char **v = malloc(sizeof *v * (l->n + 1));
    if (!v) return qm_fail(err, QM_ERR_NOMEM, "out of memory building %s", key);
    for (size_t i = 0; i < l->n; i++) v[i] = l->buf + l->off[i];
    qm_status st = qm_gguf_add_string_array(w, key, v, l->n, err);
    free(v);
    return st;
}

#define N_SPECIAL 7
enum { SP_BOS = 0, SP_EOS = 1, SP_PAD = 4 }; /* indexes in specials[] */

/* What is read from the Hugging Face folder. */
typedef struct {
    char *tok_path, *cfg_path, *config_path;
    cJSON *tok, *cfg, *config; /* tokenizer.json; tokenizer_config.json, config.json: NULL if absent */
    qm_tok_spec spec;
    int vocab_size;
    char *chat_template; /* NULL if none */
    bool deepseek;       /* the chat template is DeepSeek-R1's: pre "deepseek-r1-qwen" */
    int ids[N_SPECIAL];  /* -1 = unset */
    int order[N_SPECIAL], n_order;
} hf_folder;

/* SpecialVocab's types in its order, with the key of those that gguf-py writes (cls has none). */
static const struct {
    const char *type, *key, *add_key;
} specials[N_SPECIAL] = {
    {"bos", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token"},
    {"eos", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_eos_token"},
    {"unk", "tokenizer.ggml.unknown_token_id", NULL},
    {"sep", "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.add_sep_token"},
    {"pad", "tokenizer.ggml.padding_token_id", NULL},
    {"cls", NULL, NULL},
    {"mask", "tokenizer.ggml.mask_token_id", NULL},
};

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Reads a JSON file that may be absent (*root NULL then). */
static qm_status read_optional(const char *path, cJSON **root, qm_error *err) {
    *root = NULL;
    return exists(path) ? qm_tok_read_json(path, root, err) : QM_OK;
}

static bool text_is(qm_tok_text t, const char *s) { return t.len == strlen(s) && !memcmp(t.ptr, s, t.len); }

/* The id of the first added token (tokenizer.json's added_tokens) with this content, or -1. */
static int added_id(const qm_tok_spec *s, const char *content) {
    for (int i = 0; i < s->n_added; i++)
        if (text_is(s->added[i].content, content)) return s->added[i].id;
    return -1;
}

static qm_status set_special(hf_folder *h, int k, int id, const char *from, qm_error *err) {
    if (h->ids[k] >= 0 || id < 0) return QM_OK; /* the first source wins */
    if (id >= h->vocab_size)
        return qm_fail(err, QM_ERR_FORMAT, "%s: the %s token id %d is not below the vocabulary size %d", from,
                       specials[k].type, id, h->vocab_size);
    h->ids[k] = id;
    h->order[h->n_order++] = k;
    return QM_OK;
}

/* <type>_token in tokenizer_config.json: a string or {"content": ...}; bos falls back to
 * cls_token and eos to sep_token, as SpecialVocab does. */
static const char *config_token(const cJSON *cfg, const char *type) {
    char key[32];
    snprintf(key, sizeof key, "%s_token", type);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "content");
    const char *s = cJSON_GetStringValue(e);
    if ((!s || !*s) && !strcmp(type, "bos")) return config_token(cfg, "cls");
    if ((!s || !*s) && !strcmp(type, "eos")) return config_token(cfg, "sep");
    return s;
}

/* SpecialVocab: tokenizer_config.json's tokens first, then config.json's <type>_token_id; then
 * bos, eos and padding default to <|endoftext|> (what Qwen's config.json and tokenizer_config.json give). */
static qm_status resolve_specials(hf_folder *h, qm_error *err) {
    for (int k = 0; k < N_SPECIAL; k++) h->ids[k] = -1;
    qm_status st = QM_OK;
    for (int k = 0; k < N_SPECIAL && h->cfg && !st; k++) {
        const char *content = config_token(h->cfg, specials[k].type);
        if (content) st = set_special(h, k, added_id(&h->spec, content), h->cfg_path, err);
    }
    for (int k = 0; k < N_SPECIAL && h->config && !st; k++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", specials[k].type);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(h->config, key);
        if (!cJSON_IsNumber(v)) continue;
        if (v->valuedouble < 0 || v->valuedouble != (double)(int)v->valuedouble)
            return qm_fail(err, QM_ERR_FORMAT, "%s: %s is %g; expected a token id", h->config_path, key, v->valuedouble);
        st = set_special(h, k, (int)v->valuedouble, h->config_path, err);
    }
    int eot = added_id(&h->spec, "<|endoftext|>");
    if (!st) st = set_special(h, SP_BOS, eot, h->tok_path, err);
    if (!st) st = set_special(h, SP_EOS, eot, h->tok_path, err);
    if (!st) st = set_special(h, SP_PAD, eot, h->tok_path, err);
    return st;
}

static qm_status read_text_file(const char *path, char **out, qm_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qm_fail(err, QM_ERR_IO, "cannot open '%s'", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb) free(buf);
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (!buf) return qm_fail(err, QM_ERR_NOMEM, "out of memory reading '%s'", path);
    buf[n] = 0;
    *out = buf;
    return QM_OK;
}

/* A chat_template value: a string, or a list of {"name", "template"} (the "default" one is kept). */
static qm_status template_value(const cJSON *v, const char *path, char **out, qm_error *err) {
    if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "name"));
            if (name && !strcmp(name, "default")) v = cJSON_GetObjectItemCaseSensitive(e, "template");
        }
    }
    if (!v || cJSON_IsNull(v) || cJSON_IsArray(v)) return QM_OK;
    if (!cJSON_IsString(v)) return qm_fail(err, QM_ERR_FORMAT, "%s: chat_template is not a string", path);
    if (!(*out = strdup(v->valuestring))) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    return QM_OK;
}

/* tokenizer_config.json's chat_template, else chat_template.jinja, else chat_template.json's. */
static qm_status find_template(hf_folder *h, const char *dir, qm_error *err) {
    if (!h->cfg) return QM_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(h->cfg, "chat_template");
    if (v) return template_value(v, h->cfg_path, &h->chat_template, err);
    char *jinja = join(dir, "chat_template.jinja"), *json = join(dir, "chat_template.json");
    qm_status st = QM_OK;
    if (!jinja || !json)
        st = qm_fail(err, QM_ERR_NOMEM, "out of memory");
    else if (exists(jinja))
        st = read_text_file(jinja, &h->chat_template, err);
    else if (exists(json)) {
        cJSON *root = NULL;
        st = qm_tok_read_json(json, &root, err);
        if (!st) st = template_value(cJSON_GetObjectItemCaseSensitive(root, "chat_template"), json, &h->chat_template, err);
        cJSON_Delete(root);
    }
    free(jinja);
    free(json);
    return st;
}

/* Reads the folder: tokenizer.json (checked by building it), tokenizer_config.json, config.json. */
static qm_status hf_read(hf_folder *h, const char *dir, qm_error *err) {
    h->tok_path = join(dir, "tokenizer.json");
    h->cfg_path = join(dir, "tokenizer_config.json");
    h->config_path = join(dir, "config.json");
    if (!h->tok_path || !h->cfg_path || !h->config_path) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    qm_status st = qm_tok_read_json(h->tok_path, &h->tok, err);
    if (!st) st = qm_tok_spec_from_json(h->tok, h->tok_path, &h->spec, err);
    qm_tokenizer *check = NULL;
    if (!st) st = qm_tok_build(&h->spec, &check, err);
    qm_tokenizer_free(check);
    if (st) return st;
    /* GGUF has no field for these matching flags (llama.cpp would drop them): refuse, never lose them. */
    for (int k = 0; k < h->spec.n_added; k++) {
        const qm_tok_added *a = &h->spec.added[k];
        const char *flag = a->lstrip ? "lstrip" : a->rstrip ? "rstrip" : a->single_word ? "single_word"
                         : a->normalized && h->spec.nfc ? "normalized" : NULL;
        if (flag)
            return qm_fail(err, QM_ERR_UNSUPPORTED,
                           "%s: added token \"%.*s\" (id %d) sets \"%s\": true, which GGUF cannot record", h->tok_path,
                           (int)(a->content.len > 60 ? 60 : a->content.len), a->content.ptr, a->id, flag);
    }
    if (!h->spec.split || strcmp(h->spec.split, qm_tok_qwen2_split) != 0)
        return qm_fail(err, QM_ERR_UNSUPPORTED,
                       "%s: not a Qwen2-family tokenizer (the pre-tokenizer must be the Qwen2 split regex); GGUF "
                       "has no pre-tokenizer name for it",
                       h->tok_path);
    st = read_optional(h->cfg_path, &h->cfg, err);
    if (!st) st = read_optional(h->config_path, &h->config, err);
    if (st) return st;
    h->vocab_size = h->spec.n_ids;
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(h->config, "vocab_size");
    if (vs && (!cJSON_IsNumber(vs) || vs->valuedouble < h->spec.n_ids || vs->valuedouble > QM_TOK_MAX_IDS))
        return qm_fail(err, QM_ERR_FORMAT,
                       "%s: vocab_size is not a number of at least %d (the tokenizer's ids) and at most %d",
                       h->config_path, h->spec.n_ids, QM_TOK_MAX_IDS);
    if (vs) h->vocab_size = (int)vs->valuedouble;
    st = resolve_specials(h, err);
    if (!st) st = find_template(h, dir, err);
    if (st) return st;
    /* "qwen2" is read back with NFC, as Qwen's tokenizer.json has it. */
    h->deepseek = qm_chat_format_detect(h->chat_template) == QM_CHAT_DEEPSEEK_R1;
    if (!h->spec.nfc && !h->deepseek)
        return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: a Qwen2 tokenizer without the NFC normalizer is not supported",
                       h->tok_path);
    return QM_OK;
}

static void hf_free(hf_folder *h) {
    qm_tok_spec_free(&h->spec);
    cJSON_Delete(h->tok);
    cJSON_Delete(h->cfg);
    cJSON_Delete(h->config);
    free(h->tok_path);
    free(h->cfg_path);
    free(h->config_path);
    free(h->chat_template);
}

static bool starts_ends(qm_tok_text t, const char *head, const char *tail) {
    size_t h = strlen(head), n = strlen(tail);
    return t.len >= h && t.len >= n && !memcmp(t.ptr, head, h) && !memcmp(t.ptr + t.len - n, tail, n);
}

/* convert_hf_to_gguf.py's does_token_look_special. */
static bool looks_special(qm_tok_text t) {
    return text_is(t, "<pad>") || text_is(t, "<mask>") || text_is(t, "<2mass>") || text_is(t, "[@BOS@]") ||
           starts_ends(t, "<|", "|>") || starts_ends(t, "<\xEF\xBD\x9C", "\xEF\xBD\x9C>") ||
           starts_ends(t, "<unused", ">");
}

/* Adds a user-defined token with U+2581 (SentencePiece's space) written as a space. */
static void add_user_defined(strlist *l, qm_tok_text t) {
    char *s = malloc(t.len + 1);
    if (!s) {
        l->failed = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < t.len; i++) {
        if (i + 3 <= t.len && !memcmp(t.ptr + i, "\xE2\x96\x81", 3)) {
            s[n++] = ' ';
            i += 2;
        } else
            s[n++] = t.ptr[i];
    }
    sl_add(l, s, n);
    free(s);
}

/* get_vocab_base: one token per id below vocab_size; added tokens are control when special (or
 * looking special) else user-defined; ids without a token are "[PAD<id>]", unused. */
static qm_status token_list(const hf_folder *h, strlist *tokens, int32_t *types, qm_error *err) {
    const qm_tok_added **by_id = calloc((size_t)h->vocab_size, sizeof *by_id);
    if (!by_id) return qm_fail(err, QM_ERR_NOMEM, "out of memory for %d tokens", h->vocab_size);
    for (int k = 0; k < h->spec.n_added; k++) by_id[h->spec.added[k].id] = &h->spec.added[k];
    for (int i = 0; i < h->vocab_size; i++) {
        const qm_tok_added *a = by_id[i];
        if (a && (a->special || looks_special(a->content))) {
            types[i] = TT_CONTROL;
            sl_add(tokens, a->content.ptr, a->content.len);
        } else if (a) {
            types[i] = TT_USER_DEFINED;
            add_user_defined(tokens, a->content);
        } else if (i < h->spec.n_ids && h->spec.vocab[i].ptr) {
            types[i] = TT_NORMAL;
            sl_add(tokens, h->spec.vocab[i].ptr, h->spec.vocab[i].len);
        } else {
            char pad[32];
            types[i] = TT_UNUSED;
            sl_add(tokens, pad, (size_t)snprintf(pad, sizeof pad, "[PAD%d]", i));
        }
    }
    free(by_id);
    return QM_OK;
}

/* A merge side with its spaces written as U+0120, as SpecialVocab does for ["a", "b"] merges. */
static void merge_side(char *out, size_t *n, qm_tok_text t) {
    for (size_t i = 0; i < t.len; i++) {
        if (t.ptr[i] == ' ') {
            out[(*n)++] = '\xC4';
            out[(*n)++] = '\xA0';
        } else
            out[(*n)++] = t.ptr[i];
    }
}

static qm_status merge_list(const hf_folder *h, strlist *merges, qm_error *err) {
    for (int i = 0; i < h->spec.n_merges; i++) {
        qm_tok_merge m = h->spec.merges[i];
        char buf[2048];
        size_t n = 0;
        if (2 * (m.left.len + m.right.len) + 1 > sizeof buf)
            return qm_fail(err, QM_ERR_FORMAT, "%s: merge %d is too long", h->tok_path, i);
        merge_side(buf, &n, m.left);
        buf[n++] = ' ';
        merge_side(buf, &n, m.right);
        sl_add(merges, buf, n);
    }
    return QM_OK;
}

/* The keys, in convert_hf_to_gguf.py's order. */
static qm_status hf_write(const hf_folder *h, qm_gguf_writer *w, const strlist *tokens, const int32_t *types,
                          const strlist *merges, qm_error *err) {
    qm_status st = qm_gguf_add_string(w, "tokenizer.ggml.model", "gpt2", err);
    if (!st) st = qm_gguf_add_string(w, "tokenizer.ggml.pre", h->deepseek ? "deepseek-r1-qwen" : "qwen2", err);
    if (!st) st = sl_write(w, "tokenizer.ggml.tokens", tokens, err);
    if (!st) st = qm_gguf_add_array(w, "tokenizer.ggml.token_type", QM_GGUF_INT32, types, (uint64_t)h->vocab_size, err);
    if (!st) st = sl_write(w, "tokenizer.ggml.merges", merges, err);
    for (int i = 0; i < h->n_order && !st; i++) {
        int k = h->order[i];
        if (specials[k].key) st = qm_gguf_add_u32(w, specials[k].key, (uint32_t)h->ids[k], err);
    }
    for (int k = 0; k < N_SPECIAL && !st && h->cfg; k++) {
        char key[32];
        snprintf(key, sizeof key, "add_%s_token", specials[k].type);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(h->cfg, key);
        if (specials[k].add_key && cJSON_IsBool(v)) st = qm_gguf_add_bool(w, specials[k].add_key, cJSON_IsTrue(v), err);
    }
    if (!st && h->chat_template) st = qm_gguf_add_string(w, "tokenizer.chat_template", h->chat_template, err);
    return st;
}

qm_status qm_tokenizer_gguf_metadata(const char *hf_dir, qm_gguf_writer *w, qm_error *err) {
    if (!hf_dir || !w) return qm_fail(err, QM_ERR_ARG, "no Hugging Face folder or no GGUF writer given");
    hf_folder h = {0};
    strlist tokens = {0}, merges = {0};
    int32_t *types = NULL;
    qm_status st = hf_read(&h, hf_dir, err);
    if (!st && !(types = malloc(sizeof *types * (size_t)h.vocab_size)))
        st = qm_fail(err, QM_ERR_NOMEM, "out of memory for %d token types", h.vocab_size);
    if (!st) st = token_list(&h, &tokens, types, err);
    if (!st) st = merge_list(&h, &merges, err);
    if (!st) st = hf_write(&h, w, &tokens, types, &merges, err);
    free(types);
    sl_free(&tokens);
    sl_free(&merges);
    hf_free(&h);
    return st;
}
