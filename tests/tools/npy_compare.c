/* npy_compare: compare two float32 .npy files (a result and a reference).
 *
 *   npy_compare A.npy B.npy [--rel TOL] [--exact] [--quiet]
 *
 * A is the result under test, B the reference. Both must be NumPy format v1/v2/v3, dtype '<f4',
 * C order, with the same shape. Prints the largest absolute difference, the largest |B|, their
 * ratio (the relative error) and the first elements that differ.
 *
 *   --rel TOL  pass when max|A-B| / max|B| <= TOL (default 1e-4) over the finite values; a NaN or
 *              Inf in either file that the other does not hold bit for bit fails.
 *   --exact    pass only when the data bytes are identical (bit for bit).
 *   --cols C.npy   compare only these columns of A's last dimension (int32 indices): for references
 *                  that keep a subset of the vocabulary (tests/fixtures/gguf/)
 *   --scale S.npy  per-row scale (float32, one per row of B): the error of row r is
 *                  max|A-B| over the row / S[r] (max |logit| of the full reference row)
 *
 * Exit status: 0 within tolerance, 1 outside it, 2 on unreadable or mismatched files / bad usage.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIMS 8

typedef struct {
    const char *path;
    int ndim;
    long long shape[MAX_DIMS];
    size_t count;
    float *data;
    unsigned char *raw; /* the data bytes as stored (little endian) */
    int is_int;         /* '<i4': data holds the values converted to float */
} npy;

static int fail(const char *path, const char *msg) {
    fprintf(stderr, "npy_compare: %s: %s\n", path, msg);
    return 2;
}

/* Find "'key':" in the header dict; returns a pointer just past the colon, or NULL. */
static const char *find_key(const char *h, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) {
        snprintf(pat, sizeof pat, "\"%s\"", key);
        p = strstr(h, pat);
    }
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static int load(const char *path, npy *o) {
    memset(o, 0, sizeof *o);
    o->path = path;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "npy_compare: %s: %s\n", path, strerror(errno));
        return 2;
    }
    unsigned char pre[12];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fclose(f);
        return fail(path, "not a .npy file (bad magic)");
    }
    int major = pre[6];
    size_t hlen;
    if (major == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            fclose(f);
            return fail(path, "truncated header");
        }
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)pre[10] << 16) | ((size_t)pre[11] << 24);
    } else {
        fclose(f);
        return fail(path, "unsupported .npy version");
    }
    if (hlen == 0 || hlen > (1u << 24)) {
        fclose(f);
        return fail(path, "implausible header length");
    }
    char *h = malloc(hlen + 1);
    if (!h || fread(h, 1, hlen, f) != hlen) {
        free(h);
        fclose(f);
        return fail(path, "truncated header");
    }
    h[hlen] = '\0';

    int rc = 0;
    const char *p = find_key(h, "descr");
    if (p && (!strncmp(p, "'<i4'", 5) || !strncmp(p, "\"<i4\"", 5))) o->is_int = 1;
    else if (!p || (strncmp(p, "'<f4'", 5) != 0 && strncmp(p, "\"<f4\"", 5) != 0)) {
        rc = fail(path, "dtype is not '<f4' (little-endian float32) or '<i4'");
        goto out;
    }
    p = find_key(h, "fortran_order");
    if (!p || strncmp(p, "False", 5) != 0) {
        rc = fail(path, "not C order (fortran_order must be False)");
        goto out;
    }
    p = find_key(h, "shape");
    if (!p || *p != '(') {
        rc = fail(path, "no shape in header");
        goto out;
    }
    p++;
    o->count = 1;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        long long d = strtoll(p, &end, 10);
        if (end == p || errno || d < 0 || o->ndim == MAX_DIMS) {
            rc = fail(path, "bad shape in header");
            goto out;
        }
        o->shape[o->ndim++] = d;
        if (d > 0 && o->count > SIZE_MAX / 4 / (size_t)d) {
            rc = fail(path, "shape too large");
            goto out;
        }
        o->count *= (size_t)d;
        p = end;
    }
    size_t nbytes = o->count * 4;
    o->raw = malloc(nbytes ? nbytes : 1);
    o->data = malloc(nbytes ? nbytes : 1);
    if (!o->raw || !o->data) {
        rc = fail(path, "out of memory");
        goto out;
    }
    if (fread(o->raw, 1, nbytes, f) != nbytes) {
        rc = fail(path, "data shorter than the shape says");
        goto out;
    }
    unsigned char extra;
    if (fread(&extra, 1, 1, f) != 0) {
        rc = fail(path, "data longer than the shape says");
        goto out;
    }
    for (size_t i = 0; i < o->count; i++) {
        const unsigned char *b = o->raw + 4 * i;
        uint32_t u = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
        if (o->is_int) o->data[i] = (float)(int32_t)u;
        else memcpy(&o->data[i], &u, 4);
    }
out:
    free(h);
    fclose(f);
    return rc;
}

static void release(npy *o) {
    free(o->data);
    free(o->raw);
}

static void shape_str(const npy *o, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < o->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", o->shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

/* Multi-index of flat position i, e.g. "[3, 17]". */
static void index_str(const npy *o, size_t i, char *buf, size_t n) {
    long long idx[MAX_DIMS];
    for (int d = o->ndim - 1; d >= 0; d--) {
        long long s = o->shape[d] ? o->shape[d] : 1;
        idx[d] = (long long)(i % (size_t)s);
        i /= (size_t)s;
    }
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < o->ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", idx[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* A [.., V] -> A [.., n] keeping the columns listed in cols_path (int32). */
static int select_cols(npy *a, const char *cols_path) {
    npy c;
    int rc = load(cols_path, &c);
    if (rc) return rc;
    size_t V = a->ndim ? (size_t)a->shape[a->ndim - 1] : 0, n = c.count, rows = V ? a->count / V : 0;
    for (size_t j = 0; j < n; j++)
        if (!c.is_int || c.data[j] < 0 || (size_t)c.data[j] >= V) {
            release(&c);
            return fail(cols_path, "column indices must be int32 inside the result's last dimension");
        }
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < n; j++) {
            size_t from = r * V + (size_t)c.data[j], to = r * n + j;
            a->data[to] = a->data[from];
            memmove(a->raw + 4 * to, a->raw + 4 * from, 4);
        }
    a->shape[a->ndim - 1] = (long long)n;
    a->count = rows * n;
    release(&c);
    return 0;
}

/* Per-row relative error against scale[r]; prints the worst row. */
static int compare_scaled(npy *a, npy *b, const char *scale_path, double tol) {
    npy s;
    int rc = load(scale_path, &s);
    size_t rows = b->ndim ? (size_t)b->shape[0] : 0, cols = rows ? b->count / rows : 0;
    if (!rc && (a->count != b->count || s.count != rows)) rc = fail(scale_path, "shapes of result, reference and scale disagree");
    double worst = 0.0;
    size_t worst_row = 0;
    for (size_t r = 0; !rc && r < rows; r++) {
        double m = 0.0;
        for (size_t j = 0; j < cols; j++) {
            double d = fabs((double)a->data[r * cols + j] - (double)b->data[r * cols + j]);
            if (!(d <= m)) m = d; /* NaN counts as the worst */
        }
        double rel = s.data[r] > 0 ? m / s.data[r] : m;
        if (!(rel <= worst)) {
            worst = rel;
            worst_row = r;
        }
    }
    if (!rc) printf("rows %zu x %zu columns  worst rel=%.6g (row %zu)  -> %s\n", rows, cols, worst, worst_row,
                    worst <= tol ? "OK" : "FAIL");
    int ok = !rc && worst <= tol;
    if (!rc) release(&s);
    release(a);
    release(b);
    return rc ? rc : (ok ? 0 : 1);
}

static void usage(void) {
    fprintf(stderr, "usage: npy_compare A.npy B.npy [--rel TOL] [--exact] [--quiet] [--cols C.npy] [--scale S.npy]\n"
                    "  A is the result, B the reference; both float32 '<f4' C-order .npy of the same shape.\n"
                    "  exit 0: within tolerance (default --rel 1e-4: max|A-B|/max|B|), 1: not, 2: bad files\n");
}

int main(int argc, char **argv) {
    const char *pa = NULL, *pb = NULL, *pcols = NULL, *pscale = NULL;
    double tol = 1e-4;
    int exact = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rel") && i + 1 < argc) {
            char *end;
            tol = strtod(argv[++i], &end);
            if (*end || !(tol >= 0)) {
                usage();
                return 2;
            }
        } else if (!strcmp(argv[i], "--cols") && i + 1 < argc) {
            pcols = argv[++i];
        } else if (!strcmp(argv[i], "--scale") && i + 1 < argc) {
            pscale = argv[++i];
        } else if (!strcmp(argv[i], "--exact")) {
            exact = 1;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            usage();
            return 2;
        } else if (!pa) {
            pa = argv[i];
        } else if (!pb) {
            pb = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (!pa || !pb) {
        usage();
        return 2;
    }
    npy a, b;
    int rc = load(pa, &a);
    if (rc) return rc;
    rc = load(pb, &b);
    if (rc) {
        release(&a);
        return rc;
    }
    if (pcols && (rc = select_cols(&a, pcols))) {
        release(&a);
        release(&b);
        return rc;
    }
    if (pscale) return compare_scaled(&a, &b, pscale, tol);
    char sa[128], sb[128];
    shape_str(&a, sa, sizeof sa);
    shape_str(&b, sb, sizeof sb);
    int same_shape = a.ndim == b.ndim;
    for (int d = 0; same_shape && d < a.ndim; d++) same_shape = a.shape[d] == b.shape[d];
    if (!same_shape) {
        fprintf(stderr, "npy_compare: shapes differ: %s is %s, %s is %s\n", pa, sa, pb, sb);
        release(&a);
        release(&b);
        return 2;
    }

    double max_abs = 0.0, max_ref = 0.0;
    size_t worst = 0, ndiff = 0, nbad = 0;
    for (size_t i = 0; i < a.count; i++) {
        double x = a.data[i], y = b.data[i];
        if (!isfinite(x) || !isfinite(y)) {
            if (memcmp(a.raw + 4 * i, b.raw + 4 * i, 4) != 0) nbad++;
            continue;
        }
        if (fabs(y) > max_ref) max_ref = fabs(y);
        double d = fabs(x - y);
        if (d > max_abs) {
            max_abs = d;
            worst = i;
        }
    }
    int identical = memcmp(a.raw, b.raw, a.count * 4) == 0;
    double rel = max_ref > 0 ? max_abs / max_ref : (max_abs > 0 ? INFINITY : 0.0);
    int ok = exact ? identical : (nbad == 0 && rel <= tol);

    printf("shape %s  max_abs_err=%.6g  max_abs_ref=%.6g  rel=%.6g  %s  -> %s\n", sa, max_abs, max_ref, rel,
           identical ? "(bit-identical)" : "", ok ? "OK" : (exact ? "FAIL (not bit-identical)" : "FAIL"));
    if (nbad) printf("  %zu non-finite value(s) in the result or differing in the reference\n", nbad);
    if (!identical && !quiet) {
        char ix[160];
        for (size_t i = 0; i < a.count && ndiff < 5; i++) {
            if (memcmp(a.raw + 4 * i, b.raw + 4 * i, 4) == 0) continue;
            index_str(&a, i, ix, sizeof ix);
            printf("  differs at %s: %.9g vs ref %.9g (diff %.3g)\n", ix, (double)a.data[i], (double)b.data[i],
                   (double)a.data[i] - (double)b.data[i]);
            ndiff++;
        }
        if (max_abs > 0) {
            index_str(&a, worst, ix, sizeof ix);
            printf("  largest diff at %s: %.9g vs ref %.9g\n", ix, (double)a.data[worst], (double)b.data[worst]);
        }
    }
    release(&a);
    release(&b);
    return ok ? 0 : 1;
}
