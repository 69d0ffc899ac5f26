/* Safetensors reader (mmap, no copy) and writer (streaming, atomic).
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
 * then the data section; offsets are relative to its start (byte 8 + N).
 *
 * Error codes: missing / unreadable file QM_ERR_IO; malformed contents QM_ERR_FORMAT;
 * a dtype other than F32, F16, BF16 QM_ERR_UNSUPPORTED. */
#include "io/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fileutil.h"
#include "io/gguf.h"

typedef struct {
    char *path;
    void *map;     /* whole file, read-only */
    size_t size;
} st_file;

struct qm_checkpoint {
    char *source;          /* the folder or file that was opened, for messages */
    st_file *files;
    int n_files;
    qm_tensor_ref *t;      /* in file order, header order within a file */
    int n, cap;
    int *sorted;           /* indices of t sorted by name, for find */
    qm_gguf *gguf;         /* a GGUF checkpoint's file (owned), else NULL */
};

/* ---- helpers ---- */

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static const char *dtype_list = "supported are F32, F16, BF16";

static bool parse_dtype(const char *s, qm_dtype *out) {
    if (!strcmp(s, "F32")) *out = QM_DT_F32;
    else if (!strcmp(s, "F16")) *out = QM_DT_F16;
    else if (!strcmp(s, "BF16")) *out = QM_DT_BF16;
    else return false;
    return true;
}

/* A JSON number that is a non-negative integer below 2^53. */
static bool json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* ---- reading one file ---- */

static qm_status push_tensor(qm_checkpoint *ck, qm_tensor_ref *r, const char *path, qm_error *err) {
    if (ck->n == ck->cap) {
        int cap = ck->cap ? ck->cap * 2 : 64;
        qm_tensor_ref *t = realloc(ck->t, (size_t)cap * sizeof *t);
        if (!t) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory for the tensor list", path);
        ck->t = t;
        ck->cap = cap;
    }
    ck->t[ck->n++] = *r;
    return QM_OK;
}

static qm_status parse_entry(qm_checkpoint *ck, const st_file *f, const cJSON *e, const unsigned char *data,
                             uint64_t data_size, uint64_t data_pos, qm_error *err) {
    const char *path = f->path, *name = e->string;
    qm_tensor_ref r;
    memset(&r, 0, sizeof r);
    if (!cJSON_IsObject(e))
        return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\": header entry is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\": missing string \"dtype\"", path, name);
    if (!parse_dtype(dt->valuestring, &r.dtype))
        return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: tensor \"%s\" has dtype %s; %s", path, name, dt->valuestring,
                       dtype_list);
    if (!cJSON_IsArray(sh))
        return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\": missing array \"shape\"", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > QM_MAX_DIMS)
        return qm_fail(err, QM_ERR_UNSUPPORTED, "%s: tensor \"%s\" has %d dimensions; at most %d are supported", path,
                       name, nd, QM_MAX_DIMS);
    r.ndim = nd;
    uint64_t count = 1;
    bool overflow = false;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u64(cJSON_GetArrayItem(sh, i), &d))
            return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", path,
                           name, i);
        r.shape[i] = (int64_t)d;
        if (d && count > UINT64_MAX / 8 / d) overflow = true;
        count *= d;
    }
    uint64_t begin, end;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !json_u64(cJSON_GetArrayItem(of, 0), &begin) ||
        !json_u64(cJSON_GetArrayItem(of, 1), &end))
        return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\" must be [begin, end] integers", path,
                       name);
    if (end < begin)
        return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] end before begin", path,
                       name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return qm_fail(err, QM_ERR_FORMAT,
                       "%s: tensor \"%s\": data_offsets [%llu, %llu] past the end of the data section (%llu bytes; "
                       "file truncated?)",
                       path, name, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)data_size);
    char sbuf[128];
    shape_str(sbuf, sizeof sbuf, r.ndim, r.shape);
    uint64_t want = count * qm_dtype_size(r.dtype);
    if (overflow || end - begin != want)
        return qm_fail(err, QM_ERR_FORMAT,
                       "%s: tensor \"%s\": %llu bytes in data_offsets, but shape %s x %s needs %llu", path, name,
                       (unsigned long long)(end - begin), sbuf, qm_dtype_name(r.dtype), (unsigned long long)want);
    if ((data_pos + begin) % qm_dtype_size(r.dtype) != 0)
        return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\": data at byte %llu is not aligned to its %s elements",
                       path, name, (unsigned long long)(data_pos + begin), qm_dtype_name(r.dtype));
    r.name = strdup(name);
    if (!r.name) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    r.data = data + begin;
    r.nbytes = (size_t)want;
    r.file = f->path;
    r.file_offset = (size_t)(data_pos + begin);
    qm_status st = push_tensor(ck, &r, path, err);
    if (st) free((char *)r.name);
    return st;
}

typedef struct {
    uint64_t begin, end; /* data_offsets */
    const char *name;
} st_span;

static int cmp_spans(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* No two tensors of one file, ck->t[first..n), may share bytes: sorted by begin, each must start at
 * or after the furthest end before it. Empty tensors hold no bytes and overlap nothing. */
static qm_status check_overlaps(const qm_checkpoint *ck, int first, uint64_t data_pos, const char *path,
                                qm_error *err) {
    int n = ck->n - first;
    if (n < 2) return QM_OK;
    st_span *s = malloc((size_t)n * sizeof *s);
    if (!s) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    int k = 0;
    for (int i = first; i < ck->n; i++) {
        const qm_tensor_ref *r = &ck->t[i];
        if (r->nbytes == 0) continue;
        s[k++] = (st_span){r->file_offset - data_pos, r->file_offset - data_pos + r->nbytes, r->name};
    }
    qsort(s, (size_t)k, sizeof *s, cmp_spans);
    qm_status st = QM_OK;
    int far = 0; /* the span with the furthest end so far */
    for (int i = 1; i < k && !st; i++) {
        if (s[i].begin < s[far].end)
            st = qm_fail(err, QM_ERR_FORMAT,
                         "%s: tensors \"%s\" (data_offsets [%llu, %llu]) and \"%s\" ([%llu, %llu]) overlap", path,
                         s[far].name, (unsigned long long)s[far].begin, (unsigned long long)s[far].end, s[i].name,
                         (unsigned long long)s[i].begin, (unsigned long long)s[i].end);
        if (s[i].end > s[far].end) far = i;
    }
    free(s);
    return st;
}

/* Maps `path` as file number ck->n_files and adds its tensors. */
static qm_status load_file(qm_checkpoint *ck, const char *path, qm_error *err) {
    st_file *f = &ck->files[ck->n_files];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    ck->n_files++; /* from here on, close() releases it */

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qm_fail(err, QM_ERR_IO, "cannot open safetensors file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qm_fail(err, QM_ERR_IO, "safetensors file %s is not a regular file", path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size == 0) {
        close(fd);
        return qm_fail(err, QM_ERR_FORMAT, "safetensors file %s is empty", path);
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return qm_fail(err, QM_ERR_IO, "cannot mmap safetensors file %s: %s", path, strerror(e));
    }
    const unsigned char *base = f->map;
    if (f->size < 8)
        return qm_fail(err, QM_ERR_FORMAT,
                       "safetensors file %s is truncated: %zu bytes, less than the 8-byte header length", path,
                       f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
    /* the format's own cap, checked first: a larger length is refused as such whatever the file's size */
    if (hlen > QM_ST_MAX_HEADER)
        return qm_fail(err, QM_ERR_FORMAT,
                       "safetensors file %s: header length %llu is over the format's limit of %d bytes", path,
                       (unsigned long long)hlen, QM_ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return qm_fail(err, QM_ERR_FORMAT,
                       "safetensors file %s: header length %llu runs past the end of the file (%zu bytes)", path,
                       (unsigned long long)hlen, f->size);
    cJSON *h = cJSON_ParseWithLength((const char *)base + 8, (size_t)hlen);
    if (!h || !cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return qm_fail(err, QM_ERR_FORMAT, "safetensors file %s: the %llu-byte header is not a JSON object", path,
                       (unsigned long long)hlen);
    }
    uint64_t data_pos = 8 + hlen, data_size = f->size - data_pos;
    qm_status st = QM_OK;
    int first = ck->n;
    const cJSON *e2;
    cJSON_ArrayForEach(e2, h) {
        if (!strcmp(e2->string, "__metadata__")) continue;
        if ((st = parse_entry(ck, f, e2, base + data_pos, data_size, data_pos, err))) break;
    }
    cJSON_Delete(h);
    if (!st) st = check_overlaps(ck, first, data_pos, path, err);
    return st;
}

/* ---- index and lookup ---- */

static int cmp_names(const void *a, const void *b, void *ctx) {
    const qm_checkpoint *ck = ctx;
    return strcmp(ck->t[*(const int *)a].name, ck->t[*(const int *)b].name);
}

static qm_status build_index(qm_checkpoint *ck, qm_error *err) {
    ck->sorted = malloc((size_t)(ck->n ? ck->n : 1) * sizeof(int));
    if (!ck->sorted) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", ck->source);
    for (int i = 0; i < ck->n; i++) ck->sorted[i] = i;
    qsort_r(ck->sorted, (size_t)ck->n, sizeof(int), cmp_names, ck);
    for (int i = 1; i < ck->n; i++) {
        const qm_tensor_ref *a = &ck->t[ck->sorted[i - 1]], *b = &ck->t[ck->sorted[i]];
        if (!strcmp(a->name, b->name)) {
            if (a->file == b->file)
                return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\" appears twice in the header", a->file, a->name);
            return qm_fail(err, QM_ERR_FORMAT, "tensor \"%s\" is in two shards: %s and %s", a->name, a->file,
                           b->file);
        }
    }
    return QM_OK;
}

const qm_tensor_ref *qm_checkpoint_find(const qm_checkpoint *ck, const char *name) {
    int lo = 0, hi = ck->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const qm_tensor_ref *r = &ck->t[ck->sorted[mid]];
        int c = strcmp(r->name, name);
        if (c == 0) return r;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

int qm_checkpoint_count(const qm_checkpoint *ck) { return ck->n; }

const qm_tensor_ref *qm_checkpoint_at(const qm_checkpoint *ck, int i) {
    return (i >= 0 && i < ck->n) ? &ck->t[i] : NULL;
}

void qm_checkpoint_close(qm_checkpoint *ck) {
    if (!ck) return;
    qm_gguf_close(ck->gguf);
    for (int i = 0; i < ck->n; i++) free((char *)ck->t[i].name);
    for (int i = 0; i < ck->n_files; i++) {
        if (ck->files[i].map) munmap(ck->files[i].map, ck->files[i].size);
        free(ck->files[i].path);
    }
    free(ck->files);
    free(ck->t);
    free(ck->sorted);
    free(ck->source);
    free(ck);
}

static qm_checkpoint *ck_new(const char *source, int n_files) {
    qm_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) return NULL;
    ck->source = strdup(source);
    ck->files = calloc((size_t)(n_files ? n_files : 1), sizeof *ck->files);
    if (!ck->source || !ck->files) {
        qm_checkpoint_close(ck);
        return NULL;
    }
    return ck;
}

qm_status qm_checkpoint_wrap_gguf(qm_gguf *g, const qm_tensor_ref *refs, int n, qm_checkpoint **out, qm_error *err) {
    *out = NULL;
    qm_checkpoint *ck = ck_new(qm_gguf_path(g), 0);
    if (!ck) {
        for (int i = 0; i < n; i++) free((char *)refs[i].name);
        qm_status st = qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", qm_gguf_path(g));
        qm_gguf_close(g);
        return st;
    }
    ck->gguf = g;
    qm_status st = QM_OK;
    for (int i = 0; i < n; i++) {
        qm_tensor_ref r = refs[i];
        if (!st) st = push_tensor(ck, &r, ck->source, err);
        if (st) free((char *)refs[i].name);
    }
    if (!st) st = build_index(ck, err);
    if (st) {
        qm_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return QM_OK;
}

qm_gguf *qm_checkpoint_gguf(const qm_checkpoint *ck) { return ck ? ck->gguf : NULL; }

qm_status qm_checkpoint_open_file(const char *path, qm_checkpoint **out, qm_error *err) {
    *out = NULL;
    qm_checkpoint *ck = ck_new(path, 1);
    if (!ck) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    qm_status st = load_file(ck, path, err);
    if (!st) st = build_index(ck, err);
    if (st) {
        qm_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return QM_OK;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {"tensor": "model-00001-of-00002.safetensors"}} */
/* The distinct shard files of weight_map, in order of first mention, into shards[] (*n_shards);
 * each must be a plain file name in dir that exists. */
static qm_status list_shards(const char *dir, const char *index_path, const cJSON *wm, const char **shards,
                             int *n_shards, qm_error *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e))
            return qm_fail(err, QM_ERR_FORMAT, "safetensors index %s: tensor \"%s\" maps to a non-string", index_path,
                           e->string);
        const char *fn = e->valuestring;
        if (!fn[0] || fn[0] == '/' || strstr(fn, ".."))
            return qm_fail(err, QM_ERR_FORMAT, "safetensors index %s: tensor \"%s\" maps to \"%s\", not a file name in %s",
                           index_path, e->string, fn, dir);
        int k = 0;
        while (k < *n_shards && strcmp(shards[k], fn)) k++;
        if (k < *n_shards) continue;
        char *p = path_join(dir, fn);
        if (!p) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", index_path);
        const bool ok = file_exists(p);
        free(p);
        if (!ok)
            return qm_fail(err, QM_ERR_IO, "safetensors index %s names shard %s (for tensor \"%s\"), which is missing",
                           index_path, fn, e->string);
        shards[(*n_shards)++] = fn;
    }
    return QM_OK;
}

/* Every tensor of weight_map is where the index says it is. */
static qm_status check_weight_map(const qm_checkpoint *ck, const char *dir, const char *index_path, const cJSON *wm,
                                  qm_error *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        const qm_tensor_ref *r = qm_checkpoint_find(ck, e->string);
        if (!r)
            return qm_fail(err, QM_ERR_FORMAT,
                           "safetensors index %s maps tensor \"%s\" to %s, but that shard has no such tensor",
                           index_path, e->string, e->valuestring);
        char *p = path_join(dir, e->valuestring);
        if (!p) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", index_path);
        const bool same = !strcmp(r->file, p);
        free(p);
        if (!same)
            return qm_fail(err, QM_ERR_FORMAT, "safetensors index %s maps tensor \"%s\" to %s, but it is in %s",
                           index_path, e->string, e->valuestring, r->file);
    }
    return QM_OK;
}

/* The shards of an index's weight_map, loaded into ck. */
static qm_status load_weight_map(qm_checkpoint *ck, const char *dir, const char *index_path, const cJSON *wm,
                                 qm_error *err) {
    const int n = cJSON_GetArraySize(wm);
    const char **shards = calloc((size_t)n, sizeof *shards);
    if (!shards) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", index_path);
    int n_shards = 0;
    qm_status st = list_shards(dir, index_path, wm, shards, &n_shards, err);
    for (int k = 0; !st && k < n_shards; k++) {
        char *p = path_join(dir, shards[k]);
        st = p ? load_file(ck, p, err) : qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", index_path);
        free(p);
    }
    free(shards);
    if (!st) st = build_index(ck, err);
    if (!st) st = check_weight_map(ck, dir, index_path, wm, err);
    return st;
}

static qm_status open_index(const char *dir, const char *index_path, qm_checkpoint **out, qm_error *err) {
    char *text = NULL;
    size_t len;
    qm_status st = qm_read_text_file(index_path, "safetensors index", &text, &len, err);
    if (st) return st;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return qm_fail(err, QM_ERR_FORMAT, "safetensors index %s is not valid JSON", index_path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    qm_checkpoint *ck = NULL;
    if (!cJSON_IsObject(wm))
        st = qm_fail(err, QM_ERR_FORMAT, "safetensors index %s has no \"weight_map\" object", index_path);
    else if (cJSON_GetArraySize(wm) == 0)
        st = qm_fail(err, QM_ERR_FORMAT, "safetensors index %s: \"weight_map\" is empty", index_path);
    else if (!(ck = ck_new(dir, cJSON_GetArraySize(wm))))
        st = qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", index_path);
    else
        st = load_weight_map(ck, dir, index_path, wm, err);
    cJSON_Delete(root);
    if (st) {
        qm_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return QM_OK;
}

qm_status qm_checkpoint_open(const char *model_dir, qm_checkpoint **out, qm_error *err) {
    *out = NULL;
    struct stat sb;
    if (stat(model_dir, &sb) != 0)
        return qm_fail(err, QM_ERR_IO, "model folder %s: %s", model_dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return qm_fail(err, QM_ERR_IO, "model folder %s is not a folder", model_dir);
    char *single = path_join(model_dir, "model.safetensors");
    char *index = path_join(model_dir, "model.safetensors.index.json");
    qm_status st;
    if (!single || !index) {
        st = qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", model_dir);
    } else if (file_exists(single)) {
        st = qm_checkpoint_open_file(single, out, err);
        if (!st) {
            free((*out)->source);
            (*out)->source = strdup(model_dir);
        }
    } else if (file_exists(index)) {
        st = open_index(model_dir, index, out, err);
    } else {
        st = qm_fail(err, QM_ERR_IO, "model folder %s has neither model.safetensors nor model.safetensors.index.json",
                     model_dir);
    }
    free(single);
    free(index);
    return st;
}

qm_status qm_checkpoint_expect(const qm_checkpoint *ck, const char *name, int ndim, const int64_t *shape,
                               const qm_tensor_ref **out, qm_error *err) {
    if (out) *out = NULL;
    char want[128], got[128];
    shape_str(want, sizeof want, ndim, shape);
    const qm_tensor_ref *r = qm_checkpoint_find(ck, name);
    if (!r)
        return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\" is missing (expected shape %s)",
                       ck->source ? ck->source : "checkpoint", name, want);
    bool ok = r->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = r->shape[i] == shape[i];
    if (!ok) {
        shape_str(got, sizeof got, r->ndim, r->shape);
        return qm_fail(err, QM_ERR_FORMAT, "%s: tensor \"%s\" has shape %s, expected %s", r->file, name, got, want);
    }
    if (out) *out = r;
    return QM_OK;
}

/* ---- writing ---- */

struct qm_st_writer {
    qm_atomic_file af;
    uint64_t expected, written;
};

static uint64_t tensor_bytes(const qm_tensor_out *t) {
    uint64_t n = qm_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

qm_status qm_st_writer_open(const char *path, const qm_tensor_out *tensors, int n, qm_st_writer **out,
                            qm_error *err) {
    *out = NULL;
    cJSON *h = cJSON_CreateObject();
    if (!h) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    cJSON *meta = cJSON_AddObjectToObject(h, "__metadata__");
    if (meta) cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    qm_status st = QM_OK;
    for (int i = 0; i < n && !st; i++) {
        const qm_tensor_out *t = &tensors[i];
        if (t->ndim < 0 || t->ndim > QM_MAX_DIMS) {
            st = qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\" has rank %d (0..%d)", path, t->name, t->ndim,
                         QM_MAX_DIMS);
            break;
        }
        if (cJSON_GetObjectItemCaseSensitive(h, t->name)) {
            st = qm_fail(err, QM_ERR_ARG, "%s: tensor \"%s\" given twice", path, t->name);
            break;
        }
        cJSON *e = cJSON_AddObjectToObject(h, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL, *offs = NULL;
        if (e) cJSON_AddStringToObject(e, "dtype", qm_dtype_name(t->dtype));
        for (int d = 0; shape && d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        uint64_t nb = tensor_bytes(t);
        if (e) offs = cJSON_AddArrayToObject(e, "data_offsets");
        if (offs) {
            cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
            cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
        }
        if (!offs) st = qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
        off += nb;
    }
    char *text = st ? NULL : cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (st) return st;
    if (!text) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    size_t len = strlen(text), padded = (len + 8 + 7) / 8 * 8 - 8; /* 8 + header is a multiple of 8 */
    qm_st_writer *w = calloc(1, sizeof *w);
    char *hdr = malloc(8 + padded);
    if (!w || !hdr) {
        free(w);
        free(hdr);
        cJSON_free(text);
        return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < 8; i++) hdr[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
    memcpy(hdr + 8, text, len);
    memset(hdr + 8 + len, ' ', padded - len);
    cJSON_free(text);
    w->expected = off;
    st = qm_atomic_begin(&w->af, path, err);
    if (!st) st = qm_atomic_write(&w->af, hdr, 8 + padded, err);
    free(hdr);
    if (st) {
        qm_atomic_abort(&w->af);
        free(w);
        return st;
    }
    *out = w;
    return QM_OK;
}

qm_status qm_st_writer_write(qm_st_writer *w, const void *data, size_t nbytes, qm_error *err) {
    if (w->written + nbytes > w->expected)
        return qm_fail(err, QM_ERR_ARG, "%s: %llu bytes of tensor data written, more than the header's %llu",
                       w->af.path, (unsigned long long)(w->written + nbytes), (unsigned long long)w->expected);
    w->written += nbytes;
    return qm_atomic_write(&w->af, data, nbytes, err);
}

qm_status qm_st_writer_close(qm_st_writer *w, bool commit, qm_error *err) {
    if (!w) return QM_OK;
    qm_status st = QM_OK;
    if (commit && w->written != w->expected) {
        st = qm_fail(err, QM_ERR_ARG, "%s: %llu bytes of tensor data written, the header says %llu", w->af.path,
                     (unsigned long long)w->written, (unsigned long long)w->expected);
        commit = false;
    }
    if (commit) st = qm_atomic_commit(&w->af, err);
    else qm_atomic_abort(&w->af);
    free(w);
    return st;
}

/* Data in order of element size, largest first (as the safetensors Python writer does), so that
 * every tensor stays aligned to its element size. */
qm_status qm_safetensors_write(const char *path, const qm_tensor_out *tensors, int n, qm_error *err) {
    qm_tensor_out *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    int k = 0;
    for (size_t sz = 4; sz >= 2; sz /= 2)
        for (int i = 0; i < n; i++)
            if (qm_dtype_size(tensors[i].dtype) == sz) order[k++] = tensors[i];
    qm_st_writer *w;
    qm_status st = qm_st_writer_open(path, order, k, &w, err);
    for (int i = 0; !st && i < k; i++) st = qm_st_writer_write(w, order[i].data, (size_t)tensor_bytes(&order[i]), err);
    if (!st) st = qm_st_writer_close(w, true, err);
    else if (w) qm_st_writer_close(w, false, NULL);
    free(order);
    return st;
}

qm_status qm_safetensors_write_index(const char *path, const char *const *names, const char *const *files, int n,
                                     uint64_t total_size, qm_error *err) {
    cJSON *o = cJSON_CreateObject();
    cJSON *meta = o ? cJSON_AddObjectToObject(o, "metadata") : NULL;
    cJSON *wm = meta ? cJSON_AddObjectToObject(o, "weight_map") : NULL;
    if (!wm) {
        cJSON_Delete(o);
        return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    }
    cJSON_AddNumberToObject(meta, "total_size", (double)total_size);
    for (int i = 0; i < n; i++) cJSON_AddStringToObject(wm, names[i], files[i]);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    size_t len = strlen(text);
    text[len] = '\n';
    qm_status st = qm_write_file_atomic(path, text, len + 1, err);
    cJSON_free(text);
    return st;
}
