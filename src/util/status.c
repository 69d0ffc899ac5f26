#include <qmesh.h>

#include <stdarg.h>
#include <stdio.h>

qm_status qm_fail(qm_error *err, qm_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

const char *qm_status_name(qm_status s) {
    switch (s) {
    case QM_OK: return "ok";
    case QM_ERR_IO: return "io error";
    case QM_ERR_FORMAT: return "format error";
    case QM_ERR_CONFIG: return "config error";
    case QM_ERR_ARG: return "argument error";
    case QM_ERR_NOMEM: return "out of memory";
    case QM_ERR_COMM: return "communication error";
    case QM_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown error";
}
