/* GGUF writer (version 3): metadata and tensor infos are kept in memory until the first tensor data
 * (or close), then the header is written and the data streamed through, padded between tensors. The
 * file goes to a temporary path.XXXXXX renamed into place on commit (io/fileutil.h). */
#include <stdlib.h>
#include <string.h>

#include "io/fileutil.h"
#include "io/gguf.h"

typedef unsigned long long ull;

typedef struct {
    char *name;
    uint32_t ggml_type;
    int ndim;
    int64_t ne[4];
    uint64_t nbytes, offset; /* offset: from the data section, set when the header is written */
} wtensor;

typedef struct {
    unsigned char *p;
    size_t len, cap;
    bool oom;
} bytes;

struct qm_gguf_writer {
    qm_atomic_file af;
    char *path;
    bytes kv;            /* the metadata pairs, serialized */
    char **keys;         /* for duplicate checks */
    int n_kv, cap_kv;
    wtensor *t;
    int n_t, cap_t;
    uint32_t alignment;
    bool started;        /* the header is written */
    bool failed;         /* an earlier write failed or data was misused: commit is refused */
    int cur;             /* the tensor whose data comes next */
    uint64_t cur_done;   /* bytes of it written */
};

/* ---- byte buffer ---- */

static void put(bytes *b, const void *p, size_t n) {
    if (b->oom || !n) return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_le(bytes *b, uint64_t v, size_t n) {
    unsigned char tmp[8];
    for (size_t i = 0; i < n; i++) tmp[i] = (unsigned char)(v >> (8 * i));
    put(b, tmp, n);
}

static void put_str(bytes *b, const char *s, size_t n) {
    put_le(b, n, 8);
    put(b, s, n);
}

/* ---- metadata ---- */

/* Checks the key, records it and writes it with the value type; the caller writes the value. */
static qm_status begin_kv(qm_gguf_writer *w, const char *key, qm_gguf_type type, qm_error *err) {
    if (!key || !*key) return qm_fail(err, QM_ERR_ARG, "%s: a metadata key is empty", w->path);
    if (w->started)
        return qm_fail(err, QM_ERR_ARG, "%s: key \"%s\" added after the tensor data began", w->path, key);
    for (int i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return qm_fail(err, QM_ERR_ARG, "%s: duplicate key \"%s\"", w->path, key);
    if (!strcmp(key, "general.alignment") && type != QM_GGUF_UINT32)
        return qm_fail(err, QM_ERR_ARG, "%s: key \"general.alignment\" must be UINT32", w->path);
    if (w->n_kv == w->cap_kv) {
        int cap = w->cap_kv ? 2 * w->cap_kv : 32;
        char **k = realloc(w->keys, (size_t)cap * sizeof *k);
        if (!k) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory for key \"%s\"", w->path, key);
        w->keys = k;
        w->cap_kv = cap;
    }
    if (!(w->keys[w->n_kv] = strdup(key)))
        return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory for key \"%s\"", w->path, key);
    w->n_kv++;
    put_str(&w->kv, key, strlen(key));
    put_le(&w->kv, (uint64_t)type, 4);
    return QM_OK;
}

static qm_status end_kv(qm_gguf_writer *w, const char *key, qm_error *err) {
    if (!w->kv.oom) return QM_OK;
    w->failed = true;
    return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory for the metadata (key \"%s\")", w->path, key);
}

static uint64_t scalar_bits(qm_gguf_type type, const void *v) {
    switch (qm_gguf_type_size(type)) {
    case 1: return type == QM_GGUF_BOOL ? (uint64_t)*(const bool *)v : *(const uint8_t *)v;
    case 2: { uint16_t x; memcpy(&x, v, 2); return x; }
    case 4: { uint32_t x; memcpy(&x, v, 4); return x; }
    default: { uint64_t x; memcpy(&x, v, 8); return x; }
    }
}

/* A fixed-size scalar given as its little-endian bits. */
static qm_status add_bits(qm_gguf_writer *w, const char *key, qm_gguf_type type, uint64_t bits, qm_error *err) {
    if (key && type == QM_GGUF_UINT32 && !strcmp(key, "general.alignment") && (bits == 0 || (bits & (bits - 1))))
        return qm_fail(err, QM_ERR_ARG, "%s: key \"general.alignment\" is %llu, expected a nonzero power of two",
                       w->path, (ull)bits);
    qm_status st = begin_kv(w, key, type, err);
    if (st) return st;
    put_le(&w->kv, bits, qm_gguf_type_size(type));
    if (!strcmp(key, "general.alignment")) w->alignment = (uint32_t)bits;
    return end_kv(w, key, err);
}

qm_status qm_gguf_add_value(qm_gguf_writer *w, const char *key, qm_gguf_type type, const void *v, qm_error *err) {
    if (!qm_gguf_type_size(type) || !v)
        return qm_fail(err, QM_ERR_ARG, "%s: key \"%s\": %s is not a fixed-size value type (or the value is NULL)",
                       w->path, key ? key : "", qm_gguf_type_name(type));
    return add_bits(w, key, type, scalar_bits(type, v), err);
}

qm_status qm_gguf_add_u32(qm_gguf_writer *w, const char *key, uint32_t v, qm_error *err) {
    return add_bits(w, key, QM_GGUF_UINT32, v, err);
}
qm_status qm_gguf_add_i32(qm_gguf_writer *w, const char *key, int32_t v, qm_error *err) {
    return add_bits(w, key, QM_GGUF_INT32, (uint32_t)v, err);
}
qm_status qm_gguf_add_f32(qm_gguf_writer *w, const char *key, float v, qm_error *err) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    return add_bits(w, key, QM_GGUF_FLOAT32, bits, err);
}
qm_status qm_gguf_add_bool(qm_gguf_writer *w, const char *key, bool v, qm_error *err) {
    return add_bits(w, key, QM_GGUF_BOOL, v ? 1 : 0, err);
}

qm_status qm_gguf_add_string(qm_gguf_writer *w, const char *key, const char *v, qm_error *err) {
    if (!v) return qm_fail(err, QM_ERR_ARG, "%s: key \"%s\": the string is NULL", w->path, key ? key : "");
    qm_status st = begin_kv(w, key, QM_GGUF_STRING, err);
    if (st) return st;
    put_str(&w->kv, v, strlen(v));
    return end_kv(w, key, err);
}

qm_status qm_gguf_add_string_array(qm_gguf_writer *w, const char *key, const char *const *v, uint64_t n,
                                   qm_error *err) {
    for (uint64_t i = 0; i < n; i++)
        if (!v[i]) return qm_fail(err, QM_ERR_ARG, "%s: key \"%s\": string %llu is NULL", w->path, key ? key : "",
                                  (ull)i);
    qm_status st = begin_kv(w, key, QM_GGUF_ARRAY, err);
    if (st) return st;
    put_le(&w->kv, QM_GGUF_STRING, 4);
    put_le(&w->kv, n, 8);
    for (uint64_t i = 0; i < n; i++) put_str(&w->kv, v[i], strlen(v[i]));
    return end_kv(w, key, err);
}

qm_status qm_gguf_add_array(qm_gguf_writer *w, const char *key, qm_gguf_type elem_type, const void *elems,
                            uint64_t n, qm_error *err) {
    size_t es = qm_gguf_type_size(elem_type);
    if (!es) return qm_fail(err, QM_ERR_ARG, "%s: key \"%s\": arrays of %s need their own function", w->path,
                            key ? key : "", qm_gguf_type_name(elem_type));
    if (n > SIZE_MAX / es || (n && !elems))
        return qm_fail(err, QM_ERR_ARG, "%s: key \"%s\": bad array of %llu %s", w->path, key ? key : "", (ull)n,
                       qm_gguf_type_name(elem_type));
    qm_status st = begin_kv(w, key, QM_GGUF_ARRAY, err);
    if (st) return st;
    put_le(&w->kv, (uint64_t)elem_type, 4);
    put_le(&w->kv, n, 8);
    put(&w->kv, elems, (size_t)n * es);
    return end_kv(w, key, err);
}

/* ---- tensors ---- */

static qm_status tensor_bytes(const qm_gguf_writer *w, const char *name, qm_dtype dtype, int ndim,
                              const int64_t *ne, uint64_t *nbytes, qm_error *err) {
    if ((unsigned)dtype >= QM_DT_COUNT)
        return qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\": unknown dtype %d", w->path, name, (int)dtype);
    if (ndim < 1 || ndim > 4)
        return qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\": %d dimensions, expected 1 to 4", w->path, name, ndim);
    uint64_t nel = 1;
    for (int d = 0; d < ndim; d++) {
        if (ne[d] <= 0 || (uint64_t)ne[d] > (uint64_t)INT64_MAX / nel)
            return qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\": dimension ne[%d] = %lld is zero, negative or too "
                           "large", w->path, name, d, (long long)ne[d]);
        nel *= (uint64_t)ne[d];
    }
    uint64_t block = (uint64_t)qm_dtype_block(dtype), bb = qm_dtype_block_bytes(dtype);
    if ((uint64_t)ne[0] % block)
        return qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\": ne[0] = %lld is not a multiple of %s's block of %llu",
                       w->path, name, (long long)ne[0], qm_dtype_name(dtype), (ull)block);
    if (nel / block > (uint64_t)INT64_MAX / bb)
        return qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\": the byte size overflows", w->path, name);
    *nbytes = nel / block * bb;
    return QM_OK;
}

qm_status qm_gguf_add_tensor(qm_gguf_writer *w, const char *name, qm_dtype dtype, int ndim, const int64_t *ne,
                             qm_error *err) {
    if (!name || !*name) return qm_fail(err, QM_ERR_ARG, "%s: a tensor name is empty", w->path);
    if (w->started)
        return qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\" declared after the tensor data began", w->path, name);
    for (int i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return qm_fail(err, QM_ERR_ARG, "%s: duplicate tensor name \"%s\"", w->path, name);
    wtensor t = {0};
    qm_status st = tensor_bytes(w, name, dtype, ndim, ne, &t.nbytes, err);
    if (st) return st;
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory for tensor \"%s\"", w->path, name);
        w->t = p;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", w->path);
    t.ggml_type = qm_gguf_ggml_from_dtype(dtype);
    t.ndim = ndim;
    for (int d = 0; d < 4; d++) t.ne[d] = d < ndim ? ne[d] : 1;
    w->t[w->n_t++] = t;
    return QM_OK;
}

/* ---- writing ---- */

static qm_status write_out(qm_gguf_writer *w, const void *p, size_t n, qm_error *err) {
    qm_status st = qm_atomic_write(&w->af, p, n, err);
    if (st) w->failed = true;
    return st;
}

static qm_status write_zeros(qm_gguf_writer *w, uint64_t n, qm_error *err) {
    static const unsigned char zeros[4096];
    qm_status st = QM_OK;
    while (n && !st) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        st = write_out(w, zeros, k, err);
        n -= k;
    }
    return st;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (a - x % a) % a; }

/* Tensor offsets, then magic, version, counts, metadata, tensor infos and padding. */
static qm_status write_header(qm_gguf_writer *w, qm_error *err) {
    bytes h = {0};
    uint64_t off = 0;
    put(&h, "GGUF", 4);
    put_le(&h, 3, 4);
    put_le(&h, (uint64_t)w->n_t, 8);
    put_le(&h, (uint64_t)w->n_kv, 8);
    put(&h, w->kv.p, w->kv.len);
    for (int i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        t->offset = off;
        off += t->nbytes + pad_to(t->nbytes, w->alignment);
        put_str(&h, t->name, strlen(t->name));
        put_le(&h, (uint64_t)t->ndim, 4);
        for (int d = 0; d < t->ndim; d++) put_le(&h, (uint64_t)t->ne[d], 8);
        put_le(&h, t->ggml_type, 4);
        put_le(&h, t->offset, 8);
    }
    w->started = true;
    qm_status st = h.oom ? qm_fail(err, QM_ERR_NOMEM, "%s: out of memory for the header", w->path)
                         : write_out(w, h.p, h.len, err);
    if (!st) st = write_zeros(w, pad_to(h.len, w->alignment), err);
    free(h.p);
    if (st) w->failed = true;
    return st;
}

static qm_status refuse_failed(const qm_gguf_writer *w, qm_error *err) {
    return qm_fail(err, QM_ERR_ARG, "%s: the writer failed earlier; nothing more is written", w->path);
}

qm_status qm_gguf_write_tensor_data(qm_gguf_writer *w, const void *data, size_t nbytes, qm_error *err) {
    if (w->failed) return refuse_failed(w, err);
    qm_status st = w->started ? QM_OK : write_header(w, err);
    const unsigned char *p = data;
    while (!st && nbytes) {
        if (w->cur >= w->n_t) {
            w->failed = true;
            return qm_fail(err, QM_ERR_ARG, "%s: %zu bytes of tensor data beyond the %d declared tensors", w->path,
                           nbytes, w->n_t);
        }
        wtensor *t = &w->t[w->cur];
        uint64_t room = t->nbytes - w->cur_done;
        size_t k = nbytes < room ? nbytes : (size_t)room;
        st = write_out(w, p, k, err);
        p += k;
        nbytes -= k;
        w->cur_done += k;
        if (!st && w->cur_done == t->nbytes) {
            st = write_zeros(w, pad_to(t->nbytes, w->alignment), err);
            w->cur++;
            w->cur_done = 0;
        }
    }
    return st;
}

qm_status qm_gguf_writer_open(const char *path, qm_gguf_writer **out, qm_error *err) {
    *out = NULL;
    qm_gguf_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    }
    w->alignment = 32;
    qm_status st = qm_atomic_begin(&w->af, path, err);
    if (st) {
        free(w->path);
        free(w);
        return st;
    }
    *out = w;
    return QM_OK;
}

/* The header if no data came, and every tensor's bytes complete. */
static qm_status finish(qm_gguf_writer *w, qm_error *err) {
    if (w->failed) return refuse_failed(w, err);
    qm_status st = w->started ? QM_OK : write_header(w, err);
    if (st) return st;
    if (w->cur < w->n_t)
        return qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\" got %llu of its %llu bytes (%d of %d tensors complete)",
                       w->path, w->t[w->cur].name, (ull)w->cur_done, (ull)w->t[w->cur].nbytes, w->cur, w->n_t);
    return QM_OK;
}

qm_status qm_gguf_writer_close(qm_gguf_writer *w, bool commit, qm_error *err) {
    if (!w) return QM_OK;
    qm_status st = commit ? finish(w, err) : QM_OK;
    if (commit && !st) st = qm_atomic_commit(&w->af, err);
    else qm_atomic_abort(&w->af);
    for (int i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv.p);
    free(w->path);
    free(w);
    return st;
}
