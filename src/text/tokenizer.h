/* Byte-level BPE tokenizer (Qwen2 / Qwen2.5 / Qwen3, DeepSeek-R1-Distill-Qwen) from a Hugging Face
 * tokenizer.json or from the tokenizer metadata of a GGUF file; both build the same tokenizer. */
#ifndef QM_TEXT_TOKENIZER_H
#define QM_TEXT_TOKENIZER_H

#include <qmesh.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct qm_tokenizer qm_tokenizer;
typedef struct qm_gguf qm_gguf;               /* io/gguf.h */
typedef struct qm_gguf_writer qm_gguf_writer; /* io/gguf.h */

/* path: a tokenizer.json file, or a folder holding one. Refused: ids (model.vocab values,
 * added_tokens ids) of 2^24 or more, or not below the number of vocabulary entries + added tokens
 * + 65536 (no gigabyte tables for a stray id); an added token whose content is empty or not valid
 * UTF-8, or whose "special", "lstrip", "rstrip", "single_word" or "normalized" is not a boolean
 * (a flag that is absent counts as false). All four matching flags are honoured (qm_tokenize_ex). */
qm_status qm_tokenizer_load(const char *path, qm_tokenizer **out, qm_error *err);

/* From the metadata of an open GGUF file (llama.cpp's keys): tokenizer.ggml.model must be "gpt2"
 * and tokenizer.ggml.pre "qwen2" or "deepseek-r1-qwen" (both: the Qwen2 split regex and NFC);
 * tokenizer.ggml.tokens holds the byte-level token strings (index = id), tokenizer.ggml.token_type
 * their types (1 normal, 2 unknown, 6 byte: the BPE vocabulary; 3 control, 4 user-defined: added
 * tokens, control = special; 5 unused: not an id the tokenizer produces or decodes, like the
 * "[PAD151665]" rows past Qwen's tokenizer), tokenizer.ggml.merges the "left right" merges in rank
 * order. Anything else is refused with a message naming the key. The tokenizer keeps no reference
 * to g. */
qm_status qm_tokenizer_load_gguf(const qm_gguf *g, qm_tokenizer **out, qm_error *err);

/* The inverse, for writing a GGUF (qmesh quantize): adds to w the tokenizer of a Hugging Face model
 * folder as llama.cpp's convert_hf_to_gguf.py writes it for Qwen2 (Qwen2Model, _set_vocab_gpt2,
 * gguf-py SpecialVocab), so that llama.cpp loads the result:
 *   tokenizer.ggml.model "gpt2"; tokenizer.ggml.pre "qwen2" ("deepseek-r1-qwen" when the chat
 *   template is DeepSeek-R1's); tokenizer.ggml.tokens and tokenizer.ggml.token_type for ids
 *   0 .. vocab_size-1 (config.json's vocab_size, else the tokenizer's count; ids without a token are
 *   "[PAD<id>]", type 5); tokenizer.ggml.merges; the bos/eos/unknown/seperator/padding/mask token
 *   ids: first from tokenizer_config.json's <type>_token (looked up among the added tokens), then
 *   config.json's <type>_token_id, and bos, eos and padding fall back to <|endoftext|> when neither
 *   names them; tokenizer.ggml.add_bos_token (add_eos, add_sep) when tokenizer_config.json has
 *   them; tokenizer.chat_template from tokenizer_config.json (else chat_template.jinja or
 *   chat_template.json) when there is one.
 * hf_dir holds tokenizer.json (required), tokenizer_config.json and config.json (optional).
 * Only a Qwen2-family tokenizer.json (the Qwen2 split regex; NFC, unless the chat template is
 * DeepSeek-R1's) is accepted. The tokenizer.json is checked by building it first. An added token
 * with "lstrip", "rstrip", "single_word" (or "normalized", under NFC) true is refused: GGUF cannot
 * record those flags. config.json's vocab_size is at most 2^24. A chat_template
 * given as a list of named templates is written as its "default" one only. */
qm_status qm_tokenizer_gguf_metadata(const char *hf_dir, qm_gguf_writer *w, qm_error *err);

void qm_tokenizer_free(qm_tokenizer *tok);

/* Special token ids, -1 when the source does not give one. A tokenizer.json gives none (they are
 * in tokenizer_config.json / config.json); GGUF: tokenizer.ggml.bos_token_id, eos_token_id,
 * padding_token_id and add_bos_token. */
typedef struct {
    int bos, eos, pad;
    bool add_bos; /* the model expects bos before a prompt (false for Qwen2.5) */
} qm_tokenizer_specials;

void qm_tokenizer_special_ids(const qm_tokenizer *tok, qm_tokenizer_specials *out);

/* Number of ids the tokenizer can produce (base vocabulary + added tokens: 151665 for Qwen2.5). */
int qm_tokenizer_n_ids(const qm_tokenizer *tok);
/* Id of a token by its exact string (added tokens like "<|im_end|>" included), or -1. */
int qm_tokenizer_id(const qm_tokenizer *tok, const char *token);

/* Encodes UTF-8 text (len bytes) as Hugging Face tokenizers does: added tokens recognised in the
 * raw text (leftmost, longest first), NFC, added tokens with "normalized": true recognised in the
 * normalised text, the split regex, byte-level mapping, BPE by merge rank. An added token's
 * "lstrip"/"rstrip" make it take the white space before/after it, "single_word" lets it match only
 * where no letter or digit touches it. *ids is malloc'd (caller frees). Invalid UTF-8 is an error.
 *
 * allow_special: whether added tokens marked special (tokenizer.json "special": true, GGUF type 3
 * control: <|im_start|>, <|im_end|>, <|endoftext|>, ...) written in the text become their ids.
 * false treats them as plain text (what untrusted text such as a user's message needs, so it
 * cannot forge control tokens); added tokens that are not special (<think>, <tool_call>) are
 * still recognised, as with Hugging Face's split_special_tokens. */
qm_status qm_tokenize_ex(const qm_tokenizer *tok, const char *text, size_t len, bool allow_special, int **ids,
                         int *n_ids, qm_error *err);

/* qm_tokenize_ex with allow_special true: special-token strings in the text become their ids. */
qm_status qm_tokenize(const qm_tokenizer *tok, const char *text, size_t len, int **ids, int *n_ids,
                      qm_error *err);

/* Decodes ids to UTF-8 (added tokens as their text). *text is malloc'd and NUL-terminated. An id
 * < 0 or >= qm_tokenizer_n_ids, or one no token has (a gap in the ids), is an error (QM_ERR_ARG,
 * naming the id and its position), as is n_ids < 0 or ids NULL with n_ids > 0. */
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
