/* Safetensors reading and writing, shard indexes, .npy output, random-model weights.
 * Every malformed input is built here, in a temporary folder, and must give the right status and a
 * message that names the file (and the tensor where there is one). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "scratch_dir.h"

#include "io/checkpoint.h"
#include "io/config.h"
#include "io/npy.h"
#include "io/random_model.h"

/* ---- helpers ---- */

typedef struct {
    char dir[64];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (scratch_dir_make(f->dir, sizeof f->dir, "ckpt") != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    scratch_dir_remove(f->dir);
    free(f);
    return 0;
}

static char *path_in(const fixture *f, const char *name) {
    static _Thread_local char buf[4][512]; /* test-only scratch */
    static _Thread_local int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", f->dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (n) assert_int_equal(fwrite(p, 1, n, fp), n);
    fclose(fp);
}

/* A safetensors file from a header text (padded with spaces to a multiple of 8, as real writers do)
 * and `data_len` bytes of data (value = index). */
static void write_st(const char *path, const char *header, size_t data_len) {
    size_t len = strlen(header), hl = (len + 7) / 8 * 8;
    size_t n = 8 + hl + data_len;
    unsigned char *b = malloc(n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memset(b + 8, ' ', hl);
    memcpy(b + 8, header, len);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (unsigned char)i;
    write_bytes(path, b, n);
    free(b);
}

static void expect_error(qm_status got, qm_status want, const qm_error *err, const char *s1, const char *s2) {
    if (got != want || (s1 && !strstr(err->msg, s1)) || (s2 && !strstr(err->msg, s2)))
        fail_msg("status %s (want %s), message \"%s\" (want \"%s\" and \"%s\")", qm_status_name(got),
                 qm_status_name(want), err->msg, s1 ? s1 : "", s2 ? s2 : "");
}

static qm_status open_file(const char *path, qm_error *err) {
    qm_checkpoint *ck = NULL;
    qm_status st = qm_checkpoint_open_file(path, &ck, err);
    if (!st) qm_checkpoint_close(ck);
    else assert_null(ck);
    return st;
}

static qm_status open_dir(const char *dir, qm_error *err) {
    qm_checkpoint *ck = NULL;
    qm_status st = qm_checkpoint_open(dir, &ck, err);
    if (!st) qm_checkpoint_close(ck);
    else assert_null(ck);
    return st;
}

/* ---- round trip ---- */

static void test_roundtrip(void **state) {
    fixture *f = *state;
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    uint16_t b[5] = {0x3f80, 0xbf80, 0x4000, 0, 0x7f80};
    uint16_t h[3] = {0x3c00, 0xc000, 0x0001};
    /* bf16 first on purpose: the writer lays out f32 first so every tensor stays aligned */
    qm_tensor_out t[3] = {
        {.name = "b", .dtype = QM_DT_BF16, .ndim = 1, .shape = {5}, .data = b},
        {.name = "a.weight", .dtype = QM_DT_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "h", .dtype = QM_DT_F16, .ndim = 2, .shape = {3, 1}, .data = h},
    };
    qm_error err = {0};
    assert_int_equal(qm_safetensors_write(path_in(f, "model.safetensors"), t, 3, &err), QM_OK);

    qm_checkpoint *ck;
    qm_status st = qm_checkpoint_open(f->dir, &ck, &err);
    if (st) fail_msg("%s", err.msg);
    assert_int_equal(qm_checkpoint_count(ck), 3);
    const qm_tensor_ref *r = qm_checkpoint_find(ck, "a.weight");
    assert_non_null(r);
    assert_int_equal(r->dtype, QM_DT_F32);
    assert_int_equal(r->ndim, 2);
    assert_int_equal(r->shape[0], 2);
    assert_int_equal(r->shape[1], 3);
    assert_int_equal(r->nbytes, sizeof a);
    assert_memory_equal(r->data, a, sizeof a);
    assert_int_equal((uintptr_t)r->data % 4, 0);
    assert_non_null(strstr(r->file, "model.safetensors"));
    r = qm_checkpoint_find(ck, "b");
    assert_non_null(r);
    assert_memory_equal(r->data, b, sizeof b);
    assert_true(qm_load_f32(r->data, r->dtype, 1) == -1.0f);
    r = qm_checkpoint_find(ck, "h");
    assert_non_null(r);
    assert_true(qm_load_f32(r->data, r->dtype, 0) == 1.0f);
    assert_true(qm_load_f32(r->data, r->dtype, 1) == -2.0f);
    assert_null(qm_checkpoint_find(ck, "nope"));
    for (int i = 0; i < 3; i++) assert_non_null(qm_checkpoint_at(ck, i));
    assert_null(qm_checkpoint_at(ck, 3));

    /* the header is padded with spaces so that the data starts at a multiple of 8 */
    FILE *fp = fopen(path_in(f, "model.safetensors"), "rb");
    unsigned char len8[8];
    assert_int_equal(fread(len8, 1, 8, fp), 8);
    fclose(fp);
    assert_int_equal(len8[0] % 8, 0);

    const qm_tensor_ref *out;
    int64_t good[2] = {2, 3}, bad[2] = {3, 2};
    assert_int_equal(qm_checkpoint_expect(ck, "a.weight", 2, good, &out, &err), QM_OK);
    assert_ptr_equal(out, qm_checkpoint_find(ck, "a.weight"));
    st = qm_checkpoint_expect(ck, "a.weight", 2, bad, &out, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "a.weight", "model.safetensors");
    expect_error(st, QM_ERR_FORMAT, &err, "[2, 3]", "[3, 2]");
    st = qm_checkpoint_expect(ck, "a.weight", 1, bad, &out, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "a.weight", "[3]");
    st = qm_checkpoint_expect(ck, "lm_head.weight", 2, good, &out, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "lm_head.weight", "missing");
    assert_null(out);
    qm_checkpoint_close(ck);
}

/* ---- malformed files ---- */

static void test_missing_empty_truncated(void **state) {
    fixture *f = *state;
    qm_error err = {0};
    const char *p = path_in(f, "absent.safetensors");
    expect_error(open_file(p, &err), QM_ERR_IO, &err, "absent.safetensors", NULL);

    p = path_in(f, "empty.safetensors");
    write_bytes(p, "", 0);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "empty.safetensors", "empty");

    p = path_in(f, "short.safetensors");
    write_bytes(p, "\x05\x00\x00", 3);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "short.safetensors", "truncated");

    p = path_in(f, "longhdr.safetensors");
    unsigned char b[16] = {0xe8, 0x03, 0, 0, 0, 0, 0, 0, '{', '}'}; /* header length 1000 in a 16-byte file */
    write_bytes(p, b, sizeof b);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "longhdr.safetensors", "header length 1000");

    /* the format caps the header at 100,000,000 bytes; the cap is checked before the file's size,
     * so a larger length gets the cap's message even in a small file */
    p = path_in(f, "huge.safetensors");
    memset(b, 0xff, 8);
    write_bytes(p, b, sizeof b);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "huge.safetensors", "limit of 100000000 bytes");

    p = path_in(f, "cap.safetensors");
    const uint64_t over = 100000001;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(over >> (8 * i));
    write_bytes(p, b, sizeof b);
    qm_status st = open_file(p, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "cap.safetensors", "header length 100000001");
    expect_error(st, QM_ERR_FORMAT, &err, "limit of 100000000 bytes", NULL);

    p = path_in(f, "atcap.safetensors"); /* exactly the cap is allowed: this one fails only on the size */
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((over - 1) >> (8 * i));
    write_bytes(p, b, sizeof b);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "header length 100000000", "past the end");

    p = path_in(f, "notjson.safetensors");
    write_st(p, "{\"w\": {\"dtype\": ", 0);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "notjson.safetensors", "JSON");

    p = path_in(f, "array.safetensors");
    write_st(p, "[1, 2]", 0);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "array.safetensors", "JSON");
}

static void test_bad_dtype(void **state) {
    fixture *f = *state;
    qm_error err = {0};
    const char *p = path_in(f, "i8.safetensors");
    write_st(p, "{\"__metadata__\": {\"format\": \"pt\"}, \"model.q\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", 4);
    qm_status st = open_file(p, &err);
    expect_error(st, QM_ERR_UNSUPPORTED, &err, "i8.safetensors", "model.q");
    expect_error(st, QM_ERR_UNSUPPORTED, &err, "I8", "F32, F16, BF16");

    p = path_in(f, "f64.safetensors");
    write_st(p, "{\"x.weight\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8);
    st = open_file(p, &err);
    expect_error(st, QM_ERR_UNSUPPORTED, &err, "f64.safetensors", "x.weight");
    expect_error(st, QM_ERR_UNSUPPORTED, &err, "F64", "F32, F16, BF16");

    p = path_in(f, "nodtype.safetensors");
    write_st(p, "{\"x.weight\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "nodtype.safetensors", "x.weight");

    p = path_in(f, "badshape.safetensors");
    write_st(p, "{\"x.weight\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "badshape.safetensors", "x.weight");
}

static void test_bad_offsets(void **state) {
    fixture *f = *state;
    qm_error err = {0};
    const char *p = path_in(f, "past.safetensors");
    write_st(p, "{\"w.a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                "\"w.b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 16);
    qm_status st = open_file(p, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "past.safetensors", "\"w.b\"");
    expect_error(st, QM_ERR_FORMAT, &err, "[8, 24]", "16 bytes");

    p = path_in(f, "backward.safetensors");
    write_st(p, "{\"w.c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 16);
    st = open_file(p, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "backward.safetensors", "w.c");

    p = path_in(f, "size.safetensors");
    write_st(p, "{\"w.d\": {\"dtype\": \"BF16\", \"shape\": [3, 2], \"data_offsets\": [0, 8]}}", 16);
    st = open_file(p, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "size.safetensors", "w.d");
    expect_error(st, QM_ERR_FORMAT, &err, "[3, 2]", "needs 12");

    p = path_in(f, "offs.safetensors");
    write_st(p, "{\"w.e\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 16);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "offs.safetensors", "w.e");

    p = path_in(f, "twice.safetensors");
    write_st(p, "{\"w.f\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                "\"w.f\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "twice.safetensors", "w.f");

    p = path_in(f, "misaligned.safetensors");
    write_st(p, "{\"w.g\": {\"dtype\": \"BF16\", \"shape\": [1], \"data_offsets\": [0, 2]}, "
                "\"w.h\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [2, 6]}}", 8);
    expect_error(open_file(p, &err), QM_ERR_FORMAT, &err, "misaligned.safetensors", "w.h");

    /* a valid file: a scalar and an empty tensor are fine */
    p = path_in(f, "ok.safetensors");
    write_st(p, "{\"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}, "
                "\"z\": {\"dtype\": \"F16\", \"shape\": [0, 3], \"data_offsets\": [4, 4]}}", 4);
    st = open_file(p, &err);
    if (st) fail_msg("%s", err.msg);
}

/* Two tensors of a file may not share bytes. */
static void test_overlapping_tensors(void **state) {
    fixture *f = *state;
    qm_error err = {0};
    const char *p = path_in(f, "overlap.safetensors");
    write_st(p, "{\"w.a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                "\"w.b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 16);
    qm_status st = open_file(p, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "overlap.safetensors", "overlap");
    expect_error(st, QM_ERR_FORMAT, &err, "\"w.a\" (data_offsets [0, 8])", "\"w.b\" ([4, 12])");

    /* exactly the same range, listed in reverse order of offsets after a third tensor */
    p = path_in(f, "same.safetensors");
    write_st(p, "{\"w.z\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}, "
                "\"w.c\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                "\"w.d\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]}}", 16);
    st = open_file(p, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "same.safetensors", "overlap");
    expect_error(st, QM_ERR_FORMAT, &err, "\"w.c\"", "\"w.d\"");
    expect_error(st, QM_ERR_FORMAT, &err, "[0, 8]", NULL);

    /* a small tensor inside a large one */
    p = path_in(f, "inside.safetensors");
    write_st(p, "{\"w.big\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
                "\"w.mid\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 16);
    st = open_file(p, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "\"w.big\"", "\"w.mid\"");

    /* touching ranges and an empty tensor at a boundary (or inside another) share no bytes */
    p = path_in(f, "touch.safetensors");
    write_st(p, "{\"w.e\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}, "
                "\"w.f\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                "\"w.g\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]}, "
                "\"w.h\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}", 16);
    st = open_file(p, &err);
    if (st) fail_msg("%s", err.msg);
}

/* ---- folders and shards ---- */

static void write_shard(const fixture *f, const char *file, const char *const *names, int n) {
    static const float data[4] = {1, 2, 3, 4};
    qm_tensor_out t[8];
    for (int i = 0; i < n; i++)
        t[i] = (qm_tensor_out){.name = names[i], .dtype = QM_DT_F32, .ndim = 1, .shape = {4}, .data = data};
    qm_error err = {0};
    if (qm_safetensors_write(path_in(f, file), t, n, &err)) fail_msg("%s", err.msg);
}

static void write_index(const fixture *f, const char *const *names, const char *const *files, int n) {
    qm_error err = {0};
    if (qm_safetensors_write_index(path_in(f, "model.safetensors.index.json"), names, files, n, 16u * (uint64_t)n,
                                   &err))
        fail_msg("%s", err.msg);
}

static void test_folder_errors(void **state) {
    fixture *f = *state;
    qm_error err = {0};
    qm_status st = open_dir(f->dir, &err);
    expect_error(st, QM_ERR_IO, &err, f->dir, "model.safetensors.index.json");
    expect_error(open_dir(path_in(f, "nowhere"), &err), QM_ERR_IO, &err, "nowhere", NULL);
}

static void test_sharded(void **state) {
    fixture *f = *state;
    const char *n1[] = {"x.a", "x.b"}, *n2[] = {"x.c"};
    write_shard(f, "model-00001-of-00002.safetensors", n1, 2);
    write_shard(f, "model-00002-of-00002.safetensors", n2, 1);
    const char *names[] = {"x.a", "x.b", "x.c"};
    const char *files[] = {"model-00001-of-00002.safetensors", "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors"};
    write_index(f, names, files, 3);
    qm_error err = {0};
    qm_checkpoint *ck;
    if (qm_checkpoint_open(f->dir, &ck, &err)) fail_msg("%s", err.msg);
    assert_int_equal(qm_checkpoint_count(ck), 3);
    const qm_tensor_ref *r = qm_checkpoint_find(ck, "x.c");
    assert_non_null(r);
    assert_non_null(strstr(r->file, "model-00002-of-00002.safetensors"));
    assert_true(((const float *)r->data)[3] == 4.0f);
    int64_t shape[1] = {5};
    qm_status st = qm_checkpoint_expect(ck, "x.c", 1, shape, NULL, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "model-00002-of-00002.safetensors", "x.c");
    qm_checkpoint_close(ck);

    /* the index names a shard that is not there */
    const char *files_missing[] = {"model-00001-of-00002.safetensors", "model-00001-of-00002.safetensors",
                                   "model-00003-of-00002.safetensors"};
    write_index(f, names, files_missing, 3);
    st = open_dir(f->dir, &err);
    expect_error(st, QM_ERR_IO, &err, "model-00003-of-00002.safetensors", "x.c");
    expect_error(st, QM_ERR_IO, &err, "model.safetensors.index.json", NULL);

    /* the index puts a tensor in the wrong shard */
    const char *files_wrong[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                 "model-00002-of-00002.safetensors"};
    write_index(f, names, files_wrong, 3);
    st = open_dir(f->dir, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "x.b", "model-00002-of-00002.safetensors");

    /* the index names a tensor no shard has */
    const char *names_extra[] = {"x.a", "x.b", "x.c", "x.ghost"};
    const char *files_extra[] = {files[0], files[1], files[2], "model-00002-of-00002.safetensors"};
    write_index(f, names_extra, files_extra, 4);
    st = open_dir(f->dir, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "x.ghost", "model-00002-of-00002.safetensors");

    /* the same tensor in two shards */
    const char *n2dup[] = {"x.c", "x.b"};
    write_shard(f, "model-00002-of-00002.safetensors", n2dup, 2);
    write_index(f, names, files, 3);
    st = open_dir(f->dir, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "x.b", "model-00002-of-00002.safetensors");
    expect_error(st, QM_ERR_FORMAT, &err, "model-00001-of-00002.safetensors", "two shards");

    /* an index that is not JSON */
    write_bytes(path_in(f, "model.safetensors.index.json"), "{weight_map", 11);
    st = open_dir(f->dir, &err);
    expect_error(st, QM_ERR_FORMAT, &err, "model.safetensors.index.json", "JSON");
}

/* ---- streaming writer ---- */

static void test_stream_writer(void **state) {
    fixture *f = *state;
    float v[10];
    for (int i = 0; i < 10; i++) v[i] = (float)i;
    qm_tensor_out t[2] = {
        {.name = "p", .dtype = QM_DT_F32, .ndim = 2, .shape = {2, 3}},
        {.name = "q", .dtype = QM_DT_F32, .ndim = 1, .shape = {4}},
    };
    qm_error err = {0};
    qm_st_writer *w;
    const char *p = path_in(f, "stream.safetensors");
    assert_int_equal(qm_st_writer_open(p, t, 2, &w, &err), QM_OK);
    assert_int_equal(qm_st_writer_write(w, v, 12, &err), QM_OK);
    assert_int_equal(qm_st_writer_write(w, v + 3, 28, &err), QM_OK);
    assert_int_equal(qm_st_writer_close(w, true, &err), QM_OK);
    qm_checkpoint *ck;
    if (qm_checkpoint_open_file(p, &ck, &err)) fail_msg("%s", err.msg);
    assert_memory_equal(qm_checkpoint_find(ck, "q")->data, v + 6, 16);
    qm_checkpoint_close(ck);

    /* too few bytes: nothing is left behind */
    const char *p2 = path_in(f, "short_stream.safetensors");
    assert_int_equal(qm_st_writer_open(p2, t, 2, &w, &err), QM_OK);
    assert_int_equal(qm_st_writer_write(w, v, 12, &err), QM_OK);
    expect_error(qm_st_writer_close(w, true, &err), QM_ERR_ARG, &err, "short_stream.safetensors", NULL);
    assert_int_not_equal(access(p2, F_OK), 0);
    /* too many bytes */
    assert_int_equal(qm_st_writer_open(p2, t, 2, &w, &err), QM_OK);
    expect_error(qm_st_writer_write(w, v, 44, &err), QM_ERR_ARG, &err, "short_stream.safetensors", NULL);
    qm_st_writer_close(w, false, NULL);
    /* unwritable place */
    expect_error(qm_st_writer_open("/nonexistent-dir/x.safetensors", t, 2, &w, &err), QM_ERR_IO, &err,
                 "/nonexistent-dir/x.safetensors", NULL);
}

/* ---- npy ---- */

static void test_npy(void **state) {
    fixture *f = *state;
    float v[6] = {1, 2, 3, 4, 5, -6};
    int64_t shape[2] = {2, 3};
    qm_error err = {0};
    const char *p = path_in(f, "x.npy");
    assert_int_equal(qm_npy_write_f32(p, v, 2, shape, &err), QM_OK);
    FILE *fp = fopen(p, "rb");
    unsigned char buf[256];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
    size_t hl = buf[8] | (size_t)buf[9] << 8;
    assert_int_equal((10 + hl) % 64, 0);
    assert_int_equal(n, 10 + hl + sizeof v);
    assert_int_equal(buf[10 + hl - 1], '\n');
    char head[200];
    snprintf(head, sizeof head, "%.*s", (int)hl, (const char *)buf + 10);
    assert_non_null(strstr(head, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
    assert_memory_equal(buf + 10 + hl, v, sizeof v);

    int64_t s1[1] = {6};
    assert_int_equal(qm_npy_write_f32(p, v, 1, s1, &err), QM_OK);
    fp = fopen(p, "rb");
    n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    hl = buf[8] | (size_t)buf[9] << 8;
    snprintf(head, sizeof head, "%.*s", (int)hl, (const char *)buf + 10);
    assert_non_null(strstr(head, "'shape': (6,), }"));
    assert_int_equal(n, 10 + hl + sizeof v);

    expect_error(qm_npy_write_f32("/nonexistent-dir/y.npy", v, 1, s1, &err), QM_ERR_IO, &err, "/nonexistent-dir/y.npy",
                 NULL);
}

/* ---- random-model weights ---- */

static void small_config(qm_config *c) {
    assert_true(qm_random_preset("tiny", c));
    c->vocab_size = 300;
    c->hidden_size = 32;
    c->head_dim = 8;
    c->intermediate_size = 48;
    c->tie_word_embeddings = false;
}

static void test_random_model(void **state) {
    fixture *f = *state;
    qm_config cfg;
    small_config(&cfg);
    qm_error err = {0};
    char d1[600], d3[600];
    snprintf(d1, sizeof d1, "%s/one", f->dir);
    snprintf(d3, sizeof d3, "%s/three", f->dir);
    mkdir(d1, 0755);
    mkdir(d3, 0755);
    qm_random_opts o = {.seed = 7, .dtype = QM_DT_F32, .shards = 1};
    if (qm_random_model_write(&cfg, d1, &o, &err)) fail_msg("%s", err.msg);
    o.shards = 3;
    if (qm_random_model_write(&cfg, d3, &o, &err)) fail_msg("%s", err.msg);

    qm_checkpoint *c1, *c3;
    if (qm_checkpoint_open(d1, &c1, &err)) fail_msg("%s", err.msg);
    if (qm_checkpoint_open(d3, &c3, &err)) fail_msg("%s", err.msg);
    int n = 1 + 12 * cfg.num_hidden_layers + 1 + 1;
    assert_int_equal(qm_checkpoint_count(c1), n);
    assert_int_equal(qm_checkpoint_count(c3), n);
    int64_t emb[2] = {300, 32}, kv[2] = {16, 32}, down[2] = {32, 48}, bias[1] = {32};
    assert_int_equal(qm_checkpoint_expect(c1, "model.embed_tokens.weight", 2, emb, NULL, &err), QM_OK);
    assert_int_equal(qm_checkpoint_expect(c1, "lm_head.weight", 2, emb, NULL, &err), QM_OK);
    assert_int_equal(qm_checkpoint_expect(c1, "model.layers.1.self_attn.v_proj.weight", 2, kv, NULL, &err), QM_OK);
    assert_int_equal(qm_checkpoint_expect(c1, "model.layers.0.self_attn.q_proj.bias", 1, bias, NULL, &err), QM_OK);
    assert_int_equal(qm_checkpoint_expect(c1, "model.layers.0.mlp.down_proj.weight", 2, down, NULL, &err), QM_OK);

    int files_seen = 0;
    const char *last = NULL;
    for (int i = 0; i < n; i++) {
        const qm_tensor_ref *a = qm_checkpoint_at(c1, i), *b = qm_checkpoint_find(c3, a->name);
        assert_non_null(b);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes); /* sharding does not change the values */
        const float *v = a->data;
        for (size_t k = 0; k < a->nbytes / 4; k += 7) assert_true(v[k] == qm_random_value(7, a->name, k));
        if (!last || strcmp(last, b->file)) files_seen++;
        last = b->file;
    }
    assert_int_equal(files_seen, 3);

    /* the spread of the values: matrices ~0.02, norms ~1 */
    const qm_tensor_ref *e = qm_checkpoint_find(c1, "model.embed_tokens.weight");
    const qm_tensor_ref *nw = qm_checkpoint_find(c1, "model.norm.weight");
    double s = 0, s2 = 0, m = (double)(e->nbytes / 4);
    for (size_t k = 0; k < e->nbytes / 4; k++) {
        double x = ((const float *)e->data)[k];
        s += x;
        s2 += x * x;
    }
    double sd = sqrt(s2 / m - (s / m) * (s / m));
    assert_true(sd > 0.018 && sd < 0.022);
    assert_true(fabs(s / m) < 0.002);
    for (int k = 0; k < 32; k++) {
        float x = ((const float *)nw->data)[k];
        assert_true(x > 0.9f && x < 1.1f);
    }
    qm_checkpoint_close(c1);
    qm_checkpoint_close(c3);

    /* config.json comes back equal */
    qm_config back;
    char cp[700];
    snprintf(cp, sizeof cp, "%s/config.json", d3);
    if (qm_config_load(cp, &back, &err)) fail_msg("%s", err.msg);
    assert_int_equal(back.vocab_size, 300);
    assert_int_equal(back.num_key_value_heads, 2);
    assert_false(back.tie_word_embeddings);
    assert_string_equal(back.torch_dtype, "float32");

    /* more shards than tensors */
    o.shards = 1000;
    expect_error(qm_random_model_write(&cfg, d3, &o, &err), QM_ERR_ARG, &err, "1000 shards", NULL);
}

static void test_random_value_determinism(void **state) {
    (void)state;
    assert_true(qm_random_value(1, "a.weight", 5) == qm_random_value(1, "a.weight", 5));
    assert_true(qm_random_value(1, "a.weight", 5) != qm_random_value(2, "a.weight", 5));
    assert_true(qm_random_value(1, "a.weight", 5) != qm_random_value(1, "b.weight", 5));
    assert_true(qm_random_value(1, "a.weight", 5) != qm_random_value(1, "a.weight", 6));
    float lo = 1, hi = -1;
    for (int i = 0; i < 10000; i++) {
        float x = qm_random_value(3, "m.weight", (uint64_t)i);
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    assert_true(lo < -0.05f && hi > 0.05f); /* really spread out */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_empty_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dtype, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_tensors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sharded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_npy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_model, setup, teardown),
        cmocka_unit_test(test_random_value_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
