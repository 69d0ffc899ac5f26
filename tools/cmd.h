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
int cmd_quantize(int argc, char **argv);     /* cmd_quantize.c */
int cmd_serve(int argc, char **argv);        /* cmd_serve.c: the OpenAI-compatible HTTP server */

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

/* Engine flags shared by logits, generate, bench and eval (engine_flags.c):
 *   -m/--model DIR, --mesh RxC, --backend threads|mpi, --threads N, --isa NAME, --ctx N, --batch B,
 *   --step-tokens N. Returns 1 if argv[*i] was one of them (and advances *i past its value),
 *   0 if not, -1 on a bad value (message printed, exit code 2 is the caller's). */
#include "engine/engine.h"
int cli_engine_flag(const char *cmd, int argc, char **argv, int *i, qm_engine_opts *o, char *mesh_str, size_t mesh_cap);
/* The usage lines of those flags. */
extern const char cli_engine_flags_help[];
/* A subcommand's argv[*i]: -h/--help prints usage then the engine flags' lines and returns
 * CLI_FLAG_HELP; otherwise as cli_engine_flag (1 taken, 0 not an engine flag, -1 a bad value). */
#define CLI_FLAG_HELP 2
int cli_subcommand_flag(const char *cmd, const char *usage, int argc, char **argv, int *i, qm_engine_opts *o,
                        char *mesh_str, size_t mesh_cap);
/* Fills o with defaults (1x1, batch 1, backend not chosen yet). */
void cli_engine_defaults(qm_engine_opts *o);
/* The backend when --backend is not given: mpi under mpirun (more than one rank), else threads. */
const char *cli_default_backend(void);
/* Applies cli_default_backend when no --backend was given. */
void cli_engine_finalize(qm_engine_opts *o);

#endif
