/* fuzz_opts.c -- libFuzzer harness for granc.c's option parser.
 *
 *   clang -fsanitize=fuzzer,address,undefined -DGRANC_FUZZ -DGRANC_TLS -I. \
 *         tests/fuzz/fuzz_opts.c granc.c
 *
 * The input is a command line: words separated by NUL bytes.  A word
 * "GRANIAN_NAME=value" goes to the environment (putenv), every other word
 * to argv after "granc".  granc.c built with GRANC_FUZZ gives three hooks:
 * fuzz_parse() runs set_defaults, parse_args, parse_env and resolve as
 * main() does, with die() jumping back instead of exiting; fuzz_option()
 * tells an option's value syntax; fuzz_same_config() compares two results
 * option by option.
 *
 * A command line is not a byte stream, so "split at every point" has no
 * meaning here.  Its counterpart is checked instead: the same options said
 * another way must give the same answer (accepted or refused, and the same
 * configuration).  Each input is parsed four times:
 *   1. as given;
 *   2. as given again: nothing may leak from one parse into the next;
 *   3. respelled: "--name=value" becomes "--name value" and back, for
 *      every option that takes a value;
 *   4. moved: every option given once on the command line goes to its
 *      GRANIAN_* variable instead (argv wins over the environment, an empty
 *      variable counts as unset, and list variables split on white space
 *      or ':', so options where that would change the meaning stay).
 * Any difference abort()s.
 *
 * granc never frees its configuration (it lives as long as the process);
 * here every block allocated during a parse is recorded through the
 * sanitizer's malloc hooks and freed after the input, so that LeakSanitizer
 * stays on and long runs do not grow.
 */
#include "granc.h"
#include "log.h"
#include "master.h"

#include <sanitizer/allocator_interface.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WORDS 4096              /* libFuzzer's inputs here are <= 4 KiB */
#define MAX_LIVE  (1 << 15)         /* blocks granc.c holds after one input */

int fuzz_parse(int argc, char **argv, config *out);
int fuzz_option(const char *name, size_t len, const char **env);
int fuzz_same_config(const config *a, const config *b);

/* ---- what granc.c calls outside the parser: nothing to do here ---- */

void master_cleanup(void) {}
int master_run(const config *c) { (void)c; return 0; }
void log_init(int enabled, int level)
{
    (void)enabled, (void)level;
}
void log_msg(int level, const char *fmt, ...) { (void)level, (void)fmt; }
int log_access_init(const char *fmt) { (void)fmt; return 0; }
/* worker.c's check needs the worker (and Python); every list passes. */
int proxy_trust_init(const strlist *l, char *bad, size_t badlen)
{
    (void)l, (void)bad, (void)badlen;
    return 0;
}
#ifdef GRANC_TLS
tls_ctx *tls_load(const config *c, char *err, size_t errlen)
{
    (void)c, (void)err, (void)errlen;
    return NULL;
}
#endif

/* ---- blocks allocated by granc.c ---------------------------------- */

static const volatile void *live[MAX_LIVE];
static size_t nlive;
static _Thread_local int recording;  /* this thread is inside fuzz_parse */

static void on_malloc(const volatile void *p, size_t n)
{
    (void)n;
    if (!recording)
        return;
    if (nlive == MAX_LIVE)
        abort();
    live[nlive++] = p;
}

static void on_free(const volatile void *p)
{
    if (!recording)
        return;
    for (size_t i = nlive; i-- > 0;)
        if (live[i] == p) {
            live[i] = live[--nlive];
            return;
        }
}

static void free_recorded(void)
{
    recording = 0;
    while (nlive > 0)
        free((void *)live[--nlive]);
}

/* ---- command lines ------------------------------------------------ */

typedef struct cmd {
    char *argv[MAX_WORDS + 2];
    int argc;
    char *env[MAX_WORDS];           /* "GRANIAN_NAME=value" */
    int nenv;
} cmd;

/* One option on the command line, as parse_args reads it. */
typedef struct use {
    int first, nwords;              /* argv[first], and argv[first + 1] if 2 */
    int kind;                       /* fuzz_option()'s answer */
    const char *env;                /* its variable */
    const char *name;               /* after "--", len bytes */
    size_t len;
    const char *value;              /* what parse_args gives set_value */
    int eq;                         /* "--name=value" */
} use;

static use uses[MAX_WORDS];
static int nuses;
static char *scratch[2 * MAX_WORDS];    /* strings made for cmd 3 and 4 */
static int nscratch;

static void check(int cond)
{
    if (!cond)
        abort();
}

/* A new string: alen bytes of a, then sep and b. */
static char *make(const char *a, size_t alen, const char *sep, const char *b)
{
    size_t slen = strlen(sep), blen = strlen(b);
    char *s = malloc(alen + slen + blen + 1);

    check(s != NULL && nscratch < (int)(sizeof scratch / sizeof *scratch));
    memcpy(s, a, alen);
    memcpy(s + alen, sep, slen);
    memcpy(s + alen + slen, b, blen + 1);
    return scratch[nscratch++] = s;
}

static void add(cmd *c, char *w)
{
    check(c->argc < MAX_WORDS + 1);
    c->argv[c->argc++] = w;
}

/* Find the options of c's argv the way parse_args does, up to "--" or
 * the first word it refuses (that word and the rest stay as they are in
 * every variant: parse_args dies there whatever comes before). */
static void scan(const cmd *c)
{
    nuses = 0;
    for (int i = 1; i < c->argc; i++) {
        const char *a = c->argv[i], *name = a + 2, *eq;
        use *u = &uses[nuses];
        int neg = 0;

        if (!strcmp(a, "--"))
            break;                  /* the rest is APP */
        if (a[0] != '-' || !a[1])
            continue;               /* APP */
        if (a[1] != '-')
            break;                  /* "-x" */
        eq = strchr(name, '=');
        *u = (use){ .first = i, .nwords = 1, .name = name, .eq = eq != NULL,
                    .len = eq ? (size_t)(eq - name) : strlen(name) };
        u->kind = fuzz_option(name, u->len, &u->env);
        if (!u->kind && u->len > 3 && !strncmp(name, "no-", 3)) {
            u->kind = fuzz_option(name + 3, u->len - 3, &u->env);
            neg = 1;
            if (u->kind != 'b' || eq)
                break;              /* "--no-port", "--no-ws=1" */
        }
        if (!u->kind)
            break;                  /* unknown */
        if (u->kind == 'b')
            u->value = eq ? eq + 1 : neg ? "false" : "true";
        else if (eq)
            u->value = eq + 1;
        else if (i + 1 < c->argc && strncmp(c->argv[i + 1], "--", 2))
            u->value = c->argv[++i], u->nwords = 2;
        else
            break;                  /* missing value */
        nuses++;
    }
}

/* Variant 3: "--name=value" <-> "--name value" for options with values. */
static void respell(const cmd *c, cmd *r)
{
    int i = 0, k = 0;

    r->argc = 0;
    r->nenv = c->nenv;
    memcpy(r->env, c->env, sizeof *r->env * (size_t)c->nenv);
    while (i < c->argc) {
        const use *u = k < nuses ? &uses[k] : NULL;

        if (!u || i < u->first) {
            add(r, c->argv[i++]);
            continue;
        }
        k++;
        i += u->nwords;
        if (u->kind == 'b') {
            add(r, c->argv[u->first]);
        } else if (u->eq && strncmp(u->value, "--", 2)) {
            add(r, make(u->name - 2, u->len + 2, "", ""));
            add(r, (char *)u->value);
        } else if (u->eq) {
            add(r, c->argv[u->first]);  /* "--host=--x": no other spelling */
        } else {
            add(r, make(u->name - 2, u->len + 2, "=", u->value));
        }
    }
}

static int env_given(const cmd *c, const char *env)
{
    size_t n = strlen(env);

    for (int i = 0; i < c->nenv; i++)
        if (!strncmp(c->env[i], env, n) && c->env[i][n] == '=')
            return 1;
    return 0;
}

/* May option use u move from argv to its variable without changing what
 * it means? */
static int movable(const cmd *c, const use *u)
{
    int n = 0;

    for (int k = 0; k < nuses; k++)
        n += uses[k].env == u->env;
    return n == 1 && !env_given(c, u->env) && *u->value
        && (u->kind != 'l' || !strpbrk(u->value, " \t\n"))
        && (u->kind != 'p' || !strchr(u->value, ':'));
}

/* Variant 4: options given once go to the environment. */
static void move(const cmd *c, cmd *m)
{
    int i = 0, k = 0;

    m->argc = 0;
    m->nenv = c->nenv;
    memcpy(m->env, c->env, sizeof *m->env * (size_t)c->nenv);
    while (i < c->argc) {
        const use *u = k < nuses ? &uses[k] : NULL;

        if (!u || i < u->first) {
            add(m, c->argv[i++]);
            continue;
        }
        k++;
        if (!movable(c, u)) {
            for (int j = 0; j < u->nwords; j++)
                add(m, c->argv[i++]);
            continue;
        }
        i += u->nwords;
        m->env[m->nenv++] = make(u->env, strlen(u->env), "=", u->value);
    }
}

/* ---- running ------------------------------------------------------ */

static void unset_all(const cmd *c)
{
    for (int i = 0; i < c->nenv; i++) {
        char *name = strndup(c->env[i], strcspn(c->env[i], "="));
        check(name != NULL);
        unsetenv(name);
        free(name);
    }
}

static int run(cmd *c, config *out)
{
    int rc;

    for (int i = 0; i < c->nenv; i++)
        putenv(c->env[i]);
    c->argv[c->argc] = NULL;
    recording = 1;
    rc = fuzz_parse(c->argc, (char **)c->argv, out);
    recording = 0;
    unset_all(c);
    return rc;
}

static void same(int ra, const config *a, int rb, const config *b)
{
    check(ra == rb);
    if (ra == 0)
        check(fuzz_same_config(a, b));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FILE *null = fopen("/dev/null", "w");

    (void)argc, (void)argv;
    /* die()'s messages: libFuzzer keeps its own stream, the sanitizers
     * write to fd 2 directly. */
    check(null != NULL && setvbuf(null, NULL, _IONBF, 0) == 0);
    stderr = null;
    /* The caller's GRANIAN_* variables would take part in every parse. */
    for (int i = 0; environ[i];)
        if (!strncmp(environ[i], "GRANIAN_", 8)) {
            char *name = strndup(environ[i], strcspn(environ[i], "="));
            check(name != NULL);
            unsetenv(name);
            free(name);
        } else {
            i++;
        }
    check(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cmd given, respelled, moved;
    static config c1, c2, c3, c4;
    char *text, *w, *end;
    int r1, r2, r3, r4, dashdash = 0;

    if (size > MAX_WORDS)
        return 0;
    text = malloc(size + 1);
    check(text != NULL);
    memcpy(text, data, size);
    text[size] = 0;
    given.argc = 0;
    given.nenv = 0;
    add(&given, "granc");
    for (w = text, end = text + size; w < end; w += strlen(w) + 1) {
        if (!strncmp(w, "GRANIAN_", 8) && strchr(w, '=')) {
            given.env[given.nenv++] = w;
            continue;
        }
        /* --help and --version print and exit(0), before anything else. */
        if (!dashdash && (!strcmp(w, "--help") || !strcmp(w, "--version")))
            continue;
        dashdash |= !strcmp(w, "--");
        add(&given, w);
    }

    nscratch = 0;
    r1 = run(&given, &c1);
    r2 = run(&given, &c2);
    same(r1, &c1, r2, &c2);
    scan(&given);
    respell(&given, &respelled);
    r3 = run(&respelled, &c3);
    same(r1, &c1, r3, &c3);
    move(&given, &moved);
    r4 = run(&moved, &c4);
    same(r1, &c1, r4, &c4);

    free_recorded();
    while (nscratch > 0)
        free(scratch[--nscratch]);
    free(text);
    return 0;
}
