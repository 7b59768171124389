/* ev_epoll.c -- ev.c's back end on Linux.  #included by ev.c, never
 * compiled alone.  Level-triggered; epoll reports each fd at most once per
 * epoll_wait, so there is nothing to merge. */
#include <sys/epoll.h>

#ifndef EPOLLEXCLUSIVE          /* Linux 4.5; older kernels ignore the bit */
#define EPOLLEXCLUSIVE (1u << 28)
#endif

static const char be_name[] = "epoll";

struct be_state {
    int epfd;
    struct epoll_event *events; /* [setsize], filled by epoll_wait */
};

static int be_fd(ev_loop *loop)
{
    return loop->be->epfd;
}

static int be_create(ev_loop *loop)
{
    struct be_state *s = malloc(sizeof *s);

    if (s == NULL)
        return -1;
    s->events = malloc((size_t)loop->setsize * sizeof *s->events);
    s->epfd = s->events ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (s->epfd == -1) {
        free(s->events);
        free(s);
        return -1;
    }
    loop->be = s;
    return 0;
}

static void be_free(ev_loop *loop)
{
    close(loop->be->epfd);
    free(loop->be->events);
    free(loop->be);
}

/* One epoll_ctl call; the fd rides in the event's data. */
static int be_ctl(ev_loop *loop, int op, int fd, int mask, uint32_t flags)
{
    struct epoll_event ee = { .events = flags, .data.fd = fd };

    if (mask & EV_READ)
        ee.events |= EPOLLIN;
    if (mask & EV_WRITE)
        ee.events |= EPOLLOUT;
    return epoll_ctl(loop->be->epfd, op, fd, &ee);
}

static int be_add(ev_loop *loop, int fd, int old, int mask, int excl)
{
    if (old != EV_NONE)
        return be_ctl(loop, EPOLL_CTL_MOD, fd, mask, 0);
    return be_ctl(loop, EPOLL_CTL_ADD, fd, mask, excl ? EPOLLEXCLUSIVE : 0);
}

/* Errors are ignored: ENOENT/EBADF mean the kernel has forgotten the fd
 * already, which is where we wanted it. */
static void be_del(ev_loop *loop, int fd, int old, int mask)
{
    (void)old;
    be_ctl(loop, mask != EV_NONE ? EPOLL_CTL_MOD : EPOLL_CTL_DEL, fd, mask, 0);
}

static int be_poll(ev_loop *loop, int timeout_ms)
{
    struct be_state *s = loop->be;
    int n, i;

    n = epoll_wait(s->epfd, s->events, loop->maxevents, timeout_ms);
    for (i = 0; i < n; i++) {
        uint32_t what = s->events[i].events;
        int fd = s->events[i].data.fd, mask = EV_NONE;

        if (what & EPOLLIN)
            mask |= EV_READ;
        if (what & EPOLLOUT)
            mask |= EV_WRITE;
        if (what & (EPOLLERR | EPOLLHUP))   /* reported even if not asked */
            mask |= EV_READ | EV_WRITE;
        loop->fired[i].fd = fd;
        loop->fired[i].mask = mask & loop->files[fd].mask;
    }
    return n;
}
