/* tests/kqueue/sys/event.h -- a stand-in for the BSD <sys/event.h>, so that
 * ev_kqueue.c can be compiled (never linked) on Linux:
 *
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -DEV_KQUEUE -Itests/kqueue -I. \
 *      -c ev.c -o /tmp/ev_kqueue.o
 *
 * Declares only what ev_kqueue.c uses, with the shapes and values of
 * FreeBSD (before 12) and macOS.  Known differences elsewhere, which the
 * back end is written to tolerate: FreeBSD 12+ and OpenBSD make data an
 * int64_t (FreeBSD adds ext[4]); NetBSD uses uint32_t filters numbered
 * from 0, size_t counts in kevent(), and (before 10) an intptr_t udata. */
#ifndef TESTS_KQUEUE_SYS_EVENT_H
#define TESTS_KQUEUE_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
    uintptr_t ident;            /* identifier for this event: the fd */
    short filter;               /* EVFILT_* */
    unsigned short flags;       /* EV_* action and return flags */
    unsigned int fflags;        /* filter-specific flags */
    intptr_t data;              /* filter-specific data */
    void *udata;                /* opaque user data, passed through */
};

#define EV_SET(kevp, a, b, c, d, e, f) do {     \
        struct kevent *ev_set_kevp_ = (kevp);   \
        ev_set_kevp_->ident = (a);              \
        ev_set_kevp_->filter = (b);             \
        ev_set_kevp_->flags = (c);              \
        ev_set_kevp_->fflags = (d);             \
        ev_set_kevp_->data = (e);               \
        ev_set_kevp_->udata = (f);              \
    } while (0)

#define EVFILT_READ     (-1)
#define EVFILT_WRITE    (-2)

/* actions */
#define EV_ADD          0x0001  /* add event to kq (implies enable) */
#define EV_DELETE       0x0002  /* delete event from kq */
#define EV_ENABLE       0x0004
#define EV_DISABLE      0x0008
#define EV_ONESHOT      0x0010
#define EV_CLEAR        0x0020  /* edge-triggered: reset state after retrieval */
/* returned values */
#define EV_ERROR        0x4000  /* error, data contains errno */
#define EV_EOF          0x8000  /* EOF detected */

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents,
           const struct timespec *timeout);

#endif
