/* log.c -- the server log and the access log.
 *
 * Both go to standard output, as Granian's default logging configuration
 * does.  Every line is formatted into a local buffer and leaves in a single
 * write(2): lines from the master, the workers and their threads never
 * interleave (a pipe keeps writes up to PIPE_BUF bytes whole).
 *
 * The access log format is Granian's: Python %-style named atoms such as
 * "%(addr)s" or "%(dt_ms).3f".  It is compiled once into a list of pieces
 * so that a request is logged without parsing anything.
 *
 * With --log-config, workers hand their finished lines to a sink instead
 * (worker.c passes them to Python's logging); the master always writes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "granc.h"
#include "http.h"
#include "log.h"

#define LOG_LINE_MAX 16384      /* longer lines (tracebacks) are cut, never split */

static int log_enabled = 1;
static int log_level = LL_INFO;
static log_sink_fn *sink;

void log_set_sink(log_sink_fn *fn) { sink = fn; }

void log_init(int enabled, int level)
{
    log_enabled = enabled;
    log_level = level;
}

static const char *level_name(int level)
{
    if (level >= LL_CRITICAL) return "CRITICAL";
    if (level >= LL_ERROR) return "ERROR";
    if (level >= LL_WARNING) return "WARNING";
    if (level >= LL_INFO) return "INFO";
    return "DEBUG";
}

static void write_line(char *buf, size_t n)
{
    if (n >= LOG_LINE_MAX) n = LOG_LINE_MAX - 1;
    buf[n++] = '\n';
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(STDOUT_FILENO, buf + off, n - off);
        if (w <= 0) return;     /* a closed stdout must not stop the server */
        off += (size_t)w;
    }
}

void log_msg(int level, const char *fmt, ...)
{
    if (!log_enabled || level < log_level)
        return;
    char buf[LOG_LINE_MAX + 1];
    int n = sink ? 0 : snprintf(buf, LOG_LINE_MAX, "[%s] ", level_name(level));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, LOG_LINE_MAX - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    size_t len = (size_t)n + (size_t)m;
    /* a traceback ends with a newline of its own */
    if (len > LOG_LINE_MAX - 1) len = LOG_LINE_MAX - 1;
    while (len > 0 && buf[len - 1] == '\n') len--;
    if (sink) sink(level, 0, buf, len);
    else write_line(buf, len);
}

/* ---- access log ---- */

enum atom { A_TEXT, A_ADDR, A_TIME, A_DT_MS, A_STATUS, A_PATH, A_QUERY,
            A_METHOD, A_SCHEME, A_PROTOCOL, A_HEADER, A_UNKNOWN };

typedef struct piece {
    int atom;
    char spec[16];              /* printf conversion, e.g. "%.3f" */
    char *text;                 /* A_TEXT: literal; A_HEADER: lower-case name */
} piece;

static piece *pieces;
static int npieces;

static const struct { const char *name; int atom; } atoms[] = {
    {"addr", A_ADDR}, {"time", A_TIME}, {"dt_ms", A_DT_MS},
    {"status", A_STATUS}, {"path", A_PATH}, {"query_string", A_QUERY},
    {"method", A_METHOD}, {"scheme", A_SCHEME}, {"protocol", A_PROTOCOL},
};

static int add_piece(int atom, const char *spec, const char *text, size_t n)
{
    piece *p = realloc(pieces, sizeof(*p) * (size_t)(npieces + 1));
    if (!p) return -1;
    pieces = p;
    p = &pieces[npieces++];
    p->atom = atom;
    snprintf(p->spec, sizeof(p->spec), "%s", spec ? spec : "");
    p->text = NULL;
    if (text) {
        if (!(p->text = malloc(n + 1))) return -1;
        for (size_t i = 0; i < n; i++)
            p->text[i] = (atom == A_HEADER && text[i] >= 'A' && text[i] <= 'Z')
                         ? (char)(text[i] + 32) : text[i];
        p->text[n] = 0;
    }
    return 0;
}

/* Compile fmt.  A header atom is written "%({Name}i)s" (Granian's README)
 * or "%({Name})s".  Returns -1 on a malformed format. */
int log_access_init(const char *fmt)
{
    const char *s = fmt, *lit = fmt;
    while (*s) {
        if (*s != '%') { s++; continue; }
        if (s > lit && add_piece(A_TEXT, NULL, lit, (size_t)(s - lit))) return -1;
        if (s[1] == '%') { add_piece(A_TEXT, NULL, "%", 1); s += 2; lit = s; continue; }
        if (s[1] != '(') return -1;
        const char *name = s + 2, *end = strchr(name, ')');
        if (!end) return -1;
        /* flags, width, precision, then one conversion letter */
        const char *c = end + 1;
        while (*c && strchr("#0- +", *c)) c++;
        while (*c >= '0' && *c <= '9') c++;
        if (*c == '.') { c++; while (*c >= '0' && *c <= '9') c++; }
        if (!*c || !strchr("sdifeEgGr", *c) || c - end > 12) return -1;
        char spec[16];
        spec[0] = '%';
        memcpy(spec + 1, end + 1, (size_t)(c - end - 1));
        spec[c - end] = *c == 'r' ? 's' : *c;
        spec[c - end + 1] = 0;
        size_t nlen = (size_t)(end - name);
        int atom = A_UNKNOWN;
        for (size_t i = 0; i < sizeof(atoms) / sizeof(atoms[0]); i++)
            if (strlen(atoms[i].name) == nlen && !memcmp(atoms[i].name, name, nlen))
                atom = atoms[i].atom;
        int numeric = strchr("difeEgG", spec[c - end]) != NULL;
        if (numeric && atom != A_STATUS && atom != A_DT_MS) return -1;
        if (nlen > 2 && name[0] == '{') {
            const char *close = memchr(name, '}', nlen);
            if (!close || numeric) return -1;
            if (add_piece(A_HEADER, spec, name + 1, (size_t)(close - name - 1))) return -1;
        } else if (add_piece(atom, spec, NULL, 0)) {
            return -1;
        }
        s = c + 1;
        lit = s;
    }
    if (s > lit && add_piece(A_TEXT, NULL, lit, (size_t)(s - lit))) return -1;
    return 0;
}

/* n after snprintf reported w more bytes in a buffer of cap (cut there). */
static size_t advance(size_t n, int w, size_t cap)
{
    return w <= 0 ? n : n + (size_t)w < cap ? n + (size_t)w : cap - 1;
}

/* Append a string atom; '"' is escaped as Granian's SafeAtoms does. */
static size_t put_str(char *out, size_t cap, size_t n, const piece *p,
                      const char *s, size_t len)
{
    char tmp[2048];
    size_t t = 0;
    for (size_t i = 0; i < len && t + 2 < sizeof(tmp); i++) {
        if (s[i] == '"') tmp[t++] = '\\';
        tmp[t++] = s[i];
    }
    tmp[t] = 0;
    return advance(n, snprintf(out + n, cap - n, p->spec, tmp), cap);
}

void log_access(const access_rec *r)
{
    char out[LOG_LINE_MAX + 1], tb[64];
    size_t n = 0, cap = LOG_LINE_MAX;
    for (int i = 0; i < npieces && n < cap - 1; i++) {
        const piece *p = &pieces[i];
        const char *s = "-";        /* a string atom's text */
        size_t len = 1;
        double v;
        switch (p->atom) {
        case A_TEXT:
            n = advance(n, snprintf(out + n, cap - n, "%s", p->text), cap);
            continue;
        case A_STATUS: case A_DT_MS:
            v = p->atom == A_STATUS ? r->status : r->dt_ms;
            if (strchr(p->spec, 'd') || strchr(p->spec, 'i'))
                n = advance(n, snprintf(out + n, cap - n, p->spec, (int)v), cap);
            else
                n = advance(n, snprintf(out + n, cap - n, p->spec, v), cap);
            continue;
        case A_TIME: {
            time_t t = (time_t)r->start;
            struct tm tm;
            localtime_r(&t, &tm);
            s = tb;
            len = strftime(tb, sizeof(tb), "%Y-%m-%d %H:%M:%S %z", &tm);
            break;
        }
        case A_ADDR:     s = r->addr, len = strlen(r->addr); break;
        case A_PATH:     s = r->path.p, len = r->path.n; break;
        case A_QUERY:    s = r->query.p, len = r->query.n; break;
        case A_METHOD:   s = r->method.p, len = r->method.n; break;
        case A_SCHEME:   s = r->scheme, len = strlen(r->scheme); break;
        case A_PROTOCOL: s = r->protocol, len = strlen(r->protocol); break;
        case A_HEADER:              /* "-" when the request has none */
            for (size_t h = 0; h < r->nheaders; h++)
                if (http_name_is(r->headers[h].name, p->text)) {
                    s = r->headers[h].value.p, len = r->headers[h].value.n;
                    break;
                }
            break;
        }
        n = put_str(out, cap, n, p, s, len);
    }
    if (sink) sink(LL_INFO, 1, out, n);
    else write_line(out, n);
}
