/* Internal to the text module: the description of a byte-level BPE tokenizer that both sources
 * fill (tokenizer.json in tokenizer.c, GGUF metadata in tokenizer_gguf.c) and the one builder
 * that turns it into a qm_tokenizer, so vocabulary, merges, added tokens, the split regex and NFC
 * are checked and built in one place.
 *
 * Strings in a spec are views (not owned, not NUL-terminated) into the source: the parsed JSON
 * or the GGUF mapping, which must outlive qm_tok_build. The built tokenizer copies what it keeps. */
#ifndef QM_TEXT_TOKENIZER_INTERNAL_H
#define QM_TEXT_TOKENIZER_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "text/tokenizer.h"

typedef struct {
    const char *ptr; /* NULL = none */
    size_t len;
} qm_tok_text;

/* Token ids are below this (16M, far above any real vocabulary): a source that names a larger id
 * is refused before anything is allocated for it. */
#define QM_TOK_MAX_IDS (1 << 24)
/* tokenizer.json: ids may leave gaps, but every id must be below (entries of model.vocab +
 * added tokens + this slack), so a stray huge id cannot make the loader allocate gigabytes. */
#define QM_TOK_ID_SLACK 65536

typedef struct {
    qm_tok_text content;
    int id;
    bool special;     /* tokenizer.json "special", GGUF CONTROL: not matched by qm_tokenize_ex with
                         allow_special false */
    bool lstrip;      /* a match also takes the white space before it */
    bool rstrip;      /* a match also takes the white space after it */
    bool single_word; /* matches only where no letter or digit touches it on either side */
    bool normalized;  /* matched in the normalised (NFC) text, not in the raw text */
} qm_tok_added;

typedef struct {
    qm_tok_text left, right;
} qm_tok_merge;

typedef struct {
    const char *where;      /* the file, for messages */
    const char *vocab_key;  /* "model.vocab" or "tokenizer.ggml.tokens", for messages */
    const char *merges_key; /* "model.merges" or "tokenizer.ggml.merges", for messages */
    const char *added_key;  /* "added_tokens" (tokenizer.json), NULL: added tokens are in vocab_key */
    int n_ids;              /* ids 0 .. n_ids-1 */
    qm_tok_text *vocab;     /* [n_ids] the BPE token string of each id (byte-level), ptr NULL if none */
    qm_tok_added *added;    /* [n_added] tokens matched in the raw text before BPE */
    int n_added;
    qm_tok_merge *merges;   /* [n_merges] in rank order */
    int n_merges;
    const char *split;      /* the pre-tokenizer regex (Hugging Face syntax, NUL-terminated), NULL = none */
    bool nfc;
    qm_tokenizer_specials specials;
} qm_tok_spec;

/* The Qwen2 split regex (tokenizer.json of Qwen2, Qwen2.5, Qwen3; GGUF pre "qwen2"). */
extern const char qm_tok_qwen2_split[];

/* Builds a tokenizer from a spec: checks ids, repeated vocabulary strings, merges naming tokens
 * that are not in the vocabulary, compiles the regex. *out NULL on failure. */
qm_status qm_tok_build(const qm_tok_spec *spec, qm_tokenizer **out, qm_error *err);

/* Reads and parses a JSON file (messages name `path`). */
qm_status qm_tok_read_json(const char *path, cJSON **root, qm_error *err);
/* Fills a spec from a parsed tokenizer.json (views into root). Free it with qm_tok_spec_free. */
qm_status qm_tok_spec_from_json(const cJSON *root, const char *path, qm_tok_spec *spec, qm_error *err);
/* Frees the arrays of a spec (not the strings it views). */
void qm_tok_spec_free(qm_tok_spec *spec);

/* Splits "left right" (exactly one space, sides not empty). */
bool qm_tok_split_merge(const char *s, size_t len, qm_tok_merge *out);

#endif
