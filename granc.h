/* granc.h -- what every part of granc shares: the configuration, the
 * listeners, slices of bytes, clocks, exit codes.  Each module has its own
 * header (ev.h, http.h, conn.h, ...) for the rest.
 *
 * The map: a master process (granc.c, master.c) parses the configuration,
 * binds the listeners and forks workers (worker.c).  Each worker runs one
 * event loop (ev.c) that accepts connections (conn.c) and parses HTTP/1.1
 * (http.c); complete requests go to the application interface (pool.c and
 * wsgi.c, or asgi.c), whose Python answers them.
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

/* Clocks: monotonic milliseconds, microseconds and seconds (timeouts,
 * durations, supervision), wall-clock seconds (the access log). */
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
static inline double clock_s(void)
{
    return (double)clock_us() / 1e6;
}
static inline double clock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A run of bytes owned by someone else (a request buffer, a string). */
typedef struct slice {
    const char *p;
    size_t n;
} slice;

/* ===================================================================
 * Configuration (granc.c)
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
    int static_path_follow_symlinks;     /* granc: links may leave the mount */
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

/* One bound listening socket, created by the master, inherited by workers. */
typedef struct listener {
    int fd;
    int family;                      /* AF_INET, AF_INET6 or AF_UNIX */
    char addr[108];                  /* bound IP as text, or the UDS path */
    int port;                        /* bound port (0 for UDS) */
} listener;

#define MAX_LISTENERS 8

/* TLS (tls.h): the master's certificates and key, one engine per connection. */
typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;
/* A client connection (conn.h). */
typedef struct conn conn;

#endif
