/* worker.h -- one worker process: the loop, accept, sweeps, stop (worker.c). */
#ifndef WORKER_H
#define WORKER_H

#include "granc.h"

/* Worker -> master messages: one atomic write each on a shared pipe. */
enum { WM_READY = 1, WM_RECYCLE };  /* the app is loaded; --max-requests reached */
typedef struct tell_msg {
    pid_t pid;
    int what;
} tell_msg;
extern int wk_tell_fd;              /* the pipe's write end, in workers */

/* Runs worker number id (1-based) on the inherited listeners; never
 * returns: exits with one of the WK_EXIT_* codes. */
void wk_main(const config *cfg, const listener *ls, int nls, int id)
    __attribute__((noreturn));

int wk_stopping(void);               /* a graceful stop has begun */
int wk_id(void);                    /* the worker's number, for the log */
int wk_wake_fd(void);               /* a byte here wakes the loop (finished requests) */
int wk_poll(void);                  /* ASGI: run ready events; 1 once drained */
void wk_listen(void);               /* ASGI: start accepting (after lifespan) */
/* One turn of the worker's own loop (WSGI): wait, serve what is ready,
 * sweep.  1: go on; 0: the worker has stopped (drained, or cut); -1: this
 * thread lost the loop to another (pool.c) and must leave it alone. */
int wk_turn(void);
/* Set on the thread that runs the worker's loop now: the main thread,
 * or under the WSGI pool whichever thread leads (pool.c).  Code up the
 * stack of a callback that may have run an app checks it before touching
 * a connection or the loop again. */
extern _Thread_local int wk_owner;

#endif
