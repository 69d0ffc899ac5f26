/* Writes the GGUF fuzzing seeds into a folder: small valid files made by the writer (every value type,
 * string arrays, a tensor of every dtype qmesh reads, a custom alignment, version 2, nested arrays) and
 * a few broken ones (truncated, wrong magic, a duplicate key, an unsupported type, overlapping tensors).
 * usage: gguf_make_corpus DIR   (DIR exists; the seeds are tests/fuzz/corpus/gguf/) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

typedef struct {
    unsigned char p[4096];
    size_t n;
} bytes;

static void put_le(bytes *b, uint64_t v, int n) {
    for (int i = 0; i < n && b->n < sizeof b->p; i++) b->p[b->n++] = (unsigned char)(v >> (8 * i));
}
static void put_str(bytes *b, const char *s) {
    size_t n = strlen(s);
    put_le(b, n, 8);
    for (size_t i = 0; i < n && b->n < sizeof b->p; i++) b->p[b->n++] = (unsigned char)s[i];
}
static void put_kv_u32(bytes *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_le(b, QM_GGUF_UINT32, 4);
    put_le(b, v, 4);
}
static void put_tensor(bytes *b, const char *name, uint64_t ne0, uint32_t type, uint64_t offset) {
    put_str(b, name);
    put_le(b, 1, 4);
    put_le(b, ne0, 8);
    put_le(b, type, 4);
    put_le(b, offset, 8);
}
static void pad(bytes *b, size_t a, size_t extra) {
    while (b->n % a && b->n < sizeof b->p) b->p[b->n++] = 0;
    for (size_t i = 0; i < extra && b->n < sizeof b->p; i++) b->p[b->n++] = (unsigned char)(i * 7);
}

static char *path_in(const char *dir, const char *name) {
    static char buf[1024]; /* a one-shot tool: its own scratch */
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static int save(const char *dir, const char *name, const void *p, size_t n) {
    FILE *f = fopen(path_in(dir, name), "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "gguf_make_corpus: cannot write %s\n", path_in(dir, name));
        return 1;
    }
    return 0;
}

static int load(const char *dir, const char *name, bytes *b) {
    FILE *f = fopen(path_in(dir, name), "rb");
    if (!f) return 1;
    b->n = fread(b->p, 1, sizeof b->p, f);
    fclose(f);
    return 0;
}

static int check(qm_status st, const qm_error *err) {
    if (st) fprintf(stderr, "gguf_make_corpus: %s\n", err->msg);
    return st != QM_OK;
}

/* Metadata like a real model's (small tokenizer arrays) and one tensor of every dtype qmesh reads. */
static int write_model(const char *dir) {
    static const char *const toks[] = {"!", "\"", "a", "\xc4\xa0the", "<|im_start|>", "<|im_end|>", ""};
    static const char *const merges[] = {"\xc4\xa0 t", "t h", "th e"};
    int32_t types[7] = {1, 1, 1, 1, 3, 3, 1};
    float scores[7] = {0, -1, -2, -3, 0, 0, -4};
    qm_error err = {0};
    qm_gguf_writer *w;
    qm_status st = qm_gguf_writer_open(path_in(dir, "model.gguf"), &w, &err);
    if (check(st, &err)) return 1;
    st = qm_gguf_add_string(w, "general.architecture", "qwen2", &err);
    if (!st) st = qm_gguf_add_u32(w, "qwen2.block_count", 1, &err);
    if (!st) st = qm_gguf_add_f32(w, "qwen2.rope.freq_base", 1e6f, &err);
    if (!st) st = qm_gguf_add_bool(w, "tokenizer.ggml.add_bos_token", false, &err);
    if (!st) st = qm_gguf_add_string_array(w, "tokenizer.ggml.tokens", toks, 7, &err);
    if (!st) st = qm_gguf_add_array(w, "tokenizer.ggml.token_type", QM_GGUF_INT32, types, 7, &err);
    if (!st) st = qm_gguf_add_array(w, "tokenizer.ggml.scores", QM_GGUF_FLOAT32, scores, 7, &err);
    if (!st) st = qm_gguf_add_string_array(w, "tokenizer.ggml.merges", merges, 3, &err);
    size_t total = 0;
    for (int d = 0; d < QM_DT_COUNT && !st; d++) {
        char name[32];
        int64_t ne[2] = {qm_dtype_block((qm_dtype)d) == 1 ? 4 : qm_dtype_block((qm_dtype)d), d == 0 ? 2 : 1};
        snprintf(name, sizeof name, "blk.0.%s.weight", qm_dtype_name((qm_dtype)d));
        st = qm_gguf_add_tensor(w, name, (qm_dtype)d, d == 0 ? 2 : 1, ne, &err);
        total += qm_dtype_row_bytes((qm_dtype)d, (size_t)(ne[0] * ne[1]));
    }
    for (size_t i = 0; i < total && !st; i++) {
        unsigned char c = (unsigned char)(i * 13);
        st = qm_gguf_write_tensor_data(w, &c, 1, &err);
    }
    if (!st) st = qm_gguf_writer_close(w, true, &err);
    else qm_gguf_writer_close(w, false, NULL);
    return check(st, &err);
}

/* Every scalar and array type, a custom alignment of 16 and two F16 tensors. */
static int write_values(const char *dir) {
    static const char *const strs[] = {"x", "", "yz"};
    unsigned char raw[24] = {1, 0x80, 2, 3, 0xff, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 1};
    unsigned char bools[2] = {1, 0};
    qm_error err = {0};
    qm_gguf_writer *w;
    qm_status st = qm_gguf_writer_open(path_in(dir, "values.gguf"), &w, &err);
    if (check(st, &err)) return 1;
    st = qm_gguf_add_u32(w, "general.alignment", 16, &err);
    for (int t = 0; t <= QM_GGUF_FLOAT64 && !st; t++) {
        char key[32];
        if (!qm_gguf_type_size((qm_gguf_type)t)) continue;
        snprintf(key, sizeof key, "s.%s", qm_gguf_type_name((qm_gguf_type)t));
        st = qm_gguf_add_value(w, key, (qm_gguf_type)t, t == QM_GGUF_BOOL ? raw : raw + 1, &err);
        snprintf(key, sizeof key, "a.%s", qm_gguf_type_name((qm_gguf_type)t));
        if (!st) st = qm_gguf_add_array(w, key, (qm_gguf_type)t, t == QM_GGUF_BOOL ? bools : raw, 1 + (t & 1), &err);
    }
    if (!st) st = qm_gguf_add_string(w, "s.STRING", "hello", &err);
    if (!st) st = qm_gguf_add_string_array(w, "a.STRING", strs, 3, &err);
    int64_t ne[2] = {3, 2};
    if (!st) st = qm_gguf_add_tensor(w, "t0", QM_DT_F16, 2, ne, &err);
    if (!st) st = qm_gguf_add_tensor(w, "t1", QM_DT_F16, 1, ne, &err);
    if (!st) st = qm_gguf_write_tensor_data(w, raw, 18, &err);
    if (!st) st = qm_gguf_writer_close(w, true, &err);
    else qm_gguf_writer_close(w, false, NULL);
    return check(st, &err);
}

static int write_min(const char *dir) {
    qm_error err = {0};
    qm_gguf_writer *w;
    qm_status st = qm_gguf_writer_open(path_in(dir, "min.gguf"), &w, &err);
    if (check(st, &err)) return 1;
    st = qm_gguf_add_string(w, "general.name", "m", &err);
    if (!st) st = qm_gguf_writer_close(w, true, &err);
    else qm_gguf_writer_close(w, false, NULL);
    return check(st, &err);
}

/* Hand-made files: nested arrays (valid), and broken ones the writer cannot make. */
static int write_crafted(const char *dir) {
    bytes b = {.n = 0};
    put_le(&b, 0x46554747, 4), put_le(&b, 3, 4), put_le(&b, 0, 8), put_le(&b, 2, 8);
    put_str(&b, "nest"), put_le(&b, QM_GGUF_ARRAY, 4), put_le(&b, QM_GGUF_ARRAY, 4), put_le(&b, 2, 8);
    put_le(&b, QM_GGUF_STRING, 4), put_le(&b, 1, 8), put_str(&b, "ab");
    put_le(&b, QM_GGUF_INT16, 4), put_le(&b, 2, 8), put_le(&b, 0xffff0001, 4);
    put_kv_u32(&b, "after", 1);
    int rc = save(dir, "nested.gguf", b.p, b.n);

    b.n = 0;
    put_le(&b, 0x46554747, 4), put_le(&b, 3, 4), put_le(&b, 0, 8), put_le(&b, 2, 8);
    put_kv_u32(&b, "k", 1), put_kv_u32(&b, "k", 2);
    rc |= save(dir, "bad_dupkey.gguf", b.p, b.n);

    b.n = 0;
    put_le(&b, 0x46554747, 4), put_le(&b, 3, 4), put_le(&b, 1, 8), put_le(&b, 0, 8);
    put_tensor(&b, "q2k", 256, 10, 0), pad(&b, 32, 84);
    rc |= save(dir, "bad_q2k.gguf", b.p, b.n);

    b.n = 0;
    put_le(&b, 0x46554747, 4), put_le(&b, 3, 4), put_le(&b, 2, 8), put_le(&b, 0, 8);
    put_tensor(&b, "a", 32, 0, 0), put_tensor(&b, "b", 32, 0, 96), pad(&b, 32, 256);
    rc |= save(dir, "bad_overlap.gguf", b.p, b.n);
    return rc;
}

/* Variants of the valid files: version 2 (valid), and truncated, wrong magic, version 1 (broken). */
static int write_variants(const char *dir) {
    bytes b;
    if (load(dir, "min.gguf", &b)) return 1;
    b.p[4] = 2;
    int rc = save(dir, "v2.gguf", b.p, b.n);
    b.p[4] = 1;
    rc |= save(dir, "bad_v1.gguf", b.p, b.n);
    if (load(dir, "model.gguf", &b)) return 1;
    rc |= save(dir, "bad_truncated.gguf", b.p, b.n * 2 / 3);
    b.p[3] = 'G';
    rc |= save(dir, "bad_magic.gguf", b.p, b.n);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gguf_make_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    int rc = write_min(dir) | write_model(dir) | write_values(dir) | write_crafted(dir);
    if (!rc) rc = write_variants(dir);
    return rc;
}
