/* Subcommands of the qmesh program. Each returns the process exit code:
 * 0 success, 1 failure at run time (message on stderr), 2 bad usage. */
#ifndef QM_TOOLS_CMD_H
#define QM_TOOLS_CMD_H

#include <qmesh.h>
#include <stdbool.h>

int cmd_tokenize(int argc, char **argv);     /* cmd_tokenize.c */
int cmd_detokenize(int argc, char **argv);   /* cmd_tokenize.c */
int cmd_random_model(int argc, char **argv); /* cmd_random_model.c */
int cmd_logits(int argc, char **argv);       /* cmd_logits.c */
int cmd_generate(int argc, char **argv);     /* cmd_generate.c */
int cmd_bench(int argc, char **argv);        /* cmd_bench.c */
int cmd_eval(int argc, char **argv);         /* cmd_eval.c: gsm8k, extract, compare, report */

/* Shared helpers (cli.c). */
/* Prints "qmesh <cmd>: <message>" to stderr; returns 1. */
int cli_error(const char *cmd, const qm_error *err);
/* Prints "qmesh <cmd>: <fmt...>\nTry 'qmesh <cmd> --help'." to stderr; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "RxC" with R, C >= 1 -> rows, cols; false with a message in err otherwise. */
bool cli_parse_mesh(const char *s, int *rows, int *cols, qm_error *err);
/* Whole-string integer / float parsing with range checks. */
bool cli_parse_int(const char *s, long min, long max, long *out);
bool cli_parse_float(const char *s, double min, double max, double *out);

#endif
