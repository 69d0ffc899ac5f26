/* File, folder and program fingerprints (fingerprint.h). */
#include "util/fingerprint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HEAD_BYTES (1u << 20)
#define SAMPLES 64
#define SAMPLE_BYTES 4096u

uint64_t qm_fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* h extended by the n bytes of f at off; 0 when they cannot all be read. */
static int hash_at(FILE *f, long long off, size_t n, unsigned char *buf, uint64_t *h) {
    if (fseeko(f, (off_t)off, SEEK_SET) != 0 || fread(buf, 1, n, f) != n) return 0;
    *h = qm_fnv1a(*h, buf, n);
    return 1;
}

static qm_status file_fingerprint(const char *path, long long size, uint64_t *out, qm_error *err) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc(HEAD_BYTES);
    uint64_t h = qm_fnv1a(QM_FNV_OFFSET, &size, sizeof size);
    int ok = f && buf;
    const long long head = size < HEAD_BYTES ? size : HEAD_BYTES;
    if (ok) ok = hash_at(f, 0, (size_t)head, buf, &h);
    const long long rest = size - head;
    for (int i = 0; ok && rest >= (long long)SAMPLE_BYTES && i < SAMPLES; i++)
        ok = hash_at(f, head + (rest - SAMPLE_BYTES) / (SAMPLES - 1) * i, SAMPLE_BYTES, buf, &h);
    const int saved = errno, nomem = !buf;
    if (f) fclose(f);
    free(buf);
    if (nomem) return qm_fail(err, QM_ERR_NOMEM, "fingerprint of %s: out of memory", path);
    if (!ok) return qm_fail(err, QM_ERR_IO, "fingerprint of %s: cannot read it: %s", path, strerror(saved));
    *out = h;
    return QM_OK;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names of the folder's regular files, sorted; *n of them (malloc'd, NULL when none). */
static qm_status list_files(const char *dir, char ***names, int *n, qm_error *err) {
    DIR *d = opendir(dir);
    if (!d) return qm_fail(err, QM_ERR_IO, "fingerprint of %s: %s", dir, strerror(errno));
    char **v = NULL;
    int k = 0, cap = 0;
    qm_status st = QM_OK;
    for (struct dirent *e; !st && (e = readdir(d));) {
        char p[4096];
        struct stat sb;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p || stat(p, &sb) || !S_ISREG(sb.st_mode))
            continue;
        if (k == cap) {
            char **w = realloc(v, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *w);
            if (!w) st = qm_fail(err, QM_ERR_NOMEM, "out of memory");
            else v = w;
        }
        if (!st && !(v[k++] = strdup(e->d_name))) st = qm_fail(err, QM_ERR_NOMEM, "out of memory");
    }
    closedir(d);
    if (k > 1) qsort(v, (size_t)k, sizeof *v, by_name);
    *names = v;
    *n = k;
    return st;
}

static qm_status folder_fingerprint(const char *dir, uint64_t *out, qm_error *err) {
    char **names = NULL;
    int n = 0;
    qm_status st = list_files(dir, &names, &n, err);
    uint64_t h = QM_FNV_OFFSET;
    for (int i = 0; !st && i < n; i++) {
        char p[4096];
        struct stat sb;
        uint64_t fh = 0;
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (stat(p, &sb)) st = qm_fail(err, QM_ERR_IO, "fingerprint of %s: %s", p, strerror(errno));
        else st = file_fingerprint(p, (long long)sb.st_size, &fh, err);
        h = qm_fnv1a(qm_fnv1a(h, names[i], strlen(names[i]) + 1), &fh, sizeof fh);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (!st) *out = h;
    return st;
}

qm_status qm_path_fingerprint(const char *path, uint64_t *out, qm_error *err) {
    struct stat sb;
    if (stat(path, &sb)) return qm_fail(err, QM_ERR_IO, "fingerprint of %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return folder_fingerprint(path, out, err);
    return file_fingerprint(path, (long long)sb.st_size, out, err);
}

uint64_t qm_program_fingerprint(void) {
    uint64_t h = qm_fnv1a(QM_FNV_OFFSET, QMESH_VERSION, sizeof QMESH_VERSION);
    FILE *f = fopen("/proc/self/exe", "rb");
    if (!f) return h;
    unsigned char buf[1 << 16];
    for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) h = qm_fnv1a(h, buf, n);
    fclose(f);
    return h;
}
