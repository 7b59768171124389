/* granc.c -- main() and the configuration.
 *
 * One table, opts[], describes every option of Granian's command line: its
 * flag, its GRANIAN_* variable, its type and range, its default, where it
 * lands in `config`, and whether granc implements it yet.  argv, the
 * environment, --help and the "not supported yet" check all walk that
 * table, so adding or enabling an option is a one-row change.
 *
 * main() validates the result, loads the --ssl-* files, and hands over to
 * the master process (master.c), which binds and supervises.
 */
#include "granc.h"
#include "net.h"
#include "tls.h"
#include "http.h"
#include "log.h"
#include "master.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

extern char **environ;

/* ===================================================================
 * The option table
 * =================================================================== */

enum kind {
    K_BOOL,     /* int; --x / --no-x; 1/0 true/false yes/no on/off t/f y/n */
    K_INT,      /* int in [lo, hi] */
    K_SIZE,     /* size_t in [lo, hi], bytes */
    K_I64,      /* int64_t in [lo, hi], bytes */
    K_DUR,      /* int seconds in [lo, hi]: "90" or NdNhNmNs ("1h30m") */
    K_FLOAT,    /* double >= lo */
    K_OCTAL,    /* int file mode: a leading 0 means base 8 */
    K_ENUM,     /* int: the index of the word in `choices` */
    K_LEVEL,    /* int: enum log_level, via levels[] */
    K_WORD,     /* const char *: one of `choices`, lower-cased */
    K_STR,      /* const char * */
    K_LIST,     /* strlist, repeatable; the variable splits on whitespace */
    K_PATHS     /* strlist, repeatable; the variable splits on ':' */
};

/* What granc does with an option.  FT_OK: implemented.  FT_NOOP: accepted,
 * documented, no effect in granc.  Any other value names a missing feature:
 * a non-default value of such an option is refused at start-up.  When the
 * feature lands, flip its rows to FT_OK. */
enum feat { FT_OK, FT_NOOP, FT_TLS, FT_NEXT /* the next missing one */ };

static const char *const feat_name[] = {
    [FT_TLS] = "TLS", [FT_NEXT] = "(none yet)",
};

#define NOMAX LLONG_MAX             /* no bound but the field's type */


typedef struct opt {
    const char *name;               /* flag without the leading "--" */
    const char *env;                /* "GRANIAN_" + Granian's parameter name */
    unsigned char kind, feat;
    long long lo, hi;               /* range of numbers, in the option's unit */
    const char *choices;            /* "a|b|c" for K_ENUM, K_LEVEL, K_WORD */
    const char *def;                /* default; one in "(...)" is shown, not parsed */
    size_t off;                     /* offsetof(config, field) */
    const char *help;
} opt;

/* Row shapes: numbers carry a range, choices their words, the rest neither.
 * `env` is Granian's parameter name; the variable is GRANIAN_<env>. */
#define ROW(k, name, env, ft, lo, hi, words, def, f, help) \
    { name, "GRANIAN_" env, k, ft, lo, hi, words, def, offsetof(config, f), help }
#define NUM(k, name, env, ft, lo, hi, def, f, help) \
    ROW(k, name, env, ft, lo, hi, NULL, def, f, help)
#define INT(name, env, ft, lo, hi, def, f, help) \
    ROW(K_INT, name, env, ft, lo, hi, NULL, def, f, help)
#define ONE(k, name, env, ft, words, def, f, help) \
    ROW(k, name, env, ft, 0, 0, words, def, f, help)
#define BOOL(name, env, ft, def, f, help) ROW(K_BOOL, name, env, ft, 0, 0, NULL, def, f, help)
#define STR(name, env, ft, def, f, help) ROW(K_STR, name, env, ft, 0, 0, NULL, def, f, help)
#define LIST(k, name, env, ft, def, f, help) ROW(k, name, env, ft, 0, 0, NULL, def, f, help)

/* Choice words are in enum order (enum iface, enum http_mode, levels[]):
 * the index is the value. */
static const opt opts[] = {
    STR("host", "HOST", FT_OK, "127.0.0.1", host, "IP address or host name to bind"),
    INT("port", "PORT", FT_OK, 0, 65535, "8000", port, "Port to bind (0: any free port)"),
    STR("uds", "UDS", FT_OK, NULL, uds, "Unix socket to bind instead of TCP"),
    INT("fd", "FD", FT_OK, 0, NOMAX, "(none)", fd,
        "granc: serve on this inherited listening socket"),
    LIST(K_LIST, "forwarded-allow-ips", "FORWARDED_ALLOW_IPS", FT_OK, NULL,
         forwarded_allow_ips, "granc: peers trusted for X-Forwarded-For/-Proto"),
    NUM(K_OCTAL, "uds-permissions", "UDS_PERMISSIONS", FT_OK, 0, 07777, "(umask)",
        uds_permissions, "Mode of the socket file"),
    ONE(K_ENUM, "interface", "INTERFACE", FT_OK, "rsgi|asgi|asginl|wsgi", "rsgi", iface,
        "Application interface"),
    ONE(K_ENUM, "http", "HTTP", FT_OK, "auto|1|2", "auto", http, "HTTP versions accepted"),
    BOOL("ws", "WEBSOCKETS", FT_OK, "on", ws, "Websockets (ASGI, RSGI; ignored on WSGI)"),
    INT("workers", "WORKERS", FT_OK, 1, NOMAX, "1", workers, "Worker processes"),
    INT("blocking-threads", "BLOCKING_THREADS", FT_OK, 1, NOMAX,
        "(wsgi: backpressure/2, else 1)", blocking_threads, "Python threads per worker"),
    NUM(K_DUR, "blocking-threads-idle-timeout", "BLOCKING_THREADS_IDLE_TIMEOUT", FT_OK,
        5, 600, "30", blocking_threads_idle_timeout_s, "Idle time before a thread exits"),
    INT("runtime-threads", "RUNTIME_THREADS", FT_NOOP, 1, NOMAX, "1", runtime_threads,
        "Rust runtime I/O threads"),
    INT("runtime-blocking-threads", "RUNTIME_BLOCKING_THREADS", FT_NOOP, 1, NOMAX, "512",
        runtime_blocking_threads, "Rust runtime blocking threads"),
    ONE(K_WORD, "runtime-mode", "RUNTIME_MODE", FT_NOOP, "auto|mt|st", "auto",
        runtime_mode, "Rust runtime mode"),
    ONE(K_WORD, "loop", "LOOP", FT_OK, "auto|asyncio|rloop|uvloop|winloop", "auto",
        loop, "Event loop of async interfaces (auto: uvloop if installed)"),
    ONE(K_WORD, "task-impl", "TASK_IMPL", FT_NOOP, "asyncio|rust", "asyncio", task_impl,
        "Async task implementation"),
    INT("backlog", "BACKLOG", FT_OK, 128, NOMAX, "1024", backlog, "listen() backlog"),
    INT("backpressure", "BACKPRESSURE", FT_OK, 1, NOMAX, "(backlog/workers)", backpressure,
        "Requests in flight per worker"),
    NUM(K_SIZE, "http1-buffer-size", "HTTP1_BUFFER_SIZE", FT_OK, 8192, NOMAX, "417792",
        http1_buffer_size, "Max bytes of a request head"),
    INT("http1-header-read-timeout", "HTTP1_HEADER_READ_TIMEOUT", FT_OK, 1, 60000, "30000",
        http1_header_read_timeout_ms, "Time to read a request head (ms)"),
    BOOL("http1-keep-alive", "HTTP1_KEEP_ALIVE", FT_OK, "on", http1_keep_alive,
         "HTTP/1 keep-alive"),
    BOOL("http1-pipeline-flush", "HTTP1_PIPELINE_FLUSH", FT_NOOP, "off",
         http1_pipeline_flush, "Aggregate pipelined flushes"),
    NUM(K_SIZE, "ws-max-message-size", "WS_MAX_MESSAGE_SIZE", FT_OK, 125, NOMAX, "16777216",
        ws_max_message_size, "granc: max websocket message bytes (over: close 1009)"),
    NUM(K_I64, "http1-max-body-size", "HTTP1_MAX_BODY_SIZE", FT_OK, 0, NOMAX, "0",
        http1_max_body_size, "granc: max body bytes, 0 = no limit (over: 413)"),
    BOOL("http2-adaptive-window", "HTTP2_ADAPTIVE_WINDOW", FT_OK, "off",
         http2_adaptive_window, "HTTP/2 adaptive flow control"),
    INT("http2-initial-connection-window-size", "HTTP2_INITIAL_CONNECTION_WINDOW_SIZE",
        FT_OK, 1024, NOMAX, "1048576", http2_initial_connection_window_size,
        "HTTP/2 connection window"),
    INT("http2-initial-stream-window-size", "HTTP2_INITIAL_STREAM_WINDOW_SIZE", FT_OK,
        1024, NOMAX, "1048576", http2_initial_stream_window_size, "HTTP/2 stream window"),
    INT("http2-keep-alive-interval", "HTTP2_KEEP_ALIVE_INTERVAL", FT_OK, 1, 60000, NULL,
        http2_keep_alive_interval_ms, "HTTP/2 PING interval (ms)"),
    NUM(K_DUR, "http2-keep-alive-timeout", "HTTP2_KEEP_ALIVE_TIMEOUT", FT_OK, 1, NOMAX,
        "20", http2_keep_alive_timeout_s, "HTTP/2 PING ack timeout"),
    INT("http2-max-concurrent-streams", "HTTP2_MAX_CONCURRENT_STREAMS", FT_OK, 10, NOMAX,
        "200", http2_max_concurrent_streams, "HTTP/2 concurrent streams"),
    INT("http2-max-frame-size", "HTTP2_MAX_FRAME_SIZE", FT_OK, 16384, 16777215, "16384",
        http2_max_frame_size, "HTTP/2 max frame size"),
    INT("http2-max-headers-size", "HTTP2_MAX_HEADERS_SIZE", FT_OK, 1, NOMAX, "16777216",
        http2_max_headers_size, "HTTP/2 max header list size"),
    INT("http2-max-send-buffer-size", "HTTP2_MAX_SEND_BUFFER_SIZE", FT_OK, 1024, NOMAX,
        "409600", http2_max_send_buffer_size, "HTTP/2 write buffer per stream"),
    BOOL("log", "LOG_ENABLED", FT_OK, "on", log, "Server log"),
    ONE(K_LEVEL, "log-level", "LOG_LEVEL", FT_OK,
        "critical|error|warning|warn|info|debug|notset", "info", log_level, "Log level"),
    STR("log-config", "LOG_CONFIG", FT_OK, NULL, log_config, "Logging config (JSON)"),
    BOOL("access-log", "LOG_ACCESS_ENABLED", FT_OK, "off", access_log, "Access log"),
    STR("access-log-fmt", "LOG_ACCESS_FMT", FT_OK,
        "[%(time)s] %(addr)s - \"%(method)s %(path)s %(protocol)s\" %(status)d %(dt_ms).3f",
        access_log_fmt, "Access log format"),
    STR("ssl-certificate", "SSL_CERTIFICATE", FT_TLS, NULL, ssl_certificate,
        "TLS certificate chain (PEM)"),
    STR("ssl-keyfile", "SSL_KEYFILE", FT_TLS, NULL, ssl_keyfile, "TLS private key (PEM)"),
    STR("ssl-keyfile-password", "SSL_KEYFILE_PASSWORD", FT_TLS, NULL, ssl_keyfile_password,
        "Password of an encrypted key"),
    ONE(K_WORD, "ssl-protocol-min", "SSL_PROTOCOL_MIN", FT_TLS, "tls1.2|tls1.3", "tls1.2",
        ssl_protocol_min, "Minimum TLS version (BearSSL: tls1.2 only)"),
    STR("ssl-ca", "SSL_CA", FT_TLS, NULL, ssl_ca, "CA bundle for client certificates"),
    LIST(K_PATHS, "ssl-crl", "SSL_CRL", FT_TLS, NULL, ssl_crl, "Revocation lists (PEM)"),
    BOOL("ssl-client-verify", "SSL_CLIENT_VERIFY", FT_TLS, "off", ssl_client_verify,
         "Require a client certificate"),
    STR("url-path-prefix", "URL_PATH_PREFIX", FT_OK, NULL, url_path_prefix,
        "URL prefix of the app (SCRIPT_NAME)"),
    BOOL("respawn-failed-workers", "RESPAWN_FAILED_WORKERS", FT_OK, "off",
         respawn_failed_workers, "Respawn crashed workers"),
    NUM(K_FLOAT, "respawn-interval", "RESPAWN_INTERVAL", FT_OK, 0, NOMAX, "3.5",
        respawn_interval_s, "Seconds from a new worker's spawn to the old one's stop"),
    NUM(K_DUR, "rss-sample-interval", "RSS_SAMPLE_INTERVAL", FT_OK, 1, 300, "30",
        rss_sample_interval_s, "RSS sampling period"),
    INT("rss-samples", "RSS_SAMPLES", FT_OK, 1, NOMAX, "1", rss_samples,
        "Samples over the limit before a respawn"),
    NUM(K_DUR, "workers-lifetime", "WORKERS_LIFETIME", FT_OK, 60, NOMAX, NULL,
        workers_lifetime_s, "Respawn workers older than this"),
    INT("workers-max-rss", "WORKERS_MAX_RSS", FT_OK, 1, NOMAX, NULL, workers_max_rss_mib,
        "Respawn workers above this RSS (MiB)"),
    NUM(K_DUR, "workers-kill-timeout", "WORKERS_KILL_TIMEOUT", FT_OK, 1, 1800,
        "(wait forever)", workers_kill_timeout_s, "SIGKILL workers slower to stop"),
    NUM(K_DUR, "graceful-timeout", "GRACEFUL_TIMEOUT", FT_OK, 1, 86400, "(wait forever)",
        graceful_timeout_s, "granc: close what is left of a drain after this"),
    INT("max-requests", "MAX_REQUESTS", FT_OK, 0, NOMAX, "0", max_requests,
        "granc: replace a worker after this many requests (0: never)"),
    INT("max-requests-jitter", "MAX_REQUESTS_JITTER", FT_OK, 0, NOMAX, "0",
        max_requests_jitter, "granc: random extra requests per worker, 0..N"),
    BOOL("factory", "FACTORY", FT_OK, "off", factory, "Call the target to get the app"),
    STR("working-dir", "WORKING_DIR", FT_OK, NULL, working_dir, "Put first on sys.path"),
    LIST(K_PATHS, "env-files", "ENV_FILES", FT_OK, NULL, env_files,
         "dotenv files (never override the environment)"),
    LIST(K_LIST, "static-path-route", "STATIC_PATH_ROUTE", FT_OK, "/static",
         static_path_route, "URL prefixes of static files"),
    LIST(K_PATHS, "static-path-mount", "STATIC_PATH_MOUNT", FT_OK, NULL,
         static_path_mount, "Directories of static files"),
    STR("static-path-dir-to-file", "STATIC_PATH_DIR_TO_FILE", FT_OK, NULL,
        static_path_dir_to_file, "Index file of directories"),
    NUM(K_DUR, "static-path-expires", "STATIC_PATH_EXPIRES", FT_OK, 0, NOMAX, "86400",
        static_path_expires_s, "Static files max-age"),
    BOOL("static-path-follow-symlinks", "STATIC_PATH_FOLLOW_SYMLINKS", FT_OK, "off",
         static_path_follow_symlinks, "granc: serve symlinks that leave the mount"),
    BOOL("metrics", "METRICS_ENABLED", FT_OK, "off", metrics, "Metrics exporter"),
    NUM(K_DUR, "metrics-scrape-interval", "METRICS_SCRAPE_INTERVAL", FT_OK, 1, 60,
        "15", metrics_scrape_interval_s, "Metrics collection period"),
    STR("metrics-address", "METRICS_ADDRESS", FT_OK, "127.0.0.1", metrics_address,
        "Metrics exporter address"),
    INT("metrics-port", "METRICS_PORT", FT_OK, 0, 65535, "9090", metrics_port,
        "Metrics exporter port"),
    BOOL("reload", "RELOAD", FT_OK, "off", reload, "Restart on file changes"),
    LIST(K_PATHS, "reload-paths", "RELOAD_PATHS", FT_OK, "(working directory)",
         reload_paths, "Paths to watch"),
    LIST(K_LIST, "reload-ignore-dirs", "RELOAD_IGNORE_DIRS", FT_OK, NULL,
         reload_ignore_dirs, "Directory names to ignore"),
    LIST(K_LIST, "reload-ignore-patterns", "RELOAD_IGNORE_PATTERNS", FT_OK, NULL,
         reload_ignore_patterns, "Name patterns (regex) to ignore"),
    LIST(K_PATHS, "reload-ignore-paths", "RELOAD_IGNORE_PATHS", FT_OK, NULL,
         reload_ignore_paths, "Paths to ignore"),
    INT("reload-tick", "RELOAD_TICK", FT_OK, 50, 5000, "50", reload_tick_ms,
        "Watch period (ms)"),
    BOOL("reload-ignore-worker-failure", "RELOAD_IGNORE_WORKER_FAILURE", FT_OK, "off",
         reload_ignore_worker_failure, "Survive worker crashes on reload"),
    STR("process-name", "PROCESS_NAME", FT_OK, NULL, process_name, "Process title"),
    STR("pid-file", "PID_FILE", FT_OK, NULL, pid_file, "File to write the master PID to"),
};
#define NOPTS ((int)(sizeof opts / sizeof opts[0]))

static const int levels[] = { LL_CRITICAL, LL_ERROR, LL_WARNING, LL_WARNING,
                              LL_INFO, LL_DEBUG, LL_NOTSET };

/* Where each value came from: messages name the flag or the variable, and
 * the "not supported yet" check skips defaults. */
enum { SRC_DEFAULT, SRC_ENV, SRC_ARGV };
static unsigned char src[NOPTS];

static config cfg;                  /* the configuration being built */
static config dflt;                 /* the defaults alone, for comparisons */

/* ===================================================================
 * Values
 * =================================================================== */

#ifdef GRANC_FUZZ
#include <setjmp.h>
static jmp_buf *fuzz_die;           /* tests/fuzz_opts.c: die() returns there */
#endif

/* Every start-up error: one line on stderr, exit 1. */
void die(const char *fmt, ...)
{
    va_list ap;

    fputs("granc: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
#ifdef GRANC_FUZZ
    longjmp(*fuzz_die, 1);
#endif
    master_cleanup();
    exit(1);
}

/* The name a message uses: the variable when the value came from it. */
static const char *label(int i, int from)
{
    static char bufs[2][64];        /* two labels may share one message */
    static int turn;
    char *buf = bufs[turn ^= 1];

    if (from == SRC_ENV)
        return opts[i].env;
    snprintf(buf, sizeof bufs[0], "--%s", opts[i].name);
    return buf;
}

static int opt_find(const char *name, size_t len)
{
    for (int i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && !memcmp(opts[i].name, name, len))
            return i;
    return -1;
}
#define OPT(name) opt_find(name, sizeof name - 1)
/* The flag or the variable an option's value came from, for messages. */
#define NAME(name) label(OPT(name), src[OPT(name)])

const char *opt_label(const char *name)
{
    int i = opt_find(name, strlen(name));
    return i < 0 ? name : label(i, src[i]);
}

/* Strict integer: optional sign, digits, nothing else. */
static int parse_ll(const char *s, int base, long long *out)
{
    char *end;

    if (!*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    *out = strtoll(s, &end, base);
    return errno || *end ? -1 : 0;
}

/* Granian's Duration: an integer is seconds; otherwise NdNhNmNs, each part
 * optional but in that order and at least one ("1h30m", "2d", "90s"). */
static int parse_duration(const char *s, long long *out)
{
    static const char units[] = "dhms";
    static const long long mult[] = { 86400, 3600, 60, 1 };
    long long total = 0;
    int u = 0;

    if (parse_ll(s, 10, out) == 0)
        return 0;
    if (!*s)
        return -1;
    while (*s) {
        long long n = 0;
        if (!isdigit((unsigned char)*s))
            return -1;
        for (; isdigit((unsigned char)*s); s++)
            if ((n = n * 10 + (*s - '0')) > 1000000000LL)
                return -1;
        while (u < 4 && units[u] != *s)
            u++;
        if (u == 4)
            return -1;
        total += n * mult[u++];
        s++;
    }
    *out = total;
    return 0;
}

/* File modes as chmod users write them: "0660" (and Python's "0o660") are
 * octal; without a leading 0 the number is decimal, as Granian reads it. */
static int parse_octal(const char *s, long long *out)
{
    if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
        return isdigit((unsigned char)s[2]) ? parse_ll(s + 2, 8, out) : -1;
    return parse_ll(s, s[0] == '0' ? 8 : 10, out);
}

/* --uds-permissions 666 is decimal (Granian reads it so): mode 01232, not
 * the rw-rw-rw- that deployment guides mean.  Kept, with a warning at
 * start-up when the value looks like octal digits without their 0. */
static const char *decimal_mode;    /* the value that looked octal, or NULL */
static int decimal_mode_src;

static void note_decimal_mode(const char *v, int from)
{
    size_t n = strlen(v);

    decimal_mode = n >= 3 && n <= 4 && v[0] != '0' && strspn(v, "01234567") == n ? v : NULL;
    decimal_mode_src = from;
}

/* ls(1)'s rwxrwxrwx for a mode, with the setuid, setgid and sticky bits. */
static void mode_text(long m, char out[10])
{
    for (int i = 0; i < 9; i++)
        out[i] = m & (0400 >> i) ? "rwxrwxrwx"[i] : '-';
    if (m & 04000) out[2] = out[2] == 'x' ? 's' : 'S';
    if (m & 02000) out[5] = out[5] == 'x' ? 's' : 'S';
    if (m & 01000) out[8] = out[8] == 'x' ? 't' : 'T';
    out[9] = 0;
}

static void warn_decimal_mode(void)
{
    char got[10], meant[10];

    if (!decimal_mode)
        return;
    mode_text(cfg.uds_permissions, got);
    mode_text(strtol(decimal_mode, NULL, 8), meant);
    log_warn("%s %s is decimal (as Granian reads it): the socket's mode is 0%o (%s); "
             "write 0%s for %s", label(OPT("uds-permissions"), decimal_mode_src),
             decimal_mode, (unsigned)cfg.uds_permissions, got, decimal_mode, meant);
}

/* Index of `val` in an "a|b|c" list, ignoring case as click does, or -1. */
static int choice_index(const char *list, const char *val)
{
    size_t n = strlen(val);

    for (int i = 0; *list; i++) {
        size_t len = strcspn(list, "|");
        if (len == n && !strncasecmp(list, val, n))
            return i;
        list += len + (list[len] == '|');
    }
    return -1;
}

/* click's boolean words, false/true pairs: the index parity is the value. */
static int parse_bool(const char *s)
{
    int k = choice_index("0|1|false|true|f|t|no|yes|n|y|off|on", s);

    return k < 0 ? -1 : k % 2;
}

static void *oom(void *p)
{
    if (!p)
        die("out of memory");
    return p;
}

static void list_add(strlist *l, const char *s)
{
    l->v = oom(realloc(l->v, (size_t)(l->n + 1) * sizeof *l->v));
    l->v[l->n++] = s;
}

static void bad_number(int i, int from, const char *v)
{
    const opt *o = &opts[i];
    char range[64];

    if (o->kind == K_OCTAL)
        die("%s: must be a file mode such as 0660 (got \"%s\")", label(i, from), v);
    if (o->hi == NOMAX)
        snprintf(range, sizeof range, ">= %lld", o->lo);
    else
        snprintf(range, sizeof range, "in %lld..%lld", o->lo, o->hi);
    die("%s: must be %s %s (got \"%s\")", label(i, from),
          o->kind == K_DUR ? "a duration (seconds or NdNhNmNs)"
          : o->kind == K_FLOAT ? "a number" : "an integer", range, v);
}

/* Parse `v` for option i into *c.  Any bad value is fatal. */
static void set_value(config *c, int i, const char *v, int from)
{
    const opt *o = &opts[i];
    void *field = (char *)c + o->off;
    long long n = 0, max = o->kind == K_I64 ? LLONG_MAX : INT_MAX;
    const char *seps = o->kind == K_PATHS ? ":" : " \t\n";
    char *end, *copy, *tok;
    double d;
    int k;

    switch (o->kind) {
    case K_BOOL:
        if ((k = parse_bool(v)) < 0)
            die("%s: must be a boolean: 1/0, true/false, yes/no, on/off, t/f, y/n (got \"%s\")",
                  label(i, from), v);
        *(int *)field = k;
        break;
    case K_INT: case K_SIZE: case K_I64: case K_DUR: case K_OCTAL:
        k = o->kind == K_DUR ? parse_duration(v, &n)
          : o->kind == K_OCTAL ? parse_octal(v, &n) : parse_ll(v, 10, &n);
        if (k < 0 || n < o->lo || n > o->hi || n > max)
            bad_number(i, from, v);
        if (o->kind == K_OCTAL)
            note_decimal_mode(v, from);
        if (o->kind == K_SIZE)
            *(size_t *)field = (size_t)n;
        else if (o->kind == K_I64)
            *(int64_t *)field = n;
        else
            *(int *)field = (int)n;
        break;
    case K_FLOAT:                   /* Python float() syntax: no hex, no inf */
        d = strtod(v, &end);
        if (!*v || *end || strpbrk(v, "xXpPiInN") || !isfinite(d) || d < (double)o->lo)
            bad_number(i, from, v);
        *(double *)field = d;
        break;
    case K_ENUM: case K_LEVEL: case K_WORD:
        if ((k = choice_index(o->choices, v)) < 0)
            die("%s: must be one of %s (got \"%s\")", label(i, from), o->choices, v);
        if (o->kind != K_WORD) {
            *(int *)field = o->kind == K_LEVEL ? levels[k] : k;
            break;
        }
        for (tok = copy = oom(strdup(v)); *tok; tok++)
            *tok = (char)tolower((unsigned char)*tok);
        *(const char **)field = copy;
        break;
    case K_STR:
        *(const char **)field = v;
        break;
    case K_LIST: case K_PATHS:
        if (src[i] != from)     /* the first explicit value replaces the default, */
            *(strlist *)field = (strlist){ NULL, 0 };   /* whose array dflt keeps */
        if (from != SRC_ENV) {
            list_add(field, v);
            break;
        }
        for (tok = strtok(oom(strdup(v)), seps); tok; tok = strtok(NULL, seps))
            list_add(field, tok);
        break;
    }
    src[i] = (unsigned char)from;
}

/* Does option i hold the same value in a and b? */
static int same_value(int i, const config *a, const config *b)
{
    const char *pa = (const char *)a + opts[i].off, *pb = (const char *)b + opts[i].off;
    const strlist *la = (const strlist *)pa, *lb = (const strlist *)pb;
    const char *sa, *sb;

    switch (opts[i].kind) {
    case K_SIZE:  return *(const size_t *)pa == *(const size_t *)pb;
    case K_I64:   return *(const int64_t *)pa == *(const int64_t *)pb;
    case K_FLOAT: return *(const double *)pa == *(const double *)pb;
    case K_WORD: case K_STR:
        sa = *(const char *const *)pa;
        sb = *(const char *const *)pb;
        return sa == sb || (sa && sb && !strcmp(sa, sb));
    case K_LIST: case K_PATHS:
        for (int j = 0; la->n == lb->n && j < la->n; j++)
            if (strcmp(la->v[j], lb->v[j]))
                return 0;
        return la->n == lb->n;
    default:      return *(const int *)pa == *(const int *)pb;
    }
}

/* ===================================================================
 * Command line and environment
 * =================================================================== */

static void usage(void)
{
    static const char *const metavar[] = {
        [K_INT] = "INT", [K_SIZE] = "BYTES", [K_I64] = "BYTES", [K_DUR] = "DURATION",
        [K_FLOAT] = "SECONDS", [K_OCTAL] = "MODE", [K_STR] = "TEXT",
        [K_LIST] = "TEXT...", [K_PATHS] = "PATH...",
    };
    char left[96];

    printf("usage: granc [OPTIONS] APP\n\n"
           "Serve APP (module[:attr] or path/to/file.py) with Granian's command line.\n"
           "Each option may also be set by the GRANIAN_* variable shown; the command\n"
           "line wins.  DURATION is seconds or NdNhNmNs (1h30m).  See granc(1).\n\n");
    for (int i = 0; i < NOPTS; i++) {
        const opt *o = &opts[i];
        if (o->kind == K_BOOL)
            snprintf(left, sizeof left, "--%s/--no-%s", o->name, o->name);
        else
            snprintf(left, sizeof left, "--%s %s", o->name,
                     o->choices ? o->choices : metavar[o->kind]);
        printf("  %-38s %s [%s%s%s]%s\n", left, o->help, o->env,
               o->def ? "; default " : "", o->def ? o->def : "",
               o->feat == FT_NOOP ? " (no effect in granc)"
               : o->feat == FT_TLS ? (TLS_BUILT ? "" : " (needs a TLS build)")
               : o->feat > FT_TLS ? " (not supported yet)" : "");
    }
    printf("  %-38s Print the version and exit\n  %-38s Print this help and exit\n",
           "--version", "--help");
}

static void set_target(const char *a)
{
    if (cfg.target)
        die("unexpected extra argument \"%s\" (one APP only)", a);
    cfg.target = a;
}

static void parse_args(int argc, char **argv)
{
    int i;

    for (i = 1; i < argc && strcmp(argv[i], "--"); i++) {   /* these win over errors */
        if (!strcmp(argv[i], "--help")) {
            usage();
            exit(0);
        }
        if (!strcmp(argv[i], "--version")) {
            printf("granc %s (granian %s compatible)\n", GRANC_VERSION, GRANIAN_COMPAT);
            exit(0);
        }
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *name = a + 2, *eq, *val;
        size_t len;
        int k, neg = 0;

        if (!strcmp(a, "--")) {
            while (++i < argc)
                set_target(argv[i]);
            break;
        }
        if (a[0] != '-' || !a[1]) {
            set_target(a);
            continue;
        }
        if (a[1] != '-')
            die("%s: unknown option (see --help)", a);
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        if ((k = opt_find(name, len)) < 0 && len > 3 && !strncmp(name, "no-", 3)) {
            k = opt_find(name + 3, len - 3);
            if (k >= 0 && opts[k].kind != K_BOOL)
                k = -1;
            neg = 1;
        }
        if (k < 0)
            die("--%.*s: unknown option (see --help)", (int)len, name);
        if (opts[k].kind == K_BOOL) {
            if (neg && eq)
                die("--no-%s: takes no value", opts[k].name);
            val = eq ? eq + 1 : neg ? "false" : "true";
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) {
            val = argv[++i];
        } else {
            die("--%s: missing value", opts[k].name);
        }
        set_value(&cfg, k, val, SRC_ARGV);
    }
}

/* Variables fill in what argv left alone.  An empty one counts as unset, as
 * in click. */
static void parse_env(void)
{
    for (int i = 0; i < NOPTS; i++) {
        const char *v = getenv(opts[i].env);
        if (src[i] != SRC_ARGV && v && *v)
            set_value(&cfg, i, v, SRC_ENV);
    }
}

/* A misspelt variable would otherwise be ignored without a word. */
static void warn_unknown_env(void)
{
    for (char **e = environ; *e; e++) {
        size_t len = strcspn(*e, "=");
        int known = 0;
        if (strncmp(*e, "GRANIAN_", 8))
            continue;
        for (int i = 0; i < NOPTS && !known; i++)
            known = strlen(opts[i].env) == len && !strncmp(opts[i].env, *e, len);
        if (!known)
            log_warn("Unknown environment variable %.*s ignored", (int)len, *e);
    }
}

static void set_defaults(void)
{
    for (int i = 0; i < NOPTS; i++)
        if (opts[i].def && opts[i].def[0] != '(')
            set_value(&dflt, i, opts[i].def, SRC_DEFAULT);
    dflt.uds_permissions = -1;
    dflt.fd = -1;
    cfg = dflt;
}

/* Cross-option checks and computed defaults, once argv and environment are in. */
static void resolve(void)
{
    struct stat st;
    char bad[64];

    if (!cfg.target)
        die("missing APP argument: module[:attr] or file.py (see --help)");
    if (cfg.loop && (!strcmp(cfg.loop, "rloop") || !strcmp(cfg.loop, "winloop")))
        die("%s: %s is not available in granc (use auto, asyncio or uvloop)",
              NAME("loop"), cfg.loop);
    for (int i = 0; i < NOPTS; i++) {
        if (opts[i].feat == FT_TLS && TLS_BUILT)
            continue;
        if (opts[i].feat == FT_TLS && src[i] != SRC_DEFAULT && !same_value(i, &cfg, &dflt))
            die("%s: TLS needs BearSSL: install libbearssl-dev and rebuild granc",
                  label(i, src[i]));
        if (opts[i].feat > FT_TLS && src[i] != SRC_DEFAULT && !same_value(i, &cfg, &dflt))
            die("%s: %s is not supported yet", label(i, src[i]), feat_name[opts[i].feat]);
    }
    /* BearSSL stops at TLS 1.2 (granc's default, where Granian's is 1.3):
     * refuse 1.3 rather than silently serve an older protocol than asked. */
    if (cfg.ssl_protocol_min && !strcmp(cfg.ssl_protocol_min, "tls1.3"))
        die("%s: TLS 1.3 is not available: BearSSL speaks TLS 1.2 only",
              NAME("ssl-protocol-min"));
    if (!cfg.ssl_certificate != !cfg.ssl_keyfile)
        die("%s: TLS needs both --ssl-certificate and --ssl-keyfile",
              cfg.ssl_certificate ? NAME("ssl-certificate") : NAME("ssl-keyfile"));

    if (!cfg.backpressure)
        cfg.backpressure = cfg.backlog / cfg.workers > 1 ? cfg.backlog / cfg.workers : 1;
    if (!cfg.blocking_threads)      /* Granian: wsgi max(1, backpressure/2), else 1 */
        cfg.blocking_threads = cfg.iface == IF_WSGI && cfg.backpressure / 2 > 1
                               ? cfg.backpressure / 2 : 1;
    else if (cfg.iface != IF_WSGI && cfg.blocking_threads > 1)
        die("%s: must be 1 on async interfaces (got %d)", NAME("blocking-threads"),
              cfg.blocking_threads);
    if (cfg.log_config && access(cfg.log_config, R_OK) < 0)
        die("%s: %s: %s", NAME("log-config"), cfg.log_config, strerror(errno));
    if (proxy_trust_init(&cfg.forwarded_allow_ips, bad, sizeof bad) < 0)
        die("%s: \"%s\" is not an IP address, a CIDR, unix or *", NAME("forwarded-allow-ips"), bad);
    if (cfg.working_dir && (stat(cfg.working_dir, &st) || !S_ISDIR(st.st_mode)))
        die("%s: %s is not a directory", NAME("working-dir"), cfg.working_dir);
    /* Granian: routes and mounts pair by position; one mount alone is
     * /static (the default route); routes without mounts serve nothing */
    if (cfg.static_path_mount.n && cfg.static_path_route.n != cfg.static_path_mount.n)
        die("%s and %s: %d route(s) for %d mount(s); give one route per mount",
            NAME("static-path-route"), NAME("static-path-mount"), cfg.static_path_route.n,
            cfg.static_path_mount.n);
    for (int i = 0; i < cfg.static_path_mount.n; i++) {
        const char *m = cfg.static_path_mount.v[i];
        if (stat(m, &st) || !S_ISDIR(st.st_mode))
            die("%s: %s is not a directory", NAME("static-path-mount"), m);
    }
    for (int i = 0; i < cfg.static_path_route.n; i++)
        if (cfg.static_path_route.v[i][0] != '/')
            die("%s: %s must start with /", NAME("static-path-route"), cfg.static_path_route.v[i]);
    if (cfg.static_path_dir_to_file && (!*cfg.static_path_dir_to_file
                                        || strchr(cfg.static_path_dir_to_file, '/')))
        die("%s: must be a file name (got \"%s\")", NAME("static-path-dir-to-file"),
            cfg.static_path_dir_to_file);
}

/* ===================================================================
 * Process titles, without a library
 * =================================================================== */

/* ps(1) shows the memory of argv[0], which runs on through the other
 * arguments and the environment strings.  At start-up argv and environ
 * move to the heap (config strings then point there), which frees that
 * area for titles. */
static char *title_area;
static size_t title_len;
/* The copies: extern, so that they stay reachable (valgrind) and no
 * optimiser drops the stores. */
char **title_argv, **title_environ;

static char **title_init(int argc, char **argv)
{
    char **av = oom(calloc((size_t)argc + 1, sizeof *av)), **ev;
    char *end = argv[0] + strlen(argv[0]) + 1;
    int n = 0;

    for (int i = 1; i < argc && argv[i] == end; i++)
        end = argv[i] + strlen(argv[i]) + 1;
    for (; environ[n]; n++)
        if (environ[n] == end)
            end = environ[n] + strlen(environ[n]) + 1;
    ev = oom(calloc((size_t)n + 1, sizeof *ev));
    for (int i = 0; i < n; i++)
        ev[i] = oom(strdup(environ[i]));
    for (int i = 0; i < argc; i++)
        av[i] = oom(strdup(argv[i]));
    environ = title_environ = ev;
    title_argv = av;
    title_area = argv[0];
    title_len = (size_t)(end - argv[0]);
    return av;
}

void proc_title(const char *fmt, ...)
{
    char buf[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (title_len > 1) {
        memset(title_area, 0, title_len);
        memcpy(title_area, buf, strnlen(buf, title_len - 1));
    }
#ifdef __linux__
    prctl(PR_SET_NAME, buf, 0, 0, 0);  /* comm: what top and pkill see */
#endif
}

#ifdef GRANC_FUZZ
/* ===================================================================
 * Hooks for tests/fuzz_opts.c (make fuzz), where libFuzzer owns main()
 * =================================================================== */

/* argv and the environment to a config, as main() does it: 0, or -1 where
 * granc would have died.  Strings in *out stay valid until the caller
 * frees what this call allocated. */
int fuzz_parse(int argc, char **argv, config *out)
{
    jmp_buf jb;

    memset(src, 0, sizeof src);
    memset(&cfg, 0, sizeof cfg);
    memset(&dflt, 0, sizeof dflt);
    fuzz_die = &jb;
    if (setjmp(jb))
        return -1;
    set_defaults();
    parse_args(argc, argv);
    parse_env();
    resolve();
    *out = cfg;
    return 0;
}

/* Option `name`'s value syntax: 'b'oolean, 'l'ist (its variable splits on
 * white space), 'p'aths (on ':'), 'v'alue; 0 if unknown. */
int fuzz_option(const char *name, size_t len, const char **env)
{
    int i = opt_find(name, len);

    if (i < 0)
        return 0;
    *env = opts[i].env;
    return opts[i].kind == K_BOOL ? 'b' : opts[i].kind == K_LIST ? 'l'
         : opts[i].kind == K_PATHS ? 'p' : 'v';
}

int fuzz_same_config(const config *a, const config *b)
{
    for (int i = 0; i < NOPTS; i++)
        if (!same_value(i, a, b))
            return 0;
    return !strcmp(a->target, b->target);
}

#define main granc_main             /* compiled, never called */
#endif

int main(int argc, char **argv)
{
    long cpus;

    argv = title_init(argc, argv);
    set_defaults();
    parse_args(argc, argv);
    parse_env();
    resolve();

    log_init(cfg.log, cfg.log_level);
    if (cfg.access_log && log_access_init(cfg.access_log_fmt) < 0)
        die("%s: invalid format \"%s\"", NAME("access-log-fmt"), cfg.access_log_fmt);
    warn_unknown_env();
    warn_decimal_mode();
    if ((cpus = sysconf(_SC_NPROCESSORS_ONLN)) > 0 && cfg.workers > cpus)
        log_warn("%d workers is more than the %ld online CPUs", cfg.workers, cpus);

    log_info("Starting granc %s (main PID: %ld)", GRANC_VERSION, (long)getpid());
    if (cfg.ssl_certificate) {      /* bad files stop us before anything is bound */
        char err[512];
        if (!(cfg.tls = tls_load(&cfg, err, sizeof err)))
            die("%s", err);
    }
    return master_run(&cfg);
}
