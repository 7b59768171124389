/* ev_kqueue.c -- ev.c's back end on the BSDs and macOS.  #included by ev.c,
 * never compiled alone.
 *
 * kqueue watches (fd, filter) pairs: READ and WRITE are two filters, added
 * and deleted one by one as the mask changes, and a poll may return two
 * kevents for one fd.  be_poll merges them so the fd's callback runs once
 * with READ|WRITE, as it would with epoll.  Filters are level-triggered
 * (no EV_CLEAR). */
#include <sys/types.h>
#include <sys/event.h>
#include <fcntl.h>
#include <time.h>

static const char be_name[] = "kqueue";

struct be_state {
    int kq;
    struct kevent *events;      /* [setsize], filled by kevent() */
    unsigned char *pending;     /* [setsize], per-fd mask while merging */
};

static int be_fd(ev_loop *loop)
{
    return loop->be->kq;
}

static int be_create(ev_loop *loop)
{
    struct be_state *s = calloc(1, sizeof *s);

    if (s == NULL)
        return -1;
    s->events = calloc((size_t)loop->setsize, sizeof *s->events);
    s->pending = calloc((size_t)loop->setsize, 1);
    s->kq = s->events && s->pending ? kqueue() : -1;
    if (s->kq == -1) {
        free(s->events);
        free(s->pending);
        free(s);
        return -1;
    }
    fcntl(s->kq, F_SETFD, FD_CLOEXEC);
    loop->be = s;
    return 0;
}

static void be_free(ev_loop *loop)
{
    close(loop->be->kq);
    free(loop->be->events);
    free(loop->be->pending);
    free(loop->be);
}

/* Apply one change at once.  With no event list, kevent() reports a failed
 * change as -1 and errno rather than as an EV_ERROR event. */
static int be_change(ev_loop *loop, int fd, int filter, int flags)
{
    struct kevent ke;

    EV_SET(&ke, fd, filter, flags, 0, 0, 0);
    return kevent(loop->be->kq, &ke, 1, NULL, 0, NULL);
}

static int be_add(ev_loop *loop, int fd, int old, int mask, int excl)
{
    int add = mask & ~old;

    (void)excl;                 /* no kqueue equivalent */
    if ((add & EV_READ) && be_change(loop, fd, EVFILT_READ, EV_ADD) == -1)
        return -1;
    if ((add & EV_WRITE) && be_change(loop, fd, EVFILT_WRITE, EV_ADD) == -1) {
        if (add & EV_READ)      /* undo, so kernel and table agree */
            be_change(loop, fd, EVFILT_READ, EV_DELETE);
        return -1;
    }
    return 0;
}

/* Errors are ignored: ENOENT/EBADF mean the kernel has forgotten the
 * filter already (close() drops an fd's kevents). */
static void be_del(ev_loop *loop, int fd, int old, int mask)
{
    int gone = old & ~mask;

    if (gone & EV_READ)
        be_change(loop, fd, EVFILT_READ, EV_DELETE);
    if (gone & EV_WRITE)
        be_change(loop, fd, EVFILT_WRITE, EV_DELETE);
}

static int be_poll(ev_loop *loop, int timeout_ms)
{
    struct be_state *s = loop->be;
    struct timespec ts, *tsp = NULL;
    int n, i, nfired = 0;

    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000;
        tsp = &ts;
    }
    n = kevent(s->kq, NULL, 0, s->events, loop->maxevents, tsp);
    if (n == -1)
        return -1;
    /* Pass 1: OR each kevent into its fd's pending mask. */
    for (i = 0; i < n; i++) {
        struct kevent *e = &s->events[i];
        int fd = (int)e->ident, mask;

        if (e->flags & (EV_EOF | EV_ERROR))
            mask = EV_READ | EV_WRITE;
        else
            mask = e->filter == EVFILT_READ ? EV_READ : EV_WRITE;
        s->pending[fd] |= (unsigned char)(mask & loop->files[fd].mask);
    }
    /* Pass 2: one fired entry per fd, at its first kevent; clearing the
     * pending mask marks the fd done. */
    for (i = 0; i < n; i++) {
        int fd = (int)s->events[i].ident;

        if (s->pending[fd] == 0)
            continue;
        loop->fired[nfired].fd = fd;
        loop->fired[nfired].mask = s->pending[fd];
        s->pending[fd] = 0;
        nfired++;
    }
    return nfired;
}
