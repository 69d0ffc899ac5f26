/* GGUF reader: one walk over the file that checks every length, count and offset against what is
 * left before using it (layout and rules: gguf.h). The handle keeps views into the mapping; keys and
 * tensor names are copied, string arrays are indexed, and both names are hashed for O(1) lookup. */
#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_NEST 8        /* arrays of arrays deeper than this are refused */
#define GGUF_MIN_KV_BYTES 13   /* key length (8) + value type (4) + a 1-byte value */
#define GGUF_MIN_TI_BYTES 32   /* name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8) */
#define GGUF_DEFAULT_ALIGN 32

typedef unsigned long long ull;

/* Open addressing over names: slot holds an index into the kv or tensor table, -1 when empty. */
typedef struct {
    int *slot;
    size_t mask;
} name_index;

struct qm_gguf {
    char *path;
    void *map;                  /* the mmap (NULL for open_mem or an empty file) */
    size_t map_size;
    const unsigned char *base;  /* the file's bytes */
    size_t size;
    uint32_t version, alignment;
    uint64_t data_start;        /* header end rounded up to alignment */
    qm_gguf_kv *kv;             /* in file order */
    int n_kv;
    qm_gguf_tensor *t;          /* in file order */
    int n_t;
    name_index kv_ix, t_ix;
};

/* A position in the file, and where errors go. */
typedef struct {
    const unsigned char *p;
    size_t pos, size;
    const char *path;
    qm_error *err;
} cursor;

/* ---- little-endian fields ---- */

static uint64_t load_le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

static size_t left(const cursor *c) { return c->size - c->pos; }

static qm_status need(cursor *c, uint64_t n, const char *ctx, const char *field) {
    if (n <= left(c)) return QM_OK;
    return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: truncated: the %s needs %llu bytes at byte %zu, %zu left",
                   c->path, ctx, field, (ull)n, c->pos, left(c));
}

static qm_status read_uint(cursor *c, size_t n, uint64_t *v, const char *ctx, const char *field) {
    qm_status st = need(c, n, ctx, field);
    if (st) return st;
    *v = load_le(c->p + c->pos, n);
    c->pos += n;
    return QM_OK;
}

/* A gguf string: u64 length, then the bytes, which must lie inside the file. */
static qm_status read_str(cursor *c, qm_gguf_str *s, const char *ctx, const char *field) {
    uint64_t len;
    qm_status st = read_uint(c, 8, &len, ctx, field);
    if (st) return st;
    if (len > left(c))
        return qm_fail(c->err, QM_ERR_FORMAT,
                       "%s: %s: the %s (a string of %llu bytes at byte %zu) runs past the end of the file (%zu "
                       "bytes left)",
                       c->path, ctx, field, (ull)len, c->pos, left(c));
    s->ptr = (const char *)(c->p + c->pos);
    s->len = len;
    c->pos += (size_t)len;
    return QM_OK;
}

/* A key or tensor name: not empty, no NUL byte; returns a NUL-terminated copy. */
static qm_status copy_name(cursor *c, qm_gguf_str s, char **out, const char *ctx, const char *field) {
    if (s.len == 0) return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: the %s is empty", c->path, ctx, field);
    if (memchr(s.ptr, 0, (size_t)s.len))
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: the %s \"%.*s\" contains a NUL byte", c->path, ctx, field,
                       (int)strnlen(s.ptr, s.len < 200 ? (size_t)s.len : 200), s.ptr);
    char *p = malloc((size_t)s.len + 1);
    if (!p) return qm_fail(c->err, QM_ERR_NOMEM, "%s: %s: out of memory for the %s", c->path, ctx, field);
    memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = '\0';
    *out = p;
    return QM_OK;
}

/* ---- name index ---- */

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool index_init(name_index *ix, uint64_t n) {
    size_t cap = 8;
    while (cap < 2 * n) cap <<= 1;
    ix->slot = malloc(cap * sizeof *ix->slot);
    if (!ix->slot) return false;
    memset(ix->slot, 0xff, cap * sizeof *ix->slot); /* all -1 */
    ix->mask = cap - 1;
    return true;
}

static const char *kv_name(const qm_gguf *g, int i) { return g->kv[i].key; }
static const char *tensor_name(const qm_gguf *g, int i) { return g->t[i].name; }

/* The index stored under name, or -1; with insert, i is stored when the name is absent. */
static int index_probe(const qm_gguf *g, const name_index *ix, const char *(*name_of)(const qm_gguf *, int),
                       const char *name, int insert) {
    if (!ix->slot) return -1;
    for (size_t h = hash_name(name) & ix->mask;; h = (h + 1) & ix->mask) {
        int j = ix->slot[h];
        if (j < 0) {
            if (insert >= 0) ix->slot[h] = insert;
            return -1;
        }
        if (!strcmp(name_of(g, j), name)) return j;
    }
}

/* ---- values ---- */

static bool type_is_signed(qm_gguf_type t) {
    return t == QM_GGUF_INT8 || t == QM_GGUF_INT16 || t == QM_GGUF_INT32 || t == QM_GGUF_INT64;
}

/* A fixed-size value at p into kv->v: integers widened (signed ones sign-extended), floats to double. */
static void decode_scalar(qm_gguf_type t, const unsigned char *p, qm_gguf_kv *kv) {
    size_t n = qm_gguf_type_size(t);
    uint64_t u = load_le(p, n);
    if (t == QM_GGUF_FLOAT32) {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        kv->v.f = f;
    } else if (t == QM_GGUF_FLOAT64) {
        memcpy(&kv->v.f, &u, 8);
    } else if (type_is_signed(t) && n < 8 && (u >> (8 * n - 1)) & 1) {
        kv->v.i = -(int64_t)((UINT64_C(1) << (8 * n)) - u); /* sign-extend */
    } else if (type_is_signed(t)) {
        memcpy(&kv->v.i, &u, 8);
    } else {
        kv->v.u = u;
    }
}

static qm_status read_scalar(cursor *c, qm_gguf_type t, qm_gguf_kv *kv, const char *ctx) {
    if (t == QM_GGUF_STRING) return read_str(c, &kv->v.s, ctx, "string value");
    size_t n = qm_gguf_type_size(t);
    qm_status st = need(c, n, ctx, "value");
    if (st) return st;
    const unsigned char *p = c->p + c->pos;
    if (t == QM_GGUF_BOOL && *p > 1)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: BOOL value %u at byte %zu is not 0 or 1", c->path, ctx, *p,
                       c->pos);
    decode_scalar(t, p, kv);
    c->pos += n;
    return QM_OK;
}

static qm_status past_end(cursor *c, const char *ctx, uint64_t count, qm_gguf_type t, const char *size_note) {
    return qm_fail(c->err, QM_ERR_FORMAT,
                   "%s: %s: an array of %llu %s elements%s at byte %zu runs past the end of the file (%zu bytes "
                   "left)",
                   c->path, ctx, (ull)count, qm_gguf_type_name(t), size_note, c->pos, left(c));
}

static qm_status walk_array(cursor *c, const char *ctx, int depth, qm_gguf_kv *kv);

/* count strings from the cursor; into strs when not NULL. */
static qm_status walk_strings(cursor *c, const char *ctx, uint64_t count, qm_gguf_str *strs) {
    if (count > left(c) / 8) return past_end(c, ctx, count, QM_GGUF_STRING, "");
    for (uint64_t i = 0; i < count; i++) {
        qm_gguf_str s;
        uint64_t len;
        qm_status st = read_uint(c, 8, &len, ctx, "string length in the array");
        if (st) return st;
        if (len > left(c))
            return qm_fail(c->err, QM_ERR_FORMAT,
                           "%s: %s: string %llu of %llu in the array (%llu bytes at byte %zu) runs past the end of "
                           "the file (%zu bytes left)",
                           c->path, ctx, (ull)i, (ull)count, (ull)len, c->pos, left(c));
        s.ptr = (const char *)(c->p + c->pos);
        s.len = len;
        c->pos += (size_t)len;
        if (strs) strs[i] = s;
    }
    return QM_OK;
}

/* The elements of an array whose type and count were read. */
static qm_status walk_elems(cursor *c, const char *ctx, int depth, uint64_t et, uint64_t count, qm_gguf_str *strs) {
    if (et > QM_GGUF_FLOAT64)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: unknown array element type %llu at byte %zu (0..12 are defined)",
                       c->path, ctx, (ull)et, c->pos - 12);
    size_t es = qm_gguf_type_size((qm_gguf_type)et);
    if (et == QM_GGUF_STRING) return walk_strings(c, ctx, count, strs);
    if (et == QM_GGUF_ARRAY) {
        if (count > left(c) / 12) return past_end(c, ctx, count, QM_GGUF_ARRAY, "");
        for (uint64_t i = 0; i < count; i++) {
            qm_status st = walk_array(c, ctx, depth + 1, NULL);
            if (st) return st;
        }
        return QM_OK;
    }
    if (count > UINT64_MAX / es)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: an array of %llu %s elements: the byte size overflows", c->path,
                       ctx, (ull)count, qm_gguf_type_name((qm_gguf_type)et));
    if (count * es > left(c)) {
        char note[48];
        snprintf(note, sizeof note, " (%llu bytes)", (ull)(count * es));
        return past_end(c, ctx, count, (qm_gguf_type)et, note);
    }
    c->pos += (size_t)(count * es);
    return QM_OK;
}

/* An array value (element type, count, elements) at depth (0: a kv's value; kv NULL below). */
static qm_status walk_array(cursor *c, const char *ctx, int depth, qm_gguf_kv *kv) {
    if (depth > GGUF_MAX_NEST)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: arrays nested more than %d deep at byte %zu", c->path, ctx,
                       GGUF_MAX_NEST, c->pos);
    uint64_t et, count;
    qm_status st = read_uint(c, 4, &et, ctx, "array element type");
    if (!st) st = read_uint(c, 8, &count, ctx, "array count");
    if (st) return st;
    qm_gguf_str *strs = NULL;
    if (kv && et == QM_GGUF_STRING && count > 0 && count <= left(c) / 8) {
        strs = malloc((size_t)count * sizeof *strs);
        if (!strs)
            return qm_fail(c->err, QM_ERR_NOMEM, "%s: %s: out of memory for %llu strings", c->path, ctx, (ull)count);
    }
    if (kv) {
        kv->elem_type = (qm_gguf_type)et;
        kv->count = count;
        kv->elems = c->p + c->pos;
        kv->strs = strs; /* owned by kv from here, freed by close even on failure */
    }
    return walk_elems(c, ctx, depth, et, count, strs);
}

/* ---- metadata ---- */

static qm_status read_kv(cursor *c, int i, int n, qm_gguf_kv *kv) {
    char ctx[256];
    qm_gguf_str key;
    uint64_t type;
    snprintf(ctx, sizeof ctx, "metadata pair %d of %d", i, n);
    qm_status st = read_str(c, &key, ctx, "key");
    if (!st) st = copy_name(c, key, &kv->key, ctx, "key");
    if (st) return st;
    snprintf(ctx, sizeof ctx, "key \"%.200s\"", kv->key);
    if ((st = read_uint(c, 4, &type, ctx, "value type"))) return st;
    if (type > QM_GGUF_FLOAT64)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: unknown value type %llu at byte %zu (0..12 are defined)",
                       c->path, ctx, (ull)type, c->pos - 4);
    kv->type = (qm_gguf_type)type;
    if (type == QM_GGUF_ARRAY) return walk_array(c, ctx, 0, kv);
    return read_scalar(c, kv->type, kv, ctx);
}

static qm_status read_kvs(cursor *c, qm_gguf *g, int n) {
    g->kv = calloc((size_t)n + 1, sizeof *g->kv);
    if (!g->kv || !index_init(&g->kv_ix, (uint64_t)n))
        return qm_fail(c->err, QM_ERR_NOMEM, "%s: out of memory for %d metadata pairs", c->path, n);
    for (int i = 0; i < n; i++) {
        g->n_kv = i + 1; /* so that close frees what this pair allocated */
        qm_status st = read_kv(c, i, n, &g->kv[i]);
        if (st) return st;
        int j = index_probe(g, &g->kv_ix, kv_name, g->kv[i].key, i);
        if (j >= 0)
            return qm_fail(c->err, QM_ERR_FORMAT, "%s: duplicate key \"%.200s\" (metadata pairs %d and %d)", c->path,
                           g->kv[i].key, j, i);
    }
    return QM_OK;
}

static qm_status read_alignment(const qm_gguf *g, uint32_t *align, qm_error *err) {
    const qm_gguf_kv *kv = qm_gguf_find(g, "general.alignment");
    *align = GGUF_DEFAULT_ALIGN;
    if (!kv) return QM_OK;
    if (kv->type != QM_GGUF_UINT32)
        return qm_fail(err, QM_ERR_FORMAT, "%s: key \"general.alignment\" is %s, expected UINT32", g->path,
                       qm_gguf_type_name(kv->type));
    if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)))
        return qm_fail(err, QM_ERR_FORMAT, "%s: key \"general.alignment\" is %llu, expected a nonzero power of two",
                       g->path, (ull)kv->v.u);
    *align = (uint32_t)kv->v.u;
    return QM_OK;
}

/* ---- tensor infos ---- */

/* Type, element count and byte size of a tensor whose dims were read. */
static qm_status check_tensor_shape(cursor *c, const char *ctx, qm_gguf_tensor *t) {
    if (!qm_gguf_dtype_from_ggml(t->ggml_type, &t->dtype)) {
        const char *name = qm_gguf_ggml_type_name(t->ggml_type);
        if (!strcmp(name, "unknown"))
            return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: unknown ggml type %u", c->path, ctx, t->ggml_type);
        return qm_fail(c->err, QM_ERR_UNSUPPORTED,
                       "%s: %s has ggml type %s (%u), which qmesh does not read (F32, F16, BF16, Q4_0, Q4_1, Q5_0, "
                       "Q5_1, Q8_0, Q4_K, Q5_K, Q6_K are read)",
                       c->path, ctx, name, t->ggml_type);
    }
    uint64_t nel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if ((uint64_t)t->ne[d] > (uint64_t)INT64_MAX / nel)
            return qm_fail(c->err, QM_ERR_FORMAT,
                           "%s: %s: the element count overflows (dims %lld x %lld x %lld x %lld)", c->path, ctx,
                           (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                           (long long)t->ne[3]);
        nel *= (uint64_t)t->ne[d];
    }
    uint64_t block = (uint64_t)qm_dtype_block(t->dtype), bb = qm_dtype_block_bytes(t->dtype);
    if ((uint64_t)t->ne[0] % block)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: ne[0] = %lld is not a multiple of %s's block of %llu", c->path,
                       ctx, (long long)t->ne[0], qm_dtype_name(t->dtype), (ull)block);
    if (nel / block > SIZE_MAX / bb)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: the byte size overflows", c->path, ctx);
    t->nbytes = (size_t)(nel / block * bb);
    return QM_OK;
}

static qm_status read_dims(cursor *c, const char *ctx, qm_gguf_tensor *t) {
    uint64_t nd, v;
    qm_status st = read_uint(c, 4, &nd, ctx, "n_dims");
    if (st) return st;
    if (nd == 0 || nd > 4)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: n_dims is %llu, expected 1 to 4", c->path, ctx, (ull)nd);
    t->ndim = (int)nd;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (int d = 0; d < t->ndim; d++) {
        if ((st = read_uint(c, 8, &v, ctx, "dimension"))) return st;
        if (v == 0) return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: dimension ne[%d] is zero", c->path, ctx, d);
        if (v > (uint64_t)INT64_MAX)
            return qm_fail(c->err, QM_ERR_FORMAT, "%s: %s: dimension ne[%d] = %llu is too large", c->path, ctx, d,
                           (ull)v);
        t->ne[d] = (int64_t)v;
    }
    return QM_OK;
}

static qm_status read_tensor_info(cursor *c, int i, int n, qm_gguf_tensor *t) {
    char ctx[256];
    qm_gguf_str name;
    uint64_t type;
    snprintf(ctx, sizeof ctx, "tensor info %d of %d", i, n);
    qm_status st = read_str(c, &name, ctx, "name");
    if (!st) st = copy_name(c, name, &t->name, ctx, "name");
    if (st) return st;
    snprintf(ctx, sizeof ctx, "tensor \"%.200s\"", t->name);
    if ((st = read_dims(c, ctx, t))) return st;
    if ((st = read_uint(c, 4, &type, ctx, "ggml type"))) return st;
    t->ggml_type = (uint32_t)type;
    if ((st = read_uint(c, 8, &t->offset, ctx, "data offset"))) return st;
    return check_tensor_shape(c, ctx, t);
}

static qm_status read_tensor_infos(cursor *c, qm_gguf *g, int n) {
    g->t = calloc((size_t)n + 1, sizeof *g->t);
    if (!g->t || !index_init(&g->t_ix, (uint64_t)n))
        return qm_fail(c->err, QM_ERR_NOMEM, "%s: out of memory for %d tensor infos", c->path, n);
    for (int i = 0; i < n; i++) {
        g->n_t = i + 1;
        qm_status st = read_tensor_info(c, i, n, &g->t[i]);
        if (st) return st;
        int j = index_probe(g, &g->t_ix, tensor_name, g->t[i].name, i);
        if (j >= 0)
            return qm_fail(c->err, QM_ERR_FORMAT, "%s: duplicate tensor name \"%.200s\" (tensor infos %d and %d)",
                           c->path, g->t[i].name, j, i);
    }
    return QM_OK;
}

/* ---- tensor data ---- */

typedef struct {
    uint64_t offset;
    int i;
} span;

static int cmp_span(const void *a, const void *b) {
    uint64_t x = ((const span *)a)->offset, y = ((const span *)b)->offset;
    return x < y ? -1 : x > y;
}

static qm_status check_overlaps(qm_gguf *g, qm_error *err) {
    if (g->n_t < 2) return QM_OK;
    span *order = malloc((size_t)g->n_t * sizeof *order);
    if (!order) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", g->path);
    for (int i = 0; i < g->n_t; i++) order[i] = (span){g->t[i].offset, i};
    qsort(order, (size_t)g->n_t, sizeof *order, cmp_span);
    qm_status st = QM_OK;
    for (int k = 0; k + 1 < g->n_t && !st; k++) {
        const qm_gguf_tensor *a = &g->t[order[k].i], *b = &g->t[order[k + 1].i];
        if (a->offset + a->nbytes > b->offset)
            st = qm_fail(err, QM_ERR_FORMAT,
                         "%s: tensors \"%.200s\" (bytes %llu..%llu) and \"%.200s\" (from byte %llu) overlap in the "
                         "data section", g->path, a->name, (ull)a->offset,
                         (ull)(a->offset + a->nbytes), b->name, (ull)b->offset);
    }
    free(order);
    return st;
}

/* Every tensor aligned and inside the file, and no two overlapping. */
static qm_status place_tensors(qm_gguf *g, size_t header_end, qm_error *err) {
    uint64_t a = g->alignment;
    g->data_start = (header_end + a - 1) / a * a;
    uint64_t data_size = g->data_start < g->size ? g->size - g->data_start : 0;
    for (int i = 0; i < g->n_t; i++) {
        qm_gguf_tensor *t = &g->t[i];
        if (t->offset % a)
            return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%.200s\": data offset %llu is not a multiple of the "
                           "alignment %llu", g->path, t->name, (ull)t->offset, (ull)a);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%.200s\": its %zu bytes at data offset %llu run past the "
                           "end of the file (the data section at byte %llu holds %llu bytes; truncated?)", g->path,
                           t->name, t->nbytes, (ull)t->offset, (ull)g->data_start, (ull)data_size);
        t->data = g->base + g->data_start + t->offset;
    }
    return check_overlaps(g, err);
}

/* ---- the header ---- */

static qm_status read_header(cursor *c, qm_gguf *g, int *n_t, int *n_kv) {
    const char *ctx = "header";
    qm_status st = need(c, 4, ctx, "magic");
    if (st) return st;
    const unsigned char *m = c->p;
    if (memcmp(m, "GGUF", 4))
        return qm_fail(c->err, QM_ERR_FORMAT,
                       "%s: not a GGUF file: the magic is %02x %02x %02x %02x, expected \"GGUF\"", c->path, m[0], m[1],
                       m[2], m[3]);
    c->pos = 4;
    uint64_t v, nt, nkv;
    if ((st = read_uint(c, 4, &v, ctx, "version"))) return st;
    if (v == 1 || v == 0x02000000u || v == 0x03000000u) /* the last two: 2 or 3 written big-endian */
        return qm_fail(c->err, QM_ERR_UNSUPPORTED,
                       "%s: GGUF version %s is not supported (versions 2 and 3, little-endian, are read)", c->path,
                       v == 1 ? "1" : v == 0x02000000u ? "2 big-endian" : "3 big-endian");
    if (v != 2 && v != 3)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: unknown GGUF version %llu (versions 2 and 3 are read)", c->path,
                       (ull)v);
    g->version = (uint32_t)v;
    if ((st = read_uint(c, 8, &nt, ctx, "tensor count")) || (st = read_uint(c, 8, &nkv, ctx, "metadata count")))
        return st;
    size_t rem = left(c);
    if (nkv > rem / GGUF_MIN_KV_BYTES || nkv > INT_MAX)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: header: kv_count %llu is more than the file's remaining %zu bytes "
                       "can hold (a pair takes at least %d)", c->path, (ull)nkv, rem, GGUF_MIN_KV_BYTES);
    if (nt > rem / GGUF_MIN_TI_BYTES || nt > INT_MAX)
        return qm_fail(c->err, QM_ERR_FORMAT, "%s: header: tensor_count %llu is more than the file's remaining %zu "
                       "bytes can hold (a tensor info takes at least %d)", c->path, (ull)nt, rem, GGUF_MIN_TI_BYTES);
    *n_t = (int)nt;
    *n_kv = (int)nkv;
    return QM_OK;
}

static qm_status parse(qm_gguf *g, qm_error *err) {
    cursor c = {g->base, 0, g->size, g->path, err};
    int n_t = 0, n_kv = 0;
    qm_status st = read_header(&c, g, &n_t, &n_kv);
    if (!st) st = read_kvs(&c, g, n_kv);
    if (!st) st = read_alignment(g, &g->alignment, err);
    if (!st) st = read_tensor_infos(&c, g, n_t);
    if (!st) st = place_tensors(g, c.pos, err);
    return st;
}

/* ---- open / close ---- */

static qm_status open_bytes(const unsigned char *base, size_t size, const char *name, void *map, qm_gguf **out,
                            qm_error *err) {
    static const unsigned char empty[1] = {0};
    *out = NULL;
    qm_gguf *g = calloc(1, sizeof *g);
    char *path = strdup(name ? name : "(memory)");
    if (!g || !path) {
        free(g);
        free(path);
        if (map) munmap(map, size);
        return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", name ? name : "(memory)");
    }
    g->path = path;
    g->map = map;
    g->map_size = size;
    g->base = base ? base : empty;
    g->size = base ? size : 0;
    qm_status st = parse(g, err);
    if (st) {
        qm_gguf_close(g);
        return st;
    }
    *out = g;
    return QM_OK;
}

qm_status qm_gguf_open_mem(const void *data, size_t size, const char *name, qm_gguf **out, qm_error *err) {
    return open_bytes(size ? data : NULL, size, name, NULL, out, err);
}

qm_status qm_gguf_open(const char *path, qm_gguf **out, qm_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qm_fail(err, QM_ERR_IO, "cannot open GGUF file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qm_fail(err, QM_ERR_IO, "GGUF file %s is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return qm_fail(err, QM_ERR_IO, "cannot map GGUF file %s: %s", path, strerror(e));
    return open_bytes(map, size, path, map, out, err);
}

void qm_gguf_close(qm_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free((void *)g->kv[i].strs);
    }
    for (int i = 0; i < g->n_t; i++) free(g->t[i].name);
    free(g->kv);
    free(g->t);
    free(g->kv_ix.slot);
    free(g->t_ix.slot);
    if (g->map) munmap(g->map, g->map_size);
    free(g->path);
    free(g);
}

/* ---- accessors ---- */

const char *qm_gguf_path(const qm_gguf *g) { return g->path; }
uint32_t qm_gguf_version(const qm_gguf *g) { return g->version; }
uint32_t qm_gguf_alignment(const qm_gguf *g) { return g->alignment; }
uint64_t qm_gguf_data_offset(const qm_gguf *g) { return g->data_start; }
int qm_gguf_kv_count(const qm_gguf *g) { return g->n_kv; }
int qm_gguf_tensor_count(const qm_gguf *g) { return g->n_t; }

const qm_gguf_kv *qm_gguf_kv_at(const qm_gguf *g, int i) { return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL; }

const qm_gguf_tensor *qm_gguf_tensor_at(const qm_gguf *g, int i) {
    return i >= 0 && i < g->n_t ? &g->t[i] : NULL;
}

const qm_gguf_kv *qm_gguf_find(const qm_gguf *g, const char *key) {
    int i = index_probe(g, &g->kv_ix, kv_name, key, -1);
    return i >= 0 ? &g->kv[i] : NULL;
}

const qm_gguf_tensor *qm_gguf_tensor_find(const qm_gguf *g, const char *name) {
    int i = index_probe(g, &g->t_ix, tensor_name, name, -1);
    return i >= 0 ? &g->t[i] : NULL;
}

static bool elem_at(const qm_gguf_kv *kv, uint64_t i, qm_gguf_kv *v) {
    size_t n = qm_gguf_type_size(kv->elem_type);
    if (kv->type != QM_GGUF_ARRAY || !n || i >= kv->count) return false;
    decode_scalar(kv->elem_type, (const unsigned char *)kv->elems + i * n, v);
    return true;
}

int64_t qm_gguf_array_int(const qm_gguf_kv *kv, uint64_t i) {
    qm_gguf_kv v;
    qm_gguf_type t = kv->elem_type;
    if (t == QM_GGUF_BOOL || t == QM_GGUF_FLOAT32 || t == QM_GGUF_FLOAT64 || !elem_at(kv, i, &v)) return 0;
    return type_is_signed(t) ? v.v.i : (int64_t)v.v.u;
}

double qm_gguf_array_float(const qm_gguf_kv *kv, uint64_t i) {
    qm_gguf_kv v;
    qm_gguf_type t = kv->elem_type;
    if ((t != QM_GGUF_FLOAT32 && t != QM_GGUF_FLOAT64) || !elem_at(kv, i, &v)) return 0;
    return v.v.f;
}
