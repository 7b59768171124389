/* worker.c -- one worker process.
 *
 * The worker starts Python, loads the application, and then runs one
 * event loop in its main thread.  The loop owns every connection while it
 * reads a request head: it accepts, reads, parses (http.c) and answers bad
 * input itself.  A complete request is handed to an application thread
 * from a small pool (or run inline when --blocking-threads is 1); that
 * thread holds the GIL only while Python runs, does its own blocking I/O
 * on the socket (the body in, the response out) and hands the connection
 * back through a self-pipe.  Nothing here buffers a body whole: body bytes
 * pass through the connection's read buffer, one buffer at a time.
 *
 * Timeouts are checked by one sweep a second over all connections.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/sendfile.h>
#endif
#include "granc.h"

#define BUF_INIT        16384    /* first read buffer; grows up to --http1-buffer-size */
#define BODY_ROOM       65536    /* buffer room kept after a head for body reads */
#define ACCEPT_BATCH    64       /* accepts per readiness event, for fairness */
#define IO_TIMEOUT_MS   60000    /* a request waiting on a silent client */
#define LINGER_MS       2000     /* reading leftovers before closing after an error */
#define DRAIN_MAX       (1 << 20)/* unread body discarded to keep a connection */
#define BUF_STASH       64       /* spare read buffers kept for reuse */
#define EV_BATCH        64       /* events one ev_poll serves: under ASGI, a
                                    batch's requests all become tasks before
                                    any runs, and 1,024 of them at once
                                    outgrew the caches (hello world at -c1024:
                                    37k req/s unbounded, 70k at 64) */
#define STOP_GRACE_MS   250      /* when stopping: a keep-alive connection that
                                    just got a response may still send the next
                                    request, which gets served ("close") */

static struct worker {
    const config *cfg;
    ev_loop *loop;
    const listener *ls;
    int nls, id;
    int accepting;               /* listeners registered in the loop */
    int64_t accept_resume;       /* after EMFILE: when to try again (ms) */
    int64_t emfile_logged;       /* when "pausing accepts" was last said */
    int wake[2];                 /* self-pipe: signals, finished requests */
    conn *conns;                 /* every open connection */
    int nconns;
    int inflight;                /* requests dispatched and not finished */
    conn *waitq, *waitq_tail;    /* complete requests over --backpressure */
    int inline_mode;             /* --blocking-threads 1: run the app here */
    uint64_t served, recycle_at; /* requests done; --max-requests (+ jitter) */
    int64_t force_at;            /* --graceful-timeout: when a drain is cut */
    int forced;                  /* it was: exit without waiting */
    int asgi;                    /* ASGI: the app runs as asyncio tasks here */
    PyThreadState *main_ts;
    /* the application thread pool */
    pthread_mutex_t mu;
    sem_t work;                  /* one post per request queued (a semaphore,
                                    not a condition variable: glibc 2.36's
                                    lost wake-up, BZ #25847, hung workers) */
    conn *qhead, *qtail;         /* requests waiting for a thread */
    conn *done;                  /* requests finished, for the loop */
    int nthreads, idle, pool_stop;
    int nqueued;                 /* requests in qhead..qtail */
    int freed;                   /* buffers and connections freed since a trim */
    /* read buffers (with their parsed heads) of connections between
     * requests: an idle keep-alive connection holds none, so 10,000 idle
     * connections cost their conn structs, not 20 KiB each, and the next
     * request on a busy connection takes one back without malloc */
    struct { char *buf; http_request *req; } stash[BUF_STASH];
    int nstash;
} W = { .mu = PTHREAD_MUTEX_INITIALIZER };

static volatile sig_atomic_t stop_flag;
int wk_tell_fd = -1;
static atomic_int stopping;      /* read by app threads when writing heads */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int wk_stopping(void) { return atomic_load(&stopping); }

/* A message to the master (tell_msg): one write, atomic on a pipe. */
static void wk_tell(int what)
{
    tell_msg m = { .pid = getpid(), .what = what };
    if (wk_tell_fd >= 0 && write(wk_tell_fd, &m, sizeof(m)) < 0)
        log_debug("worker-%d: cannot reach the master: %s", W.id, strerror(errno));
}

/* ---------------------------------------------------------------------
 * --forwarded-allow-ips: proxies whose X-Forwarded-For/-Proto we believe
 * ------------------------------------------------------------------- */

typedef struct trust_net {
    int family;                  /* AF_INET or AF_INET6 */
    unsigned char ip[16];
    int bits;                    /* prefix length */
} trust_net;

static trust_net *trusted;
static int ntrusted, trust_any, trust_unix;

static int trust_add(const char *s)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    trust_net t = { 0 };
    if (!strcmp(s, "*")) return trust_any = 1;
    if (!strcmp(s, "unix")) return trust_unix = 1;
    if (n >= sizeof(ip)) return -1;
    memcpy(ip, s, n);
    ip[n] = 0;
    t.family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(t.family, ip, t.ip) != 1) return -1;
    int max = t.family == AF_INET ? 32 : 128;
    char *end;
    long bits = slash ? strtol(slash + 1, &end, 10) : max;
    if (slash && (!slash[1] || *end || bits < 0 || bits > max)) return -1;
    t.bits = (int)bits;
    trust_net *g = realloc(trusted, sizeof(*g) * (size_t)(ntrusted + 1));
    if (!g) return -1;
    trusted = g;
    trusted[ntrusted++] = t;
    return 0;
}

int proxy_trust_init(const strlist *l, char *bad, size_t badlen)
{
    for (int i = 0; i < l->n; i++) {
        char *copy = strdup(l->v[i]), *save = NULL;
        if (!copy) return -1;
        for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
            if (trust_add(tok) < 0) {
                snprintf(bad, badlen, "%s", tok);
                free(copy);
                return -1;
            }
        free(copy);
    }
    return 0;
}

/* Is this peer (an IP as text; "" on a Unix socket) a trusted proxy? */
static int trust_peer(const char *addr, int family)
{
    unsigned char ip[16];
    if (trust_any) return 1;
    if (family == AF_UNIX) return trust_unix;
    if (!*addr) return 0;
    int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, addr, ip) != 1) return 0;
    if (fam == AF_INET6 && !memcmp(ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) {
        memmove(ip, ip + 12, 4);        /* ::ffff:a.b.c.d is an IPv4 peer */
        fam = AF_INET;
    }
    for (int i = 0; i < ntrusted; i++) {
        const trust_net *t = &trusted[i];
        int b = t->bits;
        if (t->family != fam) continue;
        if (memcmp(ip, t->ip, (size_t)(b / 8))) continue;
        if (b % 8 && ((ip[b / 8] ^ t->ip[b / 8]) & (0xff00 >> (b % 8)) & 0xff)) continue;
        return 1;
    }
    return 0;
}

/* The value of the last field named `lower` (a list's rightmost line),
 * or an empty slice. */
static slice header(const http_request *rq, const char *lower)
{
    const http_header *h = http_find_header(rq, lower, 1);
    return h ? h->value : (slice){ "", 0 };
}

/* The next comma-separated item of v before *end, from the right, trimmed. */
static slice item_before(slice v, size_t *end)
{
    size_t e = *end, b;
    while (e > 0 && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t')) e--;
    for (b = e; b > 0 && v.p[b - 1] != ','; b--) {}
    *end = b > 0 ? b - 1 : 0;
    while (b < e && (v.p[b] == ' ' || v.p[b] == '\t')) b++;
    return (slice){ v.p + b, e - b };
}

/* What a trusted proxy says of the client, as uvicorn reads it: in
 * X-Forwarded-For the rightmost address that is not itself a trusted
 * proxy (the leftmost if all are); X-Forwarded-Proto's last value. */
static void forwarded(conn *c)
{
    c->fwd[0] = 0;
    c->fwd_proto = 0;
    if (!c->trusted) return;
    slice v = header(c->req, "x-forwarded-for");
    size_t end = v.n;
    while (v.n) {
        slice h = item_before(v, &end);
        if (h.n && h.n < sizeof(c->fwd)) {
            memcpy(c->fwd, h.p, h.n);
            c->fwd[h.n] = 0;
            if (!trust_peer(c->fwd, AF_INET)) break;
        }
        if (end == 0) break;
    }
    v = header(c->req, "x-forwarded-proto");
    end = v.n;
    slice p = item_before(v, &end);
    if (http_has_token(p.p, p.n, "https") || http_has_token(p.p, p.n, "wss")) c->fwd_proto = 1;
    else if (http_has_token(p.p, p.n, "http") || http_has_token(p.p, p.n, "ws")) c->fwd_proto = -1;
}

/* One access log line for c's request, if --access-log. */
void wk_access_log(conn *c, int status, const char *scheme)
{
    if (!W.cfg->access_log) return;
    access_rec a = {
        .addr = conn_client(c), .start = c->started, .status = status, .scheme = scheme,
        .dt_ms = (wall() - c->started) * 1000.0,
        .method = c->req->method, .path = c->req->path, .query = c->req->query,
        .protocol = c->req->minor ? "HTTP/1.1" : "HTTP/1.0",
        .headers = c->req->headers, .nheaders = c->req->nheaders,
    };
    log_access(&a);
}

/* ---------------------------------------------------------------------
 * Python start-up and application loading
 * ------------------------------------------------------------------- */

/* Granian's target resolution (granian/_internal.py), in Python because
 * it is Python's import machinery that it drives. */
static const char loader_src[] =
"import importlib, os, sys\n"
"def load(target, factory, wd):\n"
"    sys.path.insert(0, wd if wd else '')\n"
"    mod, attr = target, ''\n"
"    for i, ch in enumerate(target):\n"
"        if ch == ':' and target[i + 1:i + 2] not in ('/', '\\\\'):\n"
"            mod, attr = target[:i], target[i + 1:]\n"
"            break\n"
"    if mod.endswith('.py') or os.sep in mod:\n"
"        path = os.path.realpath(mod)\n"
"        if path.endswith('.py'):\n"
"            path = path[:-3]\n"
"        top, name = os.path.split(path)\n"
"        if name == '__init__':\n"
"            top, name = os.path.split(top)\n"
"        parts = [name]\n"
"        while os.path.exists(os.path.join(top, '__init__.py')):\n"
"            top, name = os.path.split(top)\n"
"            parts.insert(0, name)\n"
"        sys.path.insert(0, top)\n"
"        mod = '.'.join(parts)\n"
"    obj = importlib.import_module(mod)\n"
"    for part in (attr or 'app').split('.'):\n"
"        obj = getattr(obj, part)\n"
"    if factory:\n"
"        obj = obj()\n"
"    if not callable(obj):\n"
"        raise TypeError(f'{target!r} is not a callable application')\n"
"    return obj\n";

/* PEP 587 start-up.  $VIRTUAL_ENV decides sys.prefix the way `python`
 * does: we claim to be its bin/python, so CPython finds pyvenv.cfg. */
static void py_start(void)
{
    PyConfig pc;
    PyConfig_InitPythonConfig(&pc);
    pc.install_signal_handlers = 0;
    pc.parse_argv = 0;
    pc.buffered_stdio = 0;
    char exe[PATH_MAX];
    const char *venv = getenv("VIRTUAL_ENV");
    if (venv && *venv)
        snprintf(exe, sizeof(exe), "%s/bin/python", venv);
    else
        snprintf(exe, sizeof(exe), "%s", GRANC_PYTHON);
    char *argv[] = { "granc", NULL };
    PyStatus st = PyConfig_SetBytesString(&pc, &pc.program_name, exe);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesString(&pc, &pc.executable, exe);
    if (!PyStatus_Exception(st))
        st = PyConfig_SetBytesArgv(&pc, 1, argv);
    if (!PyStatus_Exception(st))
        st = Py_InitializeFromConfig(&pc);
    PyConfig_Clear(&pc);
    if (PyStatus_Exception(st)) {
        log_error("Python could not start: %s", st.err_msg ? st.err_msg : "?");
        exit(WK_EXIT_LOAD);
    }
}

static PyObject *load_app(const config *cfg)
{
    PyObject *globals = PyDict_New(), *app = NULL;
    if (!globals) return NULL;
    PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
    PyObject *r = PyRun_String(loader_src, Py_file_input, globals, globals);
    if (r) {
        Py_DECREF(r);
        PyObject *load = PyDict_GetItemString(globals, "load");
        app = PyObject_CallFunction(load, "siz", cfg->target, cfg->factory,
                                    cfg->working_dir);
    }
    Py_DECREF(globals);
    return app;
}

/* --log-config: Granian's default dictConfig, shallowly updated with the
 * file's JSON object (a "loggers" key there replaces granc's loggers),
 * then the level of "_granian" forced to --log-level, as Granian does. */
static const char logconf_src[] =
"import copy, json, logging, logging.config\n"
"BASE = {'version': 1, 'disable_existing_loggers': False,\n"
" 'formatters': {\n"
"  'generic': {'()': 'logging.Formatter', 'fmt': '[%(levelname)s] %(message)s',\n"
"              'datefmt': '[%Y-%m-%d %H:%M:%S %z]'},\n"
"  'access': {'()': 'logging.Formatter', 'fmt': '%(message)s',\n"
"             'datefmt': '[%Y-%m-%d %H:%M:%S %z]'}},\n"
" 'handlers': {\n"
"  'console': {'formatter': 'generic', 'class': 'logging.StreamHandler', 'stream': 'ext://sys.stdout'},\n"
"  'access': {'formatter': 'access', 'class': 'logging.StreamHandler', 'stream': 'ext://sys.stdout'}},\n"
" 'loggers': {\n"
"  '_granian': {'handlers': ['console'], 'level': 'INFO', 'propagate': False},\n"
"  'granian.access': {'handlers': ['access'], 'level': 'INFO', 'propagate': False}}}\n"
"def setup(path, level, enabled):\n"
"    conf = copy.deepcopy(BASE)\n"
"    with open(path) as f:\n"
"        conf.update(json.load(f))\n"
"    conf['loggers'].setdefault('_granian', {})['level'] = level\n"
"    logging.config.dictConfig(conf)\n"
"    server = logging.getLogger('_granian')\n"
"    if not enabled:\n"
"        server.setLevel(logging.CRITICAL + 1)\n"
"    return server, logging.getLogger('granian.access')\n";

static PyObject *py_loggers[2];  /* _granian, granian.access */

/* A finished line into Python's logging, from any thread. */
static void py_log_sink(int level, int access, const char *line, size_t n)
{
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *msg = PyUnicode_DecodeUTF8(line, (Py_ssize_t)n, "backslashreplace");
    PyObject *r = msg ? PyObject_CallMethod(py_loggers[access], "log", "iO", level, msg) : NULL;
    if (!r) PyErr_Clear();      /* a broken handler must not break the server */
    Py_XDECREF(r);
    Py_XDECREF(msg);
    PyGILState_Release(g);
}

static int log_config_apply(const config *cfg)
{
    PyObject *g = PyDict_New(), *r = NULL, *pair = NULL;
    if (!g) return -1;
    PyDict_SetItemString(g, "__builtins__", PyEval_GetBuiltins());
    if ((r = PyRun_String(logconf_src, Py_file_input, g, g)))
        pair = PyObject_CallFunction(PyDict_GetItemString(g, "setup"), "sii",
                                     cfg->log_config, cfg->log_level, cfg->log);
    Py_XDECREF(r);
    Py_DECREF(g);
    if (!pair || !PyArg_ParseTuple(pair, "OO", &py_loggers[0], &py_loggers[1])) {
        Py_XDECREF(pair);
        return -1;
    }
    Py_INCREF(py_loggers[0]);
    Py_INCREF(py_loggers[1]);
    Py_DECREF(pair);
    log_set_sink(py_log_sink);
    return 0;
}

/* Log the pending Python exception with its traceback, and clear it. */
void wk_log_exception(const char *what)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (!tb && v) tb = PyException_GetTraceback(v);
    PyObject *mod = PyImport_ImportModule("traceback"), *lines = NULL, *text = NULL;
    if (mod)
        lines = PyObject_CallMethod(mod, "format_exception", "OOO", t ? t : Py_None,
                                    v ? v : Py_None, tb ? tb : Py_None);
    if (lines) text = PyUnicode_Join(PyUnicode_FromString(""), lines);
    const char *s = text ? PyUnicode_AsUTF8(text) : NULL;
    log_error("%s\n%s", what, s ? s : "(no traceback)");
    PyErr_Clear();
    Py_XDECREF(text); Py_XDECREF(lines); Py_XDECREF(mod);
    Py_XDECREF(t); Py_XDECREF(v); Py_XDECREF(tb);
}

/* ---------------------------------------------------------------------
 * Connections (loop thread)
 * ------------------------------------------------------------------- */

static void on_conn(ev_loop *l, int fd, void *udata, int mask);

/* Every byte of a connection passes through these two (and conn_file),
 * so that an encrypted connection is one branch here, not one per caller.
 * They behave as read(2) and writev(2) on a non-blocking socket. */
ssize_t conn_rd(conn *c, void *buf, size_t n)
{
#ifdef GRANC_TLS
    if (c->tls) return tls_read(c->tls, c->fd, buf, n);
#endif
    ssize_t r;
    do r = read(c->fd, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

ssize_t conn_wrv(conn *c, const struct iovec *iov, int n)
{
#ifdef GRANC_TLS
    if (c->tls) return tls_writev(c->tls, c->fd, iov, n > 64 ? 64 : n);
#endif
    ssize_t w;
    do w = writev(c->fd, iov, n > 64 ? 64 : n);
    while (w < 0 && errno == EINTR);
    return w;
}

/* Part of a file, as sendfile(2) on Linux; *off advances. */
ssize_t conn_file(conn *c, int fd, off_t *off, size_t n)
{
#ifdef __linux__
    if (!c->tls)                /* encrypted bytes must pass through the engine */
        return sendfile(c->fd, fd, off, n > (1 << 30) ? (1 << 30) : n);
#endif
    {
    char tmp[65536];
    ssize_t r = pread(fd, tmp, n < sizeof(tmp) ? n : sizeof(tmp), *off);
    if (r <= 0) return r < 0 ? -1 : 0;
    struct iovec v = { tmp, (size_t)r };
    ssize_t w = conn_wrv(c, &v, 1);
    if (w > 0) *off += w;
    return w;
    }
}

/* What a connection waits for after EAGAIN: TLS may need to write to read
 * (a handshake flight) or the reverse. */
static int conn_want(conn *c, int mask)
{
#ifdef GRANC_TLS
    if (c->tls) return tls_want(c->tls);
#else
    (void)c;
#endif
    return mask;
}

static void accept_resume(void);

/* The size a connection's buffer starts at (and the only size stashed). */
static size_t buf_first(void)
{
    return BUF_INIT < W.cfg->http1_buffer_size ? BUF_INIT : W.cfg->http1_buffer_size;
}

/* c is between requests (or closing): its buffer goes back to the stash,
 * or to malloc when the stash is full or the buffer grew. */
static void buf_put(conn *c)
{
    if (!c->buf) return;
    if (c->req && c->cap == buf_first() && W.nstash < BUF_STASH) {
        W.stash[W.nstash].buf = c->buf;
        W.stash[W.nstash++].req = c->req;
    } else {
        free(c->buf);
        free(c->req);
        W.freed++;
    }
    c->buf = NULL;
    c->req = NULL;
    c->cap = c->len = c->scanned = 0;
}

static void conn_close(conn *c)
{
    ev_del(W.loop, c->fd, EV_READ | EV_WRITE);
#ifdef GRANC_TLS
    if (c->tls) tls_free(c->tls);
#endif
    close(c->fd);
    M_SUB(connections_active, 1);
    if (c->prev) c->prev->next = c->next; else W.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    W.nconns--;
    buf_put(c);
    free(c);
    W.freed++;
    if (W.accept_resume && !W.waitq) {  /* out of descriptors: one just freed */
        W.accept_resume = 0;
        accept_resume();
    }
}

static int want_read(conn *c)
{
    int mask = conn_want(c, EV_READ);
    ev_del(W.loop, c->fd, ~mask & (EV_READ | EV_WRITE));
    if (ev_add(W.loop, c->fd, mask, on_conn, c) < 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Stop writing, keep reading (and discarding) for a moment, then close:
 * closing a socket with unread input makes the kernel send RST, which can
 * destroy the answer before the client has read it. */
static void conn_linger(conn *c)
{
#ifdef GRANC_TLS
    if (c->tls) tls_close(c->tls, c->fd);
#endif
    char b;
    if (atomic_load(&stopping) && c->len == c->dend
        && recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN) {
        conn_close(c);          /* draining, nothing unread: no RST to fear */
        if (W.asgi) {           /* the drain may be over: have asyncio poll */
            ssize_t w = write(W.wake[1], "c", 1);
            (void)w;
        }
        return;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = CS_LINGER;
    c->since = now_ms();
    want_read(c);
}

/* Answer a request we refuse ourselves, then close. */
static void reply_error(conn *c, int status)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nserver: granc\r\ndate: %s\r\n"
                     "content-length: 0\r\nconnection: close\r\n\r\n",
                     status, http_reason(status), http_date());
    struct iovec v = { head, (size_t)n };
    ssize_t w = conn_wrv(c, &v, 1);
    (void)w;                    /* best effort: the socket buffer is empty */
    log_debug("worker-%d: answered %d to %s", W.id, status, c->addr);
    conn_linger(c);
}

/* Read what the socket has into the buffer.  Returns bytes read, 0 at
 * EOF, -1 on error or EAGAIN (errno tells), -2 when the buffer is full at
 * its limit. */
static ssize_t conn_fill(conn *c)
{
    if (!c->buf) {
        if (W.nstash) {
            W.nstash--;
            c->buf = W.stash[W.nstash].buf;
            c->req = W.stash[W.nstash].req;
        } else {
            c->buf = malloc(buf_first());
            c->req = malloc(sizeof(*c->req));
            if (!c->buf || !c->req) { errno = ENOMEM; return -1; }
        }
        c->cap = buf_first();
    }
    if (c->len == c->cap) {
        if (c->cap >= W.cfg->http1_buffer_size || c->state == CS_BODY) return -2;
        size_t cap = c->cap * 2;
        if (cap > W.cfg->http1_buffer_size) cap = W.cfg->http1_buffer_size;
        char *b = realloc(c->buf, cap);
        if (!b) { errno = ENOMEM; return -1; }
        c->buf = b;
        c->cap = cap;
    }
    ssize_t n = conn_rd(c, c->buf + c->len, c->cap - c->len);
    if (n > 0) c->len += (size_t)n;
    return n;
}

/* Set up the body of the request whose head is buf[0,head).  Returns -1
 * after answering the request itself. */
static int begin_request(conn *c, size_t head)
{
    http_request *rq = c->req;
    if (W.cfg->http1_max_body_size > 0 && rq->content_length > W.cfg->http1_max_body_size) {
        reply_error(c, 413);
        return -1;
    }
    /* keep room after the head for body reads, unless the whole body fits
     * already (a buffer starts small for each request: see buf_put);
     * moving the buffer moves the head, so parse it again where it lives */
    size_t room = c->cap - head;
    if (room < BODY_ROOM && (rq->chunked || rq->upgrade ||
                             (rq->content_length > 0 && (uint64_t)rq->content_length > room))) {
        char *b = realloc(c->buf, head + BODY_ROOM);
        if (!b) { reply_error(c, 503); return -1; }
        c->buf = b;
        c->cap = head + BODY_ROOM;
        int st;
        http_parse_request(c->buf, c->len, 0, rq, &st);
    }
    c->head = head;
    c->dpos = c->dend = head;
    c->body_chunked = rq->chunked;
    c->body_left = rq->chunked ? 0 : (rq->content_length > 0 ? rq->content_length : 0);
    c->body_done = !rq->chunked && c->body_left == 0;
    memset(&c->chunk, 0, sizeof(c->chunk));
    c->continue_sent = !(rq->expect_continue && rq->minor == 1);
    c->keep = 0;
    c->broken = 0;
    c->started = wall();
    forwarded(c);
    return 0;
}

/* The request is done: keep the connection for the next one (moving any
 * pipelined bytes to the front), or close it.  Returns 1 if c lives on. */
static int finish_request(conn *c)
{
    W.inflight--;
    M_ADD(requests_handled, 1);
    if (++W.served == W.recycle_at) {
        log_info("worker-%d: %llu requests served (--max-requests), asking for a replacement",
                 W.id, (unsigned long long)W.served);
        wk_tell(WM_RECYCLE);
    }
    if (c->broken) { conn_close(c); return 0; }
    /* a response that promised keep-alive is kept even when stopping: the
     * client may already be sending its next request (stop_sweep) */
    if (!c->keep) { conn_linger(c); return 0; }
    size_t rest = c->len - c->dend;
    memmove(c->buf, c->buf + c->dend, rest);
    c->len = rest;
    c->scanned = c->head = c->dpos = c->dend = 0;
    c->state = CS_HEAD;
    c->since = now_ms();
    return 1;
}

static void pool_submit(conn *c);

static void run_inline(conn *c)
{
    int64_t t1 = now_us();
    PyEval_RestoreThread(W.main_ts);
    int64_t t2 = now_us();
    wsgi_handle(c);
    W.main_ts = PyEval_SaveThread();
    M_ADD(py_wait_cumulative, t2 - t1);
    M_ADD(blocking_busy_cumulative, now_us() - t1);
}

static void sweep(int64_t now);

static void accept_pause(void)
{
    if (!W.accepting) return;
    for (int i = 0; i < W.nls; i++)
        ev_del(W.loop, W.ls[i].fd, EV_READ);
    W.accepting = 0;
}

static void on_accept(ev_loop *l, int fd, void *udata, int mask);

static void accept_resume(void)
{
    if (W.accepting || atomic_load(&stopping)) return;
    for (int i = 0; i < W.nls; i++)
        ev_add(W.loop, W.ls[i].fd, EV_READ | EV_EXCLUSIVE, on_accept, (void *)&W.ls[i]);
    W.accepting = 1;
}

static int body_decode(conn *c);
static int start_request(conn *c);

/* Read a body ahead in the loop while it fits the buffer, so that no
 * application thread (or, inline, the loop itself) waits on a slow client
 * for a small upload.  Leaves c in CS_BODY while more is to come, in
 * CS_HEAD when the request is ready to start.  A client waiting for
 * "100 Continue" sends nothing more: it starts at once. */
static int read_ahead(conn *c)
{
    if (c->len > c->dend && body_decode(c) < 0) {
        reply_error(c, errno == EFBIG ? 413 : 400);
        return -1;
    }
    c->state = !c->body_done && c->len < c->cap && c->continue_sent ? CS_BODY : CS_HEAD;
    return 0;
}

/* Parse and start as many requests as the buffer holds.  Inline requests
 * finish before start_request returns, so pipelined requests are served
 * in this loop, in order, without recursion. */
static void conn_serve(conn *c)
{
    while (c->state == CS_HEAD) {
        int status = 400;
        int r = http_parse_request(c->buf, c->len, c->scanned, c->req, &status);
        if (r == HTTP_INCOMPLETE) {
            if (c->len >= W.cfg->http1_buffer_size) { reply_error(c, 431); return; }
            c->scanned = c->len;
            /* TLS may hold decrypted bytes no readiness event will announce */
            if (c->tls && c->len < c->cap && conn_fill(c) > 0) continue;
            if (c->len == 0) buf_put(c);    /* idle: see W.stash */
            want_read(c);
            return;
        }
        if (r == HTTP_BAD) { reply_error(c, status); return; }
        if ((size_t)r > W.cfg->http1_buffer_size) { reply_error(c, 431); return; }
        if (begin_request(c, (size_t)r) < 0) return;
        if (read_ahead(c) < 0) return;
        if (c->state == CS_BODY) { want_read(c); return; }
        if (!start_request(c)) return;
    }
}

/* Hand a request over to the application: inline, to the pool, or to the
 * queue of requests over --backpressure.  Returns 1 when the request is
 * already done and c lives on in CS_HEAD (inline, keep-alive); c must not
 * be touched after 0. */
static int start_request(conn *c)
{
    c->state = CS_APP;
    if (W.inflight >= W.cfg->backpressure) {
        ev_del(W.loop, c->fd, EV_READ | EV_WRITE);
        c->qnext = NULL;
        if (W.waitq_tail) W.waitq_tail->qnext = c; else W.waitq = c;
        W.waitq_tail = c;
        accept_pause();
        return 0;
    }
    W.inflight++;
    if (W.asgi) {               /* READ stays: asgi.c drops it if unwanted */
        asgi_start(c);
        return 0;
    }
    if (!W.inline_mode) {
        ev_del(W.loop, c->fd, EV_READ | EV_WRITE);   /* the thread's for a while */
        pool_submit(c);
        return 0;
    }
    run_inline(c);
    return finish_request(c);
}

/* Requests held back by --backpressure, now that a slot is free. */
static void drain_waitq(void)
{
    while (W.waitq && W.inflight < W.cfg->backpressure) {
        conn *c = W.waitq;
        W.waitq = c->qnext;
        if (!W.waitq) W.waitq_tail = NULL;
        W.inflight++;
        if (W.asgi) asgi_start(c); else pool_submit(c);
    }
    if (!W.waitq && !W.accept_resume) accept_resume();
}

/* ASGI: the app is done with c's request and its response has left. */
void wk_request_done(conn *c)
{
    if (finish_request(c))
        conn_serve(c);
    drain_waitq();
}

/* Interest in c's events while the app owns it (ASGI). */
void wk_watch(conn *c, int mask)
{
    if (c->tls && (mask & EV_READ))
        mask |= conn_want(c, EV_READ);
    ev_del(W.loop, c->fd, ~mask & (EV_READ | EV_WRITE));
    if (mask && ev_add(W.loop, c->fd, mask, on_conn, c) < 0)
        c->broken = 1;
}

static void on_conn(ev_loop *l, int fd, void *udata, int mask)
{
    (void)l; (void)fd; (void)mask;
    conn *c = udata;
    if (c->state == CS_APP) {           /* ASGI: body, disconnect, output */
        asgi_event(c, mask);
        return;
    }
    if (c->state == CS_LINGER) {
        char sink[4096];
        ssize_t n = conn_rd(c, sink, sizeof(sink));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_close(c);
        return;
    }
    size_t before = c->len;
    ssize_t n = conn_fill(c);
    /* the head clock starts with its first byte (a TLS handshake counts
     * from the accept: its bytes never reach the buffer) */
    if (before == 0 && c->len > 0) c->since = now_ms();
    if (c->tls && !c->counted && c->len > 0) {      /* Granian: handshake done */
        c->counted = 1;
        M_ADD(connections_handled, 1);
    }
    if (n == -2 && c->state == CS_BODY) n = 1;  /* room full: the app reads on */
    if (n == -2) { reply_error(c, 431); return; }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (c->tls && !c->counted && n < 0) M_ADD(connections_err, 1);   /* handshake */
        conn_close(c);
        return;
    }
    if (n < 0) return;
    if (c->state == CS_BODY) {
        if (read_ahead(c) < 0 || c->state == CS_BODY) return;
        if (!start_request(c)) return;
    }
    conn_serve(c);
}

static void conn_new(int fd, const listener *ls, struct sockaddr_storage *sa)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c) { close(fd); return; }
    c->fd = fd;
    c->ls = ls;
    c->state = CS_HEAD;
    c->since = now_ms();
    if (sa->ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, c->addr, sizeof(c->addr));
        c->port = ntohs(in->sin_port);
    } else if (sa->ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, c->addr, sizeof(c->addr));
        c->port = ntohs(in6->sin6_port);
    }
    if (ls->family != AF_UNIX) {
        int one = 1;     /* a response leaves in one write: no Nagle stalls */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
#ifdef GRANC_TLS
    if (W.cfg->tls && !(c->tls = tls_new(W.cfg->tls))) {
        close(fd);
        free(c);
        return;
    }
#endif
    c->trusted = (ntrusted || trust_any || trust_unix) && trust_peer(c->addr, ls->family);
    c->next = W.conns;
    if (W.conns) W.conns->prev = c;
    W.conns = c;
    W.nconns++;
    if (!c->tls) M_ADD(connections_handled, 1);    /* TLS: after its handshake */
    M_ADD(connections_active, 1);
    want_read(c);
}

static void on_accept(ev_loop *l, int fd, void *udata, int mask)
{
    (void)l; (void)mask;
    const listener *ls = udata;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        memset(&sa, 0, sizeof(sa));
        int cfd = accept4(fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EINTR) M_ADD(connections_err, 1);
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: stop accepting for a second rather
                 * than spin on a listener that stays readable.  Every
                 * close resumes accepting, so say it once a second at most */
                int64_t now = now_ms();
                if (now - W.emfile_logged >= 1000) {
                    log_warn("worker-%d: accept: %s; pausing accepts", W.id, strerror(errno));
                    W.emfile_logged = now;
                }
                accept_pause();
                W.accept_resume = now + 1000;
            }
            return;
        }
        if (cfd >= ev_setsize(W.loop)) { close(cfd); continue; }
        conn_new(cfd, ls, &sa);
    }
}

/* ---------------------------------------------------------------------
 * The application thread pool
 * ------------------------------------------------------------------- */

static void *pool_thread(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);     /* signals go to the loop */
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    pthread_mutex_lock(&W.mu);
    for (;;) {
        int64_t t0 = now_us();
        while (!W.qhead && !W.pool_stop) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += W.cfg->blocking_threads_idle_timeout_s;
            W.idle++;
            pthread_mutex_unlock(&W.mu);
            int rc;
            do rc = sem_timedwait(&W.work, &dl);
            while (rc < 0 && errno == EINTR);
            int timed_out = rc < 0 && errno == ETIMEDOUT;
            pthread_mutex_lock(&W.mu);
            W.idle--;
            if (timed_out && !W.qhead && W.nthreads > 1) break;    /* reaped, but one */
        }
        if (!W.qhead) break;
        conn *c = W.qhead;
        W.qhead = c->qnext;
        if (!W.qhead) W.qtail = NULL;
        W.nqueued--;
        M_SUB(blocking_queue, 1);
        pthread_mutex_unlock(&W.mu);

        int64_t t1 = now_us();
        PyEval_RestoreThread(ts);
        int64_t t2 = now_us();
        wsgi_handle(c);
        PyEval_SaveThread();
        M_ADD(blocking_idle_cumulative, t1 - t0);
        M_ADD(py_wait_cumulative, t2 - t1);
        M_ADD(blocking_busy_cumulative, now_us() - t1);

        pthread_mutex_lock(&W.mu);
        int was_empty = W.done == NULL;
        c->qnext = W.done;
        W.done = c;
        if (was_empty) {
            ssize_t w = write(W.wake[1], "d", 1);
            (void)w;            /* a full pipe already means "wake up" */
        }
    }
    pthread_mutex_unlock(&W.mu);
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    pthread_mutex_lock(&W.mu);
    W.nthreads--;
    M_SET(blocking_threads, W.nthreads);
    pthread_mutex_unlock(&W.mu);
    return NULL;
}

/* One more application thread (W.mu held). */
static void pool_grow(void)
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, pool_thread, NULL) == 0)
        M_SET(blocking_threads, ++W.nthreads);
    else if (W.nthreads == 0)
        log_error("worker-%d: cannot start an application thread", W.id);
    pthread_attr_destroy(&at);
}

static void pool_submit(conn *c)
{
    pthread_mutex_lock(&W.mu);
    c->qnext = NULL;
    if (W.qtail) W.qtail->qnext = c; else W.qhead = c;
    W.qtail = c;
    M_ADD(blocking_queue, 1);
    /* more waiting requests than idle threads: an idle thread that has
     * been signalled but not yet woken must not count twice (#873) */
    if (++W.nqueued > W.idle && W.nthreads < W.cfg->blocking_threads)
        pool_grow();
    pthread_mutex_unlock(&W.mu);
    sem_post(&W.work);          /* a token: a thread that finds the queue
                                   empty just waits again */
}

/* Tell every thread to go and wait until they have. */
static void pool_shutdown(void)
{
    pthread_mutex_lock(&W.mu);
    W.pool_stop = 1;
    for (;;) {
        int n = W.nthreads;
        pthread_mutex_unlock(&W.mu);
        if (n == 0) return;
        for (int i = 0; i < n; i++) sem_post(&W.work);
        usleep(1000);
        pthread_mutex_lock(&W.mu);
    }
}

/* ---------------------------------------------------------------------
 * Blocking I/O for application threads
 * ------------------------------------------------------------------- */

/* After EAGAIN, an application thread waits for what c needs. */
static int conn_wait(conn *c, short events)
{
    int want = conn_want(c, events == POLLIN ? EV_READ : EV_WRITE);
    struct pollfd p = { .fd = c->fd, .events = want == EV_READ ? POLLIN : POLLOUT };
    int r;
    do r = poll(&p, 1, IO_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    return r > 0 ? 0 : -1;
}

int conn_send(conn *c, const struct iovec *iov, int n)
{
    struct iovec v[64];
    if (n > 64 || c->broken) return -1;
    memcpy(v, iov, sizeof(*v) * (size_t)n);
    struct iovec *p = v;
    while (n > 0) {
        ssize_t w = conn_wrv(c, p, n);
        if (w < 0) {
            if (errno == EAGAIN && conn_wait(c, POLLOUT) == 0) continue;
            c->broken = 1;
            return -1;
        }
        while (n > 0 && (size_t)w >= p->iov_len) { w -= (ssize_t)p->iov_len; p++; n--; }
        if (n > 0) { p->iov_base = (char *)p->iov_base + w; p->iov_len -= (size_t)w; }
    }
    return 0;
}

int conn_sendfile(conn *c, int fd, off_t off, size_t n)
{
    while (n > 0 && !c->broken) {
        ssize_t w = conn_file(c, fd, &off, n);
        if (w > 0) { n -= (size_t)w; continue; }
        if (w == 0) return -1;          /* the file shrank */
        if (errno == EINTR) continue;
        if (errno == EAGAIN && conn_wait(c, POLLOUT) == 0) continue;
        c->broken = 1;
    }
    return c->broken ? -1 : 0;
}

/* Turn raw bytes [dend,len) into body bytes. */
static int body_decode(conn *c)
{
    if (!c->body_chunked) {
        size_t k = c->len - c->dend;
        if ((uint64_t)k > (uint64_t)c->body_left) k = (size_t)c->body_left;
        c->dend += k;
        c->body_left -= (int64_t)k;
        c->body_done = c->body_left == 0;
        return 0;
    }
    size_t n = c->len - c->dend;
    ssize_t r = http_chunked_decode(&c->chunk, c->buf + c->dend, &n);
    if (r == HTTP_BAD) { c->broken = 1; errno = EBADMSG; return -1; }
    c->dend += n;
    c->body_left += (int64_t)n;          /* chunked: counts bytes decoded */
    if (W.cfg->http1_max_body_size > 0 && c->body_left > W.cfg->http1_max_body_size) {
        c->broken = 1;
        errno = EFBIG;
        return -1;
    }
    if (r >= 0) { c->body_done = 1; c->len = c->dend + (size_t)r; }
    else c->len = c->dend;
    return 0;
}

/* Make decoded body bytes available; wait: block in poll() (application
 * threads) or return -2 when the socket has nothing yet (ASGI). */
static ssize_t body_more(conn *c, int wait)
{
    for (;;) {
        if (c->dend > c->dpos) return (ssize_t)(c->dend - c->dpos);
        if (c->body_done) return 0;
        if (c->broken) return -1;
        if (c->len > c->dend) {
            if (body_decode(c) < 0) return -1;
            continue;
        }
        if (!c->continue_sent) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            struct iovec v = { (void *)cont, sizeof(cont) - 1 };
            c->continue_sent = 1;
            if (conn_send(c, &v, 1) < 0) return -1;
        }
        c->dpos = c->dend = c->len = c->head;   /* all consumed: reuse room */
        ssize_t n = conn_rd(c, c->buf + c->len, c->cap - c->len);
        if (n > 0) { c->len += (size_t)n; continue; }
        if (n < 0 && errno == EAGAIN && !wait) return -2;
        if (n < 0 && errno == EAGAIN && conn_wait(c, POLLIN) == 0) continue;
        c->broken = 1;          /* EOF, error or timeout inside a body */
        return -1;
    }
}

ssize_t conn_body(conn *c) { return body_more(c, 1); }
ssize_t conn_body_nb(conn *c) { return body_more(c, 0); }

/* ASGI, once the body is read: has the client gone?  Bytes that arrive
 * meanwhile (a pipelined request) are kept for later.  Returns 1 when it
 * has gone, 0 when it may still be there. */
int conn_gone(conn *c)
{
    if (c->broken) return 1;
    if (c->len == c->cap) return 0;     /* cannot tell without reading on */
    ssize_t n = conn_rd(c, c->buf + c->len, c->cap - c->len);
    if (n > 0) { c->len += (size_t)n; return 0; }
    if (n < 0 && errno == EAGAIN) return 0;
    c->broken = 1;
    return 1;
}

/* ASGI output: write what the socket takes now; the rest is the caller's
 * to keep.  Returns bytes written, or -1 when the client has gone. */
ssize_t conn_write_nb(conn *c, const struct iovec *iov, int n)
{
    if (c->broken) return -1;
    ssize_t w = conn_wrv(c, iov, n);
    if (w >= 0) return w;
    if (errno == EAGAIN) return 0;
    c->broken = 1;
    return -1;
}

/* Whether the body the app left unread (if any) can still be drained:
 * decided before the response head says keep-alive or close. */
int conn_can_keep(conn *c)
{
    if (!c->req->keep_alive || !W.cfg->http1_keep_alive || atomic_load(&stopping))
        return 0;
    if (c->body_done) return 1;
    if (!c->continue_sent) return 0;    /* the client still waits for 100 */
    return c->body_chunked || c->body_left + (int64_t)(c->dend - c->dpos) <= DRAIN_MAX;
}

/* Discard the body the app left unread, so that the connection can serve
 * the next request.  Returns 1 if the connection is reusable. */
int conn_drain(conn *c)
{
    if (c->body_done && c->dpos == c->dend) return 1;
    if (!c->continue_sent) return 0;    /* the client still waits for 100 */
    size_t left = DRAIN_MAX;
    for (;;) {
        c->dpos = c->dend;
        ssize_t n = conn_body(c);
        if (n == 0) return 1;
        if (n < 0 || (size_t)n > left) return 0;
        left -= (size_t)n;
    }
}

/* ---------------------------------------------------------------------
 * Signals, sweeps and the loop
 * ------------------------------------------------------------------- */

/* --graceful-timeout with --blocking-threads 1: the app runs on the loop
 * thread, which cannot sweep while it does.  Only async-signal-safe calls. */
static void on_alarm(int sig)
{
    static const char msg[] = "[WARNING] graceful timeout: worker exiting with requests in flight\n";
    (void)sig;
    if (W.cfg->log) {
        ssize_t w = write(STDOUT_FILENO, msg, sizeof(msg) - 1);
        (void)w;
    }
    _exit(WK_EXIT_OK);
}

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    /* inline, the loop thread may be in the app and see the stop only when
     * it returns: --graceful-timeout needs a timer of its own */
    if (!stop_flag && W.inline_mode && W.cfg->graceful_timeout_s)
        alarm((unsigned)W.cfg->graceful_timeout_s);
    stop_flag = 1;
    ssize_t w = write(W.wake[1], "s", 1);
    (void)w;
    errno = saved;
}

static void stop_sweep(int64_t now);

static void begin_stop(void)
{
    atomic_store(&stopping, 1);
    log_debug("worker-%d: draining", W.id);
    if (W.cfg->graceful_timeout_s)
        W.force_at = now_ms() + (int64_t)W.cfg->graceful_timeout_s * 1000;
    accept_pause();
    /* take the connections already queued, then close our copy of each
     * listener: on a full stop the master has closed its own, so the
     * socket goes and new connections are refused; on a rolling restart
     * the master's copy keeps it, and its queue, for the successor */
    for (int i = 0; i < W.nls; i++) {
        int n;
        do {
            n = W.nconns;
            on_accept(W.loop, W.ls[i].fd, (void *)&W.ls[i], EV_READ);
        } while (W.nconns > n && !W.accept_resume);
        close(W.ls[i].fd);
    }
    /* idle keep-alive connections go (stop_sweep), the rest finish their
     * request; websockets are told */
    for (conn *c = W.conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CS_APP && W.asgi && c->app)
            asgi_stop(c);
    }
    stop_sweep(now_ms());
}

/* While stopping, often: close the idle keep-alive connections, except one
 * that got its response under STOP_GRACE_MS ago and whose client may be
 * sending the next request right now (closing it would lose that request:
 * the response said keep-alive).  Bytes already there get served. */
static void stop_sweep(int64_t now)
{
    for (conn *c = W.conns, *next; c; c = next) {
        next = c->next;
        int unread = 0;
        if (c->state != CS_HEAD || c->len > 0) continue;
        if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0) continue;
        if (now - c->since >= STOP_GRACE_MS)
            conn_close(c);
    }
}

static void on_wake(ev_loop *l, int fd, void *udata, int mask)
{
    (void)l; (void)udata; (void)mask;
    char sink[256];
    while (read(fd, sink, sizeof(sink)) > 0) {}
    if (stop_flag && !atomic_load(&stopping))
        begin_stop();
    pthread_mutex_lock(&W.mu);
    conn *done = W.done;
    W.done = NULL;
    pthread_mutex_unlock(&W.mu);
    while (done) {
        conn *c = done;
        done = c->qnext;
        if (finish_request(c))
            conn_serve(c);
    }
    drain_waitq();
}

void wk_listen(void)
{
    accept_resume();
    log_info("Started worker-%d", W.id);
    wk_tell(WM_READY);
}

/* --graceful-timeout ran out: what is still open is cut (sockets shut
 * down, so application threads blocked on them fail at once) and the
 * worker exits without waiting for the requests to notice. */
static void force_stop(void)
{
    log_warn("worker-%d: graceful timeout (%d s): closing %d connection(s)", W.id,
             W.cfg->graceful_timeout_s, W.nconns);
    for (conn *c = W.conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CS_APP) { shutdown(c->fd, SHUT_RDWR); c->broken = 1; }
        else conn_close(c);
    }
    W.forced = 1;
}

/* ASGI: asyncio saw granc's loop descriptor readable (or a second went
 * by): run what is ready.  Returns 1 once a stop has drained everything. */
int wk_poll(void)
{
    static int64_t last;
    ev_poll(W.loop, 0);
    int64_t now = now_ms();
    if (now - last >= 1000) { sweep(now); last = now; }
    if (atomic_load(&stopping)) stop_sweep(now);
    return atomic_load(&stopping) && ((W.nconns == 0 && W.inflight == 0) || W.forced);
}

/* Once a second: idle and slow connections, buffers of idle ones. */
static void sweep(int64_t now)
{
    int64_t head_to = W.cfg->http1_header_read_timeout_ms;
    for (conn *c = W.conns, *next; c; c = next) {
        next = c->next;
        int64_t age = now - c->since;
        if (c->state == CS_LINGER) {
            if (age >= LINGER_MS) conn_close(c);
        } else if (c->state == CS_HEAD || c->state == CS_BODY) {
            if (age >= head_to) {
                /* an idle keep-alive connection just goes; a slow head is told */
                if (c->len == 0) conn_close(c); else reply_error(c, 408);
            } else if (c->len == 0 && c->buf) {
                buf_put(c);         /* a wake-up that brought no bytes */
            }
        } else if (c->state == CS_APP && W.asgi) {
            asgi_sweep(c, now, IO_TIMEOUT_MS);
        }
    }
#ifdef __GLIBC__
    /* glibc keeps freed pages that lie between live allocations (the
     * small conn structs of idle connections): give them back */
    if (W.freed >= 256) {
        malloc_trim(0);
        W.freed = 0;
    }
#endif
    if (W.force_at && now >= W.force_at && !W.forced) force_stop();
    if (W.accept_resume && now >= W.accept_resume) {
        W.accept_resume = 0;
        if (!W.waitq) accept_resume();
    }
}

void wk_main(const config *cfg, const listener *ls, int nls, int id)
{
    W.cfg = cfg;
    W.ls = ls;
    W.nls = nls;
    W.id = id;
    W.inline_mode = cfg->blocking_threads == 1;
    sem_init(&W.work, 0, 0);
    W.asgi = cfg->iface == IF_ASGI || cfg->iface == IF_ASGINL;
    if (cfg->max_requests) {         /* jitter spreads the workers' recycling */
        srand((unsigned)getpid() ^ (unsigned)now_us());
        W.recycle_at = (uint64_t)cfg->max_requests
                       + (cfg->max_requests_jitter ? (uint64_t)rand() % ((uint64_t)cfg->max_requests_jitter + 1) : 0);
    }

    struct rlimit rl;       /* idle keep-alive connections are cheap: allow many */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 1048576 ? 1048576 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    for (int i = 0; i < nls; i++)       /* not for the app's subprocesses */
        fcntl(ls[i].fd, F_SETFD, FD_CLOEXEC);
    if (pipe(W.wake) < 0) { log_error("pipe: %s", strerror(errno)); exit(WK_EXIT_ERROR); }
    for (int i = 0; i < 2; i++) {
        fcntl(W.wake[i], F_SETFL, O_NONBLOCK);
        fcntl(W.wake[i], F_SETFD, FD_CLOEXEC);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    py_start();
    if (cfg->log_config && log_config_apply(cfg) < 0) {
        wk_log_exception("--log-config: the logging configuration failed");
        exit(WK_EXIT_LOAD);
    }
    PyObject *app = load_app(cfg);
    if (!app || (W.asgi ? asgi_init(cfg, app) : wsgi_init(cfg, app, cfg->workers)) < 0) {
        PyErr_Print();
        log_error("worker-%d: the application %s could not be loaded", id, cfg->target);
        exit(WK_EXIT_LOAD);
    }
#ifdef __GLIBC__
    /* A body read in chunks (wsgi.input.read(65536), ASGI body messages)
     * allocates and frees a bytes object, and often a scratch buffer, per
     * chunk, at the top of the heap.  glibc gives the heap's top back once
     * it passes 128 KiB free, a threshold that only rises (to twice the
     * block) when a block too big for the heap, and so mmap()ed, is freed.
     * Until then a chunk's free() could shrink the heap with brk() and the
     * next chunk's malloc() grow it again: 16 page faults and a TLB flush
     * per 64 KiB.  A 1 GiB upload took up to 1,000 brk() and 4,000 faults,
     * and 120,000 faults, several times the CPU, when the chunks landed at
     * the top (README, Uploads).  Freeing one 256 KiB block raises the
     * thresholds the documented way (mallopt(3)): blocks under 256 KiB stay
     * on the heap, whose top goes back past 512 KiB free, and they still
     * rise for bigger blocks, which fixed mallopt() values would stop.  Done
     * after the app is loaded, so that start-up allocates as it did. */
    {
        void *volatile block = malloc(256 << 10);
        free(block);
    }
#endif

    int setsize = rl.rlim_cur > 1048576 ? 1048576 : (int)rl.rlim_cur;
    W.loop = ev_create(setsize + 16);
    if (!W.loop || ev_add(W.loop, W.wake[0], EV_READ, on_wake, NULL) < 0) {
        log_error("worker-%d: cannot create the event loop", id);
        exit(WK_EXIT_ERROR);
    }
    ev_set_max_events(W.loop, EV_BATCH);
    if (W.asgi) {               /* asyncio drives the loop; the GIL stays here */
        M_SET(blocking_threads, 1);
        int rc = asgi_run(ev_fd(W.loop));
        log_set_sink(NULL);     /* Python is about to go */
        if (W.forced) {         /* tasks still hold connections: no finalizing */
            log_info("Stopped worker-%d", id);
            _exit(rc);
        }
        Py_DECREF(app);
        if (Py_FinalizeEx() < 0 && rc == WK_EXIT_OK) rc = WK_EXIT_ERROR;
        log_info("Stopped worker-%d", id);
        exit(rc);
    }
    W.main_ts = PyEval_SaveThread();
    if (W.inline_mode) {
        M_SET(blocking_threads, 1);     /* the loop thread runs the app */
    } else {                            /* one thread waits from the start */
        pthread_mutex_lock(&W.mu);
        pool_grow();
        pthread_mutex_unlock(&W.mu);
    }
    wk_listen();

    int tick = cfg->http1_header_read_timeout_ms < 1000 ? cfg->http1_header_read_timeout_ms : 1000;
    int64_t last = now_ms();
    while (!W.forced && (!atomic_load(&stopping) || W.nconns > 0 || W.inflight > 0)) {
        int stop = atomic_load(&stopping);
        if (ev_poll(W.loop, stop ? 50 : tick) < 0 && errno != EINTR) {
            log_error("worker-%d: event loop: %s", id, strerror(errno));
            break;
        }
        int64_t now = now_ms();
        if (now - last >= tick) { sweep(now); last = now; }
        if (stop) stop_sweep(now);
    }
    if (W.forced) {             /* app threads may be stuck in Python */
        log_info("Stopped worker-%d", id);
        _exit(WK_EXIT_OK);
    }
    pool_shutdown();
    log_set_sink(NULL);         /* Python is about to go */
    PyEval_RestoreThread(W.main_ts);
    Py_DECREF(app);
    int rc = Py_FinalizeEx() < 0 ? WK_EXIT_ERROR : WK_EXIT_OK;
    log_info("Stopped worker-%d", id);
    exit(rc);
}
