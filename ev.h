/* ev.h -- the event loop, epoll or kqueue chosen at compile time (ev.c). */
#ifndef EV_H
#define EV_H

#include "granc.h"

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
/* owned() says whether this thread still runs the loop: ev_poll stops
 * serving its batch once a callback returns on a thread that lost it (the
 * rest stays ready for the new owner: level-triggered). */
void ev_set_owner(ev_loop *loop, int (*owned)(void));
const char *ev_backend(void);
/* The epoll/kqueue descriptor: readable when events are ready, so that
 * asyncio can wait on granc's loop as one reader (ASGI). */
int ev_fd(ev_loop *loop);

#endif
