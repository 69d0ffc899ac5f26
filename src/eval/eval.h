/* GSM8K evaluation: data files, prompts, answer extraction, results files, statistics.
 * Everything here is pure library code (no engine calls): eval/runner.h drives the engine.
 *
 * Results file (JSONL, one line per question, written and flushed as each question finishes):
 *   index (0-based line of the data file), question, gold, completion, strict, flex (normalized
 *   numbers as strings, or null), strict_correct, flex_correct, prompt_tokens, gen_tokens, ms,
 *   and, so that `qmesh eval report` can recompute a run's summary from the lines alone:
 *   mesh ("RxC"), batch, run (1 for the first run, +1 for each --resume), t_ms (ms from the start
 *   of that run to the moment the line was written). Throughput of a file = sum(gen_tokens) /
 *   sum over runs of max(t_ms). */
#ifndef QM_EVAL_EVAL_H
#define QM_EVAL_EVAL_H

#include <qmesh.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- numbers and extraction (extract.c) ---- */

#define QM_EVAL_NUM_MAX 64 /* longest normalized number kept (NUL included); longer = no number */

/* A number: an optional '-', an optional '$' followed by spaces, a digit, then digits and commas,
 * then optionally '.' and at least one digit (a '.' with no digit after it ends the sentence).
 * Returns the number of bytes it spans at s, or 0 when no number starts at s. */
size_t qm_eval_number_at(const char *s);

/* Normalizes the number spanning s[0..len): no commas, no '$', no leading zeros, no trailing zeros
 * after the point and no bare point ("$1,234." -> "1234", "18.00" -> "18", "007" -> "7",
 * "-0.25" stays, "-0" -> "0"). False when s[0..len) is not a number or does not fit in out. */
bool qm_eval_normalize(const char *s, size_t len, char out[QM_EVAL_NUM_MAX]);

typedef struct {
    bool has_strict, has_flex;
    char strict[QM_EVAL_NUM_MAX]; /* number right after the last "The answer is" or "####" */
    char flex[QM_EVAL_NUM_MAX];   /* last number anywhere */
} qm_eval_extraction;

/* strict: the number right after the later of the last "The answer is" (any case, optional ':')
 * and the last "####"; null when that marker is not followed by a number (or when neither occurs).
 * flex: the last number anywhere in the text. */
void qm_eval_extract(const char *completion, qm_eval_extraction *out);

/* The gold number of a GSM8K answer (the number after its last "####"). False if none. */
bool qm_eval_gold(const char *answer, char out[QM_EVAL_NUM_MAX]);

/* Numerically equal (both normalized first; NULL is never equal). */
bool qm_eval_numbers_equal(const char *a, const char *b);

/* ---- data files (data.c) ---- */

typedef enum {
    QM_EVAL_DATA_GSM8K,     /* {"question", "answer"}: question required, gold from "#### N" */
    QM_EVAL_DATA_EXEMPLARS, /* {"question", "rationale", "answer"}: all three required */
} qm_eval_data_kind;

typedef struct {
    int index;        /* 0-based line of the file */
    char *question;
    char *answer;     /* NULL if absent */
    char *rationale;  /* exemplars only */
    bool has_gold;
    char gold[QM_EVAL_NUM_MAX];
} qm_eval_problem;

typedef struct {
    qm_eval_problem *items;
    int n;
} qm_eval_dataset;

/* Reads a JSONL file; limit > 0 keeps the first `limit` problems. Blank lines are skipped but
 * still counted as lines. Errors name the file and line. */
qm_status qm_eval_data_load(const char *path, qm_eval_data_kind kind, int limit, qm_eval_dataset *out,
                            qm_error *err);
void qm_eval_data_free(qm_eval_dataset *d);

/* ---- prompts (prompt.c) ---- */

typedef enum {
    QM_EVAL_PROMPT_COT, /* "Q: ...\nA: <rationale> The answer is N.\n\n" ... "Q: <test>\nA:" */
    QM_EVAL_PROMPT_QA,  /* "Question: ...\nAnswer: <answer>\n\n" ... "Question: <test>\nAnswer:" */
} qm_eval_prompt_style;

/* The few-shot prefix from the first k problems of shots (k = 0: ""). COT needs exemplars
 * (question, rationale, answer); QA takes question and the full answer. Malloc'd. */
qm_status qm_eval_prompt_prefix(qm_eval_prompt_style style, const qm_eval_dataset *shots, int k, char **out,
                                qm_error *err);
/* The test-question part that follows the prefix. Malloc'd; NULL if out of memory. */
char *qm_eval_prompt_suffix(qm_eval_prompt_style style, const char *question);
/* Stop strings of a style (static, not to be freed). */
const char *const *qm_eval_prompt_stops(qm_eval_prompt_style style, int *n);

/* ChatML: `wrapped` is qm_chat_wrap(prefix + suffix); splits it into the shared part (system and
 * user header + prefix) and the rest. Both malloc'd. */
qm_status qm_eval_chat_split(const char *wrapped, const char *prefix, char **shared, char **rest, qm_error *err);

/* ---- results files (results.c) ---- */

typedef struct {
    int index;
    char *question;
    char *gold;        /* NULL = null */
    char *completion;
    char *strict;      /* NULL = null */
    char *flex;        /* NULL = null */
    bool strict_correct, flex_correct;
    int prompt_tokens, gen_tokens;
    double ms;
    char mesh[32];     /* "" if absent */
    int batch;         /* 0 if absent */
    int run;           /* 0 if absent */
    double t_ms;       /* -1 if absent */
    char stop[12];     /* why the completion ended: "eos", "stop" (a stop string), "length" (the
                          token limit: the answer may be cut), "cancelled"; "" if absent */
} qm_eval_result;

typedef struct {
    qm_eval_result *items;
    int n, cap;
    long valid_bytes;  /* bytes of whole, valid lines */
    bool had_partial;  /* a truncated last line was found (and dropped) */
} qm_eval_results;

/* Reads a results file. A last line with no newline (a run killed while writing) is dropped and
 * reported in had_partial; when repair is true the file is truncated to valid_bytes. Any other
 * line that is not a result is an error naming the line; so is an index that appears twice. */
qm_status qm_eval_results_load(const char *path, bool repair, qm_eval_results *out, qm_error *err);
void qm_eval_results_free(qm_eval_results *r);
/* Takes ownership of nothing: copies the strings. */
qm_status qm_eval_results_add(qm_eval_results *r, const qm_eval_result *item, qm_error *err);
const qm_eval_result *qm_eval_results_find(const qm_eval_results *r, int index);

/* One result as one JSON line (with '\n'), malloc'd; NULL if out of memory. */
char *qm_eval_result_line(const qm_eval_result *r);

/* ---- statistics (stats.c) ---- */

/* Wilson score interval for k successes out of n at normal quantile z (1.96 for 95%).
 * n = 0 gives [0, 1]. */
void qm_eval_wilson(long k, long n, double z, double *lo, double *hi);

typedef struct {
    long n, strict_correct, flex_correct;
    double strict_acc, flex_acc;
    double strict_lo, strict_hi, flex_lo, flex_hi; /* 95% Wilson */
    long prompt_tokens, gen_tokens;
    double wall_s;        /* sum over runs of the largest t_ms (0 if no t_ms) */
    double tokens_per_s;  /* gen_tokens / wall_s (0 if wall_s is 0) */
    int runs;
    char mesh[64];        /* the mesh of the lines, or "mixed" */
    int batch;            /* the batch of the lines, or -1 if mixed */
    long length_stops;    /* lines whose completion stopped at the token limit (stop "length") */
} qm_eval_summary;

void qm_eval_summarize(const qm_eval_results *r, qm_eval_summary *s);

#endif
