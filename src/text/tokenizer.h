/* Byte-level BPE tokenizer from a Hugging Face tokenizer.json (Qwen2 / Qwen2.5 / Qwen3). */
#ifndef QM_TEXT_TOKENIZER_H
#define QM_TEXT_TOKENIZER_H

#include <qmesh.h>
#include <stddef.h>

typedef struct qm_tokenizer qm_tokenizer;

/* path: a tokenizer.json file, or a folder holding one. */
qm_status qm_tokenizer_load(const char *path, qm_tokenizer **out, qm_error *err);
void qm_tokenizer_free(qm_tokenizer *tok);

/* Number of ids the tokenizer can produce (base vocabulary + added tokens: 151665 for Qwen2.5). */
int qm_tokenizer_n_ids(const qm_tokenizer *tok);
/* Id of a token by its exact string (added tokens like "<|im_end|>" included), or -1. */
int qm_tokenizer_id(const qm_tokenizer *tok, const char *token);

/* Encodes UTF-8 text (len bytes): NFC, added tokens recognised in the text, the split regex,
 * byte-level mapping, BPE by merge rank. *ids is malloc'd (caller frees). Invalid UTF-8 is an error. */
qm_status qm_tokenize(const qm_tokenizer *tok, const char *text, size_t len, int **ids, int *n_ids,
                      qm_error *err);

/* Decodes ids to UTF-8 (added tokens as their text). *text is malloc'd and NUL-terminated. */
qm_status qm_detokenize(const qm_tokenizer *tok, const int *ids, int n_ids, char **text, size_t *len,
                        qm_error *err);

/* Streaming decode: push one id at a time; only complete UTF-8 characters come out, the bytes of
 * a character split across tokens wait in the stream until it completes. */
typedef struct {
    unsigned char pending[16];
    int n_pending;
} qm_decode_stream;

/* Writes the newly completed text for `id` to out (at most cap-1 bytes, NUL-terminated) and
 * returns its length. An id out of range decodes to nothing. */
size_t qm_decode_stream_push(const qm_tokenizer *tok, qm_decode_stream *s, int id, char *out, size_t cap);
/* At the end: emits what is left (an incomplete character becomes U+FFFD). */
size_t qm_decode_stream_flush(qm_decode_stream *s, char *out, size_t cap);

#endif
