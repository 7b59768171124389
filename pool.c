/* pool.c -- where WSGI requests run: on the loop thread itself
 * (--blocking-threads 1), or by default on leader and follower threads.
 *
 * By default the app runs on whichever thread holds the worker's loop (the
 * leader), as --blocking-threads 1 does, as long as it returns soon: a
 * request then costs no thread wake-up, GIL hand-off or self-pipe byte.
 * The leader says what it does in one atomic word, P.lead: LEAD_LOOP (in
 * loop code), an app's sequence number (running that app), or LEAD_VACANT
 * (nobody holds the loop).  Before an app it stores the number, after it
 * swaps it back for LEAD_LOOP; when that swap fails, the loop was taken
 * from it meanwhile: it must not touch the loop or the connection again,
 * so it puts the request on the done list, wakes the loop through the
 * self-pipe as any application thread does, returns "not done inline"
 * (start's 0) up the stack (ev_poll, conn.c and on_wake stop on wk_owner
 * 0), and becomes a follower.
 *
 * The loop is taken, by swapping the number for LEAD_VACANT, when the app
 * waits for the client (wsgi.input: pool_blocking, at once) or by the
 * monitor when the same number is still there on two ticks in a row (a
 * millisecond apart: the app ran 1-2 ms, blocked in sleep(), a query, a
 * slow write, or holds the GIL).  A follower woken then takes LEAD_VACANT
 * and leads: it first unwatches the old leader's request, which is now
 * like a pooled one.
 *
 * Followers wait on P.work for a vacant loop or a queued request (HTTP/2
 * streams are always queued, as are requests while all --blocking-threads
 * app slots are busy).  At most --blocking-threads apps run at once, plus
 * one thread for the loop: threads start on demand up to max + 1 and end
 * after --blocking-threads-idle-timeout idle, all but one.
 *
 * The worker's main thread supervises (pool_serve): it never runs the
 * loop or an app.  It is the monitor, ticking every millisecond while
 * apps run inline and sleeping without a timeout after a second without
 * one (the leader posts it on its next app: P.deep).  It is also the one
 * thread that takes signals (pool threads block them; the handler writes
 * the self-pipe, which wakes whichever thread holds the loop), and once
 * the loop has ended it returns to wk_main, so that the exit path and
 * Python's finalization stay on the main thread.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include "req.h"
#include "pool.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"
#include "wsgi.h"

#define TICK_NS       1000000    /* the monitor's tick: 1 ms */
#define DEEP_TICKS    1000       /* ticks without an inline app before it sleeps */

enum { LEAD_LOOP = 0, LEAD_VACANT = 1 };        /* else an app's number, even */

static struct pool {
    pthread_mutex_t mu;
    sem_t work;                  /* one post per request queued or vacant
                                    loop (a semaphore, not a condition
                                    variable: glibc 2.36's lost wake-up,
                                    BZ #25847, hung workers) */
    sem_t mon;                   /* the monitor's: an app inline after a
                                    deep sleep, or the loop's end */
    request *qhead, *qtail;      /* requests waiting for a thread */
    request *done;               /* requests finished, for the loop */
    int nthreads, idle, stop;
    int nqueued;                 /* requests in qhead..qtail */
    int busy;                    /* apps running, the leader's too */
    int max, idle_s;             /* --blocking-threads, its idle timeout */
    int wake_fd;                 /* the loop's self-pipe */
    int id;                      /* the worker's number, for the log */
    PyThreadState *main_ts;      /* the main thread's, while it runs no app */
    _Atomic uint64_t lead;       /* LEAD_LOOP, LEAD_VACANT or an app's number */
    _Atomic uint64_t seq;        /* the last app number given */
    atomic_int deep;             /* the monitor sleeps without a timeout */
    atomic_int over;             /* the loop has ended */
    request *running;            /* the leader's app's, for whoever takes
                                    the loop from it */
} P = { .mu = PTHREAD_MUTEX_INITIALIZER };

static _Thread_local PyThreadState *my_ts;     /* a pool thread's */
static _Thread_local uint64_t my_app;          /* the number of the app this
                                                  thread runs as leader */

/* Run r on this thread, holding the GIL with the thread state *ts. */
static void run_app(request *r, PyThreadState **ts)
{
    int64_t t1 = clock_us();
    PyEval_RestoreThread(*ts);
    int64_t t2 = clock_us();
    wsgi_handle(r);
    *ts = PyEval_SaveThread();
    M_ADD(py_wait_cumulative, t2 - t1);
    M_ADD(blocking_busy_cumulative, clock_us() - t1);
}

/* --blocking-threads 1: the app runs on the main thread, the loop's. */
static int pool_run(request *r)
{
    run_app(r, &P.main_ts);
    return 1;
}

/* r is finished, for the loop (P.mu held). */
static void put_done(request *r)
{
    int was_empty = P.done == NULL;
    r->qnext = P.done;
    P.done = r;
    if (was_empty) {
        ssize_t w = write(P.wake_fd, "d", 1);
        (void)w;                /* a full pipe already means "wake up" */
    }
}

static void pool_grow(void);

/* The loop is LEAD_VACANT: have a follower take it, starting one if none
 * is idle but for the queued requests. */
static void call_follower(void)
{
    pthread_mutex_lock(&P.mu);
    if (P.idle <= P.nqueued && P.nthreads < P.max + 1)
        pool_grow();
    pthread_mutex_unlock(&P.mu);
    sem_post(&P.work);
}

/* This thread took LEAD_VACANT: run the loop until it ends or is taken. */
static void lead(void)
{
    wk_owner = 1;
    request *r = P.running;             /* the old leader's app still runs */
    P.running = NULL;
    if (r) r->ops->watch(r, 0);         /* its events are the finisher's now */
    while (wk_turn() > 0) {}
    if (wk_owner) {                     /* the end: tell the supervisor */
        atomic_store(&P.over, 1);
        sem_post(&P.mon);
    }
    wk_owner = 0;
}

static void *pool_thread(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);     /* signals go to the main thread */
    my_ts = PyThreadState_New(PyInterpreterState_Main());
    pthread_mutex_lock(&P.mu);
    int64_t t0 = clock_us();
    for (;;) {
        uint64_t vacant = LEAD_VACANT;
        if (!P.stop && atomic_load(&P.lead) == LEAD_VACANT) {
            pthread_mutex_unlock(&P.mu);
            if (atomic_compare_exchange_strong(&P.lead, &vacant, LEAD_LOOP)) lead();
            pthread_mutex_lock(&P.mu);
            t0 = clock_us();
            continue;
        }
        if (P.qhead && P.busy < P.max) {
            request *r = P.qhead;
            P.qhead = r->qnext;
            if (!P.qhead) P.qtail = NULL;
            P.nqueued--;
            P.busy++;
            M_SUB(blocking_queue, 1);
            pthread_mutex_unlock(&P.mu);
            M_ADD(blocking_idle_cumulative, clock_us() - t0);
            run_app(r, &my_ts);
            pthread_mutex_lock(&P.mu);
            P.busy--;
            put_done(r);
            t0 = clock_us();
            continue;
        }
        if (P.stop) break;
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += P.idle_s;
        P.idle++;
        pthread_mutex_unlock(&P.mu);
        int rc;
        do rc = sem_timedwait(&P.work, &dl);
        while (rc < 0 && errno == EINTR);
        int timed_out = rc < 0 && errno == ETIMEDOUT;
        pthread_mutex_lock(&P.mu);
        P.idle--;
        if (timed_out && !P.qhead && P.nthreads > 1 &&
            atomic_load(&P.lead) != LEAD_VACANT)
            break;                                      /* reaped, but one */
    }
    pthread_mutex_unlock(&P.mu);
    PyEval_RestoreThread(my_ts);
    PyThreadState_Clear(my_ts);
    PyThreadState_DeleteCurrent();
    pthread_mutex_lock(&P.mu);
    P.nthreads--;
    M_SET(blocking_threads, P.nthreads);
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

/* One more application thread (P.mu held). */
static void pool_grow(void)
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, pool_thread, NULL) == 0)
        M_SET(blocking_threads, ++P.nthreads);
    else if (P.nthreads == 0)
        log_error("worker-%d: cannot start an application thread", P.id);
    pthread_attr_destroy(&at);
}

static int pool_submit(request *r)
{
    r->ops->watch(r, 0);        /* the thread's for a while */
    pthread_mutex_lock(&P.mu);
    r->qnext = NULL;
    if (P.qtail) P.qtail->qnext = r; else P.qhead = r;
    P.qtail = r;
    M_ADD(blocking_queue, 1);
    /* more waiting requests than idle threads: an idle thread that has
     * been signalled but not yet woken must not count twice (#873) */
    if (++P.nqueued > P.idle && P.nthreads < P.max + 1)
        pool_grow();
    pthread_mutex_unlock(&P.mu);
    sem_post(&P.work);          /* a token: a thread that finds the queue
                                   empty just waits again */
    return 0;
}

/* The default's start, on the leader: the app runs here if a slot is
 * free.  Returns 1 when done (conn.c goes on), 0 when r is the pool's, or
 * the loop was taken meanwhile (then nothing may be touched: wk_owner). */
static int lf_start(request *r)
{
    if (r->queue) return pool_submit(r);
    pthread_mutex_lock(&P.mu);
    int slot = P.busy < P.max;
    P.busy += slot;
    pthread_mutex_unlock(&P.mu);
    if (!slot) return pool_submit(r);
    uint64_t mine = atomic_fetch_add(&P.seq, 2) + 2;
    P.running = r;
    my_app = mine;
    atomic_store(&P.lead, mine);
    if (atomic_load(&P.deep) && atomic_exchange(&P.deep, 0))
        sem_post(&P.mon);                       /* the monitor watches again */
    run_app(r, &my_ts);
    my_app = 0;
    int kept = atomic_compare_exchange_strong(&P.lead, &mine, LEAD_LOOP);
    if (kept) P.running = NULL;
    pthread_mutex_lock(&P.mu);
    P.busy--;
    if (!kept) put_done(r);
    int post = P.qhead && P.idle;       /* a follower waited for the slot */
    pthread_mutex_unlock(&P.mu);
    if (post) sem_post(&P.work);
    if (!kept) wk_owner = 0;
    return kept;
}

void pool_blocking(void)
{
    uint64_t mine = my_app;
    if (mine && atomic_compare_exchange_strong(&P.lead, &mine, LEAD_VACANT))
        call_follower();
}

/* The main thread, while pool threads run the loop: the monitor. */
static int pool_serve(void)
{
    wk_listen();                        /* before any thread leads */
    wk_owner = 0;
    atomic_store(&P.lead, LEAD_VACANT);
    call_follower();
    uint64_t seen = 0;
    int quiet = 0;
    while (!atomic_load(&P.over)) {
        if (atomic_load(&P.deep)) {
            if (sem_wait(&P.mon) == 0) seen = 0;        /* (EINTR: a signal) */
            continue;
        }
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += TICK_NS;
        if (dl.tv_nsec >= 1000000000) { dl.tv_sec++; dl.tv_nsec -= 1000000000; }
        sem_timedwait(&P.mon, &dl);
        uint64_t s = atomic_load(&P.lead);
        if (s == LEAD_LOOP || s == LEAD_VACANT) {
            seen = 0;
            if (++quiet < DEEP_TICKS) continue;
            /* sleep until the leader's next app; it looks at deep after
             * storing its number, so one of us sees the other */
            atomic_store(&P.deep, 1);
            s = atomic_load(&P.lead);
            if (s == LEAD_LOOP || s == LEAD_VACANT) continue;
            atomic_store(&P.deep, 0);
        }
        quiet = 0;
        if (s == seen && atomic_compare_exchange_strong(&P.lead, &s, LEAD_VACANT)) {
            call_follower();            /* the app ran a whole tick: take the loop */
            s = 0;
        }
        seen = s;
    }
    return WK_EXIT_OK;
}

static void pool_shutdown(void)
{
    pthread_mutex_lock(&P.mu);
    P.stop = 1;
    for (;;) {
        int n = P.nthreads;
        pthread_mutex_unlock(&P.mu);
        if (n == 0) return;
        for (int i = 0; i < n; i++) sem_post(&P.work);
        usleep(1000);
        pthread_mutex_lock(&P.mu);
    }
}

static int pool_init(const config *cfg, void *app)
{
    if (wsgi_init(cfg, app) < 0) return -1;
    P.max = cfg->blocking_threads;
    P.idle_s = cfg->blocking_threads_idle_timeout_s;
    P.id = wk_id();
    P.wake_fd = wk_wake_fd();
    sem_init(&P.work, 0, 0);
    sem_init(&P.mon, 0, 0);
    P.main_ts = PyEval_SaveThread();
    if (P.max == 1)
        M_SET(blocking_threads, 1);     /* the loop thread runs the app */
    return 0;                           /* else: the first leader, pool_serve */
}

request *pool_done(void)
{
    pthread_mutex_lock(&P.mu);
    request *done = P.done;
    P.done = NULL;
    pthread_mutex_unlock(&P.mu);
    return done;
}

void pool_requeue(request *list)
{
    pthread_mutex_lock(&P.mu);
    while (list) {
        request *r = list;
        list = r->qnext;
        put_done(r);
    }
    pthread_mutex_unlock(&P.mu);
}

static void pool_stop(void)
{
    pool_shutdown();
    PyEval_RestoreThread(P.main_ts);
}

const app_iface wsgi_inline_iface = {
    .name = "wsgi",
    .init = pool_init,
    .start = pool_run,
    .exit = pool_stop,
};

const app_iface wsgi_pool_iface = {
    .name = "wsgi",
    .init = pool_init,
    .serve = pool_serve,
    .start = lf_start,
    .exit = pool_stop,
};
