/* ev.c -- the event loop: an fd-indexed table, one poll, one dispatch.
 *
 * Modelled on redis's ae.  The loop keeps, for every fd below setsize, the
 * registered mask and one callback.  The kernel interface lives in
 * ev_epoll.c (Linux) or ev_kqueue.c (BSDs, macOS); exactly one of them is
 * #included below and each defines the same static functions:
 *
 *   be_create(loop)                    open the kernel object, set loop->be
 *   be_free(loop)                      close and free it
 *   be_add(loop, fd, old, mask, excl)  watch mask (= old plus new bits)
 *   be_del(loop, fd, old, mask)        watch only mask (= old minus bits);
 *                                      mask 0 removes the fd
 *   be_poll(loop, timeout_ms)          wait, fill loop->fired[], return
 *                                      the count or -1 with errno
 *   be_fd(loop)                        the kernel object's descriptor (ev_fd)
 *
 * be_poll normalises what the kernel says: one fired entry per fd, with
 * errors and hang-ups reported as READ|WRITE (of the registered bits) so
 * that the connection's own read() or write() meets the error.
 *
 * Rules for callers:
 *  - ev_del an fd (all its bits) before close()ing it.  The table would
 *    otherwise keep the old mask and callback, and epoll keeps watching a
 *    closed fd while a dup of it lives (in a child, say).
 *  - Create the loop after fork(): a kqueue is not inherited, and an epoll
 *    instance shared by two processes mixes their registrations.
 *  - Events are level-triggered: a callback need not drain its fd; it is
 *    called again on the next poll while the fd stays ready.
 */
#include "ev.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* One slot per fd. */
typedef struct ev_file {
    int mask;                   /* EV_READ|EV_WRITE registered; 0 = free */
    unsigned batch;             /* loop->batch when the slot was taken */
    ev_proc *proc;
    void *udata;
} ev_file;

/* One ready fd, as be_poll reports it. */
typedef struct ev_fired {
    int fd;
    int mask;
} ev_fired;

struct ev_loop {
    int setsize;                /* fds 0 .. setsize-1 are accepted */
    int maxevents;              /* events one ev_poll takes, <= setsize */
    unsigned batch;             /* ev_poll dispatches so far */
    ev_file *files;             /* [setsize], indexed by fd */
    ev_fired *fired;            /* [setsize], filled by be_poll */
    struct be_state *be;        /* defined by the back end */
    int (*owned)(void);         /* ev_set_owner; NULL: always */
};

#if defined(__linux__) && !defined(EV_KQUEUE)
#include "ev_epoll.c"
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
      defined(__NetBSD__) || defined(__DragonFly__) || defined(EV_KQUEUE)
#include "ev_kqueue.c"
#else
#error "ev.c: no back end for this platform (needs epoll or kqueue)"
#endif

ev_loop *ev_create(int setsize)
{
    ev_loop *loop;

    if (setsize <= 0) {
        errno = EINVAL;
        return NULL;
    }
    loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    loop->setsize = loop->maxevents = setsize;
    loop->files = calloc((size_t)setsize, sizeof *loop->files);
    loop->fired = calloc((size_t)setsize, sizeof *loop->fired);
    if (loop->files == NULL || loop->fired == NULL || be_create(loop) == -1) {
        free(loop->files);
        free(loop->fired);
        free(loop);
        return NULL;
    }
    return loop;
}

void ev_free(ev_loop *loop)
{
    if (loop == NULL)
        return;
    be_free(loop);
    free(loop->files);
    free(loop->fired);
    free(loop);
}

/* OR mask into fd's registration and make (proc, udata) its callback.
 * EV_EXCLUSIVE only counts when the fd is not registered yet; see granc.h.
 * On failure nothing changes. */
int ev_add(ev_loop *loop, int fd, int mask, ev_proc *proc, void *udata)
{
    ev_file *f;
    int old, want;

    if (fd < 0 || fd >= loop->setsize) {
        errno = ERANGE;
        return -1;
    }
    f = &loop->files[fd];
    old = f->mask;
    want = old | (mask & (EV_READ | EV_WRITE));
    if (want != old &&
        be_add(loop, fd, old, want,
               old == EV_NONE && (mask & EV_EXCLUSIVE)) == -1)
        return -1;
    if (old == EV_NONE)
        f->batch = loop->batch;
    f->mask = want;
    f->proc = proc;
    f->udata = udata;
    return 0;
}

/* Clear mask bits; with none left the fd is forgotten by the back end. */
void ev_del(ev_loop *loop, int fd, int mask)
{
    ev_file *f;
    int left;

    if (fd < 0 || fd >= loop->setsize)
        return;
    f = &loop->files[fd];
    left = f->mask & ~mask;
    if (left == f->mask)
        return;
    be_del(loop, fd, f->mask, left);
    f->mask = left;
}

int ev_mask(ev_loop *loop, int fd)
{
    if (fd < 0 || fd >= loop->setsize)
        return EV_NONE;
    return loop->files[fd].mask;
}

void ev_set_max_events(ev_loop *loop, int n)
{
    loop->maxevents = n < 1 ? 1 : n > loop->setsize ? loop->setsize : n;
}

void ev_set_owner(ev_loop *loop, int (*owned)(void))
{
    loop->owned = owned;
}

int ev_setsize(ev_loop *loop)
{
    return loop->setsize;
}

const char *ev_backend(void)
{
    return be_name;
}

int ev_fd(ev_loop *loop)
{
    return be_fd(loop);
}

/* Wait up to timeout_ms (-1 = forever, 0 = just look), then call the
 * callback of every ready fd.  Returns the number of callbacks made, 0 when
 * a signal cut the wait short, -1 on error.
 *
 * The stale-event guard: be_poll collects the whole batch before any
 * callback runs, and a callback may ev_del and close another fd of the same
 * batch, whose number a later accept() or open() may even reuse.  So each
 * entry is checked against the table as it is now: only bits still
 * registered are passed, none means skip, and a slot taken during this
 * dispatch (batch number) cannot own an event collected before it. */
int ev_poll(ev_loop *loop, int timeout_ms)
{
    int n, i, handled = 0;

    n = be_poll(loop, timeout_ms);
    if (n == -1)
        return errno == EINTR ? 0 : -1;
    loop->batch++;
    for (i = 0; i < n; i++) {
        int fd = loop->fired[i].fd;
        ev_file *f = &loop->files[fd];
        int mask = loop->fired[i].mask & f->mask;

        if (mask == EV_NONE || f->batch == loop->batch)
            continue;
        f->proc(loop, fd, f->udata, mask);
        handled++;
        if (loop->owned && !loop->owned())
            break;              /* not ours any more: touch nothing */
    }
    return handled;
}
