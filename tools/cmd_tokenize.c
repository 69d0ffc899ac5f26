/* qmesh tokenize / detokenize: text on stdin -> ids, ids on stdin -> text. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "text/tokenizer.h"

static const char tokenize_usage[] =
    "usage: qmesh tokenize --tokenizer DIR|FILE [--jsonl] [--no-special]\n"
    "\n"
    "Reads UTF-8 text on stdin and writes its token ids on one line, separated by spaces.\n"
    "By default special tokens written in the text (<|im_start|>, <|endoftext|>, ...) become\n"
    "their ids; --no-special encodes them as plain text.\n"
    "\n"
    "  --tokenizer P  a tokenizer.json, or a model folder holding one\n"
    "  --jsonl        each input line is {\"text\": ...}; each output line is {\"ids\": [...]}\n"
    "  --no-special   special-token strings in the text are plain text, not control ids (added\n"
    "                 tokens that are not special, like <think>, are still recognised)\n"
    "  -h, --help     this text\n";

static const char detokenize_usage[] =
    "usage: qmesh detokenize --tokenizer DIR|FILE\n"
    "\n"
    "Reads token ids (integers separated by white space) on stdin and writes their text.\n"
    "Bytes that are not valid UTF-8 come out as U+FFFD.\n"
    "\n"
    "  --tokenizer P  a tokenizer.json, or a model folder holding one\n"
    "  -h, --help     this text\n";

typedef struct {
    const char *tokenizer;
    bool jsonl;
    bool no_special;
    bool help;
} options;

/* Returns 0, or the exit code of a usage error. allow_jsonl: the tokenize options (--jsonl,
 * --no-special). */
static int parse_args(const char *cmd, int argc, char **argv, bool allow_jsonl, options *o) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            o->help = true;
            return 0;
        } else if (!strcmp(a, "--tokenizer")) {
            if (i + 1 >= argc) return cli_usage_error(cmd, "--tokenizer needs a value (a tokenizer.json or a folder)");
            o->tokenizer = argv[++i];
        } else if (!strncmp(a, "--tokenizer=", 12)) {
            o->tokenizer = a + 12;
        } else if (allow_jsonl && !strcmp(a, "--jsonl")) {
            o->jsonl = true;
        } else if (allow_jsonl && !strcmp(a, "--no-special")) {
            o->no_special = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the input comes on stdin)", a);
        }
    }
    if (!o->tokenizer || !*o->tokenizer) return cli_usage_error(cmd, "--tokenizer DIR|FILE is required");
    return 0;
}

/* Reads all of stdin; NULL if out of memory or on a read error. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, stdin);
        if (n < cap) break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb) {
            free(buf);
            return NULL;
        }
        buf = nb;
        cap *= 2;
    }
    if (!buf || ferror(stdin)) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int finish_output(const char *cmd) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        qm_error err = {0};
        qm_fail(&err, QM_ERR_IO, "error writing to stdout");
        return cli_error(cmd, &err);
    }
    return 0;
}

static void print_ids(const int *ids, int n) {
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
}

/* --jsonl: one {"text": ...} per line -> one {"ids": [...]} per line. */
static int tokenize_jsonl(const qm_tokenizer *tok, bool allow_special) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    qm_error err = {0};
    while (rc == 0 && (len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        const char *end = NULL;
        cJSON *obj = cJSON_ParseWithLengthOpts(line, (size_t)len, &end, false);
        if (obj && end)
            while (end < line + len && isspace((unsigned char)*end)) end++;
        const cJSON *text = obj ? cJSON_GetObjectItemCaseSensitive(obj, "text") : NULL;
        if (!obj || (end && end != line + len)) {
            qm_fail(&err, QM_ERR_FORMAT, "stdin line %ld: not a JSON object%s", lineno, len == 0 ? " (empty line)" : "");
            rc = cli_error("tokenize", &err);
        } else if (!cJSON_IsObject(obj) || !cJSON_IsString(text)) {
            qm_fail(&err, QM_ERR_FORMAT, "stdin line %ld: expected an object with a string \"text\"", lineno);
            rc = cli_error("tokenize", &err);
        } else {
            int *ids, n;
            if (qm_tokenize_ex(tok, text->valuestring, strlen(text->valuestring), allow_special, &ids, &n, &err)) {
                qm_error e2 = {0};
                qm_fail(&e2, err.code, "stdin line %ld: %s", lineno, err.msg);
                rc = cli_error("tokenize", &e2);
            } else {
                fputs("{\"ids\":[", stdout);
                for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
                fputs("]}\n", stdout);
                free(ids);
            }
        }
        cJSON_Delete(obj);
    }
    free(line);
    if (rc == 0 && ferror(stdin)) {
        qm_fail(&err, QM_ERR_IO, "error reading stdin");
        rc = cli_error("tokenize", &err);
    }
    return rc ? rc : finish_output("tokenize");
}

int cmd_tokenize(int argc, char **argv) {
    options o;
    int rc = parse_args("tokenize", argc, argv, true, &o);
    if (rc) return rc;
    if (o.help) {
        fputs(tokenize_usage, stdout);
        return 0;
    }
    qm_tokenizer *tok;
    qm_error err = {0};
    if (qm_tokenizer_load(o.tokenizer, &tok, &err)) return cli_error("tokenize", &err);
    if (o.jsonl) {
        rc = tokenize_jsonl(tok, !o.no_special);
    } else {
        size_t len;
        char *text = read_stdin(&len);
        int *ids, n;
        if (!text) {
            qm_fail(&err, QM_ERR_IO, "error reading stdin");
            rc = cli_error("tokenize", &err);
        } else if (qm_tokenize_ex(tok, text, len, !o.no_special, &ids, &n, &err)) {
            rc = cli_error("tokenize", &err);
        } else {
            print_ids(ids, n);
            putchar('\n');
            free(ids);
            rc = finish_output("tokenize");
        }
        free(text);
    }
    qm_tokenizer_free(tok);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    options o;
    int rc = parse_args("detokenize", argc, argv, false, &o);
    if (rc) return rc;
    if (o.help) {
        fputs(detokenize_usage, stdout);
        return 0;
    }
    qm_tokenizer *tok;
    qm_error err = {0};
    if (qm_tokenizer_load(o.tokenizer, &tok, &err)) return cli_error("detokenize", &err);
    size_t len;
    char *in = read_stdin(&len);
    int *ids = NULL, n = 0, cap = 0;
    if (!in) {
        qm_fail(&err, QM_ERR_IO, "error reading stdin");
        rc = cli_error("detokenize", &err);
    }
    for (char *p = in; !rc && p && *p;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *start = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        char saved = *p;
        *p = 0;
        long id;
        if (!cli_parse_int(start, 0, qm_tokenizer_n_ids(tok) - 1, &id)) {
            /* an integer, however large, is out of range rather than not an integer */
            size_t digits = strspn(start + (*start == '-' || *start == '+'), "0123456789");
            if (digits > 0 && start[(*start == '-' || *start == '+') + digits] == 0)
                qm_fail(&err, QM_ERR_ARG, "id %.40s (input token %d) is out of range: this tokenizer has ids 0..%d", start,
                        n + 1, qm_tokenizer_n_ids(tok) - 1);
            else
                qm_fail(&err, QM_ERR_ARG, "'%.40s' (input token %d) is not an integer token id", start, n + 1);
            rc = cli_error("detokenize", &err);
            break;
        }
        *p = saved;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            int *nid = realloc(ids, sizeof(int) * (size_t)cap);
            if (!nid) {
                qm_fail(&err, QM_ERR_NOMEM, "out of memory");
                rc = cli_error("detokenize", &err);
                break;
            }
            ids = nid;
        }
        ids[n++] = (int)id;
    }
    if (!rc) {
        char *text;
        size_t tlen;
        if (qm_detokenize(tok, ids, n, &text, &tlen, &err)) {
            rc = cli_error("detokenize", &err);
        } else {
            fwrite(text, 1, tlen, stdout);
            free(text);
            rc = finish_output("detokenize");
        }
    }
    free(ids);
    free(in);
    qm_tokenizer_free(tok);
    return rc;
}
