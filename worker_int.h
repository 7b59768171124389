/* worker_int.h -- the worker process's state, shared by the loop (worker.c)
 * and the connections it serves (conn.c, h2_conn.c).  Nothing else
 * includes it.
 */
#ifndef WORKER_INT_H
#define WORKER_INT_H

#include <stdatomic.h>
#include "conn.h"
#include "ev.h"

#define IO_TIMEOUT_MS   60000    /* a request waiting on a silent client */
#define BUF_STASH       64       /* spare read buffers kept for reuse */

struct worker {
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
    int tick;                    /* ms between sweeps (wk_turn) */
    int64_t last_sweep;
    uint64_t served, recycle_at; /* requests done; --max-requests (+ jitter) */
    int64_t force_at;            /* --graceful-timeout: when a drain is cut */
    int forced;                  /* it was: exit without waiting */
    const app_iface *ifc;            /* the application interface */
    atomic_int stopping;         /* read by app threads when writing heads */
    int freed;                   /* buffers and connections freed since a trim */
    /* read buffers (with their parsed heads) of connections between
     * requests: an idle keep-alive connection holds none, so 10,000 idle
     * connections cost their conn structs, not 20 KiB each, and the next
     * request on a busy connection takes one back without malloc */
    struct { char *buf; http_request *req; } stash[BUF_STASH];
    int nstash;
};
extern struct worker W;

void wk_accept_pause(void);
void wk_accept_resume(void);
void wk_tell(int what);          /* a tell_msg to the master */
void wk_request_done(void);      /* count it; --max-requests */

#endif
