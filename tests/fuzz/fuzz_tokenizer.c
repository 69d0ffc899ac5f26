/* libFuzzer entry point for tokenizer.json loading. The bytes are parsed as qm_tokenizer_load parses a
 * file (cJSON_ParseWithLengthOpts, qm_tok_spec_from_json, qm_tok_build: the same calls, from memory);
 * when a tokenizer is built it encodes a short fixed text, with and without special tokens (added
 * tokens and their flags, NFC, the split regex and BPE all run on it), decodes what came out, decodes
 * the first ids of the vocabulary one by one through the streaming decoder, and looks a few strings
 * up. The work after loading is bounded: the text is fixed and at most 256 ids are decoded.
 * Seeds: corpus/tokenizer/ (tiny byte-level BPE tokenizers with merges and added tokens, broken ones). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"
#include "text/tokenizer_internal.h"

static const char text[] =
    "Hello world, the 123 <|im_start|>user\n <tool> h\xc3\xa9llo e\xcc\x81t\xc3\xa9  \t!<|im_end|>ab";

static void exercise(const qm_tokenizer *tok) {
    qm_error err;
    int *ids = NULL, n = 0;
    char *out = NULL;
    size_t len = 0;
    for (int special = 0; special < 2; special++) {
        if (qm_tokenize_ex(tok, text, sizeof text - 1, special, &ids, &n, &err) == QM_OK) {
            for (int i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= qm_tokenizer_n_ids(tok)) abort();
            out = NULL;
            if (qm_detokenize(tok, ids, n, &out, &len, &err) == QM_OK && strlen(out) > len) abort();
            free(out);
        }
        free(ids);
        ids = NULL;
    }

    int k = qm_tokenizer_n_ids(tok) < 256 ? qm_tokenizer_n_ids(tok) : 256;
    qm_decode_stream s = {0};
    char buf[64];
    for (int id = -1; id <= k; id++) {
        if (qm_decode_stream_push(tok, &s, id, buf, sizeof buf) >= sizeof buf) abort();
        out = NULL;
        if (qm_detokenize(tok, &id, 1, &out, &len, &err) == QM_OK && strlen(out) > len) abort();
        free(out);
    }
    if (qm_decode_stream_flush(&s, buf, sizeof buf) >= sizeof buf) abort();

    static const char *const look[] = {"<|im_end|>", "a", "\xc4\xa0the", "", "ab"};
    for (size_t i = 0; i < sizeof look / sizeof look[0]; i++) {
        int id = qm_tokenizer_id(tok, look[i]);
        if (id < -1 || id >= qm_tokenizer_n_ids(tok)) abort();
    }
    qm_tokenizer_specials sp;
    qm_tokenizer_special_ids(tok, &sp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qm_error err;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)data, size, &end, false);
    if (!root) return 0;
    qm_tok_spec spec = {0};
    qm_tokenizer *tok = NULL;
    qm_status st = qm_tok_spec_from_json(root, "fuzz/tokenizer.json", &spec, &err);
    if (!st) st = qm_tok_build(&spec, &tok, &err);
    qm_tok_spec_free(&spec);
    cJSON_Delete(root);
    if (st == QM_OK) {
        if (!tok) abort();
        exercise(tok);
    } else if (tok) {
        abort();
    }
    qm_tokenizer_free(tok);
    return 0;
}
