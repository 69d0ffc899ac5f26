#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

int cli_error(const char *cmd, const qm_error *err) {
    fprintf(stderr, "qmesh %s: %s\n", cmd, err->msg[0] ? err->msg : qm_status_name(err->code));
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "qmesh %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'qmesh %s --help'.\n", cmd);
    return 2;
}

bool cli_parse_int(const char *s, long min, long max, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, double min, double max, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= min && v <= max)) return false;
    *out = v;
    return true;
}

bool cli_parse_mesh(const char *s, int *rows, int *cols, qm_error *err) {
    long r, c;
    char buf[64];
    const char *x = s ? strpbrk(s, "xX") : NULL;
    if (!x || (size_t)(x - s) >= sizeof buf) goto bad;
    snprintf(buf, sizeof buf, "%.*s", (int)(x - s), s);
    if (!cli_parse_int(buf, 1, 4096, &r) || !cli_parse_int(x + 1, 1, 4096, &c)) goto bad;
    *rows = (int)r;
    *cols = (int)c;
    return true;
bad:
    qm_fail(err, QM_ERR_ARG, "bad mesh '%s': expected RxC with R, C >= 1 (rows = replicas, columns = tensor shards), e.g. 1x8 or 2x4",
            s ? s : "");
    return false;
}
