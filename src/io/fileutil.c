#include "io/fileutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

qm_status qm_read_text_file(const char *path, const char *what, char **text, size_t *len, qm_error *err) {
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return qm_fail(err, QM_ERR_IO, "cannot open %s file %s: %s", what, path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return qm_fail(err, QM_ERR_IO, "%s file %s is not a regular file", what, path);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return qm_fail(err, QM_ERR_NOMEM, "%s file %s: cannot allocate %zu bytes", what, path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (got != n || bad) {
        free(buf);
        return qm_fail(err, QM_ERR_IO, "cannot read %s file %s (read %zu of %zu bytes)", what, path, got, n);
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return QM_OK;
}

qm_status qm_atomic_begin(qm_atomic_file *af, const char *path, qm_error *err) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->path = strdup(path);
    af->tmp = malloc(n + 8);
    af->buf = malloc(1 << 20);
    if (!af->path || !af->tmp || !af->buf) {
        qm_atomic_abort(af);
        return qm_fail(err, QM_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(af->tmp, path, n);
    memcpy(af->tmp + n, ".XXXXXX", 8);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        int e = errno;
        free(af->tmp);
        af->tmp = NULL;
        qm_atomic_abort(af);
        return qm_fail(err, QM_ERR_IO, "cannot create a temporary file next to %s: %s", path, strerror(e));
    }
    (void)fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        qm_atomic_abort(af);
        return qm_fail(err, QM_ERR_IO, "cannot open %s for writing", path);
    }
    setvbuf(af->f, af->buf, _IOFBF, 1 << 20);
    return QM_OK;
}

qm_status qm_atomic_write(qm_atomic_file *af, const void *data, size_t n, qm_error *err) {
    if (n && fwrite(data, 1, n, af->f) != n)
        return qm_fail(err, QM_ERR_IO, "cannot write %s: %s", af->path, strerror(errno));
    return QM_OK;
}

qm_status qm_atomic_commit(qm_atomic_file *af, qm_error *err) {
    qm_status st = QM_OK;
    int bad = fflush(af->f) != 0 || ferror(af->f);
    int e = errno;
    if (fclose(af->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    af->f = NULL;
    if (bad) {
        st = qm_fail(err, QM_ERR_IO, "cannot write %s: %s", af->path, strerror(e));
    } else if (rename(af->tmp, af->path) != 0) {
        st = qm_fail(err, QM_ERR_IO, "cannot rename %s to %s: %s", af->tmp, af->path, strerror(errno));
    } else {
        free(af->tmp);
        af->tmp = NULL;
    }
    qm_atomic_abort(af);
    return st;
}

void qm_atomic_abort(qm_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    free(af->buf);
    memset(af, 0, sizeof *af);
}

qm_status qm_write_file_atomic(const char *path, const void *data, size_t n, qm_error *err) {
    qm_atomic_file af;
    qm_status st = qm_atomic_begin(&af, path, err);
    if (st) return st;
    if ((st = qm_atomic_write(&af, data, n, err))) {
        qm_atomic_abort(&af);
        return st;
    }
    return qm_atomic_commit(&af, err);
}

qm_status qm_copy_file(const char *src, const char *dst, qm_error *err) {
    FILE *in = fopen(src, "rb");
    if (!in) return qm_fail(err, QM_ERR_IO, "cannot open %s: %s", src, strerror(errno));
    qm_atomic_file af;
    qm_status st = qm_atomic_begin(&af, dst, err);
    if (st) {
        fclose(in);
        return st;
    }
    char buf[65536];
    size_t n;
    while (!st && (n = fread(buf, 1, sizeof buf, in)) > 0) st = qm_atomic_write(&af, buf, n, err);
    if (!st && ferror(in)) st = qm_fail(err, QM_ERR_IO, "cannot read %s", src);
    fclose(in);
    if (st) {
        qm_atomic_abort(&af);
        return st;
    }
    return qm_atomic_commit(&af, err);
}
