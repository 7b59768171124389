/* pool.c -- where WSGI requests run: on the loop thread itself
 * (--blocking-threads 1) or on a pool of application threads.
 *
 * A thread takes a request from the queue, runs the app holding the GIL
 * (wsgi_handle), and puts the request on the done list for the loop,
 * waking it through the worker's self-pipe.  Threads start on demand up to
 * --blocking-threads and end after --blocking-threads-idle-timeout idle,
 * all but one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include "req.h"
#include "pool.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"
#include "wsgi.h"

static struct pool {
    pthread_mutex_t mu;
    sem_t work;                  /* one post per request queued (a semaphore,
                                    not a condition variable: glibc 2.36's
                                    lost wake-up, BZ #25847, hung workers) */
    request *qhead, *qtail;      /* requests waiting for a thread */
    request *done;                 /* requests finished, for the loop */
    int nthreads, idle, stop;
    int nqueued;                 /* requests in qhead..qtail */
    int max, idle_s;             /* --blocking-threads, its idle timeout */
    int wake_fd;                 /* the loop's self-pipe */
    int id;                      /* the worker's number, for the log */
    PyThreadState *main_ts;      /* the loop thread's, while it runs no app */
} P = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int pool_run(request *r)
{
    int64_t t1 = clock_us();
    PyEval_RestoreThread(P.main_ts);
    int64_t t2 = clock_us();
    wsgi_handle(r);
    P.main_ts = PyEval_SaveThread();
    M_ADD(py_wait_cumulative, t2 - t1);
    M_ADD(blocking_busy_cumulative, clock_us() - t1);
    return 1;
}

static void *pool_thread(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);     /* signals go to the loop */
    PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
    pthread_mutex_lock(&P.mu);
    for (;;) {
        int64_t t0 = clock_us();
        while (!P.qhead && !P.stop) {
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
            if (timed_out && !P.qhead && P.nthreads > 1) break;    /* reaped, but one */
        }
        if (!P.qhead) break;
        request *r = P.qhead;
        P.qhead = r->qnext;
        if (!P.qhead) P.qtail = NULL;
        P.nqueued--;
        M_SUB(blocking_queue, 1);
        pthread_mutex_unlock(&P.mu);

        int64_t t1 = clock_us();
        PyEval_RestoreThread(ts);
        int64_t t2 = clock_us();
        wsgi_handle(r);
        PyEval_SaveThread();
        M_ADD(blocking_idle_cumulative, t1 - t0);
        M_ADD(py_wait_cumulative, t2 - t1);
        M_ADD(blocking_busy_cumulative, clock_us() - t1);

        pthread_mutex_lock(&P.mu);
        int was_empty = P.done == NULL;
        r->qnext = P.done;
        P.done = r;
        if (was_empty) {
            ssize_t w = write(P.wake_fd, "d", 1);
            (void)w;            /* a full pipe already means "wake up" */
        }
    }
    pthread_mutex_unlock(&P.mu);
    PyEval_RestoreThread(ts);
    PyThreadState_Clear(ts);
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
    if (++P.nqueued > P.idle && P.nthreads < P.max)
        pool_grow();
    pthread_mutex_unlock(&P.mu);
    sem_post(&P.work);          /* a token: a thread that finds the queue
                                   empty just waits again */
    return 0;
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
    P.main_ts = PyEval_SaveThread();
    if (P.max == 1) {
        M_SET(blocking_threads, 1);     /* the loop thread runs the app */
    } else {                            /* one thread waits from the start */
        pthread_mutex_lock(&P.mu);
        pool_grow();
        pthread_mutex_unlock(&P.mu);
    }
    return 0;
}

request *pool_done(void)
{
    pthread_mutex_lock(&P.mu);
    request *done = P.done;
    P.done = NULL;
    pthread_mutex_unlock(&P.mu);
    return done;
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
    .start = pool_submit,
    .exit = pool_stop,
};
