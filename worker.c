/* worker.c -- one worker process.
 *
 * The worker starts Python, loads the application, and then runs one
 * event loop in its main thread (under the default WSGI pool, on whichever
 * of the pool's threads leads: pool.c, wk_owner): it accepts connections
 * (conn.c serves them), wakes up for signals and for requests the thread
 * pool finished, sweeps timeouts once a second over all connections, and
 * stops gracefully.  Under ASGI and RSGI, asyncio runs the loop instead and polls this
 * one through wk_poll.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include "conn.h"
#include "h2.h"
#include "pool.h"
#include "py.h"
#include "static.h"
#include "worker_int.h"
#include "ev.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

#define ACCEPT_BATCH    64       /* accepts per readiness event, for fairness */
#define LINGER_MS       2000     /* reading leftovers before closing after an error */
#define EV_BATCH        64       /* events one ev_poll serves: under ASGI, a
                                    batch's requests all become tasks before
                                    any runs, and 1,024 of them at once
                                    outgrew the caches (hello world at -c1024:
                                    37k req/s unbounded, 70k at 64) */
#define STOP_GRACE_MS   250      /* when stopping: a keep-alive connection that
                                    just got a response may still send the next
                                    request, which gets served ("close") */

struct worker W;
static volatile sig_atomic_t stop_flag;
int wk_tell_fd = -1;
_Thread_local int wk_owner;

static int owns_loop(void) { return wk_owner; }

int wk_stopping(void) { return atomic_load(&W.stopping); }
int wk_id(void) { return W.id; }
int wk_wake_fd(void) { return W.wake[1]; }

/* A message to the master (tell_msg): one write, atomic on a pipe. */
void wk_tell(int what)
{
    tell_msg m = { .pid = getpid(), .what = what };
    if (wk_tell_fd >= 0 && write(wk_tell_fd, &m, sizeof(m)) < 0)
        log_debug("worker-%d: cannot reach the master: %s", W.id, strerror(errno));
}

/* A request is done (HTTP/1.1 or an HTTP/2 stream): count it, and after
 * --max-requests of them ask the master for a replacement. */
void wk_request_done(void)
{
    W.inflight--;
    M_ADD(requests_handled, 1);
    if (++W.served == W.recycle_at) {
        log_info("worker-%d: %llu requests served (--max-requests), asking for a replacement",
                 W.id, (unsigned long long)W.served);
        wk_tell(WM_RECYCLE);
    }
}

void wk_accept_pause(void)
{
    if (!W.accepting) return;
    for (int i = 0; i < W.nls; i++)
        ev_del(W.loop, W.ls[i].fd, EV_READ);
    W.accepting = 0;
}

static void on_accept(ev_loop *l, int fd, void *udata, int mask);

void wk_accept_resume(void)
{
    if (W.accepting || atomic_load(&W.stopping)) return;
    for (int i = 0; i < W.nls; i++)
        ev_add(W.loop, W.ls[i].fd, EV_READ | EV_EXCLUSIVE, on_accept, (void *)&W.ls[i]);
    W.accepting = 1;
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
                int64_t now = clock_ms();
                if (now - W.emfile_logged >= 1000) {
                    log_warn("worker-%d: accept: %s; pausing accepts", W.id, strerror(errno));
                    W.emfile_logged = now;
                }
                wk_accept_pause();
                W.accept_resume = now + 1000;
            }
            return;
        }
        if (cfd >= ev_setsize(W.loop)) { close(cfd); continue; }
        conn_new(cfd, ls, &sa);
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
static void sweep(int64_t now);

static void begin_stop(void)
{
    atomic_store(&W.stopping, 1);
    log_debug("worker-%d: draining", W.id);
    if (W.cfg->graceful_timeout_s)
        W.force_at = clock_ms() + (int64_t)W.cfg->graceful_timeout_s * 1000;
    wk_accept_pause();
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
        if (c->state == CS_APP && c->r.ifc->stop && c->r.app)
            c->r.ifc->stop(&c->r);
        else if (c->state == CS_H2)
            h2_stop(c);         /* GOAWAY: the streams in flight finish */
    }
    stop_sweep(clock_ms());
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
        if (c->state == CS_H2 && h2_idle(c)) h2_io(c, 0);   /* closes it */
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
    if (stop_flag && !atomic_load(&W.stopping))
        begin_stop();
    h2_wake();
    request *done = pool_done();
    while (done) {
        request *r = done;
        done = r->qnext;
        r->ops->done(r);
        if (!wk_owner) {        /* it ran the next request and lost the loop */
            pool_requeue(done);
            return;
        }
    }
    conn_drain_waitq();
}

void wk_listen(void)
{
    wk_accept_resume();
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
        if (c->state == CS_APP) c->r.ops->abort(&c->r);
        else if (c->state == CS_H2) h2_force(c);
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
    int64_t now = clock_ms();
    if (now - last >= 1000) { sweep(now); last = now; }
    if (atomic_load(&W.stopping)) stop_sweep(now);
    return atomic_load(&W.stopping) && ((W.nconns == 0 && W.inflight == 0) || W.forced);
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
                if (c->len == 0) conn_close(c); else conn_reply_error(c, 408);
            } else if (c->len == 0 && c->buf) {
                conn_buf_put(c);         /* a wake-up that brought no bytes */
            }
        } else if (c->state == CS_H2) {
            h2_sweep(c, now);
        } else if (c->state == CS_APP && c->r.ifc->sweep) {
            c->r.ifc->sweep(&c->r, now, IO_TIMEOUT_MS);
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
        if (!W.waitq) wk_accept_resume();
    }
}

/* The interface --interface names. */
static const app_iface *iface_for(const config *cfg)
{
    switch (cfg->iface) {
    case IF_RSGI: return &rsgi_iface;
    case IF_ASGI:
    case IF_ASGINL: return &asgi_iface;
    case IF_WSGI: return cfg->blocking_threads == 1 ? &wsgi_inline_iface : &wsgi_pool_iface;
    default: return NULL;
    }
}

/* The worker's own loop, for an interface without one (WSGI), a turn at
 * a time: until a stop has drained every connection, or cut them. */
int wk_turn(void)
{
    if (W.forced || (atomic_load(&W.stopping) && W.nconns == 0 && W.inflight == 0))
        return 0;
    int stop = atomic_load(&W.stopping);
    if (ev_poll(W.loop, stop ? 50 : W.tick) < 0 && errno != EINTR) {
        log_error("worker-%d: event loop: %s", W.id, strerror(errno));
        return 0;
    }
    if (!wk_owner) return -1;
    int64_t now = clock_ms();
    if (now - W.last_sweep >= W.tick) { sweep(now); W.last_sweep = now; }
    if (stop) stop_sweep(now);
    return 1;
}

static int serve(void)
{
    wk_listen();
    while (wk_turn() > 0) {}
    return WK_EXIT_OK;
}

void wk_main(const config *cfg, const listener *ls, int nls, int id)
{
    W.cfg = cfg;
    W.ls = ls;
    W.nls = nls;
    W.id = id;
    W.inline_mode = cfg->blocking_threads == 1;
    W.ifc = iface_for(cfg);
    if (static_init(cfg) < 0) exit(WK_EXIT_ERROR);
    if (cfg->max_requests) {         /* jitter spreads the workers' recycling */
        srand((unsigned)getpid() ^ (unsigned)clock_us());
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
    if (cfg->log_config && py_log_config(cfg) < 0) {
        py_log_exception("--log-config: the logging configuration failed");
        exit(WK_EXIT_LOAD);
    }
    PyObject *app = W.ifc->prepare && W.ifc->prepare(cfg) < 0 ? NULL : py_load_app(cfg);
    if (!app || W.ifc->init(cfg, app) < 0) {
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
    ev_set_owner(W.loop, owns_loop);
    wk_owner = 1;
    W.tick = cfg->http1_header_read_timeout_ms < 1000 ? cfg->http1_header_read_timeout_ms : 1000;
    W.last_sweep = clock_ms();
    int rc = W.ifc->run ? W.ifc->run(ev_fd(W.loop)) : W.ifc->serve ? W.ifc->serve() : serve();
    if (W.forced) {             /* requests still hold connections, app threads
                                   may be stuck in Python: no finalizing */
        log_set_sink(NULL);
        log_info("Stopped worker-%d", id);
        _exit(rc);
    }
    if (W.ifc->exit) W.ifc->exit();
    log_set_sink(NULL);         /* Python is about to go */
    Py_DECREF(app);
    if (Py_FinalizeEx() < 0 && rc == WK_EXIT_OK) rc = WK_EXIT_ERROR;
    log_info("Stopped worker-%d", id);
    exit(rc);
}
