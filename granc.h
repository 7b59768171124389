/* granc.h -- shared structs and prototypes, grouped by the file that owns them.
 *
 * Read this first: it is the map of the program.  A master process (granc.c)
 * parses the configuration, binds the listeners and forks workers
 * (worker.c).  Each worker runs one event loop (ev.c) that accepts
 * connections and parses HTTP/1.1 (http.c); complete requests go to the
 * application interface (wsgi.c), whose Python threads answer them.
 */
#ifndef GRANC_H
#define GRANC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <poll.h>
#include <time.h>

#define GRANC_VERSION   "0.1.0"
#define GRANIAN_COMPAT  "2.8.1"     /* the Granian release whose CLI we follow */

/* Reserved worker exit codes: the master reads them to tell a broken
 * application (never worth a respawn) from a crash. */
#define WK_EXIT_OK      0
#define WK_EXIT_ERROR   1
#define WK_EXIT_LOAD    3           /* the application could not be loaded */

/* Clocks: monotonic milliseconds and microseconds (timeouts, durations),
 * wall-clock seconds (the access log). */
static inline int64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static inline int64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
static inline double clock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ===================================================================
 * granc.c -- configuration and the master process
 * =================================================================== */

enum iface { IF_RSGI, IF_ASGI, IF_ASGINL, IF_WSGI };
enum http_mode { HTTPM_AUTO, HTTPM_1, HTTPM_2 };
enum log_level { LL_NOTSET = 0, LL_DEBUG = 10, LL_INFO = 20, LL_WARNING = 30,
                 LL_ERROR = 40, LL_CRITICAL = 50 };

/* A list option (--static-path-route, --env-files, ...): strings owned by
 * argv or by a copy of the environment; never freed. */
typedef struct strlist {
    const char **v;
    int n;
} strlist;

/* Every option of Granian's CLI, after parsing and validation.  Times are
 * in the unit the field name says; 0 or NULL means "not set" where Granian
 * has no default. */
typedef struct config {
    const char *target;              /* APP argument: module[:attr] or file.py */
    /* listening */
    const char *host;                /* IP literal or host name */
    int port;                        /* 0 = ephemeral */
    const char *uds;                 /* Unix socket path, or NULL */
    int uds_permissions;             /* octal mode, -1 = leave to umask */
    int backlog;
    /* interface and protocol */
    int iface;                       /* enum iface */
    int http;                        /* enum http_mode */
    int ws;                          /* websockets on */
    int workers;
    int blocking_threads;            /* resolved: never 0 after validation */
    int blocking_threads_idle_timeout_s;
    int runtime_threads;             /* accepted, no meaning in granc */
    int runtime_blocking_threads;    /* accepted, no meaning in granc */
    const char *runtime_mode;        /* accepted, no meaning in granc */
    const char *loop;                /* auto|asyncio|rloop|uvloop|winloop */
    const char *task_impl;           /* accepted, no meaning in granc */
    int backpressure;                /* resolved: requests in flight per worker */
    /* HTTP/1 */
    size_t http1_buffer_size;        /* cap of the request head, bytes */
    int http1_header_read_timeout_ms;
    int http1_keep_alive;
    int http1_pipeline_flush;
    int64_t http1_max_body_size;     /* granc: 0 = unlimited; over it -> 413 */
    size_t ws_max_message_size;      /* granc: websocket message cap (1009) */
    /* HTTP/2 (not supported yet: any explicit value is refused) */
    int http2_adaptive_window;
    int http2_initial_connection_window_size;
    int http2_initial_stream_window_size;
    int http2_keep_alive_interval_ms;
    int http2_keep_alive_timeout_s;
    int http2_max_concurrent_streams;
    int http2_max_frame_size;
    int http2_max_headers_size;
    int http2_max_send_buffer_size;
    /* logging */
    int log;                         /* server log enabled */
    int log_level;                   /* enum log_level */
    const char *log_config;          /* JSON file */
    int access_log;
    const char *access_log_fmt;
    /* TLS */
    const char *ssl_certificate, *ssl_keyfile, *ssl_keyfile_password;
    const char *ssl_protocol_min;
    const char *ssl_ca;
    strlist ssl_crl;
    int ssl_client_verify;
    /* application */
    const char *url_path_prefix;
    int factory;
    const char *working_dir;
    strlist env_files;
    /* worker lifecycle */
    int respawn_failed_workers;
    double respawn_interval_s;
    int rss_sample_interval_s;
    int rss_samples;
    int workers_lifetime_s;          /* 0 = unset */
    int workers_max_rss_mib;         /* 0 = unset */
    int workers_kill_timeout_s;      /* 0 = wait forever */
    /* static files */
    strlist static_path_route, static_path_mount;
    const char *static_path_dir_to_file;
    int static_path_expires_s;
    /* metrics */
    int metrics;
    int metrics_scrape_interval_s;
    const char *metrics_address;
    int metrics_port;
    /* reload */
    int reload;
    strlist reload_paths, reload_ignore_dirs, reload_ignore_patterns,
            reload_ignore_paths;
    int reload_tick_ms;
    int reload_ignore_worker_failure;
    int graceful_timeout_s;          /* granc: 0 = wait forever */
    int max_requests, max_requests_jitter;   /* granc: 0 = off */
    /* granc: inherited listener, and proxies trusted for X-Forwarded-* */
    int fd;                          /* -1 = bind --host/--port or --uds */
    strlist forwarded_allow_ips;
    /* process */
    const char *process_name;
    const char *pid_file;
    /* set by the master, not an option */
    struct tls_ctx *tls;             /* loaded --ssl-* files, or NULL */
} config;

/* A start-up error: one line "granc: ..." on stderr, then exit 1. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* "--flag" or "GRANIAN_VAR": whichever set the option (for messages). */
const char *opt_label(const char *name);
/* Set the process title (ps) and, on Linux, its name (top, pkill). */
void proc_title(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ===================================================================
 * master.c -- the master process
 * =================================================================== */

/* Bind the listeners, fork the workers, supervise them until a stop
 * signal or a failure; returns the server's exit status. */
int master_run(const config *cfg);
/* Remove the pid file and socket file the master created (master only). */
void master_cleanup(void);

/* ===================================================================
 * reload.c -- --reload: watch files, tell the master when one changed
 * =================================================================== */

typedef struct reload_watch reload_watch;

/* Watch --reload-paths (default: the working directory) recursively,
 * filtered as watchfiles' DefaultFilter extended by --reload-ignore-dirs,
 * --reload-ignore-patterns and --reload-ignore-paths.  NULL with a
 * one-line reason in err on failure. */
reload_watch *reload_open(const config *cfg, char *err, size_t errlen);
/* A descriptor that turns readable when events are pending (inotify), or
 * -1 when the caller must call reload_changed every --reload-tick ms
 * (the portable stat() scan). */
int reload_fd(reload_watch *w);
/* Consume pending events.  1 when a watched file changed: the changes are
 * logged ("Changes detected, reloading workers.." and one line per path);
 * 0 otherwise.  Once a change counts, it waits until the trees have been
 * quiet for --reload-tick, at most 1.6 s. */
int reload_changed(reload_watch *w);
/* Release the watch (the master at exit; a worker right after fork). */
void reload_close(reload_watch *w);

/* ===================================================================
 * metrics.c -- --metrics: counters in shared memory, a Prometheus exporter
 * =================================================================== */

/* One worker's counters, in memory shared with the master.  The worker
 * writes them with relaxed atomic adds (several of its threads may);
 * the master reads them when scraped: there is no collection lag. */
typedef struct wk_metrics {
    /* set by the master */
    pid_t pid;                       /* 0: the slot is free */
    int id;                          /* worker number, the "worker" label */
    double born;                     /* monotonic seconds at spawn */
    /* set by the worker (Granian's names without the granian_ prefix) */
    uint64_t connections_active;     /* gauge */
    uint64_t connections_handled, connections_err, requests_handled;
    uint64_t static_requests_handled, static_requests_err;
    uint64_t blocking_threads, blocking_queue;               /* gauges */
    uint64_t blocking_idle_cumulative, blocking_busy_cumulative; /* us */
    uint64_t py_wait_cumulative;     /* us */
} wk_metrics;

#define M_ADD(field, n) __atomic_fetch_add(&wk_m->field, (uint64_t)(n), __ATOMIC_RELAXED)
#define M_SUB(field, n) __atomic_fetch_sub(&wk_m->field, (uint64_t)(n), __ATOMIC_RELAXED)
#define M_SET(field, v) __atomic_store_n(&wk_m->field, (uint64_t)(v), __ATOMIC_RELAXED)
/* This process's slot: a shared one in workers when --metrics is on,
 * else a private dummy, so that counting never needs a branch. */
extern wk_metrics *wk_m;

/* The master's own counters (Granian's workers_* metrics). */
enum { MC_SPAWNS, MC_RESPAWN_ERR, MC_RESPAWN_LIFETIME, MC_RESPAWN_RSS, MC_N };

/* Master, before any fork: map nslots shared slots and bind the exporter
 * on --metrics-address:--metrics-port (die() on failure). */
void metrics_open(const config *cfg, int nslots);
/* Master: slot i now belongs to worker `id` with `pid` (born now), or is
 * free again (pid 0). */
void metrics_worker(int i, pid_t pid, int id);
/* In a freshly forked worker: close the exporter's descriptors (an
 * inherited client socket would outlive the master's close), point wk_m
 * at slot i and zero its counters. */
void metrics_child(int i);
void metrics_count(int which);       /* MC_*: one more */
/* The master's poll set: the exporter's listener and its clients.  Fills
 * up to max entries, returns how many; lowers *timeout_ms (-1: none) to
 * the nearest client deadline. */
int metrics_pollfds(struct pollfd *p, int max, int *timeout_ms);
/* Serve what poll reported on the entries metrics_pollfds filled. */
void metrics_handle(const struct pollfd *p, int n);
void metrics_close(void);

/* One bound listening socket, created by the master, inherited by workers. */
typedef struct listener {
    int fd;
    int family;                      /* AF_INET, AF_INET6 or AF_UNIX */
    char addr[108];                  /* bound IP as text, or the UDS path */
    int port;                        /* bound port (0 for UDS) */
} listener;

#define MAX_LISTENERS 8

/* ===================================================================
 * ev.c -- the event loop (epoll or kqueue, chosen at compile time)
 * =================================================================== */

#define EV_NONE  0
#define EV_READ  1
#define EV_WRITE 2
/* ev_add flag for a listening socket shared by the workers: epoll wakes one
 * process, not all (EPOLLEXCLUSIVE).  Counts on the fd's first ev_add only;
 * epoll then refuses to change its mask: remove it whole or not at all.
 * Never part of ev_mask; kqueue ignores it. */
#define EV_EXCLUSIVE 4

typedef struct ev_loop ev_loop;
typedef void ev_proc(ev_loop *loop, int fd, void *udata, int mask);

ev_loop *ev_create(int setsize);
void ev_free(ev_loop *loop);
int ev_add(ev_loop *loop, int fd, int mask, ev_proc *proc, void *udata);
void ev_del(ev_loop *loop, int fd, int mask);
int ev_mask(ev_loop *loop, int fd);
int ev_poll(ev_loop *loop, int timeout_ms);
int ev_setsize(ev_loop *loop);
/* At most n events per ev_poll (1 .. setsize); the rest stay ready for the
 * next call, as the back ends are level-triggered. */
void ev_set_max_events(ev_loop *loop, int n);
const char *ev_backend(void);
/* The epoll/kqueue descriptor: readable when events are ready, so that
 * asyncio can wait on granc's loop as one reader (ASGI). */
int ev_fd(ev_loop *loop);

/* ===================================================================
 * http.c -- HTTP/1.1 request parser, chunked decoder, response heads
 * =================================================================== */

#define HTTP_MAX_HEADERS     100     /* hyper's default; more -> 431 */
#define HTTP_MAX_TARGET      8192    /* request-target bytes; more -> 414 */
#define HTTP_MAX_CHUNK_EXT   1024    /* chunk extension bytes per chunk */
#define HTTP_MAX_TRAILER     8192    /* trailer section bytes */

typedef struct slice {
    const char *p;
    size_t n;
} slice;

typedef struct http_header {
    slice name, value;
} http_header;

/* A parsed request head.  Slices point into the caller's buffer, which must
 * not move while they are used. */
typedef struct http_request {
    slice method, target;            /* target as sent */
    slice path, query;               /* target split at '?'; query w/o '?' */
    slice authority;                 /* absolute-form: host[:port]; else empty */
    int minor;                       /* HTTP/1.<minor>: 0 or 1 */
    size_t nheaders;
    http_header headers[HTTP_MAX_HEADERS];
    /* the framing facts, derived by http_parse_request */
    int64_t content_length;          /* -1: none */
    unsigned chunked : 1;            /* Transfer-Encoding: chunked */
    unsigned keep_alive : 1;         /* per version and Connection */
    unsigned expect_continue : 1;    /* Expect: 100-continue */
    unsigned upgrade : 1;            /* Connection: upgrade + Upgrade */
} http_request;

/* Parse the head in buf[0..len).  last_len is the length at the previous
 * call (0 the first time) so the end-of-head scan does not restart.
 * Returns the head length (> 0), HTTP_INCOMPLETE, or HTTP_BAD with
 * *status set to the answer (400, 414, 431, 501, 505). */
#define HTTP_INCOMPLETE (-2)
#define HTTP_BAD        (-1)
int http_parse_request(const char *buf, size_t len, size_t last_len,
                       http_request *req, int *status);

/* Chunked body decoder: zero-initialise, then feed raw bytes. */
typedef struct http_chunked {
    int state;
    uint64_t left;                   /* bytes left in the current chunk */
    size_t count;                    /* bytes of the current size/ext line */
    size_t trailer;                  /* trailer bytes seen */
    unsigned ndigits;
} http_chunked;

/* Decode buf[0..*len) in place.  On return buf[0..*len) holds the decoded
 * data.  Returns HTTP_INCOMPLETE (all input consumed, more needed),
 * HTTP_BAD, or, once the last chunk and trailers are consumed, the number
 * of bytes that follow the body (they start at buf[*len]). */
ssize_t http_chunked_decode(http_chunked *d, char *buf, size_t *len);

/* Percent-decode n bytes of in into out (room for n); returns the length. */
size_t http_pct_decode(const char *in, size_t n, char *out);
/* Token checks: a token (RFC 9110 5.6.2); a token in a comma list. */
int http_is_token(const char *p, size_t n);
int http_value_ok(const char *p, size_t n);
int http_has_token(const char *v, size_t n, const char *lower);
/* The first (or, with last, the last) field named lower, or NULL. */
const http_header *http_find_header(const http_request *rq, const char *lower, int last);
/* Header name compare, ASCII case-insensitive. */
int http_name_is(slice name, const char *lower);
const char *http_reason(int status);
/* The cached "Date: ..." value (29 bytes + NUL), refreshed once a second. */
const char *http_date(void);

/* ===================================================================
 * ws.c -- RFC 6455 WebSocket protocol (no I/O, no Python)
 * =================================================================== */

#define WS_MAX_MESSAGE_DEFAULT (16u << 20)   /* bytes; over it: close 1009 */

enum ws_opcode { WS_CONT = 0x0, WS_TEXT = 0x1, WS_BINARY = 0x2,
                 WS_CLOSE = 0x8, WS_PING = 0x9, WS_PONG = 0xA };

/* One frame header, as parsed from a client. */
typedef struct ws_frame {
    unsigned fin : 1;
    unsigned masked : 1;
    int opcode;                      /* enum ws_opcode */
    uint64_t len;                    /* payload bytes */
    uint8_t mask[4];
} ws_frame;

/* Per-connection message state: fragmentation and UTF-8 of text. */
typedef struct ws_state {
    int msg_opcode;                  /* the current message's opcode, set by
                                        the parser for every data frame; the
                                        caller resets it to 0 after the
                                        final frame */
    uint64_t msg_len;                /* bytes of the open message so far */
    uint32_t utf8;                   /* incremental UTF-8 validator state */
} ws_state;

/* Parse a client frame header from buf[0,n).  Returns the header length
 * (> 0), HTTP_INCOMPLETE, or HTTP_BAD with *close_code set: 1002 for a
 * protocol error (RSV bits, reserved opcode, unmasked frame, fragmented or
 * long control frame, 64-bit length with the top bit), 1009 when a data
 * frame would make the message exceed max_message. Also applies the
 * sequence rules with s (continuation without a message, a new data frame
 * inside one) and updates s for data frames. */
int ws_frame_parse(ws_state *s, const uint8_t *buf, size_t n, uint64_t max_message,
                   ws_frame *f, int *close_code);
/* Unmask payload bytes in place; offset is the position of p in the
 * frame's payload (for payloads handled in pieces). */
void ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);
/* Validate more text payload; fin: the message ends here.  Returns 0, or
 * -1 on invalid UTF-8 (close 1007).  Keeps its state in s->utf8. */
int ws_utf8(ws_state *s, const uint8_t *p, size_t n, int fin);
/* Write a server frame header (never masked) into out[10]; returns its length. */
size_t ws_frame_head(uint8_t out[10], int opcode, uint64_t len, int fin);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: out gets 28 chars + NUL.
 * Returns -1 if key is not the base64 of 16 bytes. */
int ws_accept_key(const char *key, size_t n, char out[29]);
/* Whether a close code received from a client is valid (RFC 6455 7.4). */
int ws_close_code_ok(int code);

/* TLS (tls.h): the master's certificates and key, one engine per connection. */
typedef struct tls_ctx tls_ctx;      /* certificates, key, anchors: per process */
typedef struct tls_conn tls_conn;    /* one connection's engine and buffers */

/* ===================================================================
 * log.c -- server log and access log
 * =================================================================== */

void log_init(int enabled, int level, const char *prefix);
void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LL_WARNING, __VA_ARGS__)
#define log_error(...) log_msg(LL_ERROR, __VA_ARGS__)

/* One finished request, as the access log sees it. */
typedef struct access_rec {
    const char *addr;                /* client IP text */
    double start;                    /* wall clock, seconds */
    double dt_ms;
    int status;
    slice method, path, query;
    const char *scheme;              /* "http" / "https" */
    const char *protocol;            /* "HTTP/1.1" ... */
    const http_header *headers;
    size_t nheaders;
} access_rec;

int log_access_init(const char *fmt);   /* -1 on a bad format */
/* Where finished lines go instead of stdout (NULL: stdout): the level,
 * whether it is an access line, the text without "[LEVEL] ". */
typedef void log_sink_fn(int level, int access, const char *line, size_t n);
void log_set_sink(log_sink_fn *fn);
void log_access(const access_rec *r);

/* ===================================================================
 * worker.c -- one worker process: the loop, accept, sweeps, stop
 * =================================================================== */

/* Worker -> master messages: one atomic write each on a shared pipe. */
enum { WM_READY = 1, WM_RECYCLE };  /* the app is loaded; --max-requests reached */
typedef struct tell_msg {
    pid_t pid;
    int what;
} tell_msg;
extern int wk_tell_fd;              /* the pipe's write end, in workers */

/* Runs worker number id (1-based) on the inherited listeners; never
 * returns: exits with one of the WK_EXIT_* codes. */
void wk_main(const config *cfg, const listener *ls, int nls, int id)
    __attribute__((noreturn));

int wk_stopping(void);               /* a graceful stop has begun */
int wk_id(void);                    /* the worker's number, for the log */
int wk_wake_fd(void);               /* a byte here wakes the loop (finished requests) */
int wk_poll(void);                  /* ASGI: run ready events; 1 once drained */
void wk_listen(void);               /* ASGI: start accepting (after lifespan) */

/* A client connection (conn.h); the interfaces below take one per request. */
typedef struct conn conn;

/* ===================================================================
 * The application interfaces: one table each, chosen once per worker
 * (worker.c) from --interface.  conn.c calls start when a request is
 * ready and event when a connection the interface watches is ready; the
 * interface answers through conn.h.  A NULL hook is one the interface
 * does not need.
 * =================================================================== */

typedef struct app_iface {
    const char *name;
    /* The app is loaded (GIL held): set up; -1 with an exception set. */
    int (*init)(const config *cfg, void *app);
    /* Serve until the worker has stopped, driving its loop (loop_fd) from
     * the interface's own (asyncio); returns an exit code.  NULL: the
     * worker runs its loop itself. */
    int (*run)(int loop_fd);
    /* c's request is ready (CS_APP).  Returns 1 when it is already done
     * (run inline), 0 when the interface finishes it later. */
    int (*start)(conn *c);
    void (*event)(conn *c, int mask);   /* c is readable/writable in CS_APP */
    void (*sweep)(conn *c, int64_t now, int64_t timeout_ms);  /* once a second, CS_APP */
    void (*stop)(conn *c);              /* a graceful stop begins; c is in CS_APP */
    void (*exit)(void);                 /* the loop has ended; Python is about to go */
} app_iface;

/* pool.c: WSGI on the loop thread (--blocking-threads 1) or on threads */
extern const app_iface wsgi_inline_iface, wsgi_pool_iface;
/* asgi.c: ASGI on asyncio (the websocket requests in asgi_ws.c) */
extern const app_iface asgi_iface;
/* RSGI: not supported yet (granc.c refuses --interface rsgi). */

/* ===================================================================
 * wsgi.c -- PEP 3333
 * =================================================================== */

/* What a response head fixed. */
typedef struct resp_head {
    int code;                        /* status */
    int64_t clen;                    /* Content-Length sent, or -1 */
    unsigned chunked : 1;            /* the body goes out chunked */
    unsigned nobody : 1;             /* HEAD, 1xx, 204, 304: no body bytes */
    unsigned keep : 1;               /* the head promised keep-alive */
} resp_head;

/* Python objects are opaque here (void *) so that only the files that
 * embed Python include Python.h. */
int resp_head_build(conn *c, resp_head *h, const char *reason, size_t rn,
                    void *headers, int64_t total, const char **out, size_t *outn);
int wsgi_init(const config *cfg, void *app);
/* Run the app for c's request, holding the GIL; sets c->keep. */
void wsgi_handle(conn *c);

/* ===================================================================
 * asgi.c -- ASGI 3.0 on asyncio
 * =================================================================== */

/* The worker stops: close c's websocket (1001); asgi_ws.c. */
void asgi_stop(conn *c);

#endif
