/* GGUF reading and writing. A round trip through the writer covers every value type, string arrays,
 * tensors of several dtypes and a custom alignment; every malformed input is crafted byte by byte and
 * must give the right status and a message naming the file and the key or tensor. The real Qwen2.5
 * 0.5B GGUF is checked when models/ has it. */
#include <float.h>
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

#include "io/gguf.h"

#define NAME "t.gguf"

/* ---- a byte builder for crafted files ---- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf;

static void b_put(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void b_le(buf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)(v >> (8 * i));
        b_put(b, &c, 1);
    }
}
static void b_u32(buf *b, uint32_t v) { b_le(b, v, 4); }
static void b_u64(buf *b, uint64_t v) { b_le(b, v, 8); }
static void b_strn(buf *b, const char *s, size_t n) {
    b_u64(b, n);
    b_put(b, s, n);
}
static void b_str(buf *b, const char *s) { b_strn(b, s, strlen(s)); }
static void b_header(buf *b, uint32_t version, uint64_t n_t, uint64_t n_kv) {
    b_put(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_t);
    b_u64(b, n_kv);
}
static void b_kv_u32(buf *b, const char *key, uint32_t v) {
    b_str(b, key);
    b_u32(b, QM_GGUF_UINT32);
    b_u32(b, v);
}
static void b_zeros(buf *b, size_t n) {
    for (size_t i = 0; i < n; i++) b_put(b, "", 1);
}
static void b_pad(buf *b, size_t a) { b_zeros(b, (a - b->n % a) % a); }

typedef struct {
    const char *name;
    uint32_t ndim;
    uint64_t ne[5];
    uint32_t type;
    uint64_t offset;
} tspec;

static void b_tensor(buf *b, const tspec *t) {
    b_str(b, t->name);
    b_u32(b, t->ndim);
    for (uint32_t d = 0; d < t->ndim && d < 5; d++) b_u64(b, t->ne[d]);
    b_u32(b, t->type);
    b_u64(b, t->offset);
}

/* A version 3 file with one kv ("a" = 1) and the given tensors, then data_bytes of data. */
static buf tensor_file(const tspec *ts, int n, size_t data_bytes) {
    buf b = {0};
    b_header(&b, 3, (uint64_t)n, 1);
    b_kv_u32(&b, "a", 1);
    for (int i = 0; i < n; i++) b_tensor(&b, &ts[i]);
    b_pad(&b, 32);
    b_zeros(&b, data_bytes);
    return b;
}

/* Opening b must fail with status st and a message containing the file name and every phrase given. */
static void expect_fail_v(const buf *b, qm_status st, va_list ap) {
    qm_gguf *g = NULL;
    qm_error err = {0};
    qm_status got = qm_gguf_open_mem(b->p, b->n, NAME, &g, &err);
    if (got != st) print_error("expected %s, got %s: %s\n", qm_status_name(st), qm_status_name(got), err.msg);
    assert_int_equal(got, st);
    assert_null(g);
    assert_non_null(strstr(err.msg, NAME));
    for (const char *ph; (ph = va_arg(ap, const char *));) {
        if (!strstr(err.msg, ph)) print_error("message lacks \"%s\": %s\n", ph, err.msg);
        assert_non_null(strstr(err.msg, ph));
    }
}

static void expect_fail(buf *b, qm_status st, ...) {
    va_list ap;
    va_start(ap, st);
    expect_fail_v(b, st, ap);
    va_end(ap);
    free(b->p);
}

static qm_gguf *open_ok(const buf *b) {
    qm_gguf *g = NULL;
    qm_error err = {0};
    qm_status st = qm_gguf_open_mem(b->p, b->n, NAME, &g, &err);
    if (st) print_error("%s\n", err.msg);
    assert_int_equal(st, QM_OK);
    return g;
}

/* ---- the round trip ---- */

typedef struct {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/qm_test_gguf_XXXXXX");
    if (!f || !mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/m.gguf", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static const tspec rt_tensors[] = {
    {"a.f32", 2, {3, 2}, 0, 0},       {"b.f16", 1, {5}, 1, 0},         {"c.q4_0", 2, {64, 2}, 2, 0},
    {"d.q8_0", 1, {32}, 8, 0},        {"e.q4_k", 4, {256, 1, 1, 2}, 12, 0}, {"f.q6_k", 1, {256}, 14, 0},
    {"g.bf16", 3, {7, 1, 2}, 30, 0},  {"h.q5_0", 1, {32}, 6, 0},
};
#define N_RT ((int)(sizeof rt_tensors / sizeof rt_tensors[0]))
static const char *const rt_strs[] = {"!", "", "h\xc3\xa9llo", "a b"};

static size_t rt_bytes(const tspec *t) {
    qm_dtype dt;
    assert_true(qm_gguf_dtype_from_ggml(t->type, &dt));
    size_t n = 1;
    for (uint32_t d = 0; d < t->ndim; d++) n *= t->ne[d];
    return n / (size_t)qm_dtype_block(dt) * qm_dtype_block_bytes(dt);
}

static void add_all_scalars(qm_gguf_writer *w) {
    uint8_t u8 = 255; int8_t i8 = -128; uint16_t u16 = 65535; int16_t i16 = -32768;
    uint32_t u32 = 4000000000u; int32_t i32 = INT32_MIN; float f32 = 1.5f; bool bo = true;
    uint64_t u64 = UINT64_MAX; int64_t i64 = INT64_MIN; double f64 = 1e300;
    const void *vals[] = {&u8, &i8, &u16, &i16, &u32, &i32, &f32, &bo, NULL, NULL, &u64, &i64, &f64};
    char key[32];
    for (int t = 0; t <= QM_GGUF_FLOAT64; t++) {
        if (!vals[t]) continue;
        snprintf(key, sizeof key, "s.%s", qm_gguf_type_name((qm_gguf_type)t));
        assert_int_equal(qm_gguf_add_value(w, key, (qm_gguf_type)t, vals[t], NULL), QM_OK);
    }
}

static void add_all_arrays(qm_gguf_writer *w) {
    /* three elements of each fixed type: bytes 0x01.. for integers, exact floats */
    unsigned char raw[24];
    for (int i = 0; i < 24; i++) raw[i] = (unsigned char)(0x81 + i);
    float fl[3] = {0.5f, -2.0f, 3.25f};
    double db[3] = {0.5, -2.0, 1e-300};
    unsigned char bo[3] = {1, 0, 1};
    char key[32];
    for (int t = 0; t <= QM_GGUF_FLOAT64; t++) {
        size_t es = qm_gguf_type_size((qm_gguf_type)t);
        if (!es) continue;
        const void *p = t == QM_GGUF_FLOAT32 ? (const void *)fl : t == QM_GGUF_FLOAT64 ? (const void *)db
                        : t == QM_GGUF_BOOL ? (const void *)bo : (const void *)raw;
        snprintf(key, sizeof key, "a.%s", qm_gguf_type_name((qm_gguf_type)t));
        assert_int_equal(qm_gguf_add_array(w, key, (qm_gguf_type)t, p, 3, NULL), QM_OK);
    }
    assert_int_equal(qm_gguf_add_array(w, "a.empty", QM_GGUF_UINT8, NULL, 0, NULL), QM_OK);
    assert_int_equal(qm_gguf_add_string_array(w, "a.strs", rt_strs, 4, NULL), QM_OK);
    assert_int_equal(qm_gguf_add_string_array(w, "a.nostrs", NULL, 0, NULL), QM_OK);
}

static void write_rt_file(const char *path, unsigned char **data, size_t *total) {
    qm_error err = {0};
    qm_gguf_writer *w;
    assert_int_equal(qm_gguf_writer_open(path, &w, &err), QM_OK);
    assert_int_equal(qm_gguf_add_string(w, "general.architecture", "qwen2", &err), QM_OK);
    assert_int_equal(qm_gguf_add_u32(w, "general.alignment", 64, &err), QM_OK);
    assert_int_equal(qm_gguf_add_u32(w, "c.u32", 7, &err), QM_OK);
    assert_int_equal(qm_gguf_add_i32(w, "c.i32", -7, &err), QM_OK);
    assert_int_equal(qm_gguf_add_f32(w, "c.f32", 0.25f, &err), QM_OK);
    assert_int_equal(qm_gguf_add_bool(w, "c.bool", false, &err), QM_OK);
    assert_int_equal(qm_gguf_add_string(w, "c.empty", "", &err), QM_OK);
    add_all_scalars(w);
    add_all_arrays(w);
    *total = 0;
    for (int i = 0; i < N_RT; i++) {
        const tspec *t = &rt_tensors[i];
        int64_t ne[4];
        for (uint32_t d = 0; d < t->ndim; d++) ne[d] = (int64_t)t->ne[d];
        qm_dtype dt;
        assert_true(qm_gguf_dtype_from_ggml(t->type, &dt));
        assert_int_equal(qm_gguf_add_tensor(w, t->name, dt, (int)t->ndim, ne, &err), QM_OK);
        *total += rt_bytes(t);
    }
    *data = malloc(*total);
    for (size_t i = 0; i < *total; i++) (*data)[i] = (unsigned char)(i * 31 + 7);
    for (size_t i = 0; i < *total; i += 7) /* pieces that straddle tensors */
        assert_int_equal(qm_gguf_write_tensor_data(w, *data + i, *total - i < 7 ? *total - i : 7, &err), QM_OK);
    qm_status st = qm_gguf_writer_close(w, true, &err);
    if (st) print_error("%s\n", err.msg);
    assert_int_equal(st, QM_OK);
}

static void check_rt_scalars(const qm_gguf *g) {
    int64_t i;
    double f;
    bool b;
    char *s;
    assert_int_equal(qm_gguf_get_int(g, "s.UINT8", true, &i, NULL), QM_OK);
    assert_int_equal(i, 255);
    assert_int_equal(qm_gguf_get_int(g, "s.INT8", true, &i, NULL), QM_OK);
    assert_int_equal(i, -128);
    assert_int_equal(qm_gguf_get_int(g, "s.UINT16", true, &i, NULL), QM_OK);
    assert_int_equal(i, 65535);
    assert_int_equal(qm_gguf_get_int(g, "s.INT16", true, &i, NULL), QM_OK);
    assert_int_equal(i, -32768);
    assert_int_equal(qm_gguf_get_int(g, "s.UINT32", true, &i, NULL), QM_OK);
    assert_int_equal(i, 4000000000LL);
    assert_int_equal(qm_gguf_get_int(g, "s.INT32", true, &i, NULL), QM_OK);
    assert_int_equal(i, INT32_MIN);
    assert_int_equal(qm_gguf_get_int(g, "s.INT64", true, &i, NULL), QM_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(qm_gguf_find(g, "s.UINT64")->v.u, UINT64_MAX);
    assert_int_equal(qm_gguf_get_float(g, "s.FLOAT32", true, &f, NULL), QM_OK);
    assert_true(f == 1.5);
    assert_int_equal(qm_gguf_get_float(g, "s.FLOAT64", true, &f, NULL), QM_OK);
    assert_true(f == 1e300);
    assert_int_equal(qm_gguf_get_bool(g, "s.BOOL", true, &b, NULL), QM_OK);
    assert_true(b);
    assert_int_equal(qm_gguf_get_int(g, "c.u32", true, &i, NULL), QM_OK);
    assert_int_equal(i, 7);
    assert_int_equal(qm_gguf_get_int(g, "c.i32", true, &i, NULL), QM_OK);
    assert_int_equal(i, -7);
    assert_int_equal(qm_gguf_get_float(g, "c.f32", true, &f, NULL), QM_OK);
    assert_true(f == 0.25);
    assert_int_equal(qm_gguf_get_bool(g, "c.bool", true, &b, NULL), QM_OK);
    assert_false(b);
    assert_int_equal(qm_gguf_get_string(g, "general.architecture", true, &s, NULL), QM_OK);
    assert_string_equal(s, "qwen2");
    free(s);
    assert_int_equal(qm_gguf_get_string(g, "c.empty", true, &s, NULL), QM_OK);
    assert_string_equal(s, "");
    free(s);
}

static void check_rt_arrays(const qm_gguf *g) {
    const qm_gguf_kv *kv;
    assert_int_equal(qm_gguf_get_array(g, "a.UINT8", QM_GGUF_UINT8, true, &kv, NULL), QM_OK);
    assert_int_equal(qm_gguf_array_int(kv, 2), 0x83);
    assert_int_equal(qm_gguf_get_int_array(g, "a.INT8", true, &kv, NULL), QM_OK);
    assert_int_equal(qm_gguf_array_int(kv, 0), (int8_t)0x81);
    assert_int_equal(qm_gguf_get_int_array(g, "a.UINT16", true, &kv, NULL), QM_OK);
    assert_int_equal(qm_gguf_array_int(kv, 1), 0x8483);
    assert_int_equal(qm_gguf_get_int_array(g, "a.INT16", true, &kv, NULL), QM_OK);
    assert_int_equal(qm_gguf_array_int(kv, 0), (int16_t)0x8281);
    assert_int_equal(qm_gguf_get_int_array(g, "a.INT32", true, &kv, NULL), QM_OK);
    assert_int_equal(qm_gguf_array_int(kv, 0), (int32_t)0x84838281);
    assert_int_equal(qm_gguf_get_int_array(g, "a.UINT32", true, &kv, NULL), QM_OK);
    assert_int_equal(qm_gguf_array_int(kv, 2), 0x8c8b8a89);
    assert_int_equal(qm_gguf_get_int_array(g, "a.INT64", true, &kv, NULL), QM_OK);
    assert_true(qm_gguf_array_int(kv, 0) == (int64_t)0x8887868584838281ull);
    assert_int_equal(qm_gguf_array_int(kv, 3), 0); /* past the end */
    assert_int_equal(qm_gguf_get_array(g, "a.FLOAT32", QM_GGUF_FLOAT32, true, &kv, NULL), QM_OK);
    assert_true(qm_gguf_array_float(kv, 2) == 3.25);
    assert_int_equal(qm_gguf_get_array(g, "a.FLOAT64", QM_GGUF_FLOAT64, true, &kv, NULL), QM_OK);
    assert_true(qm_gguf_array_float(kv, 2) == 1e-300);
    assert_int_equal(qm_gguf_get_array(g, "a.BOOL", QM_GGUF_BOOL, true, &kv, NULL), QM_OK);
    assert_int_equal(((const unsigned char *)kv->elems)[1], 0);
    assert_int_equal(qm_gguf_get_array(g, "a.empty", QM_GGUF_UINT8, true, &kv, NULL), QM_OK);
    assert_int_equal(kv->count, 0);
    assert_int_equal(qm_gguf_get_array(g, "a.strs", QM_GGUF_STRING, true, &kv, NULL), QM_OK);
    assert_int_equal(kv->count, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(kv->strs[i].len, strlen(rt_strs[i]));
        if (kv->strs[i].len) assert_memory_equal(kv->strs[i].ptr, rt_strs[i], kv->strs[i].len);
    }
    assert_int_equal(qm_gguf_get_array(g, "a.nostrs", QM_GGUF_STRING, true, &kv, NULL), QM_OK);
    assert_int_equal(kv->count, 0);
}

static void check_rt_tensors(const qm_gguf *g, const unsigned char *data) {
    assert_int_equal(qm_gguf_tensor_count(g), N_RT);
    size_t pos = 0;
    for (int i = 0; i < N_RT; i++) {
        const tspec *s = &rt_tensors[i];
        const qm_gguf_tensor *t = qm_gguf_tensor_find(g, s->name);
        assert_ptr_equal(t, qm_gguf_tensor_at(g, i));
        assert_string_equal(t->name, s->name);
        assert_int_equal(t->ggml_type, s->type);
        assert_int_equal(qm_gguf_ggml_from_dtype(t->dtype), s->type);
        assert_int_equal(t->ndim, (int)s->ndim);
        for (int d = 0; d < 4; d++) assert_int_equal(t->ne[d], d < t->ndim ? (int64_t)s->ne[d] : 1);
        assert_int_equal(t->nbytes, rt_bytes(s));
        assert_int_equal((qm_gguf_data_offset(g) + t->offset) % 64, 0);
        assert_memory_equal(t->data, data + pos, t->nbytes);
        pos += t->nbytes;
    }
    assert_null(qm_gguf_tensor_find(g, "missing"));
    assert_null(qm_gguf_tensor_at(g, N_RT));
}

static void test_round_trip(void **state) {
    fixture *f = *state;
    unsigned char *data;
    size_t total;
    write_rt_file(f->path, &data, &total);
    qm_gguf *g;
    qm_error err = {0};
    qm_status st = qm_gguf_open(f->path, &g, &err);
    if (st) print_error("%s\n", err.msg);
    assert_int_equal(st, QM_OK);
    assert_int_equal(qm_gguf_version(g), 3);
    assert_int_equal(qm_gguf_alignment(g), 64);
    assert_int_equal(qm_gguf_data_offset(g) % 64, 0);
    assert_string_equal(qm_gguf_path(g), f->path);
    assert_int_equal(qm_gguf_kv_count(g), 7 + 11 + 11 + 3);
    assert_string_equal(qm_gguf_kv_at(g, 0)->key, "general.architecture");
    assert_null(qm_gguf_kv_at(g, qm_gguf_kv_count(g)));
    check_rt_scalars(g);
    check_rt_arrays(g);
    check_rt_tensors(g, data);
    qm_gguf_close(g);
    free(data);
}

/* No tensors, no alignment key: the header alone, padded to 32. */
static void test_round_trip_defaults(void **state) {
    fixture *f = *state;
    qm_gguf_writer *w;
    qm_error err = {0};
    assert_int_equal(qm_gguf_writer_open(f->path, &w, &err), QM_OK);
    assert_int_equal(qm_gguf_add_string(w, "general.name", "x", &err), QM_OK);
    assert_int_equal(qm_gguf_writer_close(w, true, &err), QM_OK);
    qm_gguf *g;
    assert_int_equal(qm_gguf_open(f->path, &g, &err), QM_OK);
    assert_int_equal(qm_gguf_alignment(g), 32);
    assert_int_equal(qm_gguf_tensor_count(g), 0);
    assert_int_equal(qm_gguf_kv_count(g), 1);
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, qm_gguf_data_offset(g));
    assert_int_equal(sb.st_size % 32, 0);
    qm_gguf_close(g);
}

/* Every prefix of a valid file that cuts into the header or the tensor data is refused, as truncated, running
 * past the end, or (cut right after the counts) holding fewer bytes than the counts need. */
static void test_truncated_everywhere(void **state) {
    fixture *f = *state;
    unsigned char *data;
    size_t total;
    write_rt_file(f->path, &data, &total);
    free(data);
    FILE *fp = fopen(f->path, "rb");
    assert_non_null(fp);
    buf full = {0};
    unsigned char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) b_put(&full, chunk, n);
    fclose(fp);
    qm_gguf *g = open_ok(&full);
    const qm_gguf_tensor *last = qm_gguf_tensor_at(g, N_RT - 1);
    size_t end = (size_t)(qm_gguf_data_offset(g) + last->offset + last->nbytes);
    qm_gguf_close(g);
    for (size_t len = 0; len < end; len++) {
        qm_error err = {0};
        qm_status st = qm_gguf_open_mem(full.p, len, NAME, &g, &err);
        assert_int_equal(st, QM_ERR_FORMAT);
        assert_null(g);
        bool named = strstr(err.msg, "truncated") || strstr(err.msg, "past the end") || strstr(err.msg, "can hold");
        if (!named) print_error("%zu: %s\n", len, err.msg);
        assert_true(named);
    }
    free(full.p);
}

/* ---- the writer ---- */

static void test_writer_abort_leaves_nothing(void **state) {
    fixture *f = *state;
    qm_gguf_writer *w;
    assert_int_equal(qm_gguf_writer_open(f->path, &w, NULL), QM_OK);
    int64_t ne[1] = {32};
    assert_int_equal(qm_gguf_add_tensor(w, "x", QM_DT_F32, 1, ne, NULL), QM_OK);
    float v[32] = {0};
    assert_int_equal(qm_gguf_write_tensor_data(w, v, sizeof v, NULL), QM_OK);
    assert_int_equal(qm_gguf_writer_close(w, false, NULL), QM_OK);
    assert_int_equal(access(f->path, F_OK), -1);
    assert_int_equal(rmdir(f->dir), 0); /* empty: the temporary file is gone too */
    assert_int_equal(mkdir(f->dir, 0700), 0);
}

static void test_writer_misuse(void **state) {
    fixture *f = *state;
    qm_gguf_writer *w;
    qm_error err = {0};
    int64_t ne[2] = {31, 2}, ok[1] = {64};
    assert_int_equal(qm_gguf_writer_open(f->path, &w, &err), QM_OK);
    assert_int_equal(qm_gguf_add_u32(w, "k", 1, &err), QM_OK);
    assert_int_equal(qm_gguf_add_i32(w, "k", 1, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "duplicate key \"k\""));
    assert_int_equal(qm_gguf_add_u32(w, "general.alignment", 48, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "power of two"));
    assert_int_equal(qm_gguf_add_i32(w, "general.alignment", 64, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "UINT32"));
    assert_int_equal(qm_gguf_add_tensor(w, "q", QM_DT_Q4_0, 2, ne, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "tensor \"q\": ne[0] = 31 is not a multiple"));
    assert_int_equal(qm_gguf_add_tensor(w, "q", QM_DT_Q4_0, 1, ok, &err), QM_OK);
    assert_int_equal(qm_gguf_add_tensor(w, "q", QM_DT_F32, 1, ok, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "duplicate tensor name \"q\""));
    unsigned char d[36] = {0};
    assert_int_equal(qm_gguf_write_tensor_data(w, d, 10, &err), QM_OK);
    assert_int_equal(qm_gguf_add_u32(w, "late", 1, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "after the tensor data began"));
    assert_int_equal(qm_gguf_writer_close(w, true, &err), QM_ERR_ARG); /* 10 of 36 bytes */
    assert_non_null(strstr(err.msg, "tensor \"q\" got 10 of its 36 bytes"));
    assert_int_equal(access(f->path, F_OK), -1);

    assert_int_equal(qm_gguf_writer_open(f->path, &w, &err), QM_OK);
    assert_int_equal(qm_gguf_add_tensor(w, "q", QM_DT_Q4_0, 1, ok, &err), QM_OK);
    assert_int_equal(qm_gguf_write_tensor_data(w, d, 36, &err), QM_OK);
    assert_int_equal(qm_gguf_write_tensor_data(w, d, 1, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "beyond the 1 declared tensors"));
    assert_int_equal(qm_gguf_writer_close(w, true, &err), QM_ERR_ARG);
    assert_non_null(strstr(err.msg, "failed earlier"));
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_writer_bad_path(void **state) {
    (void)state;
    qm_gguf_writer *w;
    qm_error err = {0};
    assert_int_equal(qm_gguf_writer_open("/nonexistent-dir/x.gguf", &w, &err), QM_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.gguf"));
    qm_gguf *g;
    assert_int_equal(qm_gguf_open("/nonexistent-dir/x.gguf", &g, &err), QM_ERR_IO);
    assert_non_null(strstr(err.msg, "cannot open GGUF file /nonexistent-dir/x.gguf"));
    assert_int_equal(qm_gguf_open("/tmp", &g, &err), QM_ERR_IO);
    assert_non_null(strstr(err.msg, "GGUF file /tmp is not a regular file"));
}

/* ---- the header ---- */

static void test_version_2(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 2, 0, 1);
    b_kv_u32(&b, "a", 5);
    qm_gguf *g = open_ok(&b);
    assert_int_equal(qm_gguf_version(g), 2);
    assert_int_equal(qm_gguf_find(g, "a")->v.u, 5);
    assert_null(qm_gguf_find(g, "b"));
    qm_gguf_close(g);
    free(b.p);
}

static void test_bad_magic(void **state) {
    (void)state;
    buf b = {0};
    b_put(&b, "GGML", 4);
    b_u32(&b, 3);
    b_u64(&b, 0);
    b_u64(&b, 0);
    expect_fail(&b, QM_ERR_FORMAT, "not a GGUF file", "47 47 4d 4c", NULL);
}

static void test_version_1(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 1, 0, 0);
    expect_fail(&b, QM_ERR_UNSUPPORTED, "GGUF version 1 is not supported", NULL);
}

static void test_version_unknown(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 4, 0, 0);
    expect_fail(&b, QM_ERR_FORMAT, "unknown GGUF version 4", NULL);
    b = (buf){0};
    b_header(&b, 0x03000000u, 0, 0);
    expect_fail(&b, QM_ERR_UNSUPPORTED, "version 3 big-endian", NULL);
}

static void test_truncated_header(void **state) {
    (void)state;
    buf b = {0};
    b_put(&b, "GGUF", 4);
    b_u32(&b, 3);
    b_u32(&b, 0);
    expect_fail(&b, QM_ERR_FORMAT, "header: truncated: the tensor count needs 8 bytes at byte 8, 4 left", NULL);
    b = (buf){0};
    b_put(&b, "GG", 2);
    expect_fail(&b, QM_ERR_FORMAT, "header: truncated: the magic needs 4 bytes at byte 0, 2 left", NULL);
}

static void test_counts_too_large(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1000);
    b_kv_u32(&b, "a", 1);
    expect_fail(&b, QM_ERR_FORMAT, "kv_count 1000 is more than the file's remaining 17 bytes can hold", NULL);
    b = (buf){0};
    b_header(&b, 3, UINT64_MAX, 0);
    expect_fail(&b, QM_ERR_FORMAT, "tensor_count 18446744073709551615 is more than", NULL);
}

/* ---- metadata ---- */

static void test_key_past_end(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_u64(&b, 1000);
    b_put(&b, "abcdefghijklm", 13);
    expect_fail(&b, QM_ERR_FORMAT, "metadata pair 0 of 1: the key (a string of 1000 bytes at byte 32)",
                "runs past the end", NULL);
}

static void test_string_value_past_end(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "name");
    b_u32(&b, QM_GGUF_STRING);
    b_u64(&b, UINT64_MAX);
    b_put(&b, "xy", 2);
    expect_fail(&b, QM_ERR_FORMAT, "key \"name\": the string value", "runs past the end", NULL);
}

static void b_array_head(buf *b, const char *key, uint32_t et, uint64_t count) {
    b_str(b, key);
    b_u32(b, QM_GGUF_ARRAY);
    b_u32(b, et);
    b_u64(b, count);
}

static void test_array_past_end(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_array_head(&b, "arr", QM_GGUF_UINT32, 5);
    b_zeros(&b, 16);
    expect_fail(&b, QM_ERR_FORMAT, "key \"arr\": an array of 5 UINT32 elements (20 bytes)", "runs past the end", NULL);
}

static void test_array_size_overflow(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_array_head(&b, "arr", QM_GGUF_UINT64, (UINT64_C(1) << 61) + 1);
    b_zeros(&b, 16);
    expect_fail(&b, QM_ERR_FORMAT, "key \"arr\": an array of 2305843009213693953 UINT64 elements",
                "the byte size overflows", NULL);
}

static void test_string_array_past_end(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_array_head(&b, "toks", QM_GGUF_STRING, 3);
    b_str(&b, "a");
    b_u64(&b, 50);
    b_put(&b, "bcdefghij", 9);
    expect_fail(&b, QM_ERR_FORMAT, "key \"toks\": string 1 of 3 in the array (50 bytes", "runs past the end", NULL);
    b = (buf){0};
    b_header(&b, 3, 0, 1);
    b_array_head(&b, "toks", QM_GGUF_STRING, 1u << 30);
    b_zeros(&b, 16);
    expect_fail(&b, QM_ERR_FORMAT, "key \"toks\": an array of 1073741824 STRING elements", "past the end", NULL);
}

static void test_unknown_value_type(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "odd");
    b_u32(&b, 13);
    b_zeros(&b, 8);
    expect_fail(&b, QM_ERR_FORMAT, "key \"odd\": unknown value type 13", NULL);
    b = (buf){0};
    b_header(&b, 3, 0, 1);
    b_array_head(&b, "odd", 99, 1);
    b_zeros(&b, 8);
    expect_fail(&b, QM_ERR_FORMAT, "key \"odd\": unknown array element type 99", NULL);
}

/* Arrays of arrays are walked and skipped; what follows them is read. */
static void test_nested_arrays(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 2);
    b_array_head(&b, "nest", QM_GGUF_ARRAY, 3);
    b_u32(&b, QM_GGUF_UINT16); /* [1, 2] */
    b_u64(&b, 2);
    b_zeros(&b, 4);
    b_u32(&b, QM_GGUF_STRING); /* ["xy"] */
    b_u64(&b, 1);
    b_str(&b, "xy");
    b_u32(&b, QM_GGUF_ARRAY); /* [[]] */
    b_u64(&b, 1);
    b_u32(&b, QM_GGUF_INT8);
    b_u64(&b, 0);
    b_kv_u32(&b, "after", 9);
    qm_gguf *g = open_ok(&b);
    const qm_gguf_kv *kv = qm_gguf_find(g, "nest");
    assert_int_equal(kv->elem_type, QM_GGUF_ARRAY);
    assert_int_equal(kv->count, 3);
    assert_null(kv->strs);
    assert_int_equal(qm_gguf_array_int(kv, 0), 0);
    assert_int_equal(qm_gguf_find(g, "after")->v.u, 9);
    qm_gguf_close(g);
    free(b.p);
}

static void test_nested_too_deep(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_array_head(&b, "deep", QM_GGUF_ARRAY, 1);
    for (int i = 0; i < 20; i++) {
        b_u32(&b, QM_GGUF_ARRAY);
        b_u64(&b, 1);
    }
    b_zeros(&b, 12);
    expect_fail(&b, QM_ERR_FORMAT, "key \"deep\": arrays nested more than 8 deep", NULL);
}

static void test_duplicate_key(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 3);
    b_kv_u32(&b, "a", 1);
    b_kv_u32(&b, "b", 1);
    b_kv_u32(&b, "a", 2);
    expect_fail(&b, QM_ERR_FORMAT, "duplicate key \"a\" (metadata pairs 0 and 2)", NULL);
}

static void test_bad_names(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_strn(&b, "ab\0c", 4);
    b_u32(&b, QM_GGUF_UINT8);
    b_zeros(&b, 1);
    expect_fail(&b, QM_ERR_FORMAT, "metadata pair 0 of 1: the key \"ab\" contains a NUL byte", NULL);
    b = (buf){0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "");
    b_u32(&b, QM_GGUF_UINT8);
    b_zeros(&b, 1);
    expect_fail(&b, QM_ERR_FORMAT, "metadata pair 0 of 1: the key is empty", NULL);
    b = (buf){0};
    b_header(&b, 3, 1, 1);
    b_kv_u32(&b, "a", 1);
    b_strn(&b, "w\0x", 3);
    b_u32(&b, 1);
    b_u64(&b, 32);
    b_u32(&b, 0);
    b_u64(&b, 0);
    b_pad(&b, 32);
    b_zeros(&b, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor info 0 of 1: the name \"w\" contains a NUL byte", NULL);
}

static void test_bad_alignment(void **state) {
    (void)state;
    uint32_t bad[] = {0, 48};
    for (int i = 0; i < 2; i++) {
        buf b = {0};
        b_header(&b, 3, 0, 1);
        b_kv_u32(&b, "general.alignment", bad[i]);
        expect_fail(&b, QM_ERR_FORMAT, "\"general.alignment\" is", "expected a nonzero power of two", NULL);
    }
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, QM_GGUF_UINT64);
    b_u64(&b, 64);
    expect_fail(&b, QM_ERR_FORMAT, "\"general.alignment\" is UINT64, expected UINT32", NULL);
}

static void test_bad_bool(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 1);
    b_str(&b, "flag");
    b_u32(&b, QM_GGUF_BOOL);
    b_put(&b, "\x02", 1);
    expect_fail(&b, QM_ERR_FORMAT, "key \"flag\": BOOL value 2", NULL);
}

/* ---- tensors ---- */

static void test_tensor_types(void **state) {
    (void)state;
    buf b = tensor_file(&(tspec){"w", 1, {32}, 99, 0}, 1, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": unknown ggml type 99", NULL);
    b = tensor_file(&(tspec){"w", 1, {256}, 10, 0}, 1, 128);
    expect_fail(&b, QM_ERR_UNSUPPORTED, "tensor \"w\" has ggml type Q2_K (10)", NULL);
    b = tensor_file(&(tspec){"w", 1, {256}, 23, 0}, 1, 256);
    expect_fail(&b, QM_ERR_UNSUPPORTED, "tensor \"w\" has ggml type IQ4_XS (23)", NULL);
    assert_string_equal(qm_gguf_ggml_type_name(15), "Q8_K");
    assert_string_equal(qm_gguf_ggml_type_name(29), "IQ1_M");
    assert_string_equal(qm_gguf_ggml_type_name(35), "TQ2_0");
    assert_string_equal(qm_gguf_ggml_type_name(1000), "unknown");
    assert_int_equal(qm_gguf_ggml_from_dtype(QM_DT_BF16), 30);
    assert_int_equal(qm_gguf_ggml_from_dtype(QM_DT_Q5_1), 7);
}

static void test_tensor_dims(void **state) {
    (void)state;
    buf b = tensor_file(&(tspec){"w", 0, {0}, 0, 0}, 1, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": n_dims is 0, expected 1 to 4", NULL);
    b = tensor_file(&(tspec){"w", 5, {1, 1, 1, 1, 1}, 0, 0}, 1, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": n_dims is 5", NULL);
    b = tensor_file(&(tspec){"w", 2, {4, 0}, 0, 0}, 1, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": dimension ne[1] is zero", NULL);
    b = tensor_file(&(tspec){"w", 3, {1u << 31, 1u << 31, 1u << 31}, 0, 0}, 1, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": the element count overflows", NULL);
    b = tensor_file(&(tspec){"w", 1, {UINT64_MAX}, 0, 0}, 1, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": dimension ne[0] = 18446744073709551615 is too large", NULL);
    b = tensor_file(&(tspec){"w", 2, {2, 1ull << 61}, 0, 0}, 1, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": the byte size overflows", NULL);
    b = tensor_file(&(tspec){"w", 2, {48, 2}, 12, 0}, 1, 1024);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": ne[0] = 48 is not a multiple of Q4_K's block of 256", NULL);
}

static void test_tensor_placement(void **state) {
    (void)state;
    buf b = tensor_file(&(tspec){"w", 1, {32}, 0, 0}, 1, 127);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": its 128 bytes at data offset 0 run past the end of the file", NULL);
    b = tensor_file(&(tspec){"w", 1, {32}, 0, UINT64_MAX - 31}, 1, 128);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\"", "run past the end of the file", NULL);
    b = tensor_file(&(tspec){"w", 1, {32}, 0, 16}, 1, 256);
    expect_fail(&b, QM_ERR_FORMAT, "tensor \"w\": data offset 16 is not a multiple of the alignment 32", NULL);
    tspec two[2] = {{"x", 1, {32}, 0, 128}, {"y", 1, {64}, 1, 96}};
    b = tensor_file(two, 2, 512);
    expect_fail(&b, QM_ERR_FORMAT, "tensors \"y\" (bytes 96..224) and \"x\" (from byte 128) overlap", NULL);
    tspec dup[2] = {{"x", 1, {32}, 0, 0}, {"x", 1, {32}, 0, 128}};
    b = tensor_file(dup, 2, 512);
    expect_fail(&b, QM_ERR_FORMAT, "duplicate tensor name \"x\" (tensor infos 0 and 1)", NULL);
    two[1].offset = 0; /* y at 0..128, x at 128..256: valid */
    b = tensor_file(two, 2, 512);
    qm_gguf *g = open_ok(&b);
    assert_int_equal(qm_gguf_tensor_find(g, "y")->nbytes, 128);
    assert_ptr_equal(qm_gguf_tensor_find(g, "x")->data, b.p + qm_gguf_data_offset(g) + 128);
    qm_gguf_close(g);
    free(b.p);
}

/* ---- getters ---- */

static void test_getters(void **state) {
    (void)state;
    buf b = {0};
    b_header(&b, 3, 0, 4);
    b_kv_u32(&b, "u", 3);
    b_str(&b, "big");
    b_u32(&b, QM_GGUF_UINT64);
    b_u64(&b, UINT64_MAX);
    b_str(&b, "nul");
    b_u32(&b, QM_GGUF_STRING);
    b_strn(&b, "a\0b", 3);
    b_array_head(&b, "arr", QM_GGUF_INT16, 1);
    b_zeros(&b, 2);
    qm_gguf *g = open_ok(&b);
    qm_error err = {0};
    int64_t i = 42;
    double d;
    char *s;
    const qm_gguf_kv *kv;
    assert_int_equal(qm_gguf_get_int(g, "missing", false, &i, &err), QM_OK);
    assert_int_equal(i, 42);
    assert_int_equal(qm_gguf_get_int(g, "missing", true, &i, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, NAME ": required key \"missing\" is missing"));
    assert_int_equal(qm_gguf_get_float(g, "u", true, &d, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "key \"u\" is UINT32, expected a float"));
    assert_int_equal(qm_gguf_get_int(g, "big", true, &i, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "key \"big\": value 18446744073709551615 is out of range"));
    assert_int_equal(qm_gguf_get_string(g, "nul", true, &s, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "key \"nul\": the string contains a NUL byte"));
    assert_int_equal(qm_gguf_get_array(g, "arr", QM_GGUF_INT32, true, &kv, &err), QM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "key \"arr\" is an ARRAY of INT16, expected an ARRAY of INT32"));
    assert_null(kv);
    assert_int_equal(qm_gguf_get_array(g, "none", QM_GGUF_INT32, false, &kv, &err), QM_OK);
    assert_null(kv);
    assert_int_equal(qm_gguf_get_int_array(g, "u", true, &kv, &err), QM_ERR_FORMAT);
    assert_int_equal(qm_gguf_get_bool(g, "arr", true, &(bool){0}, &err), QM_ERR_FORMAT);
    qm_gguf_close(g);
    free(b.p);
}

/* ---- the real model ---- */

static void test_qwen_model(void **state) {
    (void)state;
    const char *path = QMESH_SRC_DIR "/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
    if (access(path, R_OK) != 0) {
        print_message("skipped: %s is absent\n", path);
        skip();
    }
    qm_gguf *g;
    qm_error err = {0};
    qm_status st = qm_gguf_open(path, &g, &err);
    if (st) print_error("%s\n", err.msg);
    assert_int_equal(st, QM_OK);
    assert_int_equal(qm_gguf_version(g), 3);
    assert_int_equal(qm_gguf_tensor_count(g), 291);
    assert_int_equal(qm_gguf_kv_count(g), 26);
    int64_t blocks;
    assert_int_equal(qm_gguf_get_int(g, "qwen2.block_count", true, &blocks, &err), QM_OK);
    assert_int_equal(blocks, 24);
    const qm_gguf_tensor *t = qm_gguf_tensor_find(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, QM_DT_Q5_0);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->ne[0], 896);
    assert_int_equal(t->ne[1], 151936);
    const qm_gguf_kv *tok;
    assert_int_equal(qm_gguf_get_array(g, "tokenizer.ggml.tokens", QM_GGUF_STRING, true, &tok, &err), QM_OK);
    assert_int_equal(tok->count, 151936);
    assert_int_equal(tok->strs[0].len, 1);
    assert_memory_equal(tok->strs[0].ptr, "!", 1);
    qm_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_abort_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_misuse, setup, teardown),
        cmocka_unit_test(test_writer_bad_path),
        cmocka_unit_test(test_version_2),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_version_1),
        cmocka_unit_test(test_version_unknown),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_counts_too_large),
        cmocka_unit_test(test_key_past_end),
        cmocka_unit_test(test_string_value_past_end),
        cmocka_unit_test(test_array_past_end),
        cmocka_unit_test(test_array_size_overflow),
        cmocka_unit_test(test_string_array_past_end),
        cmocka_unit_test(test_unknown_value_type),
        cmocka_unit_test(test_nested_arrays),
        cmocka_unit_test(test_nested_too_deep),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_bad_bool),
        cmocka_unit_test(test_tensor_types),
        cmocka_unit_test(test_tensor_dims),
        cmocka_unit_test(test_tensor_placement),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_qwen_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
