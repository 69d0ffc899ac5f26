/* GGUF type tables (value types, ggml tensor types <-> qmesh dtypes) and the typed metadata getters.
 * Reading: gguf_read.c; writing: gguf_write.c. */
#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- value types ---- */

size_t qm_gguf_type_size(qm_gguf_type t) {
    switch (t) {
    case QM_GGUF_UINT8: case QM_GGUF_INT8: case QM_GGUF_BOOL: return 1;
    case QM_GGUF_UINT16: case QM_GGUF_INT16: return 2;
    case QM_GGUF_UINT32: case QM_GGUF_INT32: case QM_GGUF_FLOAT32: return 4;
    case QM_GGUF_UINT64: case QM_GGUF_INT64: case QM_GGUF_FLOAT64: return 8;
    case QM_GGUF_STRING: case QM_GGUF_ARRAY: return 0;
    }
    return 0;
}

const char *qm_gguf_type_name(qm_gguf_type t) {
    static const char *const names[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                        "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* ---- ggml tensor types ---- */

/* Ids that ggml defines or once defined (4, 5, 31..33, 36..38 were removed), by id. */
static const char *const ggml_names[] = {
    "F32",     "F16",    "Q4_0",    "Q4_1",     "Q4_2",     "Q4_3",     "Q5_0",       "Q5_1",
    "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",     "Q4_K",     "Q5_K",     "Q6_K",       "Q8_K",
    "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",    "IQ4_NL",   "IQ3_S",    "IQ2_S",      "IQ4_XS",
    "I8",      "I16",    "I32",     "I64",      "F64",      "IQ1_M",    "BF16",       "Q4_0_4_4",
    "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",   "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
};

const char *qm_gguf_ggml_type_name(uint32_t ggml_type) {
    return ggml_type < sizeof ggml_names / sizeof ggml_names[0] ? ggml_names[ggml_type] : "unknown";
}

/* ggml id of each qmesh dtype, in qm_dtype order (the in-memory interleaved types have none). */
static const uint32_t ggml_of_dtype[QM_DT_COUNT] = {0, 1, 30, 8, 2, 3, 6, 7, 12, 13, 14, UINT32_MAX, UINT32_MAX, UINT32_MAX};

bool qm_gguf_dtype_from_ggml(uint32_t ggml_type, qm_dtype *out) {
    for (int d = 0; d < QM_DT_COUNT; d++) {
        if (ggml_of_dtype[d] == ggml_type) {
            *out = (qm_dtype)d;
            return true;
        }
    }
    return false;
}

uint32_t qm_gguf_ggml_from_dtype(qm_dtype t) {
    return (unsigned)t < QM_DT_COUNT ? ggml_of_dtype[t] : UINT32_MAX;
}

/* ---- typed getters ---- */

static bool is_int_type(qm_gguf_type t) {
    return t <= QM_GGUF_INT32 || t == QM_GGUF_UINT64 || t == QM_GGUF_INT64;
}

static qm_status lookup(const qm_gguf *g, const char *key, bool required, const qm_gguf_kv **kv, qm_error *err) {
    *kv = qm_gguf_find(g, key);
    if (!*kv && required)
        return qm_fail(err, QM_ERR_FORMAT, "%s: required key \"%s\" is missing", qm_gguf_path(g), key);
    return QM_OK;
}

static qm_status wrong_type(const qm_gguf *g, const qm_gguf_kv *kv, const char *want, qm_error *err) {
    if (kv->type == QM_GGUF_ARRAY)
        return qm_fail(err, QM_ERR_FORMAT, "%s: key \"%s\" is an ARRAY of %s, expected %s", qm_gguf_path(g),
                       kv->key, qm_gguf_type_name(kv->elem_type), want);
    return qm_fail(err, QM_ERR_FORMAT, "%s: key \"%s\" is %s, expected %s", qm_gguf_path(g), kv->key,
                   qm_gguf_type_name(kv->type), want);
}

qm_status qm_gguf_get_int(const qm_gguf *g, const char *key, bool required, int64_t *out, qm_error *err) {
    const qm_gguf_kv *kv;
    qm_status st = lookup(g, key, required, &kv, err);
    if (st || !kv) return st;
    if (!is_int_type(kv->type)) return wrong_type(g, kv, "an integer", err);
    bool is_unsigned = kv->type == QM_GGUF_UINT64 || kv->type == QM_GGUF_UINT32 || kv->type == QM_GGUF_UINT16 ||
                       kv->type == QM_GGUF_UINT8;
    if (is_unsigned && kv->v.u > (uint64_t)INT64_MAX)
        return qm_fail(err, QM_ERR_FORMAT, "%s: key \"%s\": value %llu is out of range (at most %lld)",
                       qm_gguf_path(g), key, (unsigned long long)kv->v.u, (long long)INT64_MAX);
    *out = is_unsigned ? (int64_t)kv->v.u : kv->v.i;
    return QM_OK;
}

qm_status qm_gguf_get_float(const qm_gguf *g, const char *key, bool required, double *out, qm_error *err) {
    const qm_gguf_kv *kv;
    qm_status st = lookup(g, key, required, &kv, err);
    if (st || !kv) return st;
    if (kv->type != QM_GGUF_FLOAT32 && kv->type != QM_GGUF_FLOAT64) return wrong_type(g, kv, "a float", err);
    *out = kv->v.f;
    return QM_OK;
}

qm_status qm_gguf_get_bool(const qm_gguf *g, const char *key, bool required, bool *out, qm_error *err) {
    const qm_gguf_kv *kv;
    qm_status st = lookup(g, key, required, &kv, err);
    if (st || !kv) return st;
    if (kv->type != QM_GGUF_BOOL) return wrong_type(g, kv, "BOOL", err);
    *out = kv->v.u != 0;
    return QM_OK;
}

qm_status qm_gguf_get_string(const qm_gguf *g, const char *key, bool required, char **out, qm_error *err) {
    const qm_gguf_kv *kv;
    qm_status st = lookup(g, key, required, &kv, err);
    if (st || !kv) return st;
    if (kv->type != QM_GGUF_STRING) return wrong_type(g, kv, "STRING", err);
    size_t n = (size_t)kv->v.s.len;
    if (n && memchr(kv->v.s.ptr, 0, n))
        return qm_fail(err, QM_ERR_FORMAT, "%s: key \"%s\": the string contains a NUL byte", qm_gguf_path(g), key);
    char *s = malloc(n + 1);
    if (!s) return qm_fail(err, QM_ERR_NOMEM, "%s: key \"%s\": cannot allocate %zu bytes", qm_gguf_path(g), key, n);
    if (n) memcpy(s, kv->v.s.ptr, n);
    s[n] = '\0';
    *out = s;
    return QM_OK;
}

qm_status qm_gguf_get_array(const qm_gguf *g, const char *key, qm_gguf_type elem_type, bool required,
                            const qm_gguf_kv **out, qm_error *err) {
    const qm_gguf_kv *kv;
    *out = NULL;
    qm_status st = lookup(g, key, required, &kv, err);
    if (st || !kv) return st;
    if (kv->type != QM_GGUF_ARRAY || kv->elem_type != elem_type) {
        char want[48];
        snprintf(want, sizeof want, "an ARRAY of %s", qm_gguf_type_name(elem_type));
        return wrong_type(g, kv, want, err);
    }
    *out = kv;
    return QM_OK;
}

qm_status qm_gguf_get_int_array(const qm_gguf *g, const char *key, bool required, const qm_gguf_kv **out,
                                qm_error *err) {
    const qm_gguf_kv *kv;
    *out = NULL;
    qm_status st = lookup(g, key, required, &kv, err);
    if (st || !kv) return st;
    if (kv->type != QM_GGUF_ARRAY || !is_int_type(kv->elem_type))
        return wrong_type(g, kv, "an ARRAY of integers", err);
    *out = kv;
    return QM_OK;
}
