/* pool.h -- running WSGI requests: inline or on application threads. */
#ifndef POOL_H
#define POOL_H

#include "granc.h"

/* Release the GIL from the loop thread and, unless --blocking-threads is
 * 1, start the first application thread; finished requests are announced
 * by a byte on wake_fd. */
void pool_start(const config *cfg, int id, int wake_fd);
/* Run c's request here, on the loop thread (--blocking-threads 1). */
void pool_run(conn *c);
/* Queue c's request for an application thread. */
void pool_submit(conn *c);
/* The requests finished since the last call, linked by qnext. */
conn *pool_done(void);
/* Tell every thread to go, wait until they have, take the GIL back. */
void pool_stop(void);

#endif
